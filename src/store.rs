//! [`Store`]: opening, adopting, recovering, reading, and writing through [`Batch`]es.
//!
//! Order of steps (each one durable before the next):
//! 1. Content: staged in `.ocistore/ingest/`, fsynced, renamed into `blobs/`, directory fsynced
//!    ([`crate::layout::ingest`]).
//! 2. index.json, when tags or entries changed: replaced atomically
//!    ([`crate::layout::Layout::replace_file`]), and its fingerprint written into the transaction.
//! 3. The index transaction commits.
//!
//! A crash between 1 and 3 leaves unindexed blobs: the `unclean` mark, committed before the first
//! write of a session and cleared on close, makes the next open walk `blobs/` and index them. A
//! crash between 2 and 3 leaves an index.json that does not match the recorded fingerprint: the
//! next open reconciles it, which re-applies the tag changes the file already holds.

use std::collections::{BTreeMap, BTreeSet};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::Hasher as _;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use redb::{ConcurrencyMode, Database, ReadOnlyDatabase, ReadableDatabase, WriteTransaction};
use serde::Serialize;

use crate::catalog::{self, BlobRecord, Counts, ManifestRecord, Reader, Writer, meta};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::fasthash::{FastHasher, FastSet};
use crate::layout::index_json::{Entry, Fingerprint, IndexJson};
use crate::layout::ingest::{self, Expected, Staged};
use crate::layout::{Layout, sync_dir};
use crate::lock::WriterLock;
use crate::manifest;
use crate::referrers::{self, ReferrersIndex, ReferrersQuery};
use crate::refname::validate_tag;
use crate::scan;

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long a writer waits for another process to release the store.
    pub lock_timeout: Duration,
    /// Largest manifest accepted, in bytes (default 4 MiB).
    pub max_manifest_size: u64,
    /// Show a progress bar on stderr, when it is a terminal, while indexing a layout.
    pub progress: bool,
    /// List every manifest put with a `subject` in index.json, untagged (as oras does), so that
    /// other tools see referrers and their collectors keep them (default true).
    pub list_referrers: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            lock_timeout: Duration::from_secs(10),
            max_manifest_size: 4 << 20,
            progress: false,
            list_referrers: true,
        }
    }
}

/// What opening the store did beyond reading its index.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpenReport {
    /// Blobs indexed because the index was new (adoption of a layout) or the last writer crashed.
    pub indexed_blobs: u64,
    /// Whether the index was created by this open.
    pub created_index: bool,
    /// Whether the last writer did not close the store (crash recovery ran).
    pub recovered: bool,
    /// Temporary files removed from `.ocistore/ingest/` and from beside index.json.
    pub removed_temp_files: u64,
    /// Unlinks a collection had committed but not finished, done by this open.
    pub finished_unlinks: u64,
    /// Blobs the index recorded whose files another tool removed while the store was closed.
    /// They are no longer recorded as present; tags and entries naming them stay.
    pub removed_outside: Vec<String>,
    /// Changes to index.json made outside the store, taken in.
    pub reconciled: Option<ReconcileReport>,
    /// Files skipped while reading the layout, and why; unlinks left by a collection that this
    /// open could not finish (they stay recorded for the next collection or open).
    pub warnings: Vec<String>,
}

/// Tag and entry changes taken in from an index.json changed by another tool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Tags the other tool added.
    pub tags_added: Vec<String>,
    /// Tags the other tool moved to another digest.
    pub tags_moved: Vec<String>,
    /// Tags the other tool removed.
    pub tags_removed: Vec<String>,
    /// Untagged entries the other tool added.
    pub entries_added: u64,
    /// Untagged entries the other tool removed.
    pub entries_removed: u64,
    /// Tags changed by both sides, where the store's change was kept.
    pub conflicts: Vec<String>,
    /// Tags repeated in index.json: the last entry keeps the tag, the others stay untagged.
    pub repeated_tags: Vec<String>,
}

/// Options of a put.
#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// The content's media type. A manifest media type makes the content be parsed strictly as
    /// that manifest; without one, JSON that has a manifest's shape is recorded as a manifest.
    pub media_type: Option<String>,
    /// The digest the content must have (sha256 is computed when absent).
    pub digest: Option<Digest>,
    /// The exact size the content must have.
    pub size: Option<u64>,
}

/// The outcome of a put.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Put {
    /// The content's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type, when it is a manifest.
    pub media_type: Option<String>,
    /// True when the store already held it (nothing was written).
    pub existed: bool,
}

/// One index.json entry as the store lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListEntry {
    /// Its tag, if any.
    pub tag: Option<String>,
    /// Its digest.
    pub digest: Digest,
    /// Its media type, when known.
    pub media_type: Option<String>,
    /// Its size, when known.
    pub size: Option<u64>,
}

enum Db {
    Write(Database),
    Read(ReadOnlyDatabase),
}

impl Db {
    fn read(&self) -> Result<Reader> {
        let txn = match self {
            Db::Write(db) => db.begin_read()?,
            Db::Read(db) => db.begin_read()?,
        };
        Ok(Reader::new(txn))
    }

    fn write(&self) -> Result<WriteTransaction> {
        match self {
            Db::Write(db) => Ok(db.begin_write()?),
            Db::Read(_) => Err(Error::ReadOnly),
        }
    }
}

struct WriterState {
    _lock: WriterLock,
    /// Whether the `unclean` mark has been committed in this session.
    marked: Mutex<bool>,
}

/// An OCI image layout with its transactional index. `Send + Sync`: share one value (for
/// example in an `Arc`) between threads. Reads run on snapshots and never wait for writes.
///
/// ```
/// use ocistore::{Store, Options, PutOptions};
/// let dir = tempfile::tempdir()?;
/// let store = Store::init(dir.path(), &Options::default())?;
/// let layer = store.put(&mut &b"hello"[..], &PutOptions::default())?;
/// assert!(!layer.existed);
/// assert_eq!(store.read_all(&layer.digest)?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Store {
    layout: Layout,
    db: Db,
    options: Options,
    writer: Option<WriterState>,
    report: OpenReport,
    /// True while a collection runs: writes are then recorded in `CHANGED`.
    collecting: AtomicBool,
    /// Held by a collection from its start to its end (`Store::begin_collection`).
    collection: Mutex<()>,
    /// In-memory leases: content a multi-call push protects.
    leases: Mutex<HashMap<u64, HashSet<String>>>,
    next_lease: AtomicU64,
    /// Per-digest locks, striped: held by ingest from rename to commit, and by the sweeper
    /// around each unlink. Each guards the set of its digests whose unlink is pending: the
    /// sweeper adds a digest before committing its removal and unlinks the file only if it is
    /// still there; an ingest that publishes the digest again takes it out.
    stripes: Vec<Mutex<FastSet<String>>>,
    /// Prefix of this session's temporary files in `.ocistore/ingest/`.
    session: String,
    io_pool: OnceLock<rayon::ThreadPool>,
    /// A failpoint between a sweep's commit and its unlinks (tests drive races with it).
    sweep_hook: Mutex<Option<SweepHook>>,
}

/// Called with the digests a sweep chunk has just committed as removed, before their files are
/// unlinked.
pub type SweepHook = Arc<dyn Fn(&[String]) + Send + Sync>;

const STRIPES: usize = 1024;
/// Threads for the parallel fsyncs of an ingest batch: they wait on the disk, so more than the
/// cores help. (Unlinks have threads of their own, in `gc/unlink.rs`.)
const IO_THREADS: usize = 32;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.layout.root())
            .field("writable", &self.writer.is_some())
            .finish_non_exhaustive()
    }
}

const INDEX_FILE: &str = "index.redb";

impl Store {
    /// Creates a store: a new layout in an empty or missing directory, or the adoption of the
    /// layout already there (no byte of it is changed).
    pub fn init(root: impl AsRef<Path>, options: &Options) -> Result<Store> {
        let layout = Layout::new(root.as_ref());
        if !layout.exists() {
            layout.create()?;
        }
        Store::open(root, options)
    }

    /// Opens the store for writing, creating its index (by adopting the layout) if needed.
    /// Waits up to `options.lock_timeout` for another writer process.
    pub fn open(root: impl AsRef<Path>, options: &Options) -> Result<Store> {
        let layout = Layout::new(root.as_ref());
        layout.check()?;
        layout.create_private()?;
        let lock = WriterLock::acquire(&layout.private_dir().join("lock"), options.lock_timeout)?;
        let mut report = OpenReport {
            removed_temp_files: clean_ingest(&layout)?,
            ..OpenReport::default()
        };
        let db_path = layout.private_dir().join(INDEX_FILE);
        let mut carried_pins = Vec::new();
        if !db_path.exists() {
            build_index(&layout, &db_path, options, &mut report)?;
        }
        let mut db = open_index(&db_path)?;
        if schema_of(&db)?.is_some_and(|v| v < catalog::SCHEMA_VERSION) {
            // An index of an older version is a stale cache: rebuild it from the layout.
            carried_pins = catalog::pins_of_any_version(&db.begin_read()?)?;
            drop(db);
            let fresh = layout.private_dir().join("index.redb.rebuild");
            build_index(&layout, &fresh, options, &mut report)?;
            fs::rename(&fresh, &db_path).map_err(|e| Error::io("rename into", &db_path, e))?;
            sync_dir(&layout.private_dir())?;
            db = open_index(&db_path)?;
        }
        let mut store = Store::assemble(
            layout,
            Db::Write(db),
            options,
            Some(WriterState {
                _lock: lock,
                marked: Mutex::new(false),
            }),
            report,
        );
        store.check_schema()?;
        if !carried_pins.is_empty() {
            let txn = store.db.write()?;
            let w = Writer::new(&txn);
            for p in &carried_pins {
                w.set_pin(p, true)?;
            }
            drop(w);
            txn.commit()?;
        }
        store.recover()?;
        let pending = store.db.read()?.pending_batches()?;
        if !pending.is_empty() {
            store.mark_writing()?;
            let mut warnings = Vec::new();
            store.report.finished_unlinks = store.unlink_pending(&pending, &mut warnings)?;
            store.report.warnings.extend(warnings);
        }
        Ok(store)
    }

    /// Opens the store read-only. Works while a writer process has it open (the index is shared
    /// with it, and this handle sees its commits). Does no recovery and no reconciliation.
    pub fn open_read_only(root: impl AsRef<Path>, options: &Options) -> Result<Store> {
        let layout = Layout::new(root.as_ref());
        layout.check()?;
        let db_path = layout.private_dir().join(INDEX_FILE);
        if !db_path.exists() {
            return Err(Error::layout(
                layout.root(),
                "the layout has no ocistore index yet; open it for writing once (ocistore init)",
            ));
        }
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .open_read_only(&db_path)?;
        let store = Store::assemble(layout, Db::Read(db), options, None, OpenReport::default());
        store.check_schema()?;
        Ok(store)
    }

    /// Recreates the index from the layout alone, replacing the existing one.
    pub fn rebuild(root: impl AsRef<Path>, options: &Options) -> Result<Store> {
        let layout = Layout::new(root.as_ref());
        layout.check()?;
        layout.create_private()?;
        let mut report = OpenReport::default();
        {
            let _lock =
                WriterLock::acquire(&layout.private_dir().join("lock"), options.lock_timeout)?;
            let fresh = layout.private_dir().join("index.redb.rebuild");
            build_index(&layout, &fresh, options, &mut report)?;
            let db_path = layout.private_dir().join(INDEX_FILE);
            fs::rename(&fresh, &db_path).map_err(|e| Error::io("rename into", &db_path, e))?;
            sync_dir(&layout.private_dir())?;
        }
        let mut store = Store::open(root, options)?;
        store.report.created_index = true;
        store.report.indexed_blobs += report.indexed_blobs;
        store.report.warnings.extend(report.warnings);
        Ok(store)
    }

    fn assemble(
        layout: Layout,
        db: Db,
        options: &Options,
        writer: Option<WriterState>,
        report: OpenReport,
    ) -> Store {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Store {
            layout,
            db,
            options: options.clone(),
            writer,
            report,
            collecting: AtomicBool::new(false),
            collection: Mutex::new(()),
            leases: Mutex::new(HashMap::new()),
            next_lease: AtomicU64::new(1),
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(FastSet::default()))
                .collect(),
            session: format!("ingest-{}-{nanos}-", std::process::id()),
            io_pool: OnceLock::new(),
            sweep_hook: Mutex::new(None),
        }
    }

    /// Installs (or removes) a failpoint that runs between a sweep's commit and its unlinks.
    /// For tests that drive the push-versus-unlink race explicitly.
    #[doc(hidden)]
    pub fn set_sweep_hook(&self, hook: Option<SweepHook>) {
        *self.sweep_hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    pub(crate) fn run_sweep_hook(&self, removed: &[String]) {
        let hook = self
            .sweep_hook
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(h) = hook {
            h(removed);
        }
    }

    pub(crate) fn layout_ref(&self) -> &Layout {
        &self.layout
    }

    pub(crate) fn reader(&self) -> Result<Reader> {
        self.db.read()
    }

    pub(crate) fn write_txn(&self) -> Result<WriteTransaction> {
        self.db.write()
    }

    /// Whether this handle was opened with [`Store::open_read_only`].
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self.db, Db::Read(_))
    }

    /// Waits for the collection running in this process, if any, and holds the next one's
    /// place.
    pub(crate) fn one_collection(&self) -> MutexGuard<'_, ()> {
        self.collection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets whether a collection runs (see [`Store::collecting`]).
    pub(crate) fn set_collecting(&self, on: bool) {
        self.collecting.store(on, Ordering::SeqCst);
    }

    pub(crate) fn collecting(&self) -> bool {
        self.collecting.load(Ordering::SeqCst)
    }

    pub(crate) fn session_prefix(&self) -> &str {
        &self.session
    }

    /// The I/O threads, started on first use. Failing to start them (the system refuses new
    /// threads) is an error of the operation that needed them.
    pub(crate) fn io_pool(&self) -> Result<&rayon::ThreadPool> {
        if let Some(pool) = self.io_pool.get() {
            return Ok(pool);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(IO_THREADS)
            .thread_name(|i| format!("ocistore-io-{i}"))
            .build()
            .map_err(|e| {
                Error::io(
                    "start I/O threads for",
                    self.layout.root(),
                    std::io::Error::other(e),
                )
            })?;
        // A thread that got here first set its own pool: either will do.
        let _ = self.io_pool.set(pool);
        self.io_pool
            .get()
            .ok_or_else(|| Error::Index("the I/O thread pool was not kept".into()))
    }

    /// The stripe of a digest, from its text (validated where it entered the store), so that the
    /// sweep, which holds digests as the index's text, need not parse them again.
    fn stripe_index(digest: &str) -> usize {
        let mut h = FastHasher::default();
        h.write(digest.as_bytes());
        // The high bits: a multiplicative hash mixes those best.
        (h.finish() >> 32) as usize % STRIPES
    }

    /// The stripe lock of the digest `digest` (its text), with the stripe's pending unlinks.
    pub(crate) fn stripe(&self, digest: &str) -> MutexGuard<'_, FastSet<String>> {
        self.stripes[Store::stripe_index(digest)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Every digest some lease protects.
    pub(crate) fn leased(&self) -> HashSet<String> {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.values().flatten().cloned().collect()
    }

    /// Starts a lease: content put through it, or protected with it, is a root for every
    /// collection until the lease is dropped. Use one for a push made of several calls (blobs,
    /// then the manifest, then referrers), so that nothing it wrote is collected in between.
    pub fn lease(&self) -> Lease<'_> {
        let id = self.next_lease.fetch_add(1, Ordering::SeqCst);
        self.leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, HashSet::new());
        Lease { store: self, id }
    }

    fn protect(&self, lease: u64, digest: &Digest) {
        if let Some(set) = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&lease)
        {
            set.insert(digest.to_string());
        }
    }

    /// Before the session's first change to `blobs/`, commits the unclean mark that a clean
    /// close clears (with a fresh stamp of `blobs/`).
    pub(crate) fn mark_writing(&self) -> Result<()> {
        let w = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        let mut marked = w.marked.lock().unwrap_or_else(|p| p.into_inner());
        if !*marked {
            let txn = self.db.write()?;
            Writer::new(&txn).set_meta(meta::UNCLEAN, b"1")?;
            txn.commit()?;
            *marked = true;
        }
        Ok(())
    }

    fn check_schema(&self) -> Result<()> {
        let found = schema_in(&self.db.read()?);
        match found {
            Some(v) if v == catalog::SCHEMA_VERSION => Ok(()),
            Some(v) if v < catalog::SCHEMA_VERSION => Err(Error::Index(format!(
                "index schema version {v} is older than {}: open the store for writing once to rebuild it",
                catalog::SCHEMA_VERSION
            ))),
            Some(v) => Err(Error::SchemaTooNew {
                found: v,
                supported: catalog::SCHEMA_VERSION,
            }),
            None => Err(Error::Index(
                "index has no schema version: run `ocistore rebuild`".into(),
            )),
        }
    }

    /// Crash recovery and reconciliation with changes made while the store was closed.
    fn recover(&mut self) -> Result<()> {
        let reader = self.db.read()?;
        let unclean = reader.meta(meta::UNCLEAN)?.is_some();
        let fingerprint = reader
            .meta(meta::INDEX_JSON)?
            .and_then(|b| Fingerprint::decode(&b));
        drop(reader);
        let index_path = self.layout.index_json();
        let index_changed = match &fingerprint {
            Some(fp) => !fp.matches(&index_path)?,
            None => true,
        };
        let stamp = blobs_stamp(&self.layout)?;
        let blobs_changed = !unclean
            && self.db.read()?.meta(meta::BLOBS_STAMP)?.as_deref() != Some(stamp.as_bytes());
        if !unclean && !index_changed && !blobs_changed {
            return Ok(());
        }
        let txn = self.db.write()?;
        let w = Writer::new(&txn);
        if blobs_changed || unclean {
            // Another tool added or removed blobs while the store was closed, or a writer
            // crashed: compare the directory with the index, both ways.
            let mut warnings = Vec::new();
            let files = scan::list_blob_files(&self.layout, &mut warnings)?;
            let on_disk: HashSet<String> = files.iter().map(|(d, _)| d.to_string()).collect();
            let mut gone = Vec::new();
            w.for_each_blob_digest(|d| {
                if !on_disk.contains(d) {
                    gone.push(d.to_owned());
                }
            })?;
            for d in &gone {
                w.forget_blob(d)?;
            }
            // Files whose rows a collection removed are not unknown: their unlink is pending.
            let pending: HashSet<String> = w.pending()?.into_iter().collect();
            let unknown: Vec<_> = files
                .into_iter()
                .filter(|(d, _)| !pending.contains(d.as_str()))
                .filter(|(d, _)| w.blob(d.as_str()).ok().flatten().is_none())
                .collect();
            let (blobs, more) = scan::read_blobs(
                &self.layout,
                unknown,
                self.options.max_manifest_size,
                self.options.progress,
            );
            warnings.extend(more);
            self.report.indexed_blobs += insert_scanned(&w, &self.layout, &blobs, true)?;
            self.report.warnings.extend(warnings);
            self.report.removed_outside = gone;
            w.set_meta(meta::BLOBS_STAMP, stamp.as_bytes())?;
        }
        if unclean {
            self.report.recovered = true;
            w.remove_meta(meta::UNCLEAN)?;
            w.set_meta(meta::ORPHAN_WALK, b"1")?;
        }
        if index_changed {
            let (theirs, fp) = IndexJson::read(&index_path)?;
            let base = current_entries(&w)?;
            let r = merge_index(&w, &self.layout, &self.options, &base, &theirs)?;
            w.set_meta(meta::INDEX_JSON, &fp.encode())?;
            w.set_meta(meta::ORPHAN_WALK, b"1")?;
            self.report.reconciled = Some(r);
        }
        drop(w);
        txn.commit()?;
        Ok(())
    }

    /// What opening the store did.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The layout's root directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Starts a batch: many writes in one index transaction, one fsync of the index, and at most
    /// one rewrite of index.json. Nothing is visible until [`Batch::commit`]; dropping the batch
    /// discards it and its staged files.
    pub fn batch(&self) -> Result<Batch<'_>> {
        self.mark_writing()?;
        let txn = self.db.write()?;
        // Read after the write lock is held: a collection that started earlier committed its
        // start first, so this batch's writes are recorded for it.
        let track = self.collecting();
        Ok(Batch {
            store: self,
            txn,
            track,
            staged: Vec::new(),
            index_dirty: false,
            rooted: Vec::new(),
        })
    }

    /// Stores content from `reader` and returns its digest. A duplicate costs nothing when its
    /// digest is given; otherwise it is read and hashed, and nothing is written.
    ///
    /// The content is written and fsynced before the index's write lock is taken, so puts from
    /// several threads overlap their I/O.
    pub fn put(&self, reader: &mut dyn Read, opts: &PutOptions) -> Result<Put> {
        self.put_leased(reader, opts, None)
    }

    fn put_leased(
        &self,
        reader: &mut dyn Read,
        opts: &PutOptions,
        lease: Option<u64>,
    ) -> Result<Put> {
        if self.writer.is_none() {
            return Err(Error::ReadOnly);
        }
        if let (Some(l), Some(d)) = (lease, &opts.digest) {
            self.protect(l, d);
        }
        if let Some(put) = self.existing(opts)? {
            return Ok(put);
        }
        let mut staged = self.stage(reader, opts)?;
        if let Some(l) = lease {
            self.protect(l, &staged.digest);
        }
        staged.sync()?;
        let mut b = self.batch()?;
        let put = b.add(staged, opts.media_type.as_deref())?;
        b.commit()?;
        Ok(put)
    }

    fn existing(&self, opts: &PutOptions) -> Result<Option<Put>> {
        let Some(d) = &opts.digest else {
            return Ok(None);
        };
        if self.collecting() {
            // A running collection may have this digest among its garbage: record the put in a
            // write transaction, which either precedes the sweep's (and keeps the digest) or
            // follows it (and finds the digest gone, so it is ingested again).
            let txn = self.db.write()?;
            let w = Writer::tracking(&txn, true);
            if w.blob(d.as_str())?.is_none() {
                return Ok(None);
            }
            self.refuse_collected(&w, &[d.to_string()])?;
            w.touch(d.as_str())?;
            drop(w);
            txn.commit()?;
        }
        let r = self.db.read()?;
        let Some(rec) = r.blob(d.as_str())? else {
            return Ok(None);
        };
        if let Some(size) = opts.size
            && size != rec.size
        {
            return Err(Error::SizeMismatch {
                digest: d.to_string(),
                expected: size,
                actual: rec.size,
            });
        }
        let media_type = r.manifest(d.as_str())?.map(|m| m.media_type);
        Ok(Some(Put {
            digest: d.clone(),
            size: rec.size,
            media_type,
            existed: true,
        }))
    }

    fn stage(&self, reader: &mut dyn Read, opts: &PutOptions) -> Result<Staged> {
        let declared_manifest = opts
            .media_type
            .as_deref()
            .and_then(manifest::classify)
            .is_some();
        if declared_manifest
            && let Some(size) = opts.size
            && size > self.options.max_manifest_size
        {
            return Err(Error::ManifestTooLarge {
                size,
                limit: self.options.max_manifest_size,
            });
        }
        if let Some(d) = &opts.digest
            && !d.is_verifiable()
            && opts.size.is_none()
        {
            return Err(Error::UnsupportedAlgorithm {
                digest: d.to_string(),
                algorithm: d.algorithm_name().to_owned(),
                action: "store content without a size under",
            });
        }
        let expected = Expected {
            digest: opts.digest.clone(),
            size: opts.size,
        };
        ingest::stage(
            &self.layout,
            &self.session,
            reader,
            &expected,
            self.options.max_manifest_size,
        )
    }

    /// Points `tag` at the manifest `reference` names (a tag or a digest).
    pub fn tag(&self, reference: &str, tag: &str) -> Result<Digest> {
        let mut b = self.batch()?;
        let d = b.tag(reference, tag)?;
        b.commit()?;
        Ok(d)
    }

    /// Removes `tag`; returns the digest it named.
    pub fn untag(&self, tag: &str) -> Result<Digest> {
        let mut b = self.batch()?;
        let d = b.untag(tag)?;
        b.commit()?;
        Ok(d)
    }

    /// Resolves a tag or a digest. A string that is both a tag in the store and a valid digest
    /// names the tag's target.
    pub fn resolve(&self, reference: &str) -> Result<Digest> {
        resolve_with(|t| Ok(self.db.read()?.tag(t)?.map(|(d, _)| d)), reference)
    }

    /// What the index records of a blob, if the store holds it.
    pub fn blob_info(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        self.db.read()?.blob(digest.as_str())
    }

    /// What the index records of a manifest, if the store holds it.
    pub fn manifest_info(&self, digest: &Digest) -> Result<Option<ManifestRecord>> {
        self.db.read()?.manifest(digest.as_str())
    }

    /// The children (strong edges) of a manifest.
    pub fn children(&self, digest: &Digest) -> Result<Vec<Digest>> {
        self.db
            .read()?
            .children(digest.as_str())?
            .iter()
            .map(|s| catalog::stored_digest(s))
            .collect()
    }

    /// Opens a blob the store holds, checking that the file still has the recorded size.
    pub fn open_blob(&self, digest: &Digest) -> Result<fs::File> {
        let rec = self
            .blob_info(digest)?
            .ok_or_else(|| Error::NotFound(format!("blob {digest}")))?;
        let file = self.layout.open_blob(digest)?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", self.layout.blob_path(digest), e))?
            .len();
        if len != rec.size {
            return Err(Error::SizeMismatch {
                digest: digest.to_string(),
                expected: rec.size,
                actual: len,
            });
        }
        Ok(file)
    }

    /// Reads a whole blob into memory, checking its digest when the algorithm is registered.
    pub fn read_all(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", self.layout.blob_path(digest), e))?;
        if let Some(mut h) = Hasher::new(digest.algorithm()) {
            h.update(&bytes);
            let actual = h.finish();
            if actual != *digest {
                return Err(Error::DigestMismatch {
                    expected: digest.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok(bytes)
    }

    /// Every index.json entry the store keeps: tags first (by name), then untagged entries.
    pub fn list(&self) -> Result<Vec<ListEntry>> {
        let r = self.db.read()?;
        let mut out = Vec::new();
        for row in r.tags()? {
            out.push(list_entry(&Entry::from_bytes(&row.entry)?, Some(row.tag)));
        }
        // An untagged entry may still carry a ref name the store does not take as a tag (outside
        // the grammar, or repeated): it is listed untagged, as it is kept.
        for (_, e) in r.untagged()? {
            out.push(list_entry(&Entry::from_bytes(&e)?, None));
        }
        Ok(out)
    }

    /// The tags naming `digest`.
    pub fn tags_of(&self, digest: &Digest) -> Result<Vec<String>> {
        self.db.read()?.tags_of(digest.as_str())
    }

    /// The referrers of `subject`, as an OCI referrers response, answered from the index alone.
    ///
    /// ```
    /// # use ocistore::{Store, Options, ReferrersQuery};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::init(dir.path(), &Options::default())?;
    /// let nothing = ocistore::Digest::sha256(b"not here");
    /// let answer = store.referrers(&nothing, &ReferrersQuery::default())?;
    /// assert!(answer.manifests.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn referrers(&self, subject: &Digest, query: &ReferrersQuery) -> Result<ReferrersIndex> {
        referrers::query(&self.db.read()?, subject, query)
    }

    /// Table sizes.
    pub fn stats(&self) -> Result<Counts> {
        self.db.read()?.table_sizes()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let Some(w) = &self.writer else { return };
        if !*w.marked.lock().unwrap_or_else(|p| p.into_inner()) {
            return;
        }
        // A clean close: the next open need not walk blobs/. If this fails the mark stays, and
        // the next open merely does a recovery it did not need.
        let Ok(txn) = self.db.write() else { return };
        let w = Writer::new(&txn);
        if w.remove_meta(meta::UNCLEAN).is_ok() {
            drop(w);
            let _ = txn.commit();
        }
    }
}

fn list_entry(e: &Entry, tag: Option<String>) -> ListEntry {
    ListEntry {
        tag,
        digest: e.digest.clone(),
        media_type: e.media_type().map(str::to_owned),
        size: e.object.get("size").and_then(serde_json::Value::as_u64),
    }
}

fn resolve_with(
    lookup: impl Fn(&str) -> Result<Option<String>>,
    reference: &str,
) -> Result<Digest> {
    if validate_tag(reference).is_ok()
        && let Some(d) = lookup(reference)?
    {
        return catalog::stored_digest(&d);
    }
    match Digest::parse(reference) {
        Ok(d) => Ok(d),
        // `sha256:ABC…` is a valid tag name too; name the digest problem when it meant a digest.
        Err(e) if looks_like_digest(reference) => Err(e),
        Err(_) if validate_tag(reference).is_ok() => {
            Err(Error::NotFound(format!("tag {reference:?}")))
        }
        Err(e) => Err(e),
    }
}

/// Whether `reference` starts with a registered algorithm name, in any case, and a colon.
fn looks_like_digest(reference: &str) -> bool {
    reference.split_once(':').is_some_and(|(alg, _)| {
        ["sha256", "sha512", "blake3"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(alg))
    })
}

/// Opens the index for writing, through the failpoints of [`crate::fault`].
fn open_index(path: &Path) -> Result<Database> {
    let backend = crate::fault::IndexBackend::open(path).map_err(|e| Error::io("open", path, e))?;
    Ok(Database::builder()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .create_with_backend(backend)?)
}

fn schema_in(r: &Reader) -> Option<u64> {
    r.meta(meta::SCHEMA)
        .ok()
        .flatten()
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_le_bytes)
}

fn schema_of(db: &Database) -> Result<Option<u64>> {
    Ok(schema_in(&Reader::new(db.begin_read()?)))
}

/// The modification times of `blobs/` and of each `blobs/<alg>/`: adding or removing a blob
/// changes its directory's.
pub(crate) fn blobs_stamp(layout: &Layout) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let dir = layout.blobs_dir();
    let stamp = |p: &Path| -> Result<String> {
        let m = fs::symlink_metadata(p).map_err(|e| Error::io("stat", p, e))?;
        Ok(format!("{}.{}", m.mtime(), m.mtime_nsec()))
    };
    let mut parts = vec![format!("/{}", stamp(&dir)?)];
    for e in fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))? {
        let e = e.map_err(|e| Error::io("read", &dir, e))?;
        parts.push(format!(
            "{}={}",
            e.file_name().to_string_lossy(),
            stamp(&e.path())?
        ));
    }
    parts.sort();
    Ok(parts.join(","))
}

/// Removes what a crashed writer left in `.ocistore/ingest/`, and the temporary files of an
/// index.json rewrite it did not finish (`.ocistore-tmp-*` beside index.json). Called with the
/// writer lock held.
fn clean_ingest(layout: &Layout) -> Result<u64> {
    let dir = layout.ingest_dir();
    let mut n = 0;
    for e in fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))? {
        let e = e.map_err(|e| Error::io("read", &dir, e))?;
        crate::layout::unlink(&e.path()).map_err(|err| Error::io("remove", e.path(), err))?;
        n += 1;
    }
    let root = layout.root();
    for e in fs::read_dir(root).map_err(|e| Error::io("read", root, e))? {
        let e = e.map_err(|e| Error::io("read", root, e))?;
        let temp = e
            .file_name()
            .to_string_lossy()
            .starts_with(".ocistore-tmp-");
        if temp && e.file_type().is_ok_and(|t| t.is_file()) {
            crate::layout::unlink(&e.path()).map_err(|err| Error::io("remove", e.path(), err))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Creates an index at `path` from the layout alone, atomically (built beside, then renamed).
fn build_index(
    layout: &Layout,
    path: &Path,
    options: &Options,
    report: &mut OpenReport,
) -> Result<()> {
    let tmp = path.with_extension("building");
    let _ = fs::remove_file(&tmp);
    let stamp = blobs_stamp(layout)?;
    let scanned = scan::scan(layout, options.max_manifest_size, options.progress)?;
    let (theirs, fp) = IndexJson::read(&layout.index_json())?;
    {
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .create(&tmp)?;
        let txn = db.begin_write()?;
        let w = Writer::new(&txn);
        w.migrate()?;
        report.indexed_blobs += insert_scanned(&w, layout, &scanned.blobs, false)?;
        let base = current_entries(&w)?;
        let r = merge_index(&w, layout, options, &base, &theirs)?;
        w.set_meta(meta::INDEX_JSON, &fp.encode())?;
        w.set_meta(meta::BLOBS_STAMP, stamp.as_bytes())?;
        if !r.repeated_tags.is_empty() {
            report.warnings.push(format!(
                "index.json repeats tags {:?}: the last entry of each keeps it",
                r.repeated_tags
            ));
        }
        drop(w);
        txn.commit()?;
    }
    fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e))?;
    sync_dir(&layout.private_dir())?;
    report.created_index = true;
    report.warnings.extend(scanned.warnings);
    Ok(())
}

/// Records scanned blobs. `found` marks blobs a walk found after the layout was indexed: their
/// first-recorded time is their file's, so that the grace period counts from when they were
/// written.
pub(crate) fn insert_scanned(
    w: &Writer<'_>,
    layout: &Layout,
    blobs: &[scan::ScannedBlob],
    found: bool,
) -> Result<u64> {
    let mut n = 0;
    for b in blobs {
        let mut rec = BlobRecord::new(b.size, b.parsed.is_some(), b.verified);
        if found {
            rec.found = true;
            rec.recorded_at = fs::symlink_metadata(layout.blob_path(&b.digest))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(rec.recorded_at, |d| d.as_secs());
        }
        if w.insert_blob(b.digest.as_str(), rec)? {
            n += 1;
        }
        if let Some(p) = &b.parsed {
            w.insert_manifest(b.digest.as_str(), b.size, p)?;
        }
    }
    Ok(n)
}

/// The index.json entries a catalog state stands for.
#[derive(Clone, Debug, Default)]
struct Entries {
    tags: BTreeMap<String, (String, Vec<u8>)>,
    untagged: BTreeSet<(String, Vec<u8>)>,
}

fn current_entries(w: &Writer<'_>) -> Result<Entries> {
    Ok(Entries {
        tags: w
            .tags()?
            .into_iter()
            .map(|r| (r.tag, (r.digest, r.entry)))
            .collect(),
        untagged: w.untagged()?.into_iter().collect(),
    })
}

fn reader_entries(r: &Reader) -> Result<Entries> {
    Ok(Entries {
        tags: r
            .tags()?
            .into_iter()
            .map(|r| (r.tag, (r.digest, r.entry)))
            .collect(),
        untagged: r.untagged()?.into_iter().collect(),
    })
}

/// Three-way merge of index.json entries: `base` is what the store last wrote, the writer's
/// state is the store's side ("ours"), `theirs` is the file as another tool left it. A change
/// made by only one side is taken; where both changed a tag, the store's change wins and the
/// conflict is reported. Nothing else is dropped. Digests the other side introduced are indexed
/// from the layout.
fn merge_index(
    w: &Writer<'_>,
    layout: &Layout,
    options: &Options,
    base: &Entries,
    theirs: &IndexJson,
) -> Result<ReconcileReport> {
    let ours = current_entries(w)?;
    let (their_tags, their_untagged, repeated) = theirs.split();
    let mut report = ReconcileReport {
        repeated_tags: repeated,
        ..ReconcileReport::default()
    };
    let theirs_tags: BTreeMap<String, (String, Vec<u8>)> = their_tags
        .iter()
        .map(|(t, e)| (t.clone(), (e.digest.to_string(), e.to_bytes())))
        .collect();
    let names: BTreeSet<&String> = base
        .tags
        .keys()
        .chain(ours.tags.keys())
        .chain(theirs_tags.keys())
        .collect();
    for name in names {
        let (b, o, t) = (
            base.tags.get(name),
            ours.tags.get(name),
            theirs_tags.get(name),
        );
        if t == b || o == t {
            continue;
        }
        if o != b {
            report.conflicts.push(name.clone());
            continue;
        }
        match t {
            None => {
                w.remove_tag(name)?;
                report.tags_removed.push(name.clone());
            }
            Some((digest, entry)) => {
                let d = catalog::stored_digest(digest)?;
                index_from_layout(w, layout, options, &d, their_tags[name].media_type())?;
                w.set_tag(name, digest, entry)?;
                if o.is_some() {
                    report.tags_moved.push(name.clone());
                } else {
                    report.tags_added.push(name.clone());
                }
            }
        }
    }
    let theirs_untagged: BTreeSet<(String, Vec<u8>)> = their_untagged
        .iter()
        .map(|e| (e.digest.to_string(), e.to_bytes()))
        .collect();
    for added in theirs_untagged.difference(&base.untagged) {
        if !ours.untagged.contains(added) {
            let d = catalog::stored_digest(&added.0)?;
            let e = Entry::from_bytes(&added.1)?;
            index_from_layout(w, layout, options, &d, e.media_type())?;
            w.add_untagged(&added.0, &added.1)?;
            report.entries_added += 1;
        }
    }
    for removed in base.untagged.difference(&theirs_untagged) {
        if ours.untagged.contains(removed) {
            w.remove_untagged_entry(&removed.0, &removed.1)?;
            report.entries_removed += 1;
        }
    }
    let extra = serde_json::to_vec(&theirs.extra).map_err(|e| Error::Index(e.to_string()))?;
    w.set_meta(meta::INDEX_EXTRA, &extra)?;
    Ok(report)
}

/// Indexes `digest` and everything below it from files already in the layout (content another
/// tool wrote). Missing files are left alone: layouts may be sparse.
fn index_from_layout(
    w: &Writer<'_>,
    layout: &Layout,
    options: &Options,
    digest: &Digest,
    media_type: Option<&str>,
) -> Result<()> {
    let mut stack = vec![(digest.clone(), media_type.map(str::to_owned))];
    while let Some((d, mt)) = stack.pop() {
        if w.blob(d.as_str())?.is_some() {
            continue;
        }
        let file = match layout.open_blob(&d) {
            Ok(f) => f,
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let mut expected = Expected {
            digest: Some(d.clone()),
            size: None,
        };
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat", layout.blob_path(&d), e))?
            .len();
        expected.size = Some(size);
        let mut bytes = Vec::new();
        let keep = if size <= options.max_manifest_size {
            size as usize
        } else {
            0
        };
        let verified = if keep > 0 {
            file.take(keep as u64)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io("read", layout.blob_path(&d), e))?;
            match Hasher::new(d.algorithm()) {
                Some(mut h) => {
                    h.update(&bytes);
                    if h.finish() != d {
                        // Content that does not match its name is not trusted: record nothing.
                        continue;
                    }
                    true
                }
                None => false,
            }
        } else {
            false
        };
        let parsed = if keep > 0 {
            manifest::parse(&bytes, mt.as_deref()).ok().flatten()
        } else {
            None
        };
        w.insert_blob(
            d.as_str(),
            BlobRecord::new(size, parsed.is_some(), verified),
        )?;
        if let Some(p) = parsed {
            w.insert_manifest(d.as_str(), size, &p)?;
            for c in &p.children {
                stack.push((c.digest.clone(), c.media_type.clone()));
            }
        }
    }
    Ok(())
}

/// A set of writes that commit together. See [`Store::batch`].
pub struct Batch<'s> {
    store: &'s Store,
    txn: WriteTransaction,
    /// Whether a collection is running: writes are recorded for its recheck.
    track: bool,
    staged: Vec<Staged>,
    index_dirty: bool,
    /// Digests this batch makes reachable: its manifests and what it tags or lists.
    rooted: Vec<String>,
}

impl Batch<'_> {
    fn writer(&self) -> Writer<'_> {
        Writer::tracking(&self.txn, self.track)
    }

    /// Stores content from `reader` (see [`Store::put`]). The file is fsynced at commit, together
    /// with the batch's other files.
    pub fn put(&mut self, reader: &mut dyn Read, opts: &PutOptions) -> Result<Put> {
        if let Some(d) = &opts.digest {
            let w = self.writer();
            if let Some(rec) = w.blob(d.as_str())? {
                return Ok(Put {
                    digest: d.clone(),
                    size: rec.size,
                    media_type: w.manifest(d.as_str())?.map(|m| m.media_type),
                    existed: true,
                });
            }
        }
        let staged = self.store.stage(reader, opts)?;
        self.add(staged, opts.media_type.as_deref())
    }

    fn add(&mut self, staged: Staged, media_type: Option<&str>) -> Result<Put> {
        let w = self.writer();
        let digest = staged.digest.clone();
        if let Some(rec) = w.blob(digest.as_str())? {
            return Ok(Put {
                media_type: w.manifest(digest.as_str())?.map(|m| m.media_type),
                digest,
                size: rec.size,
                existed: true,
            });
        }
        let parsed = match &staged.bytes {
            Some(bytes) => manifest::parse(bytes, media_type).map_err(|e| match e {
                Error::InvalidManifest { reason, .. } => {
                    Error::manifest(Some(digest.as_str()), reason)
                }
                e => e,
            })?,
            None if media_type.and_then(manifest::classify).is_some() => {
                return Err(Error::ManifestTooLarge {
                    size: staged.size,
                    limit: self.store.options.max_manifest_size,
                });
            }
            None => None,
        };
        w.insert_blob(
            digest.as_str(),
            BlobRecord::new(staged.size, parsed.is_some(), staged.verified),
        )?;
        let mut listed = false;
        if let Some(p) = &parsed {
            w.insert_manifest(digest.as_str(), staged.size, p)?;
            if p.subject.is_some() && self.store.options.list_referrers {
                // Listed in index.json, untagged, as oras does: other tools that read or collect
                // the layout (umoci gc, skopeo) then see the referrer and keep its content.
                let mut entry = Entry::new(&digest, &p.media_type, staged.size, None);
                if let Some(at) = &p.artifact_type {
                    entry
                        .object
                        .insert("artifactType".into(), at.clone().into());
                }
                w.add_untagged(digest.as_str(), &entry.to_bytes())?;
                listed = true;
            }
        }
        let put = Put {
            digest,
            size: staged.size,
            media_type: parsed.map(|p| p.media_type),
            existed: false,
        };
        drop(w);
        if put.media_type.is_some() {
            self.rooted.push(put.digest.to_string());
        }
        self.index_dirty |= listed;
        self.staged.push(staged);
        Ok(put)
    }

    /// Points `tag` at the manifest `reference` names.
    pub fn tag(&mut self, reference: &str, tag: &str) -> Result<Digest> {
        validate_tag(tag)?;
        let w = self.writer();
        let digest = resolve_with(|t| Ok(w.tag(t)?.map(|(d, _)| d)), reference)?;
        let Some(m) = w.manifest(digest.as_str())? else {
            return Err(match w.blob(digest.as_str())? {
                Some(_) => Error::NotAManifest {
                    digest: digest.to_string(),
                    media_type: "unknown (not parsed as a manifest)".into(),
                },
                None => Error::NotFound(format!("manifest {digest}")),
            });
        };
        let entry = match w.tag(tag)? {
            Some((d, e)) if d == digest.as_str() => e,
            _ => Entry::new(&digest, &m.media_type, m.size, Some(tag)).to_bytes(),
        };
        w.set_tag(tag, digest.as_str(), &entry)?;
        drop(w);
        self.index_dirty = true;
        self.rooted.push(digest.to_string());
        Ok(digest)
    }

    /// Adds an index.json entry, tagged or not, keeping the fields it carries (used by import).
    pub fn add_entry(&mut self, entry: &Entry) -> Result<()> {
        let w = self.writer();
        if w.manifest(entry.digest.as_str())?.is_none() {
            return Err(Error::NotFound(format!("manifest {}", entry.digest)));
        }
        match &entry.tag {
            Some(t) => {
                validate_tag(t)?;
                w.set_tag(t, entry.digest.as_str(), &entry.to_bytes())?;
            }
            None => w.add_untagged(entry.digest.as_str(), &entry.to_bytes())?,
        }
        drop(w);
        self.index_dirty = true;
        self.rooted.push(entry.digest.to_string());
        Ok(())
    }

    /// Removes `tag`; returns the digest it named.
    pub fn untag(&mut self, tag: &str) -> Result<Digest> {
        let w = self.writer();
        let d = w
            .remove_tag(tag)?
            .ok_or_else(|| Error::NotFound(format!("tag {tag:?}")))?;
        drop(w);
        self.index_dirty = true;
        catalog::stored_digest(&d)
    }

    /// Publishes the staged files (fsynced in parallel, renamed, directories fsynced), rewrites
    /// index.json if an entry changed, and commits the index.
    pub fn commit(mut self) -> Result<()> {
        if !self.rooted.is_empty() {
            self.store.refuse_collected(&self.writer(), &self.rooted)?;
        }
        if self.index_dirty {
            // Before any file is published: an index.json another tool left unreadable fails
            // the commit with nothing written.
            self.store.take_in_index_json(&self.writer())?;
        }
        let store = self.store;
        let layout = &store.layout;
        Staged::sync_batch(layout, &mut self.staged, store.io_pool()?)?;
        // From rename to commit, hold the stripe locks of the published digests, so that a
        // sweeper with an older unlink pending for one of them sees it indexed and leaves it.
        let mut stripes: Vec<usize> = self
            .staged
            .iter()
            .map(|s| Store::stripe_index(s.digest.as_str()))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut held: Vec<MutexGuard<'_, FastSet<String>>> = stripes
            .iter()
            .map(|&i| store.stripes[i].lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut dirs = BTreeSet::new();
        let mut published = Vec::with_capacity(self.staged.len());
        for s in self.staged.drain(..) {
            published.push(s.digest.clone());
            dirs.insert(s.publish(layout)?);
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        if !dirs.is_empty() {
            // The store's own change to blobs/: a later difference is another tool's.
            self.writer()
                .set_meta(meta::BLOBS_STAMP, blobs_stamp(layout)?.as_bytes())?;
        }
        if self.index_dirty {
            self.store.render_index_json(&self.writer())?;
        }
        self.txn.commit()?;
        // Indexed again: an unlink still pending for any of these digests must not happen.
        for d in &published {
            if let Ok(i) = stripes.binary_search(&Store::stripe_index(d.as_str())) {
                held[i].remove(d.as_str());
            }
        }
        Ok(())
    }
}

impl Store {
    /// Takes into the transaction any change another tool made to index.json since the store
    /// last wrote it (again, harmlessly, if already taken in).
    fn take_in_index_json(&self, w: &Writer<'_>) -> Result<()> {
        let path = self.layout.index_json();
        let fp = w
            .meta(meta::INDEX_JSON)?
            .and_then(|b| Fingerprint::decode(&b));
        if !fp.as_ref().map_or(Ok(false), |fp| fp.matches(&path))? && path.exists() {
            let (theirs, _) = IndexJson::read(&path)?;
            let base = reader_entries(&self.db.read()?)?;
            merge_index(w, &self.layout, &self.options, &base, &theirs)?;
        }
        Ok(())
    }

    /// Rewrites index.json from the transaction's state, first taking in any change another
    /// tool made to the file since the store last wrote it.
    pub(crate) fn write_index_json(&self, w: &Writer<'_>) -> Result<()> {
        self.take_in_index_json(w)?;
        self.render_index_json(w)
    }

    /// Rewrites index.json from the transaction's state, which has already taken in the file's
    /// changes ([`Store::take_in_index_json`]).
    fn render_index_json(&self, w: &Writer<'_>) -> Result<()> {
        let path = self.layout.index_json();
        let extra = match w.meta(meta::INDEX_EXTRA)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| Error::Index(e.to_string()))?,
            None => Default::default(),
        };
        // Entries are kept as their JSON text, checked when they were stored.
        let mut entries: Vec<Vec<u8>> = w.untagged()?.into_iter().map(|(_, e)| e).collect();
        entries.extend(w.tags()?.into_iter().map(|row| row.entry));
        let bytes = IndexJson::render(&extra, &entries);
        self.layout.replace_file(&path, &bytes)?;
        w.set_meta(meta::INDEX_JSON, &Fingerprint::of(&path, &bytes)?.encode())?;
        Ok(())
    }
}

/// A lease: see [`Store::lease`]. Dropping it releases its protection.
pub struct Lease<'s> {
    store: &'s Store,
    id: u64,
}

impl Lease<'_> {
    /// Puts content (see [`Store::put`]) and protects it for the life of the lease.
    pub fn put(&self, reader: &mut dyn Read, opts: &PutOptions) -> Result<Put> {
        self.store.put_leased(reader, opts, Some(self.id))
    }

    /// Protects content already in the store (or about to be put by other means).
    pub fn protect(&self, digest: &Digest) {
        self.store.protect(self.id, digest);
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.store
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}
