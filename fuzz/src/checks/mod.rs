//! The checks behind the fuzz targets. Each `check(data)` decodes its input from raw bytes and
//! panics when a property fails; any input, including a corpus file, can be replayed with it.

pub mod digest;
pub mod index_json;
pub mod manifest_edges;
pub mod referrers;
pub mod store_model;

use ocistore::{Digest, Options, PutOptions, Store};

/// A fresh directory for a store, on tmpfs when the machine has one (the checks fsync a lot).
fn scratch() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    };
    dir.expect("a temporary directory")
}

fn options() -> Options {
    Options {
        lock_timeout: std::time::Duration::ZERO,
        ..Options::default()
    }
}

/// Puts `bytes`, declared as `media_type` when given.
fn put(store: &Store, bytes: &[u8], media_type: Option<&str>) -> ocistore::Result<Digest> {
    let opts = PutOptions {
        media_type: media_type.map(str::to_owned),
        ..PutOptions::default()
    };
    store.put(&mut &bytes[..], &opts).map(|p| p.digest)
}

/// Errors are one line.
fn assert_one_line(e: &ocistore::Error) {
    assert!(!e.to_string().contains('\n'), "a multi-line error: {e}");
}
