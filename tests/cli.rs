//! The `ocistore` binary, run as a process: every command's output, store selection, and the
//! one-line errors (exit code 1, nothing written) of user mistakes.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_ocistore");

/// The binary with a clean environment: no store from the environment, backtraces requested (so
/// that a panic would show).
fn bin() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("OCISTORE_DIR")
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .stdin(Stdio::null());
    c
}

/// The binary with `--store <store>` and `args`.
fn on(store: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.arg("--store").arg(store).args(args);
    c
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_panic(out: &Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase();
    assert!(
        !all.contains("panicked") && !all.contains("backtrace") && !all.contains("internal error"),
        "{}",
        show(out)
    );
}

/// Runs `c`, expects success, returns stdout.
fn ok(c: &mut Command) -> Vec<u8> {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_no_panic(&out);
    out.stdout
}

/// Runs `c`, expects success, returns stdout as text.
fn ok_text(c: &mut Command) -> String {
    String::from_utf8(ok(c)).unwrap()
}

/// Runs `c`, expects success, returns stdout parsed as JSON (the whole of it).
fn ok_json(c: &mut Command) -> Value {
    let out = ok(c);
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// Runs `c` with `input` on stdin.
fn with_stdin(c: &mut Command, input: &[u8]) -> Output {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `c`, expects a user error: exit code 1, nothing on stdout, exactly one line on stderr,
/// `error: ...` naming the problem (every `needles` item, case-insensitive), no panic.
fn user_error(c: &mut Command, needles: &[&str]) -> String {
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_no_panic(&out);
    assert!(out.stdout.is_empty(), "{}", show(&out));
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line on stderr\n{}", show(&out));
    assert!(stderr.ends_with('\n'), "{}", show(&out));
    let line = lines[0];
    assert!(line.starts_with("error: "), "{}", show(&out));
    for n in needles {
        assert!(
            line.to_lowercase().contains(&n.to_lowercase()),
            "error line does not name {n:?}: {line}"
        );
    }
    line.to_owned()
}

/// Every file under `root` (including `.ocistore/`, except the index database and the lock
/// file, whose bytes a reader may touch) with its bytes, and every directory.
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                stack.push(path);
            } else if rel != Path::new(".ocistore/index.redb") && rel != Path::new(".ocistore/lock")
            {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

/// A store with a config blob and a manifest tagged "v1" in it, made through the CLI.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    files: PathBuf,
    config: Vec<u8>,
    config_digest: String,
    manifest: Vec<u8>,
    manifest_digest: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let files = dir.path().join("files");
    fs::create_dir(&files).unwrap();
    ok(&mut on(&root, &["init"]));
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let cfg = write(&files, "config.json", &config);
    let config_digest = ok_text(&mut on(&root, &["put", cfg.to_str().unwrap()]))
        .trim()
        .to_owned();
    let manifest = manifest_json(
        descriptor(OCI_CONFIG, &config_digest, config.len() as u64),
        vec![],
        None,
        None,
        &[("org.example", "fixture")],
    );
    let m = write(&files, "manifest.json", &manifest);
    let manifest_digest = ok_text(&mut on(
        &root,
        &[
            "put",
            "--media-type",
            OCI_MANIFEST,
            "--tag",
            "v1",
            m.to_str().unwrap(),
        ],
    ))
    .trim()
    .to_owned();
    Fixture {
        _dir: dir,
        root,
        files,
        config,
        config_digest,
        manifest,
        manifest_digest,
    }
}

fn ls_json(root: &Path) -> Vec<Value> {
    ok_json(&mut on(root, &["ls", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn tags(root: &Path) -> BTreeMap<String, String> {
    ls_json(root)
        .iter()
        .filter(|e| e["tag"].is_string())
        .map(|e| {
            (
                e["tag"].as_str().unwrap().to_owned(),
                e["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn stats(root: &Path) -> Value {
    ok_json(&mut on(root, &["stats", "--json"]))
}

fn referrer_digests(answer: &Value) -> Vec<String> {
    assert_eq!(answer["schemaVersion"], 2, "{answer}");
    assert_eq!(answer["mediaType"], OCI_INDEX, "{answer}");
    let mut v: Vec<String> = answer["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn sorted_strings<'a>(v: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = v.into_iter().map(str::to_owned).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// demo

#[test]
fn demo_builds_a_store_and_prints_its_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    let out = ok_text(bin().arg("demo").arg(&root));
    for want in [
        "web:1.0",
        "web:multi",
        "db:2.0",
        "referrer",
        "SBOM of web:1.0",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l == format!("store: {}", root.display())),
        "no store line in:\n{out}"
    );
    assert!(root.join("oci-layout").is_file());
    assert!(root.join("index.json").is_file());

    // The store it made is usable by the other commands.
    let t = tags(&root);
    assert_eq!(
        t.keys().map(String::as_str).collect::<Vec<_>>(),
        ["db:2.0", "web:1.0", "web:multi"]
    );
    let s = stats(&root);
    assert_eq!(s["tags"], 3);
    assert_eq!(s["referrer_edges"], 3);
    let direct = ok_json(&mut on(&root, &["referrers", "web:1.0"]));
    assert_eq!(referrer_digests(&direct).len(), 2);
    let all = ok_json(&mut on(&root, &["referrers", "web:1.0", "--transitive"]));
    assert_eq!(referrer_digests(&all).len(), 3);
    let sboms = ok_json(&mut on(
        &root,
        &[
            "referrers",
            "web:1.0",
            "--artifact-type",
            "application/spdx+json",
        ],
    ));
    assert_eq!(referrer_digests(&sboms).len(), 1);
    assert_eq!(
        sboms["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    let sigs = ok_json(&mut on(
        &root,
        &[
            "referrers",
            "web:1.0",
            "--transitive",
            "--artifact-type",
            "application/vnd.dev.cosign.artifact.sig.v1+json",
        ],
    ));
    assert_eq!(referrer_digests(&sigs).len(), 2);
    for m in sigs["manifests"].as_array().unwrap() {
        assert_eq!(
            m["artifactType"],
            "application/vnd.dev.cosign.artifact.sig.v1+json"
        );
    }
    assert!(
        ok_json(&mut on(&root, &["referrers", "db:2.0"]))["manifests"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn demo_without_a_dir_uses_a_new_temporary_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok_text(bin().arg("demo").env("TMPDIR", tmp.path()));
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("store: "))
        .unwrap_or_else(|| panic!("no store line in:\n{out}"));
    let root = PathBuf::from(line);
    assert!(root.is_dir(), "{} does not exist", root.display());
    assert!(root.starts_with(tmp.path()), "{}", root.display());
    assert!(root.join("oci-layout").is_file());
    assert!(out.contains("web:1.0") && out.contains("referrer"), "{out}");
    assert_eq!(tags(&root).len(), 3);
    // The suggested command works as printed.
    assert!(out.contains(&format!(
        "try: ocistore --store {} referrers web:1.0 --transitive",
        root.display()
    )));
    let answer = ok_json(&mut on(&root, &["referrers", "web:1.0", "--transitive"]));
    assert_eq!(referrer_digests(&answer).len(), 3);
}

#[test]
fn demo_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("demo");
    let v = ok_json(bin().arg("demo").arg(&root).arg("--json"));
    assert_eq!(v["store"], root.to_str().unwrap());
    assert_eq!(v["stats"]["tags"], 3);
    assert!(v["stats"]["blobs"].as_u64().unwrap() > 0);
    let tagged: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["tag"].as_str())
        .collect();
    assert_eq!(sorted_strings(tagged), ["db:2.0", "web:1.0", "web:multi"]);
}

// ---------------------------------------------------------------------------------------------
// store selection

#[test]
fn store_is_chosen_by_flag_env_or_current_dir() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");

    // Env: init and tag through OCISTORE_DIR.
    ok(bin().env("OCISTORE_DIR", &a).arg("init"));
    assert!(a.join("oci-layout").is_file());
    let out = with_stdin(
        bin().env("OCISTORE_DIR", &a).args([
            "put",
            "--media-type",
            OCI_INDEX,
            "--tag",
            "in-a",
            "-",
        ]),
        &index_json(OCI_INDEX, vec![], None, None, &[]),
    );
    assert!(out.status.success(), "{}", show(&out));

    // Flag.
    ok(bin().arg("--store").arg(&b).arg("init"));
    assert!(b.join("oci-layout").is_file());
    let out = with_stdin(
        &mut on(
            &b,
            &["put", "--media-type", OCI_INDEX, "--tag", "in-b", "-"],
        ),
        &index_json(OCI_INDEX, vec![], None, None, &[("b", "b")]),
    );
    assert!(out.status.success(), "{}", show(&out));

    let tags_of = |c: &mut Command| -> Vec<String> {
        ok_json(c.args(["ls", "--json"]))
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["tag"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(tags_of(bin().env("OCISTORE_DIR", &a)), ["in-a"]);
    assert_eq!(tags_of(bin().arg("--store").arg(&b)), ["in-b"]);
    // The flag wins over the environment, after the subcommand too.
    assert_eq!(
        tags_of(bin().env("OCISTORE_DIR", &a).arg("--store").arg(&b)),
        ["in-b"]
    );
    assert_eq!(
        ok_text(
            bin()
                .env("OCISTORE_DIR", &a)
                .args(["cat", "in-b", "--store"])
                .arg(&b)
        ),
        String::from_utf8(index_json(OCI_INDEX, vec![], None, None, &[("b", "b")])).unwrap()
    );
    // Default: the current directory.
    assert_eq!(tags_of(bin().current_dir(&a)), ["in-a"]);
    assert_eq!(tags_of(bin().current_dir(&b)), ["in-b"]);
    // And a current directory that is not a store is an error naming it.
    user_error(bin().current_dir(dir.path()).arg("ls"), &["oci-layout"]);
    // init in the current directory.
    let c = dir.path().join("c");
    fs::create_dir(&c).unwrap();
    let out = ok_text(bin().current_dir(&c).arg("init"));
    assert!(out.starts_with("store ready at"), "{out}");
    assert!(c.join("oci-layout").is_file());
}

// ---------------------------------------------------------------------------------------------
// the commands

#[test]
fn init_creates_a_layout_in_an_empty_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok_text(&mut on(dir.path(), &["init"]));
    assert_eq!(
        out,
        format!(
            "store ready at {} (0 blobs indexed)\n",
            dir.path().display()
        )
    );
    let layout: Value =
        serde_json::from_slice(&fs::read(dir.path().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"], json!([]));
    assert!(dir.path().join("blobs").is_dir());
    assert!(ls_json(dir.path()).is_empty());
    let s = stats(dir.path());
    assert_eq!(
        (&s["blobs"], &s["manifests"], &s["tags"]),
        (&json!(0), &json!(0), &json!(0))
    );

    // init again: the layout is adopted, nothing changes.
    let before = tree(dir.path());
    let v = ok_json(&mut on(dir.path(), &["init", "--json"]));
    assert_eq!(v["created_index"], false);
    assert_eq!(v["indexed_blobs"], 0);
    assert_same_tree(dir.path(), &before, &["init", "--json"]);

    // A missing directory is created.
    let fresh = dir.path().join("x").join("y");
    let v = ok_json(&mut on(&fresh, &["init", "--json"]));
    assert_eq!(v["created_index"], true);
    assert!(fresh.join("oci-layout").is_file());
}

#[test]
fn init_adopts_a_foreign_layout() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path());
    let before = snapshot(dir.path());
    let v = ok_json(&mut on(dir.path(), &["init", "--json"]));
    assert_eq!(v["created_index"], true);
    assert_eq!(v["indexed_blobs"], g.blob_files);
    assert_eq!(snapshot(dir.path()), before);
    let s = stats(dir.path());
    assert_eq!(s["blobs"], g.blob_files);
    assert_eq!(s["manifests"], g.manifest_files);
    assert_eq!(s["tags"], g.tags.len() as u64);
    let answer = ok_json(&mut on(dir.path(), &["referrers", "v1"]));
    let want: Vec<String> = g
        .expected_referrers(&g.image.digest)
        .into_iter()
        .map(|r| r.digest)
        .collect();
    assert_eq!(referrer_digests(&answer), want);
}

#[test]
fn put_prints_the_digest_from_a_file_or_stdin() {
    let f = fixture();
    assert_eq!(f.config_digest, sha256_digest(&f.config));
    assert_eq!(f.manifest_digest, sha256_digest(&f.manifest));

    // Binary content, every byte value, from stdin.
    let content: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let out = with_stdin(&mut on(&f.root, &["put", "-"]), &content);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", sha256_digest(&content))
    );
    let blob = f.root.join("blobs/sha256").join(sha256_hex(&content));
    assert_eq!(fs::read(blob).unwrap(), content);

    // The same content from a file: same digest, nothing new.
    let p = write(&f.files, "bin", &content);
    let before = tree(&f.root);
    let out = ok_text(&mut on(&f.root, &["put", p.to_str().unwrap()]));
    assert_eq!(out, format!("{}\n", sha256_digest(&content)));
    assert_same_tree(&f.root, &before, &["put", "FILE"]);

    // Empty stdin is a blob too.
    let out = with_stdin(&mut on(&f.root, &["put", "-"]), b"");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        sha256_digest(b"")
    );

    // --json.
    let v = ok_json(&mut on(&f.root, &["put", "--json", p.to_str().unwrap()]));
    assert_eq!(v["digest"], sha256_digest(&content));
    assert_eq!(v["size"], content.len());
    assert_eq!(v["existed"], true);
    assert_eq!(v["media_type"], Value::Null);
    let p2 = write(&f.files, "new", b"brand new");
    let v = ok_json(&mut on(&f.root, &["put", p2.to_str().unwrap(), "--json"]));
    assert_eq!(v["digest"], sha256_digest(b"brand new"));
    assert_eq!(v["existed"], false);
}

#[test]
fn put_with_a_manifest_type_and_tag() {
    let f = fixture();
    assert_eq!(
        tags(&f.root),
        BTreeMap::from([("v1".to_owned(), f.manifest_digest.clone())])
    );
    let entries = ls_json(&f.root);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["tag"], "v1");
    assert_eq!(entries[0]["digest"], f.manifest_digest.as_str());
    assert_eq!(entries[0]["media_type"], OCI_MANIFEST);
    assert_eq!(entries[0]["size"], f.manifest.len());
    // index.json names it too, for other tools.
    let index: Value =
        serde_json::from_slice(&fs::read(f.root.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"][0];
    assert_eq!(m["digest"], f.manifest_digest.as_str());
    assert_eq!(m["annotations"][REF_NAME], "v1");

    // Several tags at once, from stdin, with --json.
    let idx = index_json(
        OCI_INDEX,
        vec![descriptor(
            OCI_MANIFEST,
            &f.manifest_digest,
            f.manifest.len() as u64,
        )],
        None,
        None,
        &[],
    );
    let out = with_stdin(
        &mut on(
            &f.root,
            &[
                "put",
                "--json",
                "--media-type",
                OCI_INDEX,
                "--tag",
                "a",
                "--tag",
                "b",
                "-",
            ],
        ),
        &idx,
    );
    assert!(out.status.success(), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["digest"], sha256_digest(&idx));
    assert_eq!(v["media_type"], OCI_INDEX);
    let t = tags(&f.root);
    assert_eq!(t["a"], sha256_digest(&idx));
    assert_eq!(t["b"], sha256_digest(&idx));
    assert_eq!(stats(&f.root)["manifests"], 2);
}

#[test]
fn tag_untag_ls() {
    let f = fixture();
    // By tag and by digest.
    assert_eq!(
        ok_text(&mut on(&f.root, &["tag", "v1", "latest"])),
        format!("latest -> {}\n", f.manifest_digest)
    );
    let v = ok_json(&mut on(
        &f.root,
        &["tag", &f.manifest_digest, "org/repo:2", "--json"],
    ));
    assert_eq!(v, json!({"tag": "org/repo:2", "digest": f.manifest_digest}));
    let t = tags(&f.root);
    assert_eq!(
        t.keys().map(String::as_str).collect::<Vec<_>>(),
        ["latest", "org/repo:2", "v1"]
    );
    assert!(t.values().all(|d| *d == f.manifest_digest));

    // The text listing names every tag.
    let text = ok_text(&mut on(&f.root, &["ls"]));
    assert_eq!(text.lines().count(), 3, "{text}");
    for t in ["latest", "org/repo:2", "v1"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(t) && l.contains(&f.manifest_digest)),
            "{t} missing in:\n{text}"
        );
    }

    // Untag.
    assert_eq!(
        ok_text(&mut on(&f.root, &["untag", "latest"])),
        format!("removed tag latest (was {})\n", f.manifest_digest)
    );
    let v = ok_json(&mut on(&f.root, &["untag", "--json", "org/repo:2"]));
    assert_eq!(v, json!({"tag": "org/repo:2", "digest": f.manifest_digest}));
    assert_eq!(tags(&f.root).keys().collect::<Vec<_>>(), ["v1"]);
    let index: Value =
        serde_json::from_slice(&fs::read(f.root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    // The manifest itself stays.
    assert_eq!(
        ok(&mut on(&f.root, &["cat", &f.manifest_digest])),
        f.manifest
    );

    // Moving a tag.
    let other = index_json(OCI_INDEX, vec![], None, None, &[]);
    let out = with_stdin(
        &mut on(&f.root, &["put", "--media-type", OCI_INDEX, "-"]),
        &other,
    );
    assert!(out.status.success(), "{}", show(&out));
    ok(&mut on(&f.root, &["tag", &sha256_digest(&other), "v1"]));
    assert_eq!(tags(&f.root)["v1"], sha256_digest(&other));
}

#[test]
fn cat_writes_the_exact_bytes() {
    let f = fixture();
    assert_eq!(ok(&mut on(&f.root, &["cat", "v1"])), f.manifest);
    assert_eq!(
        ok(&mut on(&f.root, &["cat", &f.manifest_digest])),
        f.manifest
    );
    assert_eq!(ok(&mut on(&f.root, &["cat", &f.config_digest])), f.config);
    // --json does not change raw output.
    assert_eq!(ok(&mut on(&f.root, &["cat", "--json", "v1"])), f.manifest);

    // Binary and larger than a pipe buffer.
    let content: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let p = write(&f.files, "big", &content);
    let d = ok_text(&mut on(&f.root, &["put", p.to_str().unwrap()]));
    let out = ok(&mut on(&f.root, &["cat", d.trim()]));
    assert!(out == content, "cat returned other bytes");
}

#[test]
fn referrers_of_an_imported_layout() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let g = generate(&src);
    let root = dir.path().join("store");
    ok(&mut on(&root, &["init"]));
    ok(&mut on(&root, &["import", src.to_str().unwrap()]));

    let answer = ok_json(&mut on(&root, &["referrers", "v1"]));
    let want: Vec<String> = g
        .expected_referrers(&g.image.digest)
        .into_iter()
        .map(|r| r.digest)
        .collect();
    assert_eq!(referrer_digests(&answer), want);
    // The descriptors are complete, and by digest too.
    let by_digest = ok_json(&mut on(&root, &["referrers", &g.image.digest]));
    assert_eq!(by_digest, answer);
    let sbom = answer["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["digest"] == g.sbom.digest.as_str())
        .unwrap();
    assert_eq!(sbom["mediaType"], OCI_MANIFEST);
    assert_eq!(sbom["size"], g.sbom.size);
    assert_eq!(sbom["artifactType"], SBOM_TYPE);
    assert_eq!(sbom["annotations"]["org.example.kind"], "sbom");

    // --artifact-type: the filter, reported on stderr (the header a registry would send).
    let out = on(&root, &["referrers", "v1", "--artifact-type", SBOM_TYPE])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let filtered: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        referrer_digests(&filtered),
        sorted_strings([g.sbom.digest.as_str(), g.artifact.digest.as_str()])
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("artifactType"),
        "{}",
        show(&out)
    );
    let none = ok_json(&mut on(
        &root,
        &[
            "referrers",
            "v1",
            "--artifact-type",
            "application/x-nothing",
        ],
    ));
    assert!(referrer_digests(&none).is_empty());

    // --transitive adds the signature of the SBOM.
    let all = ok_json(&mut on(&root, &["referrers", "v1", "--transitive"]));
    let mut want_all = want.clone();
    want_all.push(g.sbom_signature.digest.clone());
    want_all.sort();
    assert_eq!(referrer_digests(&all), want_all);
    let sigs = ok_json(&mut on(
        &root,
        &[
            "referrers",
            "v1",
            "--transitive",
            "--artifact-type",
            SIGNATURE_TYPE,
            "--json",
        ],
    ));
    assert_eq!(
        referrer_digests(&sigs),
        vec![g.sbom_signature.digest.clone()]
    );
    let direct_sigs = ok_json(&mut on(
        &root,
        &["referrers", "v1", "--artifact-type", SIGNATURE_TYPE],
    ));
    assert!(referrer_digests(&direct_sigs).is_empty());

    // Fallback index and cosign tags are links, answered as referrers.
    let fb = ok_json(&mut on(&root, &["referrers", &g.nested_amd64.digest]));
    assert_eq!(
        referrer_digests(&fb),
        sorted_strings([
            g.fallback_sbom.digest.as_str(),
            g.fallback_sig.digest.as_str()
        ])
    );
    // An oras-style signature of a manifest list, found by tag.
    let list = ok_json(&mut on(&root, &["referrers", "docker", "--transitive"]));
    assert_eq!(
        referrer_digests(&list),
        vec![g.docker_list_sig.digest.clone()]
    );
    // No referrers: an empty index, not an error.
    let nothing = ok_json(&mut on(&root, &["referrers", &g.image_layer.digest]));
    assert_eq!(nothing["manifests"], json!([]));
}

#[test]
fn stats_and_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let g = generate(&src);
    let root = dir.path().join("store");
    ok(&mut on(&root, &["init"]));
    ok(&mut on(&root, &["import", src.to_str().unwrap()]));
    let f_tags = tags(&root);

    let s = stats(&root);
    for field in [
        "blobs",
        "bytes",
        "manifests",
        "tags",
        "untagged",
        "edges",
        "referrer_edges",
    ] {
        assert!(s[field].is_u64(), "{field} is not a number: {s}");
    }
    assert_eq!(s["tags"], g.tags.len() as u64);
    // The store lists every referrer it ingests with a subject field, untagged, in index.json
    // (as oras does): the source's untagged entries plus the subject-field referrers it did not
    // list.
    let listed = ok_json(&mut on(&root, &["ls", "--json"]));
    let untagged_listed = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["tag"].is_null())
        .count() as u64;
    assert_eq!(s["untagged"], untagged_listed);
    assert!(untagged_listed >= g.untagged.len() as u64);
    assert_eq!(
        s["blobs"],
        g.blob_files - 1,
        "all but the dangling referrer"
    );
    let text = ok_text(&mut on(&root, &["stats"]));
    assert!(
        text.starts_with(&format!("blobs {} (", s["blobs"])),
        "{text}"
    );
    assert!(text.contains(&format!("tags {}", s["tags"])), "{text}");

    let before = snapshot(&root);
    let text = ok_text(&mut on(&root, &["rebuild"]));
    assert!(text.contains(&format!("{} blobs", s["blobs"])), "{text}");
    assert_eq!(stats(&root), s);
    assert_eq!(tags(&root), f_tags);
    assert_eq!(snapshot(&root), before, "rebuild changed the layout");
    let v = ok_json(&mut on(&root, &["rebuild", "--json"]));
    assert_eq!(v["created_index"], true);
    assert_eq!(v["indexed_blobs"], s["blobs"]);
    assert_eq!(stats(&root), s);
    assert_eq!(tags(&root), f_tags);
    let answer = ok_json(&mut on(&root, &["referrers", "v1", "--transitive"]));
    assert_eq!(referrer_digests(&answer).len(), 7);

    // Rebuild after deleting the index altogether.
    fs::remove_file(root.join(".ocistore/index.redb")).unwrap();
    ok(&mut on(&root, &["rebuild"]));
    assert_eq!(stats(&root), s);
    assert_eq!(tags(&root), f_tags);
}

#[test]
fn import_all_or_one_tag() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let g = generate(&src);
    let src_before = snapshot(&src);

    let one = dir.path().join("one");
    ok(&mut on(&one, &["init"]));
    let v = ok_json(&mut on(
        &one,
        &["import", src.to_str().unwrap(), "--tag", "v1", "--json"],
    ));
    let mut got_tags: Vec<String> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    got_tags.sort();
    assert_eq!(got_tags, sorted_strings([g.cosign_sig_tag.as_str(), "v1"]));
    assert_eq!(v["untagged_entries"], 3);
    assert_eq!(v["present_blobs"], 0);
    assert_eq!(v["missing_blobs"], json!([]));
    let copied = v["copied_blobs"].as_u64().unwrap();
    assert_eq!(stats(&one)["blobs"], copied);
    assert!(v["copied_bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        tags(&one).keys().cloned().collect::<Vec<_>>(),
        sorted_strings([g.cosign_sig_tag.as_str(), "v1"])
    );
    assert_eq!(
        ok(&mut on(&one, &["cat", "v1"])),
        fs::read(src.join(g.image.digest().blob_path())).unwrap()
    );
    // Nothing of the other images.
    for d in [&g.docker_list, &g.nested_outer, &g.bare] {
        user_error(
            &mut on(&one, &["cat", &d.digest]),
            &["not found", &d.digest],
        );
    }

    // Again: nothing copied.
    let text = ok_text(&mut on(
        &one,
        &["import", src.to_str().unwrap(), "--tag", "v1"],
    ));
    assert!(
        text.starts_with(&format!(
            "imported 0 blobs (0 bytes), {copied} already present"
        )),
        "{text}"
    );

    // Everything, text output.
    let all = dir.path().join("all");
    ok(&mut on(&all, &["init"]));
    let text = ok_text(&mut on(&all, &["import", src.to_str().unwrap()]));
    assert!(
        text.starts_with(&format!("imported {} blobs", g.blob_files - 1)),
        "{text}"
    );
    assert!(text.contains("1 missing in source"), "{text}");
    for t in g.tags.keys() {
        assert!(text.contains(t.as_str()), "{t} not in {text}");
    }
    let t = tags(&all);
    assert_eq!(t.len(), g.tags.len());
    for (tag, d) in &g.tags {
        assert_eq!(&t[tag], d);
    }
    assert_eq!(snapshot(&src), src_before, "import changed its source");

    // Several tags at once.
    let two = dir.path().join("two");
    ok(&mut on(&two, &["init"]));
    ok(&mut on(
        &two,
        &[
            "import",
            src.to_str().unwrap(),
            "--tag",
            "docker",
            "--tag",
            "bare",
        ],
    ));
    assert_eq!(
        tags(&two).keys().map(String::as_str).collect::<Vec<_>>(),
        ["bare", "docker"]
    );
}

/// Every command that prints data prints one JSON document with `--json`, wherever the flag is.
#[test]
fn every_data_command_speaks_json() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    generate(&src);
    let src = src.to_str().unwrap();
    let cfg = f.files.join("config.json");
    let cfg = cfg.to_str().unwrap();
    let demo = dir.path().join("demo");
    let demo = demo.to_str().unwrap();

    let runs: Vec<Vec<&str>> = vec![
        vec!["init"],
        vec!["put", cfg],
        vec!["tag", "v1", "json-tag"],
        vec!["untag", "json-tag"],
        vec!["ls"],
        vec!["referrers", "v1"],
        vec!["referrers", "v1", "--transitive", "--artifact-type", "x/y"],
        vec!["stats"],
        vec!["import", src, "--tag", "v1"],
        vec!["import", src],
        vec!["rebuild"],
        vec!["demo", demo],
    ];
    for before in [true, false] {
        for args in &runs {
            let mut c = bin();
            c.arg("--store").arg(&f.root);
            if before {
                c.arg("--json").args(args);
            } else {
                c.args(args).arg("--json");
            }
            if args[0] == "demo" {
                let _ = fs::remove_dir_all(demo);
            }
            let out = c.output().unwrap();
            assert!(out.status.success(), "{args:?}\n{}", show(&out));
            assert_no_panic(&out);
            let v: Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e})\n{}", show(&out)));
            assert!(v.is_object() || v.is_array(), "{args:?}: {v}");
            // The progress bar and other chatter go to stderr, never into the document.
            assert!(out.stdout.ends_with(b"\n"), "{args:?}");
        }
    }
    // cat is raw bytes, with or without --json.
    assert_eq!(
        ok(&mut on(&f.root, &["--json", "cat", &f.manifest_digest])),
        f.manifest
    );
}

// ---------------------------------------------------------------------------------------------
// user errors: exit 1, one line, nothing written

/// Asserts that the files under `root` are still `before`, naming those that differ.
fn assert_same_tree(root: &Path, before: &BTreeMap<PathBuf, Option<Vec<u8>>>, args: &[&str]) {
    let after = tree(root);
    let differ: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(differ.is_empty(), "{args:?} changed {differ:?}");
}

/// Runs the command expecting a user error, then checks the store did not change.
fn refused(root: &Path, args: &[&str], needles: &[&str]) -> String {
    let before = tree(root);
    let line = user_error(&mut on(root, args), needles);
    assert_same_tree(root, &before, args);
    assert!(
        ingest_files(root).is_empty(),
        "{args:?} left files in ingest"
    );
    line
}

#[test]
fn unknown_tags_and_digests() {
    let f = fixture();
    let absent = sha256_digest(b"never stored");
    refused(&f.root, &["cat", "nope"], &["nope", "not found"]);
    refused(&f.root, &["cat", &absent], &[&absent, "not found"]);
    refused(&f.root, &["untag", "nope"], &["nope", "not found"]);
    refused(&f.root, &["tag", "nope", "new"], &["nope", "not found"]);
    refused(&f.root, &["tag", &absent, "new"], &[&absent, "not found"]);
    refused(&f.root, &["referrers", "nope"], &["nope", "not found"]);
    // A blob that is not a manifest cannot be tagged.
    refused(
        &f.root,
        &["tag", &f.config_digest, "new"],
        &[&f.config_digest, "not a manifest"],
    );
    assert!(!tags(&f.root).contains_key("new"));
}

#[test]
fn bad_tag_names() {
    let f = fixture();
    refused(&f.root, &["tag", "v1", "a b"], &["invalid tag", "\"a b\""]);
    refused(&f.root, &["tag", "v1", "../x"], &["invalid tag", "../x"]);
    refused(&f.root, &["tag", "v1", ""], &["invalid tag"]);
    refused(&f.root, &["tag", "v1", "x//y"], &["invalid tag", "x//y"]);
    refused(&f.root, &["tag", "v1", "x\ny"], &["invalid tag"]);
    // put of a manifest the store holds, with a bad tag.
    let m = f.files.join("manifest.json");
    refused(
        &f.root,
        &[
            "put",
            "--media-type",
            OCI_MANIFEST,
            "--tag",
            "a b",
            m.to_str().unwrap(),
        ],
        &["invalid tag", "a b"],
    );
}

#[test]
fn put_of_new_content_with_a_bad_tag_writes_nothing() {
    let f = fixture();
    let idx = index_json(OCI_INDEX, vec![], None, None, &[("new", "content")]);
    let p = write(&f.files, "new-index.json", &idx);
    refused(
        &f.root,
        &[
            "put",
            "--media-type",
            OCI_INDEX,
            "--tag",
            "a b",
            p.to_str().unwrap(),
        ],
        &["invalid tag", "a b"],
    );
    assert!(!blob_digests(&f.root).contains(&sha256_digest(&idx)));
}

#[test]
fn digests_with_path_traversal_or_uppercase() {
    let f = fixture();
    refused(
        &f.root,
        &["cat", "sha256:../../etc/passwd"],
        &["invalid digest", "sha256:../../etc/passwd"],
    );
    refused(
        &f.root,
        &["referrers", "sha256:../../../../etc/passwd"],
        &["invalid digest"],
    );
    refused(
        &f.root,
        &["tag", "sha256:/etc/passwd", "x"],
        &["invalid digest", "/etc/passwd"],
    );
    // The uppercase form of a stored digest does not name it.
    let upper = format!(
        "sha256:{}",
        f.manifest_digest
            .strip_prefix("sha256:")
            .unwrap()
            .to_uppercase()
    );
    refused(&f.root, &["cat", &upper], &[&upper]);
    refused(&f.root, &["tag", &upper, "x"], &[&upper]);
    refused(&f.root, &["referrers", &upper], &[&upper]);
    let upper_alg = format!(
        "SHA256:{}",
        f.manifest_digest.strip_prefix("sha256:").unwrap()
    );
    refused(&f.root, &["cat", &upper_alg], &[&upper_alg]);
}

#[test]
fn malformed_digests_are_named_as_such() {
    let f = fixture();
    let hex = f.manifest_digest.strip_prefix("sha256:").unwrap();
    for bad in [
        format!("sha256:{}", hex.to_uppercase()),
        format!("SHA256:{hex}"),
        format!("sha256:{}", &hex[..63]),
    ] {
        let line = refused(&f.root, &["cat", &bad], &[&bad]);
        assert!(
            line.contains("invalid digest"),
            "{bad}: the error does not say the digest is invalid: {line}"
        );
    }
}

#[test]
fn missing_store_or_not_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    for args in [
        vec!["ls"],
        vec!["stats"],
        vec!["cat", "v1"],
        vec!["tag", "a", "b"],
        vec!["referrers", "v1"],
        vec!["rebuild"],
        vec!["put", "-"],
    ] {
        user_error(&mut on(&missing, &args), &["oci-layout", "missing"]);
        assert!(!missing.exists(), "{args:?} created the store dir");
    }

    // A directory that is not a layout (empty, or with files).
    let not_layout = dir.path().join("plain");
    fs::create_dir(&not_layout).unwrap();
    for args in [vec!["ls"], vec!["stats"], vec!["put", "-"], vec!["rebuild"]] {
        refused(&not_layout, &args, &["oci-layout", "missing", "plain"]);
    }
    fs::write(not_layout.join("notes.txt"), b"hello").unwrap();
    for args in [vec!["ls"], vec!["cat", "x"]] {
        refused(&not_layout, &args, &["oci-layout", "missing"]);
    }
    // init refuses a non-empty directory that holds no layout.
    refused(&not_layout, &["init"], &["not empty", "plain"]);
    assert!(!not_layout.join(".ocistore").exists());

    // A file given as the store.
    let file = write(dir.path(), "file", b"x");
    user_error(&mut on(&file, &["ls"]), &["file"]);
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn put_errors() {
    let f = fixture();
    let missing = f.files.join("no-such-file");
    refused(
        &f.root,
        &["put", missing.to_str().unwrap()],
        &["no-such-file", "no such file"],
    );
    // Invalid JSON declared as a manifest.
    let bad = write(&f.files, "bad.json", b"{\"schemaVersion\": 2, oops");
    refused(
        &f.root,
        &["put", "--media-type", OCI_MANIFEST, bad.to_str().unwrap()],
        &["invalid manifest"],
    );
    refused(
        &f.root,
        &[
            "put",
            "--media-type",
            OCI_INDEX,
            "--tag",
            "t",
            bad.to_str().unwrap(),
        ],
        &["invalid manifest"],
    );
    assert!(!tags(&f.root).contains_key("t"));

    // A manifest whose descriptor has a negative size.
    let neg = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":-1}},"layers":[]}}"#,
        f.config_digest
    );
    let negp = write(&f.files, "neg.json", neg.as_bytes());
    refused(
        &f.root,
        &[
            "put",
            "--media-type",
            OCI_MANIFEST,
            "--tag",
            "neg",
            negp.to_str().unwrap(),
        ],
        &["invalid manifest", "negative"],
    );
    // Same from stdin.
    let before = tree(&f.root);
    let out = with_stdin(
        &mut on(&f.root, &["put", "--media-type", OCI_MANIFEST, "-"]),
        neg.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_no_panic(&out);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: invalid manifest"), "{stderr}");
    assert_same_tree(&f.root, &before, &["put", "-"]);
    assert!(ingest_files(&f.root).is_empty());
    assert!(!blob_digests(&f.root).contains(&sha256_digest(neg.as_bytes())));

    // A manifest without a config, declared as one.
    let noconf = br#"{"schemaVersion":2,"manifests":[]}"#;
    let p = write(&f.files, "noconf.json", noconf);
    refused(
        &f.root,
        &["put", "--media-type", OCI_MANIFEST, p.to_str().unwrap()],
        &["invalid manifest", "config"],
    );
}

#[test]
fn put_of_content_whose_media_type_contradicts_the_declared_one() {
    let f = fixture();
    let idx = index_json(OCI_INDEX, vec![], None, None, &[]);
    let p = write(&f.files, "index.json", &idx);
    refused(
        &f.root,
        &["put", "--media-type", OCI_MANIFEST, p.to_str().unwrap()],
        &["invalid manifest", OCI_INDEX],
    );
    assert!(!blob_digests(&f.root).contains(&sha256_digest(&idx)));
}

#[test]
fn put_of_a_directory_names_it() {
    let f = fixture();
    let line = refused(&f.root, &["put", f.files.to_str().unwrap()], &[]);
    assert!(
        line.contains(f.files.to_str().unwrap()) && !line.contains(".ocistore"),
        "{line}"
    );
}

#[test]
fn import_errors() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    fs::create_dir(&plain).unwrap();
    refused(
        &f.root,
        &["import", plain.to_str().unwrap()],
        &["oci-layout", "missing", "plain"],
    );
    let gone = dir.path().join("gone");
    refused(&f.root, &["import", gone.to_str().unwrap()], &["gone"]);

    let src = dir.path().join("src");
    generate(&src);
    let src_before = snapshot(&src);
    refused(
        &f.root,
        &["import", src.to_str().unwrap(), "--tag", "no-such-tag"],
        &["no-such-tag", "not found"],
    );
    refused(
        &f.root,
        &[
            "import",
            src.to_str().unwrap(),
            "--tag",
            "v1",
            "--tag",
            "no-such-tag",
        ],
        &["no-such-tag", "not found"],
    );
    assert_eq!(snapshot(&src), src_before);

    // A corrupt blob in the source.
    let (hex, bytes) = {
        let g = generate(&dir.path().join("g2"));
        let p = dir
            .path()
            .join("g2")
            .join(g.image_layer.digest().blob_path());
        let mut b = fs::read(&p).unwrap();
        b[0] ^= 1;
        fs::write(&p, &b).unwrap();
        (g.image_layer.digest.clone(), b)
    };
    refused(
        &f.root,
        &[
            "import",
            dir.path().join("g2").to_str().unwrap(),
            "--tag",
            "v1",
        ],
        &["digest mismatch", &hex, &sha256_digest(&bytes)],
    );
}

#[test]
fn corrupt_index_json_in_the_store() {
    let f = fixture();
    fs::write(f.root.join("index.json"), b"\x00garbage{").unwrap();
    for args in [
        vec!["ls"],
        vec!["stats"],
        vec!["cat", "v1"],
        vec!["tag", "v1", "x"],
        vec!["untag", "v1"],
        vec!["referrers", "v1"],
    ] {
        let line = refused(&f.root, &args, &["index.json"]);
        assert!(line.to_lowercase().contains("json"), "{line}");
    }
    assert_eq!(
        fs::read(f.root.join("index.json")).unwrap(),
        b"\x00garbage{"
    );

    // Valid JSON that is not an index.
    fs::write(f.root.join("index.json"), b"[1,2,3]").unwrap();
    refused(&f.root, &["ls"], &["index.json"]);
    assert_eq!(fs::read(f.root.join("index.json")).unwrap(), b"[1,2,3]");
}

#[test]
fn wrong_or_broken_oci_layout_file() {
    let f = fixture();
    let layout = f.root.join("oci-layout");
    for (content, needles) in [
        (
            &br#"{"imageLayoutVersion":"2.0.0"}"#[..],
            &["imageLayoutVersion", "2.0.0"][..],
        ),
        (
            &br#"{"imageLayoutVersion":1}"#[..],
            &["imageLayoutVersion"][..],
        ),
        (&b"{}"[..], &["imageLayoutVersion", "missing"][..]),
        (&b"not json"[..], &["oci-layout", "json"][..]),
    ] {
        fs::write(&layout, content).unwrap();
        for args in [
            vec!["ls"],
            vec!["put", "-"],
            vec!["init"],
            vec!["tag", "v1", "x"],
        ] {
            refused(&f.root, &args, needles);
        }
        assert_eq!(fs::read(&layout).unwrap(), content);
    }
}

#[test]
fn usage_errors_are_clap_errors_without_panics() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["frobnicate"],
        vec![],
        vec!["tag", "only-one"],
        vec!["cat"],
        vec!["ls", "--no-such-flag"],
        vec!["--lock-timeout", "soon", "ls"],
    ] {
        let out = bin().current_dir(dir.path()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", show(&out));
        assert_no_panic(&out);
        // (Without a subcommand clap prints the help, which is no error message.)
        assert!(
            args.is_empty() || String::from_utf8_lossy(&out.stderr).contains("error"),
            "{args:?}\n{}",
            show(&out)
        );
    }
    // Nothing was created by any of them.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    // --help and --version succeed.
    ok(bin().arg("--help"));
    let v = ok_text(bin().arg("--version"));
    assert!(v.starts_with("ocistore "), "{v}");
}

/// A reader that goes away (`ocistore cat ... | head -c1`) ends the command quietly.
#[test]
fn closed_stdout_is_not_an_error() {
    let f = fixture();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let p = write(&f.files, "big", &content);
    let d = ok_text(&mut on(&f.root, &["put", p.to_str().unwrap()]));
    for args in [
        vec!["cat", d.trim()],
        vec!["ls", "--json"],
        vec!["ls"],
        vec!["stats"],
        vec!["referrers", "v1"],
    ] {
        let mut child = on(&f.root, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the only read end before the command writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}\n{}", show(&out));
        assert_no_panic(&out);
        assert!(out.stderr.is_empty(), "{args:?}\n{}", show(&out));
    }
}

#[test]
fn blobs_removed_by_another_tool_are_one_warning_line_however_many() {
    let f = fixture();
    let mut gone = Vec::new();
    for i in 0..8 {
        let content = format!("loose blob {i}");
        let out = with_stdin(&mut on(&f.root, &["put", "-"]), content.as_bytes());
        assert!(out.status.success(), "{}", show(&out));
        gone.push(sha256_digest(content.as_bytes()));
    }
    // Another tool removes them all.
    for d in &gone {
        let hex = d.strip_prefix("sha256:").unwrap();
        fs::remove_file(f.root.join("blobs/sha256").join(hex)).unwrap();
    }
    let out = on(&f.root, &["stats"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_no_panic(&out);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("warning: 8 blobs the store held were removed by another tool: "),
        "{stderr}"
    );
    assert!(lines[0].ends_with(" and 3 more"), "{stderr}");
    // Five of them are named, the rest only counted.
    let named = gone
        .iter()
        .filter(|d| lines[0].contains(d.as_str()))
        .count();
    assert_eq!(named, 5, "{stderr}");
    // Noticed once: the next open says nothing.
    let out = on(&f.root, &["stats"]).output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
