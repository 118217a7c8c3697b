//! SIGKILL at random moments during a random mixed workload: after every kill, reopening the
//! store (which runs recovery) loses nothing that was committed and is still rooted, leaves no
//! temporary file, keeps the index, `blobs/` and index.json in agreement, and a collection runs
//! again without losing anything live.
//!
//! The child is this test binary run again with `--ignored --exact helper_crash_workload`. It
//! runs a seeded random sequence of operations against the store (single puts and batches of
//! blobs and manifests, indexes, referrers with a `subject`, cosign `sha256-<hex>.sig` tags, tag,
//! untag, delete by tag and by digest, collections with every strategy, imports from a small
//! source layout) until it is killed. Around each operation it appends a line to a journal and
//! fsyncs it: `begin`, with what the operation may change, before it starts; `done` (or `failed`)
//! after it returns. The parent replays the journal into a model of what must survive:
//!
//! - committed tags (not later untagged or deleted) resolve to their manifest, and the manifest
//!   and everything below it are present with bytes that hash to their digests;
//! - committed referrers of live manifests, and cosign tags of live subjects, survive with them;
//! - the tags other than cosign links are exactly those the journal says;
//! - the operation in flight at the kill either happened (all of its tag changes, for a batch) or
//!   did not; whichever it was, nothing else changed.
//!
//! Each round runs a new child on the same store, so the checks see many interrupted states.
//! `OCISTORE_CRASH_KILLS=N` sets the number of kills (default 200), `OCISTORE_CRASH_SEED=S` the
//! seed (printed on failure, with the round and the store, which is then kept).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, REF_NAME, SIGNATURE_TYPE,
    descriptor,
};
use ocistore::gc::{DeleteOptions, GcOptions, Strategy};
use ocistore::verify::VerifyOptions;
use ocistore::{
    Digest, Error, LinkKind, Options, Put, PutOptions, ReferrerTag, ReferrersQuery, Store,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const ENV_STORE: &str = "OCISTORE_CRASH_STORE";
const ENV_JOURNAL: &str = "OCISTORE_CRASH_JOURNAL";
const ENV_SOURCE: &str = "OCISTORE_CRASH_SOURCE";
const ENV_CHILD_SEED: &str = "OCISTORE_CRASH_CHILD_SEED";
const ENV_ROUND: &str = "OCISTORE_CRASH_ROUND";

const DEFAULT_SEED: u64 = 0x0c15_70e5_eed5_2024;
const DEFAULT_KILLS: usize = 200;
/// Layers shared between images (and with the source layout).
const SHARED_LAYERS: usize = 12;
/// Tag names the workload moves between manifests.
const TAG_POOL: usize = 10;
const SIG_PAYLOAD: &str = "application/vnd.example.signature.payload";

// ---------------------------------------------------------------------------------------------
// Random numbers (splitmix64: the sequence depends on the seed alone).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The journal.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Phase {
    /// The child opened the store; `tags` lists every tag it found.
    Opened,
    Begin,
    Done,
    Failed,
}

/// One journal line. A `begin` line says what the operation may change; `done` and `failed`
/// lines name the operation by `seq`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rec {
    seq: u64,
    phase: Phase,
    #[serde(default)]
    op: String,
    /// All of the tag changes happen in one commit.
    #[serde(default)]
    atomic: bool,
    /// Tag changes: the new target, or `None` for a removal.
    #[serde(default)]
    tags: Vec<(String, Option<String>)>,
    /// Manifests written, with their direct children.
    #[serde(default)]
    manifests: Vec<(String, Vec<String>)>,
    /// Referrers written, with the subject their `subject` field names.
    #[serde(default)]
    refs: Vec<(String, String)>,
    /// Digests a delete removes.
    #[serde(default)]
    removes: Vec<String>,
    /// A collection.
    #[serde(default)]
    gc: bool,
    /// What a collection removed (on `done`).
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    error: Option<String>,
    /// An error the workload does not expect (the parent fails the test on it).
    #[serde(default)]
    unexpected: bool,
}

impl Rec {
    fn begin(op: &str) -> Rec {
        Rec {
            seq: 0,
            phase: Phase::Begin,
            op: op.to_owned(),
            atomic: false,
            tags: Vec::new(),
            manifests: Vec::new(),
            refs: Vec::new(),
            removes: Vec::new(),
            gc: false,
            removed: Vec::new(),
            error: None,
            unexpected: false,
        }
    }
}

struct Journal {
    file: File,
}

impl Journal {
    fn create(path: &Path) -> Journal {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        Journal { file }
    }

    /// Appends one line and makes it durable.
    fn append(&mut self, rec: &Rec) {
        let mut line = serde_json::to_vec(rec).unwrap();
        line.push(b'\n');
        self.file.write_all(&line).unwrap();
        self.file.sync_data().unwrap();
    }
}

/// The complete lines of a journal (a line cut by the kill is ignored).
fn read_journal(path: &Path) -> Result<Vec<Rec>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("read {}: {e}", path.display())),
    };
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => &bytes[..=i],
        None => return Ok(Vec::new()),
    };
    complete
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).map_err(|e| {
                format!(
                    "journal line {:?} does not parse: {e}",
                    String::from_utf8_lossy(l)
                )
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Content.

/// Content to push: blobs in push order (children first), each with the media type a put may
/// declare, and what it is made of.
#[derive(Default)]
struct Built {
    blobs: Vec<(Vec<u8>, Option<&'static str>)>,
    top: String,
    top_size: u64,
    manifests: Vec<(String, Vec<String>)>,
    refs: Vec<(String, String)>,
}

fn digest_of(bytes: &[u8]) -> String {
    Digest::sha256(bytes).to_string()
}

fn shared_layer(k: usize) -> Vec<u8> {
    format!("shared layer {k}").into_bytes()
}

impl Built {
    fn blob(&mut self, bytes: Vec<u8>, media_type: Option<&'static str>) -> (String, u64) {
        let d = digest_of(&bytes);
        let size = bytes.len() as u64;
        self.blobs.push((bytes, media_type));
        (d, size)
    }

    /// An image manifest: a config, some shared layers, and a layer of its own (sometimes large
    /// enough that writing it takes a while).
    fn image(&mut self, rng: &mut Rng, nonce: &str, role: &str) -> (String, u64) {
        let mut layers = Vec::new();
        let mut children = Vec::new();
        let mut shared: Vec<usize> = (0..rng.below(3))
            .map(|_| rng.below(SHARED_LAYERS))
            .collect();
        shared.sort_unstable();
        shared.dedup();
        for k in shared {
            let (d, s) = self.blob(shared_layer(k), None);
            layers.push(descriptor(OCI_LAYER_GZIP, &d, s));
            children.push(d);
        }
        let mut own = format!("layer {nonce}").into_bytes();
        if rng.chance(15) {
            own.resize(64 << 10, b'x');
        }
        let (d, s) = self.blob(own, None);
        layers.push(descriptor(OCI_LAYER_GZIP, &d, s));
        children.push(d);
        let config = serde_json::to_vec(&json!({"role": role, "nonce": nonce})).unwrap();
        let (cd, cs) = self.blob(config, None);
        children.insert(0, cd.clone());
        let m = common::manifest_json(descriptor(OCI_CONFIG, &cd, cs), layers, None, None, &[]);
        let (md, ms) = self.blob(m, Some(OCI_MANIFEST));
        self.manifests.push((md.clone(), children));
        self.top = md.clone();
        self.top_size = ms;
        (md, ms)
    }

    /// An index of two images of its own.
    fn index(&mut self, rng: &mut Rng, nonce: &str) {
        let mut descs = Vec::new();
        let mut children = Vec::new();
        for i in 0..2 {
            let (d, s) = self.image(rng, &format!("{nonce}/{i}"), "child");
            descs.push(descriptor(OCI_MANIFEST, &d, s));
            children.push(d);
        }
        let idx = common::index_json(OCI_INDEX, descs, None, None, &[]);
        let (d, s) = self.blob(idx, Some(OCI_INDEX));
        self.manifests.push((d.clone(), children));
        self.top = d;
        self.top_size = s;
    }

    /// A signature: `subject` is the descriptor its `subject` field names, if any.
    fn signature(&mut self, nonce: &str, subject: Option<(&str, &str, u64)>) {
        let (ed, es) = self.blob(b"{}".to_vec(), None);
        let (pd, ps) = self.blob(format!("signature {nonce}").into_bytes(), None);
        let m = common::manifest_json(
            descriptor(OCI_EMPTY, &ed, es),
            vec![descriptor(SIG_PAYLOAD, &pd, ps)],
            subject.map(|(d, mt, s)| descriptor(mt, d, s)),
            Some(SIGNATURE_TYPE),
            &[],
        );
        let (md, ms) = self.blob(m, Some(OCI_MANIFEST));
        self.manifests.push((md.clone(), vec![ed, pd]));
        if let Some((s, _, _)) = subject {
            self.refs.push((md.clone(), s.to_owned()));
        }
        self.top = md;
        self.top_size = ms;
    }
}

// ---------------------------------------------------------------------------------------------
// The source layout imports read from.

struct SourceEntry {
    tag: Option<String>,
    digest: String,
    size: u64,
    media_type: &'static str,
    artifact_type: Option<&'static str>,
}

/// A small layout written byte by byte: three tagged images, a signature (with `subject`, listed
/// untagged as oras does) on the first, a signature on that signature, and a cosign-tagged
/// signature on the second.
struct Source {
    blobs: Vec<Vec<u8>>,
    entries: Vec<SourceEntry>,
    manifests: HashMap<String, Vec<String>>,
    refs: Vec<(String, String)>,
}

impl Source {
    fn new() -> Source {
        let mut rng = Rng::new(7);
        let mut b = Built::default();
        let mut entries = Vec::new();
        let mut images = Vec::new();
        for name in ["a", "b", "c"] {
            let (d, s) = b.image(&mut rng, &format!("source {name}"), "source");
            entries.push(SourceEntry {
                tag: Some(format!("src-{name}")),
                digest: d.clone(),
                size: s,
                media_type: OCI_MANIFEST,
                artifact_type: None,
            });
            images.push((d, s));
        }
        let referrer = |b: &mut Built, nonce: &str, subject: Option<(&str, u64)>| {
            b.signature(nonce, subject.map(|(d, s)| (d, OCI_MANIFEST, s)));
            (b.top.clone(), b.top_size)
        };
        let (sa, sa_size) = referrer(&mut b, "source sig a", Some((&images[0].0, images[0].1)));
        let (ssa, ssa_size) = referrer(&mut b, "source sig of sig a", Some((&sa, sa_size)));
        let (sb, sb_size) = referrer(&mut b, "source cosign b", None);
        for (d, s) in [(sa, sa_size), (ssa, ssa_size)] {
            entries.push(SourceEntry {
                tag: None,
                digest: d,
                size: s,
                media_type: OCI_MANIFEST,
                artifact_type: Some(SIGNATURE_TYPE),
            });
        }
        let subject = Digest::parse(&images[1].0).unwrap();
        entries.push(SourceEntry {
            tag: Some(ReferrerTag::name(&subject, LinkKind::CosignSig)),
            digest: sb,
            size: sb_size,
            media_type: OCI_MANIFEST,
            artifact_type: None,
        });
        Source {
            blobs: b.blobs.into_iter().map(|(bytes, _)| bytes).collect(),
            entries,
            manifests: b.manifests.into_iter().collect(),
            refs: b.refs,
        }
    }

    fn write(&self, root: &Path) {
        common::write_skeleton(root);
        for bytes in &self.blobs {
            common::write_blob(root, bytes);
        }
        let entries = self
            .entries
            .iter()
            .map(|e| {
                let mut v = descriptor(e.media_type, &e.digest, e.size);
                if let Some(t) = &e.tag {
                    v["annotations"] = json!({ REF_NAME: t });
                }
                if let Some(at) = e.artifact_type {
                    v["artifactType"] = at.into();
                }
                v
            })
            .collect();
        common::write_index_json(root, entries);
    }

    /// What importing `tags` (every entry when empty) writes: the tags it sets, the manifests
    /// and referrers it copies. The closure follows strong edges, referrers, and the entries that
    /// link referrers to what it holds, as `Store::import` does.
    fn import_effects(&self, tags: &[String]) -> Rec {
        let mut chosen: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                tags.is_empty()
                    || self.entries[i]
                        .tag
                        .as_ref()
                        .is_some_and(|t| tags.contains(t))
            })
            .collect();
        let mut closure: BTreeSet<String> = BTreeSet::new();
        loop {
            let mut stack: Vec<String> = chosen
                .iter()
                .map(|&i| self.entries[i].digest.clone())
                .collect();
            while let Some(d) = stack.pop() {
                if !closure.insert(d.clone()) {
                    continue;
                }
                stack.extend(self.manifests.get(&d).into_iter().flatten().cloned());
                stack.extend(
                    self.refs
                        .iter()
                        .filter(|(_, s)| *s == d)
                        .map(|(r, _)| r.clone()),
                );
                for e in &self.entries {
                    if let Some(link) = e.tag.as_deref().and_then(ReferrerTag::parse)
                        && link.subject.as_str() == d
                    {
                        stack.push(e.digest.clone());
                    }
                }
            }
            let more: Vec<usize> = (0..self.entries.len())
                .filter(|i| !chosen.contains(i))
                .filter(|&i| {
                    let e = &self.entries[i];
                    match e.tag.as_deref().map(ReferrerTag::parse) {
                        Some(Some(link)) => closure.contains(link.subject.as_str()),
                        Some(None) => false,
                        None => closure.contains(&e.digest),
                    }
                })
                .collect();
            if more.is_empty() {
                break;
            }
            chosen.extend(more);
        }
        let mut rec = Rec::begin("import");
        rec.atomic = true;
        rec.tags = chosen
            .iter()
            .filter_map(|&i| {
                let e = &self.entries[i];
                e.tag.clone().map(|t| (t, Some(e.digest.clone())))
            })
            .collect();
        rec.manifests = self
            .manifests
            .iter()
            .filter(|(m, _)| closure.contains(*m))
            .map(|(m, c)| (m.clone(), c.clone()))
            .collect();
        rec.refs = self
            .refs
            .iter()
            .filter(|(r, _)| closure.contains(r))
            .cloned()
            .collect();
        rec
    }
}

// ---------------------------------------------------------------------------------------------
// The child: a random workload until killed.

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Errors the workload provokes on purpose: a reference that is gone, a refused delete. And,
/// until a collection completes in this child, a write refused because an earlier child's
/// collection, killed partway, removed something the write would make reachable again (an
/// import of a source image whose referrer, signed by the workload, lost its layer).
fn expected(e: &Error, collected: bool) -> bool {
    match e {
        Error::NotFound(_) | Error::Refused { .. } => true,
        Error::BeingCollected { .. } => !collected,
        _ => false,
    }
}

struct Workload<'s> {
    store: &'s Store,
    rng: Rng,
    journal: Journal,
    round: u64,
    n: u64,
    seq: u64,
    /// The `begin` line written for the operation running, if any.
    open: bool,
    source: PathBuf,
    spec: Source,
    /// Manifests this child wrote that tags may name (images and indexes).
    fresh: Vec<String>,
    /// Anything this child wrote (delete candidates).
    written: Vec<String>,
    /// Whether a collection completed in this child.
    collected: bool,
}

type OpResult = ocistore::Result<Vec<String>>;

impl Workload<'_> {
    fn nonce(&mut self) -> String {
        self.n += 1;
        format!("r{}-{}", self.round, self.n)
    }

    fn begin(&mut self, mut rec: Rec) {
        self.seq += 1;
        rec.seq = self.seq;
        self.journal.append(&rec);
        self.open = true;
    }

    fn end(&mut self, op: &str, result: OpResult) {
        if !self.open {
            return;
        }
        self.open = false;
        let mut rec = Rec::begin(op);
        rec.seq = self.seq;
        match result {
            Ok(removed) => {
                rec.phase = Phase::Done;
                rec.removed = removed;
            }
            Err(e) => {
                rec.phase = Phase::Failed;
                rec.unexpected = !expected(&e, self.collected);
                rec.error = Some(e.to_string());
            }
        }
        let fatal = rec.unexpected;
        self.journal.append(&rec);
        if fatal {
            std::process::exit(3);
        }
    }

    fn put_opts(&mut self, bytes: &[u8], media_type: Option<&'static str>) -> PutOptions {
        PutOptions {
            media_type: media_type
                .filter(|_| self.rng.chance(50))
                .map(str::to_owned),
            digest: self
                .rng
                .chance(40)
                .then(|| Digest::parse(&digest_of(bytes)).unwrap()),
            size: self.rng.chance(40).then_some(bytes.len() as u64),
        }
    }

    /// Puts each blob through `put`, with random options.
    fn put_each(
        &mut self,
        blobs: &[(Vec<u8>, Option<&'static str>)],
        mut put: impl FnMut(&[u8], &PutOptions) -> ocistore::Result<Put>,
    ) -> ocistore::Result<()> {
        for (bytes, mt) in blobs {
            let opts = self.put_opts(bytes, *mt);
            put(bytes, &opts)?;
        }
        Ok(())
    }

    fn pool_tag(&mut self) -> String {
        format!("t{}", self.rng.below(TAG_POOL))
    }

    /// Tags and untagged entries of the store, as (tag, digest).
    fn listed(&self) -> ocistore::Result<Vec<(Option<String>, String)>> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|e| (e.tag, e.digest.to_string()))
            .collect())
    }

    /// Manifests a new tag may name: the targets of plain tags and this child's images and
    /// indexes (never a referrer, whose tags are not roots).
    fn taggable(&self) -> ocistore::Result<Vec<String>> {
        let mut out: Vec<String> = self
            .listed()?
            .into_iter()
            .filter(|(t, _)| {
                t.as_deref()
                    .is_some_and(|t| ReferrerTag::parse(t).is_none())
            })
            .map(|(_, d)| d)
            .collect();
        out.extend(self.fresh.iter().cloned());
        Ok(out)
    }

    fn step(&mut self) {
        let (op, result) = match self.rng.below(100) {
            0..24 => ("image", self.op_image()),
            24..30 => ("index", self.op_index()),
            30..42 => ("signature", self.op_signature()),
            42..47 => ("loose", self.op_loose()),
            47..57 => ("tag", self.op_tag()),
            57..63 => ("untag", self.op_untag(false)),
            63..67 => ("delete-tag", self.op_untag(true)),
            67..75 => ("delete-digest", self.op_delete_digest()),
            75..90 => ("gc", self.op_gc()),
            _ => ("import", self.op_import()),
        };
        self.end(op, result);
    }

    /// Journals, then pushes `b` and sets `tags` (tag, manifest): in one batch, or by single
    /// puts (sometimes under a lease) and tag calls.
    fn push(&mut self, op: &str, b: &Built, tags: &[(String, String)], in_batch: bool) -> OpResult {
        let mut rec = Rec::begin(op);
        rec.atomic = in_batch;
        rec.manifests = b.manifests.clone();
        rec.refs = b.refs.clone();
        rec.tags = tags
            .iter()
            .map(|(t, d)| (t.clone(), Some(d.clone())))
            .collect();
        self.begin(rec);
        let store = self.store;
        if in_batch {
            let mut batch = store.batch()?;
            self.put_each(&b.blobs, |bytes, o| batch.put(&mut &bytes[..], o))?;
            for (t, d) in tags {
                batch.tag(d, t)?;
            }
            batch.commit()?;
        } else {
            let lease = self.rng.chance(50).then(|| store.lease());
            self.put_each(&b.blobs, |bytes, o| match &lease {
                Some(l) => l.put(&mut &bytes[..], o),
                None => store.put(&mut &bytes[..], o),
            })?;
            for (t, d) in tags {
                store.tag(d, t)?;
            }
        }
        // Delete candidates: the top manifest, and an index's own images (refused while a live
        // index lists them; a dead index goes with them).
        if !b.top.is_empty() {
            self.written.push(b.top.clone());
        }
        for (_, children) in &b.manifests {
            self.written.extend(children.iter().cloned());
        }
        Ok(Vec::new())
    }

    /// An image, usually tagged, sometimes with a signature (by `subject` or not) and its cosign
    /// tag.
    fn op_image(&mut self) -> OpResult {
        let nonce = self.nonce();
        let mut b = Built::default();
        let (d, s) = b.image(&mut self.rng, &nonce, "image");
        let mut tags = Vec::new();
        if self.rng.chance(80) {
            tags.push((self.pool_tag(), d.clone()));
        }
        if self.rng.chance(30) {
            let with_subject = self.rng.chance(50);
            b.signature(
                &format!("{nonce}/sig"),
                with_subject.then_some((d.as_str(), OCI_MANIFEST, s)),
            );
            let subject = Digest::parse(&d).unwrap();
            tags.push((
                ReferrerTag::name(&subject, LinkKind::CosignSig),
                b.top.clone(),
            ));
        }
        let in_batch = self.rng.chance(50);
        self.push("image", &b, &tags, in_batch)?;
        self.fresh.push(d);
        Ok(Vec::new())
    }

    /// An index of two images of its own, usually tagged.
    fn op_index(&mut self) -> OpResult {
        let nonce = self.nonce();
        let mut b = Built::default();
        b.index(&mut self.rng, &nonce);
        let d = b.top.clone();
        let tags: Vec<(String, String)> = if self.rng.chance(80) {
            vec![(self.pool_tag(), d.clone())]
        } else {
            Vec::new()
        };
        let in_batch = self.rng.chance(70);
        self.push("index", &b, &tags, in_batch)?;
        self.fresh.push(d);
        Ok(Vec::new())
    }

    /// A signature on a listed manifest (a tagged image, or a referrer: signatures of
    /// signatures): by `subject`, by a cosign tag, or both.
    fn op_signature(&mut self) -> OpResult {
        let mut subjects: Vec<String> = self.listed()?.into_iter().map(|(_, d)| d).collect();
        subjects.extend(self.fresh.iter().cloned());
        let Some(subject) = self.rng.pick(&subjects).cloned() else {
            return Ok(Vec::new());
        };
        let Some(info) = self
            .store
            .manifest_info(&Digest::parse(&subject).unwrap())?
        else {
            return Ok(Vec::new());
        };
        let nonce = self.nonce();
        let (by_subject, by_tag) = match self.rng.below(3) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        let mut b = Built::default();
        b.signature(
            &nonce,
            by_subject.then_some((subject.as_str(), info.media_type.as_str(), info.size)),
        );
        let kind = if self.rng.chance(70) {
            LinkKind::CosignSig
        } else {
            LinkKind::CosignAtt
        };
        let link = ReferrerTag::name(&Digest::parse(&subject).unwrap(), kind);
        let tags: Vec<(String, String)> = if by_tag {
            vec![(link, b.top.clone())]
        } else {
            Vec::new()
        };
        let in_batch = self.rng.chance(50);
        self.push("signature", &b, &tags, in_batch)
    }

    /// Blobs nothing references: garbage from the start.
    fn op_loose(&mut self) -> OpResult {
        let nonce = self.nonce();
        let mut b = Built::default();
        for i in 0..1 + self.rng.below(8) {
            let (d, _) = b.blob(format!("loose {nonce}/{i}").into_bytes(), None);
            self.written.push(d);
        }
        let in_batch = self.rng.chance(50);
        self.push("loose", &b, &[], in_batch)
    }

    /// Points a pool tag at a manifest named by a tag or a digest.
    fn op_tag(&mut self) -> OpResult {
        let targets = self.taggable()?;
        let Some(target) = self.rng.pick(&targets).cloned() else {
            return Ok(Vec::new());
        };
        let tags: Vec<String> = self
            .listed()?
            .into_iter()
            .filter_map(|(t, d)| t.filter(|_| d == target))
            .filter(|t| ReferrerTag::parse(t).is_none())
            .collect();
        let reference = match self.rng.pick(&tags) {
            Some(t) if self.rng.chance(50) => t.clone(),
            _ => target.clone(),
        };
        let tag = self.pool_tag();
        let mut rec = Rec::begin("tag");
        rec.atomic = true;
        rec.tags.push((tag.clone(), Some(target)));
        self.begin(rec);
        self.store.tag(&reference, &tag)?;
        Ok(Vec::new())
    }

    /// Removes a listed tag (any kind), or one that does not exist; by untag or by delete.
    fn op_untag(&mut self, by_delete: bool) -> OpResult {
        let tags: Vec<String> = self.listed()?.into_iter().filter_map(|(t, _)| t).collect();
        let tag = match self.rng.pick(&tags) {
            Some(t) if self.rng.chance(90) => t.clone(),
            _ => self.pool_tag(),
        };
        let mut rec = Rec::begin(if by_delete { "delete-tag" } else { "untag" });
        rec.atomic = true;
        rec.tags.push((tag.clone(), None));
        self.begin(rec);
        if by_delete {
            self.store.delete(&tag, &DeleteOptions::default())?;
        } else {
            self.store.untag(&tag)?;
        }
        Ok(Vec::new())
    }

    /// Deletes a manifest (with its tags and referrers) or a blob by digest. A dry run first
    /// says what the delete will remove.
    fn op_delete_digest(&mut self) -> OpResult {
        let mut candidates: Vec<String> = self.listed()?.into_iter().map(|(_, d)| d).collect();
        candidates.extend(self.written.iter().chain(&self.fresh).cloned());
        candidates.push(digest_of(&shared_layer(self.rng.below(SHARED_LAYERS))));
        let Some(d) = self.rng.pick(&candidates).cloned() else {
            return Ok(Vec::new());
        };
        let mut rec = Rec::begin("delete-digest");
        rec.atomic = true;
        if let Ok(plan) = self.store.delete(
            &d,
            &DeleteOptions {
                dry_run: true,
                force: false,
            },
        ) {
            rec.tags = plan.tags.into_iter().map(|t| (t, None)).collect();
            rec.removes = plan.removed.into_iter().map(|r| r.digest).collect();
        }
        self.begin(rec);
        self.store.delete(&d, &DeleteOptions::default())?;
        Ok(Vec::new())
    }

    fn op_gc(&mut self) -> OpResult {
        let opts = random_gc_options(&mut self.rng);
        let mut rec = Rec::begin("gc");
        rec.gc = true;
        self.begin(rec);
        let report = self.store.gc(&opts)?;
        self.collected |= !opts.dry_run;
        Ok(report.removed.into_iter().map(|r| r.digest).collect())
    }

    fn op_import(&mut self) -> OpResult {
        let tags: Vec<String> = ["src-a", "src-b", "src-c"]
            .into_iter()
            .filter(|_| self.rng.chance(40))
            .map(str::to_owned)
            .collect();
        let rec = self.spec.import_effects(&tags);
        self.begin(rec);
        self.store.import(&self.source, &tags)?;
        Ok(Vec::new())
    }
}

fn random_gc_options(rng: &mut Rng) -> GcOptions {
    GcOptions {
        strategy: match rng.below(3) {
            0 => Strategy::MarkSweep,
            1 => Strategy::Refcount,
            _ => Strategy::Scan,
        },
        grace: if rng.chance(50) {
            Duration::ZERO
        } else {
            GcOptions::default().grace
        },
        delete_untagged: rng.chance(20),
        scan_orphans: rng.chance(20),
        chunk: 1 + rng.below(64),
        ..GcOptions::default()
    }
}

/// Child: runs the workload until killed.
#[test]
#[ignore = "helper process for sigkill_during_mixed_workload_loses_nothing_committed"]
fn helper_crash_workload() {
    let Ok(dir) = std::env::var(ENV_STORE) else {
        return;
    };
    let journal_path = PathBuf::from(std::env::var(ENV_JOURNAL).unwrap());
    let seed: u64 = env_parse(ENV_CHILD_SEED).unwrap();
    let round: u64 = env_parse(ENV_ROUND).unwrap();
    let source = PathBuf::from(std::env::var(ENV_SOURCE).unwrap());
    let mut journal = Journal::create(&journal_path);
    let store = match Store::open(&dir, &Options::default()) {
        Ok(s) => s,
        Err(e) => {
            let mut rec = Rec::begin("open");
            rec.phase = Phase::Failed;
            rec.unexpected = true;
            rec.error = Some(e.to_string());
            journal.append(&rec);
            std::process::exit(3);
        }
    };
    let mut opened = Rec::begin("open");
    opened.phase = Phase::Opened;
    opened.tags = store
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|e| e.tag.map(|t| (t, Some(e.digest.to_string()))))
        .collect();
    journal.append(&opened);
    let mut w = Workload {
        store: &store,
        rng: Rng::new(seed),
        journal,
        round,
        n: 0,
        seq: 0,
        open: false,
        source,
        spec: Source::new(),
        fresh: Vec::new(),
        written: Vec::new(),
        collected: false,
    };
    loop {
        w.step();
    }
}

// ---------------------------------------------------------------------------------------------
// The parent's model of what must survive.

#[derive(Default)]
struct Model {
    /// Tags that are not referrer links: exactly the store's.
    tags: BTreeMap<String, String>,
    /// Cosign tags whose target is known present: tag -> (subject, target). They must resolve
    /// while their subject is live.
    links: BTreeMap<String, (String, String)>,
    /// Every target a cosign tag was ever given (a collection may leave an old one in place).
    links_ever: HashMap<String, HashSet<String>>,
    /// Direct children of every manifest the workload wrote.
    children: HashMap<String, Vec<String>>,
    /// Referrer -> the subject its `subject` field names.
    subject_of: HashMap<String, String>,
    /// Digests known present unless a collection or a delete removed them since: committed, and
    /// live at every collection since.
    known: HashSet<String>,
}

impl Model {
    fn learn(&mut self, rec: &Rec) {
        for (m, c) in &rec.manifests {
            self.children.insert(m.clone(), c.clone());
        }
        for (r, s) in &rec.refs {
            self.subject_of.insert(r.clone(), s.clone());
        }
    }

    /// `d` and everything below it.
    fn below(&self, d: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![d.to_owned()];
        while let Some(x) = stack.pop() {
            if seen.insert(x.clone()) {
                stack.extend(self.children.get(&x).into_iter().flatten().cloned());
            }
        }
        seen
    }

    fn add_known(&mut self, d: &str) {
        let all = self.below(d);
        self.known.extend(all);
    }

    /// What the store must keep: everything reachable from the plain tags through strong edges,
    /// known referrers and cosign links, transitively.
    fn live(&self) -> BTreeSet<String> {
        self.live_paths().into_keys().collect()
    }

    /// Why the model holds `d` live: the path from its root, for a failure's message.
    fn why_live(&self, d: &str) -> String {
        let paths = self.live_paths();
        let mut path = vec![d.to_owned()];
        let mut x = d;
        while let Some(Some((p, how))) = paths.get(x) {
            path.push(format!("{p} ({how})"));
            x = p;
        }
        let root = self
            .tags
            .iter()
            .find(|(_, v)| v.as_str() == x)
            .map(|(t, _)| t);
        format!("{} <- tag {root:?}", path.join(" <- "))
    }

    /// Every live digest, with the digest it was reached from and how (none for a root).
    fn live_paths(&self) -> BTreeMap<String, Option<(String, &'static str)>> {
        let mut referrers: HashMap<&str, Vec<&str>> = HashMap::new();
        for (r, s) in &self.subject_of {
            if self.known.contains(r) {
                referrers.entry(s).or_default().push(r);
            }
        }
        for (s, t) in self.links.values() {
            referrers.entry(s).or_default().push(t);
        }
        let mut live = BTreeMap::new();
        let mut stack: Vec<(&str, Option<(&str, &'static str)>)> =
            self.tags.values().map(|t| (t.as_str(), None)).collect();
        while let Some((x, from)) = stack.pop() {
            if live.contains_key(x) {
                continue;
            }
            live.insert(x.to_owned(), from.map(|(p, how)| (p.to_owned(), how)));
            stack.extend(
                self.children
                    .get(x)
                    .into_iter()
                    .flatten()
                    .map(|c| (c.as_str(), Some((x, "lists")))),
            );
            stack.extend(
                referrers
                    .get(x)
                    .into_iter()
                    .flatten()
                    .map(|r| (*r, Some((x, "refers to")))),
            );
        }
        live
    }

    /// After a collection (that ran or may have run): only what was live is still known.
    fn prune(&mut self) {
        let live = self.live();
        self.known.retain(|d| live.contains(d));
        self.links.retain(|_, (s, _)| live.contains(s));
    }

    fn tag_value(&self, tag: &str) -> Option<&String> {
        match ReferrerTag::parse(tag) {
            Some(_) => self.links.get(tag).map(|(_, t)| t),
            None => self.tags.get(tag),
        }
    }

    fn set_tag(&mut self, tag: &str, value: Option<&str>) {
        match (ReferrerTag::parse(tag), value) {
            (Some(link), Some(t)) => {
                self.links
                    .insert(tag.to_owned(), (link.subject.to_string(), t.to_owned()));
                self.links_ever
                    .entry(tag.to_owned())
                    .or_default()
                    .insert(t.to_owned());
                self.add_known(t);
            }
            (Some(_), None) => {
                self.links.remove(tag);
            }
            (None, Some(d)) => {
                self.tags.insert(tag.to_owned(), d.to_owned());
                self.add_known(d);
            }
            (None, None) => {
                self.tags.remove(tag);
            }
        }
    }

    /// Applies an operation that happened.
    fn commit(&mut self, rec: &Rec) -> Result<(), String> {
        self.learn(rec);
        if rec.gc {
            let live = self.live();
            let lost: Vec<&String> = rec.removed.iter().filter(|d| live.contains(*d)).collect();
            if !lost.is_empty() {
                let why: Vec<String> = lost.iter().map(|d| self.why_live(d)).collect();
                return Err(format!(
                    "collection (journal seq {}) removed live content: {why:#?}",
                    rec.seq
                ));
            }
            self.prune();
        }
        for d in &rec.removes {
            self.known.remove(d);
        }
        for (t, v) in &rec.tags {
            self.set_tag(t, v.as_deref());
        }
        for (m, _) in &rec.manifests {
            self.add_known(m);
        }
        for (r, _) in &rec.refs {
            self.add_known(r);
        }
        Ok(())
    }

    /// Decides, from the reopened store, whether the operation in flight at the kill happened,
    /// and applies it if it did. Returns whether it did.
    fn resolve(
        &mut self,
        rec: &Rec,
        store_tags: &BTreeMap<String, String>,
    ) -> Result<bool, String> {
        self.learn(rec);
        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        for (t, v) in &rec.tags {
            let old = self.tag_value(t).cloned();
            if *v == old {
                continue;
            }
            let now = store_tags.get(t).cloned();
            let was_valid = now == old
                || (ReferrerTag::parse(t).is_some()
                    && now
                        .as_ref()
                        .is_some_and(|n| self.links_ever.get(t).is_some_and(|e| e.contains(n))));
            if now == *v {
                changed.push(t.clone());
            } else if was_valid {
                unchanged.push(t.clone());
            } else {
                return Err(format!(
                    "after the kill during {} (journal seq {}), tag {t} names {now:?}: neither its \
                     value before ({old:?}) nor the one the operation set ({v:?})",
                    rec.op, rec.seq
                ));
            }
        }
        if rec.atomic && !changed.is_empty() && !unchanged.is_empty() {
            return Err(format!(
                "the kill during {} (journal seq {}) left it half done: tags {changed:?} changed, \
                 {unchanged:?} did not",
                rec.op, rec.seq
            ));
        }
        if rec.gc {
            self.prune();
        }
        if changed.is_empty() {
            if unchanged.is_empty() {
                // Nothing to tell whether it happened: what it may have removed is no longer
                // known present.
                for d in &rec.removes {
                    self.known.remove(d);
                }
            }
            Ok(false)
        } else {
            // Tags are set after the content is in, so the content is all there; of a
            // non-atomic operation, only the tags that changed are.
            let mut rec = rec.clone();
            rec.gc = false;
            rec.tags.retain(|(t, _)| changed.contains(t));
            self.commit(&rec)?;
            Ok(true)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parent's checks.

#[derive(Default)]
struct Summary {
    kills: usize,
    /// Kills after which the next child, not the parent, opened the store first.
    unchecked: usize,
    /// Kills before the child had opened the store.
    before_open: usize,
    /// Of those, kills of a child that found the store crashed (its open recovers it).
    recovery_killed: usize,
    mid_op: usize,
    inflight_happened: usize,
    committed: usize,
    failed: usize,
    checked: usize,
    recovered: usize,
    removed_temp_files: u64,
    finished_unlinks: u64,
    indexed_blobs: u64,
    gc_removed: u64,
}

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Every tag of the store, with its target.
fn store_tags(store: &Store) -> Result<BTreeMap<String, String>, String> {
    Ok(store
        .list()
        .ctx("list")?
        .into_iter()
        .filter_map(|e| e.tag.map(|t| (t, e.digest.to_string())))
        .collect())
}

/// No temporary file anywhere: not in `.ocistore/ingest/`, not beside index.json, not in
/// `blobs/`.
fn check_no_temp_files(root: &Path) -> Result<(), String> {
    let ingest = common::ingest_files(root);
    if !ingest.is_empty() {
        return Err(format!(
            "temporary files left in .ocistore/ingest: {ingest:?}"
        ));
    }
    let mut stray = Vec::new();
    for e in fs::read_dir(root).ctx("read the store's root")? {
        let name = e.ctx("read the store's root")?.file_name();
        let name = name.to_string_lossy().into_owned();
        if !["oci-layout", "index.json", "blobs", ".ocistore"].contains(&name.as_str()) {
            stray.push(name);
        }
    }
    for e in fs::read_dir(root.join(".ocistore")).ctx("read .ocistore")? {
        let name = e.ctx("read .ocistore")?.file_name();
        let name = name.to_string_lossy().into_owned();
        if name.starts_with('.')
            || ["tmp", "building", "rebuild"]
                .iter()
                .any(|s| name.contains(s))
        {
            stray.push(format!(".ocistore/{name}"));
        }
    }
    for e in fs::read_dir(root.join("blobs")).ctx("read blobs")? {
        let name = e.ctx("read blobs")?.file_name();
        if name != "sha256" {
            stray.push(format!("blobs/{}", name.to_string_lossy()));
        }
    }
    // `blobs/sha256` appears with the first blob: a child killed before it wrote one leaves none.
    let sha256 = root.join("blobs/sha256");
    let entries = if sha256.exists() {
        fs::read_dir(&sha256).ctx("read blobs/sha256")?.collect()
    } else {
        Vec::new()
    };
    for e in entries {
        let name = e.ctx("read blobs/sha256")?.file_name();
        let name = name.to_string_lossy().into_owned();
        if Digest::parse(&format!("sha256:{name}")).is_err() {
            stray.push(format!("blobs/sha256/{name}"));
        }
    }
    if stray.is_empty() {
        Ok(())
    } else {
        Err(format!("temporary or unknown files left: {stray:?}"))
    }
}

/// The index and the layout agree: every file under `blobs/` is indexed and every indexed blob
/// has its file; index.json lists exactly the store's tags and untagged entries.
fn check_agreement(store: &Store, root: &Path) -> Result<(), String> {
    let files = common::blob_digests(root);
    let unknown: Vec<&String> = files
        .iter()
        .filter(|d| {
            store
                .blob_info(&Digest::parse(d).unwrap())
                .ok()
                .flatten()
                .is_none()
        })
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "files in blobs/ the index does not know: {unknown:?}"
        ));
    }
    let stats = store.stats().ctx("stats")?;
    if stats.blobs != files.len() as u64 {
        return Err(format!(
            "the index records {} blobs, blobs/ holds {} files",
            stats.blobs,
            files.len()
        ));
    }
    let bytes = fs::read(root.join("index.json")).ctx("read index.json")?;
    let doc: Value = serde_json::from_slice(&bytes).ctx("parse index.json")?;
    let mut file_tags = BTreeMap::new();
    let mut file_untagged = Vec::new();
    for e in doc["manifests"]
        .as_array()
        .ok_or("index.json has no manifests")?
    {
        let d = e["digest"]
            .as_str()
            .ok_or("index.json entry without a digest")?;
        match e["annotations"][REF_NAME].as_str() {
            Some(t) => {
                if file_tags.insert(t.to_owned(), d.to_owned()).is_some() {
                    return Err(format!("index.json repeats tag {t}"));
                }
            }
            None => file_untagged.push(d.to_owned()),
        }
    }
    let mut store_untagged = Vec::new();
    let mut listed_tags = BTreeMap::new();
    for e in store.list().ctx("list")? {
        match e.tag {
            Some(t) => {
                listed_tags.insert(t, e.digest.to_string());
            }
            None => store_untagged.push(e.digest.to_string()),
        }
    }
    if file_tags != listed_tags {
        return Err(format!(
            "index.json tags {file_tags:?} differ from the store's {listed_tags:?}"
        ));
    }
    file_untagged.sort();
    store_untagged.sort();
    if file_untagged != store_untagged {
        return Err(format!(
            "index.json untagged entries {file_untagged:?} differ from the store's \
             {store_untagged:?}"
        ));
    }
    Ok(())
}

/// A present blob whose bytes hash to its digest.
fn check_blob(store: &Store, d: &str, why: &str) -> Result<(), String> {
    let digest = Digest::parse(d).ctx("digest")?;
    if store.blob_info(&digest).ctx("blob_info")?.is_none() {
        return Err(format!("{d} ({why}) is not in the store"));
    }
    let bytes = store
        .read_all(&digest)
        .map_err(|e| format!("{d} ({why}) cannot be read: {e}"))?;
    if Digest::sha256(&bytes) != digest {
        return Err(format!("{d} ({why}): its bytes hash to something else"));
    }
    Ok(())
}

/// What the model says must survive, did: the plain tags are exactly the model's, every live
/// manifest is complete (through `Store::children`, recursively), live subjects list their known
/// referrers, and the cosign tags of live subjects name their signatures. Returns how many
/// digests were checked.
fn check_model(store: &Store, model: &Model) -> Result<usize, String> {
    let tags = store_tags(store)?;
    let plain: BTreeMap<String, String> = tags
        .iter()
        .filter(|(t, _)| ReferrerTag::parse(t).is_none())
        .map(|(t, d)| (t.clone(), d.clone()))
        .collect();
    if plain != model.tags {
        let lost: Vec<_> = model
            .tags
            .iter()
            .filter(|(t, d)| plain.get(*t) != Some(*d))
            .collect();
        let extra: Vec<_> = plain
            .iter()
            .filter(|(t, d)| model.tags.get(*t) != Some(*d))
            .collect();
        return Err(format!(
            "tags differ from the journal's: expected but missing or moved {lost:?}; unexpected \
             {extra:?}"
        ));
    }
    for (t, d) in &model.tags {
        let resolved = store.resolve(t).ctx("resolve")?;
        if resolved.as_str() != d {
            return Err(format!("tag {t} resolves to {resolved}, not {d}"));
        }
    }
    for (t, d) in &tags {
        if ReferrerTag::parse(t).is_some()
            && !model.links_ever.get(t).is_some_and(|e| e.contains(d))
        {
            return Err(format!(
                "cosign tag {t} names {d}, which no operation gave it"
            ));
        }
    }
    let live = model.live();
    for (t, (s, target)) in &model.links {
        if live.contains(s) && tags.get(t) != Some(target) {
            return Err(format!(
                "cosign tag {t} of live subject {s} names {:?}, not {target}",
                tags.get(t)
            ));
        }
    }
    for d in &live {
        if !model.known.contains(d) {
            return Err(format!("model: live {d} is not known present"));
        }
    }
    let mut seen = HashSet::new();
    let mut stack: Vec<(String, String)> =
        live.iter().map(|d| (d.clone(), "live".into())).collect();
    while let Some((d, why)) = stack.pop() {
        if !seen.insert(d.clone()) {
            continue;
        }
        check_blob(store, &d, &why)?;
        let digest = Digest::parse(&d).unwrap();
        let children: BTreeSet<String> = store
            .children(&digest)
            .ctx("children")?
            .iter()
            .map(Digest::to_string)
            .collect();
        if let Some(want) = model.children.get(&d) {
            let want: BTreeSet<String> = want.iter().cloned().collect();
            if children != want {
                return Err(format!(
                    "manifest {d}: the index lists children {children:?}, it has {want:?}"
                ));
            }
            if store.manifest_info(&digest).ctx("manifest_info")?.is_none() {
                return Err(format!("manifest {d} ({why}) is not indexed as a manifest"));
            }
        }
        stack.extend(children.into_iter().map(|c| (c, format!("child of {d}"))));
    }
    for (r, s) in &model.subject_of {
        if model.known.contains(r) && live.contains(s) {
            let answer = store
                .referrers(&Digest::parse(s).unwrap(), &ReferrersQuery::default())
                .ctx("referrers")?;
            if !answer.manifests.iter().any(|m| m.digest == *r) {
                return Err(format!("live subject {s} no longer lists its referrer {r}"));
            }
        }
    }
    Ok(seen.len())
}

/// `Store::verify` finds nothing wrong.
fn check_verify(store: &Store) -> Result<(), String> {
    let report = store.verify(&VerifyOptions::default()).ctx("verify")?;
    if report.ok {
        Ok(())
    } else {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        Err(format!("verify reports problems: {problems:#?}"))
    }
}

fn check_all(store: &Store, root: &Path, model: &Model) -> Result<usize, String> {
    check_no_temp_files(root)?;
    check_agreement(store, root)?;
    check_verify(store)?;
    check_model(store, model)
}

/// Applies a child's journal to the model. Its first line, written once the child has opened
/// the store, shows the tags the previous kill left, which settles the operation that was then in
/// flight; the operation in flight at this kill is left in `pending` (and the result says whether
/// there is one).
fn replay(
    records: Vec<Rec>,
    model: &mut Model,
    pending: &mut Option<Rec>,
    summary: &mut Summary,
) -> Result<bool, String> {
    let mut left_open = false;
    for rec in records {
        match rec.phase {
            Phase::Opened => {
                if let Some(p) = pending.take() {
                    let tags: BTreeMap<String, String> = rec
                        .tags
                        .into_iter()
                        .filter_map(|(t, d)| d.map(|d| (t, d)))
                        .collect();
                    summary.inflight_happened += usize::from(model.resolve(&p, &tags)?);
                }
            }
            Phase::Begin => {
                if let Some(b) = pending {
                    return Err(format!("journal: {} (seq {}) never ended", b.op, b.seq));
                }
                *pending = Some(rec);
                left_open = true;
            }
            Phase::Done | Phase::Failed => {
                if rec.unexpected {
                    return Err(format!("{} failed: {:?}", rec.op, rec.error));
                }
                left_open = false;
                let mut b = pending
                    .take()
                    .filter(|b| b.seq == rec.seq)
                    .ok_or_else(|| format!("journal: seq {} ends unbegun", rec.seq))?;
                if rec.phase == Phase::Done {
                    b.removed = rec.removed;
                    model.commit(&b)?;
                    summary.committed += 1;
                } else {
                    model.learn(&b);
                    summary.failed += 1;
                }
            }
        }
    }
    Ok(left_open)
}

struct Harness {
    seed: u64,
    kills: usize,
    dir: PathBuf,
}

impl Harness {
    fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn run(&self, summary: &mut Summary, round: &mut usize) -> Result<(), String> {
        let root = self.store_dir();
        let source = self.dir.join("source");
        Source::new().write(&source);
        drop(Store::init(&root, &Options::default()).ctx("init")?);
        let mut rng = Rng::new(self.seed);
        let mut model = Model::default();
        // The operation in flight at the last kill, until a reopened store shows what it did.
        let mut pending: Option<Rec> = None;
        // Whether the last kill's store was left for the next child to recover.
        let mut left_crashed = false;
        for k in 0..self.kills {
            *round = k;
            let child_seed = rng.next();
            let delay = if left_crashed && rng.chance(50) {
                // Aim at the child's own open, which recovers the crashed store.
                2 + rng.below(25)
            } else if rng.chance(10) {
                rng.below(5)
            } else {
                20 + rng.below(381)
            };
            let was_crashed = std::mem::take(&mut left_crashed);
            let journal = self.dir.join(format!("journal-{k}.jsonl"));
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "helper_crash_workload",
                    "--test-threads=1",
                ])
                .env(ENV_STORE, &root)
                .env(ENV_JOURNAL, &journal)
                .env(ENV_SOURCE, &source)
                .env(ENV_CHILD_SEED, child_seed.to_string())
                .env(ENV_ROUND, k.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .ctx("spawn the child")?;
            std::thread::sleep(Duration::from_millis(delay as u64));
            if let Some(status) = child.try_wait().ctx("wait for the child")? {
                let records = read_journal(&journal)?;
                let err = records.iter().rev().find_map(|r| r.error.clone());
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                return Err(format!(
                    "the workload stopped by itself ({status}) with child seed {child_seed}: \
                     {err:?}\n{stderr}"
                ));
            }
            child.kill().ctx("kill the child")?; // SIGKILL
            child.wait().ctx("wait for the child")?;
            summary.kills += 1;

            let records = read_journal(&journal)?;
            let fail = |e: String| {
                format!(
                    "child seed {child_seed}, {delay} ms: {e}\njournal kept at {}",
                    journal.display()
                )
            };
            if !records.iter().any(|r| r.phase == Phase::Opened) {
                summary.before_open += 1;
                summary.recovery_killed += usize::from(was_crashed);
            }
            if replay(records, &mut model, &mut pending, summary).map_err(fail)? {
                summary.mid_op += 1;
            }
            fs::remove_file(&journal).ok();
            let in_flight = pending.as_ref().map(|b| (b.op.clone(), b.seq));
            if k + 1 < self.kills && rng.chance(20) {
                // The next child opens the crashed store itself: its recovery may be killed too.
                summary.unchecked += 1;
                left_crashed = true;
                continue;
            }

            let store = Store::open(&root, &Options::default()).ctx("reopen after the kill")?;
            let report = store.open_report();
            summary.recovered += usize::from(report.recovered);
            summary.removed_temp_files += report.removed_temp_files;
            summary.finished_unlinks += report.finished_unlinks;
            summary.indexed_blobs += report.indexed_blobs;
            let what = |e: String| {
                format!(
                    "after the kill (child seed {child_seed}, {delay} ms, last in flight: \
                     {in_flight:?}): {e}"
                )
            };
            if let Some(rec) = pending.take() {
                let tags = store_tags(&store)?;
                summary.inflight_happened += usize::from(model.resolve(&rec, &tags).map_err(what)?);
            }
            summary.checked += check_all(&store, &root, &model).map_err(what)?;

            // A collection after recovery runs and loses nothing live.
            let opts = random_gc_options(&mut rng);
            let gc = store
                .gc(&opts)
                .map_err(|e| what(format!("collection after recovery: {e}")))?;
            let mut rec = Rec::begin("gc after recovery");
            rec.gc = true;
            rec.removed = gc.removed.into_iter().map(|r| r.digest).collect();
            summary.gc_removed += rec.removed.len() as u64;
            // A failure names the collection's options: the strategy decides what it reads.
            let by = |e: String| what(format!("{e}\n(the collection: {opts:?})"));
            model.commit(&rec).map_err(by)?;
            summary.checked += check_all(&store, &root, &model)
                .map_err(|e| by(format!("after the collection that followed: {e}")))?;
            drop(store);
        }
        Ok(())
    }
}

#[test]
fn sigkill_during_mixed_workload_loses_nothing_committed() {
    let seed = env_parse::<u64>("OCISTORE_CRASH_SEED").unwrap_or(DEFAULT_SEED);
    let kills = env_parse::<usize>("OCISTORE_CRASH_KILLS").unwrap_or(DEFAULT_KILLS);
    let dir = tempfile::tempdir().unwrap();
    let harness = Harness {
        seed,
        kills,
        dir: dir.path().to_path_buf(),
    };
    let mut summary = Summary::default();
    let mut round = 0;
    if let Err(e) = harness.run(&mut summary, &mut round) {
        let kept = dir.keep();
        panic!(
            "OCISTORE_CRASH_SEED={seed}, round {round} of {kills}: {e}\nstore kept at {}",
            kept.join("store").display()
        );
    }
    eprintln!(
        "crash harness (seed {seed}): {} kills ({} reopened first by the next child; {} before \
         the child's open returned, {} of them on a store left crashed), {} mid-operation ({} \
         of those had happened), {} committed operations checked ({} failed as expected), {} \
         digest checks; recovery ran {} times: {} temporary files removed, {} interrupted \
         unlinks finished, {} blobs indexed; {} blobs collected after recovery",
        summary.kills,
        summary.unchecked,
        summary.before_open,
        summary.recovery_killed,
        summary.mid_op,
        summary.inflight_happened,
        summary.committed,
        summary.failed,
        summary.checked,
        summary.recovered,
        summary.removed_temp_files,
        summary.finished_unlinks,
        summary.indexed_blobs,
        summary.gc_removed,
    );
    assert!(summary.committed > 0, "no operation committed");
}

/// The temporary file of an index.json rewrite that a killed writer did not finish is removed by
/// the next writable open, and counted; other files beside index.json are left alone.
#[test]
fn open_removes_index_json_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::init(dir.path(), &Options::default()).unwrap());
    fs::write(
        dir.path().join(".ocistore-tmp-AbC123"),
        b"{\"schemaVersion\":2",
    )
    .unwrap();
    fs::write(dir.path().join("notes.txt"), b"kept").unwrap();
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert_eq!(store.open_report().removed_temp_files, 1);
    assert!(!dir.path().join(".ocistore-tmp-AbC123").exists());
    assert_eq!(fs::read(dir.path().join("notes.txt")).unwrap(), b"kept");
}
