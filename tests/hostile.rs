//! Hostile input: each case gets a one-line error that names the problem (from the library and,
//! where a command is natural, from the CLI with exit status 1), writes nothing (the layout's
//! tree, its index.json and the store's entries are as before) and loses nothing (what was stored
//! before is still there and reads back with its digest).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use ocistore::gc::{DeleteOptions, GcOptions, Mode, Policy, Strategy};
use ocistore::{Counts, Digest, Error, ListEntry, Options, PutOptions, ReferrersQuery, Store};
use serde_json::Value;
use tempfile::TempDir;

/// A store holding one tagged image (config and layer) and a signature on it.
struct Fixture {
    dir: TempDir,
    image: Digest,
    config: Digest,
    layer: Digest,
    layer_bytes: Vec<u8>,
    signature: Digest,
}

const LAYER: &[u8] = b"\x1f\x8b\x08\x00layer that must survive";

fn blob(store: &Store, bytes: &[u8]) -> Value {
    let p = store.put(&mut &bytes[..], &PutOptions::default()).unwrap();
    descriptor(OCI_LAYER_GZIP, p.digest.as_str(), p.size)
}

fn manifest_opts() -> PutOptions {
    PutOptions {
        media_type: Some(OCI_MANIFEST.into()),
        ..Default::default()
    }
}

fn put_manifest(store: &Store, bytes: &[u8]) -> ocistore::Result<ocistore::Put> {
    store.put(&mut &bytes[..], &manifest_opts())
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let mut config = blob(&store, br#"{"architecture":"amd64","os":"linux"}"#);
    config["mediaType"] = OCI_CONFIG.into();
    let layer = blob(&store, LAYER);
    let image_bytes = manifest_json(config.clone(), vec![layer.clone()], None, None, &[]);
    let image = put_manifest(&store, &image_bytes).unwrap();
    store.tag(image.digest.as_str(), "v1").unwrap();
    let subject = descriptor(OCI_MANIFEST, image.digest.as_str(), image.size);
    let sig_bytes = manifest_json(
        config.clone(),
        vec![],
        Some(subject),
        Some(SIGNATURE_TYPE),
        &[],
    );
    let signature = put_manifest(&store, &sig_bytes).unwrap().digest;
    let digest = |v: &Value| Digest::parse(v["digest"].as_str().unwrap()).unwrap();
    Fixture {
        image: image.digest,
        config: digest(&config),
        layer: digest(&layer),
        layer_bytes: LAYER.to_vec(),
        signature,
        dir,
    }
}

/// What a directory tree holds, by relative path: kind, size and a hash of the content (symlinks
/// are described by their target, never followed). `.ocistore/` is the store's own.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new(".ocistore") {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("symlink -> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path);
                "dir".to_owned()
            } else {
                let bytes = fs::read(&path).unwrap();
                format!("file {} {}", bytes.len(), sha256_hex(&bytes))
            };
            out.insert(rel, what);
        }
    }
    out
}

/// The layout's tree, its index.json, and the store's entries and counts.
#[derive(Debug, PartialEq)]
struct State {
    tree: BTreeMap<PathBuf, String>,
    index_json: String,
    entries: Option<(Vec<ListEntry>, Counts)>,
}

fn state(root: &Path, store: Option<&Store>) -> State {
    State {
        tree: tree(root),
        index_json: String::from_utf8_lossy(&fs::read(root.join("index.json")).unwrap_or_default())
            .into_owned(),
        entries: store.map(|s| (s.list().unwrap(), s.stats().unwrap())),
    }
}

/// Nothing was written: the state is as before and no temporary file is left.
fn assert_unchanged(root: &Path, before: &State, store: Option<&Store>) {
    assert_eq!(&state(root, store), before, "something was written");
    assert!(ingest_files(root).is_empty(), "{:?}", ingest_files(root));
}

/// The error renders as one line; returns it.
fn line(e: &Error) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n') && !s.is_empty(), "{s:?}");
    s
}

fn expect_err<T: std::fmt::Debug>(r: ocistore::Result<T>, want: &str) -> Error {
    let e = r.expect_err("hostile input accepted");
    let s = line(&e);
    assert!(s.contains(want), "error {s:?} does not say {want:?}");
    e
}

impl Fixture {
    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn open(&self) -> Store {
        Store::open(self.root(), &Options::default()).unwrap()
    }

    fn state(&self, store: Option<&Store>) -> State {
        state(self.root(), store)
    }

    /// Everything stored before is there, reads back with its digest, and is still linked.
    fn assert_intact(&self, store: &Store) {
        for d in [&self.image, &self.config, &self.layer, &self.signature] {
            let bytes = store.read_all(d).unwrap();
            assert_eq!(Digest::sha256(&bytes), *d);
        }
        assert_eq!(store.read_all(&self.layer).unwrap(), self.layer_bytes);
        assert_eq!(store.resolve("v1").unwrap(), self.image);
        let refs = store
            .referrers(&self.image, &ReferrersQuery::default())
            .unwrap();
        assert_eq!(refs.manifests.len(), 1);
        assert_eq!(refs.manifests[0].digest, self.signature.as_str());
    }

    /// Writes `name` in the store's directory and returns its path (as text).
    fn write_file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.root().join(".ocistore").join(name);
        fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// `bytes` put as a manifest, through the library and the CLI: both refuse, saying `want`,
    /// and nothing changes.
    fn refuse_manifest(&self, bytes: &[u8], want: &str) -> String {
        let store = self.open();
        let before = self.state(Some(&store));
        expect_err(put_manifest(&store, bytes), want);
        assert_unchanged(self.root(), &before, Some(&store));
        drop(store);
        let file = self.write_file("hostile-input", bytes);
        let msg = cli_error(self.root(), &["put", &file, "--media-type", OCI_MANIFEST]);
        assert!(msg.contains(want), "{msg}");
        let store = self.open();
        assert_unchanged(self.root(), &before, Some(&store));
        self.assert_intact(&store);
        msg
    }

    /// `bytes` written over index.json of the closed store: see [`Fixture::refuse_file`].
    fn refuse_index_json(&self, bytes: &[u8], want: &str) -> String {
        self.refuse_file("index.json", Some(bytes), want, |_| {})
    }

    /// `file` of the closed store replaced by `bytes` (removed when `None`): opening refuses,
    /// saying `want`, the CLI's `ls` too, `more` passes on the broken layout, and nothing is
    /// written. Once the file is put back, everything is there. Returns the CLI's line.
    fn refuse_file(
        &self,
        file: &str,
        bytes: Option<&[u8]>,
        want: &str,
        more: impl FnOnce(&Path),
    ) -> String {
        let path = self.root().join(file);
        let good = fs::read(&path).unwrap();
        match bytes {
            Some(b) => fs::write(&path, b).unwrap(),
            None => fs::remove_file(&path).unwrap(),
        }
        let before = self.state(None);
        expect_err(Store::open(self.root(), &Options::default()), want);
        let msg = cli_error(self.root(), &["ls"]);
        assert!(msg.contains(want), "{msg}");
        more(self.root());
        assert_unchanged(self.root(), &before, None);
        fs::write(&path, good).unwrap();
        let store = self.open();
        assert!(store.open_report().reconciled.is_none());
        self.assert_intact(&store);
        msg
    }
}

/// A layout never opened by the store: init (library and CLI) refuses to adopt it, saying
/// `want`, writes nothing and creates no index.
fn refuse_adoption(dir: &Path, want: &str) {
    let before = state(dir, None);
    expect_err(Store::init(dir, &Options::default()), want);
    assert!(cli_error(dir, &["init"]).contains(want));
    assert_unchanged(dir, &before, None);
    assert!(!dir.join(".ocistore/index.redb").exists());
}

/// A valid image manifest over the fixture's blobs, with `extra` fields added at the top level.
fn manifest_with(fx: &Fixture, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{}}},"layers":[]{extra}}}"#,
        fx.config,
        fs::read(fx.root().join(fx.config.blob_path())).unwrap().len()
    )
    .into_bytes()
}

/// Bad digest text, wherever a digest is given: parsing, resolving, tagging, deleting, pinning,
/// and the CLI commands that take a reference.
fn refuse_digest(text: &str, want: &str) {
    let fx = fixture();
    let store = fx.open();
    let before = fx.state(Some(&store));
    expect_err(Digest::parse(text), want);
    expect_err(store.resolve(text), want);
    expect_err(store.tag(text, "x"), want);
    expect_err(store.delete(text, &DeleteOptions::default()), want);
    // Inside a manifest: a descriptor naming it.
    let doc = manifest_with(
        &fx,
        &format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{text}","size":2}}"#),
    );
    expect_err(put_manifest(&store, &doc), want);
    assert_unchanged(fx.root(), &before, Some(&store));
    drop(store);
    for args in [
        &["cat", text][..],
        &["referrers", text],
        &["tag", text, "x"],
        &["delete", text],
        &["pin", text],
    ] {
        let msg = cli_error(fx.root(), args);
        assert!(msg.contains(want), "{args:?}: {msg}");
    }
    let store = fx.open();
    assert_unchanged(fx.root(), &before, Some(&store));
    fx.assert_intact(&store);
}

#[test]
fn digest_with_path_traversal() {
    refuse_digest("sha256:../../etc/passwd", "invalid digest");
    refuse_digest("sha256/../x", "invalid digest");
    refuse_digest("../../x:abc", "invalid digest");
}

#[test]
fn digest_with_upper_case_hex() {
    let upper = Digest::sha256(b"x").encoded().to_uppercase();
    refuse_digest(&format!("sha256:{upper}"), "lower-case hex");
}

#[test]
fn digest_of_wrong_length() {
    let hex = Digest::sha256(b"x").encoded().to_owned();
    refuse_digest(&format!("sha256:{}", &hex[..63]), "64 hex characters");
    refuse_digest(&format!("sha256:{hex}0"), "64 hex characters");
    refuse_digest(&format!("sha512:{hex}"), "128 hex characters");
}

#[test]
fn digest_of_unknown_algorithm_cannot_be_verified() {
    let fx = fixture();
    let store = fx.open();
    let before = fx.state(Some(&store));
    for text in ["md5:5d41402abc4b2a76b9719d911017c592", "foo:Zm9vYmFy"] {
        let d = Digest::parse(text).unwrap();
        assert!(!d.is_verifiable());
        let opts = PutOptions {
            digest: Some(d.clone()),
            ..Default::default()
        };
        let e = expect_err(
            store.put(&mut &b"hello"[..], &opts),
            "is not supported (supported: sha256, sha512, blake3)",
        );
        assert!(line(&e).contains(text), "{e}");
        assert!(matches!(e, Error::UnsupportedAlgorithm { .. }), "{e:?}");
        let opts = PutOptions {
            media_type: Some(OCI_MANIFEST.into()),
            ..opts
        };
        expect_err(
            store.put(&mut &manifest_with(&fx, "")[..], &opts),
            "is not supported",
        );
        assert!(store.blob_info(&d).unwrap().is_none());
    }
    assert_unchanged(fx.root(), &before, Some(&store));
    fx.assert_intact(&store);
}

#[test]
fn size_that_does_not_match() {
    let fx = fixture();
    let store = fx.open();
    let before = fx.state(Some(&store));
    for (size, digest) in [
        (4, None),
        (6, None),
        (0, None),
        (4, Some(Digest::sha256(b"hello"))),
    ] {
        let opts = PutOptions {
            size: Some(size),
            digest,
            ..Default::default()
        };
        let e = expect_err(
            store.put(&mut &b"hello"[..], &opts),
            &format!("expected {size} bytes"),
        );
        assert!(matches!(e, Error::SizeMismatch { .. }), "{e:?}");
    }
    // A digest the store already holds, announced with another size.
    let opts = PutOptions {
        size: Some(1),
        digest: Some(fx.layer.clone()),
        ..Default::default()
    };
    expect_err(store.put(&mut &LAYER[..], &opts), "size mismatch");
    // A batch refuses it the same way and commits nothing of it.
    let mut b = store.batch().unwrap();
    let opts = PutOptions {
        size: Some(4),
        ..Default::default()
    };
    expect_err(b.put(&mut &b"hello"[..], &opts), "expected 4 bytes, got 5");
    b.commit().unwrap();
    assert!(
        store
            .blob_info(&Digest::sha256(b"hello"))
            .unwrap()
            .is_none()
    );
    assert_unchanged(fx.root(), &before, Some(&store));
    fx.assert_intact(&store);
}

#[test]
fn negative_size_in_a_descriptor() {
    let fx = fixture();
    let doc = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":-1}},"layers":[]}}"#,
        fx.config
    );
    let msg = fx.refuse_manifest(doc.as_bytes(), "negative size -1");
    assert!(msg.contains(fx.config.as_str()), "{msg}");
    // In a layer, in an index, and in a subject.
    let layer = manifest_with(
        &fx,
        &format!(
            r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":-1}}"#,
            fx.image
        ),
    );
    fx.refuse_manifest(&layer, "negative size -1");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":-1}}]}}"#,
        fx.image
    );
    let store = fx.open();
    let opts = PutOptions {
        media_type: Some(OCI_INDEX.into()),
        ..Default::default()
    };
    expect_err(store.put(&mut index.as_bytes(), &opts), "negative size -1");
}

#[test]
fn manifest_that_is_not_a_json_object() {
    let fx = fixture();
    for doc in [&b"[]"[..], b"\"manifest\"", b"42", b"null", b"", b"   "] {
        fx.refuse_manifest(doc, "not a JSON object");
    }
}

/// `{"a":{"a":…1…}}`, `depth` objects deep.
fn nested(depth: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
}

#[test]
fn manifest_nested_10000_deep() {
    let fx = fixture();
    let doc = manifest_with(&fx, &format!(r#","deep":{}"#, nested(10_000)));
    fx.refuse_manifest(&doc, "nested too deeply");
    fx.refuse_manifest(nested(10_000).as_bytes(), "nested too deeply");
}

#[test]
fn manifest_with_duplicate_keys() {
    let fx = fixture();
    let layers = format!(
        r#","layers":[{{"mediaType":"{OCI_LAYER_GZIP}","digest":"{}","size":1}}]"#,
        fx.layer
    );
    fx.refuse_manifest(&manifest_with(&fx, &layers), "duplicate key \"layers\"");
    let ann = r#","annotations":{"org.example.a":"one","org.example.a":"two"}"#;
    fx.refuse_manifest(&manifest_with(&fx, ann), "duplicate key \"org.example.a\"");
    let media = format!(r#","mediaType":"{OCI_MANIFEST}""#);
    fx.refuse_manifest(&manifest_with(&fx, &media), "duplicate key \"mediaType\"");
}

/// `doc` with its first `pair` of bytes replaced by `by`.
fn replace_pair(mut doc: Vec<u8>, pair: &[u8; 2], by: [u8; 2]) -> Vec<u8> {
    let at = doc.windows(2).position(|w| w == pair).unwrap();
    doc[at..at + 2].copy_from_slice(&by);
    doc
}

#[test]
fn manifest_with_invalid_utf8() {
    let fx = fixture();
    let doc = manifest_with(&fx, r#","annotations":{"org.example.a":"XX"}"#);
    fx.refuse_manifest(&replace_pair(doc, b"XX", [0xff, 0xfe]), "UTF-8");
}

#[test]
fn index_json_that_is_not_a_json_object() {
    let fx = fixture();
    for doc in [&b"[]"[..], b"\"index\"", b"null"] {
        fx.refuse_index_json(doc, "not a JSON object");
    }
}

#[test]
fn index_json_nested_10000_deep() {
    let fx = fixture();
    let doc = format!(
        r#"{{"schemaVersion":2,"manifests":[],"deep":{}}}"#,
        nested(10_000)
    );
    fx.refuse_index_json(doc.as_bytes(), "nested too deeply");
}

#[test]
fn index_json_with_duplicate_keys() {
    let fx = fixture();
    let good: Value =
        serde_json::from_slice(&fs::read(fx.root().join("index.json")).unwrap()).unwrap();
    let entries = serde_json::to_string(&good["manifests"]).unwrap();
    // Two readers of this file could see two different sets of tags: refuse it.
    let doc = format!(r#"{{"schemaVersion":2,"manifests":{entries},"manifests":[]}}"#);
    fx.refuse_index_json(doc.as_bytes(), "duplicate key \"manifests\"");
    let tagged = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"annotations":{{"{REF_NAME}":"v1","{REF_NAME}":"v2"}}}}]}}"#,
        fx.image
    );
    fx.refuse_index_json(tagged.as_bytes(), &format!("duplicate key \"{REF_NAME}\""));
}

#[test]
fn index_json_with_invalid_utf8() {
    let fx = fixture();
    let doc = fs::read(fx.root().join("index.json")).unwrap();
    fx.refuse_index_json(&replace_pair(doc, b"v1", [0xc3, 0x28]), "UTF-8");
}

#[test]
fn manifest_over_the_size_limit() {
    let fx = fixture();
    let big = "x".repeat((4 << 20) + 1);
    let doc = manifest_with(
        &fx,
        &format!(r#","annotations":{{"org.example.pad":"{big}"}}"#),
    );
    let limit = format!("exceeds the limit of {} bytes", 4 << 20);
    let msg = fx.refuse_manifest(&doc, &limit);
    assert!(msg.starts_with("error: manifest too large: "), "{msg}");
    // A size announced beyond the limit is refused before any byte is read.
    let store = fx.open();
    let opts = PutOptions {
        size: Some(doc.len() as u64),
        ..manifest_opts()
    };
    expect_err(store.put(&mut &doc[..], &opts), &limit);
    drop(store);
    // With a raised limit it is stored and parsed as a manifest.
    let options = Options {
        max_manifest_size: 8 << 20,
        ..Options::default()
    };
    let store = Store::open(fx.root(), &options).unwrap();
    let put = put_manifest(&store, &doc).unwrap();
    assert!(!put.existed);
    assert_eq!(put.size, doc.len() as u64);
    let m = store.manifest_info(&put.digest).unwrap().unwrap();
    assert_eq!(m.annotations["org.example.pad"].len(), big.len());
    store.tag(put.digest.as_str(), "big").unwrap();
    assert_eq!(store.read_all(&put.digest).unwrap(), doc);
    fx.assert_intact(&store);
}

#[test]
fn index_json_corrupt() {
    let fx = fixture();
    let mut doc = fs::read(fx.root().join("index.json")).unwrap();
    doc.truncate(doc.len() / 2);
    let msg = fx.refuse_index_json(&doc, "not valid JSON");
    assert!(msg.contains("index.json"), "{msg}");
    fx.refuse_index_json(b"\x00\x01garbage", "not valid JSON");
}

#[test]
fn index_json_missing() {
    let fx = fixture();
    let want = "index.json is missing";
    fx.refuse_file("index.json", None, want, |root| {
        assert!(cli_error(root, &["init"]).contains(want));
    });
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    fs::remove_file(dir.path().join("index.json")).unwrap();
    refuse_adoption(dir.path(), want);
}

#[test]
fn index_json_that_is_a_manifest() {
    let fx = fixture();
    let manifest = fs::read(fx.root().join(fx.image.blob_path())).unwrap();
    let msg = fx.refuse_index_json(&manifest, "not an image index");
    assert!(msg.contains("no manifests array"), "{msg}");
    // An index document whose mediaType says it is something else.
    let doc = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","manifests":[]}}"#);
    fx.refuse_index_json(doc.as_bytes(), "is not an image index");
    fx.refuse_index_json(br#"{"manifests":{}}"#, "manifests is not an array");
    // Entries that are not descriptors.
    fx.refuse_index_json(br#"{"manifests":[42]}"#, "index.json");

    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    fs::copy(
        dir.path().join("blobs/sha256").join(g.image.hex()),
        dir.path().join("index.json"),
    )
    .unwrap();
    refuse_adoption(dir.path(), "not an image index");
}

#[test]
fn oci_layout_missing() {
    let fx = fixture();
    fx.refuse_file("oci-layout", None, "oci-layout is missing", |root| {
        expect_err(
            Store::open_read_only(root, &Options::default()),
            "oci-layout is missing",
        );
        // init does not take the directory for an empty one.
        let want = "directory is not empty and holds no oci-layout file";
        expect_err(Store::init(root, &Options::default()), want);
        assert!(cli_error(root, &["init"]).contains(want));
    });
}

#[test]
fn oci_layout_with_the_wrong_version() {
    let fx = fixture();
    for (bytes, want) in [
        (
            &br#"{"imageLayoutVersion":"2.0.0"}"#[..],
            r#"imageLayoutVersion "2.0.0" is not supported (want "1.0.0")"#,
        ),
        (
            br#"{"imageLayoutVersion":1}"#,
            "imageLayoutVersion is missing",
        ),
        (br#"{}"#, "imageLayoutVersion is missing"),
        (b"not json", "not JSON"),
    ] {
        let msg = fx.refuse_file("oci-layout", Some(bytes), want, |root| {
            expect_err(Store::init(root, &Options::default()), want);
            let msg = cli_error(root, &["stats"]);
            assert!(msg.contains(want), "{msg}");
        });
        assert!(msg.contains("oci-layout"), "{msg}");
    }
}

/// A collection that must remove nothing.
fn collect_nothing(store: &Store) {
    let report = collect_now(store);
    assert_eq!(report.removed_blobs, 0, "{:?}", report.removed);
}

/// A file outside the layout, with the bytes of the fixture's layer, that a symlink will name.
fn outside_target(fx: &Fixture) -> (TempDir, PathBuf) {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("secret");
    fs::write(&target, &fx.layer_bytes).unwrap();
    (outside, target)
}

fn assert_target_kept(target: &Path, bytes: &[u8]) {
    assert_eq!(fs::read(target).unwrap(), bytes, "{}", target.display());
}

#[test]
fn symlink_in_blobs_pointing_outside() {
    let fx = fixture();
    let (_outside, target) = outside_target(&fx);
    // The layer's file is replaced by a symlink to a file with the same bytes: following it would
    // succeed silently, so every success below would be a symlink followed.
    let layer_path = fx.root().join(fx.layer.blob_path());
    let store = fx.open();
    fs::remove_file(&layer_path).unwrap();
    symlink(&target, &layer_path).unwrap();
    let before = fx.state(Some(&store));
    expect_err(
        store.read_all(&fx.layer),
        "symlinks in blobs/ are not followed",
    );
    expect_err(store.open_blob(&fx.layer), "is a symlink");
    let msg = cli_error(
        fx.root(),
        &["--lock-timeout", "0", "cat", fx.layer.as_str()],
    );
    assert!(msg.contains("is a symlink"), "{msg}");
    // A collection with an orphan walk: the layer is live, the link is neither read nor removed.
    collect_nothing(&store);
    assert_unchanged(fx.root(), &before, Some(&store));
    drop(store);

    // Rebuilding (which hashes every file) skips the link, with a warning.
    let store = Store::rebuild(fx.root(), &Options::default()).unwrap();
    let warnings = store.open_report().warnings.join("\n");
    assert!(warnings.contains("a symlink (not followed)"), "{warnings}");
    assert!(store.blob_info(&fx.layer).unwrap().is_none());
    for d in [&fx.image, &fx.config, &fx.signature] {
        assert_eq!(Digest::sha256(&store.read_all(d).unwrap()), *d);
    }
    assert_eq!(store.resolve("v1").unwrap(), fx.image);

    // Import from this layout: the layer is reported missing, not copied through the link.
    let dest = tempfile::tempdir().unwrap();
    let other = Store::init(dest.path(), &Options::default()).unwrap();
    let r = other.import(fx.root(), &[]).unwrap();
    assert!(r.missing_blobs.contains(&fx.layer), "{r:?}");
    assert!(other.blob_info(&fx.layer).unwrap().is_none());
    assert!(!dest.path().join(fx.layer.blob_path()).exists());

    // Deleting the image and collecting removes the link, never its target.
    store.delete("v1", &DeleteOptions::default()).unwrap();
    store
        .delete(fx.image.as_str(), &DeleteOptions::default())
        .unwrap();
    collect_now(&store);
    assert!(store.blob_info(&fx.config).unwrap().is_none());
    assert_target_kept(&target, &fx.layer_bytes);
}

#[test]
fn symlinked_algorithm_directory_pointing_outside() {
    let fx = fixture();
    let outside = tempfile::tempdir().unwrap();
    let content = b"content that lives outside the layout";
    let name = Digest::sha256(content);
    let sha512_name = {
        let mut h = ocistore::digest::Hasher::new(ocistore::Algorithm::Sha512).unwrap();
        h.update(content);
        h.finish()
    };
    fs::write(outside.path().join(sha512_name.encoded()), content).unwrap();
    fs::write(outside.path().join(name.encoded()), content).unwrap();
    symlink(outside.path(), fx.root().join("blobs/sha512")).unwrap();
    let store = fx.open();
    let before = fx.state(Some(&store));
    let warnings = store.open_report().warnings.join("\n");
    assert!(warnings.contains("sha512"), "{warnings}");
    assert!(store.blob_info(&sha512_name).unwrap().is_none());
    expect_err(store.read_all(&sha512_name), "not found");
    // A put under sha512 would land outside: refused.
    let opts = PutOptions {
        digest: Some(sha512_name.clone()),
        ..Default::default()
    };
    expect_err(
        store.put(&mut &content[..], &opts),
        "is not a directory (symlinks are not followed)",
    );
    collect_now(&store);
    assert_unchanged(fx.root(), &before, Some(&store));
    fx.assert_intact(&store);
    drop(store);
    let dest = tempfile::tempdir().unwrap();
    let other = Store::init(dest.path(), &Options::default()).unwrap();
    let r = other.import(fx.root(), &[]).unwrap();
    assert!(other.blob_info(&sha512_name).unwrap().is_none(), "{r:?}");
    drop(other);
    assert_target_kept(&outside.path().join(sha512_name.encoded()), content);
    assert_target_kept(&outside.path().join(name.encoded()), content);

    // The whole of blobs/ a symlink: the layout is refused.
    let real = fx.root().join("blobs-real");
    fs::rename(fx.root().join("blobs"), &real).unwrap();
    symlink(&real, fx.root().join("blobs")).unwrap();
    let before = fx.state(None);
    expect_err(
        Store::open(fx.root(), &Options::default()),
        "is not a directory (symlinks are not followed)",
    );
    assert!(cli_error(fx.root(), &["ls"]).contains("symlinks are not followed"));
    assert_unchanged(fx.root(), &before, None);
    fs::remove_file(fx.root().join("blobs")).unwrap();
    fs::rename(&real, fx.root().join("blobs")).unwrap();
    fs::remove_file(fx.root().join("blobs/sha512")).unwrap();
    fx.assert_intact(&fx.open());
}

#[test]
fn directory_where_a_blob_should_be() {
    let fx = fixture();
    let store = fx.open();
    // A stored blob's file replaced by a directory (holding a file of the same bytes).
    let layer_path = fx.root().join(fx.layer.blob_path());
    fs::remove_file(&layer_path).unwrap();
    fs::create_dir(&layer_path).unwrap();
    fs::write(layer_path.join("inner"), &fx.layer_bytes).unwrap();
    // And a directory where new content would go.
    let new = b"content whose place is taken";
    let new_digest = Digest::sha256(new);
    fs::create_dir(fx.root().join(new_digest.blob_path())).unwrap();
    let before = fx.state(Some(&store));

    expect_err(store.read_all(&fx.layer), "is not a regular file");
    expect_err(store.open_blob(&fx.layer), "is not a regular file");
    let e = expect_err(
        store.put(&mut &new[..], &PutOptions::default()),
        "Is a directory",
    );
    assert!(line(&e).contains(new_digest.encoded()), "{e}");
    assert!(store.blob_info(&new_digest).unwrap().is_none());
    collect_nothing(&store);
    assert_unchanged(fx.root(), &before, Some(&store));
    drop(store);
    let msg = cli_error(fx.root(), &["cat", fx.layer.as_str()]);
    assert!(msg.contains("is not a regular file"), "{msg}");

    // Put back, everything reads again.
    fs::remove_dir_all(&layer_path).unwrap();
    fs::write(&layer_path, &fx.layer_bytes).unwrap();
    fs::remove_dir(fx.root().join(new_digest.blob_path())).unwrap();
    let store = fx.open();
    fx.assert_intact(&store);
}

#[test]
fn blob_truncated_by_another_process() {
    let fx = fixture();
    let store = fx.open();
    let garbage = store
        .put(&mut &b"unreferenced"[..], &PutOptions::default())
        .unwrap()
        .digest;
    let layer_path = fx.root().join(fx.layer.blob_path());
    let size = fx.layer_bytes.len() as u64;
    fs::OpenOptions::new()
        .write(true)
        .open(&layer_path)
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    let e = expect_err(
        store.read_all(&fx.layer),
        &format!("expected {size} bytes, got {}", size / 2),
    );
    assert!(line(&e).contains(fx.layer.as_str()), "{e}");
    expect_err(store.open_blob(&fx.layer), "size mismatch");
    let msg = cli_error(
        fx.root(),
        &["--lock-timeout", "0", "cat", fx.layer.as_str()],
    );
    assert!(msg.contains("size mismatch"), "{msg}");

    // Same length, other bytes: the digest check catches it.
    let mut other = fx.layer_bytes.clone();
    other[0] ^= 1;
    fs::write(&layer_path, &other).unwrap();
    expect_err(store.read_all(&fx.layer), "digest mismatch");

    // A collection removes only the garbage; the rest stays readable.
    let report = collect_now(&store);
    let removed: Vec<&str> = report.removed.iter().map(|r| r.digest.as_str()).collect();
    assert_eq!(removed, [garbage.as_str()]);
    assert_eq!(fs::read(&layer_path).unwrap(), other);
    for d in [&fx.image, &fx.config, &fx.signature] {
        assert_eq!(Digest::sha256(&store.read_all(d).unwrap()), *d);
    }
    assert_eq!(store.resolve("v1").unwrap(), fx.image);
}

#[test]
fn tag_outside_the_grammar() {
    let fx = fixture();
    let store = fx.open();
    let before = fx.state(Some(&store));
    let long = "a".repeat(1025);
    let cases = [
        ("../x", "must start and end with a letter or digit"),
        ("", "empty"),
        ("a b", "only letters, digits"),
        ("a/../b", "must start and end with a letter or digit"),
        ("a\nb", "only letters, digits"),
        (long.as_str(), "longer than 1024 characters"),
    ];
    for (tag, want) in cases {
        let e = expect_err(store.tag(fx.image.as_str(), tag), want);
        assert!(matches!(e, Error::InvalidTag { .. }), "{e:?}");
        let mut b = store.batch().unwrap();
        expect_err(b.tag(fx.image.as_str(), tag), want);
        drop(b);
    }
    assert_unchanged(fx.root(), &before, Some(&store));
    drop(store);
    for (tag, want) in cases {
        if tag.contains('\n') {
            continue;
        }
        let msg = cli_error(fx.root(), &["tag", "v1", tag]);
        assert!(msg.contains(want), "{msg}");
    }
    // The image-spec grammar has no length limit below 1024: a 200-character name is a tag
    // (sha512 cosign tags are 140 characters long).
    let store = fx.open();
    assert_unchanged(fx.root(), &before, Some(&store));
    let name = format!("{}/{}", "a".repeat(100), "b".repeat(100));
    store.tag("v1", &name).unwrap();
    assert_eq!(store.resolve(&name).unwrap(), fx.image);
    fx.assert_intact(&store);
}

#[test]
fn twenty_thousand_tags_on_one_manifest() {
    let fx = fixture();
    let store = fx.open();
    let mut b = store.batch().unwrap();
    for i in 0..20_000 {
        b.tag("v1", &format!("t{i:05}")).unwrap();
    }
    b.commit().unwrap();
    assert_eq!(store.tags_of(&fx.image).unwrap().len(), 20_001);
    let tags = store_tags(&store);
    assert_eq!(tags.len(), 20_001);
    assert_eq!(index_json_tags(fx.root()), tags);
    assert_eq!(store.list().unwrap().len(), 20_002); // and the signature's untagged entry

    store.untag("t12345").unwrap();
    store.delete("t00007", &DeleteOptions::default()).unwrap();
    let report = collect_now(&store);
    assert_eq!(report.removed_blobs, 0, "{:?}", report.removed);
    let tags = store_tags(&store);
    assert_eq!(tags.len(), 19_999);
    assert!(!tags.contains_key("t12345") && !tags.contains_key("t00007"));
    assert_eq!(index_json_tags(fx.root()), tags);
    fx.assert_intact(&store);
    drop(store);
    let store = fx.open();
    assert!(store.open_report().reconciled.is_none());
    assert_eq!(store_tags(&store), tags);

    // Deleting the manifest takes all its tags at once.
    let r = store
        .delete(fx.image.as_str(), &DeleteOptions::default())
        .unwrap();
    assert_eq!(r.tags.len(), 19_999);
    assert!(store_tags(&store).is_empty());
    assert!(index_json_tags(fx.root()).is_empty());
}

/// A manifest under an unregistered-algorithm digest (so that it can name a digest fixed in
/// advance), whose subject is `subject` of `subject_size` bytes.
fn cyclic(config: &Value, subject: &str, subject_size: u64) -> Vec<u8> {
    manifest_json(
        config.clone(),
        vec![],
        Some(descriptor(OCI_MANIFEST, subject, subject_size)),
        Some(SIGNATURE_TYPE),
        &[],
    )
}

#[test]
fn referrer_cycle() {
    let fx = fixture();
    let store = fx.open();
    let config = descriptor(OCI_CONFIG, fx.config.as_str(), {
        store.blob_info(&fx.config).unwrap().unwrap().size
    });
    // Content hashes cannot form a cycle, but names given by the pusher (unverified algorithms)
    // and cosign tags can. Sizes of three digits keep both documents' lengths fixed.
    let (a, b) = ("x-cycle:aaaa", "x-cycle:bbbb");
    let len = cyclic(&config, b, 100).len() as u64;
    assert!((100..1000).contains(&len));
    let doc_a = cyclic(&config, b, len);
    let doc_b = cyclic(&config, a, len);
    assert_eq!((doc_a.len(), doc_b.len()), (len as usize, len as usize));
    for (name, doc) in [(a, &doc_a), (b, &doc_b)] {
        let opts = PutOptions {
            media_type: Some(OCI_MANIFEST.into()),
            digest: Some(name.parse().unwrap()),
            size: Some(len),
        };
        store.put(&mut &doc[..], &opts).unwrap();
    }
    let (da, db): (Digest, Digest) = (a.parse().unwrap(), b.parse().unwrap());
    for (subject, other) in [(&da, &db), (&db, &da)] {
        for transitive in [false, true] {
            let got = referrer_digests(&store, subject, transitive);
            assert_eq!(got, [other.to_string()].into());
        }
    }

    // Under the hard policy (the default) a tag keeps no referrer: each of A and B is a referrer
    // of the other, so neither is live and both go, tag included.
    store.tag(a, "cycle").unwrap();
    let gc0 = GcOptions {
        grace: Duration::ZERO,
        ..Default::default()
    };
    let dry = GcOptions {
        dry_run: true,
        ..gc0.clone()
    };
    // Every strategy: the names are the pusher's, so their subject links may not count as
    // support in the reference counts, or the cycle would keep itself.
    for strategy in [
        Strategy::MarkSweep,
        Strategy::Scan,
        Strategy::Refcount,
        Strategy::Auto,
    ] {
        let r = store
            .gc(&GcOptions {
                strategy,
                ..dry.clone()
            })
            .unwrap();
        let mut removed: Vec<&str> = r.removed.iter().map(|x| x.digest.as_str()).collect();
        removed.sort();
        assert_eq!(removed, [a, b], "{strategy:?}");
    }
    // Under the soft policy A's tag is a root: A is live, and B with it (a referrer of A).
    let soft = GcOptions {
        policy: Some(Policy {
            artifact_types: [(SIGNATURE_TYPE.to_owned(), Mode::Soft)].into(),
            ..Policy::default()
        }),
        ..gc0.clone()
    };
    let r = store.gc(&soft).unwrap();
    assert_eq!(r.removed_blobs, 0, "{:?}", r.removed);
    assert!(store.blob_info(&db).unwrap().is_some());
    // Deleting A takes B (its hard referrer), whose referrer A is already going: it ends.
    let r = store
        .delete(
            a,
            &DeleteOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .unwrap();
    let mut doomed: Vec<&str> = r.removed.iter().map(|x| x.digest.as_str()).collect();
    doomed.sort();
    assert_eq!(doomed, [a, b]);
    assert_eq!(r.tags, ["cycle"]);
    // Untagged, neither is a root under any policy: both go, and the collection ends.
    store.untag("cycle").unwrap();
    let r = store.gc(&soft).unwrap();
    let mut removed: Vec<&str> = r.removed.iter().map(|x| x.digest.as_str()).collect();
    removed.sort();
    assert_eq!(removed, [a, b]);
    assert_eq!(index_json_tags(fx.root()), store_tags(&store));
    fx.assert_intact(&store);

    // A cycle of sha256 content through a cosign tag: the signature's subject is the image, and
    // the image is tagged as the signature's cosign signature. Link tags make the image a
    // referrer of its own signature, and under the hard policy a referrer dies with its subject
    // whatever tags it has: the cycle has no root, so the image goes, tag "v1" included.
    let cosign = format!("sha256-{}.sig", fx.signature.encoded());
    store.tag(fx.image.as_str(), &cosign).unwrap();
    let got = referrer_digests(&store, &fx.signature, true);
    assert_eq!(got, [fx.image.to_string()].into());
    let r = store.gc(&dry).unwrap();
    let mut removed: Vec<&str> = r.removed.iter().map(|x| x.digest.as_str()).collect();
    removed.sort();
    let mut all = [&fx.image, &fx.config, &fx.layer, &fx.signature].map(Digest::as_str);
    all.sort();
    assert_eq!(removed, all);
    // Under the soft policy for the image's artifact type, its tag "v1" keeps it, and its
    // signature with it.
    let soft = GcOptions {
        policy: Some(Policy {
            artifact_types: [(OCI_CONFIG.to_owned(), Mode::Soft)].into(),
            ..Policy::default()
        }),
        ..gc0.clone()
    };
    let r = store.gc(&soft).unwrap();
    assert_eq!(r.removed_blobs, 0, "{:?}", r.removed);
    fx.assert_intact(&store);
    let s = fx.signature.clone();
    let dry = store
        .delete(
            fx.image.as_str(),
            &DeleteOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .unwrap();
    let doomed: Vec<&str> = dry.removed.iter().map(|x| x.digest.as_str()).collect();
    assert!(doomed.contains(&s.as_str()), "{doomed:?}");
    store
        .delete(fx.image.as_str(), &DeleteOptions::default())
        .unwrap();
    assert!(store.blob_info(&s).unwrap().is_none());
    assert!(store.blob_info(&fx.image).unwrap().is_none());
    assert!(store_tags(&store).is_empty());
    assert_eq!(index_json_tags(fx.root()), store_tags(&store));
}

#[test]
fn index_json_corrupted_while_the_store_is_open() {
    let fx = fixture();
    let store = fx.open();
    let good = fs::read(fx.root().join("index.json")).unwrap();
    let mut bad = good.clone();
    bad.truncate(good.len() / 2);
    fs::write(fx.root().join("index.json"), &bad).unwrap();
    let before = fx.state(Some(&store));
    // The next rewrite of index.json reads it first (to keep other tools' changes): refused.
    expect_err(store.tag("v1", "v2"), "not valid JSON");
    expect_err(store.untag("v1"), "not valid JSON");
    let sig = manifest_with(
        &fx,
        &format!(
            r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}}"#,
            fx.image,
            store.blob_info(&fx.image).unwrap().unwrap().size
        ),
    );
    expect_err(put_manifest(&store, &sig), "not valid JSON");
    assert_unchanged(fx.root(), &before, Some(&store));
    fs::write(fx.root().join("index.json"), &good).unwrap();
    fx.assert_intact(&store);
    store.tag("v1", "v2").unwrap();
}
