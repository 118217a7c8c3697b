//! The redb schema: tables, record encodings and the operations that keep them consistent.
//!
//! The catalog is a cache of the layout (`rebuild` recreates it from the layout alone) plus the
//! store's own bookkeeping. Every digest column holds the compact encoding of [`key`]; the
//! functions below take and return digests as text, and only the table operations see the
//! encoding. Its invariants, each enforced by the one function that writes it:
//!
//! - `BLOBS` has a row for every file the store has published under `blobs/` ([`Writer::insert_blob`]).
//! - `MANIFESTS` has a row for every blob parsed as a manifest, and `EDGES`/`PARENTS` hold exactly
//!   its children, in both directions ([`Writer::insert_manifest`]). The one exception is a stale
//!   `PARENTS` row: a collection that removes a manifest may leave the rows naming it under
//!   children it does not remove, for a later transaction of the same collection to drop in key
//!   order ([`Writer::defer_parent_links`]). Such a row names an absent parent, is listed in the
//!   `PENDING` batch of the transaction that left it, and is counted in `COUNTS` until it goes
//!   ([`Writer::drop_stale_parent_links`]). A row whose parent is absent is therefore always
//!   stale, and readers of `PARENTS` skip absent parents.
//! - `REFERRERS` holds `subject -> (referrer, source)`. `Subject` edges come from manifests and are
//!   written with them; cosign and fallback edges come from tags and are written and removed with
//!   the tag ([`Writer::set_tag`], [`Writer::remove_tag`]), so an edge exists exactly while its
//!   source does. Edges may name a subject that is absent: referrers may arrive first. The one
//!   exception is a stale `Subject` row: a collection that removes a referrer may leave its row
//!   under the subject for a later transaction of the same collection to drop in key order, like
//!   a stale `PARENTS` row ([`Writer::defer_parent_links`]); its `SUBJECTS` inverse goes at once.
//!   Such a row names an absent referrer and is listed in the `PENDING` batch of the transaction
//!   that left it, until it goes ([`Writer::drop_stale_referrer_links`]). A `Subject` row whose
//!   referrer is absent is therefore always stale, and [`Writer::referrers`] skips it.
//! - `TAGS` and `TAGS_BY_DIGEST` are inverse maps ([`Writer::set_tag`], [`Writer::remove_tag`]).
//! - `UNTAGGED` keeps the index.json entries without a tag, as their JSON.
//! - `SUBJECTS` is the inverse of `REFERRERS` (`referrer -> (subject, source)`), written and
//!   removed with it ([`Writer::add_link`], [`Writer::remove_link`]), but for stale rows.
//! - `COUNTS` holds, for every digest something points at, the number of `PARENTS` rows,
//!   present `subject`-field subjects, tags that are roots, and untagged entries; `CANDIDATES`
//!   holds exactly the present digests that [`Writer::recount`] finds unsupported and not
//!   waiting on a subject ([`Writer::waits_on`]; see [`crate::gc`]), except a fallback index
//!   whose entry arrived late, which stays a candidate until its next recount (safe: see
//!   [`Writer::waits_on`]). Every function that changes presence, edges, tags or entries calls
//!   `recount` on each digest it touched, and a change of presence or of a digest's own links
//!   also on that digest's referrers.
//! - `PENDING` lists blob files whose rows were removed and whose unlink may not have happened
//!   yet (the sweep's intent record): one row per removing transaction, keyed by a number and
//!   holding its digests and the stale `PARENTS` rows it left ([`PendingBatch`]), so that a chunk
//!   of thousands of removals adds and later clears one row, not thousands. `CHANGED` records
//!   digests written while a collection runs.
//! - `PINS` holds pinned digests.
//! - `COLLECTED` holds digests a collection removed, with when, while a garbage manifest listing
//!   them or a referrer of them may still be present ([`Writer::add_collected`]); writes check
//!   it before they make a digest reachable (`Store::refuse_collected`, where the invariant is
//!   stated), and a referrer of a digest in it is not dangling (`crate::gc`). An index written
//!   before it existed lacks it, which reads as empty: no rebuild is needed.
//! - `TAG_COUNTED` holds `subject -> referrer` for the cosign and fallback tag links that count
//!   as support in `COUNTS`: only while both are present, and only when, at the moment the link
//!   became active, the subject was a manifest linked to no subject of its own and the referrer a
//!   manifest listing no manifest ([`Writer::count_tag_link`], where the reason is given).

use std::cell::{OnceCell, RefCell, RefMut};
use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{
    MultimapTableDefinition, ReadTransaction, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

mod key;
use crate::error::{Error, Result};
use crate::fasthash::FastSet;
use crate::manifest::Parsed;
use crate::refname::{LinkKind, ReferrerTag};
use key::{DigestKey, Dk, dk};
pub(crate) use key::{decode as digest_of_key, encode as key_of_digest};

/// Version of the schema below. Bump it when a table or an encoding changes: an index of an
/// older version is rebuilt from the layout on the next writable open (it is a cache; pins,
/// which the layout does not hold, are carried over).
/// Version 10: a `subject` link counts as support only from a referrer with a verified digest.
pub const SCHEMA_VERSION: u64 = 10;

pub(crate) const BLOBS: TableDefinition<DigestKey, &[u8]> = TableDefinition::new("blobs");
pub(crate) const MANIFESTS: TableDefinition<DigestKey, &[u8]> = TableDefinition::new("manifests");
pub(crate) const EDGES: MultimapTableDefinition<DigestKey, DigestKey> =
    MultimapTableDefinition::new("edges");
pub(crate) const PARENTS: MultimapTableDefinition<DigestKey, DigestKey> =
    MultimapTableDefinition::new("parents");
pub(crate) const REFERRERS: MultimapTableDefinition<DigestKey, (DigestKey, u8)> =
    MultimapTableDefinition::new("referrers");
pub(crate) const TAGS: TableDefinition<&str, (&str, &[u8])> = TableDefinition::new("tags");
pub(crate) const TAGS_BY_DIGEST: MultimapTableDefinition<DigestKey, &str> =
    MultimapTableDefinition::new("tags_by_digest");
pub(crate) const UNTAGGED: MultimapTableDefinition<DigestKey, &[u8]> =
    MultimapTableDefinition::new("untagged");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const SUBJECTS: MultimapTableDefinition<DigestKey, (DigestKey, u8)> =
    MultimapTableDefinition::new("subjects");
pub(crate) const COUNTS: TableDefinition<DigestKey, [u32; 4]> = TableDefinition::new("counts");
pub(crate) const CANDIDATES: TableDefinition<DigestKey, ()> = TableDefinition::new("candidates");
pub(crate) const PENDING: TableDefinition<u64, &str> = TableDefinition::new("pending_unlinks");
pub(crate) const CHANGED: TableDefinition<DigestKey, ()> = TableDefinition::new("changed");
pub(crate) const PINS: TableDefinition<DigestKey, u64> = TableDefinition::new("pins");
pub(crate) const COLLECTED: TableDefinition<DigestKey, u64> = TableDefinition::new("collected");
pub(crate) const TAG_COUNTED: MultimapTableDefinition<DigestKey, DigestKey> =
    MultimapTableDefinition::new("tag_counted");

/// Indexes into a `COUNTS` row.
pub(crate) mod count {
    /// `PARENTS` rows of the digest: present manifests listing it as a child, and stale rows.
    pub const PARENTS: usize = 0;
    /// Present subjects the digest names in its `subject` field.
    pub const SUBJECT_LINKS: usize = 1;
    /// Tags naming the digest that are roots (not cosign or fallback links).
    pub const TAG_ROOTS: usize = 2;
    /// Untagged index.json entries naming the digest.
    pub const UNTAGGED: usize = 3;
}

/// `META` keys.
pub(crate) mod meta {
    /// Schema version, u64 little-endian.
    pub const SCHEMA: &str = "schema";
    /// Fingerprint of index.json as last written or read by the store.
    pub const INDEX_JSON: &str = "index_json_fingerprint";
    /// Top-level fields of index.json other than `manifests`, as a JSON object.
    pub const INDEX_EXTRA: &str = "index_json_extra";
    /// Present while a writer has the store open: its absence on open means a clean shutdown.
    pub const UNCLEAN: &str = "unclean";
    /// Number of blobs, their bytes, and the number of manifests, three u64 little-endian,
    /// kept by [`super::Writer::insert_blob`] and [`super::Writer::remove_blob`].
    pub const TOTALS: &str = "totals";
    /// Written by a complete collection that saw no other write while it ran, and removed by
    /// every other write: while present, nothing can have become garbage, except dangling
    /// referrers whose grace ends (`options-key expiry-secs`).
    pub const GC_CLEAN: &str = "gc_clean";
    /// The modification times of `blobs/` and `blobs/<alg>/` when the store was last closed
    /// cleanly: a difference on open means another tool added or removed blobs.
    pub const BLOBS_STAMP: &str = "blobs_stamp";
    /// Present when the next collection must walk `blobs/` for orphan files: set by crash
    /// recovery and by reconciling changes another tool made.
    pub const ORPHAN_WALK: &str = "orphan_walk_due";
}

/// Where a referrer edge comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The referrer's `subject` field.
    Subject,
    /// A tag named after the subject (cosign `.sig`/`.att`/`.sbom`, or a fallback index's entry).
    Tag(LinkKind),
    /// The fallback index itself: it lives and dies with the subject it is named after, but is
    /// not one of its referrers in the referrers response.
    FallbackIndex,
}

impl Source {
    pub(crate) fn code(self) -> u8 {
        match self {
            Source::Subject => 1,
            Source::Tag(LinkKind::CosignSig) => 2,
            Source::Tag(LinkKind::CosignAtt) => 3,
            Source::Tag(LinkKind::CosignSbom) => 4,
            Source::Tag(LinkKind::Fallback) => 5,
            Source::FallbackIndex => 6,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Source> {
        Some(match c {
            1 => Source::Subject,
            2 => Source::Tag(LinkKind::CosignSig),
            3 => Source::Tag(LinkKind::CosignAtt),
            4 => Source::Tag(LinkKind::CosignSbom),
            5 => Source::Tag(LinkKind::Fallback),
            6 => Source::FallbackIndex,
            _ => return None,
        })
    }
}

/// What the catalog records of every blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobRecord {
    /// Size in bytes.
    pub size: u64,
    /// Whether it was parsed as a manifest (it has a `MANIFESTS` row).
    pub manifest: bool,
    /// Whether its digest was checked against its content (false for unregistered algorithms,
    /// and for large blobs adopted from a foreign layout until `verify` runs).
    pub verified: bool,
    /// When the store first recorded it, in seconds since the Unix epoch (for a blob `found`
    /// by a walk, when its file was written).
    pub recorded_at: u64,
    /// Found in `blobs/` by a walk after the store had indexed the layout: written by another
    /// tool (perhaps still writing) or left by a crashed writer. Unreachable, it is kept for the
    /// grace period, like an orphan file.
    pub found: bool,
}

impl BlobRecord {
    pub(crate) fn new(size: u64, manifest: bool, verified: bool) -> BlobRecord {
        BlobRecord {
            size,
            manifest,
            verified,
            recorded_at: now_secs(),
            found: false,
        }
    }

    fn encode(&self) -> [u8; 17] {
        let mut b = [0u8; 17];
        b[..8].copy_from_slice(&self.size.to_le_bytes());
        b[8] =
            u8::from(self.manifest) | (u8::from(!self.verified) << 1) | (u8::from(self.found) << 2);
        b[9..].copy_from_slice(&self.recorded_at.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<BlobRecord> {
        if b.len() != 17 {
            return Err(Error::Index(format!("blob record of {} bytes", b.len())));
        }
        let u = |r: std::ops::Range<usize>| u64::from_le_bytes(b[r].try_into().expect("8 bytes"));
        Ok(BlobRecord {
            size: u(0..8),
            manifest: b[8] & 1 != 0,
            verified: b[8] & 2 == 0,
            found: b[8] & 4 != 0,
            recorded_at: u(9..17),
        })
    }
}

/// One `PENDING` row: a removing transaction's unlinks, and the stale `PARENTS` rows it left.
///
/// Stored as text: the digests one per line, then, when there are stale rows, an empty line and
/// one `child parent` line per row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PendingBatch {
    /// The row's key.
    pub key: u64,
    /// Digests whose rows the transaction removed and whose files may still be there.
    pub digests: Vec<String>,
    /// `(child, parent)`: `PARENTS` rows of removed parents, left for a later transaction;
    /// `(subject, referrer)`: `REFERRERS` rows of removed referrers, left likewise; and
    /// `(digest, removed)` for garbage whose count updates the removal of `removed` skipped
    /// ([`Writer::take_skipped_recounts`]); `(digest, digest)` for garbage whose count updates
    /// the removal of its tags or entries skipped ([`Writer::take_uncounted`]). After a crash,
    /// the rows of both tables that a pair names go if its second digest is absent (they are
    /// stale then, whichever kind the pair is; no row pairs a digest with itself), and the first
    /// digests are counted afresh.
    pub links: Vec<(String, String)>,
}

impl PendingBatch {
    fn encode(digests: &[String], links: &[(String, String)]) -> String {
        let mut out = digests.join("\n");
        if !links.is_empty() {
            out.push('\n');
            for (c, p) in links {
                out.push('\n');
                out.push_str(c);
                out.push(' ');
                out.push_str(p);
            }
        }
        out
    }

    fn decode(key: u64, text: &str) -> Result<PendingBatch> {
        let (digests, links) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut batch = PendingBatch {
            key,
            digests: digests
                .split('\n')
                .filter(|d| !d.is_empty())
                .map(str::to_owned)
                .collect(),
            links: Vec::new(),
        };
        for line in links.split('\n').filter(|l| !l.is_empty()) {
            let (c, p) = line
                .split_once(' ')
                .ok_or_else(|| Error::Index(format!("pending batch {key}: bad line {line:?}")))?;
            batch.links.push((c.to_owned(), p.to_owned()));
        }
        Ok(batch)
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the catalog records of every manifest: enough to answer referrers without reading files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    /// Media type.
    #[serde(rename = "m")]
    pub media_type: String,
    /// Referrers-response artifact type.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    #[serde(rename = "n", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The subject, if any.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Size in bytes.
    #[serde(rename = "z")]
    pub size: u64,
    /// Whether its link to its subject counts as support in the reference counts (its subject
    /// field is set, it lists no manifest, and its digest is one the store verifies).
    #[serde(rename = "c", default)]
    pub counted_subject: bool,
    /// Whether it lists no manifest (as a child, or with no media type to tell).
    #[serde(rename = "l", default)]
    pub lists_no_manifest: bool,
}

/// Whether a `subject` link supports its referrer in the reference counts: the subject is a
/// manifest, the referrer lists no manifest (as a child, or with no media type to tell), and the
/// referrer's digest is one the store verifies (`ManifestRecord::counted_subject`). Counted links
/// can then never close a cycle of support: from a counted referrer, strong edges lead only to
/// plain blobs, whose own subject links are not counted; and `subject` links alone cannot form
/// one, as each counted referrer's digest covers its subject's. Names a pusher gives under an
/// algorithm the store cannot verify can (`referrer_cycle` in `tests/hostile.rs`). Links that
/// are not counted are resolved by marking in the reference-count strategy, like tag links.
pub(crate) fn subject_link_counts(subject_is_manifest: bool, referrer: &ManifestRecord) -> bool {
    subject_is_manifest && referrer.counted_subject
}

fn decode_manifest(b: &[u8]) -> Result<ManifestRecord> {
    serde_json::from_slice(b).map_err(|e| Error::Index(format!("manifest record: {e}")))
}

/// A tag as the catalog keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRow {
    /// The tag.
    pub tag: String,
    /// The digest it names.
    pub digest: String,
    /// Its index.json entry, as JSON.
    pub entry: Vec<u8>,
}

/// The strong and referrer edges of a [`Reader`]'s snapshot. Unlike the reader, it may be read
/// from another thread, so that a graph loads its edges beside its blobs.
pub(crate) struct LinkTables {
    edges: redb::ReadOnlyMultimapTable<DigestKey, DigestKey>,
    referrers: redb::ReadOnlyMultimapTable<DigestKey, (DigestKey, u8)>,
}

impl LinkTables {
    /// Every edge, as the stored encodings of (parent, child), in key order.
    pub(crate) fn for_each_edge_key(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        for row in self.edges.iter()? {
            let (k, vals) = row?;
            let parent = k.value();
            let parent = parent.encode();
            for v in vals {
                f(parent.as_ref(), v?.value().encode().as_ref());
            }
        }
        Ok(())
    }

    /// Every referrer edge (all sources), as the stored encodings of (subject, referrer).
    pub(crate) fn for_each_referrer_key(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<()> {
        for row in self.referrers.iter()? {
            let (k, vals) = row?;
            let subject = k.value();
            let subject = subject.encode();
            for v in vals {
                f(subject.as_ref(), v?.value().0.encode().as_ref());
            }
        }
        Ok(())
    }
}

/// Read access to a snapshot. Tables are opened once, on first use.
#[allow(clippy::type_complexity)]
pub(crate) struct Reader {
    txn: ReadTransaction,
    blobs: OnceCell<redb::ReadOnlyTable<DigestKey, &'static [u8]>>,
    manifests: OnceCell<redb::ReadOnlyTable<DigestKey, &'static [u8]>>,
    edges: OnceCell<redb::ReadOnlyMultimapTable<DigestKey, DigestKey>>,
    parents: OnceCell<redb::ReadOnlyMultimapTable<DigestKey, DigestKey>>,
    referrers: OnceCell<redb::ReadOnlyMultimapTable<DigestKey, (DigestKey, u8)>>,
    tags: OnceCell<redb::ReadOnlyTable<&'static str, (&'static str, &'static [u8])>>,
    tags_by_digest: OnceCell<redb::ReadOnlyMultimapTable<DigestKey, &'static str>>,
    untagged: OnceCell<redb::ReadOnlyMultimapTable<DigestKey, &'static [u8]>>,
    meta: OnceCell<redb::ReadOnlyTable<&'static str, &'static [u8]>>,
    subjects: OnceCell<redb::ReadOnlyMultimapTable<DigestKey, (DigestKey, u8)>>,
    counts: OnceCell<redb::ReadOnlyTable<DigestKey, [u32; 4]>>,
    candidates: OnceCell<redb::ReadOnlyTable<DigestKey, ()>>,
    pending: OnceCell<redb::ReadOnlyTable<u64, &'static str>>,
    changed: OnceCell<redb::ReadOnlyTable<DigestKey, ()>>,
    pins: OnceCell<redb::ReadOnlyTable<DigestKey, u64>>,
    tag_counted: OnceCell<redb::ReadOnlyMultimapTable<DigestKey, DigestKey>>,
}

/// The reads both [`Reader`] and [`Writer`] offer, written once over redb's readable tables.
#[allow(clippy::let_and_return)] // the bindings end borrows of the table before it drops
macro_rules! reads {
    () => {
        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn blob(&self, digest: &str) -> Result<Option<BlobRecord>> {
            let t = self.t_blobs()?;
            let r = t
                .get(dk(digest))?
                .map(|v| BlobRecord::decode(v.value()))
                .transpose();
            r
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn manifest(&self, digest: &str) -> Result<Option<ManifestRecord>> {
            let t = self.t_manifests()?;
            let r = t
                .get(dk(digest))?
                .map(|v| decode_manifest(v.value()))
                .transpose();
            r
        }

        /// A tag's digest and index.json entry.
        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn tag(&self, tag: &str) -> Result<Option<(String, Vec<u8>)>> {
            let t = self.t_tags()?;
            let r = t.get(tag)?.map(|v| {
                let (d, e) = v.value();
                (d.to_owned(), e.to_vec())
            });
            Ok(r)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn tags(&self) -> Result<Vec<TagRow>> {
            let t = self.t_tags()?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let (digest, entry) = v.value();
                out.push(TagRow {
                    tag: k.value().to_owned(),
                    digest: digest.to_owned(),
                    entry: entry.to_vec(),
                });
            }
            Ok(out)
        }

        /// The digests that tags and untagged index.json entries name, sorted, each once.
        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn named_digests(&self) -> Result<Vec<String>> {
            let mut out = Vec::new();
            for row in self.t_tags()?.iter()? {
                out.push(row?.1.value().0.to_owned());
            }
            for row in self.t_untagged()?.iter()? {
                out.push(row?.0.value().to_string());
            }
            out.sort_unstable();
            out.dedup();
            Ok(out)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn tags_of(&self, digest: &str) -> Result<Vec<String>> {
            let t = self.t_tags_by_digest()?;
            let mut out = Vec::new();
            for v in t.get(dk(digest))? {
                out.push(v?.value().to_owned());
            }
            Ok(out)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn children(&self, digest: &str) -> Result<Vec<String>> {
            digests(&*self.t_edges()?, digest)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn untagged(&self) -> Result<Vec<(String, Vec<u8>)>> {
            let t = self.t_untagged()?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, vals) = row?;
                for v in vals {
                    out.push((k.value().to_string(), v?.value().to_vec()));
                }
            }
            Ok(out)
        }

        /// The referrers linked to `subject`, with the source of each link; stale rows (a
        /// `Subject` row naming an absent referrer) are skipped.
        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn referrers(&self, subject: &str) -> Result<Vec<(String, Source)>> {
            let mut out = Vec::new();
            let mut named = Vec::new();
            {
                let t = self.t_referrers()?;
                for v in t.get(dk(subject))? {
                    let v = v?;
                    let (r, code) = v.value();
                    if let Some(src) = Source::from_code(code) {
                        named.push((r.to_string(), src));
                    }
                }
            }
            for (r, src) in named {
                if src != Source::Subject || self.blob(&r)?.is_some() {
                    out.push((r, src));
                }
            }
            Ok(out)
        }

        /// The subjects a referrer is linked to, with the source of each link.
        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn subjects(&self, referrer: &str) -> Result<Vec<(String, Source)>> {
            subjects_in(&*self.t_subjects()?, referrer)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn counts(&self, digest: &str) -> Result<[u32; 4]> {
            let t = self.t_counts()?;
            let r = t.get(dk(digest))?.map(|v| v.value()).unwrap_or([0; 4]);
            Ok(r)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn is_pinned(&self, digest: &str) -> Result<bool> {
            let t = self.t_pins()?;
            let r = t.get(dk(digest))?.is_some();
            Ok(r)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn pins(&self) -> Result<Vec<String>> {
            keys(&*self.t_pins()?)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn pending(&self) -> Result<Vec<String>> {
            Ok(self
                .pending_batches()?
                .into_iter()
                .flat_map(|b| b.digests)
                .collect())
        }

        /// Whether `PENDING` holds any batch, without decoding them.
        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn has_pending(&self) -> Result<bool> {
            Ok(!self.t_pending()?.is_empty()?)
        }

        /// The `PENDING` batches.
        pub(crate) fn pending_batches(&self) -> Result<Vec<PendingBatch>> {
            let mut out = Vec::new();
            for row in self.t_pending()?.iter()? {
                let (k, v) = row?;
                out.push(PendingBatch::decode(k.value(), v.value())?);
            }
            Ok(out)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn candidates(&self) -> Result<Vec<String>> {
            keys(&*self.t_candidates()?)
        }

        /// The present manifests that list `digest` (stale `PARENTS` rows name absent ones).
        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn parents(&self, digest: &str) -> Result<Vec<String>> {
            let mut out = self.parent_rows(digest)?;
            let mut present = Vec::with_capacity(out.len());
            for p in out.drain(..) {
                if self.blob(&p)?.is_some() {
                    present.push(p);
                }
            }
            Ok(present)
        }

        /// Every `PARENTS` row of `digest`, stale ones included.
        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn parent_rows(&self, digest: &str) -> Result<Vec<String>> {
            digests(&*self.t_parents()?, digest)
        }

        /// The referrers whose tag links from `subject` count as support (`TAG_COUNTED`).
        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn counted_tag_referrers(&self, subject: &str) -> Result<Vec<String>> {
            digests(&*self.t_tag_counted()?, subject)
        }

        #[allow(dead_code)] // each of the two users needs only some
        pub(crate) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
            let t = self.t_meta()?;
            let r = t.get(key)?.map(|v| v.value().to_vec());
            Ok(r)
        }
    };
}

/// The tables a [`RowHint`] covers, as indexes into its key sets: the three link tables and
/// `CANDIDATES`.
#[derive(Clone, Copy)]
enum Hinted {
    Subjects = 0,
    Referrers = 1,
    TagCounted = 2,
    Candidates = 3,
}

/// The keys within one range of digests that have rows in each [`Hinted`] table
/// ([`Writer::hint_rows`]).
struct RowHint {
    lo: Vec<u8>,
    hi: Vec<u8>,
    keys: [FastSet<Vec<u8>>; 4],
}

/// Feeds `add` the key of each row of a multimap range until it returns false; returns whether
/// it never did.
fn all_keys<V: redb::Key + 'static>(
    range: redb::MultimapRange<'_, DigestKey, V>,
    add: &mut impl FnMut(Dk<'_>) -> bool,
) -> Result<bool> {
    for row in range {
        let (k, _) = row?;
        if !add(k.value()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every row of a link table (`REFERRERS` or `SUBJECTS`): key, linked digest, source code.
fn link_rows(
    t: &impl ReadableMultimapTable<DigestKey, (DigestKey, u8)>,
) -> Result<Vec<(String, String, u8)>> {
    let mut out = Vec::new();
    for row in t.iter()? {
        let (k, vals) = row?;
        let key = k.value().to_string();
        for v in vals {
            let v = v?;
            let (d, code) = v.value();
            out.push((key.clone(), d.to_string(), code));
        }
    }
    Ok(out)
}

/// Every row of `EDGES` or `PARENTS`: key, value.
fn edge_rows(
    t: &impl ReadableMultimapTable<DigestKey, DigestKey>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for row in t.iter()? {
        let (k, vals) = row?;
        let key = k.value().to_string();
        for v in vals {
            out.push((key.clone(), v?.value().to_string()));
        }
    }
    Ok(out)
}

fn keys<V: redb::Value + 'static>(t: &impl ReadableTable<DigestKey, V>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for row in t.iter()? {
        out.push(row?.0.value().to_string());
    }
    Ok(out)
}

fn digests(t: &impl ReadableMultimapTable<DigestKey, DigestKey>, key: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for v in t.get(dk(key))? {
        out.push(v?.value().to_string());
    }
    Ok(out)
}

#[allow(dead_code)] // not every table is read through a Reader
impl Reader {
    /// Reads every page of the tables a collection's sweep writes and its mark does not read,
    /// in the order the sweep first needs them. redb caches pages per database, not per
    /// transaction: read here, on a thread that would otherwise idle, they are in memory when
    /// the sweep needs them, instead of being read one page and one system call at a time by
    /// the thread that holds the write lock. Walking a table's pages for its statistics reads
    /// each page once and decodes no row.
    pub(crate) fn warm_sweep_tables(&self) -> Result<()> {
        let txn = &self.txn;
        txn.open_untyped_multimap_table(TAGS_BY_DIGEST)?.stats()?;
        txn.open_untyped_table(TAGS)?.stats()?;
        txn.open_untyped_multimap_table(SUBJECTS)?.stats()?;
        txn.open_untyped_table(COUNTS)?.stats()?;
        txn.open_untyped_multimap_table(TAG_COUNTED)?.stats()?;
        txn.open_untyped_table(CANDIDATES)?.stats()?;
        txn.open_untyped_table(MANIFESTS)?.stats()?;
        txn.open_untyped_multimap_table(PARENTS)?.stats()?;
        Ok(())
    }

    /// The digests in `COLLECTED`, with when a collection removed them.
    pub(crate) fn collected(&self) -> Result<std::collections::HashMap<String, u64>> {
        let t = match self.txn.open_table(COLLECTED) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Default::default()),
            Err(e) => return Err(e.into()),
        };
        let mut out = std::collections::HashMap::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.insert(k.value().to_string(), v.value());
        }
        Ok(out)
    }

    fn t_blobs(&self) -> Result<&redb::ReadOnlyTable<DigestKey, &'static [u8]>> {
        if self.blobs.get().is_none() {
            let _ = self.blobs.set(self.txn.open_table(BLOBS)?);
        }
        self.blobs
            .get()
            .ok_or_else(|| Error::Index("table blobs vanished".into()))
    }

    fn t_manifests(&self) -> Result<&redb::ReadOnlyTable<DigestKey, &'static [u8]>> {
        if self.manifests.get().is_none() {
            let _ = self.manifests.set(self.txn.open_table(MANIFESTS)?);
        }
        self.manifests
            .get()
            .ok_or_else(|| Error::Index("table manifests vanished".into()))
    }

    fn t_edges(&self) -> Result<&redb::ReadOnlyMultimapTable<DigestKey, DigestKey>> {
        if self.edges.get().is_none() {
            let _ = self.edges.set(self.txn.open_multimap_table(EDGES)?);
        }
        self.edges
            .get()
            .ok_or_else(|| Error::Index("table edges vanished".into()))
    }

    fn t_parents(&self) -> Result<&redb::ReadOnlyMultimapTable<DigestKey, DigestKey>> {
        if self.parents.get().is_none() {
            let _ = self.parents.set(self.txn.open_multimap_table(PARENTS)?);
        }
        self.parents
            .get()
            .ok_or_else(|| Error::Index("table parents vanished".into()))
    }

    fn t_referrers(&self) -> Result<&redb::ReadOnlyMultimapTable<DigestKey, (DigestKey, u8)>> {
        if self.referrers.get().is_none() {
            let _ = self.referrers.set(self.txn.open_multimap_table(REFERRERS)?);
        }
        self.referrers
            .get()
            .ok_or_else(|| Error::Index("table referrers vanished".into()))
    }

    fn t_tags(&self) -> Result<&redb::ReadOnlyTable<&'static str, (&'static str, &'static [u8])>> {
        if self.tags.get().is_none() {
            let _ = self.tags.set(self.txn.open_table(TAGS)?);
        }
        self.tags
            .get()
            .ok_or_else(|| Error::Index("table tags vanished".into()))
    }

    fn t_tags_by_digest(&self) -> Result<&redb::ReadOnlyMultimapTable<DigestKey, &'static str>> {
        if self.tags_by_digest.get().is_none() {
            let _ = self
                .tags_by_digest
                .set(self.txn.open_multimap_table(TAGS_BY_DIGEST)?);
        }
        self.tags_by_digest
            .get()
            .ok_or_else(|| Error::Index("table tags_by_digest vanished".into()))
    }

    fn t_untagged(&self) -> Result<&redb::ReadOnlyMultimapTable<DigestKey, &'static [u8]>> {
        if self.untagged.get().is_none() {
            let _ = self.untagged.set(self.txn.open_multimap_table(UNTAGGED)?);
        }
        self.untagged
            .get()
            .ok_or_else(|| Error::Index("table untagged vanished".into()))
    }

    fn t_meta(&self) -> Result<&redb::ReadOnlyTable<&'static str, &'static [u8]>> {
        if self.meta.get().is_none() {
            let _ = self.meta.set(self.txn.open_table(META)?);
        }
        self.meta
            .get()
            .ok_or_else(|| Error::Index("table meta vanished".into()))
    }

    fn t_subjects(&self) -> Result<&redb::ReadOnlyMultimapTable<DigestKey, (DigestKey, u8)>> {
        if self.subjects.get().is_none() {
            let _ = self.subjects.set(self.txn.open_multimap_table(SUBJECTS)?);
        }
        self.subjects
            .get()
            .ok_or_else(|| Error::Index("table subjects vanished".into()))
    }

    fn t_counts(&self) -> Result<&redb::ReadOnlyTable<DigestKey, [u32; 4]>> {
        if self.counts.get().is_none() {
            let _ = self.counts.set(self.txn.open_table(COUNTS)?);
        }
        self.counts
            .get()
            .ok_or_else(|| Error::Index("table counts vanished".into()))
    }

    fn t_candidates(&self) -> Result<&redb::ReadOnlyTable<DigestKey, ()>> {
        if self.candidates.get().is_none() {
            let _ = self.candidates.set(self.txn.open_table(CANDIDATES)?);
        }
        self.candidates
            .get()
            .ok_or_else(|| Error::Index("table candidates vanished".into()))
    }

    fn t_pending(&self) -> Result<&redb::ReadOnlyTable<u64, &'static str>> {
        if self.pending.get().is_none() {
            let _ = self.pending.set(self.txn.open_table(PENDING)?);
        }
        self.pending
            .get()
            .ok_or_else(|| Error::Index("table pending vanished".into()))
    }

    fn t_changed(&self) -> Result<&redb::ReadOnlyTable<DigestKey, ()>> {
        if self.changed.get().is_none() {
            let _ = self.changed.set(self.txn.open_table(CHANGED)?);
        }
        self.changed
            .get()
            .ok_or_else(|| Error::Index("table changed vanished".into()))
    }

    fn t_pins(&self) -> Result<&redb::ReadOnlyTable<DigestKey, u64>> {
        if self.pins.get().is_none() {
            let _ = self.pins.set(self.txn.open_table(PINS)?);
        }
        self.pins
            .get()
            .ok_or_else(|| Error::Index("table pins vanished".into()))
    }

    fn t_tag_counted(&self) -> Result<&redb::ReadOnlyMultimapTable<DigestKey, DigestKey>> {
        if self.tag_counted.get().is_none() {
            let _ = self
                .tag_counted
                .set(self.txn.open_multimap_table(TAG_COUNTED)?);
        }
        self.tag_counted
            .get()
            .ok_or_else(|| Error::Index("table tag_counted vanished".into()))
    }
}

impl Reader {
    pub(crate) fn new(txn: ReadTransaction) -> Reader {
        Reader {
            txn,
            blobs: OnceCell::new(),
            manifests: OnceCell::new(),
            edges: OnceCell::new(),
            parents: OnceCell::new(),
            referrers: OnceCell::new(),
            tags: OnceCell::new(),
            tags_by_digest: OnceCell::new(),
            untagged: OnceCell::new(),
            meta: OnceCell::new(),
            subjects: OnceCell::new(),
            counts: OnceCell::new(),
            candidates: OnceCell::new(),
            pending: OnceCell::new(),
            changed: OnceCell::new(),
            pins: OnceCell::new(),
            tag_counted: OnceCell::new(),
        }
    }

    pub(crate) fn for_each_blob(&self, mut f: impl FnMut(&str, BlobRecord)) -> Result<()> {
        for row in self.t_blobs()?.iter()? {
            let (k, v) = row?;
            f(k.value().text().as_str(), BlobRecord::decode(v.value())?);
        }
        Ok(())
    }

    /// Every blob, by the stored encoding of its digest ([`key_of_digest`]), in key order.
    pub(crate) fn for_each_blob_key(&self, mut f: impl FnMut(&[u8], BlobRecord)) -> Result<()> {
        for row in self.t_blobs()?.iter()? {
            let (k, v) = row?;
            f(k.value().encode().as_ref(), BlobRecord::decode(v.value())?);
        }
        Ok(())
    }

    /// The edge and referrer tables of this snapshot, to read on another thread.
    pub(crate) fn link_tables(&self) -> Result<LinkTables> {
        Ok(LinkTables {
            edges: self.txn.open_multimap_table(EDGES)?,
            referrers: self.txn.open_multimap_table(REFERRERS)?,
        })
    }

    /// Every tag's name and digest, without its stored descriptor.
    pub(crate) fn for_each_tag(&self, mut f: impl FnMut(&str, &str)) -> Result<()> {
        for row in self.t_tags()?.iter()? {
            let (k, v) = row?;
            f(k.value(), v.value().0);
        }
        Ok(())
    }

    /// The digest of every untagged index.json entry (once per entry), in key order.
    pub(crate) fn for_each_untagged_key(&self, mut f: impl FnMut(&[u8])) -> Result<()> {
        for row in self.t_untagged()?.iter()? {
            let (k, vals) = row?;
            let d = k.value();
            let d = d.encode();
            for v in vals {
                v?;
                f(d.as_ref());
            }
        }
        Ok(())
    }

    reads!();

    /// How many digests `CANDIDATES` holds (without reading them).
    pub(crate) fn candidate_count(&self) -> Result<u64> {
        Ok(self.t_candidates()?.len()?)
    }

    pub(crate) fn table_sizes(&self) -> Result<Counts> {
        let [blobs, bytes, manifests] = decode_totals(self.meta(meta::TOTALS)?.as_deref());
        Ok(Counts {
            blobs,
            bytes,
            manifests,
            tags: self.t_tags()?.len()?,
            untagged: self.t_untagged()?.len()?,
            edges: self.t_edges()?.len()?,
            referrer_edges: self.t_referrers()?.len()?,
        })
    }
}

fn decode_totals(b: Option<&[u8]>) -> [u64; 3] {
    let mut out = [0u64; 3];
    if let Some(b) = b.filter(|b| b.len() == 24) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        }
    }
    out
}

/// Table sizes, for `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Blobs recorded (manifests included).
    pub blobs: u64,
    /// Their total size.
    pub bytes: u64,
    /// Manifests and indexes among them.
    pub manifests: u64,
    /// Tags.
    pub tags: u64,
    /// index.json entries without a tag.
    pub untagged: u64,
    /// Strong edges.
    pub edges: u64,
    /// Referrer edges, all sources.
    pub referrer_edges: u64,
}

/// The digests a writer leaves uncounted ([`Writer::skip_counts_of`]), and those it has left so.
struct Uncounted<'t> {
    skip: Box<dyn Fn(&str) -> bool + 't>,
    skipped: Vec<String>,
}

/// Write access inside one write transaction.
#[allow(clippy::type_complexity)]
pub(crate) struct Writer<'t> {
    txn: &'t WriteTransaction,
    /// Record written digests in `CHANGED` (a collection is running).
    track: bool,
    /// The collector's own writes do not count as changes since the last collection.
    collector: bool,
    /// Whether this writer has already cleared `meta::GC_CLEAN`.
    dirtied: std::cell::Cell<bool>,
    /// Whether this writer has removed a tag or an untagged entry (index.json must follow).
    names_removed: std::cell::Cell<bool>,
    /// Changes to `meta::TOTALS` held back until [`Writer::flush_counts`], when deferred.
    deferred_totals: std::cell::Cell<Option<[i64; 3]>>,
    /// `PARENTS` rows of removed manifests left in place, when deferred
    /// ([`Writer::defer_parent_links`]).
    deferred_links: RefCell<Option<Vec<(String, String)>>>,
    /// `(subject, referrer)`: `REFERRERS` rows of removed referrers left in place while
    /// `deferred_links` is set ([`Writer::take_deferred_referrer_links`]).
    deferred_referrer_links: RefCell<Vec<(String, String)>>,
    /// `(digest, removed)`: count updates skipped because `digest` is doomed too, when deferred
    /// ([`Writer::take_skipped_recounts`]).
    skipped_recounts: RefCell<Vec<(String, String)>>,
    /// Digests whose count updates are skipped, and those skipped so far
    /// ([`Writer::skip_counts_of`]).
    uncounted: RefCell<Option<Uncounted<'t>>>,
    /// Which keys of a range have rows in the hinted tables, when hinted
    /// ([`Writer::hint_rows`]).
    row_hint: RefCell<Option<RowHint>>,
    /// Tables opened once per writer (opening a table costs more than most operations on it).
    blobs: RefCell<Option<redb::Table<'t, DigestKey, &'static [u8]>>>,
    manifests: RefCell<Option<redb::Table<'t, DigestKey, &'static [u8]>>>,
    edges: RefCell<Option<redb::MultimapTable<'t, DigestKey, DigestKey>>>,
    parents: RefCell<Option<redb::MultimapTable<'t, DigestKey, DigestKey>>>,
    referrers: RefCell<Option<redb::MultimapTable<'t, DigestKey, (DigestKey, u8)>>>,
    tags: RefCell<Option<redb::Table<'t, &'static str, (&'static str, &'static [u8])>>>,
    tags_by_digest: RefCell<Option<redb::MultimapTable<'t, DigestKey, &'static str>>>,
    untagged: RefCell<Option<redb::MultimapTable<'t, DigestKey, &'static [u8]>>>,
    meta: RefCell<Option<redb::Table<'t, &'static str, &'static [u8]>>>,
    subjects: RefCell<Option<redb::MultimapTable<'t, DigestKey, (DigestKey, u8)>>>,
    counts: RefCell<Option<redb::Table<'t, DigestKey, [u32; 4]>>>,
    candidates: RefCell<Option<redb::Table<'t, DigestKey, ()>>>,
    pending: RefCell<Option<redb::Table<'t, u64, &'static str>>>,
    changed: RefCell<Option<redb::Table<'t, DigestKey, ()>>>,
    pins: RefCell<Option<redb::Table<'t, DigestKey, u64>>>,
    tag_counted: RefCell<Option<redb::MultimapTable<'t, DigestKey, DigestKey>>>,
    collected: RefCell<Option<redb::Table<'t, DigestKey, u64>>>,
}

#[allow(clippy::type_complexity)] // the table accessors name redb's table types in full
impl<'t> Writer<'t> {
    fn t_blobs(&self) -> Result<RefMut<'_, redb::Table<'t, DigestKey, &'static [u8]>>> {
        if self.blobs.try_borrow()?.is_none() {
            *self.blobs.try_borrow_mut()? = Some(self.txn.open_table(BLOBS)?);
        }
        RefMut::filter_map(self.blobs.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table blobs vanished".into()))
    }

    fn t_manifests(&self) -> Result<RefMut<'_, redb::Table<'t, DigestKey, &'static [u8]>>> {
        if self.manifests.try_borrow()?.is_none() {
            *self.manifests.try_borrow_mut()? = Some(self.txn.open_table(MANIFESTS)?);
        }
        RefMut::filter_map(self.manifests.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table manifests vanished".into()))
    }

    fn t_edges(&self) -> Result<RefMut<'_, redb::MultimapTable<'t, DigestKey, DigestKey>>> {
        if self.edges.try_borrow()?.is_none() {
            *self.edges.try_borrow_mut()? = Some(self.txn.open_multimap_table(EDGES)?);
        }
        RefMut::filter_map(self.edges.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table edges vanished".into()))
    }

    fn t_parents(&self) -> Result<RefMut<'_, redb::MultimapTable<'t, DigestKey, DigestKey>>> {
        if self.parents.try_borrow()?.is_none() {
            *self.parents.try_borrow_mut()? = Some(self.txn.open_multimap_table(PARENTS)?);
        }
        RefMut::filter_map(self.parents.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table parents vanished".into()))
    }

    fn t_referrers(
        &self,
    ) -> Result<RefMut<'_, redb::MultimapTable<'t, DigestKey, (DigestKey, u8)>>> {
        if self.referrers.try_borrow()?.is_none() {
            *self.referrers.try_borrow_mut()? = Some(self.txn.open_multimap_table(REFERRERS)?);
        }
        RefMut::filter_map(self.referrers.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table referrers vanished".into()))
    }

    fn t_tags(
        &self,
    ) -> Result<RefMut<'_, redb::Table<'t, &'static str, (&'static str, &'static [u8])>>> {
        if self.tags.try_borrow()?.is_none() {
            *self.tags.try_borrow_mut()? = Some(self.txn.open_table(TAGS)?);
        }
        RefMut::filter_map(self.tags.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table tags vanished".into()))
    }

    fn t_tags_by_digest(
        &self,
    ) -> Result<RefMut<'_, redb::MultimapTable<'t, DigestKey, &'static str>>> {
        if self.tags_by_digest.try_borrow()?.is_none() {
            *self.tags_by_digest.try_borrow_mut()? =
                Some(self.txn.open_multimap_table(TAGS_BY_DIGEST)?);
        }
        RefMut::filter_map(self.tags_by_digest.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table tags_by_digest vanished".into()))
    }

    fn t_untagged(&self) -> Result<RefMut<'_, redb::MultimapTable<'t, DigestKey, &'static [u8]>>> {
        if self.untagged.try_borrow()?.is_none() {
            *self.untagged.try_borrow_mut()? = Some(self.txn.open_multimap_table(UNTAGGED)?);
        }
        RefMut::filter_map(self.untagged.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table untagged vanished".into()))
    }

    fn t_meta(&self) -> Result<RefMut<'_, redb::Table<'t, &'static str, &'static [u8]>>> {
        if self.meta.try_borrow()?.is_none() {
            *self.meta.try_borrow_mut()? = Some(self.txn.open_table(META)?);
        }
        RefMut::filter_map(self.meta.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table meta vanished".into()))
    }

    fn t_subjects(
        &self,
    ) -> Result<RefMut<'_, redb::MultimapTable<'t, DigestKey, (DigestKey, u8)>>> {
        if self.subjects.try_borrow()?.is_none() {
            *self.subjects.try_borrow_mut()? = Some(self.txn.open_multimap_table(SUBJECTS)?);
        }
        RefMut::filter_map(self.subjects.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table subjects vanished".into()))
    }

    fn t_counts(&self) -> Result<RefMut<'_, redb::Table<'t, DigestKey, [u32; 4]>>> {
        if self.counts.try_borrow()?.is_none() {
            *self.counts.try_borrow_mut()? = Some(self.txn.open_table(COUNTS)?);
        }
        RefMut::filter_map(self.counts.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table counts vanished".into()))
    }

    fn t_candidates(&self) -> Result<RefMut<'_, redb::Table<'t, DigestKey, ()>>> {
        if self.candidates.try_borrow()?.is_none() {
            *self.candidates.try_borrow_mut()? = Some(self.txn.open_table(CANDIDATES)?);
        }
        RefMut::filter_map(self.candidates.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table candidates vanished".into()))
    }

    fn t_pending(&self) -> Result<RefMut<'_, redb::Table<'t, u64, &'static str>>> {
        if self.pending.try_borrow()?.is_none() {
            *self.pending.try_borrow_mut()? = Some(self.txn.open_table(PENDING)?);
        }
        RefMut::filter_map(self.pending.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table pending vanished".into()))
    }

    fn t_changed(&self) -> Result<RefMut<'_, redb::Table<'t, DigestKey, ()>>> {
        if self.changed.try_borrow()?.is_none() {
            *self.changed.try_borrow_mut()? = Some(self.txn.open_table(CHANGED)?);
        }
        RefMut::filter_map(self.changed.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table changed vanished".into()))
    }

    fn t_pins(&self) -> Result<RefMut<'_, redb::Table<'t, DigestKey, u64>>> {
        if self.pins.try_borrow()?.is_none() {
            *self.pins.try_borrow_mut()? = Some(self.txn.open_table(PINS)?);
        }
        RefMut::filter_map(self.pins.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table pins vanished".into()))
    }

    fn t_collected(&self) -> Result<RefMut<'_, redb::Table<'t, DigestKey, u64>>> {
        if self.collected.try_borrow()?.is_none() {
            *self.collected.try_borrow_mut()? = Some(self.txn.open_table(COLLECTED)?);
        }
        RefMut::filter_map(self.collected.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table collected vanished".into()))
    }

    fn t_tag_counted(&self) -> Result<RefMut<'_, redb::MultimapTable<'t, DigestKey, DigestKey>>> {
        if self.tag_counted.try_borrow()?.is_none() {
            *self.tag_counted.try_borrow_mut()? = Some(self.txn.open_multimap_table(TAG_COUNTED)?);
        }
        RefMut::filter_map(self.tag_counted.try_borrow_mut()?, Option::as_mut)
            .map_err(|_| Error::Index("table tag_counted vanished".into()))
    }

    pub(crate) fn new(txn: &'t WriteTransaction) -> Writer<'t> {
        Writer::tracking(txn, false)
    }

    /// A writer that records every digest it writes in `CHANGED`, for a running collection.
    pub(crate) fn tracking(txn: &'t WriteTransaction, track: bool) -> Writer<'t> {
        Writer {
            txn,
            track,
            collector: false,
            dirtied: std::cell::Cell::new(false),
            names_removed: std::cell::Cell::new(false),
            deferred_totals: std::cell::Cell::new(None),
            deferred_links: RefCell::new(None),
            deferred_referrer_links: RefCell::new(Vec::new()),
            skipped_recounts: RefCell::new(Vec::new()),
            uncounted: RefCell::new(None),
            row_hint: RefCell::new(None),
            blobs: RefCell::new(None),
            manifests: RefCell::new(None),
            edges: RefCell::new(None),
            parents: RefCell::new(None),
            referrers: RefCell::new(None),
            tags: RefCell::new(None),
            tags_by_digest: RefCell::new(None),
            untagged: RefCell::new(None),
            meta: RefCell::new(None),
            subjects: RefCell::new(None),
            counts: RefCell::new(None),
            candidates: RefCell::new(None),
            pending: RefCell::new(None),
            changed: RefCell::new(None),
            pins: RefCell::new(None),
            tag_counted: RefCell::new(None),
            collected: RefCell::new(None),
        }
    }

    reads!();

    /// Creates every table, so that readers never meet a missing one, and checks the schema.
    pub(crate) fn migrate(&self) -> Result<()> {
        self.t_blobs()?;
        self.t_manifests()?;
        self.t_edges()?;
        self.t_parents()?;
        self.t_referrers()?;
        self.t_tags()?;
        self.t_tags_by_digest()?;
        self.t_untagged()?;
        self.t_subjects()?;
        self.t_counts()?;
        self.t_candidates()?;
        self.t_pending()?;
        self.t_changed()?;
        self.t_pins()?;
        self.t_tag_counted()?;
        match self.meta(meta::SCHEMA)? {
            None => self.set_meta(meta::SCHEMA, &SCHEMA_VERSION.to_le_bytes()),
            Some(v) => {
                let found = u64::from_le_bytes(v.as_slice().try_into().unwrap_or([0xff; 8]));
                if found > SCHEMA_VERSION {
                    Err(Error::SchemaTooNew {
                        found,
                        supported: SCHEMA_VERSION,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Holds changes to the totals in memory until [`Writer::flush_counts`], which the caller
    /// must call before committing: one write of `meta::TOTALS` for many removals.
    pub(crate) fn defer_counts(&self) {
        if self.deferred_totals.get().is_none() {
            self.deferred_totals.set(Some([0; 3]));
        }
    }

    /// Leaves in place the `PARENTS` rows, and their counts, of each removed manifest under its
    /// children that stay, and collects them for [`Writer::take_deferred_links`]: they become
    /// the stale rows of the module's invariants. A collection removes thousands of manifests
    /// per transaction, whose children that stay (layers shared with live images) lie all over
    /// the key space: dropping their rows at once would rewrite most of the `PARENTS` and
    /// `COUNTS` pages in every transaction. Left for later, they are dropped in key order, by
    /// the transactions that rewrite those pages anyway ([`Writer::drop_stale_parent_links`]).
    /// The same holds for the `REFERRERS` rows of removed referrers under their subjects, which
    /// are left too ([`Writer::take_deferred_referrer_links`]). The caller must record the rows
    /// of both in the transaction's `PENDING` batch.
    pub(crate) fn defer_parent_links(&self) -> Result<()> {
        let mut links = self.deferred_links.try_borrow_mut()?;
        if links.is_none() {
            *links = Some(Vec::new());
        }
        Ok(())
    }

    /// Reads once which keys from `lo` to `hi` (inclusive, in stored order) have rows in the
    /// link tables, `SUBJECTS`, `REFERRERS` and `TAG_COUNTED`, and in `CANDIDATES`, so that
    /// the lookups and removals of a key in that range that has none are skipped
    /// (`Writer::may_have_rows`). A collection removes its garbage in key order and looks up
    /// each digest's links, and most digests have none and are no candidate: one range read
    /// per table replaces hundreds of lookups.
    ///
    /// Invariant: while a hint is held, a key it shows without rows in a table has none. Removing
    /// rows keeps that. The only two writers that add link rows, [`Writer::add_link`] and
    /// [`Writer::count_tag_link`], drop the hint first (`Writer::drop_row_hint`); the only one
    /// that adds `CANDIDATES` rows, [`Writer::recount`], adds the key to the hint. When the
    /// range holds more than `limit` keys in a table, no hint is kept: reading them would cost
    /// more than the lookups it saves.
    pub(crate) fn hint_rows(&self, lo: &str, hi: &str, limit: usize) -> Result<()> {
        self.drop_row_hint()?;
        let (lo_key, hi_key) = (key::encode(lo), key::encode(hi));
        if lo_key.as_ref() > hi_key.as_ref() {
            return Ok(());
        }
        let range = dk(lo)..=dk(hi);
        let mut keys: [FastSet<Vec<u8>>; 4] = Default::default();
        for (table, set) in [
            Hinted::Subjects,
            Hinted::Referrers,
            Hinted::TagCounted,
            Hinted::Candidates,
        ]
        .into_iter()
        .zip(keys.iter_mut())
        {
            let mut add = |k: Dk<'_>| -> bool {
                set.insert(k.encode().as_ref().to_vec());
                set.len() <= limit
            };
            let within = match table {
                Hinted::Subjects => all_keys(self.t_subjects()?.range(range.clone())?, &mut add)?,
                Hinted::Referrers => all_keys(self.t_referrers()?.range(range.clone())?, &mut add)?,
                Hinted::TagCounted => {
                    all_keys(self.t_tag_counted()?.range(range.clone())?, &mut add)?
                }
                Hinted::Candidates => {
                    let t = self.t_candidates()?;
                    let mut within = true;
                    for row in t.range(range.clone())? {
                        if !add(row?.0.value()) {
                            within = false;
                            break;
                        }
                    }
                    within
                }
            };
            if !within {
                return Ok(());
            }
        }
        *self.row_hint.try_borrow_mut()? = Some(RowHint {
            lo: lo_key.as_ref().to_vec(),
            hi: hi_key.as_ref().to_vec(),
            keys,
        });
        Ok(())
    }

    /// For each hinted table, in [`Hinted`] order, whether `digest` may have rows in it: false
    /// only where the hint held ([`Writer::hint_rows`]) covers `digest` and shows it has none.
    fn may_have_rows(&self, digest: &str) -> Result<[bool; 4]> {
        self.may_have_key(key::encode(digest).as_ref())
    }

    /// [`Writer::may_have_rows`] of a digest's stored encoding.
    fn may_have_key(&self, k: &[u8]) -> Result<[bool; 4]> {
        let hint = self.row_hint.try_borrow()?;
        let Some(h) = hint.as_ref() else {
            return Ok([true; 4]);
        };
        if k < h.lo.as_slice() || k > h.hi.as_slice() {
            return Ok([true; 4]);
        }
        Ok(h.keys.each_ref().map(|set| set.contains(k)))
    }

    /// Records in the hint held, if it covers `digest`, that `digest` now has a `CANDIDATES` row.
    fn hint_candidate(&self, digest: &str) -> Result<()> {
        if let Some(h) = self.row_hint.try_borrow_mut()?.as_mut() {
            let k = key::encode(digest);
            let k = k.as_ref();
            if k >= h.lo.as_slice() && k <= h.hi.as_slice() {
                h.keys[Hinted::Candidates as usize].insert(k.to_vec());
            }
        }
        Ok(())
    }

    fn drop_row_hint(&self) -> Result<()> {
        *self.row_hint.try_borrow_mut()? = None;
        Ok(())
    }

    /// `(digest, removed)` for each count update of a present `digest` that a removal skipped
    /// because `digest` was doomed too (a child, a referrer or a waiting fallback index of the
    /// removed digest): its counts go with it when the same collection removes it. If the
    /// collection stops before that, they are stale, and the caller must have them recounted
    /// ([`Writer::recount_from_scratch`]): it records the pairs in the transaction's `PENDING`
    /// batch, which the next open settles. Only a removal given a `doomed` test skips, and only
    /// a collection does, in key order: so only digests after `removed` are listed, the others
    /// having gone before it.
    pub(crate) fn take_skipped_recounts(&self) -> Result<Vec<(String, String)>> {
        Ok(std::mem::take(
            &mut *self.skipped_recounts.try_borrow_mut()?,
        ))
    }

    /// Leaves the counts that [`Writer::recount_from_scratch`] derives (`PARENTS` and
    /// `SUBJECT_LINKS`), and the `CANDIDATES` membership, of the digests `skip` names as they
    /// are: [`Writer::bump`] of those counts and [`Writer::recount`] do nothing for them, and
    /// list them for [`Writer::take_uncounted`]. For the transactions that remove the garbage's
    /// tags and entries: the updates would only lower counts that the sweep drops with the
    /// digests a few transactions later, and they fall on pages all over the key space. The
    /// caller must list the skipped digests in the transaction's `PENDING` batch, so that they
    /// are counted afresh if the collection stops before it removes them, and the collection
    /// counts afresh those it keeps after all. One that another writer removes meanwhile needs
    /// nothing: its removal resets the only derived count these transactions lower,
    /// `SUBJECT_LINKS` (their removals of tag links), and a digest that nothing lists has no
    /// `PARENTS` count to lower.
    pub(crate) fn skip_counts_of(&self, skip: impl Fn(&str) -> bool + 't) -> Result<()> {
        *self.uncounted.try_borrow_mut()? = Some(Uncounted {
            skip: Box::new(skip),
            skipped: Vec::new(),
        });
        Ok(())
    }

    /// The digests whose count updates were skipped since [`Writer::skip_counts_of`], sorted.
    pub(crate) fn take_uncounted(&self) -> Result<Vec<String>> {
        let mut skipped = match self.uncounted.try_borrow_mut()?.as_mut() {
            Some(u) => std::mem::take(&mut u.skipped),
            None => Vec::new(),
        };
        skipped.sort_unstable();
        skipped.dedup();
        Ok(skipped)
    }

    /// Whether count updates of `digest` are skipped (and, if so, notes it).
    fn uncounted(&self, digest: &str) -> Result<bool> {
        let mut held = self.uncounted.try_borrow_mut()?;
        let Some(u) = held.as_mut() else {
            return Ok(false);
        };
        if !(u.skip)(digest) {
            return Ok(false);
        }
        u.skipped.push(digest.to_owned());
        Ok(true)
    }

    fn skip_recount(&self, digest: &str, removed: &str) -> Result<()> {
        // A collection removes in key order: garbage before `removed` has gone already.
        if digest > removed {
            self.skipped_recounts
                .try_borrow_mut()?
                .push((digest.to_owned(), removed.to_owned()));
        }
        Ok(())
    }

    /// The `REFERRERS` rows left since [`Writer::defer_parent_links`], as `(subject, referrer)`.
    pub(crate) fn take_deferred_referrer_links(&self) -> Result<Vec<(String, String)>> {
        Ok(std::mem::take(
            &mut *self.deferred_referrer_links.try_borrow_mut()?,
        ))
    }

    /// Drops the stale `REFERRERS` rows among `links` (`(subject, referrer)`, best sorted by
    /// subject): a `Subject` row goes only while its referrer is absent, as one pushed again
    /// since wrote its row afresh ([`Writer::insert_manifest`]). Dropping a row that is already
    /// gone does nothing, so recovery may apply a batch's rows twice.
    pub(crate) fn drop_stale_referrer_links(&self, links: &[(String, String)]) -> Result<()> {
        for (subject, referrer) in links {
            if self.blob(referrer)?.is_none() {
                self.t_referrers()?.remove(
                    dk(subject.as_str()),
                    (dk(referrer.as_str()), Source::Subject.code()),
                )?;
            }
        }
        Ok(())
    }

    /// The `PARENTS` rows left since [`Writer::defer_parent_links`].
    pub(crate) fn take_deferred_links(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .deferred_links
            .try_borrow_mut()?
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default())
    }

    /// Drops the stale `PARENTS` rows among `links` (`(child, parent)`, best sorted by child),
    /// with their counts. A row goes only while its parent is absent: a parent pushed again
    /// since counts its row afresh ([`Writer::insert_manifest`]). Dropping a row that is already
    /// gone does nothing, so recovery may apply a batch's rows twice.
    pub(crate) fn drop_stale_parent_links(&self, links: &[(String, String)]) -> Result<()> {
        let mut i = 0;
        while i < links.len() {
            let child = links[i].0.as_str();
            let mut dropped = 0i64;
            while i < links.len() && links[i].0 == child {
                let parent = links[i].1.as_str();
                if self.blob(parent)?.is_none()
                    && self.t_parents()?.remove(dk(child), dk(parent))?
                {
                    dropped += 1;
                }
                i += 1;
            }
            if dropped > 0 {
                self.bump(child, count::PARENTS, -dropped)?;
            }
        }
        Ok(())
    }

    /// Writes the totals held back since [`Writer::defer_counts`].
    pub(crate) fn flush_counts(&self) -> Result<()> {
        match self.deferred_totals.take() {
            Some([0, 0, 0]) | None => Ok(()),
            Some([blobs, bytes, manifests]) => self.add_totals(blobs, bytes, manifests),
        }
    }

    /// Adds to the numbers of blobs, bytes and manifests in `meta::TOTALS` (in memory while
    /// deferred).
    fn add_totals(&self, blobs: i64, bytes: i64, manifests: i64) -> Result<()> {
        if let Some(held) = self.deferred_totals.get() {
            let mut held = held;
            for (v, d) in held.iter_mut().zip([blobs, bytes, manifests]) {
                *v += d;
            }
            self.deferred_totals.set(Some(held));
            return Ok(());
        }
        let mut t = decode_totals(self.meta(meta::TOTALS)?.as_deref());
        for (v, d) in t.iter_mut().zip([blobs, bytes, manifests]) {
            *v = (*v as i64 + d).max(0) as u64;
        }
        let mut b = Vec::with_capacity(24);
        for v in t {
            b.extend_from_slice(&v.to_le_bytes());
        }
        self.set_meta(meta::TOTALS, &b)
    }

    pub(crate) fn for_each_blob_digest(&self, mut f: impl FnMut(&str)) -> Result<()> {
        let t = self.t_blobs()?;
        for row in t.iter()? {
            f(row?.0.value().text().as_str());
        }
        Ok(())
    }

    /// The number of tags plus untagged index.json entries.
    pub(crate) fn name_counts(&self) -> Result<usize> {
        let tags = self.t_tags()?.len()?;
        let untagged = self.t_untagged()?.len()?;
        Ok(usize::try_from(tags + untagged).unwrap_or(usize::MAX))
    }

    /// A writer for the collector itself: its writes leave `meta::GC_CLEAN` alone.
    pub(crate) fn collector(txn: &'t WriteTransaction) -> Writer<'t> {
        Writer {
            collector: true,
            ..Writer::new(txn)
        }
    }

    /// Notes that the store changed since the last complete collection (once per writer).
    fn dirty(&self) -> Result<()> {
        if !self.collector && !self.dirtied.get() {
            self.t_meta()?.remove(meta::GC_CLEAN)?;
            self.dirtied.set(true);
        }
        Ok(())
    }

    /// Whether this writer has removed a tag or an untagged entry, so that index.json must be
    /// written again.
    pub(crate) fn names_removed(&self) -> bool {
        self.names_removed.get()
    }

    /// Records `digest` in `CHANGED` when tracking.
    pub(crate) fn touch(&self, digest: &str) -> Result<()> {
        if self.track {
            self.t_changed()?.insert(dk(digest), ())?;
        }
        Ok(())
    }

    /// Records a published blob. Keeps the first record if there is one.
    pub(crate) fn insert_blob(&self, digest: &str, rec: BlobRecord) -> Result<bool> {
        self.dirty()?;
        self.touch(digest)?;
        {
            let mut t = self.t_blobs()?;
            if t.get(dk(digest))?.is_some() {
                return Ok(false);
            }
            t.insert(dk(digest), rec.encode().as_slice())?;
        }
        self.add_totals(1, rec.size as i64, i64::from(rec.manifest))?;
        // Referrers that arrived first now have a present subject.
        for (r, src) in self.referrers(digest)? {
            if src == Source::Subject
                && self.blob(&r)?.is_some()
                && self
                    .manifest(&r)?
                    .is_some_and(|m| subject_link_counts(rec.manifest, &m))
            {
                self.bump(&r, count::SUBJECT_LINKS, 1)?;
            } else {
                self.recount(&r)?;
            }
        }
        self.recount(digest)?;
        Ok(true)
    }

    /// Records a parsed manifest with its edges. The blob row is written first, by the caller.
    pub(crate) fn insert_manifest(&self, digest: &str, size: u64, parsed: &Parsed) -> Result<()> {
        self.dirty()?;
        {
            let mut manifests = self.t_manifests()?;
            if manifests.get(dk(digest))?.is_some() {
                return Ok(());
            }
            let lists_no_manifest = parsed.children.iter().all(|c| {
                c.media_type
                    .as_deref()
                    .is_some_and(|mt| crate::manifest::classify(mt).is_none())
            });
            let rec = ManifestRecord {
                media_type: parsed.media_type.clone(),
                artifact_type: parsed.artifact_type.clone(),
                annotations: parsed.annotations.clone(),
                subject: parsed.subject.as_ref().map(|s| s.to_string()),
                size,
                counted_subject: parsed.subject.is_some()
                    && lists_no_manifest
                    && Digest::parse(digest).is_ok_and(|d| d.is_verifiable()),
                lists_no_manifest,
            };
            let bytes = serde_json::to_vec(&rec).map_err(|e| Error::Index(e.to_string()))?;
            manifests.insert(dk(digest), bytes.as_slice())?;
        }
        for c in &parsed.children {
            let existed = self.t_edges()?.insert(dk(digest), dk(c.digest.as_str()))?;
            // A stale row (the manifest was removed and is back) is counted already.
            if !existed
                && !self
                    .t_parents()?
                    .insert(dk(c.digest.as_str()), dk(digest))?
            {
                self.bump(c.digest.as_str(), count::PARENTS, 1)?;
            }
        }
        if let Some(s) = &parsed.subject {
            self.add_link(s.as_str(), digest, Source::Subject)?;
            let subject = self.blob(s.as_str())?;
            let me = self.manifest(digest)?;
            if let (Some(sb), Some(me)) = (subject, me)
                && subject_link_counts(sb.manifest, &me)
            {
                self.bump(digest, count::SUBJECT_LINKS, 1)?;
            }
        }
        // Tag links waiting for this manifest, as subject or as referrer, may count now.
        for (r, src) in self.referrers(digest)? {
            if matches!(src, Source::Tag(_)) {
                self.count_tag_link(digest, &r)?;
            }
        }
        for (s, src) in self.subjects(digest)? {
            if matches!(src, Source::Tag(_)) {
                self.count_tag_link(&s, digest)?;
            }
        }
        self.recount(digest)
    }

    /// Counts the tag link `subject -> referrer` as support, if it is not counted yet and, now,
    /// the subject is a present manifest linked to no subject of its own and the referrer a
    /// present manifest listing no manifest.
    ///
    /// Counted links never close a cycle of support, so counting alone never keeps garbage
    /// alive. A cycle of counted edges through a manifest listing no manifest can only continue
    /// through referrer links (its children are plain blobs, which support nothing), so it would
    /// be made of referrer links alone. `subject` links alone cannot form one (a referrer's
    /// digest covers its subject's). So it would hold tag links; take the one counted last,
    /// `X -> Y`: the cycle's link into `X` already existed then (a `subject` link exists from
    /// the moment `X` is present; a tag link was counted earlier and has stayed since, as
    /// removing a link or either end uncounts it), so `X` had a subject, and `X -> Y` was not
    /// counted. Links that are not counted are resolved by marking in the reference-count
    /// strategy.
    pub(crate) fn count_tag_link(&self, subject: &str, referrer: &str) -> Result<()> {
        if self
            .counted_tag_referrers(subject)?
            .iter()
            .any(|r| r == referrer)
        {
            return Ok(());
        }
        let linked = self
            .referrers(subject)?
            .into_iter()
            .any(|(r, src)| r == referrer && matches!(src, Source::Tag(_)));
        let subject_ok = self.blob(subject)?.is_some_and(|b| b.manifest)
            && self.manifest(subject)?.is_some()
            && self.subjects(subject)?.is_empty();
        let referrer_ok = self.blob(referrer)?.is_some()
            && self
                .manifest(referrer)?
                .is_some_and(|m| m.lists_no_manifest);
        if linked && subject_ok && referrer_ok {
            self.drop_row_hint()?;
            self.t_tag_counted()?.insert(dk(subject), dk(referrer))?;
            self.bump(referrer, count::SUBJECT_LINKS, 1)?;
        }
        Ok(())
    }

    /// Stops counting the tag link `subject -> referrer`, if it was counted; `bump` drops the
    /// referrer's count (not when the referrer's own row is going).
    fn uncount_tag_link(&self, subject: &str, referrer: &str, bump: bool) -> Result<()> {
        if self.t_tag_counted()?.remove(dk(subject), dk(referrer))? && bump {
            self.bump(referrer, count::SUBJECT_LINKS, -1)?;
        }
        Ok(())
    }

    /// Adds a referrer edge, in both directions.
    pub(crate) fn add_link(&self, subject: &str, referrer: &str, src: Source) -> Result<()> {
        self.dirty()?;
        self.drop_row_hint()?;
        self.touch(referrer)?;
        self.t_referrers()?
            .insert(dk(subject), (dk(referrer), src.code()))?;
        self.t_subjects()?
            .insert(dk(referrer), (dk(subject), src.code()))?;
        if matches!(src, Source::Tag(_)) {
            self.count_tag_link(subject, referrer)?;
        }
        self.recount(referrer)?;
        self.recount_referrers(referrer)
    }

    /// Recounts the referrers of a digest whose presence or own links changed
    /// ([`Writer::waits_on`] reads both).
    fn recount_referrers(&self, digest: &str) -> Result<()> {
        for (r, _) in self.referrers(digest)? {
            self.recount(&r)?;
        }
        Ok(())
    }

    /// Removes a referrer edge, in both directions.
    pub(crate) fn remove_link(&self, subject: &str, referrer: &str, src: Source) -> Result<()> {
        self.remove_link_rows(subject, referrer, src)?;
        self.recount(referrer)?;
        self.recount_referrers(referrer)
    }

    /// [`Writer::remove_link`] without the recounts, for a referrer being removed: its own
    /// counts go with it, and its removal recounts its referrers once it is gone.
    fn remove_link_rows(&self, subject: &str, referrer: &str, src: Source) -> Result<()> {
        self.dirty()?;
        self.t_referrers()?
            .remove(dk(subject), (dk(referrer), src.code()))?;
        self.t_subjects()?
            .remove(dk(referrer), (dk(subject), src.code()))?;
        if matches!(src, Source::Tag(_))
            && !self
                .referrers(subject)?
                .into_iter()
                .any(|(r, s)| r == referrer && matches!(s, Source::Tag(_)))
        {
            self.uncount_tag_link(subject, referrer, true)?;
        }
        Ok(())
    }

    /// Puts back the `PARENTS` row of `parent` under `child`, with its count, if it is missing:
    /// a collection that removed `child` dropped its rows while `parent`, garbage too, stayed
    /// (it stopped before removing `parent`), and `child` was pushed again since
    /// (`Store::refuse_collected`).
    pub(crate) fn restore_parent_row(&self, child: &str, parent: &str) -> Result<()> {
        let present = self
            .parent_rows(child)?
            .iter()
            .any(|p| p.as_str() == parent);
        if !present {
            self.t_parents()?.insert(dk(child), dk(parent))?;
            self.bump(child, count::PARENTS, 1)?;
        }
        Ok(())
    }

    fn bump(&self, digest: &str, which: usize, delta: i64) -> Result<()> {
        // The counts `recount_from_scratch` derives from rows may be skipped; tags and entries
        // are counted only here.
        let derived = which == count::PARENTS || which == count::SUBJECT_LINKS;
        if derived && self.uncounted(digest)? {
            return Ok(());
        }
        let mut t = self.t_counts()?;
        let mut row = t.get(dk(digest))?.map(|v| v.value()).unwrap_or([0; 4]);
        row[which] = (i64::from(row[which]) + delta).clamp(0, i64::from(u32::MAX)) as u32;
        if row == [0; 4] {
            t.remove(dk(digest))?;
        } else {
            t.insert(dk(digest), row)?;
        }
        drop(t);
        self.recount(digest)
    }

    /// Whether `digest`, a referrer with these subject links, waits on its subject: it is a
    /// fallback index whose subject is a present manifest that is not a referrer itself, and
    /// every child it lists is present and lists no manifest. An unsupported referrer that
    /// waits is not a candidate: it can only become garbage once that subject does, and the
    /// collector examines it then (see `gc::refcount`) instead of at every collection.
    ///
    /// Why waiting never hides garbage. Waiting on `s` makes `digest` join the collector's set
    /// only after `s`; that set is complete unless `s` can itself only join after `digest`,
    /// that is, unless `s` depends on `digest` through support (counted links) and waits.
    /// What depends on `digest` is: its children, which are referrers of `s` (the fallback
    /// tag links them) listing no manifest; blobs below them; counted referrers of those, which
    /// list no manifest; and other waiting fallback indexes, which wait on manifests that are
    /// not referrers, so on none of these. Every manifest among them is a referrer, and `s` is
    /// a manifest that is not. So `s` never depends on `digest`.
    ///
    /// What the rule reads is kept current: a change of `s`'s presence or links recounts its
    /// referrers ([`Writer::insert_blob`], [`Writer::remove_blob`], [`Writer::add_link`],
    /// [`Writer::remove_link`]), and the removal of a manifest recounts its parents. A child
    /// that arrives late leaves `digest` a candidate until its next recount, which is safe.
    fn waits_on(&self, digest: &str, subjects: &[(String, Source)]) -> Result<bool> {
        let mut waits = false;
        for (s, src) in subjects {
            if *src == Source::FallbackIndex
                && self.blob(s)?.is_some_and(|b| b.manifest)
                && self.subjects(s)?.is_empty()
            {
                waits = true;
            }
        }
        if !waits {
            return Ok(false);
        }
        for c in self.children(digest)? {
            let leaf = match self.blob(&c)? {
                None => false,
                Some(b) if b.manifest => self.manifest(&c)?.is_some_and(|m| m.lists_no_manifest),
                Some(_) => true,
            };
            if !leaf {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Keeps `digest`'s `CANDIDATES` membership in step with its counts: a present digest with
    /// no present strong parent and no present `subject`-field subject is a candidate unless a
    /// root tag anchors it and it is not a referrer (a referrer's tags anchor it only under the
    /// soft policy, which the collector decides), or it waits on a subject
    /// ([`Writer::waits_on`]).
    pub(crate) fn recount(&self, digest: &str) -> Result<()> {
        if self.uncounted(digest)? {
            return Ok(());
        }
        let row = self.counts(digest)?;
        let unsupported = row[count::PARENTS] == 0
            && row[count::SUBJECT_LINKS] == 0
            && self.blob(digest)?.is_some();
        let candidate = unsupported && {
            let subjects = self.subjects(digest)?;
            (row[count::TAG_ROOTS] == 0 || !subjects.is_empty())
                && !self.waits_on(digest, &subjects)?
        };
        if candidate {
            self.t_candidates()?.insert(dk(digest), ())?;
            self.hint_candidate(digest)?;
        } else if self.may_have_rows(digest)?[Hinted::Candidates as usize] {
            self.t_candidates()?.remove(dk(digest))?;
        }
        Ok(())
    }

    /// Points `tag` at `digest`, keeping the inverse map, the counts and tag-derived referrer
    /// edges in step. Returns the digest it named before.
    pub(crate) fn set_tag(&self, tag: &str, digest: &str, entry: &[u8]) -> Result<Option<String>> {
        self.dirty()?;
        let old = self.remove_tag(tag)?;
        self.touch(digest)?;
        self.t_tags()?.insert(tag, (digest, entry))?;
        self.t_tags_by_digest()?.insert(dk(digest), tag)?;
        if ReferrerTag::parse(tag).is_none() {
            self.bump(digest, count::TAG_ROOTS, 1)?;
        }
        self.link_edges(tag, digest, true)?;
        Ok(old)
    }

    /// Removes `tag`; returns the digest it named.
    pub(crate) fn remove_tag(&self, tag: &str) -> Result<Option<String>> {
        self.dirty()?;
        let old = self.t_tags()?.remove(tag)?.map(|v| v.value().0.to_owned());
        if let Some(d) = &old {
            self.names_removed.set(true);
            self.t_tags_by_digest()?.remove(dk(d.as_str()), tag)?;
            if ReferrerTag::parse(tag).is_none() {
                self.bump(d, count::TAG_ROOTS, -1)?;
            }
            self.link_edges(tag, d, false)?;
        }
        Ok(old)
    }

    /// Adds or removes the referrer edges a cosign or fallback tag stands for.
    fn link_edges(&self, tag: &str, target: &str, add: bool) -> Result<()> {
        let Some(link) = ReferrerTag::parse(tag) else {
            return Ok(());
        };
        let mut links = match link.kind {
            LinkKind::Fallback => self
                .children(target)?
                .into_iter()
                .map(|c| (c, Source::Tag(LinkKind::Fallback)))
                .collect(),
            kind => vec![(target.to_owned(), Source::Tag(kind))],
        };
        if link.kind == LinkKind::Fallback {
            links.push((target.to_owned(), Source::FallbackIndex));
        }
        for (r, src) in links {
            if add {
                self.add_link(link.subject.as_str(), &r, src)?;
            } else {
                self.remove_link(link.subject.as_str(), &r, src)?;
            }
        }
        Ok(())
    }

    pub(crate) fn add_untagged(&self, digest: &str, entry: &[u8]) -> Result<()> {
        self.dirty()?;
        self.touch(digest)?;
        if self.t_untagged()?.insert(dk(digest), entry)? {
            return Ok(());
        }
        self.bump(digest, count::UNTAGGED, 1)
    }

    pub(crate) fn remove_untagged_entry(&self, digest: &str, entry: &[u8]) -> Result<()> {
        self.dirty()?;
        if self.t_untagged()?.remove(dk(digest), entry)? {
            self.names_removed.set(true);
            self.bump(digest, count::UNTAGGED, -1)?;
        }
        Ok(())
    }

    /// Removes a blob from the store's view: its rows, its edges, its tags and entries, and its
    /// links as a referrer. The caller records its file with [`Writer::add_pending`], in the
    /// same transaction, for the unlink that follows the commit. Returns its record, or `None`
    /// if it was not present.
    ///
    /// `doomed` tells which digests the same collection removes too. A collection removes
    /// parents before children, so a garbage digest's parents are all gone when it goes: the
    /// counts of a doomed child or referrer are not decremented one parent at a time but dropped
    /// with it ([`Writer::recount_from_scratch`] repairs the few a recheck keeps). A plain delete
    /// passes `None`.
    pub(crate) fn remove_blob(
        &self,
        digest: &str,
        doomed: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<Option<BlobRecord>> {
        self.remove_blob_keeping(digest, doomed, false)
    }

    /// Forgets a blob whose file another tool removed: as [`Writer::remove_blob`], but its tags
    /// and index.json entries stay (they are the other tool's to change; the layout is now sparse
    /// there) and no unlink is pending.
    pub(crate) fn forget_blob(&self, digest: &str) -> Result<Option<BlobRecord>> {
        self.remove_blob_keeping(digest, None, true)
    }

    fn remove_blob_keeping(
        &self,
        digest: &str,
        doomed: Option<&dyn Fn(&str) -> bool>,
        keep_names: bool,
    ) -> Result<Option<BlobRecord>> {
        self.dirty()?;
        // Encoded once for the lookups below.
        let stored = key::encode(digest);
        let me = Dk::Stored(stored.as_ref());
        // Its row goes first, read as it goes: the recounts below see it gone, as they would
        // after the removal.
        let Some(rec) = self
            .t_blobs()?
            .remove(me)?
            .map(|v| BlobRecord::decode(v.value()))
            .transpose()?
        else {
            return Ok(None);
        };
        let doomed = |d: &str| doomed.is_some_and(|f| f(d));
        let gone = doomed(digest);
        // Read once: a removal only removes link rows, so a table without rows for `digest` now
        // has none below either.
        let linked = self.may_have_key(stored.as_ref())?;
        let mut subjects = if linked[Hinted::Subjects as usize] {
            self.subjects(digest)?
        } else {
            Vec::new()
        };
        // A doomed digest's counts go with it, now: the steps below only lower them, which
        // leaves no row.
        let counts = if gone {
            self.t_counts()?.remove(me)?.map_or([0; 4], |v| v.value())
        } else if keep_names {
            [0; 4]
        } else {
            self.counts(digest)?
        };
        if !keep_names {
            // Only a digest with a plain tag (counted) or a link tag (which stands for a subject
            // link of a tag's kind) has tags: the lookup is skipped for the rest.
            let mut renamed = false;
            if counts[count::TAG_ROOTS] > 0
                || subjects.iter().any(|(_, src)| *src != Source::Subject)
            {
                for tag in self.tags_of(digest)? {
                    self.remove_tag(&tag)?;
                    renamed = true;
                }
            }
            if counts[count::UNTAGGED] > 0 {
                self.remove_entries(digest)?;
                renamed = true;
            }
            if renamed {
                subjects = self.subjects(digest)?;
            }
        }
        // Its own `subject` field goes with it (and comes back with it if it is pushed again);
        // links from a fallback index's tag stay while that tag does, as the tag still lists it.
        let deferring = self.deferred_links.try_borrow()?.is_some();
        for (s, src) in &subjects {
            match src {
                Source::Tag(LinkKind::Fallback) => {}
                // The inverse row lies under this digest's key, and goes now; the subject's row
                // lies anywhere in the key space, and is left stale (`defer_parent_links`).
                Source::Subject if deferring => {
                    self.t_subjects()?
                        .remove(me, (dk(s.as_str()), src.code()))?;
                    self.deferred_referrer_links
                        .try_borrow_mut()?
                        .push((s.clone(), digest.to_owned()));
                }
                _ => self.remove_link_rows(s, digest, *src)?,
            }
        }
        if rec.manifest {
            // Its edges go first, read as they go (nothing below reads them).
            let mut children = Vec::new();
            for v in self.t_edges()?.remove_all(me)? {
                children.push(v?.value().to_string());
            }
            for c in children {
                if doomed(&c) {
                    self.skip_recount(&c, digest)?;
                    continue;
                }
                if let Some(links) = self.deferred_links.try_borrow_mut()?.as_mut() {
                    links.push((c, digest.to_owned()));
                } else if self.t_parents()?.remove(dk(c.as_str()), me)? {
                    self.bump(&c, count::PARENTS, -1)?;
                }
            }
            self.t_manifests()?.remove(me)?;
        }
        self.add_totals(-1, -(rec.size as i64), -i64::from(rec.manifest))?;
        if rec.manifest {
            // A fallback index listing it no longer waits on its subject (`waits_on`).
            for p in self.parents(digest)? {
                if doomed(&p) {
                    self.skip_recount(&p, digest)?;
                } else {
                    self.recount(&p)?;
                }
            }
        }
        {
            let mut pins = self.t_pins()?;
            if pins.len()? > 0 {
                pins.remove(me)?;
            }
        }
        let referrers = if linked[Hinted::Referrers as usize] {
            self.referrers(digest)?
        } else {
            Vec::new()
        };
        for (r, src) in referrers {
            if doomed(&r) {
                self.skip_recount(&r, digest)?;
                continue;
            }
            if src == Source::Subject
                && self.blob(&r)?.is_some()
                && self
                    .manifest(&r)?
                    .is_some_and(|m| subject_link_counts(rec.manifest, &m))
            {
                self.bump(&r, count::SUBJECT_LINKS, -1)?;
            } else {
                // Its subject is gone: it may be left unsupported and linked to none present.
                self.recount(&r)?;
            }
        }
        // Counted tag links end with either end's presence.
        let counted = if linked[Hinted::TagCounted as usize] {
            self.counted_tag_referrers(digest)?
        } else {
            Vec::new()
        };
        for r in counted {
            if doomed(&r) {
                self.skip_recount(&r, digest)?;
            }
            let keep_row = !doomed(&r) && self.blob(&r)?.is_some();
            self.uncount_tag_link(digest, &r, keep_row)?;
        }
        // The links left: those of fallback tags (nothing since has changed its subject links).
        for (s, _) in subjects
            .iter()
            .filter(|(_, src)| *src == Source::Tag(LinkKind::Fallback))
        {
            self.uncount_tag_link(s, digest, false)?;
        }
        if gone {
            // Every parent is gone: the inverse rows go with the digest, as its counts did (which
            // count them: none when the count is zero).
            if counts[count::PARENTS] > 0 {
                self.t_parents()?.remove_all(me)?;
            }
        } else {
            // Its subjects no longer support it; pushed again, it counts them afresh.
            let mut t = self.t_counts()?;
            let row = t.get(me)?.map(|v| v.value());
            if let Some(mut row) = row {
                row[count::SUBJECT_LINKS] = 0;
                if row == [0; 4] {
                    t.remove(me)?;
                } else {
                    t.insert(me, row)?;
                }
            }
        }
        if self.may_have_key(stored.as_ref())?[Hinted::Candidates as usize] {
            self.t_candidates()?.remove(me)?;
        }
        Ok(Some(rec))
    }

    /// Recomputes the counts of `digest` from the edges (dropping `PARENTS` rows of parents
    /// that are gone), for digests a collection meant to remove but kept.
    pub(crate) fn recount_from_scratch(&self, digest: &str) -> Result<()> {
        let mut parents = 0;
        for p in self.parent_rows(digest)? {
            if self.blob(&p)?.is_some() {
                parents += 1;
            } else {
                self.t_parents()?.remove(dk(digest), dk(p.as_str()))?;
            }
        }
        let mut subject_links = 0;
        let me = self.manifest(digest)?;
        let mut tag_subjects = std::collections::BTreeSet::new();
        for (s, src) in self.subjects(digest)? {
            if src == Source::Subject
                && let (Some(sb), Some(me)) = (self.blob(&s)?, &me)
                && subject_link_counts(sb.manifest, me)
            {
                subject_links += 1;
            }
            if matches!(src, Source::Tag(_))
                && self.counted_tag_referrers(&s)?.iter().any(|r| r == digest)
            {
                tag_subjects.insert(s);
            }
        }
        subject_links += tag_subjects.len() as u32;
        {
            let mut t = self.t_counts()?;
            let mut row = t.get(dk(digest))?.map(|v| v.value()).unwrap_or([0; 4]);
            row[count::PARENTS] = parents;
            row[count::SUBJECT_LINKS] = subject_links;
            if row == [0; 4] {
                t.remove(dk(digest))?;
            } else {
                t.insert(dk(digest), row)?;
            }
        }
        self.recount(digest)
    }

    /// Checks the invariants that tie the tables to each other (the module's list) and returns
    /// each digest that breaks one, with what is wrong:
    ///
    /// - `SUBJECTS` holds exactly the rows of `REFERRERS`, reversed;
    /// - `PARENTS` holds every row of `EDGES`, reversed (but for children a collection removed
    ///   before the garbage manifest listing them, [`Writer::add_collected`]), and no other row
    ///   with a present parent;
    /// - when no `PENDING` batch is left (none can leave stale rows or skipped recounts then),
    ///   no `PARENTS` row names an absent parent, every digest's `COUNTS` row is what
    ///   [`Writer::recount_from_scratch`] and the `TAGS` and `UNTAGGED` rows give, and every
    ///   digest that recount finds a candidate is in `CANDIDATES` (one missing would hide
    ///   garbage from the reference-count strategy).
    ///
    /// The converse is not checked: a fallback index whose entry arrived late stays a candidate
    /// until its next recount, by design ([`Writer::waits_on`]). Such a row costs the collector
    /// one more examination; what it removes is still decided by marking.
    ///
    /// It recomputes in this transaction: the caller must abort it.
    pub(crate) fn audit(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut links: HashSet<(String, String, u8)> = HashSet::new();
        let mut stale_referrers = Vec::new();
        for (s, r, code) in link_rows(&*self.t_referrers()?)? {
            if code == Source::Subject.code() && self.blob(&r)?.is_none() {
                stale_referrers.push((s, r));
            } else {
                links.insert((s, r, code));
            }
        }
        out.extend(self.audit_link_sources(&links)?);
        for (r, s, code) in link_rows(&*self.t_subjects()?)? {
            if !links.remove(&(s.clone(), r.clone(), code)) {
                out.push((r, format!("a SUBJECTS row names {s} with no REFERRERS row")));
            }
        }
        for (s, r, _) in links {
            out.push((s, format!("a REFERRERS row names {r} with no SUBJECTS row")));
        }
        let mut edges: HashSet<(String, String)> = edge_rows(&*self.t_edges()?)?
            .into_iter()
            .map(|(p, c)| (c, p))
            .collect();
        let mut stale = Vec::new();
        for (c, p) in edge_rows(&*self.t_parents()?)? {
            let listed = edges.remove(&(c.clone(), p.clone()));
            if self.blob(&p)?.is_none() {
                stale.push((c, p));
            } else if !listed {
                out.push((
                    c,
                    format!("a PARENTS row names {p}, which does not list it"),
                ));
            }
        }
        // A collection removes in key order, so a child may go, with its rows, before the
        // garbage manifest listing it: `COLLECTED` keeps it until a collection completes.
        for (c, p) in edges {
            if !self.is_collected(&c)? {
                out.push((p, format!("lists {c}, which has no PARENTS row for it")));
            }
        }
        if self.has_pending()? {
            return Ok(out);
        }
        for (c, p) in stale {
            out.push((
                c,
                format!("a stale PARENTS row names {p}, and no batch is pending"),
            ));
        }
        for (s, r) in stale_referrers {
            out.push((
                s,
                format!("a stale REFERRERS row names {r}, and no batch is pending"),
            ));
        }
        let mut digests: std::collections::BTreeSet<String> = Default::default();
        for row in self.t_counts()?.iter()? {
            digests.insert(row?.0.value().to_string());
        }
        for row in self.t_blobs()?.iter()? {
            digests.insert(row?.0.value().to_string());
        }
        for row in self.t_candidates()?.iter()? {
            digests.insert(row?.0.value().to_string());
        }
        for d in digests {
            let before = self.counts(&d)?;
            let was_candidate = self.t_candidates()?.get(dk(d.as_str()))?.is_some();
            let roots = self
                .tags_of(&d)?
                .iter()
                .filter(|t| ReferrerTag::parse(t).is_none())
                .count() as u32;
            let entries = self.t_untagged()?.get(dk(d.as_str()))?.count() as u32;
            self.recount_from_scratch(&d)?;
            let mut want = self.counts(&d)?;
            want[count::TAG_ROOTS] = roots;
            want[count::UNTAGGED] = entries;
            if before != want {
                out.push((d.clone(), format!("counts {before:?}, recounted {want:?}")));
            }
            let candidate = self.t_candidates()?.get(dk(d.as_str()))?.is_some();
            if candidate && !was_candidate && before == want {
                out.push((d.clone(), "unsupported, but not a candidate".into()));
            }
        }
        Ok(out)
    }

    /// The links `REFERRERS` must hold, from their sources (the `subject` fields of present
    /// manifests, and cosign and fallback tags), against those it holds (`(subject, referrer,
    /// source code)`): each missing or extra one. The entries of a fallback index that is absent
    /// are unknown, so any entry link of its tag is accepted.
    fn audit_link_sources(
        &self,
        held: &HashSet<(String, String, u8)>,
    ) -> Result<Vec<(String, String)>> {
        let mut want: HashSet<(String, String, u8)> = HashSet::new();
        let mut loose: HashSet<String> = HashSet::new();
        for row in self.t_manifests()?.iter()? {
            let (k, v) = row?;
            let m = k.value().to_string();
            if let Some(subject) = decode_manifest(v.value())?.subject {
                want.insert((subject, m, Source::Subject.code()));
            }
        }
        for TagRow {
            tag: t, digest: d, ..
        } in self.tags()?
        {
            let Some(link) = ReferrerTag::parse(&t) else {
                continue;
            };
            let subject = link.subject.to_string();
            if link.kind != LinkKind::Fallback {
                want.insert((subject, d, Source::Tag(link.kind).code()));
                continue;
            }
            if self.manifest(&d)?.is_none() {
                loose.insert(subject.clone());
            }
            for c in self.children(&d)? {
                want.insert((subject.clone(), c, Source::Tag(LinkKind::Fallback).code()));
            }
            want.insert((subject, d, Source::FallbackIndex.code()));
        }
        let fallback = Source::Tag(LinkKind::Fallback).code();
        let mut out = Vec::new();
        for (s, r, code) in held {
            let accepted = want.contains(&(s.clone(), r.clone(), *code))
                || (*code == fallback && loose.contains(s));
            if !accepted {
                out.push((
                    r.clone(),
                    format!("links to {s} (source {code}) without a source"),
                ));
            }
        }
        for (s, r, code) in want {
            if !held.contains(&(s.clone(), r.clone(), code)) {
                out.push((r, format!("lacks its link to {s} (source {code})")));
            }
        }
        Ok(out)
    }

    /// Removes every untagged index.json entry of `digest`.
    pub(crate) fn remove_entries(&self, digest: &str) -> Result<()> {
        let entries: Vec<Vec<u8>> = {
            let t = self.t_untagged()?;
            let mut v = Vec::new();
            for e in t.get(dk(digest))? {
                v.push(e?.value().to_vec());
            }
            v
        };
        for e in entries {
            self.remove_untagged_entry(digest, &e)?;
        }
        Ok(())
    }

    /// Pins or unpins a digest.
    pub(crate) fn set_pin(&self, digest: &str, pinned: bool) -> Result<bool> {
        self.dirty()?;
        let mut t = self.t_pins()?;
        Ok(if pinned {
            self.touch(digest)?;
            t.insert(dk(digest), now_secs())?.is_none()
        } else {
            t.remove(dk(digest))?.is_some()
        })
    }

    /// Records the files of `digests`, whose rows this transaction removed, and the stale
    /// `PARENTS` rows it left, as one `PENDING` batch: the intent record of their unlinks and
    /// of the rows' removal. Returns the batch's key (`None` for an empty batch).
    pub(crate) fn add_pending(
        &self,
        digests: &[String],
        links: &[(String, String)],
    ) -> Result<Option<u64>> {
        if digests.is_empty() && links.is_empty() {
            return Ok(None);
        }
        let mut t = self.t_pending()?;
        let key = t.last()?.map_or(1, |(k, _)| k.value() + 1);
        t.insert(key, PendingBatch::encode(digests, links).as_str())?;
        Ok(Some(key))
    }

    /// Forgets `PENDING` batches whose unlinks are done.
    pub(crate) fn clear_pending(&self, batches: &[u64]) -> Result<()> {
        let mut t = self.t_pending()?;
        for b in batches {
            t.remove(b)?;
        }
        Ok(())
    }

    /// Records digests a sweep transaction removes (see `COLLECTED`).
    pub(crate) fn add_collected(&self, digests: &[String]) -> Result<()> {
        let mut t = self.t_collected()?;
        let now = now_secs();
        for d in digests {
            t.insert(dk(d.as_str()), now)?;
        }
        Ok(())
    }

    /// Whether `COLLECTED` is empty: no collection has removed anything since the last one
    /// that completed.
    pub(crate) fn no_collected(&self) -> Result<bool> {
        Ok(self.t_collected()?.is_empty()?)
    }

    /// Whether `digest` is in `COLLECTED`.
    pub(crate) fn is_collected(&self, digest: &str) -> Result<bool> {
        Ok(self.t_collected()?.get(dk(digest))?.is_some())
    }

    /// Empties `COLLECTED`, but for the digests in `keep`.
    pub(crate) fn clear_collected(&self, keep: &[String]) -> Result<()> {
        let mut t = self.t_collected()?;
        let mut kept = Vec::new();
        for d in keep {
            if let Some(at) = t.get(dk(d.as_str()))?.map(|v| v.value()) {
                kept.push((d, at));
            }
        }
        t.retain(|_, _| false)?;
        for (d, at) in kept {
            t.insert(dk(d.as_str()), at)?;
        }
        Ok(())
    }

    /// Takes (and empties) the `CHANGED` set.
    pub(crate) fn take_changed(&self) -> Result<Vec<String>> {
        let mut t = self.t_changed()?;
        let mut out = Vec::new();
        for row in t.iter()? {
            out.push(row?.0.value().to_string());
        }
        t.retain(|_, _| false)?;
        Ok(out)
    }

    pub(crate) fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.t_meta()?.insert(key, value)?;
        Ok(())
    }

    pub(crate) fn remove_meta(&self, key: &str) -> Result<()> {
        self.t_meta()?.remove(key)?;
        Ok(())
    }
}

fn subjects_in(
    t: &impl ReadableMultimapTable<DigestKey, (DigestKey, u8)>,
    referrer: &str,
) -> Result<Vec<(String, Source)>> {
    let mut out = Vec::new();
    for v in t.get(dk(referrer))? {
        let v = v?;
        let (s, code) = v.value();
        if let Some(src) = Source::from_code(code) {
            out.push((s.to_string(), src));
        }
    }
    Ok(out)
}

/// The pins of an index of any schema version, to carry over when it is rebuilt. Before version
/// 7, `PINS` was keyed by the digest's text.
pub(crate) fn pins_of_any_version(txn: &ReadTransaction) -> Result<Vec<String>> {
    const TEXT_PINS: TableDefinition<&str, u64> = TableDefinition::new("pins");
    match txn.open_table(PINS) {
        Ok(t) => keys(&t),
        Err(redb::TableError::TableTypeMismatch { .. }) => {
            let mut out = Vec::new();
            for row in txn.open_table(TEXT_PINS)?.iter()? {
                out.push(row?.0.value().to_owned());
            }
            Ok(out)
        }
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Parses a digest read back from the catalog, which only ever stores validated ones.
pub(crate) fn stored_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| Error::Index(format!("corrupt catalog: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn with_writer(f: impl FnOnce(&Writer<'_>)) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let w = Writer::new(&txn);
        w.migrate().unwrap();
        f(&w);
    }

    #[test]
    fn a_row_hint_skips_only_digests_without_rows_and_follows_the_writes_held_under_it() {
        with_writer(|w| {
            let (a, b, c, z) = (digest('a'), digest('b'), digest('c'), digest('f'));
            w.add_link(&b, &c, Source::Subject).unwrap();
            // A present blob nothing lists is a candidate.
            w.insert_blob(&b, BlobRecord::new(3, false, true)).unwrap();
            w.hint_rows(&a, &c, 16).unwrap();
            // b has a referrer and is a candidate, c has a subject, a has neither; z lies
            // outside the range.
            assert_eq!(w.may_have_rows(&a).unwrap(), [false, false, false, false]);
            assert_eq!(w.may_have_rows(&b).unwrap(), [false, true, false, true]);
            assert_eq!(w.may_have_rows(&c).unwrap(), [true, false, false, false]);
            assert_eq!(w.may_have_rows(&z).unwrap(), [true; 4]);
            // A candidate added while the hint is held joins it, and its row is there.
            w.insert_blob(&a, BlobRecord::new(3, false, true)).unwrap();
            assert_eq!(w.may_have_rows(&a).unwrap(), [false, false, false, true]);
            assert!(w.candidates().unwrap().contains(&a));
            // Removed under the hint, its candidate row goes with it.
            w.remove_blob(&a, None).unwrap();
            assert!(!w.candidates().unwrap().contains(&a));
            // A link added while the hint is held drops it.
            w.add_link(&a, &c, Source::Subject).unwrap();
            assert_eq!(w.may_have_rows(&a).unwrap(), [true; 4]);
            // Over the limit, no hint is kept.
            w.hint_rows(&a, &c, 1).unwrap();
            assert_eq!(w.may_have_rows(&a).unwrap(), [true; 4]);
        });
    }

    #[test]
    fn the_audit_finds_a_stale_parents_row_once_no_sweep_is_pending() {
        with_writer(|w| {
            let (c, p) = (digest('c'), digest('d'));
            w.insert_blob(&c, BlobRecord::new(3, false, true)).unwrap();
            // A row naming an absent parent, counted as a stale row is.
            w.t_parents()
                .unwrap()
                .insert(dk(c.as_str()), dk(p.as_str()))
                .unwrap();
            w.t_counts()
                .unwrap()
                .insert(dk(c.as_str()), [1, 0, 0, 0])
                .unwrap();
            let stale = |found: &[(String, String)]| {
                found
                    .iter()
                    .any(|(d, what)| *d == c && what.contains("stale PARENTS row names"))
            };
            // A pending batch may still list it: then it is not reported.
            w.add_pending(&[], &[(c.clone(), p.clone())]).unwrap();
            assert!(!stale(&w.audit().unwrap()));
            w.t_pending().unwrap().retain(|_, _| false).unwrap();
            assert!(stale(&w.audit().unwrap()));
        });
    }

    #[test]
    fn the_audit_finds_a_link_without_its_inverse_or_source_and_a_wrong_count() {
        with_writer(|w| {
            let (a, b) = (digest('a'), digest('b'));
            w.insert_blob(&a, BlobRecord::new(3, false, true)).unwrap();
            w.insert_blob(&b, BlobRecord::new(3, false, true)).unwrap();
            assert_eq!(w.audit().unwrap(), Vec::new());
            // A `subject` link whose (present) referrer holds no such field, in one direction
            // only.
            w.t_referrers()
                .unwrap()
                .insert(dk(a.as_str()), (dk(b.as_str()), Source::Subject.code()))
                .unwrap();
            let found: Vec<String> = w.audit().unwrap().into_iter().map(|(_, d)| d).collect();
            assert!(
                found.iter().any(|d| d.contains("with no SUBJECTS row"))
                    && found.iter().any(|d| d.contains("without a source")),
                "{found:?}"
            );
            w.t_referrers()
                .unwrap()
                .remove(dk(a.as_str()), (dk(b.as_str()), Source::Subject.code()))
                .unwrap();
            // A count no edge, tag or entry gives.
            w.t_counts()
                .unwrap()
                .insert(dk(a.as_str()), [2, 0, 0, 0])
                .unwrap();
            let found = w.audit().unwrap();
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].1.starts_with("counts [2, 0, 0, 0]"), "{found:?}");
        });
    }

    #[test]
    fn a_stale_referrers_row_is_skipped_by_readers_and_reported_once_no_sweep_is_pending() {
        with_writer(|w| {
            let (s, r) = (digest('s'), digest('r'));
            w.insert_blob(&s, BlobRecord::new(3, false, true)).unwrap();
            // A `subject` row naming an absent referrer, as a sweep leaves one.
            w.t_referrers()
                .unwrap()
                .insert(dk(s.as_str()), (dk(r.as_str()), Source::Subject.code()))
                .unwrap();
            assert_eq!(w.referrers(&s).unwrap(), Vec::new());
            let stale = |found: &[(String, String)]| {
                found
                    .iter()
                    .any(|(d, what)| *d == s && what.contains("stale REFERRERS row names"))
            };
            w.add_pending(&[], &[(s.clone(), r.clone())]).unwrap();
            assert_eq!(w.audit().unwrap(), Vec::new());
            w.t_pending().unwrap().retain(|_, _| false).unwrap();
            let found = w.audit().unwrap();
            assert!(stale(&found) && found.len() == 1, "{found:?}");
            // Dropping it keeps it while its referrer is present again, and drops it once absent.
            w.insert_blob(&r, BlobRecord::new(3, false, true)).unwrap();
            w.drop_stale_referrer_links(&[(s.clone(), r.clone())])
                .unwrap();
            assert_eq!(w.referrers(&s).unwrap(), vec![(r.clone(), Source::Subject)]);
            w.t_blobs().unwrap().remove(dk(r.as_str())).unwrap();
            w.drop_stale_referrer_links(&[(s.clone(), r.clone())])
                .unwrap();
            assert_eq!(
                w.t_referrers()
                    .unwrap()
                    .get(dk(s.as_str()))
                    .unwrap()
                    .count(),
                0
            );
        });
    }
}
