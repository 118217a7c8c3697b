//! A store filled with referrers built from the input (subject fields, cosign `.sig`/`.att` tags,
//! artifact types, config media types, annotations, three manifest kinds), then queried with and
//! without an artifact-type filter, directly and transitively. Every answer must list exactly the
//! referrers a small model of the links gives, each once, described as they were put, and must
//! be a valid OCI image index.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Arbitrary, Unstructured};
use ocistore::manifest::{self, Kind, OCI_ARTIFACT_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use ocistore::{Digest, ReferrersQuery, Store};
use serde_json::{Map, Value, json};

const ARTIFACT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/vnd.example.sig"),
    Some("application/spdx+json"),
    Some(""),
];
const CONFIG_TYPES: [&str; 3] = [
    "application/vnd.oci.empty.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.example.sig",
];
const ANNOTATION_KEYS: [&str; 3] = [
    "org.opencontainers.image.created",
    "dev.cosignproject.cosign/signature",
    "a",
];
const COSIGN: [&str; 2] = ["sig", "att"];

#[derive(Arbitrary, Debug)]
struct Referrer {
    /// Index into the subject pool (fixed subjects, then the referrers put so far).
    subject: u8,
    /// 0: image manifest, 1: image index, 2: artifact manifest.
    kind: u8,
    artifact_type: u8,
    config_type: u8,
    annotations: Vec<(u8, String)>,
    /// Bit 0: a `subject` field; bits 1-2: a cosign tag (none, `.sig`, `.att`).
    link: u8,
}

#[derive(Arbitrary, Debug)]
struct Query {
    subject: u8,
    /// 0: no filter, else an artifact type or config media type.
    filter: u8,
    transitive: bool,
}

/// What a referrer was put as.
struct Info {
    media_type: &'static str,
    size: u64,
    artifact_type: Option<String>,
    annotations: BTreeMap<String, String>,
}

#[derive(Default)]
struct Model {
    info: BTreeMap<Digest, Info>,
    /// `subject` fields: (subject, referrer).
    fields: BTreeSet<(Digest, Digest)>,
    /// Cosign tags: tag -> (subject, referrer).
    tags: BTreeMap<String, (Digest, Digest)>,
}

impl Model {
    fn referrers_of(&self, s: &Digest) -> BTreeSet<Digest> {
        let tagged = self.tags.values();
        self.fields
            .iter()
            .chain(tagged)
            .filter(|(subject, _)| subject == s)
            .map(|(_, r)| r.clone())
            .collect()
    }

    fn answer(&self, subject: &Digest, q: &ReferrersQuery) -> BTreeSet<Digest> {
        let mut seen = BTreeSet::from([subject.clone()]);
        let mut level = vec![subject.clone()];
        let mut out = BTreeSet::new();
        while !level.is_empty() {
            let mut next = Vec::new();
            for s in &level {
                for r in self.referrers_of(s) {
                    if !seen.insert(r.clone()) {
                        continue;
                    }
                    let t = self.info[&r].artifact_type.as_ref();
                    if q.artifact_type.as_ref().is_none_or(|f| Some(f) == t) {
                        out.insert(r.clone());
                    }
                    if q.transitive {
                        next.push(r);
                    }
                }
            }
            level = next;
        }
        out
    }
}

fn document(r: &Referrer, subject: &Digest, config: &Digest) -> (&'static str, Value, Info) {
    let artifact_type = ARTIFACT_TYPES[usize::from(r.artifact_type) % ARTIFACT_TYPES.len()];
    let config_type = CONFIG_TYPES[usize::from(r.config_type) % CONFIG_TYPES.len()];
    let annotations: BTreeMap<String, String> = r
        .annotations
        .iter()
        .take(4)
        .map(|(k, v)| {
            let key = ANNOTATION_KEYS[usize::from(*k) % ANNOTATION_KEYS.len()];
            (key.to_owned(), v.clone())
        })
        .collect();
    let (media_type, mut doc) = match r.kind % 3 {
        0 => (
            OCI_MANIFEST,
            json!({"config": {"mediaType": config_type, "digest": config, "size": 2}, "layers": []}),
        ),
        1 => (OCI_INDEX, json!({"manifests": []})),
        _ => (OCI_ARTIFACT_MANIFEST, json!({"blobs": []})),
    };
    let obj = doc.as_object_mut().expect("an object");
    obj.insert("schemaVersion".into(), 2.into());
    obj.insert("mediaType".into(), media_type.into());
    if let Some(t) = artifact_type {
        obj.insert("artifactType".into(), t.into());
    }
    if r.link & 1 == 1 {
        obj.insert(
            "subject".into(),
            json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": 2}),
        );
    }
    if !annotations.is_empty() {
        let map: Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        obj.insert("annotations".into(), Value::Object(map));
    }
    let expected_type = artifact_type
        .filter(|t| !t.is_empty())
        .or((media_type == OCI_MANIFEST).then_some(config_type))
        .map(str::to_owned);
    let info = Info {
        media_type,
        size: 0,
        artifact_type: expected_type,
        annotations,
    };
    (media_type, doc, info)
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(referrers) = Vec::<Referrer>::arbitrary(&mut u) else {
        return;
    };
    let Ok(queries) = Vec::<Query>::arbitrary(&mut u) else {
        return;
    };
    let dir = super::scratch();
    let store = Store::init(dir.path(), &super::options()).expect("a new store");
    let config = super::put(&store, b"{}", None).expect("a config");
    let mut pool = vec![config.clone(), Digest::sha256(b"never stored")];
    for n in 0..2 {
        let image = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG_TYPES[1], "digest": config, "size": 2},
            "layers": [], "annotations": {"n": n.to_string()}});
        let bytes = serde_json::to_vec(&image).expect("JSON");
        pool.push(super::put(&store, &bytes, Some(OCI_MANIFEST)).expect("an image"));
    }

    let mut model = Model::default();
    for r in referrers.iter().take(8) {
        let subject = pool[usize::from(r.subject) % pool.len()].clone();
        let (media_type, doc, mut info) = document(r, &subject, &config);
        let bytes = serde_json::to_vec(&doc).expect("JSON");
        info.size = bytes.len() as u64;
        let digest = match super::put(&store, &bytes, Some(media_type)) {
            Ok(d) => d,
            Err(e) => panic!("a well-formed referrer was refused: {e}"),
        };
        if r.link & 1 == 1 {
            model.fields.insert((subject.clone(), digest.clone()));
        }
        if let Some(suffix) = COSIGN.get(usize::from(r.link >> 1) % 3) {
            let tag = format!("sha256-{}.{suffix}", subject.encoded());
            store.tag(digest.as_str(), &tag).expect("a cosign tag");
            model.tags.insert(tag, (subject, digest.clone()));
        }
        model.info.insert(digest.clone(), info);
        pool.push(digest);
    }

    for q in queries.iter().take(8) {
        let subject = &pool[usize::from(q.subject) % pool.len()];
        let filter = match usize::from(q.filter) % 7 {
            0 => None,
            i @ 1..=3 => ARTIFACT_TYPES[i].map(str::to_owned),
            i => Some(CONFIG_TYPES[i - 4].to_owned()),
        };
        let query = ReferrersQuery {
            artifact_type: filter.clone(),
            transitive: q.transitive,
        };
        let answer = store
            .referrers(subject, &query)
            .expect("a referrers answer");
        let listed: Vec<Digest> = answer
            .manifests
            .iter()
            .map(|m| Digest::parse(&m.digest).expect("a listed digest parses"))
            .collect();
        let set: BTreeSet<Digest> = listed.iter().cloned().collect();
        assert_eq!(
            set.len(),
            listed.len(),
            "a referrer listed twice: {listed:?}"
        );
        assert_eq!(set, model.answer(subject, &query), "{query:?} of {subject}");
        for m in &answer.manifests {
            let info = &model.info[&Digest::parse(&m.digest).expect("a digest")];
            assert_eq!(m.media_type, info.media_type);
            assert_eq!(m.size, info.size);
            assert_eq!(m.artifact_type, info.artifact_type);
            assert_eq!(m.annotations, info.annotations);
            if let Some(f) = &filter {
                assert_eq!(m.artifact_type.as_ref(), Some(f));
            }
        }
        let filtered: &[&str] = if filter.is_some() {
            &["artifactType"]
        } else {
            &[]
        };
        assert_eq!(answer.filters_applied, filtered);

        let json = serde_json::to_vec(&answer).expect("the answer serializes");
        let index = manifest::parse(&json, Some(OCI_INDEX))
            .unwrap_or_else(|e| panic!("the answer is not an image index: {e}"))
            .expect("an image index");
        assert_eq!(index.kind, Kind::OciIndex);
        assert_eq!(
            index
                .children
                .iter()
                .map(|c| c.digest.clone())
                .collect::<Vec<_>>(),
            listed
        );
        let v: Value = serde_json::from_slice(&json).expect("JSON");
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_INDEX);
        for m in v["manifests"].as_array().expect("a manifests array") {
            assert!(m["mediaType"].is_string() && m["size"].is_u64(), "{m}");
            assert!(
                m.get("artifactType")
                    .is_none_or(|t| t.as_str().is_some_and(|t| !t.is_empty()))
            );
            assert!(
                m.get("annotations")
                    .is_none_or(|a| a.as_object().is_some_and(|a| !a.is_empty()))
            );
        }
    }
}
