//! Failpoints in the store's file-system writes.
//!
//! Every step by which the store changes the disk passes through a failpoint first: creating a
//! temporary file or directory, writing, fsyncing a file or a directory, renaming, unlinking,
//! and the index's own writes and syncs. An [`Injector`] installed for a store's root sees each
//! step and may make it fail with any `io::Error` (`EIO`, `ENOSPC`, ...) instead of running it.
//! With nothing installed, a step costs one atomic load.
//!
//! Tests use this to show that each operation either completes or leaves the store as it was,
//! with a clear error, whichever step fails.
//!
//! ```
//! use std::sync::Arc;
//! use ocistore::fault::{self, Step};
//! use ocistore::{Options, PutOptions, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::init(dir.path(), &Options::default())?;
//! let _installed = fault::install(
//!     dir.path(),
//!     Arc::new(|step, _path| {
//!         (step == Step::Fsync).then(|| std::io::Error::from_raw_os_error(28 /* ENOSPC */))
//!     }),
//! );
//! let err = store.put(&mut &b"data"[..], &PutOptions::default()).unwrap_err();
//! assert!(err.to_string().contains("fsync"), "{err}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// A kind of file-system step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Creating a file or a directory.
    Create,
    /// Writing to a file.
    Write,
    /// Making a file's content durable.
    Fsync,
    /// Making a directory's entries durable.
    SyncDir,
    /// Renaming a file into place.
    Rename,
    /// Removing a file.
    Unlink,
    /// A write to the index file (by the index's storage engine).
    IndexWrite,
    /// A sync of the index file (the index's commit point).
    IndexSync,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Step::Create => "create",
            Step::Write => "write",
            Step::Fsync => "fsync",
            Step::SyncDir => "fsync directory",
            Step::Rename => "rename",
            Step::Unlink => "unlink",
            Step::IndexWrite => "index write",
            Step::IndexSync => "index sync",
        };
        f.write_str(name)
    }
}

/// Decides, for each step on a path under its root, whether the step fails and with what error.
pub type Injector = Arc<dyn Fn(Step, &Path) -> Option<io::Error> + Send + Sync>;

struct Registration {
    id: u64,
    root: PathBuf,
    injector: Injector,
}

static INSTALLED: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REGISTRY: RwLock<Vec<Registration>> = RwLock::new(Vec::new());

/// An installed injector; dropping it removes the injector.
#[must_use = "the injector is removed when this is dropped"]
pub struct Installed {
    id: u64,
}

impl fmt::Debug for Installed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Installed").field("id", &self.id).finish()
    }
}

/// Installs `injector` for every step on a path under `root`. Give `root` as the store was
/// opened with (the same spelling): paths are compared by prefix, not resolved.
pub fn install(root: impl Into<PathBuf>, injector: Injector) -> Installed {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut reg = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    reg.push(Registration {
        id,
        root: root.into(),
        injector,
    });
    INSTALLED.fetch_add(1, Ordering::SeqCst);
    Installed { id }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let mut reg = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
        reg.retain(|r| r.id != self.id);
        INSTALLED.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs before each step: the error an installed injector chooses, or `Ok`.
pub(crate) fn check(step: Step, path: &Path) -> io::Result<()> {
    if INSTALLED.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    let injectors: Vec<Injector> = REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|r| path.starts_with(&r.root))
        .map(|r| Arc::clone(&r.injector))
        .collect();
    for injector in injectors {
        if let Some(e) = injector(step, path) {
            return Err(e);
        }
    }
    Ok(())
}

/// The index file's storage: the file backend of the index's engine, with each write and sync
/// passing through [`check`] first.
#[derive(Debug)]
pub(crate) struct IndexBackend {
    inner: redb::backends::FileBackend,
    path: PathBuf,
}

impl IndexBackend {
    /// Opens `path` (which must exist) for reading and writing.
    pub(crate) fn open(path: &Path) -> io::Result<IndexBackend> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let inner = redb::backends::FileBackend::new(file).map_err(io::Error::other)?;
        Ok(IndexBackend {
            inner,
            path: path.to_owned(),
        })
    }
}

type IoResult<T> = std::result::Result<T, io::Error>;
type BackendResult<T> = std::result::Result<T, redb::BackendError>;
type Bound = std::ops::Bound<u64>;

impl redb::StorageBackend for IndexBackend {
    fn len(&self) -> IoResult<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> IoResult<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> IoResult<()> {
        check(Step::IndexWrite, &self.path)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> IoResult<()> {
        check(Step::IndexSync, &self.path)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        check(Step::IndexWrite, &self.path)?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> IoResult<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound, end: Bound) -> BackendResult<bool> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound, end: Bound) -> BackendResult<bool> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound, end: Bound) -> BackendResult<()> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound, end: Bound) -> BackendResult<()> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound, end: Bound) -> BackendResult<()> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound, end: Bound) -> BackendResult<bool> {
        self.inner.query_lock_range(start, end)
    }
}
