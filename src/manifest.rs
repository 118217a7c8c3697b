//! Lenient parsing of every manifest kind into the edges and referrer metadata the index keeps.
//!
//! This module is the one place that decides what a media type means ([`classify`]) and which
//! descriptors of a document are its children ([`parse`]): the oras-go "successors" rule, written
//! once. Parsing reads the stored bytes and never re-encodes them.
//!
//! Leniency: unknown fields and unknown media types are kept (they are in the stored bytes), a
//! missing top-level `mediaType` is inferred from the document's shape, and `layers: []` is fine.
//! What is rejected is what would make an edge wrong: malformed JSON, a descriptor whose digest
//! does not parse or whose size is missing, negative or not a number, and a `subject` that is not
//! a descriptor.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The artifact manifest of image-spec 1.1.0-rc1/rc2, since removed, still found in old layouts.
pub const OCI_ARTIFACT_MANIFEST: &str = "application/vnd.oci.artifact.manifest.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1 manifest.
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 manifest, signed.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// The empty descriptor's media type.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The kinds of manifest the store understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `application/vnd.oci.image.manifest.v1+json`.
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`.
    OciIndex,
    /// The removed `application/vnd.oci.artifact.manifest.v1+json`.
    ArtifactManifest,
    /// Docker schema 2 image manifest.
    DockerManifest,
    /// Docker manifest list.
    DockerManifestList,
    /// Docker schema 1 (`fsLayers[].blobSum`).
    DockerSchema1,
}

impl Kind {
    /// The media type a document of this kind has when it does not say.
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::OciManifest => OCI_MANIFEST,
            Kind::OciIndex => OCI_INDEX,
            Kind::ArtifactManifest => OCI_ARTIFACT_MANIFEST,
            Kind::DockerManifest => DOCKER_MANIFEST,
            Kind::DockerManifestList => DOCKER_MANIFEST_LIST,
            Kind::DockerSchema1 => DOCKER_SCHEMA1,
        }
    }

    /// Kinds of one family share a shape (an OCI index and a Docker list, an OCI image manifest
    /// and a Docker one), so a descriptor may name one for the other.
    fn family(self) -> u8 {
        match self {
            Kind::OciManifest | Kind::DockerManifest => 0,
            Kind::OciIndex | Kind::DockerManifestList => 1,
            Kind::ArtifactManifest => 2,
            Kind::DockerSchema1 => 3,
        }
    }

    /// Whether documents of this kind list other manifests.
    pub fn is_index(self) -> bool {
        matches!(self, Kind::OciIndex | Kind::DockerManifestList)
    }
}

/// The one media-type classification of the crate: which manifest kind a media type names.
///
/// ```
/// use ocistore::manifest::{classify, Kind};
/// assert_eq!(classify("application/vnd.oci.image.index.v1+json"), Some(Kind::OciIndex));
/// assert_eq!(classify("application/vnd.oci.image.layer.v1.tar+gzip"), None);
/// ```
pub fn classify(media_type: &str) -> Option<Kind> {
    Some(match media_type {
        OCI_MANIFEST => Kind::OciManifest,
        OCI_INDEX => Kind::OciIndex,
        OCI_ARTIFACT_MANIFEST => Kind::ArtifactManifest,
        DOCKER_MANIFEST => Kind::DockerManifest,
        DOCKER_MANIFEST_LIST => Kind::DockerManifestList,
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Kind::DockerSchema1,
        _ => return None,
    })
}

/// A child of a manifest: a strong edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    /// The child's digest.
    pub digest: Digest,
    /// Its declared size (schema 1 declares none).
    pub size: Option<u64>,
    /// Its declared media type.
    pub media_type: Option<String>,
    /// True when the layout may lack it by design: a foreign layer with `urls`, or inline `data`.
    pub may_be_absent: bool,
}

/// What the index keeps of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The kind.
    pub kind: Kind,
    /// The document's `mediaType`, else the one it was declared with, else its kind's.
    pub media_type: String,
    /// The referrers-response artifact type: `artifactType`, else the config's media type.
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: BTreeMap<String, String>,
    /// The `subject` digest, when the document has one.
    pub subject: Option<Digest>,
    /// Strong edges, in document order.
    pub children: Vec<Child>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    blobs: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
    fs_layers: Option<Vec<FsLayer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
    urls: Option<Vec<String>>,
    data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FsLayer {
    blob_sum: String,
}

impl Descriptor {
    fn child(self) -> Result<Child> {
        let digest = Digest::parse(&self.digest)?;
        if self.size < 0 {
            return Err(Error::manifest(
                None,
                format!("descriptor {digest} has negative size {}", self.size),
            ));
        }
        Ok(Child {
            digest,
            size: Some(self.size as u64),
            may_be_absent: self.urls.is_some_and(|u| !u.is_empty()) || self.data.is_some(),
            media_type: self.media_type,
        })
    }
}

/// Parses `bytes` as a manifest.
///
/// With `declared` naming a manifest media type (from a descriptor or the caller), the bytes must
/// be a valid manifest and errors are returned. With `declared` naming any other type, the bytes
/// are not a manifest (`Ok(None)`). With no declared type the shape decides, and a document that
/// does not parse is simply not a manifest.
///
/// ```
/// let doc = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json",
///   "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},
///   "layers":[]}"#;
/// let m = ocistore::manifest::parse(doc, None)?.expect("a manifest");
/// assert_eq!(m.kind, ocistore::manifest::Kind::OciManifest);
/// assert_eq!(m.children.len(), 1);
/// assert_eq!(m.artifact_type.as_deref(), Some("application/vnd.oci.image.config.v1+json"));
/// # Ok::<(), ocistore::Error>(())
/// ```
pub fn parse(bytes: &[u8], declared: Option<&str>) -> Result<Option<Parsed>> {
    let strict = match declared {
        Some(mt) => match classify(mt) {
            Some(_) => true,
            None => return Ok(None),
        },
        None => false,
    };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return if strict {
            Err(Error::manifest(None, "not a JSON object"))
        } else {
            Ok(None)
        };
    }
    if strict {
        check_json(bytes).map_err(|reason| Error::manifest(None, reason))?;
    }
    let doc: Doc = match serde_json::from_slice(bytes) {
        Ok(doc) => doc,
        Err(e) if strict => return Err(Error::manifest(None, e.to_string())),
        Err(_) => return Ok(None),
    };
    let own = doc.media_type.as_deref().and_then(classify);
    if strict
        && let (Some(own), Some(declared_kind)) = (own, declared.and_then(classify))
        && own.family() != declared_kind.family()
    {
        return Err(Error::manifest(
            None,
            format!(
                "declared as {} but its mediaType is {}",
                declared.unwrap_or_default(),
                doc.media_type.as_deref().unwrap_or_default()
            ),
        ));
    }
    let kind = own
        .or_else(|| declared.and_then(classify))
        .or_else(|| infer_kind(&doc));
    let Some(kind) = kind else {
        return Ok(None);
    };
    match build(doc, kind, declared) {
        Ok(p) => Ok(Some(p)),
        Err(e) if strict => Err(e),
        Err(_) => Ok(None),
    }
}

/// Checks that `bytes` are one JSON document that every reader reads the same way: UTF-8, at
/// most 128 levels deep, and no object with a key twice (readers differ on which value wins).
/// Returns the reason otherwise, with the position when known.
pub(crate) fn check_json(bytes: &[u8]) -> std::result::Result<(), String> {
    use serde::de::{Error as _, MapAccess, SeqAccess, Visitor};
    struct Checked;
    impl<'de> Deserialize<'de> for Checked {
        fn deserialize<D: serde::Deserializer<'de>>(
            d: D,
        ) -> std::result::Result<Checked, D::Error> {
            d.deserialize_any(Checked)
        }
    }
    impl<'de> Visitor<'de> for Checked {
        type Value = Checked;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_unit<E>(self) -> std::result::Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Checked, A::Error> {
            while a.next_element::<Checked>()?.is_some() {}
            Ok(Checked)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> std::result::Result<Checked, A::Error> {
            let mut keys = std::collections::HashSet::new();
            while let Some(k) = a.next_key::<String>()? {
                if keys.contains(&k) {
                    return Err(A::Error::custom(format!("duplicate key {k:?}")));
                }
                a.next_value::<Checked>()?;
                keys.insert(k);
            }
            Ok(Checked)
        }
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(format!("not valid UTF-8 (at byte {})", e.valid_up_to()));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let checked = Checked::deserialize(&mut de).and_then(|_| de.end());
    checked.map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix("recursion limit exceeded") {
            Some(at) => format!("nested too deeply (more than 128 levels){at}"),
            None if text.starts_with("duplicate key") => text,
            None => format!("not valid JSON: {text}"),
        }
    })
}

fn infer_kind(doc: &Doc) -> Option<Kind> {
    let docker = |mt: Option<&String>| mt.is_some_and(|m| m.starts_with("application/vnd.docker."));
    if let Some(list) = &doc.manifests {
        let all_docker = !list.is_empty() && list.iter().all(|d| docker(d.media_type.as_ref()));
        return Some(if all_docker {
            Kind::DockerManifestList
        } else {
            Kind::OciIndex
        });
    }
    if let Some(config) = &doc.config {
        return Some(if docker(config.media_type.as_ref()) {
            Kind::DockerManifest
        } else {
            Kind::OciManifest
        });
    }
    if doc.fs_layers.is_some() {
        return Some(Kind::DockerSchema1);
    }
    if doc.blobs.is_some() && (doc.artifact_type.is_some() || doc.subject.is_some()) {
        return Some(Kind::ArtifactManifest);
    }
    None
}

fn build(doc: Doc, kind: Kind, declared: Option<&str>) -> Result<Parsed> {
    let mut children = Vec::new();
    let mut config_type = None;
    match kind {
        Kind::OciManifest | Kind::DockerManifest => {
            let config = doc
                .config
                .ok_or_else(|| Error::manifest(None, "image manifest has no config"))?;
            config_type = config.media_type.clone();
            children.push(config.child()?);
            for layer in doc.layers.unwrap_or_default() {
                children.push(layer.child()?);
            }
        }
        Kind::OciIndex | Kind::DockerManifestList => {
            for m in doc.manifests.unwrap_or_default() {
                children.push(m.child()?);
            }
        }
        Kind::ArtifactManifest => {
            for b in doc.blobs.unwrap_or_default() {
                children.push(b.child()?);
            }
        }
        Kind::DockerSchema1 => {
            for l in doc.fs_layers.unwrap_or_default() {
                let digest = Digest::parse(&l.blob_sum)?;
                // Schema 1 repeats a layer once per history entry: one edge is enough.
                if !children.iter().any(|c: &Child| c.digest == digest) {
                    children.push(Child {
                        digest,
                        size: None,
                        media_type: None,
                        may_be_absent: false,
                    });
                }
            }
        }
    }
    let subject = doc
        .subject
        .map(|s| s.child())
        .transpose()?
        .map(|c| c.digest);
    let media_type = doc
        .media_type
        .filter(|m| !m.is_empty())
        .or_else(|| {
            declared
                .filter(|d| classify(d).is_some())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| kind.media_type().to_owned());
    Ok(Parsed {
        kind,
        media_type,
        artifact_type: doc.artifact_type.filter(|a| !a.is_empty()).or(config_type),
        annotations: doc.annotations.unwrap_or_default(),
        subject,
        children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn kinds_by_shape() {
        let idx = format!(
            r#"{{"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":2}}]}}"#
        );
        assert_eq!(
            parse(idx.as_bytes(), None).unwrap().unwrap().kind,
            Kind::OciIndex
        );
        let s1 = format!(
            r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{D}"}},{{"blobSum":"{D}"}}]}}"#
        );
        let p = parse(s1.as_bytes(), None).unwrap().unwrap();
        assert_eq!((p.kind, p.children.len()), (Kind::DockerSchema1, 1));
        let art = format!(
            r#"{{"mediaType":"{OCI_ARTIFACT_MANIFEST}","artifactType":"x/y","blobs":[],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":2}}}}"#
        );
        let p = parse(art.as_bytes(), None).unwrap().unwrap();
        assert_eq!(p.subject.unwrap().as_str(), D);
        assert_eq!(p.artifact_type.as_deref(), Some("x/y"));
        assert!(
            parse(br#"{"architecture":"amd64","config":{"Env":[]}}"#, None)
                .unwrap()
                .is_none()
        );
        assert!(parse(b"\x1f\x8b", None).unwrap().is_none());
    }

    #[test]
    fn strict_when_declared() {
        assert!(parse(b"[]", Some(OCI_MANIFEST)).is_err());
        let bad_subject = format!(r#"{{"config":{{"digest":"{D}","size":2}},"subject":"nope"}}"#);
        assert!(parse(bad_subject.as_bytes(), Some(OCI_MANIFEST)).is_err());
        let negative = format!(r#"{{"config":{{"digest":"{D}","size":-1}}}}"#);
        assert!(parse(negative.as_bytes(), Some(OCI_MANIFEST)).is_err());
        assert!(
            parse(b"{}", Some("application/octet-stream"))
                .unwrap()
                .is_none()
        );
    }
}
