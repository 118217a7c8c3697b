//! Ingest: how bytes from a reader become a blob file, as a visible state machine.
//!
//! ```text
//!   stage()                      sync()               publish()                 (caller)
//! reader ──► .ocistore/ingest/tmp ──► fsync(tmp) ──► rename to blobs/<alg>/<hex> ──► fsync(dir) ──► index commit
//!            hashed and counted
//!            while written; size and
//!            digest checked at the end
//! ```
//!
//! A [`Staged`] blob has passed every check: its size and digest are known to match. Dropping it
//! before [`Staged::publish`] removes the temporary file, so a failed or abandoned ingest leaves
//! nothing behind. A crash leaves at worst a file in `ingest/` (removed on the next writable
//! open) or a published but unindexed blob (indexed by recovery).

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;

use std::fs::File;

use tempfile::TempPath;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, Result};
use crate::fault::{self, Step};
use crate::layout::Layout;

const BUF: usize = 256 * 1024;
/// From this many files in one batch, one `syncfs` makes them durable instead of an fsync each.
pub const SYNCFS_FROM: usize = 64;
/// Past this many bytes, hashing moves to a second thread, beside reading and writing.
const PIPELINE_AFTER: u64 = 4 << 20;
/// In a large ingest, the kernel is asked to start writing back every this many bytes, so that
/// the final fsync has little left to wait for.
const WRITEBACK: u64 = 16 << 20;

/// Hashing on a second thread: chunks go to it in order, and their buffers come back for reuse.
struct Pipe<'scope> {
    to_hash: mpsc::SyncSender<(Vec<u8>, usize)>,
    free: mpsc::Receiver<Vec<u8>>,
    done: std::thread::ScopedJoinHandle<'scope, Hasher>,
}

impl<'scope> Pipe<'scope> {
    fn start<'env>(scope: &'scope std::thread::Scope<'scope, 'env>, mut hasher: Hasher) -> Self {
        let (to_hash, chunks) = mpsc::sync_channel::<(Vec<u8>, usize)>(4);
        let (give_back, free) = mpsc::channel();
        let done = scope.spawn(move || {
            for (buf, n) in chunks {
                hasher.update(&buf[..n]);
                let _ = give_back.send(buf);
            }
            hasher
        });
        Pipe {
            to_hash,
            free,
            done,
        }
    }

    fn finish(self, path: &std::path::Path) -> Result<Hasher> {
        drop(self.to_hash);
        self.done.join().map_err(|_| hashing_failed(path))
    }
}

fn hashing_failed(path: &std::path::Path) -> Error {
    Error::io("hash", path, io::Error::other("the hashing thread stopped"))
}

/// Starts writeback of `len` bytes at `offset` without waiting for it (Linux
/// `sync_file_range`); durability still comes from the fsync before publishing.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on an open descriptor; it reads no memory of ours. A failure
    // only means no early writeback.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// What the caller says the content is.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// The digest the content must hash to. Without it, sha256 is computed.
    pub digest: Option<Digest>,
    /// The exact length.
    pub size: Option<u64>,
}

/// Content written to a temporary file and checked, not yet published.
#[derive(Debug)]
pub struct Staged {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Whether the digest was computed (false for an unregistered algorithm).
    pub verified: bool,
    /// The content, when it is no larger than the limit `stage` was given.
    pub bytes: Option<Vec<u8>>,
    /// The temporary file, closed (a large batch must not hold a descriptor per blob); removed
    /// when dropped unpublished.
    tmp: TempPath,
    synced: bool,
}

/// Writes `reader` to a temporary file in `.ocistore/ingest/`, hashing and counting as it goes,
/// and checks size and digest. Memory use is constant except for the first `keep` bytes, which
/// are returned for manifest parsing.
pub fn stage(
    layout: &Layout,
    prefix: &str,
    reader: &mut dyn Read,
    expected: &Expected,
    keep: u64,
) -> Result<Staged> {
    let alg = expected
        .digest
        .as_ref()
        .map_or(Algorithm::Sha256, Digest::algorithm);
    let hasher = Hasher::new(alg);
    let dir = layout.ingest_dir();
    fault::check(Step::Create, &dir).map_err(|e| Error::io("create temporary file in", &dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create temporary file in", &dir, e))?;
    let mut kept = Some(Vec::new());
    let mut total: u64 = 0;
    let hasher = std::thread::scope(|scope| -> Result<Option<Hasher>> {
        let mut hasher = hasher;
        let mut pipe: Option<Pipe<'_>> = None;
        let mut buf = vec![0u8; BUF];
        let mut flushed: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read", "the input", e)),
            };
            let chunk = &buf[..n];
            total += n as u64;
            if let Some(size) = expected.size
                && total > size
            {
                return Err(Error::SizeMismatch {
                    digest: describe(expected),
                    expected: size,
                    actual: total,
                });
            }
            if let Some(k) = &mut kept {
                if total <= keep {
                    k.extend_from_slice(chunk);
                } else {
                    kept = None;
                }
            }
            fault::check(Step::Write, tmp.path())
                .and_then(|()| tmp.write_all(chunk))
                .map_err(|e| Error::io("write", tmp.path(), e))?;
            match &pipe {
                Some(p) => {
                    let next = p.free.try_recv().unwrap_or_else(|_| vec![0u8; BUF]);
                    let full = std::mem::replace(&mut buf, next);
                    p.to_hash
                        .send((full, n))
                        .map_err(|_| hashing_failed(tmp.path()))?;
                    if total - flushed >= WRITEBACK {
                        start_writeback(tmp.as_file(), flushed, total - flushed);
                        flushed = total;
                    }
                }
                None => {
                    if let Some(h) = &mut hasher {
                        h.update(chunk);
                    }
                    if total >= PIPELINE_AFTER
                        && let Some(h) = hasher.take()
                    {
                        pipe = Some(Pipe::start(scope, h));
                    }
                }
            }
        }
        match pipe {
            Some(p) => p.finish(tmp.path()).map(Some),
            None => Ok(hasher),
        }
    })?;
    if let Some(size) = expected.size
        && total != size
    {
        return Err(Error::SizeMismatch {
            digest: describe(expected),
            expected: size,
            actual: total,
        });
    }
    let (digest, verified) = match (hasher, &expected.digest) {
        (Some(h), want) => {
            let got = h.finish();
            if let Some(want) = want
                && *want != got
            {
                return Err(Error::DigestMismatch {
                    expected: want.to_string(),
                    actual: got.to_string(),
                });
            }
            (got, true)
        }
        (None, Some(want)) => (want.clone(), false),
        (None, None) => unreachable!("sha256 is used when no digest is expected"),
    };
    Ok(Staged {
        digest,
        size: total,
        verified,
        bytes: kept,
        tmp: tmp.into_temp_path(),
        synced: false,
    })
}

fn describe(expected: &Expected) -> String {
    expected
        .digest
        .as_ref()
        .map_or_else(|| "content".to_owned(), Digest::to_string)
}

impl Staged {
    /// Makes the temporary file's content durable.
    pub fn sync(&mut self) -> Result<()> {
        if !self.synced {
            fault::check(Step::Fsync, &self.tmp)
                .and_then(|()| File::open(&self.tmp))
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("fsync", &*self.tmp, e))?;
            self.synced = true;
        }
        Ok(())
    }

    /// Makes the content of many staged files durable at once: with one `syncfs` of the file
    /// system holding `.ocistore/ingest/` when there are at least [`SYNCFS_FROM`] of them
    /// (one flush instead of one per file), else with an fsync of each, on `pool`.
    pub fn sync_batch(
        layout: &Layout,
        staged: &mut [Staged],
        pool: &rayon::ThreadPool,
    ) -> Result<()> {
        use rayon::prelude::*;
        let unsynced = staged.iter().filter(|s| !s.synced).count();
        if unsynced < SYNCFS_FROM {
            return pool.install(|| staged.par_iter_mut().try_for_each(Staged::sync));
        }
        let dir = layout.ingest_dir();
        fault::check(Step::Fsync, &dir)
            .and_then(|()| File::open(&dir))
            .and_then(|f| {
                use std::os::fd::AsRawFd;
                // SAFETY: a plain system call on an open descriptor.
                if unsafe { libc::syncfs(f.as_raw_fd()) } == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            })
            .map_err(|e| Error::io("sync the file system of", &dir, e))?;
        for s in staged {
            s.synced = true;
        }
        Ok(())
    }

    /// Renames the synced file into `blobs/<alg>/`. Returns the directory, which the caller
    /// fsyncs (once per batch) before committing the index.
    pub fn publish(mut self, layout: &Layout) -> Result<PathBuf> {
        self.sync()?;
        let dir = layout.alg_dir(&self.digest, true)?;
        let target = dir.join(self.digest.encoded());
        fault::check(Step::Rename, &target).map_err(|e| Error::io("rename into", &target, e))?;
        self.tmp
            .persist(&target)
            .map_err(|e| Error::io("rename into", &target, e.error))?;
        Ok(dir)
    }
}
