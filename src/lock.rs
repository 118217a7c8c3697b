//! The cross-process writer lock: `.ocistore/lock`, held with std's `File::lock` for as long as a
//! writable [`Store`](crate::Store) is open. One writer process at a time; a second one waits up
//! to its timeout, then fails with [`Error::Locked`] naming the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Width of the holder text in the lock file.
const HOLDER_WIDTH: usize = 24;

/// A held writer lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

impl WriterLock {
    pub(crate) fn acquire(path: &Path, timeout: Duration) -> Result<WriterLock> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if start.elapsed() < timeout => {
                    thread::sleep(pause.min(timeout.saturating_sub(start.elapsed())));
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.trim();
                    return Err(Error::Locked {
                        path: PathBuf::from(path),
                        holder: if holder.is_empty() {
                            "unknown process".into()
                        } else {
                            holder.to_owned()
                        },
                        waited: start.elapsed(),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
            }
        }
        // Record the holder for the error message of the next waiter. The lock, not this text,
        // is what excludes; a stale text from a dead holder is simply overwritten.
        // Written over the old text at a fixed width, never truncated first, so that a waiter
        // reading it at any moment sees a whole holder.
        let me = format!("{:<HOLDER_WIDTH$}", format!("pid {}", std::process::id()));
        let _ = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|()| file.set_len(me.len() as u64));
        Ok(WriterLock { _file: file })
    }
}
