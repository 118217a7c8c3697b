//! Several processes on one store: the writer lock, its timeout and message, read-only opens
//! beside a writer, and two writers contending.
//!
//! The child processes are this test binary run again with `--ignored --exact <helper>` and an
//! environment variable naming the store: the helpers do nothing without it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ocistore::{Error, Options, PutOptions, Store};
use serde_json::json;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn image(store: &Store, name: &str) -> ocistore::Digest {
    let config = store
        .put(&mut name.as_bytes(), &PutOptions::default())
        .unwrap();
    let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest.as_str(), "size": config.size},
        "layers": []}))
    .unwrap();
    store
        .put(&mut &m[..], &PutOptions::default())
        .unwrap()
        .digest
}

fn child(helper: &str, dir: &Path, arg: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            helper,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OCISTORE_TEST_STORE", dir)
        .env("OCISTORE_TEST_ARG", arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The child's stdout, line by line (libtest prints test names on the same lines).
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, want: &str) {
    loop {
        let line = rx
            .recv()
            .unwrap_or_else(|_| panic!("child ended before printing {want:?}"));
        if line.trim_end().ends_with(want) {
            return;
        }
    }
}

/// Child: opens the store for writing, tags an image `held`, says "holding", then tags
/// `second` when a line arrives on stdin, says "tagged", and exits when stdin closes.
#[test]
#[ignore = "helper process for lock_excludes_a_second_writer_and_names_the_holder"]
fn helper_hold_lock() {
    let Ok(dir) = std::env::var("OCISTORE_TEST_STORE") else {
        return;
    };
    let store = Store::open(&dir, &Options::default()).unwrap();
    let d = image(&store, "held");
    store.tag(d.as_str(), "held").unwrap();
    println!("holding");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).unwrap() > 0 {
        let d = image(&store, "second");
        store.tag(d.as_str(), "second").unwrap();
        println!("tagged");
        std::io::stdout().flush().unwrap();
        line.clear();
    }
}

#[test]
fn lock_excludes_a_second_writer_and_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::init(dir.path(), &Options::default()).unwrap());
    let mut holder = child("helper_hold_lock", dir.path(), "");
    let holder_out = lines(&mut holder);
    wait_for_line(&holder_out, "holding");

    // A second writer waits for its timeout, then fails naming the holder.
    let opts = Options {
        lock_timeout: Duration::from_millis(300),
        ..Options::default()
    };
    let err = Store::open(dir.path(), &opts).unwrap_err();
    match &err {
        Error::Locked {
            holder: h, waited, ..
        } => {
            assert_eq!(h, &format!("pid {}", holder.id()));
            assert!(*waited >= Duration::from_millis(300));
        }
        e => panic!("expected Locked, got {e}"),
    }
    assert!(err.to_string().contains("store is locked"), "{err}");

    // The CLI says so in one line, with exit code 1.
    let out = Command::new(env!("CARGO_BIN_EXE_ocistore"))
        .args(["--lock-timeout", "0.2", "tag", "held", "other"])
        .env("OCISTORE_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: store is locked by another writer (pid "),
        "{stderr}"
    );

    // Read-only opens work beside the writer and follow its commits.
    let ro = Store::open_read_only(dir.path(), &Options::default()).unwrap();
    let held = ro.resolve("held").unwrap();
    assert!(matches!(
        ro.tag(held.as_str(), "nope").unwrap_err(),
        Error::ReadOnly
    ));
    holder.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    wait_for_line(&holder_out, "tagged");
    assert!(ro.resolve("second").is_ok());
    let out = Command::new(env!("CARGO_BIN_EXE_ocistore"))
        .args(["ls", "--json"])
        .env("OCISTORE_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // A writer that waits long enough gets the store once the holder exits.
    let waiter = {
        let dir = dir.path().to_owned();
        std::thread::spawn(move || {
            let opts = Options {
                lock_timeout: Duration::from_secs(60),
                ..Options::default()
            };
            let store = Store::open(&dir, &opts).unwrap();
            store.tag("held", "after").unwrap();
        })
    };
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    waiter.join().unwrap();
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert_eq!(store.resolve("after").unwrap(), held);
}

/// Child: opens, writes and closes the store `OCISTORE_TEST_ARG`-many times.
#[test]
#[ignore = "helper process for two_processes_contending_to_write_lose_nothing"]
fn helper_contend() {
    let Ok(dir) = std::env::var("OCISTORE_TEST_STORE") else {
        return;
    };
    let who = std::env::var("OCISTORE_TEST_ARG").unwrap();
    let opts = Options {
        lock_timeout: Duration::from_secs(120),
        ..Options::default()
    };
    for i in 0..15 {
        let store = Store::open(&dir, &opts).unwrap();
        let d = image(&store, &format!("{who}-{i}"));
        store.tag(d.as_str(), &format!("{who}-{i}")).unwrap();
    }
}

#[test]
fn two_processes_contending_to_write_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::init(dir.path(), &Options::default()).unwrap());
    let mut a = child("helper_contend", dir.path(), "a");
    let mut b = child("helper_contend", dir.path(), "b");
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert!(!store.open_report().recovered);
    assert!(store.open_report().reconciled.is_none());
    for who in ["a", "b"] {
        for i in 0..15 {
            store.resolve(&format!("{who}-{i}")).unwrap();
        }
    }
    let ix: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(ix["manifests"].as_array().unwrap().len(), 30);
}
