//! A whole store against a small model. The input is a sequence of operations (put a blob, put an
//! image over blobs, put a referrer with a subject, tag, untag, delete by tag or digest, collect
//! with no grace, pin, unpin), run on a real store in a temporary directory and on the model.
//! After each operation both must agree on which operations succeed, on what every tag resolves
//! to and on which digests are present; a collection must remove exactly the model's garbage.
//!
//! The model is the liveness rule of the default policy (every referrer is hard):
//!
//! - a referrer is a present manifest with a `subject`; it links its subject to itself;
//! - roots are pins (present or not) and tags, except tags on referrers;
//! - live is what roots reach through children of present manifests and through referrer links;
//!   garbage is every present digest that is not live (with no grace, a referrer whose subjects
//!   are all absent is garbage too).
//!
//! Deleting a manifest removes it and, recursively, the present referrers of what it removes,
//! with their tags and pins. Deleting a blob is refused while a present manifest lists it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use ocistore::gc::{DeleteOptions, GcOptions, Removal};
use ocistore::manifest::OCI_MANIFEST;
use ocistore::{Digest, Store};
use serde_json::{Value, json};

const TAGS: [&str; 3] = ["latest", "v1", "v2"];
const ARTIFACT_TYPES: [&str; 2] = ["application/vnd.example.sig", "application/spdx+json"];
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Layers and configs: the plain blobs operations choose from.
const LAYERS: usize = 6;
const CONFIGS: usize = 3;

#[derive(Arbitrary, Debug)]
enum Op {
    PutBlob(u8),
    PutImage {
        config: u8,
        layers: Vec<u8>,
        salt: u8,
    },
    PutReferrer {
        subject: u8,
        artifact_type: u8,
        salt: u8,
    },
    Tag {
        target: u8,
        tag: u8,
    },
    Untag(u8),
    DeleteTag(u8),
    DeleteDigest(u8),
    Gc,
    Pin(u8),
    Unpin(u8),
}

fn blob(i: usize) -> Vec<u8> {
    if i < LAYERS {
        format!("layer {i}").into_bytes()
    } else {
        format!(r#"{{"architecture":"amd64","variant":"v{}"}}"#, i - LAYERS).into_bytes()
    }
}

#[derive(Default)]
struct Model {
    present: BTreeSet<Digest>,
    /// Every manifest put so far: its children and subject.
    manifests: BTreeMap<Digest, (Vec<Digest>, Option<Digest>)>,
    tags: BTreeMap<String, Digest>,
    pins: BTreeSet<Digest>,
    /// Every digest put so far, in order: what operations name by index.
    known: Vec<Digest>,
}

impl Model {
    fn is_manifest(&self, d: &Digest) -> bool {
        self.present.contains(d) && self.manifests.contains_key(d)
    }

    fn subject(&self, d: &Digest) -> Option<&Digest> {
        self.manifests
            .get(d)?
            .1
            .as_ref()
            .filter(|_| self.present.contains(d))
    }

    /// Present referrers of `s`.
    fn referrers(&self, s: &Digest) -> Vec<Digest> {
        self.present
            .iter()
            .filter(|r| self.subject(r) == Some(s))
            .cloned()
            .collect()
    }

    fn garbage(&self) -> BTreeSet<Digest> {
        let tagged = self.tags.values().filter(|d| self.subject(d).is_none());
        let mut todo: Vec<Digest> = tagged.chain(&self.pins).cloned().collect();
        let mut live = BTreeSet::new();
        while let Some(d) = todo.pop() {
            if !live.insert(d.clone()) {
                continue;
            }
            if self.is_manifest(&d) {
                todo.extend(self.manifests[&d].0.iter().cloned());
            }
            todo.extend(self.referrers(&d));
        }
        self.present.difference(&live).cloned().collect()
    }

    fn remove(&mut self, gone: &BTreeSet<Digest>) {
        self.present.retain(|d| !gone.contains(d));
        self.tags.retain(|_, d| !gone.contains(d));
        self.pins.retain(|d| !gone.contains(d));
    }

    /// What deleting `d` removes, or `None` when the store refuses (or does not hold it).
    fn delete(&self, d: &Digest) -> Option<BTreeSet<Digest>> {
        if !self.present.contains(d) {
            return None;
        }
        if !self.is_manifest(d) {
            let listed = self
                .present
                .iter()
                .any(|m| self.is_manifest(m) && self.manifests[m].0.contains(d));
            return (!listed).then(|| BTreeSet::from([d.clone()]));
        }
        let mut doomed = BTreeSet::new();
        let mut todo = vec![d.clone()];
        while let Some(x) = todo.pop() {
            if doomed.insert(x.clone()) {
                todo.extend(self.referrers(&x));
            }
        }
        Some(doomed)
    }

    fn pick(&self, i: u8) -> Option<Digest> {
        (!self.known.is_empty()).then(|| self.known[usize::from(i) % self.known.len()].clone())
    }

    fn put(&mut self, d: Digest) {
        if !self.known.contains(&d) {
            self.known.push(d.clone());
        }
        self.present.insert(d);
    }
}

fn put_manifest(store: &Store, model: &mut Model, doc: Value, children: Vec<Digest>) {
    let subject = doc["subject"]["digest"]
        .as_str()
        .map(|s| s.parse().expect("a digest"));
    let bytes = serde_json::to_vec(&doc).expect("JSON");
    let d = super::put(store, &bytes, Some(OCI_MANIFEST)).expect("a manifest put");
    model.manifests.insert(d.clone(), (children, subject));
    model.put(d);
}

fn digests(removals: &[Removal]) -> BTreeSet<Digest> {
    removals
        .iter()
        .map(|r| r.digest.parse().expect("a removed digest parses"))
        .collect()
}

fn apply(store: &Store, model: &mut Model, op: &Op) {
    let tag = |i: &u8| TAGS[usize::from(*i) % TAGS.len()];
    let delete_options = DeleteOptions::default();
    match op {
        Op::PutBlob(i) => {
            let bytes = blob(usize::from(*i) % (LAYERS + CONFIGS));
            model.put(super::put(store, &bytes, None).expect("a blob put"));
        }
        Op::PutImage {
            config,
            layers,
            salt,
        } => {
            let descriptor = |media_type: &str, bytes: Vec<u8>| {
                let d = Digest::sha256(&bytes);
                (
                    json!({"mediaType": media_type, "digest": d, "size": bytes.len()}),
                    d,
                )
            };
            let config = blob(LAYERS + usize::from(*config) % CONFIGS);
            let (config, config_digest) =
                descriptor("application/vnd.oci.image.config.v1+json", config);
            let (layers, mut children): (Vec<Value>, Vec<Digest>) = layers
                .iter()
                .take(3)
                .map(|l| descriptor(LAYER, blob(usize::from(*l) % LAYERS)))
                .unzip();
            let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                "layers": layers, "annotations": {"salt": salt.to_string()}});
            children.insert(0, config_digest);
            put_manifest(store, model, doc, children);
        }
        Op::PutReferrer {
            subject,
            artifact_type,
            salt,
        } => {
            let subject = model
                .pick(*subject)
                .unwrap_or_else(|| Digest::sha256(b"absent"));
            let empty = Digest::sha256(b"{}");
            let artifact_type = ARTIFACT_TYPES[usize::from(*artifact_type) % ARTIFACT_TYPES.len()];
            let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "artifactType": artifact_type,
                "config": {"mediaType": EMPTY, "digest": empty, "size": 2}, "layers": [],
                "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 2},
                "annotations": {"salt": salt.to_string()}});
            put_manifest(store, model, doc, vec![empty]);
        }
        Op::Tag { target, tag: t } => {
            let Some(d) = model.pick(*target) else { return };
            let result = store.tag(d.as_str(), tag(t));
            assert_eq!(result.is_ok(), model.is_manifest(&d), "tag {d}: {result:?}");
            if result.is_ok() {
                model.tags.insert(tag(t).to_owned(), d);
            }
        }
        Op::Untag(t) => {
            let result = store.untag(tag(t));
            let expected = model.tags.remove(tag(t));
            assert_eq!(result.ok(), expected, "untag {}", tag(t));
        }
        Op::DeleteTag(t) => {
            let result = store.delete(tag(t), &delete_options);
            let expected = model.tags.remove(tag(t));
            assert_eq!(
                result.is_ok(),
                expected.is_some(),
                "delete {}: {result:?}",
                tag(t)
            );
        }
        Op::DeleteDigest(i) => {
            let Some(d) = model.pick(*i) else { return };
            let result = store.delete(d.as_str(), &delete_options);
            let expected = model.delete(&d);
            assert_eq!(result.is_ok(), expected.is_some(), "delete {d}: {result:?}");
            if let (Ok(report), Some(doomed)) = (result, expected) {
                assert_eq!(digests(&report.removed), doomed, "delete {d}");
                model.remove(&doomed);
            }
        }
        Op::Gc => {
            let garbage = model.garbage();
            let opts = GcOptions {
                grace: Duration::ZERO,
                ..GcOptions::default()
            };
            let report = store.gc(&opts).expect("a collection");
            assert_eq!(
                digests(&report.removed),
                garbage,
                "collected other than the model's garbage"
            );
            model.remove(&garbage);
            for d in &model.present {
                store
                    .read_all(d)
                    .unwrap_or_else(|e| panic!("live {d} unreadable: {e}"));
            }
        }
        Op::Pin(i) => {
            let Some(d) = model.pick(*i) else { return };
            let changed = store.pin(&d).expect("a pin");
            assert_eq!(changed, model.pins.insert(d.clone()), "pin {d}");
        }
        Op::Unpin(i) => {
            let Some(d) = model.pick(*i) else { return };
            let changed = store.unpin(&d).expect("an unpin");
            assert_eq!(changed, model.pins.remove(&d), "unpin {d}");
        }
    }
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    let dir = super::scratch();
    let store = Store::init(dir.path(), &super::options()).expect("a new store");
    let mut model = Model::default();
    for (n, op) in ops.iter().take(32).enumerate() {
        apply(&store, &mut model, op);
        for t in TAGS {
            let resolved = store.resolve(t).ok();
            assert_eq!(
                resolved.as_ref(),
                model.tags.get(t),
                "tag {t} after op {n} {op:?}"
            );
        }
        for d in &model.known {
            let present = store.blob_info(d).expect("blob info").is_some();
            assert_eq!(
                present,
                model.present.contains(d),
                "{d} after op {n} {op:?}"
            );
        }
    }
}
