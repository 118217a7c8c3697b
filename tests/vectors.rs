//! image-spec's own schema test vectors (tests/data/image-spec-vectors, copied from
//! opencontainers/image-spec at 13cff54, Apache-2.0) run against the manifest parser, the digest
//! grammar and a real store.

mod common;

use std::path::PathBuf;

use ocistore::manifest::{self, Kind};
use ocistore::{Digest, Options, PutOptions, Store};
use serde::Deserialize;
use serde_json::Value;

const DESCRIPTOR: &str = "application/vnd.oci.descriptor.v1+json";

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    media_type: String,
    valid: bool,
    body: String,
    #[serde(default)]
    body_validated: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

impl Case {
    /// The text the upstream test validated (the Docker→OCI rewrite for backwards-compatibility
    /// cases, else the body).
    fn validated(&self) -> &str {
        self.body_validated.as_deref().unwrap_or(&self.body)
    }

    fn must_reject(&self) -> bool {
        self.class.as_deref() == Some("must_reject")
    }

    fn schema_strict(&self) -> bool {
        self.class.as_deref() == Some("schema_strict")
    }

    fn is_manifest_type(&self) -> bool {
        self.media_type == manifest::OCI_MANIFEST || self.media_type == manifest::OCI_INDEX
    }
}

fn cases() -> Vec<Case> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/image-spec-vectors/cases.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases: Vec<Case> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(cases.len(), 74, "the copy of cases.json holds 74 cases");
    for c in &cases {
        assert!(
            c.valid || c.must_reject() || c.schema_strict(),
            "{}: invalid without a class",
            c.id
        );
    }
    cases
}

#[test]
fn manifest_and_index_cases_parse_as_upstream_says() {
    let (mut valid, mut rejected, mut strict_ok, mut strict_err) = (0, 0, 0, 0);
    for c in cases().iter().filter(|c| c.is_manifest_type()) {
        let mt = c.media_type.as_str();
        if c.valid {
            let parsed = manifest::parse(c.validated().as_bytes(), Some(mt))
                .unwrap_or_else(|e| panic!("{}: valid case rejected: {e}", c.id))
                .unwrap_or_else(|| panic!("{}: valid case not taken as a manifest", c.id));
            let want = if mt == manifest::OCI_INDEX {
                Kind::OciIndex
            } else {
                Kind::OciManifest
            };
            assert_eq!(parsed.kind, want, "{}", c.id);
            assert_eq!(parsed.media_type, mt, "{}", c.id);
            // The raw body (Docker types in the backwards-compatibility cases) is a manifest too.
            let raw = manifest::parse(c.body.as_bytes(), Some(mt))
                .unwrap_or_else(|e| panic!("{}: raw body rejected: {e}", c.id))
                .unwrap_or_else(|| panic!("{}: raw body not taken as a manifest", c.id));
            assert_eq!(raw.children.len(), parsed.children.len(), "{}", c.id);
            // Without a declared type, the shape decides, the same way.
            let undeclared = manifest::parse(c.validated().as_bytes(), None)
                .unwrap()
                .expect("a manifest");
            assert_eq!(undeclared.kind, parsed.kind, "{}", c.id);
            valid += 1;
        } else if c.must_reject() {
            let r = manifest::parse(c.body.as_bytes(), Some(mt));
            assert!(r.is_err(), "{} ({:?}) accepted: {r:?}", c.id, c.reason);
            rejected += 1;
        } else {
            match manifest::parse(c.body.as_bytes(), Some(mt)) {
                Ok(_) => strict_ok += 1,
                Err(_) => strict_err += 1,
            }
        }
    }
    println!(
        "manifest/index cases: {valid} valid accepted, {rejected} must_reject rejected, \
         schema_strict {strict_ok} accepted / {strict_err} rejected"
    );
    assert_eq!(valid, 20);
    assert_eq!(rejected, 7);
    assert_eq!(strict_ok + strict_err, 6);
}

/// Whether an invalid descriptor case is about its digest.
fn about_digest(c: &Case) -> bool {
    c.reason.as_deref().is_some_and(|r| r.contains("digest"))
}

#[test]
fn descriptor_digests() {
    let (mut valid, mut rejected, mut other) = (0, 0, 0);
    for c in cases().iter().filter(|c| c.media_type == DESCRIPTOR) {
        let doc: Value = serde_json::from_str(&c.body).unwrap_or_else(|e| panic!("{}: {e}", c.id));
        let digest = doc.get("digest").and_then(Value::as_str);
        let parsed = digest.map(Digest::parse);
        if c.valid {
            let d = parsed
                .unwrap_or_else(|| panic!("{}: valid case has no digest", c.id))
                .unwrap_or_else(|e| panic!("{}: valid digest rejected: {e}", c.id));
            assert_eq!(d.as_str(), digest.unwrap());
            valid += 1;
        } else if c.must_reject() && about_digest(c) {
            assert!(
                !matches!(parsed, Some(Ok(_))),
                "{} ({:?}): digest {digest:?} accepted",
                c.id,
                c.reason
            );
            rejected += 1;
        } else {
            // Not about the digest: whatever the verdict, parsing must not panic.
            let _ = parsed;
            other += 1;
        }
    }
    println!(
        "descriptor cases: {valid} valid digests accepted, {rejected} bad digests rejected, {other} others"
    );
    assert_eq!(valid, 17);
    assert_eq!(rejected, 6);
}

/// A descriptor case as the config of an image manifest.
fn wrap_as_config(descriptor_body: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[]}}"#,
        manifest::OCI_MANIFEST,
        descriptor_body.trim()
    )
    .into_bytes()
}

#[test]
fn descriptor_cases_inside_a_manifest() {
    let (mut valid, mut rejected, mut strict) = (0, 0, 0);
    for c in cases().iter().filter(|c| c.media_type == DESCRIPTOR) {
        let bytes = wrap_as_config(&c.body);
        let r = manifest::parse(&bytes, Some(manifest::OCI_MANIFEST));
        if c.valid {
            let p = r
                .unwrap_or_else(|e| panic!("{}: valid descriptor rejected as config: {e}", c.id))
                .unwrap();
            assert_eq!(p.children.len(), 1, "{}", c.id);
            valid += 1;
        } else if c.must_reject() {
            assert!(
                r.is_err(),
                "{} ({:?}): accepted as config: {r:?}",
                c.id,
                c.reason
            );
            rejected += 1;
        } else {
            strict += 1;
        }
    }
    println!(
        "descriptors as config: {valid} valid accepted, {rejected} must_reject rejected, {strict} schema_strict"
    );
    assert_eq!((valid, rejected), (17, 9));
}

#[test]
fn put_every_manifest_case_into_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let (mut stored, mut refused, mut strict_ok, mut strict_err) = (0, 0, 0, 0);
    for c in cases().iter().filter(|c| c.is_manifest_type()) {
        let mt = c.media_type.clone();
        let opts = PutOptions {
            media_type: Some(mt.clone()),
            ..PutOptions::default()
        };
        let before = store.stats().unwrap();
        if c.valid {
            let body = c.validated().as_bytes();
            let put = store
                .put(&mut &body[..], &opts)
                .unwrap_or_else(|e| panic!("{}: valid case refused: {e}", c.id));
            assert_eq!(put.digest.as_str(), common::sha256_digest(body), "{}", c.id);
            assert_eq!(put.size, body.len() as u64);
            assert_eq!(put.media_type.as_deref(), Some(mt.as_str()), "{}", c.id);
            // The exact bytes, never re-serialized.
            assert_eq!(store.read_all(&put.digest).unwrap(), body, "{}", c.id);
            let info = store
                .manifest_info(&put.digest)
                .unwrap()
                .expect("recorded as a manifest");
            assert_eq!(info.media_type, mt, "{}", c.id);
            stored += 1;
        } else if c.must_reject() {
            let r = store.put(&mut c.body.as_bytes(), &opts);
            assert!(r.is_err(), "{} ({:?}) stored: {r:?}", c.id, c.reason);
            assert_eq!(
                store.stats().unwrap(),
                before,
                "{}: a refused put changed the index",
                c.id
            );
            let digest = Digest::sha256(c.body.as_bytes());
            assert!(store.blob_info(&digest).unwrap().is_none(), "{}", c.id);
            assert!(
                !dir.path().join(digest.blob_path()).exists(),
                "{}: blob file left",
                c.id
            );
            refused += 1;
        } else {
            match store.put(&mut c.body.as_bytes(), &opts) {
                Ok(_) => strict_ok += 1,
                Err(_) => {
                    assert_eq!(store.stats().unwrap(), before, "{}", c.id);
                    strict_err += 1;
                }
            }
        }
        let left = common::ingest_files(dir.path());
        assert!(left.is_empty(), "{}: files left in ingest/: {left:?}", c.id);
    }
    println!(
        "store: {stored} valid stored, {refused} must_reject refused, schema_strict {strict_ok} stored / {strict_err} refused"
    );
    assert_eq!((stored, refused), (20, 7));
    assert_eq!(strict_ok + strict_err, 6);

    // The store reopens cleanly with what it holds.
    let stats = store.stats().unwrap();
    drop(store);
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert!(!store.open_report().recovered);
    assert_eq!(store.stats().unwrap(), stats);
}
