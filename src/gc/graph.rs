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
//! - Live: everything reachable from a root through strong edges and, transitively, through
//!   referrer edges (every referrer of a live node is live).

use std::collections::{HashMap, HashSet, VecDeque};

use super::policy::{Mode, Policy};

/// One present blob.
#[derive(Clone, Debug, Default)]
pub(crate) struct Node {
    pub size: u64,
    pub recorded_at: u64,
    pub artifact_type: Option<String>,
}

/// The graph of a store at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct View {
    /// Present blobs.
    pub present: HashMap<String, Node>,
    /// Strong edges.
    pub children: HashMap<String, Vec<String>>,
    /// subject -> referrers (every source).
    pub referrers: HashMap<String, Vec<String>>,
    /// referrer -> subjects (every source).
    pub subjects: HashMap<String, Vec<String>>,
    /// Tags that are not referrer links, with their targets.
    pub tags: Vec<(String, String)>,
    /// Digests of untagged index.json entries.
    pub untagged: Vec<String>,
    /// Pinned digests.
    pub pins: Vec<String>,
}

/// What liveness depends on besides the graph.
#[derive(Clone, Debug)]
pub(crate) struct Params<'a> {
    pub now: u64,
    pub grace_secs: u64,
    pub delete_untagged: bool,
    pub policy: &'a Policy,
    pub leased: &'a HashSet<String>,
}

/// Why something is live: the root, or the edge it was reached through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Tag(String),
    Untagged,
    Pin,
    Lease,
    Dangling,
    Child(String),
    Referrer(String),
}

impl View {
    pub fn is_referrer(&self, d: &str) -> bool {
        self.subjects.get(d).is_some_and(|s| !s.is_empty())
    }

    fn mode(&self, d: &str, policy: &Policy) -> Mode {
        policy.mode(self.present.get(d).and_then(|n| n.artifact_type.as_deref()))
    }

    /// Whether `d` is a referrer whose subjects are all absent and that is inside the grace.
    pub fn dangling_protected(&self, d: &str, p: &Params<'_>) -> bool {
        let Some(node) = self.present.get(d) else {
            return false;
        };
        let Some(subjects) = self.subjects.get(d) else {
            return false;
        };
        !subjects.is_empty()
            && subjects.iter().all(|s| !self.present.contains_key(s))
            && p.now.saturating_sub(node.recorded_at) < p.grace_secs
    }

    /// The roots, each with why it is one.
    pub fn roots(&self, p: &Params<'_>) -> Vec<(String, Via)> {
        let mut out = Vec::new();
        for (tag, d) in &self.tags {
            if !self.is_referrer(d) || self.mode(d, p.policy) == Mode::Soft {
                out.push((d.clone(), Via::Tag(tag.clone())));
            }
        }
        if !p.delete_untagged {
            for d in &self.untagged {
                if !self.is_referrer(d) {
                    out.push((d.clone(), Via::Untagged));
                }
            }
        }
        out.extend(self.pins.iter().map(|d| (d.clone(), Via::Pin)));
        out.extend(p.leased.iter().map(|d| (d.clone(), Via::Lease)));
        let mut dangling: Vec<_> = self
            .present
            .keys()
            .filter(|d| self.dangling_protected(d, p))
            .cloned()
            .collect();
        dangling.sort();
        out.extend(dangling.into_iter().map(|d| (d, Via::Dangling)));
        out
    }
}

/// The live set, with for each live digest how it was first reached (for `explain`).
pub(crate) fn mark(view: &View, p: &Params<'_>) -> HashMap<String, Via> {
    let mut live: HashMap<String, Via> = HashMap::new();
    let mut queue = VecDeque::new();
    for (d, via) in view.roots(p) {
        if !live.contains_key(&d) {
            live.insert(d.clone(), via);
            queue.push_back(d);
        }
    }
    while let Some(x) = queue.pop_front() {
        let next = view
            .children
            .get(&x)
            .into_iter()
            .flatten()
            .map(|c| (c, Via::Child(x.clone())))
            .chain(
                view.referrers
                    .get(&x)
                    .into_iter()
                    .flatten()
                    .map(|r| (r, Via::Referrer(x.clone()))),
            );
        for (d, via) in next {
            if !live.contains_key(d) {
                live.insert(d.clone(), via);
                queue.push_back(d.clone());
            }
        }
    }
    live
}

/// Why a present digest that is not live would go.
pub(crate) fn reason(view: &View, d: &str, p: &Params<'_>) -> String {
    if let Some(subjects) = view.subjects.get(d).filter(|s| !s.is_empty()) {
        if let Some(s) = subjects.iter().find(|s| view.present.contains_key(*s)) {
            return format!("referrer of {s}, which is not live");
        }
        return format!(
            "dangling referrer (subject {} absent) older than the grace period",
            subjects[0]
        );
    }
    if p.delete_untagged && view.untagged.iter().any(|u| u == d) {
        return "untagged index.json entry (--delete-untagged)".into();
    }
    "unreachable from any root".into()
}
