//! The layout's `index.json`: parsing, writing, and the fingerprint that tells whether another
//! tool changed it.
//!
//! index.json is the one file of the layout that the store rewrites (it is not content
//! addressed). Entries are kept as the JSON objects other tools wrote, with every field they
//! carry (platform, annotations, unknown fields); only the top-level `manifests` array is rebuilt.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::OCI_INDEX;
use crate::refname::REF_NAME;

/// One entry of index.json's `manifests`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Its digest.
    pub digest: Digest,
    /// Its `org.opencontainers.image.ref.name`, if any.
    pub tag: Option<String>,
    /// The whole entry object as found.
    pub object: Map<String, Value>,
}

impl Entry {
    /// The entry's JSON text.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.object).expect("a JSON map serializes")
    }

    /// Parses an entry kept as JSON.
    pub fn from_bytes(bytes: &[u8]) -> Result<Entry> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Index(format!("index.json entry: {e}")))?;
        Entry::from_value(v, Path::new("index.json"))
    }

    fn from_value(v: Value, path: &Path) -> Result<Entry> {
        let Value::Object(object) = v else {
            return Err(Error::layout(path, "a manifests entry is not an object"));
        };
        let digest = object
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::layout(path, "a manifests entry has no digest"))?;
        let digest = Digest::parse(digest)?;
        if let Some(size) = object.get("size")
            && !size.is_u64()
        {
            return Err(Error::layout(
                path,
                format!("entry {digest} has an invalid size {size}"),
            ));
        }
        let tag = object
            .get("annotations")
            .and_then(|a| a.get(REF_NAME))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Entry {
            digest,
            tag,
            object,
        })
    }

    /// An entry naming a manifest, with an optional tag.
    pub fn new(digest: &Digest, media_type: &str, size: u64, tag: Option<&str>) -> Entry {
        let mut object = Map::new();
        object.insert("mediaType".into(), media_type.into());
        object.insert("digest".into(), digest.as_str().into());
        object.insert("size".into(), size.into());
        if let Some(t) = tag {
            let mut ann = Map::new();
            ann.insert(REF_NAME.into(), t.into());
            object.insert("annotations".into(), Value::Object(ann));
        }
        Entry {
            digest: digest.clone(),
            tag: tag.map(str::to_owned),
            object,
        }
    }

    /// This entry under another tag (or none), keeping its other fields.
    pub fn with_tag(&self, tag: Option<&str>) -> Entry {
        let mut object = self.object.clone();
        let mut ann = match object.remove("annotations") {
            Some(Value::Object(a)) => a,
            _ => Map::new(),
        };
        ann.remove(REF_NAME);
        if let Some(t) = tag {
            ann.insert(REF_NAME.into(), t.into());
        }
        if !ann.is_empty() {
            object.insert("annotations".into(), Value::Object(ann));
        }
        Entry {
            digest: self.digest.clone(),
            tag: tag.map(str::to_owned),
            object,
        }
    }

    /// The entry's media type, if it declares one.
    pub fn media_type(&self) -> Option<&str> {
        self.object.get("mediaType").and_then(Value::as_str)
    }
}

/// A parsed index.json.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IndexJson {
    /// Top-level fields other than `manifests`.
    pub extra: Map<String, Value>,
    /// The entries, in file order.
    pub entries: Vec<Entry>,
}

impl IndexJson {
    /// Parses index.json bytes read from `path`.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<IndexJson> {
        crate::manifest::check_json(bytes).map_err(|reason| Error::layout(path, reason))?;
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::layout(path, format!("not valid JSON: {e}")))?;
        let Value::Object(mut extra) = v else {
            return Err(Error::layout(path, "not a JSON object"));
        };
        let manifests = match extra.remove("manifests") {
            Some(Value::Array(m)) => m,
            Some(_) => return Err(Error::layout(path, "manifests is not an array")),
            None => {
                return Err(Error::layout(
                    path,
                    "not an image index: no manifests array",
                ));
            }
        };
        if let Some(mt) = extra.get("mediaType").and_then(Value::as_str)
            && mt != OCI_INDEX
        {
            return Err(Error::layout(
                path,
                format!("mediaType {mt:?} is not an image index"),
            ));
        }
        let entries = manifests
            .into_iter()
            .map(|v| Entry::from_value(v, path))
            .collect::<Result<_>>()?;
        Ok(IndexJson { extra, entries })
    }

    /// Reads and parses `<root>/index.json`.
    pub fn read(path: &Path) -> Result<(IndexJson, Fingerprint)> {
        let bytes = fs::read(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::layout(path, "index.json is missing"),
            _ => Error::io("read", path, e),
        })?;
        let fp = Fingerprint::of(path, &bytes)?;
        Ok((IndexJson::parse(&bytes, path)?, fp))
    }

    /// The file's bytes: `schemaVersion` 2, `mediaType`, the entries, then the kept extra fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        IndexJson::render(&self.extra, self.entries.iter().map(Entry::to_bytes))
    }

    /// The bytes [`IndexJson::to_bytes`] gives for entries already in their JSON text
    /// ([`Entry::to_bytes`]), spliced in without being parsed again.
    pub(crate) fn render<E: AsRef<[u8]>>(
        extra: &Map<String, Value>,
        entries: impl IntoIterator<Item = E>,
    ) -> Vec<u8> {
        let mut obj = Map::new();
        obj.insert("schemaVersion".into(), 2.into());
        obj.insert("mediaType".into(), OCI_INDEX.into());
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
        obj.insert("manifests".into(), Value::Null);
        let mut entries = entries.into_iter();
        // serde_json's own layout of an object, with the entries' text as the array's items.
        let mut out = Vec::new();
        out.push(b'{');
        for (i, (k, v)) in obj.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, k).expect("a string serializes");
            out.push(b':');
            if k == "manifests" {
                out.push(b'[');
                for (j, e) in entries.by_ref().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(e.as_ref());
                }
                out.push(b']');
            } else {
                serde_json::to_writer(&mut out, v).expect("JSON serializes");
            }
        }
        out.extend_from_slice(b"}\n");
        out
    }

    /// Splits the entries into tags and untagged entries. A tag repeated on several entries
    /// names the last of them; the earlier ones are kept untagged (nothing is dropped) and
    /// reported in the returned list.
    pub fn split(&self) -> (BTreeMap<String, Entry>, Vec<Entry>, Vec<String>) {
        let mut tags = BTreeMap::new();
        let mut untagged = Vec::new();
        let mut repeated = Vec::new();
        for e in &self.entries {
            match &e.tag {
                Some(t) if crate::refname::validate_tag(t).is_ok() => {
                    if let Some(prev) = tags.insert(t.clone(), e.clone()) {
                        repeated.push(t.clone());
                        untagged.push(prev.with_tag(None));
                    }
                }
                _ => untagged.push(e.clone()),
            }
        }
        (tags, untagged, repeated)
    }
}

/// Identifies one version of index.json: a content hash, plus the inode, size and mtime that let
/// an unchanged file be recognised without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    sha256: String,
}

impl Fingerprint {
    /// The fingerprint of `bytes`, just read from or written to `path`.
    pub fn of(path: &Path, bytes: &[u8]) -> Result<Fingerprint> {
        let m = fs::metadata(path).map_err(|e| Error::io("stat", path, e))?;
        Ok(Fingerprint {
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            sha256: Digest::sha256(bytes).to_string(),
        })
    }

    /// Whether the file at `path` is still this version. Reads the file only when its inode,
    /// size or mtime differ.
    pub fn matches(&self, path: &Path) -> Result<bool> {
        let m = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("stat", path, e)),
        };
        let mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
        if m.ino() == self.ino && m.size() == self.size && mtime_ns == self.mtime_ns {
            return Ok(true);
        }
        let bytes = fs::read(path).map_err(|e| Error::io("read", path, e))?;
        Ok(Digest::sha256(&bytes).as_str() == self.sha256)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        format!(
            "{} {} {} {}",
            self.ino, self.size, self.mtime_ns, self.sha256
        )
        .into_bytes()
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Fingerprint> {
        let s = std::str::from_utf8(b).ok()?;
        let mut it = s.split(' ');
        Some(Fingerprint {
            ino: it.next()?.parse().ok()?,
            size: it.next()?.parse().ok()?,
            mtime_ns: it.next()?.parse().ok()?,
            sha256: it.next()?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole document as serde_json lays it out, for comparison.
    fn by_serde(extra: &Map<String, Value>, entries: &[Value]) -> Vec<u8> {
        let mut obj = Map::new();
        obj.insert("schemaVersion".into(), 2.into());
        obj.insert("mediaType".into(), OCI_INDEX.into());
        obj.extend(extra.clone());
        obj.insert("manifests".into(), Value::Array(entries.to_vec()));
        let mut out = serde_json::to_vec(&Value::Object(obj)).unwrap();
        out.push(b'\n');
        out
    }

    #[test]
    fn spliced_entries_give_serde_json_s_bytes() {
        let extras = [
            "{}",
            r#"{"annotations":{"org.example":"x"},"a":1,"mediaTypf":[{"manifests":[]}],"zz":"\"manifests\":[]"}"#,
            r#"{"schemaVersion":3,"mediaType":"other","manifests":"ignored"}"#,
        ];
        let entries: Vec<Value> = vec![
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", "a".repeat(64)), "size": 7,
                "annotations": {REF_NAME: "v1"}, "platform": {"os": "linux"}}),
            serde_json::json!({"digest": format!("sha256:{}", "b".repeat(64)), "size": 1, "x-é": "ü"}),
        ];
        for extra in extras {
            let extra: Map<String, Value> = serde_json::from_str(extra).unwrap();
            for n in 0..=entries.len() {
                let texts: Vec<Vec<u8>> = entries[..n]
                    .iter()
                    .map(|e| serde_json::to_vec(e).unwrap())
                    .collect();
                assert_eq!(
                    String::from_utf8(IndexJson::render(&extra, &texts)).unwrap(),
                    String::from_utf8(by_serde(&extra, &entries[..n])).unwrap()
                );
            }
        }
    }
}
