//! Interoperability with the real OCI tools: skopeo, umoci and buildah, run as processes.
//!
//! - **Adopt**: layouts that umoci, skopeo (plain, zstd, `--all` of an index) and buildah wrote
//!   are adopted without a changed byte, with their tags, children and blobs indexed.
//! - **Stay readable**: after the store tags, imports, deletes and collects, the tools still
//!   read the layout, and `umoci gc` removes nothing the store keeps live.
//! - **Round trip**: skopeo copies out of the store and back in, digests unchanged.
//! - **Referrers**: what the tools do to them (skopeo drops them, `umoci gc` deletes those linked
//!   only through `subject`), and that the store's own import keeps them.
//! - **The store after the tools**: tags and images umoci added while the store was closed are
//!   taken in on open; blobs `umoci gc` removed behind the store's back are noticed.
//!
//! Tests marked `#[ignore = "gap: …"]` or `#[ignore = "bug: …"]` state the behaviour the store
//! should have and does not have yet (run them with `cargo test --test interop -- --ignored`).
//!
//! Every image is built locally (`FROM scratch`); nothing touches the network. A missing tool
//! makes a test print `skipping: <tool> not installed` and pass, unless
//! `OCISTORE_REQUIRE_TOOLS=1`, which makes it fail. `OCISTORE_TEST_HIDE_TOOLS=1` makes every tool
//! look missing (to exercise that path).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ocistore::gc::{DeleteOptions, GcOptions};
use ocistore::{Digest, Options, PutOptions, ReferrersQuery, Store};
use serde_json::{Value, json};
use tempfile::TempDir;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const SBOM_TYPE: &str = "application/vnd.example.sbom.v1";
const SIGNATURE_TYPE: &str = "application/vnd.example.signature.v1";

// ---------------------------------------------------------------------------------------------
// Finding and running the tools
// ---------------------------------------------------------------------------------------------

fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// The path of `name` on `PATH`. When it is missing: `None` after printing
/// `skipping: <name> not installed`, or a panic when `OCISTORE_REQUIRE_TOOLS=1`.
/// `OCISTORE_TEST_HIDE_TOOLS=1` makes every tool look missing.
fn tool(name: &str) -> Option<PathBuf> {
    let found = if env_on("OCISTORE_TEST_HIDE_TOOLS") {
        None
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| is_executable(p))
        })
    };
    if found.is_none() {
        if env_on("OCISTORE_REQUIRE_TOOLS") {
            panic!(
                "{name} is not installed (or hidden by OCISTORE_TEST_HIDE_TOOLS), and \
                 OCISTORE_REQUIRE_TOOLS=1 requires it: install it (apt-get install {name}) or \
                 unset OCISTORE_REQUIRE_TOOLS to skip"
            );
        }
        eprintln!("skipping: {name} not installed");
    }
    found
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The tools a test needs, each found with [`tool`].
struct Tools {
    skopeo: Option<PathBuf>,
    umoci: Option<PathBuf>,
    buildah: Option<PathBuf>,
}

impl Tools {
    /// Finds the named tools; `None` (the test skips) when one is missing.
    fn need(names: &[&str]) -> Option<Tools> {
        let mut t = Tools {
            skopeo: None,
            umoci: None,
            buildah: None,
        };
        for &n in names {
            let p = tool(n)?;
            match n {
                "skopeo" => t.skopeo = Some(p),
                "umoci" => t.umoci = Some(p),
                "buildah" => t.buildah = Some(p),
                _ => unreachable!("unknown tool {n}"),
            }
        }
        Some(t)
    }

    /// skopeo, with no signature policy needed (every copy is between local layouts) and the
    /// platform fixed, so that an index resolves the same way on any machine.
    fn skopeo(&self) -> Command {
        let mut c = Command::new(self.skopeo.as_ref().expect("the test asked for skopeo"));
        c.args([
            "--insecure-policy",
            "--override-os",
            "linux",
            "--override-arch",
            "amd64",
        ]);
        c
    }

    fn umoci(&self) -> Command {
        Command::new(self.umoci.as_ref().expect("the test asked for umoci"))
    }

    /// A buildah with its own storage under `tmp` (vfs, no daemon, no mounts, chroot isolation).
    fn buildah(&self, tmp: &Path) -> Buildah {
        Buildah {
            bin: self.buildah.clone().expect("the test asked for buildah"),
            root: tmp.join("buildah-root"),
            runroot: tmp.join("buildah-runroot"),
        }
    }
}

/// Runs `cmd`, panicking with its output when it fails; returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `oci:<dir>:<tag>` as skopeo and buildah name an image in a layout.
fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// `<dir>:<tag>` as umoci names an image.
fn umoci_ref(dir: &Path, tag: &str) -> String {
    format!("{}:{tag}", dir.display())
}

struct Buildah {
    bin: PathBuf,
    root: PathBuf,
    runroot: PathBuf,
}

impl Buildah {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .env("BUILDAH_ISOLATION", "chroot");
        c
    }

    /// Builds `FROM scratch` an image holding `/<file>` with `content`, for `arch`, and commits
    /// it to `oci:<dir>:<tag>` (buildah writes the layer uncompressed).
    fn image(&self, scratch: &Path, dir: &Path, tag: &str, arch: &str, file: &str, content: &str) {
        let name = format!("ctr-{tag}-{arch}");
        let ctr = run(self.cmd().args(["from", "--name", &name, "scratch"]));
        let ctr = ctr.trim();
        let src = scratch.join(format!("{name}-{file}"));
        fs::write(&src, content).unwrap();
        run(self
            .cmd()
            .args(["copy", ctr])
            .arg(&src)
            .arg(format!("/{file}")));
        run(self
            .cmd()
            .args(["config", "--os", "linux", "--arch", arch, ctr]));
        run(self.cmd().args(["commit", "-q", ctr]).arg(oci(dir, tag)));
        run(self.cmd().args(["rm", ctr]));
    }

    /// Builds two single-platform images and pushes an index of them (buildah compresses the
    /// layers with gzip on the way) to `oci:<dir>:<tag>`.
    fn index(&self, scratch: &Path, dir: &Path, tag: &str) {
        let parts = scratch.join(format!("parts-{tag}"));
        self.image(scratch, &parts, "amd64", "amd64", "arch.txt", "amd64\n");
        self.image(scratch, &parts, "arm64", "arm64", "arch.txt", "arm64\n");
        let list = format!("list-{tag}");
        run(self.cmd().args(["manifest", "create", &list]));
        for a in ["amd64", "arm64"] {
            run(self
                .cmd()
                .args(["manifest", "add", &list])
                .arg(oci(&parts, a)));
        }
        run(self
            .cmd()
            .args(["manifest", "push", "--all", "-q", &list])
            .arg(oci(dir, tag)));
    }
}

/// An umoci image: `umoci new`, unpack (rootless), `/hello.txt` added, repack. Creates the
/// layout if needed. The layer is gzip-compressed; repack leaves the empty image's manifest and
/// config behind as unreferenced blobs.
fn umoci_image(t: &Tools, scratch: &Path, layout: &Path, tag: &str, content: &str) {
    if !layout.exists() {
        run(t.umoci().args(["init", "--layout"]).arg(layout));
    }
    run(t
        .umoci()
        .args(["new", "--image"])
        .arg(umoci_ref(layout, tag)));
    let bundle = scratch.join(format!("bundle-{tag}-{}", unique()));
    run(t
        .umoci()
        .args(["unpack", "--rootless", "--image"])
        .arg(umoci_ref(layout, tag))
        .arg(&bundle));
    fs::write(bundle.join("rootfs").join("hello.txt"), content).unwrap();
    run(t
        .umoci()
        .args(["repack", "--image"])
        .arg(umoci_ref(layout, tag))
        .arg(&bundle));
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// Reading layouts as files
// ---------------------------------------------------------------------------------------------

/// Every file of the layout outside `.ocistore/`, with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if rel == Path::new(".ocistore") {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The digests of the files in `blobs/<alg>/`.
fn blob_files(root: &Path) -> BTreeSet<Digest> {
    let mut out = BTreeSet::new();
    for alg in fs::read_dir(root.join("blobs")).unwrap() {
        let alg = alg.unwrap();
        let name = alg.file_name().into_string().unwrap();
        for f in fs::read_dir(alg.path()).unwrap() {
            let f = f.unwrap().file_name().into_string().unwrap();
            out.insert(Digest::parse(&format!("{name}:{f}")).unwrap());
        }
    }
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn blob_json(root: &Path, d: &Digest) -> Value {
    read_json(
        &root
            .join("blobs")
            .join(d.algorithm_name())
            .join(d.encoded()),
    )
}

/// index.json's tags: tag -> digest.
fn layout_tags(root: &Path) -> BTreeMap<String, Digest> {
    let ix = read_json(&root.join("index.json"));
    ix["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let tag = e["annotations"]["org.opencontainers.image.ref.name"].as_str()?;
            Some((tag.to_owned(), digest_of(e)))
        })
        .collect()
}

/// index.json's untagged entries.
fn layout_untagged(root: &Path) -> BTreeSet<Digest> {
    let ix = read_json(&root.join("index.json"));
    ix["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"].is_null())
        .map(digest_of)
        .collect()
}

fn digest_of(descriptor: &Value) -> Digest {
    Digest::parse(descriptor["digest"].as_str().unwrap()).unwrap()
}

/// The descriptors a manifest or index names (config and layers, or manifests), from its JSON.
/// Objects without a digest (an image config's own `config`) are not descriptors.
fn json_children(doc: &Value) -> BTreeSet<Digest> {
    let descriptor = |v: &Value| Digest::parse(v.get("digest")?.as_str()?).ok();
    let mut out: BTreeSet<Digest> = doc.get("config").and_then(descriptor).into_iter().collect();
    for key in ["layers", "manifests", "blobs"] {
        out.extend(
            doc[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(descriptor),
        );
    }
    out
}

/// Every manifest file in the layout whose `subject` is `subject`.
fn manifests_with_subject(root: &Path, subject: &Digest) -> Vec<Digest> {
    blob_files(root)
        .into_iter()
        .filter(|d| {
            let bytes = fs::read(
                root.join("blobs")
                    .join(d.algorithm_name())
                    .join(d.encoded()),
            )
            .unwrap();
            serde_json::from_slice::<Value>(&bytes)
                .is_ok_and(|v| v["subject"]["digest"].as_str() == Some(subject.as_str()))
        })
        .collect()
}

/// What a referrer-aware collector of the layout alone keeps: everything reachable from
/// index.json's entries through descriptors, plus every manifest whose `subject` is kept,
/// transitively. Only files present count.
fn layout_reachable(root: &Path) -> BTreeSet<Digest> {
    let files = blob_files(root);
    let docs: BTreeMap<Digest, Value> = files
        .iter()
        .filter_map(|d| {
            let bytes = fs::read(
                root.join("blobs")
                    .join(d.algorithm_name())
                    .join(d.encoded()),
            )
            .unwrap();
            let v: Value = serde_json::from_slice(&bytes).ok()?;
            v.is_object().then(|| (d.clone(), v))
        })
        .collect();
    let ix = read_json(&root.join("index.json"));
    let mut todo: Vec<Digest> = ix["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(digest_of)
        .collect();
    let mut kept = BTreeSet::new();
    loop {
        while let Some(d) = todo.pop() {
            if !files.contains(&d) || !kept.insert(d.clone()) {
                continue;
            }
            if let Some(doc) = docs.get(&d) {
                todo.extend(json_children(doc));
            }
        }
        todo.extend(docs.iter().filter_map(|(d, doc)| {
            let subject = Digest::parse(doc["subject"]["digest"].as_str()?).ok()?;
            (kept.contains(&subject) && !kept.contains(d)).then(|| d.clone())
        }));
        if todo.is_empty() {
            return kept;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checking the store
// ---------------------------------------------------------------------------------------------

/// The tags the store lists: tag -> digest.
fn store_tags(store: &Store) -> BTreeMap<String, Digest> {
    store
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|e| Some((e.tag?, e.digest)))
        .collect()
}

/// The untagged entries the store lists.
fn store_untagged(store: &Store) -> BTreeSet<Digest> {
    store
        .list()
        .unwrap()
        .into_iter()
        .filter(|e| e.tag.is_none())
        .map(|e| e.digest)
        .collect()
}

/// What the store indexed agrees with the files: every blob it indexed is a file of `blobs/`
/// with the recorded size and reads back (digest-checked), and every manifest reachable from
/// its index.json entries is indexed with the children its JSON names, recursively. Files the
/// store does not know (left by another tool) are allowed.
fn verify_store(store: &Store) {
    let root = store.root().to_owned();
    let mut indexed = 0;
    for d in &blob_files(&root) {
        let Some(rec) = store.blob_info(d).unwrap() else {
            continue;
        };
        indexed += 1;
        let bytes = store
            .read_all(d)
            .unwrap_or_else(|e| panic!("{d} does not read back: {e}"));
        assert_eq!(bytes.len() as u64, rec.size, "{d}");
    }
    assert_eq!(
        store.stats().unwrap().blobs,
        indexed,
        "the index holds blobs that are not in blobs/"
    );
    let mut todo: Vec<Digest> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|e| e.digest)
        .collect();
    let mut seen = BTreeSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        let doc = blob_json(&root, &d);
        let m = store
            .manifest_info(&d)
            .unwrap()
            .unwrap_or_else(|| panic!("{d} is listed but not indexed as a manifest"));
        let want = json_children(&doc);
        let got: BTreeSet<Digest> = store.children(&d).unwrap().into_iter().collect();
        assert_eq!(got, want, "children of {d} ({})", m.media_type);
        for c in &want {
            assert!(store.blob_info(c).unwrap().is_some(), "child {c} of {d}");
        }
        if doc.get("manifests").is_some() {
            todo.extend(want);
        }
    }
}

/// Adopts `root` and checks: not a byte of the layout changed, the store lists exactly the
/// layout's tags and untagged entries, and [`verify_store`] holds. Returns the store.
fn adopt(root: &Path) -> Store {
    let before = snapshot(root);
    let store = Store::init(root, &Options::default()).unwrap();
    let report = store.open_report().clone();
    assert!(report.created_index, "{report:?}");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.indexed_blobs, blob_files(root).len() as u64);
    assert_eq!(store.stats().unwrap().blobs, report.indexed_blobs);
    assert_eq!(snapshot(root), before, "adoption changed the layout");
    assert_eq!(store_tags(&store), layout_tags(root));
    assert_eq!(store_untagged(&store), layout_untagged(root));
    verify_store(&store);
    store
}

/// The digests the store keeps live: every indexed blob but those a collection would remove.
fn live_set(store: &Store) -> BTreeSet<Digest> {
    let dry = store
        .gc(&GcOptions {
            dry_run: true,
            ..GcOptions::default()
        })
        .unwrap();
    let garbage: BTreeSet<String> = dry.removed.into_iter().map(|r| r.digest).collect();
    blob_files(store.root())
        .into_iter()
        .filter(|d| store.blob_info(d).unwrap().is_some() && !garbage.contains(d.as_str()))
        .collect()
}

fn put_blob(store: &Store, bytes: &[u8]) -> (Digest, u64) {
    let p = store.put(&mut &bytes[..], &PutOptions::default()).unwrap();
    (p.digest, p.size)
}

/// Puts a referrer of `subject` (an image manifest with `artifactType`, an empty config and one
/// layer holding `payload`) and returns its digest.
fn put_referrer(store: &Store, subject: &Digest, artifact_type: &str, payload: &str) -> Digest {
    let (empty, empty_size) = put_blob(store, b"{}");
    let (layer, layer_size) = put_blob(store, payload.as_bytes());
    let subject_size = store.manifest_info(subject).unwrap().unwrap();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": empty.as_str(), "size": empty_size},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer.as_str(), "size": layer_size}],
        "subject": {"mediaType": subject_size.media_type, "digest": subject.as_str(), "size": subject_size.size},
        "annotations": {"org.example.payload": payload},
    });
    let bytes = serde_json::to_vec(&doc).unwrap();
    store
        .put(
            &mut &bytes[..],
            &PutOptions {
                media_type: Some(OCI_MANIFEST.into()),
                ..PutOptions::default()
            },
        )
        .unwrap()
        .digest
}

fn referrer_digests(store: &Store, subject: &Digest, transitive: bool) -> BTreeSet<Digest> {
    store
        .referrers(
            subject,
            &ReferrersQuery {
                transitive,
                ..ReferrersQuery::default()
            },
        )
        .unwrap()
        .manifests
        .into_iter()
        .map(|r| Digest::parse(&r.digest).unwrap())
        .collect()
}

/// The digest of `oci:<dir>:<tag>` as skopeo sees it.
fn skopeo_digest(t: &Tools, dir: &Path, tag: &str) -> Digest {
    let out = run(t.skopeo().args(["inspect", "--raw"]).arg(oci(dir, tag)));
    Digest::sha256(out.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// 1. Adopt
// ---------------------------------------------------------------------------------------------

#[test]
fn adopts_an_umoci_layout() {
    let Some(t) = Tools::need(&["umoci"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let l = tmp.path().join("layout");
    umoci_image(&t, tmp.path(), &l, "t", "hello from umoci\n");
    run(t
        .umoci()
        .args(["tag", "--image"])
        .arg(umoci_ref(&l, "t"))
        .arg("t2"));
    run(t
        .umoci()
        .args(["new", "--image"])
        .arg(umoci_ref(&l, "empty")));

    let store = adopt(&l);
    let tags = store_tags(&store);
    assert_eq!(
        tags.keys().map(String::as_str).collect::<Vec<_>>(),
        ["empty", "t", "t2"]
    );
    assert_eq!(tags["t"], tags["t2"]);
    // repack left the empty image's manifest and config behind: indexed, not listed.
    assert!(blob_files(&l).len() > 5);
    let layers = blob_json(&l, &tags["t"])["layers"].clone();
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    drop(store);
    // Closing writes nothing into the layout either.
    let reopened = Store::open(&l, &Options::default()).unwrap();
    assert!(reopened.open_report().reconciled.is_none());
    assert!(!reopened.open_report().recovered);
}

#[test]
fn adopts_skopeo_layouts() {
    let Some(t) = Tools::need(&["skopeo", "umoci", "buildah"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    umoci_image(&t, tmp.path(), &src, "t", "copied by skopeo\n");
    let b = t.buildah(tmp.path());
    let multi = tmp.path().join("multi");
    b.index(tmp.path(), &multi, "multi");

    // A plain copy: the gzip layer and the digests are kept.
    let plain = tmp.path().join("plain");
    run(t
        .skopeo()
        .arg("copy")
        .arg(oci(&src, "t"))
        .arg(oci(&plain, "t")));
    let store = adopt(&plain);
    assert_eq!(store.resolve("t").unwrap(), layout_tags(&src)["t"]);
    drop(store);

    // Recompressed with zstd: a new layer and a new manifest digest.
    let zstd = tmp.path().join("zstd");
    run(t
        .skopeo()
        .args(["copy", "--dest-compress-format", "zstd"])
        .arg(oci(&src, "t"))
        .arg(oci(&zstd, "t")));
    let store = adopt(&zstd);
    let d = store.resolve("t").unwrap();
    assert_ne!(d, layout_tags(&src)["t"]);
    let m = blob_json(&zstd, &d);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let layer = digest_of(&m["layers"][0]);
    assert!(
        store
            .read_all(&layer)
            .unwrap()
            .starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
    );
    drop(store);

    // An index with --all: the index, both platform manifests and their blobs.
    let all = tmp.path().join("all");
    run(t
        .skopeo()
        .args(["copy", "--all"])
        .arg(oci(&multi, "multi"))
        .arg(oci(&all, "multi")));
    let store = adopt(&all);
    let ix = store.resolve("multi").unwrap();
    assert_eq!(ix, layout_tags(&multi)["multi"]);
    assert_eq!(
        store.manifest_info(&ix).unwrap().unwrap().media_type,
        OCI_INDEX
    );
    let platforms = store.children(&ix).unwrap();
    assert_eq!(platforms.len(), 2);
    for p in &platforms {
        assert_eq!(store.children(p).unwrap().len(), 2, "config and one layer");
    }
    assert_eq!(
        blob_files(&all).len(),
        7,
        "index, 2 manifests, 2 configs, 2 layers"
    );
}

#[test]
fn adopts_a_buildah_layout() {
    let Some(t) = Tools::need(&["buildah"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let b = t.buildah(tmp.path());
    let l = tmp.path().join("layout");
    b.image(tmp.path(), &l, "one", "amd64", "one.txt", "one\n");
    b.image(tmp.path(), &l, "two", "arm64", "two.txt", "two\n");
    b.index(tmp.path(), &l, "multi");

    let store = adopt(&l);
    let tags = store_tags(&store);
    assert_eq!(
        tags.keys().map(String::as_str).collect::<Vec<_>>(),
        ["multi", "one", "two"]
    );
    let one = blob_json(&l, &tags["one"]);
    assert_eq!(
        one["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar",
        "buildah commits uncompressed layers to oci:"
    );
    assert_eq!(
        store
            .manifest_info(&tags["multi"])
            .unwrap()
            .unwrap()
            .media_type,
        OCI_INDEX
    );
    assert_eq!(store.children(&tags["multi"]).unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 2. The layout stays readable
// ---------------------------------------------------------------------------------------------

/// A store that imported an umoci image (`t`, gzip layer) and buildah images (`one`, an
/// uncompressed layer; `multi`, an index), with referrers put through the store: an SBOM of `t`,
/// a signature of that SBOM, a signature of `multi` and one of its first platform manifest.
struct Populated {
    store: Store,
    t: Digest,
    one: Digest,
    multi: Digest,
    sbom: Digest,
    sbom_sig: Digest,
    multi_sig: Digest,
    platform_sig: Digest,
}

fn populated(t: &Tools, tmp: &Path, root: &Path, options: &Options) -> Populated {
    let a = tmp.join("umoci-src");
    umoci_image(t, tmp, &a, "t", "hello from umoci\n");
    let b = tmp.join("buildah-src");
    let bh = t.buildah(tmp);
    bh.image(tmp, &b, "one", "amd64", "one.txt", "one\n");
    bh.index(tmp, &b, "multi");

    let store = Store::init(root, options).unwrap();
    store.import(&a, &["t".to_owned()]).unwrap();
    store
        .import(&b, &["one".to_owned(), "multi".to_owned()])
        .unwrap();
    let t_d = store.resolve("t").unwrap();
    let multi = store.resolve("multi").unwrap();
    let sbom = put_referrer(&store, &t_d, SBOM_TYPE, "sbom of t");
    let sbom_sig = put_referrer(&store, &sbom, SIGNATURE_TYPE, "signature of the sbom");
    let multi_sig = put_referrer(&store, &multi, SIGNATURE_TYPE, "signature of multi");
    let platform = store.children(&multi).unwrap()[0].clone();
    let platform_sig = put_referrer(&store, &platform, SIGNATURE_TYPE, "signature of a platform");
    Populated {
        t: t_d,
        one: store.resolve("one").unwrap(),
        multi,
        sbom,
        sbom_sig,
        multi_sig,
        platform_sig,
        store,
    }
}

#[test]
fn the_layout_stays_readable_by_the_tools() {
    let Some(t) = Tools::need(&["skopeo", "umoci", "buildah"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let p = populated(&t, tmp.path(), &root, &Options::default());
    let store = &p.store;

    // Tag, untag, import and delete an image with a referrer, leave junk, collect.
    store.tag("t", "t-alias").unwrap();
    store.tag("one", "short-lived").unwrap();
    store.untag("short-lived").unwrap();
    let doomed_src = tmp.path().join("doomed-src");
    umoci_image(&t, tmp.path(), &doomed_src, "doomed", "doomed\n");
    store.import(&doomed_src, &["doomed".to_owned()]).unwrap();
    let doomed = store.resolve("doomed").unwrap();
    let doomed_sig = put_referrer(store, &doomed, SIGNATURE_TYPE, "signature of doomed");
    let deleted = store
        .delete(doomed.as_str(), &DeleteOptions::default())
        .unwrap();
    assert_eq!(deleted.tags, ["doomed"]);
    let (junk, _) = put_blob(store, b"junk nobody references");
    let gc = store.gc(&GcOptions::default()).unwrap();
    let removed: BTreeSet<&str> = gc.removed.iter().map(|r| r.digest.as_str()).collect();
    assert!(removed.contains(junk.as_str()), "{removed:?}");
    assert!(store.blob_info(&doomed).unwrap().is_none());
    assert!(store.blob_info(&doomed_sig).unwrap().is_none());
    verify_store(store);

    // The referrers are listed in index.json, untagged.
    let untagged = layout_untagged(&root);
    for r in [&p.sbom, &p.sbom_sig, &p.multi_sig, &p.platform_sig] {
        assert!(untagged.contains(r), "{r} is not listed in index.json");
    }
    let live = live_set(store);
    for d in [
        &p.t,
        &p.one,
        &p.multi,
        &p.sbom,
        &p.sbom_sig,
        &p.multi_sig,
        &p.platform_sig,
    ] {
        assert!(live.contains(d), "{d} is not live");
    }

    // skopeo reads and copies (while the store is open: it only reads).
    for tag in ["t", "t-alias", "one", "multi"] {
        let want = store.resolve(tag).unwrap();
        let info: Value =
            serde_json::from_str(&run(t.skopeo().arg("inspect").arg(oci(&root, tag)))).unwrap();
        assert!(
            info["Layers"].as_array().is_some_and(|l| !l.is_empty()),
            "{info}"
        );
        assert_eq!(skopeo_digest(&t, &root, tag), want, "{tag}");
    }
    let out = tmp.path().join("out");
    for tag in ["t", "one"] {
        run(t
            .skopeo()
            .arg("copy")
            .arg(oci(&root, tag))
            .arg(oci(&out, tag)));
    }
    run(t
        .skopeo()
        .args(["copy", "--all"])
        .arg(oci(&root, "multi"))
        .arg(oci(&out, "multi")));
    assert_eq!(layout_tags(&out)["multi"], p.multi);

    // umoci lists, stats and unpacks.
    let ls = run(t.umoci().args(["ls", "--layout"]).arg(&root));
    let listed: BTreeSet<&str> = ls.lines().collect();
    assert_eq!(
        listed,
        BTreeSet::from(["multi", "one", "t", "t-alias"]),
        "{ls}"
    );
    for tag in ["t", "one"] {
        let stat = run(t
            .umoci()
            .args(["stat", "--image"])
            .arg(umoci_ref(&root, tag)));
        assert!(stat.contains("LAYER"), "{stat}");
    }
    for (tag, file, content) in [
        ("t", "hello.txt", "hello from umoci\n"),
        ("one", "one.txt", "one\n"),
    ] {
        let bundle = tmp.path().join(format!("bundle-{tag}"));
        run(t
            .umoci()
            .args(["unpack", "--rootless", "--image"])
            .arg(umoci_ref(&root, tag))
            .arg(&bundle));
        assert_eq!(
            fs::read_to_string(bundle.join("rootfs").join(file)).unwrap(),
            content
        );
    }

    // umoci gc, on the closed store, with a file the store never knew beside the live ones:
    // only that file goes.
    let live_files = blob_files(&root);
    drop(p.store);
    let stray = b"a file another tool left";
    let stray_d = Digest::sha256(stray);
    fs::write(root.join("blobs/sha256").join(stray_d.encoded()), stray).unwrap();
    let before = snapshot(&root);
    run(t.umoci().args(["gc", "--layout"]).arg(&root));
    let after = snapshot(&root);
    let gone: Vec<&PathBuf> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    assert_eq!(
        gone,
        [&PathBuf::from("blobs/sha256").join(stray_d.encoded())],
        "umoci gc removed more than the stray file"
    );
    assert_eq!(blob_files(&root), live_files);
    assert!(root.join(".ocistore/index.redb").exists());

    let store = Store::open(&root, &Options::default()).unwrap();
    for d in &live {
        assert!(store.blob_info(d).unwrap().is_some(), "{d}");
        store.read_all(d).unwrap();
    }
    assert_eq!(
        referrer_digests(&store, &p.t, true),
        BTreeSet::from([p.sbom.clone(), p.sbom_sig.clone()])
    );
    assert_eq!(
        referrer_digests(&store, &p.multi, false),
        BTreeSet::from([p.multi_sig.clone()])
    );
    verify_store(&store);
}

// ---------------------------------------------------------------------------------------------
// 3. Round trip through skopeo
// ---------------------------------------------------------------------------------------------

#[test]
fn skopeo_round_trip_keeps_digests() {
    let Some(t) = Tools::need(&["skopeo", "umoci", "buildah"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let p = populated(&t, tmp.path(), &root, &Options::default());
    let (t_d, one, multi) = (p.t.clone(), p.one.clone(), p.multi.clone());

    // Out of the store and into another layout, with --preserve-digests: every digest holds.
    let out1 = tmp.path().join("out1");
    let out2 = tmp.path().join("out2");
    for (tag, all) in [("t", false), ("one", false), ("multi", true)] {
        for (from, to) in [(&root, &out1), (&out1, &out2)] {
            let mut c = t.skopeo();
            c.args(["copy", "--preserve-digests"]);
            if all {
                c.arg("--all");
            }
            run(c.arg(oci(from, tag)).arg(oci(to, tag)));
        }
    }
    let want = BTreeMap::from([
        ("multi".to_owned(), multi.clone()),
        ("one".to_owned(), one.clone()),
        ("t".to_owned(), t_d.clone()),
    ]);
    assert_eq!(layout_tags(&out1), want);
    assert_eq!(layout_tags(&out2), want);
    for d in blob_files(&out2) {
        p.store
            .blob_info(&d)
            .unwrap()
            .unwrap_or_else(|| panic!("{d} is new"));
    }

    // Without --preserve-digests skopeo compresses buildah's uncompressed layer, which changes
    // that image's digest; the gzip image from umoci keeps its own.
    let plain = tmp.path().join("plain");
    for tag in ["t", "one"] {
        run(t
            .skopeo()
            .arg("copy")
            .arg(oci(&root, tag))
            .arg(oci(&plain, tag)));
    }
    let plain_tags = layout_tags(&plain);
    assert_eq!(plain_tags["t"], t_d);
    assert_ne!(plain_tags["one"], one);
    let recompressed = blob_json(&plain, &plain_tags["one"]);
    assert_eq!(
        recompressed["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // Back with `ocistore import` into a new store.
    let bin = env!("CARGO_BIN_EXE_ocistore");
    let back = tmp.path().join("back");
    run(Command::new(bin).arg("--store").arg(&back).arg("init"));
    run(Command::new(bin)
        .arg("--store")
        .arg(&back)
        .arg("import")
        .arg(&out2));
    let s2 = Store::open(&back, &Options::default()).unwrap();
    assert_eq!(store_tags(&s2), want);
    verify_store(&s2);
    drop(s2);

    // Back into the store's own directory with skopeo, while the store is closed: the next
    // open takes the new tag in, and it names the same manifest.
    drop(p.store);
    run(t
        .skopeo()
        .args(["copy", "--preserve-digests"])
        .arg(oci(&out2, "one"))
        .arg(oci(&root, "one-again")));
    run(t
        .skopeo()
        .args(["copy", "--preserve-digests", "--all"])
        .arg(oci(&out2, "multi"))
        .arg(oci(&root, "multi-again")));
    let store = Store::open(&root, &Options::default()).unwrap();
    let r = store
        .open_report()
        .reconciled
        .clone()
        .expect("index.json changed");
    assert_eq!(r.tags_added, ["multi-again", "one-again"]);
    assert!(r.tags_removed.is_empty() && r.conflicts.is_empty(), "{r:?}");
    assert_eq!(store.resolve("one-again").unwrap(), one);
    assert_eq!(store.resolve("multi-again").unwrap(), multi);
    // The referrer entries skopeo found in index.json are still there.
    assert_eq!(
        referrer_digests(&store, &t_d, true),
        BTreeSet::from([p.sbom, p.sbom_sig])
    );
    assert!(store_untagged(&store).contains(&p.multi_sig));
    verify_store(&store);
}

// ---------------------------------------------------------------------------------------------
// 4. What the tools do to referrers
// ---------------------------------------------------------------------------------------------

/// skopeo copies an image without its referrers; the store's import brings them.
#[test]
fn skopeo_drops_referrers_and_import_keeps_them() {
    let Some(t) = Tools::need(&["skopeo", "umoci", "buildah"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let p = populated(&t, tmp.path(), &root, &Options::default());

    let out = tmp.path().join("out");
    run(t
        .skopeo()
        .arg("copy")
        .arg(oci(&root, "t"))
        .arg(oci(&out, "t")));
    run(t
        .skopeo()
        .args(["copy", "--all"])
        .arg(oci(&root, "multi"))
        .arg(oci(&out, "multi")));
    assert_eq!(layout_tags(&out)["t"], p.t);
    assert!(manifests_with_subject(&out, &p.t).is_empty());
    assert!(manifests_with_subject(&out, &p.multi).is_empty());
    for d in [&p.sbom, &p.sbom_sig, &p.multi_sig, &p.platform_sig] {
        assert!(!blob_files(&out).contains(d), "skopeo copied referrer {d}");
    }
    assert!(layout_untagged(&out).is_empty());

    // The store's import of the same tags brings every referrer, transitively, with its blobs
    // and its untagged index.json entry.
    let dest = tmp.path().join("dest");
    let s2 = Store::init(&dest, &Options::default()).unwrap();
    let report = s2
        .import(&root, &["t".to_owned(), "multi".to_owned()])
        .unwrap();
    assert_eq!(report.untagged_entries, 4, "{report:?}");
    assert_eq!(
        referrer_digests(&s2, &p.t, true),
        BTreeSet::from([p.sbom.clone(), p.sbom_sig.clone()])
    );
    assert_eq!(
        referrer_digests(&s2, &p.multi, false),
        BTreeSet::from([p.multi_sig.clone()])
    );
    let platform = s2.children(&p.multi).unwrap()[0].clone();
    assert_eq!(
        referrer_digests(&s2, &platform, false),
        BTreeSet::from([p.platform_sig.clone()])
    );
    assert_eq!(
        manifests_with_subject(&dest, &p.t),
        std::slice::from_ref(&p.sbom)
    );
    verify_store(&s2);
}

/// `umoci gc` keeps what index.json reaches and nothing else: a referrer linked to its subject
/// only through the `subject` field (the store opened with `list_referrers: false`) is deleted,
/// with its blobs. The store's import from such a layout still finds it.
#[test]
fn umoci_gc_deletes_referrers_linked_only_by_subject() {
    let Some(t) = Tools::need(&["umoci", "buildah"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let unlisted = Options {
        list_referrers: false,
        ..Options::default()
    };
    let p = populated(&t, tmp.path(), &root, &unlisted);
    let referrers = [&p.sbom, &p.sbom_sig, &p.multi_sig, &p.platform_sig];
    assert!(layout_untagged(&root).is_empty());
    let live = live_set(&p.store);
    for d in referrers {
        assert!(live.contains(d), "the store keeps {d} live");
    }

    // The store's import follows `subject` fields in the files, listed or not.
    let dest = tmp.path().join("dest");
    let s2 = Store::init(&dest, &Options::default()).unwrap();
    s2.import(&root, &["t".to_owned()]).unwrap();
    assert_eq!(
        referrer_digests(&s2, &p.t, true),
        BTreeSet::from([p.sbom.clone(), p.sbom_sig.clone()])
    );
    drop(s2);

    // The payload layers of the referrers, which nothing else shares.
    let payloads: Vec<Digest> = referrers
        .iter()
        .map(|d| digest_of(&blob_json(&root, d)["layers"][0]))
        .collect();
    drop(p.store);
    run(t.umoci().args(["gc", "--layout"]).arg(&root));
    let files = blob_files(&root);
    for d in referrers.into_iter().chain(&payloads) {
        assert!(!files.contains(d), "umoci gc kept {d}");
    }
    for d in [&p.t, &p.one, &p.multi] {
        assert!(files.contains(d), "umoci gc removed image {d}");
    }
    assert!(manifests_with_subject(&root, &p.t).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 5. The store after the tools
// ---------------------------------------------------------------------------------------------

/// Tags and images umoci adds are taken in: while the store is closed (on the next open) and
/// while it is open (before its next index.json rewrite). The referrer entries survive umoci's
/// rewrites of index.json.
#[test]
fn the_store_takes_in_what_umoci_added() {
    let Some(t) = Tools::need(&["umoci", "buildah"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let p = populated(&t, tmp.path(), &root, &Options::default());
    let referrers = BTreeSet::from([
        p.sbom.clone(),
        p.sbom_sig.clone(),
        p.multi_sig.clone(),
        p.platform_sig.clone(),
    ]);
    drop(p.store);

    run(t
        .umoci()
        .args(["tag", "--image"])
        .arg(umoci_ref(&root, "t"))
        .arg("umoci-tag"));
    run(t
        .umoci()
        .args(["new", "--image"])
        .arg(umoci_ref(&root, "fresh")));
    umoci_image(
        &t,
        tmp.path(),
        &root,
        "built",
        "built by umoci in the store\n",
    );
    let on_disk = layout_tags(&root);

    let store = Store::open(&root, &Options::default()).unwrap();
    let r = store
        .open_report()
        .reconciled
        .clone()
        .expect("umoci changed index.json");
    assert_eq!(r.tags_added, ["built", "fresh", "umoci-tag"], "{r:?}");
    assert!(r.tags_removed.is_empty() && r.tags_moved.is_empty() && r.conflicts.is_empty());
    assert_eq!(store_tags(&store), on_disk);
    assert_eq!(store.resolve("umoci-tag").unwrap(), p.t);
    assert_eq!(store_untagged(&store), referrers, "{r:?}");
    assert_eq!(
        referrer_digests(&store, &p.t, true),
        BTreeSet::from([p.sbom.clone(), p.sbom_sig.clone()])
    );
    let built = store.resolve("built").unwrap();
    let layer = digest_of(&blob_json(&root, &built)["layers"][0]);
    assert!(store.blob_info(&layer).unwrap().is_some());
    verify_store(&store);

    // While the store is open: umoci adds a tag and an image, then the store writes index.json.
    run(t
        .umoci()
        .args(["tag", "--image"])
        .arg(umoci_ref(&root, "one"))
        .arg("while-open"));
    run(t
        .umoci()
        .args(["new", "--image"])
        .arg(umoci_ref(&root, "fresh-while-open")));
    store.tag("multi", "store-tag").unwrap();
    let tags = store_tags(&store);
    assert_eq!(tags["while-open"], p.one);
    assert!(tags.contains_key("fresh-while-open"));
    assert_eq!(layout_tags(&root), tags, "index.json lost a tag");
    verify_store(&store);

    // A collection keeps everything index.json reaches, referrers included; at most it takes
    // the manifests and configs `umoci repack` left unreferenced.
    let reachable = layout_reachable(&root);
    let gc = store.gc(&GcOptions::default()).unwrap();
    for r in &gc.removed {
        let d = Digest::parse(&r.digest).unwrap();
        assert!(!reachable.contains(&d), "the store collected {r:?}");
    }
    for d in &reachable {
        store.read_all(d).unwrap();
    }
    for d in referrers.iter().chain([&p.t, &p.one, &p.multi, &built]) {
        assert!(reachable.contains(d), "{d}");
    }
    verify_store(&store);
}

/// `umoci gc` while the store is closed removes a referrer the store keeps live (linked only by
/// `subject`), its payload, and a blob the store had not collected yet. The next open notices:
/// it reports exactly those blobs, stops recording them as present, and stops answering the
/// referrers. The images stay whole.
#[test]
fn the_store_notices_blobs_umoci_gc_removed() {
    let Some(t) = Tools::need(&["skopeo", "umoci", "buildah"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let unlisted = Options {
        list_referrers: false,
        ..Options::default()
    };
    let p = populated(&t, tmp.path(), &root, &unlisted);
    let (junk, _) = put_blob(&p.store, b"not collected yet");
    let referrers = [&p.sbom, &p.sbom_sig, &p.multi_sig, &p.platform_sig];
    drop(p.store);
    let before = blob_files(&root);
    run(t.umoci().args(["gc", "--layout"]).arg(&root));
    let after = blob_files(&root);
    let gone: BTreeSet<Digest> = before.difference(&after).cloned().collect();
    for d in referrers.into_iter().chain([&junk]) {
        assert!(gone.contains(d), "umoci gc kept {d}");
    }

    let store = Store::open(&root, &Options::default()).unwrap();
    let report = store.open_report().clone();
    let noticed: BTreeSet<Digest> = report
        .removed_outside
        .iter()
        .map(|d| Digest::parse(d).unwrap())
        .collect();
    assert_eq!(noticed, gone, "{report:?}");
    for d in &gone {
        assert!(
            store.blob_info(d).unwrap().is_none(),
            "{d} is still recorded"
        );
        assert!(store.manifest_info(d).unwrap().is_none(), "{d}");
    }
    assert!(referrer_digests(&store, &p.t, true).is_empty());
    assert!(referrer_digests(&store, &p.multi, false).is_empty());
    assert_eq!(store_tags(&store), layout_tags(&root));
    verify_store(&store);
    for tag in ["t", "one", "multi"] {
        assert_eq!(skopeo_digest(&t, &root, tag), store.resolve(tag).unwrap());
    }
    let gc = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(gc.removed_blobs, 0, "{:?}", gc.removed);
    drop(store);
    let again = Store::open(&root, &Options::default()).unwrap();
    assert!(again.open_report().removed_outside.is_empty());
}

/// The same, but `umoci gc` runs while the store is open (a long-lived writer, such as a
/// registry, beside an administrator's `umoci gc`): the blobs it removed should be noticed at
/// the latest on the next open.
#[test]
fn the_store_notices_blobs_removed_while_it_was_open() {
    let Some(t) = Tools::need(&["umoci", "buildah"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let root = tmp.path().join("store");
    let unlisted = Options {
        list_referrers: false,
        ..Options::default()
    };
    let p = populated(&t, tmp.path(), &root, &unlisted);
    let (junk, _) = put_blob(&p.store, b"not collected yet");
    run(t.umoci().args(["gc", "--layout"]).arg(&root));
    assert!(!blob_files(&root).contains(&junk));
    assert!(!blob_files(&root).contains(&p.sbom));
    drop(p.store);

    let store = Store::open(&root, &Options::default()).unwrap();
    let noticed = &store.open_report().removed_outside;
    for d in [&junk, &p.sbom] {
        assert!(
            noticed.contains(&d.to_string()),
            "{d} not noticed: {noticed:?}"
        );
        assert!(
            store.blob_info(d).unwrap().is_none(),
            "{d} is still recorded"
        );
    }
    verify_store(&store);
}

/// Another tool that writes an image into the layout writes its blobs first and index.json
/// last (skopeo, umoci, oras all do). A store opened and collected in between (the CLI's `ls`,
/// then `gc`, for example) must leave those blobs alone within the grace, as it leaves orphan
/// files; otherwise the tool's index.json then names a manifest that is gone.
#[test]
fn blobs_another_tool_is_still_writing_survive_a_collection() {
    let Some(t) = Tools::need(&["skopeo", "umoci"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    umoci_image(&t, tmp.path(), &src, "t", "in flight\n");
    let root = tmp.path().join("store");
    drop(Store::init(&root, &Options::default()).unwrap());

    // skopeo copies into a staging layout; its blobs then appear in the store's blobs/ the way
    // they would midway through `skopeo copy oci:src:t oci:store:t`, before index.json.
    let staging = tmp.path().join("staging");
    run(t
        .skopeo()
        .arg("copy")
        .arg(oci(&src, "t"))
        .arg(oci(&staging, "t")));
    let image = layout_tags(&staging)["t"].clone();
    for d in blob_files(&staging) {
        let rel = Path::new("blobs")
            .join(d.algorithm_name())
            .join(d.encoded());
        fs::create_dir_all(root.join(rel.parent().unwrap())).unwrap();
        fs::copy(staging.join(&rel), root.join(&rel)).unwrap();
    }
    let store = Store::open(&root, &Options::default()).unwrap();
    store.gc(&GcOptions::default()).unwrap();
    drop(store);
    for d in blob_files(&staging) {
        assert!(
            blob_files(&root).contains(&d),
            "the collection removed {d} within the grace"
        );
    }

    // The copy finishes: index.json gets the entry. The image must be whole.
    fs::copy(staging.join("index.json"), root.join("index.json")).unwrap();
    let store = Store::open(&root, &Options::default()).unwrap();
    assert_eq!(store.resolve("t").unwrap(), image);
    verify_store(&store);
    run(t.skopeo().arg("inspect").arg(oci(&root, "t")));
}

/// A pin is a root of the store's collector, but index.json does not show it: `umoci gc`
/// deletes a pinned, untagged image.
#[test]
fn umoci_gc_keeps_pinned_images() {
    let Some(t) = Tools::need(&["umoci"]) else {
        return;
    };
    let tmp = TempDir::new().unwrap();
    let src = tmp.path().join("src");
    umoci_image(&t, tmp.path(), &src, "t", "pinned\n");
    let root = tmp.path().join("store");
    let store = Store::init(&root, &Options::default()).unwrap();
    store.import(&src, &["t".to_owned()]).unwrap();
    let image = store.untag("t").unwrap();
    store.pin(&image).unwrap();
    let live = live_set(&store);
    assert!(live.contains(&image));
    drop(store);
    run(t.umoci().args(["gc", "--layout"]).arg(&root));
    let files = blob_files(&root);
    for d in &live {
        assert!(
            files.contains(d),
            "umoci gc removed {d}, which the store pins"
        );
    }
}
