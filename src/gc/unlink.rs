//! The unlinks of committed removals, on threads of their own.
//!
//! On a file system that discards freed blocks as it frees them, an unlink waits on the disk,
//! so many must be in flight at once. They run on plain threads that block on a queue while
//! there is nothing to do: worker threads that spin or yield between jobs would take the CPU
//! from the sweep, which commits the next chunk meanwhile. The queue carries small batches, so
//! a slow unlink holds back only its own batch, never the next chunk.
//!
//! Invariant: a digest's name is unlinked only while its stripe lock is held and only if it is
//! still marked pending there. Ingest unmarks a digest it publishes again, under the same lock,
//! so a blob pushed again while its unlink is pending wins. An unlink that fails marks its
//! digest pending again, so that the next collection of the process finishes it. The slow part,
//! freeing the blocks, waits until the stripe is released (`layout::unlink_deferred`): the sweep
//! marks the next chunk's digests pending, and ingest publishes, under those same locks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use crate::catalog;
use crate::error::{Error, Result};
use crate::store::Store;

/// Unlinks in flight at most. The disk here serves discards concurrently: `xargs -P 8 rm` took
/// 1.63 s where one `rm` at a time took 4.34 s (`benches/gc-vs-rm.sh`). In a collection, 4 or 8
/// threads left the sweep no faster, and neither did 32 or 64 (three interleaved rounds on the
/// 20,000-image layout: 3.10, 3.17 and 3.53 s with 16; 3.41, 3.52 and 3.52 s with 32; 2.82,
/// 3.34 and 3.92 s with 64).
const THREADS: usize = 16;

/// Digests per job on the queue.
const BATCH: usize = 32;

/// Threads unlinking the files of digests marked pending, fed chunk by chunk.
pub(super) struct Unlinker<'scope> {
    tx: Sender<Vec<String>>,
    workers: Vec<ScopedJoinHandle<'scope, Result<()>>>,
    failed: Arc<AtomicBool>,
    first_sent: OnceLock<Instant>,
    spawned: Result<()>,
}

impl<'scope> Unlinker<'scope> {
    /// Starts up to [`THREADS`] threads in `scope` (fewer when `expected` digests need fewer).
    pub(super) fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        store: &'env Store,
        expected: usize,
    ) -> Unlinker<'scope> {
        let (tx, rx) = channel::<Vec<String>>();
        let rx = Arc::new(Mutex::new(rx));
        let failed = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        let mut spawned = Ok(());
        for i in 0..expected.div_ceil(BATCH).clamp(1, THREADS) {
            let (rx, stop) = (Arc::clone(&rx), Arc::clone(&failed));
            let worker = std::thread::Builder::new()
                .name(format!("ocistore-unlink-{i}"))
                .spawn_scoped(scope, move || work(store, &rx, &stop));
            match worker {
                Ok(w) => workers.push(w),
                // The threads already started do the work; the error is reported at the end.
                Err(e) => {
                    let root = store.layout_ref().root();
                    spawned = Err(Error::io("start unlink threads for", root, e));
                    if workers.is_empty() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    break;
                }
            }
        }
        Unlinker {
            tx,
            workers,
            failed,
            first_sent: OnceLock::new(),
            spawned,
        }
    }

    /// Queues the unlinks of `digests`, which a committed transaction removed and
    /// [`Store::mark_pending`] marked. False once an unlink has failed: the caller should stop
    /// removing, and [`Unlinker::finish`] reports the error.
    pub(super) fn send(&self, digests: &[String]) -> bool {
        self.first_sent.get_or_init(Instant::now);
        for batch in digests.chunks(BATCH) {
            if self.failed.load(Ordering::SeqCst) || self.tx.send(batch.to_vec()).is_err() {
                return false;
            }
        }
        !self.failed.load(Ordering::SeqCst)
    }

    /// Waits for the queued unlinks. Returns the time since the first [`Unlinker::send`], or
    /// the first error.
    pub(super) fn finish(self) -> Result<Duration> {
        drop(self.tx);
        let mut first_error = self.spawned.err();
        for w in self.workers {
            let result = w
                .join()
                .unwrap_or_else(|_| Err(Error::Index("an unlink thread failed".into())));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(self
                .first_sent
                .get()
                .map_or(Duration::ZERO, |t| t.elapsed())),
        }
    }
}

/// One thread: takes batches off the queue until it closes or an unlink fails.
fn work(store: &Store, rx: &Mutex<Receiver<Vec<String>>>, failed: &AtomicBool) -> Result<()> {
    loop {
        let batch = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return Err(Error::Index("an unlink thread failed".into())),
        };
        let Ok(batch) = batch else {
            return Ok(());
        };
        for d in batch {
            if failed.load(Ordering::Relaxed) {
                return Ok(());
            }
            if let Err(e) = unlink_one(store, &d) {
                failed.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
    }
}

fn unlink_one(store: &Store, d: &str) -> Result<()> {
    let mut stripe = store.stripe(d);
    if !stripe.remove(d) {
        return Ok(()); // pushed again since it was removed: it wins
    }
    let path = store.layout_ref().blob_path(&catalog::stored_digest(d)?);
    let held = match crate::layout::unlink_deferred(&path) {
        Ok(held) => held,
        Err(e) => {
            // Still pending: the file stays, and a later collection of this process may unlink
            // it under the same rule.
            stripe.insert(d.to_owned());
            return Err(Error::io("remove", &path, e));
        }
    };
    // The name is gone: ingest may publish the digest again from here. The blocks are freed
    // (and discarded) as the handle drops, after the stripe is released.
    drop(stripe);
    drop(held);
    Ok(())
}
