//! The graph as the mark phase sees it, and the liveness rule, written once.
//!
//! A [`View`] is loaded either from the index (mark-sweep) or from the layout's files
//! (the scan baseline); [`mark`] computes the live set of either the same way:
//!
//! - Roots: tags that are not cosign or fallback links; untagged index.json entries that are not
//!   referrers (unless untagged entries are being dropped); pins; leases.
//! - A referrer's own tags are roots only under the soft policy.
//! - A referrer all of whose subjects are absent is dangling: it is a root while younger than the
//!   grace period, counted from when the store first recorded it.
//! - A blob a walk found in `blobs/` after the layout was indexed (another tool's, or a crashed
//!   writer's) is a root while its file is younger than the grace period.
//! - Neither grace protects a digest once a collection has removed something it reaches since
//!   it was recorded ([`lost_to_collection`]): that collection (with a shorter grace, or after
//!   the grace ended) found it garbage and began on it, key order taking parts of it first, and
//!   a crash or a failure stopped it. Kept, it would be a root with content missing.
//! - Live: everything reachable from a root through strong edges and, transitively, through
//!   referrer edges (every referrer of a live node is live).
//!
//! Digests are interned to dense ids, so that the graph is vectors of integers rather than maps
//! of strings. They are interned by the index's stored encoding of the digest
//! ([`catalog::key_of_digest`]), 33 bytes for sha256 and blake3, which loading from the index
//! reads as is: no digest is turned into text unless it is reported.

use std::collections::VecDeque;

use super::policy::{Mode, Policy};
use crate::catalog;
use crate::fasthash::FastMap;

/// A digest as the view holds it: its stored encoding, inline when it is 33 bytes long.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Short([u8; 33]),
    Long(Box<[u8]>),
}

impl Key {
    fn new(stored: &[u8]) -> Key {
        match <[u8; 33]>::try_from(stored) {
            Ok(b) => Key::Short(b),
            Err(_) => Key::Long(stored.into()),
        }
    }

    fn of(digest: &str) -> Key {
        Key::new(catalog::key_of_digest(digest).as_ref())
    }

    fn text(&self) -> String {
        catalog::digest_of_key(match self {
            Key::Short(b) => b,
            Key::Long(b) => b,
        })
    }
}

/// One present blob.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    pub size: u64,
    pub recorded_at: u64,
    pub artifact_type: Option<String>,
    /// Found in `blobs/` by a walk (see `BlobRecord::found`).
    pub found: bool,
}

/// The graph of a store at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct View {
    ids: FastMap<Key, u32>,
    /// The digest of each id.
    names: Vec<Key>,
    /// The last id `id_of_key` returned, with its key: edge rows come grouped by parent.
    last: Option<(Key, u32)>,
    /// Present blobs (`None`: named by an edge or an entry, but absent).
    nodes: Vec<Option<Node>>,
    children: Vec<Vec<u32>>,
    /// subject -> referrers (every source).
    referrers: Vec<Vec<u32>>,
    /// referrer -> subjects (every source).
    subjects: Vec<Vec<u32>>,
    /// Tags that are not referrer links, with their targets.
    tags: Vec<(String, u32)>,
    untagged: Vec<u32>,
    pins: Vec<u32>,
}

/// The strong and referrer edges of an index snapshot, read apart from the view they go into
/// ([`View::add_links`]), so that they can be read on another thread while the blobs load.
#[derive(Default)]
pub(crate) struct LinkRows {
    edges: Vec<(Key, Key)>,
    referrers: Vec<(Key, Key)>,
}

impl LinkRows {
    /// Reads every edge of `tables`, by stored encodings.
    pub fn read(tables: &catalog::LinkTables) -> crate::error::Result<LinkRows> {
        let mut rows = LinkRows::default();
        tables.for_each_edge_key(|p, c| rows.edges.push((Key::new(p), Key::new(c))))?;
        tables.for_each_referrer_key(|s, r| rows.referrers.push((Key::new(s), Key::new(r))))?;
        Ok(rows)
    }
}

/// What liveness depends on besides the graph.
#[derive(Clone, Debug)]
pub(crate) struct Params<'a> {
    pub now: u64,
    pub grace_secs: u64,
    pub delete_untagged: bool,
    pub policy: &'a Policy,
    pub leased: &'a std::collections::HashSet<String>,
    /// Digests a collection removed, with when: a referrer recorded by then is not dangling.
    pub collected: &'a std::collections::HashMap<String, u64>,
}

/// Why something is live: the root, or the edge (from another node's id) it was reached through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Tag(String),
    Untagged,
    Pin,
    Lease,
    Dangling,
    Found,
    Child(u32),
    Referrer(u32),
}

impl View {
    /// An empty view with room for `n` digests.
    pub fn with_capacity(n: usize) -> View {
        View {
            ids: FastMap::with_capacity_and_hasher(n, Default::default()),
            names: Vec::with_capacity(n),
            nodes: Vec::with_capacity(n),
            children: Vec::with_capacity(n),
            referrers: Vec::with_capacity(n),
            subjects: Vec::with_capacity(n),
            ..View::default()
        }
    }

    fn id(&mut self, d: &str) -> u32 {
        self.id_of(Key::of(d))
    }

    fn id_of(&mut self, key: Key) -> u32 {
        let next = self.names.len() as u32;
        let i = *self.ids.entry(key.clone()).or_insert(next);
        if i == next {
            self.names.push(key);
            self.nodes.push(None);
            self.children.push(Vec::new());
            self.referrers.push(Vec::new());
            self.subjects.push(Vec::new());
        }
        i
    }

    /// The id of a stored encoding, remembering it for the next call: edge rows come grouped
    /// by their first digest.
    fn id_of_grouped(&mut self, key: Key) -> u32 {
        if let Some((k, i)) = &self.last
            && *k == key
        {
            return *i;
        }
        let i = self.id_of(key.clone());
        self.last = Some((key, i));
        i
    }

    /// The id of a digest the view knows.
    pub fn lookup(&self, d: &str) -> Option<u32> {
        self.ids.get(&Key::of(d)).copied()
    }

    /// The digest of an id.
    pub fn name(&self, id: u32) -> String {
        self.names[id as usize].text()
    }

    pub fn add_blob(&mut self, d: &str, node: Node) {
        let i = self.id(d);
        self.nodes[i as usize] = Some(node);
    }

    /// [`View::add_blob`] by the digest's stored encoding.
    pub fn add_blob_key(&mut self, stored: &[u8], node: Node) {
        let i = self.id_of(Key::new(stored));
        self.nodes[i as usize] = Some(node);
    }

    pub fn add_edge(&mut self, parent: &str, child: &str) {
        let (p, c) = (self.id(parent), self.id(child));
        self.children[p as usize].push(c);
    }

    /// Adds the edges [`LinkRows::read`] read.
    pub fn add_links(&mut self, rows: LinkRows) {
        for (parent, child) in rows.edges {
            let p = self.id_of_grouped(parent);
            let c = self.id_of(child);
            self.children[p as usize].push(c);
        }
        for (subject, referrer) in rows.referrers {
            let s = self.id_of_grouped(subject);
            let r = self.id_of(referrer);
            self.link(s, r);
        }
    }

    pub fn add_link(&mut self, subject: &str, referrer: &str) {
        let (s, r) = (self.id(subject), self.id(referrer));
        self.link(s, r);
    }

    fn link(&mut self, s: u32, r: u32) {
        self.referrers[s as usize].push(r);
        self.subjects[r as usize].push(s);
    }

    pub fn add_tag(&mut self, tag: String, d: &str) {
        let i = self.id(d);
        self.tags.push((tag, i));
    }

    pub fn add_untagged(&mut self, d: &str) {
        let i = self.id(d);
        self.untagged.push(i);
    }

    /// [`View::add_untagged`] by the digest's stored encoding.
    pub fn add_untagged_key(&mut self, stored: &[u8]) {
        let i = self.id_of(Key::new(stored));
        self.untagged.push(i);
    }

    pub fn add_pin(&mut self, d: &str) {
        let i = self.id(d);
        self.pins.push(i);
    }

    /// The children of a digest, by name.
    pub fn children_of(&self, d: &str) -> Vec<String> {
        self.lookup(d)
            .map(|i| {
                self.children[i as usize]
                    .iter()
                    .map(|&c| self.names[c as usize].text())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Digests linked to at least one subject.
    pub fn referrer_names(&self) -> Vec<String> {
        (0..self.names.len())
            .filter(|&i| !self.subjects[i].is_empty())
            .map(|i| self.names[i].text())
            .collect()
    }

    pub fn set_artifact_type(&mut self, d: &str, artifact_type: Option<String>) {
        if let Some(i) = self.lookup(d)
            && let Some(n) = &mut self.nodes[i as usize]
        {
            n.artifact_type = artifact_type;
        }
    }

    pub fn is_present(&self, d: &str) -> bool {
        self.lookup(d)
            .is_some_and(|i| self.nodes[i as usize].is_some())
    }

    fn is_referrer(&self, i: u32) -> bool {
        !self.subjects[i as usize].is_empty()
    }

    fn mode(&self, i: u32, policy: &Policy) -> Mode {
        policy.mode(
            self.nodes[i as usize]
                .as_ref()
                .and_then(|n| n.artifact_type.as_deref()),
        )
    }

    /// Whether `i` is a referrer whose subjects are all absent and that is inside the grace,
    /// none of them removed by a collection while it was there (it was garbage with it).
    fn dangling_protected(&self, i: u32, p: &Params<'_>) -> bool {
        let Some(node) = &self.nodes[i as usize] else {
            return false;
        };
        let subjects = &self.subjects[i as usize];
        !subjects.is_empty()
            && subjects.iter().all(|&s| self.nodes[s as usize].is_none())
            && p.now.saturating_sub(node.recorded_at) < p.grace_secs
            && !subjects
                .iter()
                .any(|&s| collected_with(p, &self.name(s), node.recorded_at))
            && !self.lost(i, node.recorded_at, p)
    }

    /// Whether `i` is a blob a walk found, younger than the grace: another tool may still be
    /// writing the manifest that will reference it.
    fn found_protected(&self, i: u32, p: &Params<'_>) -> bool {
        self.nodes[i as usize].as_ref().is_some_and(|n| {
            n.found
                && p.now.saturating_sub(n.recorded_at) < p.grace_secs
                && !self.lost(i, n.recorded_at, p)
        })
    }

    /// [`lost_to_collection`] over this view.
    fn lost(&self, i: u32, recorded_at: u64, p: &Params<'_>) -> bool {
        let walked: Result<bool, std::convert::Infallible> =
            lost_to_collection(p, recorded_at, i, |&x, next| {
                next.extend(&self.children[x as usize]);
                next.extend(&self.referrers[x as usize]);
                Ok(self.nodes[x as usize].is_none().then(|| self.name(x)))
            });
        walked.unwrap_or_else(|never| match never {})
    }

    /// When the first grace period of a protected dangling referrer or found blob ends
    /// (`u64::MAX`: none).
    pub fn next_expiry(&self, p: &Params<'_>) -> u64 {
        (0..self.names.len() as u32)
            .filter(|&i| self.dangling_protected(i, p) || self.found_protected(i, p))
            .filter_map(|i| self.nodes[i as usize].as_ref())
            .map(|n| n.recorded_at.saturating_add(p.grace_secs))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The roots, each with why it is one.
    fn roots(&self, p: &Params<'_>) -> Vec<(u32, Via)> {
        let mut out = Vec::new();
        for (tag, i) in &self.tags {
            if !self.is_referrer(*i) || self.mode(*i, p.policy) == Mode::Soft {
                out.push((*i, Via::Tag(tag.clone())));
            }
        }
        if !p.delete_untagged {
            out.extend(
                self.untagged
                    .iter()
                    .filter(|&&i| !self.is_referrer(i))
                    .map(|&i| (i, Via::Untagged)),
            );
        }
        out.extend(self.pins.iter().map(|&i| (i, Via::Pin)));
        out.extend(
            p.leased
                .iter()
                .filter_map(|d| self.lookup(d))
                .map(|i| (i, Via::Lease)),
        );
        out.extend(
            (0..self.names.len() as u32)
                .filter(|&i| self.dangling_protected(i, p))
                .map(|i| (i, Via::Dangling)),
        );
        out.extend(
            (0..self.names.len() as u32)
                .filter(|&i| self.found_protected(i, p))
                .map(|i| (i, Via::Found)),
        );
        out
    }

    /// Present digests that are not live, with size and reason, by digest.
    pub fn garbage(&self, live: &Marks, p: &Params<'_>) -> Vec<(String, u64, String)> {
        let mut out: Vec<_> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.is_some() && live.via[*i].is_none())
            .map(|(i, n)| {
                let i = i as u32;
                let size = n.as_ref().map_or(0, |n| n.size);
                (self.names[i as usize].text(), size, self.reason(i, p))
            })
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Why a present digest that is not live would go.
    pub fn reason(&self, i: u32, p: &Params<'_>) -> String {
        let subjects = &self.subjects[i as usize];
        let present = subjects
            .iter()
            .find(|&&s| self.nodes[s as usize].is_some())
            .map(|&s| self.name(s));
        let first = subjects.first().map(|&s| self.name(s));
        let untagged_dropped = p.delete_untagged && self.untagged.contains(&i);
        reason(present.as_deref(), first.as_deref(), untagged_dropped)
    }
}

/// Why a digest goes, in the words of every strategy: from the first of its subjects that is
/// present, the first of its subjects at all, and whether `--delete-untagged` drops an untagged
/// index.json entry of it.
pub(crate) fn reason(
    present_subject: Option<&str>,
    first_subject: Option<&str>,
    untagged_dropped: bool,
) -> String {
    match (present_subject, first_subject) {
        (Some(s), _) => format!("referrer of {s}, which is not live"),
        (None, Some(s)) => {
            format!("dangling referrer (subject {s} absent) older than the grace period")
        }
        (None, None) if untagged_dropped => "untagged index.json entry (--delete-untagged)".into(),
        (None, None) => "unreachable from any root".into(),
    }
}

/// The live set: for each id, how it was first reached (`None`: not live).
pub(crate) struct Marks {
    via: Vec<Option<Via>>,
}

impl Marks {
    pub fn via(&self, id: u32) -> Option<&Via> {
        self.via.get(id as usize).and_then(Option::as_ref)
    }
}

/// Marks everything live, breadth-first from the roots.
pub(crate) fn mark(view: &View, p: &Params<'_>) -> Marks {
    let mut via: Vec<Option<Via>> = vec![None; view.names.len()];
    let mut queue = VecDeque::new();
    for (i, how) in view.roots(p) {
        if via[i as usize].is_none() {
            via[i as usize] = Some(how);
            queue.push_back(i);
        }
    }
    while let Some(x) = queue.pop_front() {
        for &c in &view.children[x as usize] {
            if via[c as usize].is_none() {
                via[c as usize] = Some(Via::Child(x));
                queue.push_back(c);
            }
        }
        for &r in &view.referrers[x as usize] {
            if via[r as usize].is_none() {
                via[r as usize] = Some(Via::Referrer(x));
                queue.push_back(r);
            }
        }
    }
    Marks { via }
}

/// Whether a collection removed, after `recorded_at`, something `start` reaches through children
/// and referrers, recursively, that is still absent: the collection found `start` garbage, so a
/// grace period no longer protects it (see the module's liveness rule). This is the walk
/// `Store::refuse_collected` makes before a write makes a digest reachable, for a root that
/// the clock makes rather than a write. `step` visits a node: it adds the nodes it leads to
/// into the vector, and returns the node's digest if it is absent.
pub(crate) fn lost_to_collection<N, E>(
    p: &Params<'_>,
    recorded_at: u64,
    start: N,
    mut step: impl FnMut(&N, &mut Vec<N>) -> Result<Option<String>, E>,
) -> Result<bool, E>
where
    N: Clone + Eq + std::hash::Hash,
{
    if p.collected.is_empty() {
        return Ok(false);
    }
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![start];
    let mut next = Vec::new();
    while let Some(x) = stack.pop() {
        if !seen.insert(x.clone()) {
            continue;
        }
        if let Some(absent) = step(&x, &mut next)?
            && collected_with(p, &absent, recorded_at)
        {
            return Ok(true);
        }
        stack.append(&mut next);
    }
    Ok(false)
}

/// Whether a collection removed `subject` after a referrer recorded at `recorded_at` was there:
/// that referrer was garbage with its subject, and is not dangling (a crash or a failure may
/// have stopped the collection between the two, key order taking the subject first).
pub(crate) fn collected_with(p: &Params<'_>, subject: &str, recorded_at: u64) -> bool {
    p.collected
        .get(subject)
        .is_some_and(|&at| recorded_at <= at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_added_by_text_or_by_stored_key_is_one_node() {
        let sha256 = format!("sha256:{}", "0123456789abcdef".repeat(4));
        let sha512 = format!("sha512:{}", "fedcba9876543210".repeat(8));
        let odd = "sha256:NOT-HEX".to_string();
        let mut view = View::default();
        for d in [&sha256, &sha512, &odd] {
            view.add_blob_key(catalog::key_of_digest(d).as_ref(), Node::default());
        }
        view.add_edge(&sha256, &sha512);
        view.add_links(LinkRows {
            edges: vec![(Key::of(&sha256), Key::of(&odd))],
            referrers: vec![(Key::of(&sha256), Key::of(&sha512))],
        });
        view.add_link(&sha512, &odd);
        assert_eq!(view.names.len(), 3);
        for d in [&sha256, &sha512, &odd] {
            let id = view.lookup(d).expect("interned");
            assert_eq!(&view.name(id), d);
            assert!(view.is_present(d));
        }
        assert_eq!(view.children_of(&sha256), vec![sha512.clone(), odd.clone()]);
        assert_eq!(view.referrer_names(), vec![sha512, odd]);
    }
}
