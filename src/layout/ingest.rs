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

use std::fs::File;

use tempfile::TempPath;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, Result};
use crate::fault::{self, Step};
use crate::layout::Layout;

const BUF: usize = 256 * 1024;

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
    let mut hasher = Hasher::new(alg);
    let dir = layout.ingest_dir();
    fault::check(Step::Create, &dir).map_err(|e| Error::io("create temporary file in", &dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create temporary file in", &dir, e))?;
    let mut kept = Some(Vec::new());
    let mut buf = vec![0u8; BUF];
    let mut total: u64 = 0;
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
        if let Some(h) = &mut hasher {
            h.update(chunk);
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
    }
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
