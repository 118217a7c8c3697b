//! Garbage collection, deletion, `explain`, pins and leases.
//!
//! Liveness is defined once, in `graph.rs`; three strategies find the garbage it implies:
//! mark-sweep over the index, reference counts kept on every write (`refcount.rs`), and a
//! baseline that parses the layout's files as other tools do. They must agree: the property
//! tests in `tests/gc_model.rs` check it.
//!
//! A collection runs while writers go on:
//!
//! 1. **Start.** In a write transaction (so it waits for writes in flight), the `CHANGED` set is
//!    emptied and the store starts recording every digest that writes touch.
//! 2. **Mark** on a snapshot taken after that commit, outside any lock.
//! 3. **Sweep.** First, transactions bounded like the chunks below remove the garbage's tags
//!    and entries, rewriting index.json once each; they leave the counts of the garbage those
//!    tags link for the chunks to drop, and list those digests in `PENDING` in case the
//!    collection stops first (`Writer::skip_counts_of`). Then chunks of the garbage in key
//!    order (`sweep_order`). Each chunk is one write transaction (the only pause writers see):
//!    candidates reachable from anything written since the start (the `CHANGED` set, leases)
//!    are kept; the rest lose their rows (and any tag or entry added since), and are listed in
//!    `PENDING` and `COLLECTED`; index.json is rewritten if an entry went; commit. The
//!    `PARENTS` rows of removed manifests under children that stay, and the `REFERRERS` rows of
//!    removed referrers under their subjects, are left stale and dropped in key order, by the
//!    chunk whose removals cover their keys or by the transactions after the last chunk. A
//!    child may go before the garbage manifest that lists it: a write that would make such a
//!    manifest reachable again is refused
//!    (`Store::refuse_collected` states the invariant). A subject may go before its referrer:
//!    such a referrer is not dangling (`graph::collected_with`).
//! 4. **Unlink** the chunk's files in parallel, outside the write lock. Each unlink holds the
//!    digest's stripe lock, which ingest also holds from rename to commit, and first checks that
//!    the digest has not been indexed again: a blob pushed again while its unlink is pending wins.
//!    Then the `PENDING` rows go.
//!
//! A crash after 3 leaves `PENDING` rows; the next writable open finishes those unlinks without
//! walking the directory. The directory walk for orphan files runs only after an unclean
//! shutdown, after another tool changed the layout, or on request.

mod graph;
pub mod policy;
mod refcount;
mod unlink;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::str::FromStr;
use std::sync::MutexGuard;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::catalog::{self, BlobRecord, PendingBatch, Reader, Source, Writer, meta};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::index_json::IndexJson;
use crate::refname::{LinkKind, ReferrerTag};
use crate::scan;
use crate::store::Store;

use crate::fasthash::FastSet;
use graph::{LinkRows, Node, Params, Via, View};
pub use policy::{Mode, Policy};
use unlink::Unlinker;

/// How garbage is found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Reference counts while few digests are candidates (have no supporter), at most one per
    /// 128 blobs, mark-sweep otherwise. The report names the one used.
    #[default]
    Auto,
    /// Mark from the roots over the index, then sweep.
    MarkSweep,
    /// Start from the reference counts kept on every write.
    Refcount,
    /// Parse every manifest from the layout's files (the baseline other tools use).
    Scan,
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Strategy, String> {
        match s {
            "auto" => Ok(Strategy::Auto),
            "mark-sweep" => Ok(Strategy::MarkSweep),
            "refcount" => Ok(Strategy::Refcount),
            "scan" => Ok(Strategy::Scan),
            _ => Err(format!(
                "unknown strategy {s:?} (auto, mark-sweep, refcount, scan)"
            )),
        }
    }
}

/// Blobs per candidate above which [`Strategy::Auto`] counts. On the 20,000-image synthetic
/// layout, mark-sweep's mark took about 1.4 µs per blob of the store (178-196 ms for 128,805
/// blobs) and refcount's about 15 µs per digest of garbage (821 ms for 53,162): counting costs
/// less while the garbage is under a tenth of the store. The garbage is not known beforehand;
/// the candidates it starts from are, and one per 128 blobs leaves room for about 12 digests of
/// garbage per candidate (an image's manifest, config, layers and referrers).
const AUTO_BLOBS_PER_CANDIDATE: u64 = 128;

impl Strategy {
    /// The strategy a collection with this one uses on the store `r` reads, which holds `blobs`
    /// blobs: itself, or for [`Strategy::Auto`] the reference counts when the candidates they
    /// start from are few.
    fn resolve(self, r: &Reader, blobs: u64) -> Result<Strategy> {
        if self != Strategy::Auto {
            return Ok(self);
        }
        Ok(
            if r.candidate_count()?
                .saturating_mul(AUTO_BLOBS_PER_CANDIDATE)
                < blobs.max(1)
            {
                Strategy::Refcount
            } else {
                Strategy::MarkSweep
            },
        )
    }
}

/// Options of a collection.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// How garbage is found.
    pub strategy: Strategy,
    /// How long a dangling referrer is kept, from when the store first recorded it; also the
    /// minimum age of an orphan file before it is removed.
    pub grace: Duration,
    /// Drop untagged index.json entries that are not referrers (kept by default).
    pub delete_untagged: bool,
    /// Report what would go; change nothing.
    pub dry_run: bool,
    /// Walk `blobs/` for files the index does not know, even if no walk is due.
    pub scan_orphans: bool,
    /// The policy; `None` reads `.ocistore/gc-policy.json`.
    pub policy: Option<Policy>,
    /// The most digests one sweep transaction removes.
    pub chunk: usize,
    /// The pause one sweep transaction aims at: the time writers wait for it, its row removals
    /// and its commit together. Each transaction stops taking digests once its removals, and
    /// the commit they are expected to need (learnt from the transaction before), fill this.
    pub chunk_time: Duration,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            strategy: Strategy::Auto,
            grace: Duration::from_secs(24 * 3600),
            delete_untagged: false,
            dry_run: false,
            scan_orphans: false,
            policy: None,
            chunk: 8192,
            chunk_time: Duration::from_millis(150),
        }
    }
}

/// One digest a collection or delete removes (or would remove), and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// The digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Why it goes.
    pub reason: String,
}

/// What a collection did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// The strategy used: never [`Strategy::Auto`], unless the store answered from the record
    /// of its last collection (`unchanged`), which uses none.
    pub strategy: Strategy,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Blobs removed (or that would be).
    pub removed_blobs: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Blobs kept.
    pub kept_blobs: u64,
    /// Their bytes.
    pub kept_bytes: u64,
    /// Candidates kept because a write since the start of the collection reached them.
    pub kept_by_recheck: u64,
    /// Each removal, with its reason.
    pub removed: Vec<Removal>,
    /// Files in `blobs/` unknown to the index that were removed.
    pub orphan_files: u64,
    /// Temporary files of dead writers removed from `.ocistore/ingest/`.
    pub temp_files: u64,
    /// Whether the orphan walk ran.
    pub orphan_walk: bool,
    /// Whether index.json was rewritten.
    pub index_json_rewritten: bool,
    /// Whether the collection returned at once because nothing was written since the last
    /// complete one (under the same options), no grace period ended since, and no unlink is
    /// left pending.
    pub unchanged: bool,
    /// Milliseconds spent finding garbage.
    pub mark_ms: f64,
    /// The longest sweep transaction, in milliseconds: the pause writers saw.
    pub max_pause_ms: f64,
    /// Milliseconds spent unlinking.
    pub unlink_ms: f64,
    /// Files whose removal an earlier collection committed but whose unlink failed (in this
    /// process, or when it opened the store), still pending when this one started: it unlinked
    /// them before marking.
    pub finished_unlinks: u64,
    /// Problems that did not stop the collection: unlinks left by an earlier one that fail
    /// again stay recorded, for the next collection or open to retry.
    pub warnings: Vec<String>,
    /// Milliseconds in all.
    pub total_ms: f64,
}

/// Options of a delete.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// Report what would go; change nothing.
    pub dry_run: bool,
    /// Delete a manifest even while a live index lists it.
    pub force: bool,
}

/// What a delete did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeleteReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Tags removed.
    pub tags: Vec<String>,
    /// Blobs removed, with why.
    pub removed: Vec<Removal>,
}

/// Why a digest is kept or would go.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The digest.
    pub digest: String,
    /// Whether it is present in the store.
    pub present: bool,
    /// Whether the next collection keeps it.
    pub live: bool,
    /// From the root to the digest: each step says how it was reached.
    pub path: Vec<String>,
    /// Why it would go, when it would.
    pub reason: Option<String>,
}

/// What one sweep transaction did.
struct Swept {
    /// How many digests of its chunk it took (at least one).
    taken: usize,
    /// The digests it removed.
    removed: Vec<String>,
    /// The `PENDING` batch recording their unlinks and the stale rows the chunk left.
    batch: Option<u64>,
    /// The time its removals took.
    work: Duration,
    /// The whole pause, commit included.
    pause: Duration,
}

impl Store {
    fn params<'a>(
        &self,
        opts: &GcOptions,
        policy: &'a Policy,
        leased: &'a HashSet<String>,
        collected: &'a std::collections::HashMap<String, u64>,
    ) -> Params<'a> {
        Params {
            now: catalog::now_secs(),
            grace_secs: opts.grace.as_secs(),
            delete_untagged: opts.delete_untagged,
            policy,
            leased,
            collected,
        }
    }

    fn policy_for(&self, opts: &GcOptions) -> Result<Policy> {
        match &opts.policy {
            Some(p) => Ok(p.clone()),
            None => Policy::load(&self.layout_ref().private_dir()),
        }
    }

    /// Collects garbage. See the module documentation for the protocol.
    ///
    /// ```
    /// # use ocistore::{Store, Options, PutOptions};
    /// # use ocistore::gc::GcOptions;
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::init(dir.path(), &Options::default())?;
    /// let blob = store.put(&mut &b"unreferenced"[..], &PutOptions::default())?;
    /// let report = store.gc(&GcOptions::default())?;
    /// assert_eq!(report.removed_blobs, 1);
    /// assert!(store.blob_info(&blob.digest)?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let started = Instant::now();
        let policy = self.policy_for(opts)?;
        let mut report = GcReport {
            strategy: opts.strategy,
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let key = options_key(&policy, opts);
        if !opts.scan_orphans && self.unchanged_since_last_collection(&key)? {
            // No write since the last complete collection under the same options, and no grace
            // period has ended: nothing can have become garbage.
            let sizes = self.stats()?;
            report.unchanged = true;
            report.kept_blobs = sizes.blobs;
            report.kept_bytes = sizes.bytes;
            report.total_ms = ms(started.elapsed());
            return Ok(report);
        }
        let _active = if opts.dry_run {
            None
        } else {
            let (guard, left) = self.begin_collection()?;
            self.finish_left_unlinks(&left, &mut report)?;
            Some(guard)
        };
        let reader = self.reader()?;
        let leased = self.leased();
        let collected = reader.collected()?;
        let params = self.params(opts, &policy, &leased, &collected);
        let mark_start = Instant::now();
        let sizes = reader.table_sizes()?;
        report.strategy = opts.strategy.resolve(&reader, sizes.blobs)?;
        let (garbage, next_expiry): (Vec<Removal>, u64) = match report.strategy {
            Strategy::Auto | Strategy::MarkSweep | Strategy::Scan => {
                let view = match report.strategy {
                    Strategy::Scan => self.scan_view(&reader)?,
                    _ => load_view(&reader, &policy, sizes.blobs)?,
                };
                let (g, expiry) = view_garbage(&view, &params);
                (sweep_order(g), expiry)
            }
            Strategy::Refcount => {
                let (found, expiry) = refcount::garbage(&reader, &params)?;
                (sweep_order(found), expiry)
            }
        };
        report.mark_ms = ms(mark_start.elapsed());
        drop(reader);
        if opts.dry_run {
            report.removed_blobs = garbage.len() as u64;
            report.removed_bytes = garbage.iter().map(|g| g.size).sum();
            report.kept_blobs = sizes.blobs - report.removed_blobs;
            report.kept_bytes = sizes.bytes - report.removed_bytes;
            report.removed = garbage;
            report.total_ms = ms(started.elapsed());
            return Ok(report);
        }
        // Content a lease protected may be garbage once the lease ends, without any write.
        let clean = format!("{key} {next_expiry}");
        let clean = leased.is_empty().then_some(clean.as_str());
        let warm = worth_warming(garbage.len(), sizes.blobs);
        if !self.sweep(garbage, warm, opts, clean, &mut report)? {
            self.sweep_orphans(opts, &mut report)?;
            if let Some(clean) = clean
                && self.leased().is_empty()
            {
                self.finish_collection(clean)?;
            }
        }
        let after = self.stats()?;
        report.kept_blobs = after.blobs;
        report.kept_bytes = after.bytes;
        report.total_ms = ms(started.elapsed());
        Ok(report)
    }

    /// Removes `garbage` in chunks: recheck, remove rows, commit. The unlinks of each committed
    /// chunk run on the unlink threads while the next chunk is swept. When no orphan walk is due
    /// or asked for and no lease is held, the last transaction also records the collection as
    /// `clean` (see [`Store::finish_collection`]), and the result is true. With `warm`, a thread
    /// of its own reads the pages the sweep will write into the index's cache meanwhile
    /// ([`worth_warming`]).
    fn sweep(
        &self,
        garbage: Vec<Removal>,
        warm: bool,
        opts: &GcOptions,
        clean: Option<&str>,
        report: &mut GcReport,
    ) -> Result<bool> {
        let doomed: FastSet<String> = garbage.iter().map(|g| g.digest.clone()).collect();
        let mut kept: FastSet<String> = FastSet::default();
        let mut batches = Vec::new();
        let mut stale = Stale::default();
        let mut stale_referrers = Stale::default();
        let warmer = if warm { Some(self.reader()?) } else { None };
        std::thread::scope(|scope| -> Result<bool> {
            let warming = warmer.and_then(|r| {
                std::thread::Builder::new()
                    .name("ocistore-warm".into())
                    .spawn_scoped(scope, move || r.warm_sweep_tables())
                    .ok()
            });
            let unlinker = Unlinker::start(scope, self, garbage.len());
            let swept = (|| -> Result<()> {
                // Tags and index.json entries of the garbage go first, so that the blob chunks
                // after them leave index.json alone.
                self.sweep_entries(&doomed, &mut kept, opts, &mut batches, report)?;
                let mut rest = &garbage[..];
                let mut budget = Budget::new(opts.chunk_time);
                while !rest.is_empty() {
                    let chunk = &rest[..rest.len().min(opts.chunk.max(1))];
                    let s = self.sweep_chunk(
                        chunk,
                        &budget,
                        &doomed,
                        &mut kept,
                        [&mut stale, &mut stale_referrers],
                        report,
                    )?;
                    budget.learn(&s);
                    rest = &rest[s.taken..];
                    batches.extend(s.batch);
                    self.run_sweep_hook(&s.removed);
                    if !unlinker.send(&s.removed) {
                        break;
                    }
                }
                Ok(())
            })();
            // Index work only: done even when an unlink failed (or else on the next open).
            let dropped = swept
                .and_then(|()| self.drop_stale([&mut stale, &mut stale_referrers], opts, report));
            let unlinked = unlinker.finish();
            dropped?;
            report.unlink_ms = ms(unlinked?);
            if let Some(Ok(Err(e))) = warming.map(|h| h.join()) {
                // Only a cache was to be filled: the sweep read what it needed itself.
                tracing::debug!("reading the index ahead of the sweep failed: {e}");
            }
            let txn = self.write_txn()?;
            let w = Writer::collector(&txn);
            self.unlinks_done(&w, &batches)?;
            for k in &kept {
                w.recount_from_scratch(k)?;
            }
            // Complete: the garbage that lost children is gone, but for what writes kept.
            // Their removed children stay in `COLLECTED`.
            let mut keep = Vec::new();
            for k in &kept {
                for c in w.children(k)? {
                    if w.blob(&c)?.is_none() {
                        keep.push(c);
                    }
                }
            }
            w.clear_collected(&keep)?;
            let finished = match clean {
                Some(clean)
                    if !opts.scan_orphans
                        && self.leased().is_empty()
                        && w.meta(meta::ORPHAN_WALK)?.is_none() =>
                {
                    record_clean(&w, clean)?;
                    true
                }
                _ => false,
            };
            drop(w);
            txn.commit()?;
            Ok(finished)
        })
    }

    /// Adds to `kept` the garbage that anything written since the collection started (the
    /// `CHANGED` set) or any lease reaches.
    fn recheck(
        &self,
        w: &Writer<'_>,
        doomed: &FastSet<String>,
        kept: &mut FastSet<String>,
    ) -> Result<()> {
        let mut queue: Vec<String> = w.take_changed()?;
        queue.extend(self.leased());
        while let Some(x) = queue.pop() {
            if doomed.contains(&x) {
                kept.insert(x.clone());
            }
            let mut next = w.children(&x)?;
            next.extend(w.referrers(&x)?.into_iter().map(|(r, _)| r));
            for y in next {
                if doomed.contains(&y) && !kept.contains(&y) {
                    queue.push(y);
                }
            }
        }
        Ok(())
    }

    /// Removes the tags and index.json entries of the garbage, in transactions of about half
    /// of `opts.chunk_time` of removals each, leaving time for the commit. Each transaction
    /// that removes a name rewrites index.json once. No blob has gone yet, so index.json never
    /// names a removed blob, whichever of them a crash interrupts.
    fn sweep_entries(
        &self,
        doomed: &FastSet<String>,
        kept: &mut FastSet<String>,
        opts: &GcOptions,
        batches: &mut Vec<u64>,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut named: Option<Vec<String>> = None;
        let mut next = 0;
        loop {
            let t0 = Instant::now();
            let txn = self.write_txn()?;
            let w = Writer::collector(&txn);
            self.recheck(&w, doomed, kept)?;
            // Only digests a tag or an entry names have names to remove. With more garbage
            // than names, one pass over both tables finds them for less than two lookups per
            // removal.
            let named = match &mut named {
                Some(n) => n,
                None if doomed.len() > w.name_counts()? => named.insert(w.named_digests()?),
                None => {
                    let mut n: Vec<String> = doomed.iter().cloned().collect();
                    n.sort_unstable();
                    named.insert(n)
                }
            };
            // The garbage's counts are dropped with it; `take_uncounted` below.
            w.skip_counts_of(|d| doomed.contains(d))?;
            let mut changed = false;
            // At least 7 names per transaction, however short the time.
            let mut taken = 0;
            while next < named.len() && (taken % 8 != 7 || t0.elapsed() < opts.chunk_time / 2) {
                let d = &named[next];
                next += 1;
                taken += 1;
                if !doomed.contains(d) || kept.contains(d) {
                    continue;
                }
                for tag in w.tags_of(d)? {
                    w.remove_tag(&tag)?;
                    changed = true;
                }
                if has_entries(&w, d)? {
                    w.remove_entries(d)?;
                    changed = true;
                }
            }
            if changed {
                self.write_index_json(&w)?;
            }
            let uncounted: Vec<(String, String)> = w
                .take_uncounted()?
                .into_iter()
                .map(|d| (d.clone(), d))
                .collect();
            let batch = w.add_pending(&[], &uncounted)?;
            drop(w);
            txn.commit()?;
            batches.extend(batch);
            report.index_json_rewritten |= changed;
            report.max_pause_ms = report.max_pause_ms.max(ms(t0.elapsed()));
            if next >= named.len() {
                return Ok(());
            }
        }
    }

    /// Drops, in key order and in transactions of about `opts.chunk_time`, the stale rows no
    /// chunk dropped: the `PARENTS` rows of `parents`, then the `REFERRERS` rows of `referrers`.
    fn drop_stale(
        &self,
        [parents, referrers]: [&mut Stale; 2],
        opts: &GcOptions,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut rest = [parents.take_rows(), referrers.take_rows()];
        while rest.iter().any(|rows| !rows.is_empty()) {
            let t0 = Instant::now();
            let txn = self.write_txn()?;
            let w = Writer::collector(&txn);
            let mut done = [0, 0];
            for (table, rows) in rest.iter().enumerate() {
                // At least one key's rows per transaction, however short the time.
                while done[table] < rows.len()
                    && (done == [0, 0] || t0.elapsed() < opts.chunk_time / 2)
                {
                    let mut end = (done[table] + 256).min(rows.len());
                    // A key's rows go in one transaction (a child's, with one recount).
                    while end < rows.len() && rows[end].0 == rows[end - 1].0 {
                        end += 1;
                    }
                    let slice = &rows[done[table]..end];
                    if table == 0 {
                        w.drop_stale_parent_links(slice)?;
                    } else {
                        w.drop_stale_referrer_links(slice)?;
                    }
                    done[table] = end;
                }
            }
            drop(w);
            txn.commit()?;
            for (rows, done) in rest.iter_mut().zip(done) {
                rows.drain(..done);
            }
            report.max_pause_ms = report.max_pause_ms.max(ms(t0.elapsed()));
        }
        Ok(())
    }

    /// One sweep transaction: keeps what writes since the start reach, removes the rest of
    /// `chunk` (or the part of it that `budget` allows), drops the stale rows whose keys lie
    /// within the keys it removed (when the budget allows), marks the unlinks pending, commits.
    fn sweep_chunk(
        &self,
        chunk: &[Removal],
        budget: &Budget,
        doomed: &FastSet<String>,
        kept: &mut FastSet<String>,
        [stale, stale_referrers]: [&mut Stale; 2],
        report: &mut GcReport,
    ) -> Result<Swept> {
        let t0 = Instant::now();
        let txn = self.write_txn()?;
        let w = Writer::collector(&txn);
        w.defer_counts();
        w.defer_parent_links()?;
        self.recheck(&w, doomed, kept)?;
        let mut removed = Vec::new();
        let mut removals = Vec::new();
        let mut taken = 0;
        for (i, g) in chunk.iter().enumerate() {
            if taken % 8 == 7 && !budget.allows(t0.elapsed(), 0, REMOVALS_SHARE) {
                break;
            }
            // The garbage is in key order: one read of the link tables and `CANDIDATES` over
            // the keys of the next few hundred spares most of them their lookups there.
            if i % HINT_WINDOW == 0 {
                let last = &chunk[(i + HINT_WINDOW).min(chunk.len()) - 1].digest;
                w.hint_rows(&g.digest, last, HINT_WINDOW)?;
            }
            taken += 1;
            if kept.contains(&g.digest) {
                report.kept_by_recheck += 1;
                continue;
            }
            let is_doomed = |d: &str| doomed.contains(d) && !kept.contains(d);
            if let Some(rec) = w.remove_blob(&g.digest, Some(&is_doomed))? {
                report.removed_bytes += rec.size;
                removals.push(g.clone());
                removed.push(g.digest.clone());
            }
        }
        // The garbage's tags and entries went in `sweep_entries`; one added since is a change
        // the recheck keeps, so this is rare.
        if w.names_removed() {
            self.write_index_json(&w)?;
            report.index_json_rewritten = true;
        }
        // The stale rows under the keys this chunk removed lie on pages it rewrites anyway.
        let (mut due, own, mut left) = stale.due(&removed, w.take_deferred_links()?);
        let (mut rdue, rown, mut rleft) =
            stale_referrers.due(&removed, w.take_deferred_referrer_links()?);
        let rows = due.len() + own.len() + rdue.len() + rown.len();
        if budget.allows(t0.elapsed(), rows, 1.0) {
            due.extend(own);
            due.sort_unstable();
            rdue.extend(rown);
            rdue.sort_unstable();
            let t = Instant::now();
            w.drop_stale_parent_links(&due)?;
            w.drop_stale_referrer_links(&rdue)?;
            let rows = u32::try_from(rows.max(1)).unwrap_or(u32::MAX);
            budget.per_stale_row.set(t.elapsed() / rows);
        } else {
            // Left for a later transaction, the chunk's own ones with the rest.
            due.clear();
            left.extend(own);
            rdue.clear();
            rleft.extend(rown);
        }
        w.flush_counts()?;
        w.add_collected(&removed)?;
        // Count updates skipped for garbage that a later chunk removes (the garbage is in key
        // order): recounted on the next open if the collection stops before that chunk.
        let last = chunk[..taken].last().map_or("", |g| g.digest.as_str());
        let mut recounts: Vec<(String, String)> = w
            .take_skipped_recounts()?
            .into_iter()
            .filter(|(d, _)| d.as_str() > last)
            .collect();
        let batch = if recounts.is_empty() && rleft.is_empty() {
            w.add_pending(&removed, &left)?
        } else {
            recounts.extend(left.iter().cloned());
            recounts.extend(rleft.iter().cloned());
            recounts.sort_unstable();
            recounts.dedup();
            w.add_pending(&removed, &recounts)?
        };
        drop(w);
        let work = t0.elapsed();
        self.mark_pending(&removed);
        if let Err(e) = txn.commit() {
            self.unmark_pending(&removed);
            return Err(e.into());
        }
        stale.settle(&due, left);
        stale_referrers.settle(&rdue, rleft);
        report.removed_blobs += removed.len() as u64;
        report.removed.extend(removals);
        let pause = t0.elapsed();
        report.max_pause_ms = report.max_pause_ms.max(ms(pause));
        Ok(Swept {
            taken,
            removed,
            batch,
            work,
            pause,
        })
    }

    /// Records, in their stripes, digests whose removal is about to commit. Called while the
    /// removing transaction is open, so no ingest can publish one of them in between.
    pub(crate) fn mark_pending(&self, digests: &[String]) {
        for d in digests {
            self.stripe(d).insert(d.clone());
        }
    }

    fn unmark_pending(&self, digests: &[String]) {
        for d in digests {
            self.stripe(d).remove(d.as_str());
        }
    }

    /// Unlinks, in parallel, the files of digests marked pending, each under its stripe lock and
    /// only if no ingest has published the digest again since (it would have unmarked it).
    pub(crate) fn unlink_marked(&self, digests: &[String]) -> Result<()> {
        std::thread::scope(|scope| {
            let unlinker = Unlinker::start(scope, self, digests.len());
            unlinker.send(digests);
            unlinker.finish().map(|_| ())
        })
    }

    /// Forgets the `PENDING` rows of finished unlinks, and records the state of `blobs/` that the
    /// store's own changes left (a later difference is another tool's).
    fn unlinks_done(&self, w: &Writer<'_>, batches: &[u64]) -> Result<()> {
        w.clear_pending(batches)?;
        w.set_meta(
            meta::BLOBS_STAMP,
            crate::store::blobs_stamp(self.layout_ref())?.as_bytes(),
        )
    }

    /// Finishes unlinks a crashed process committed but did not do (on open, before any other
    /// write): the files of `PENDING` digests that are not indexed again. Returns how many it
    /// unlinked; an unlink that fails is a warning in `warnings` ([`Store::unlink_left`]).
    pub(crate) fn unlink_pending(
        &self,
        batches: &[PendingBatch],
        warnings: &mut Vec<String>,
    ) -> Result<u64> {
        if batches.iter().any(|b| !b.links.is_empty()) {
            let txn = self.write_txn()?;
            let w = Writer::collector(&txn);
            settle_links(&w, batches)?;
            drop(w);
            txn.commit()?;
        }
        let reader = self.reader()?;
        let mut todo = Vec::new();
        for d in batches.iter().flat_map(|b| &b.digests) {
            if reader.blob(d)?.is_none() {
                todo.push(d.clone());
            }
        }
        drop(reader);
        self.mark_pending(&todo);
        self.unlink_left(batches, &todo, warnings)
    }

    /// Unlinks `todo`, the marked digests of `batches`, and forgets the batches. An unlink that
    /// fails is a warning, not an error: the files are garbage the index no longer records, a
    /// file that cannot be removed costs space, not content, and it must not keep the store
    /// from opening or collecting. The failed unlink, and those not tried after it, stay marked
    /// and recorded, and the next collection or writable open retries them. Returns how many
    /// files it unlinked.
    fn unlink_left(
        &self,
        batches: &[PendingBatch],
        todo: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<u64> {
        match self.unlink_marked(todo) {
            Ok(()) => {
                self.forget_batches(batches)?;
                Ok(todo.len() as u64)
            }
            Err(e @ Error::Io { .. }) => {
                let stuck = todo.iter().filter(|d| self.still_marked(d)).count();
                warnings.push(format!(
                    "could not finish the unlinks of {stuck} blobs a collection removed ({e}); \
                     they stay recorded, and the next collection or writable open retries them"
                ));
                Ok((todo.len() - stuck) as u64)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `d`'s unlink is still pending in this process.
    fn still_marked(&self, d: &str) -> bool {
        self.stripe(d).contains(d)
    }

    /// Forgets `batches`, whose unlinks are done, in a transaction of its own.
    fn forget_batches(&self, batches: &[PendingBatch]) -> Result<()> {
        let txn = self.write_txn()?;
        let w = Writer::collector(&txn);
        let keys: Vec<u64> = batches.iter().map(|b| b.key).collect();
        self.unlinks_done(&w, &keys)?;
        drop(w);
        txn.commit()?;
        Ok(())
    }

    /// Walks `blobs/` and `.ocistore/ingest/` when due (or asked): files the index does not
    /// know, older than the grace, and temporary files of dead writers.
    fn sweep_orphans(&self, opts: &GcOptions, report: &mut GcReport) -> Result<()> {
        let due = self.reader()?.meta(meta::ORPHAN_WALK)?.is_some();
        if !due && !opts.scan_orphans {
            return Ok(());
        }
        report.orphan_walk = true;
        let layout = self.layout_ref();
        let mut warnings = Vec::new();
        let files = scan::list_blob_files(layout, &mut warnings)?;
        let now = SystemTime::now();
        for (d, _) in files {
            let _stripe = self.stripe(d.as_str());
            if self.reader()?.blob(d.as_str())?.is_some() {
                continue;
            }
            let path = layout.blob_path(&d);
            let old = fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= opts.grace)
                .unwrap_or(false);
            if old && crate::layout::unlink(&path).is_ok() {
                report.orphan_files += 1;
            }
        }
        let ingest = layout.ingest_dir();
        if let Ok(rd) = fs::read_dir(&ingest) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with(self.session_prefix())
                    && crate::layout::unlink(&e.path()).is_ok()
                {
                    report.temp_files += 1;
                }
            }
        }
        let txn = self.write_txn()?;
        let w = Writer::collector(&txn);
        w.remove_meta(meta::ORPHAN_WALK)?;
        w.set_meta(
            meta::BLOBS_STAMP,
            crate::store::blobs_stamp(layout)?.as_bytes(),
        )?;
        drop(w);
        txn.commit()?;
        Ok(())
    }

    fn scan_view(&self, reader: &Reader) -> Result<View> {
        let layout = self.layout_ref();
        let mut warnings = Vec::new();
        let mut files = scan::list_blob_files(layout, &mut warnings)?;
        // Orphan files are the orphan walk's business, in every strategy.
        files.retain(|(d, _)| reader.blob(d.as_str()).ok().flatten().is_some());
        let (blobs, _) = scan::read_blobs(layout, files, self.options().max_manifest_size, false);
        let mut view = View::default();
        for b in &blobs {
            let rec = reader
                .blob(b.digest.as_str())?
                .unwrap_or(BlobRecord::new(b.size, false, false));
            view.add_blob(
                b.digest.as_str(),
                Node {
                    size: b.size,
                    recorded_at: rec.recorded_at,
                    artifact_type: b.parsed.as_ref().and_then(|p| p.artifact_type.clone()),
                    found: rec.found,
                },
            );
            if let Some(p) = &b.parsed {
                for c in &p.children {
                    view.add_edge(b.digest.as_str(), c.digest.as_str());
                }
                if let Some(s) = &p.subject {
                    view.add_link(s.as_str(), b.digest.as_str());
                }
            }
        }
        let (index, _) = IndexJson::read(&layout.index_json())?;
        let (tags, untagged, _) = index.split();
        for (tag, e) in tags {
            match ReferrerTag::parse(&tag) {
                None => view.add_tag(tag, e.digest.as_str()),
                Some(l) if l.kind == LinkKind::Fallback => {
                    view.add_link(l.subject.as_str(), e.digest.as_str());
                    for c in view.children_of(e.digest.as_str()) {
                        view.add_link(l.subject.as_str(), &c);
                    }
                }
                Some(l) => view.add_link(l.subject.as_str(), e.digest.as_str()),
            }
        }
        for e in &untagged {
            view.add_untagged(e.digest.as_str());
        }
        for p in reader.pins()? {
            view.add_pin(&p);
        }
        Ok(view)
    }

    /// Deletes a tag (only the tag), or a manifest with its tags, entries and hard referrers
    /// (recursively), or an unreferenced blob. Its exclusive content goes at the next collection.
    pub fn delete(&self, reference: &str, opts: &DeleteOptions) -> Result<DeleteReport> {
        let mut report = DeleteReport {
            dry_run: opts.dry_run,
            ..DeleteReport::default()
        };
        let reader = self.reader()?;
        if crate::refname::validate_tag(reference).is_ok() && reader.tag(reference)?.is_some() {
            report.tags.push(reference.to_owned());
            drop(reader);
            if !opts.dry_run {
                self.untag(reference)?;
            }
            return Ok(report);
        }
        // Not a tag: a digest, and a bad one is named as such (`Store::resolve`'s errors).
        let digest = self.resolve(reference)?;
        let d = digest.to_string();
        let Some(rec) = reader.blob(&d)? else {
            return Err(Error::NotFound(format!("blob {d}")));
        };
        let policy = Policy::load(&self.layout_ref().private_dir())?;
        let mut doomed: BTreeMap<String, (u64, String)> = BTreeMap::new();
        if rec.manifest {
            // What a collection under the default options would keep.
            let view = load_view(&reader, &policy, reader.table_sizes()?.blobs)?;
            let leased = self.leased();
            let collected = reader.collected()?;
            let params = self.params(&GcOptions::default(), &policy, &leased, &collected);
            let live = graph::mark(&view, &params);
            let is_live = |x: &str| view.lookup(x).is_some_and(|i| live.via(i).is_some());
            // Without --force, nothing a live index lists goes: neither the manifest nor one of
            // the hard referrers that would go with it (the index would lack a child).
            let live_index_listing = |x: &str,
                                      doomed: &BTreeMap<String, (u64, String)>|
             -> Result<Option<String>> {
                if opts.force {
                    return Ok(None);
                }
                for p in reader.parents(x)? {
                    if is_live(&p) && !doomed.contains_key(&p) && reader.manifest(&p)?.is_some() {
                        return Ok(Some(p));
                    }
                }
                Ok(None)
            };
            if let Some(p) = live_index_listing(&d, &doomed)? {
                return Err(Error::Refused {
                    digest: d,
                    reason: format!(
                        "the live index {p} lists it (use --force to delete it anyway)"
                    ),
                });
            }
            doomed.insert(d.clone(), (rec.size, "deleted".into()));
            let mut queue = vec![d.clone()];
            while let Some(x) = queue.pop() {
                for (r, src) in reader.referrers(&x)? {
                    if doomed.contains_key(&r) {
                        continue;
                    }
                    let Some(rb) = reader.blob(&r)? else { continue };
                    let art = reader.manifest(&r)?.and_then(|m| m.artifact_type);
                    if src == Source::FallbackIndex || policy.mode(art.as_deref()) == Mode::Hard {
                        doomed.insert(
                            r.clone(),
                            (rb.size, format!("hard referrer of deleted {x}")),
                        );
                        queue.push(r);
                    }
                }
                // An index that lists it and is garbage goes too: it would lack a child, and
                // tagged again it would come back incomplete.
                for p in reader.parents(&x)? {
                    if doomed.contains_key(&p) || is_live(&p) {
                        continue;
                    }
                    let Some(pb) = reader.blob(&p)? else { continue };
                    if pb.manifest {
                        doomed.insert(
                            p.clone(),
                            (pb.size, format!("garbage index listing deleted {x}")),
                        );
                        queue.push(p);
                    }
                }
            }
            for r in doomed.keys().filter(|r| **r != d) {
                if let Some(p) = live_index_listing(r, &doomed)? {
                    return Err(Error::Refused {
                        digest: d,
                        reason: format!(
                            "its hard referrer {r} is listed by the live index {p} (use --force \
                             to delete it anyway)"
                        ),
                    });
                }
            }
        } else {
            let parents = reader.parents(&d)?;
            if let Some(p) = parents.first() {
                return Err(Error::Refused {
                    digest: d,
                    reason: format!("manifest {p} references it"),
                });
            }
            doomed.insert(d.clone(), (rec.size, "deleted".into()));
        }
        for x in doomed.keys() {
            report.tags.extend(reader.tags_of(x)?);
        }
        report.removed = doomed
            .into_iter()
            .map(|(digest, (size, reason))| Removal {
                digest,
                size,
                reason,
            })
            .collect();
        drop(reader);
        if opts.dry_run {
            return Ok(report);
        }
        self.mark_writing()?;
        let txn = self.write_txn()?;
        let w = Writer::new(&txn);
        let mut entries_changed = false;
        let mut removed = Vec::new();
        for r in &report.removed {
            entries_changed |= !w.tags_of(&r.digest)?.is_empty() || has_entries(&w, &r.digest)?;
            if w.remove_blob(&r.digest, None)?.is_some() {
                removed.push(r.digest.clone());
            }
        }
        if entries_changed {
            self.write_index_json(&w)?;
        }
        let batch = w.add_pending(&removed, &[])?;
        drop(w);
        self.mark_pending(&removed);
        if let Err(e) = txn.commit() {
            self.unmark_pending(&removed);
            return Err(e.into());
        }
        self.unlink_marked(&removed)?;
        let txn = self.write_txn()?;
        let w = Writer::new(&txn);
        self.unlinks_done(&w, batch.as_slice())?;
        drop(w);
        txn.commit()?;
        Ok(report)
    }

    /// Why `digest` is kept (a path from a root) or why it would go, under `opts`.
    pub fn explain(&self, digest: &Digest, opts: &GcOptions) -> Result<Explanation> {
        let policy = self.policy_for(opts)?;
        let reader = self.reader()?;
        let view = load_view(&reader, &policy, reader.table_sizes()?.blobs)?;
        let leased = self.leased();
        let collected = reader.collected()?;
        let params = self.params(opts, &policy, &leased, &collected);
        let live = graph::mark(&view, &params);
        let d = digest.to_string();
        let present = view.is_present(&d);
        let id = view.lookup(&d);
        let live_via = id.and_then(|i| live.via(i));
        let mut path = Vec::new();
        let mut cur = id;
        let mut guard = 0;
        while let Some(i) = cur {
            let Some(via) = live.via(i) else { break };
            let name = view.name(i);
            guard += 1;
            let (step, next) = match via {
                Via::Tag(t) => (format!("tag {t} -> {name}"), None),
                Via::Untagged => (format!("untagged index.json entry {name}"), None),
                Via::Pin => (format!("pin {name}"), None),
                Via::Lease => (format!("lease {name}"), None),
                Via::Dangling => (
                    format!("dangling referrer {name}, inside the grace period"),
                    None,
                ),
                Via::Found => (
                    format!("file {name} found in blobs/, inside the grace period"),
                    None,
                ),
                Via::Child(p) => (format!("{} -> child {name}", view.name(*p)), Some(*p)),
                Via::Referrer(s) => (format!("{} <- referrer {name}", view.name(*s)), Some(*s)),
            };
            path.push(step);
            cur = next.filter(|_| guard < 10_000);
        }
        path.reverse();
        let reason = match (present, live_via, id) {
            (true, None, Some(i)) => Some(view.reason(i, &params)),
            _ => None,
        };
        Ok(Explanation {
            live: live_via.is_some(),
            digest: d,
            present,
            path,
            reason,
        })
    }

    /// Pins a digest: a root until unpinned. A pinned manifest is also listed in index.json,
    /// untagged, so that other tools' collectors keep it too.
    pub fn pin(&self, digest: &Digest) -> Result<bool> {
        self.set_pin(digest, true)
    }

    /// Removes a pin (and the index.json entry that listed it).
    pub fn unpin(&self, digest: &Digest) -> Result<bool> {
        self.set_pin(digest, false)
    }

    fn set_pin(&self, digest: &Digest, pinned: bool) -> Result<bool> {
        let txn = self.write_txn()?;
        let w = Writer::tracking(&txn, self.collecting());
        let changed = w.set_pin(digest.as_str(), pinned)?;
        if pinned {
            self.refuse_collected(&w, &[digest.to_string()])?;
        }
        if changed && let Some(m) = w.manifest(digest.as_str())? {
            let mut entry =
                crate::layout::index_json::Entry::new(digest, &m.media_type, m.size, None);
            let mut ann = serde_json::Map::new();
            ann.insert(PIN_ANNOTATION.into(), "true".into());
            entry
                .object
                .insert("annotations".into(), serde_json::Value::Object(ann));
            if pinned {
                w.add_untagged(digest.as_str(), &entry.to_bytes())?;
            } else {
                w.remove_untagged_entry(digest.as_str(), &entry.to_bytes())?;
            }
            self.write_index_json(&w)?;
        }
        drop(w);
        txn.commit()?;
        Ok(changed)
    }

    /// Starts recording writes for a collection; the guard stops it. Returns the batches that a
    /// failed collection of this process (or an open whose unlinks failed) left in `PENDING`:
    /// their counts are settled here, before this collection reads them.
    ///
    /// Invariant: collections in a process run one at a time; the guard holds
    /// [`Store::one_collection`] until the collection ends. A collection starts by emptying
    /// `CHANGED` and its rechecks take what they find there, so a second one running beside it
    /// would take writes the first must see, and the first could remove content such a write
    /// made live. Other processes cannot write meanwhile (the writer lock).
    fn begin_collection(&self) -> Result<(CollectionGuard<'_>, Vec<PendingBatch>)> {
        let one = self.one_collection();
        self.mark_writing()?;
        let txn = self.write_txn()?;
        let w = Writer::collector(&txn);
        w.take_changed()?;
        w.set_meta(meta::GC_CLEAN, GC_RUNNING)?;
        let left = w.pending_batches()?;
        settle_links(&w, &left)?;
        drop(w);
        self.set_collecting(true);
        let guard = CollectionGuard {
            store: self,
            _one: one,
        };
        txn.commit()?;
        Ok((guard, left))
    }

    /// Unlinks the files of `left` (batches of [`Store::begin_collection`]) that are still marked
    /// pending, then forgets the batches. A digest of theirs that is not marked was unlinked
    /// already, or pushed again since (ingest unmarks what it publishes): the mark, set while
    /// the removing transaction was open, is what makes the unlink safe, as in the sweep.
    /// An unlink that fails again is a warning, as on open ([`Store::unlink_left`]).
    fn finish_left_unlinks(&self, left: &[PendingBatch], report: &mut GcReport) -> Result<()> {
        if left.is_empty() {
            return Ok(());
        }
        let todo: Vec<String> = left
            .iter()
            .flat_map(|b| &b.digests)
            .filter(|d| self.still_marked(d))
            .cloned()
            .collect();
        report.finished_unlinks = self.unlink_left(left, &todo, &mut report.warnings)?;
        Ok(())
    }
}

/// Drops the stale `PARENTS` and `REFERRERS` rows the `batches` list and counts their first
/// digests afresh: the children and subjects of those rows, and the garbage whose count updates
/// a sweep skipped (`Writer::take_skipped_recounts`). A pair does not say which kind of row it
/// is: both are tried, and a row of either table whose second digest is absent is stale by the
/// catalog's invariants. Doing it twice changes nothing.
fn settle_links(w: &Writer<'_>, batches: &[PendingBatch]) -> Result<()> {
    let mut links: Vec<(String, String)> = batches
        .iter()
        .flat_map(|b| b.links.iter().cloned())
        .collect();
    links.sort_unstable();
    w.drop_stale_parent_links(&links)?;
    w.drop_stale_referrer_links(&links)?;
    let mut last = None;
    for (d, _) in &links {
        if last != Some(d) && w.blob(d)?.is_some() {
            w.recount_from_scratch(d)?;
        }
        last = Some(d);
    }
    Ok(())
}

/// The annotation of the untagged index.json entry that lists a pinned manifest.
pub const PIN_ANNOTATION: &str = "io.ocistore.pinned";

/// `meta::GC_CLEAN` while a collection runs: any other write removes it.
const GC_RUNNING: &[u8] = b"running";

fn options_key(policy: &Policy, opts: &GcOptions) -> String {
    let policy = serde_json::to_vec(policy).unwrap_or_default();
    let d = Digest::sha256(&policy);
    format!(
        "{}-{}-{}",
        &d.encoded()[..16],
        opts.grace.as_secs(),
        opts.delete_untagged
    )
}

impl Store {
    /// Whether no write happened since the last complete collection under these options, and
    /// no dangling referrer's grace period has ended since.
    fn unchanged_since_last_collection(&self, key: &str) -> Result<bool> {
        let r = self.reader()?;
        // Unlinks left pending (an unlink failed) are work for the next collection.
        if r.meta(meta::ORPHAN_WALK)?.is_some() || !self.leased().is_empty() || r.has_pending()? {
            return Ok(false);
        }
        let Some(v) = r.meta(meta::GC_CLEAN)? else {
            return Ok(false);
        };
        let text = String::from_utf8_lossy(&v);
        let Some((k, expiry)) = text.split_once(' ') else {
            return Ok(false);
        };
        Ok(k == key && expiry.parse::<u64>().is_ok_and(|e| catalog::now_secs() < e))
    }

    /// Records that the collection saw no other write, if it did not.
    fn finish_collection(&self, clean: &str) -> Result<()> {
        let txn = self.write_txn()?;
        let w = Writer::collector(&txn);
        record_clean(&w, clean)?;
        drop(w);
        txn.commit()?;
        Ok(())
    }
}

/// Sets `meta::GC_CLEAN` to `clean` unless a write since the collection began removed its
/// running mark.
fn record_clean(w: &Writer<'_>, clean: &str) -> Result<()> {
    if w.meta(meta::GC_CLEAN)?.as_deref() == Some(GC_RUNNING) {
        w.set_meta(meta::GC_CLEAN, clean.as_bytes())?;
    }
    Ok(())
}

impl Store {
    /// Refuses a write that would make one of `roots` reachable (a manifest it puts, a tag, an
    /// index.json entry, a pin, or a put that finds the digest present while a collection runs)
    /// if a collection has removed something the root reaches through children and present
    /// referrers, recursively, that is still absent. Called in the write's transaction, before
    /// it publishes anything.
    ///
    /// Invariant: no reachable manifest lacks a child that a collection removed. The sweep
    /// removes garbage in key order, not parents first, so a garbage manifest may lose a child
    /// before it goes itself. It stays garbage until then, because every write that could make
    /// it reachable again passes this check, and no sweep transaction commits between the check
    /// and the write's commit. The sweep records what it removes in `COLLECTED`, in the removing
    /// transaction, and empties it once complete (but for the removed children of what writes
    /// kept), so the check also holds after a crash or a failed collection, until one completes.
    /// Pushing the missing content again (it is then indexed anew) lets the write through; the
    /// walk then puts back the `PARENTS` rows the removal took from it under the manifests that
    /// list it, so that the reference counts hold it supported again.
    ///
    /// A referrer that has gone takes its link with it, so a subject made reachable again after
    /// that is not refused: it has lost that referrer, as it would have had the referrer gone
    /// just before the write.
    pub(crate) fn refuse_collected(&self, w: &Writer<'_>, roots: &[String]) -> Result<()> {
        if w.no_collected()? {
            return Ok(());
        }
        for root in roots {
            let mut seen: FastSet<String> = FastSet::default();
            // Each digest with the manifest that lists it, if the walk came through one.
            let mut stack: Vec<(String, Option<String>)> = vec![(root.clone(), None)];
            while let Some((x, parent)) = stack.pop() {
                if w.is_collected(&x)? {
                    if w.blob(&x)?.is_none() {
                        return Err(Error::BeingCollected {
                            digest: root.clone(),
                            gone: x,
                        });
                    }
                    // Pushed again since: its `PARENTS` rows went with it, and the manifest
                    // that lists it is about to become reachable. Without the row, the
                    // reference counts would hold it unsupported.
                    if let Some(p) = &parent {
                        w.restore_parent_row(&x, p)?;
                    }
                }
                if !seen.insert(x.clone()) {
                    continue;
                }
                for c in w.children(&x)? {
                    stack.push((c, Some(x.clone())));
                }
                for (r, _) in w.referrers(&x)? {
                    stack.push((r, None));
                }
            }
        }
        Ok(())
    }
}

/// A running collection: writes are recorded for it, and no other collection of the process
/// starts, until it drops.
struct CollectionGuard<'s> {
    store: &'s Store,
    _one: MutexGuard<'s, ()>,
}

impl Drop for CollectionGuard<'_> {
    fn drop(&mut self) {
        self.store.set_collecting(false);
    }
}

/// Orders the garbage for the sweep: in key order (the text order of digests is their stored
/// order within an algorithm), so that a chunk's removals lie together in every table keyed by
/// digest and each page is rewritten about once. A child may then go before the garbage
/// manifest that lists it, and a subject before its referrers: `COLLECTED` covers both
/// (`Store::refuse_collected`, and `graph::collected_with`).
fn sweep_order(mut garbage: Vec<Removal>) -> Vec<Removal> {
    garbage.sort_unstable_by(|a, b| a.digest.cmp(&b.digest));
    garbage
}

/// Removals per read of the link tables and `CANDIDATES` in a sweep transaction
/// (`Writer::hint_rows`). The window spans a small slice of the key space, where few digests
/// have links or are candidates: its reads cover fewer rows than the four lookups per removal
/// they spare, and a window with more keys in a table than removals gets no hint.
const HINT_WINDOW: usize = 256;

/// The share of a sweep transaction's time its removals may fill: the rest is for the stale
/// rows under their keys.
const REMOVALS_SHARE: f64 = 0.8;

/// How much one sweep transaction takes on, removals and then stale rows, for its pause, commit
/// included, to stay within `time`. A commit writes every page the removals touched, so its
/// cost follows theirs: the ratio of the two is learnt from the previous transaction.
struct Budget {
    time: Duration,
    /// The commit's time over the work's, in the previous transaction.
    commit_per_work: f64,
    per_stale_row: std::cell::Cell<Duration>,
}

impl Budget {
    fn new(time: Duration) -> Budget {
        Budget {
            time,
            commit_per_work: 1.0,
            // A guess for the first transaction, from this machine: 3-6 microseconds a row.
            per_stale_row: std::cell::Cell::new(Duration::from_micros(5)),
        }
    }

    /// Whether a transaction `elapsed` into its work can still drop `stale_rows` rows and
    /// commit within `share` of its time.
    fn allows(&self, elapsed: Duration, stale_rows: usize, share: f64) -> bool {
        let rows = u32::try_from(stale_rows).unwrap_or(u32::MAX);
        let work = elapsed.saturating_add(self.per_stale_row.get().saturating_mul(rows));
        work.mul_f64(1.0 + self.commit_per_work) < self.time.mul_f64(share)
    }

    fn learn(&mut self, s: &Swept) {
        let work = s.work.as_secs_f64().max(1e-6);
        let commit = s.pause.saturating_sub(s.work).as_secs_f64();
        self.commit_per_work = (commit / work).clamp(0.1, 4.0);
    }
}

/// The stale rows of one table (`PARENTS` or `REFERRERS`) a collection has committed and not yet
/// dropped.
#[derive(Default)]
struct Stale {
    /// Key -> values: child -> parents (`PARENTS`), or subject -> referrers (`REFERRERS`).
    rows: BTreeMap<String, Vec<String>>,
    /// The last key the chunks so far have covered.
    covered: String,
}

impl Stale {
    /// The rows whose child lies in the keys the chunk covers, from just above the last removal
    /// of the chunk before to its own last (the garbage is in key order, `sweep_order`, so the
    /// chunks tile the key space): those committed before, and those among the chunk's `new`
    /// ones; and the other new ones.
    #[allow(clippy::type_complexity)]
    fn due(
        &mut self,
        removed: &[String],
        new: Vec<(String, String)>,
    ) -> (
        Vec<(String, String)>,
        Vec<(String, String)>,
        Vec<(String, String)>,
    ) {
        let Some(hi) = removed.last() else {
            return (Vec::new(), Vec::new(), new);
        };
        let mut lo = std::mem::replace(&mut self.covered, hi.clone());
        if lo >= *hi {
            // Only if the garbage was not in key order: cover from the lowest keys.
            lo.clear();
        }
        let within = |c: &str| lo.as_str() < c && c <= hi.as_str();
        let mut due = Vec::new();
        for (c, ps) in self.rows.range::<str, _>((
            std::ops::Bound::Excluded(lo.as_str()),
            std::ops::Bound::Included(hi.as_str()),
        )) {
            due.extend(ps.iter().map(|p| (c.clone(), p.clone())));
        }
        let (own, left): (Vec<_>, Vec<_>) = new.into_iter().partition(|(c, _)| within(c));
        (due, own, left)
    }

    /// Every row left, in key order, as `(key, value)`.
    fn take_rows(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.rows)
            .into_iter()
            .flat_map(|(c, ps)| ps.into_iter().map(move |p| (c.clone(), p)))
            .collect()
    }

    /// After the chunk committed: `due` went, `left` stays for later.
    fn settle(&mut self, due: &[(String, String)], left: Vec<(String, String)>) {
        for (c, _) in due {
            self.rows.remove(c);
        }
        for (c, p) in left {
            self.rows.entry(c).or_default().push(p);
        }
    }
}

/// Whether a sweep of `garbage` removals from a store of `blobs` blobs should have the pages it
/// writes read ahead ([`crate::catalog::Reader::warm_sweep_tables`]). Garbage spread over the
/// key space touches most leaf pages of the tables it writes once it is more than a sixteenth of
/// the blobs (a leaf holds some sixty rows): reading them all ahead then costs a thread that
/// would otherwise idle, and saves the sweep reading them one at a time under the write lock.
/// Less garbage touches fewer pages than reading them all would read.
fn worth_warming(garbage: usize, blobs: u64) -> bool {
    garbage >= 4096 && (garbage as u64).saturating_mul(16) >= blobs
}

fn has_entries(w: &Writer<'_>, d: &str) -> Result<bool> {
    Ok(w.counts(d)?[catalog::count::UNTAGGED] > 0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The graph as the index `r` records it, `blobs` blobs.
fn load_view(r: &Reader, policy: &Policy, blobs: u64) -> Result<View> {
    let mut view = View::with_capacity(usize::try_from(blobs).unwrap_or(0).saturating_add(1024));
    // The edges are read on a thread of their own while the blobs load, then added.
    let links = r.link_tables()?;
    let (blobs, rows) = std::thread::scope(|scope| {
        let reading = std::thread::Builder::new()
            .name("ocistore-load-edges".into())
            .spawn_scoped(scope, || LinkRows::read(&links));
        let blobs = r.for_each_blob_key(|d, rec| {
            view.add_blob_key(
                d,
                Node {
                    size: rec.size,
                    recorded_at: rec.recorded_at,
                    artifact_type: None,
                    found: rec.found,
                },
            );
        });
        let rows = match reading {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(Error::Index("the edge-loading thread failed".into()))),
            // No thread to spare: read them here.
            Err(_) => LinkRows::read(&links),
        };
        (blobs, rows)
    });
    blobs?;
    view.add_links(rows?);
    // The artifact type decides the policy, which matters for referrers only, and only when
    // the policy tells types apart.
    let names = if policy.is_uniform() {
        Vec::new()
    } else {
        view.referrer_names()
    };
    for d in names {
        view.set_artifact_type(&d, r.manifest(&d)?.and_then(|m| m.artifact_type));
    }
    r.for_each_tag(|tag, d| {
        if ReferrerTag::parse(tag).is_none() {
            view.add_tag(tag.to_owned(), d);
        }
    })?;
    r.for_each_untagged_key(|d| view.add_untagged_key(d))?;
    for p in r.pins()? {
        view.add_pin(&p);
    }
    Ok(view)
}

fn view_garbage(view: &View, p: &Params<'_>) -> (Vec<Removal>, u64) {
    let live = graph::mark(view, p);
    let garbage = view
        .garbage(&live, p)
        .into_iter()
        .map(|(digest, size, reason)| Removal {
            digest,
            size,
            reason,
        })
        .collect();
    (garbage, view.next_expiry(p))
}
