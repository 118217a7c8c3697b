//! Importing from another OCI layout: what the chosen entries reach, with their referrers.
//!
//! The closure of an import is everything reachable from the chosen index.json entries through
//! strong edges, plus every referrer of anything in it, transitively, plus the index.json
//! entries that link referrers to those subjects (cosign tags, fallback-index tags, and untagged
//! oras-style entries). Everything is copied through the normal ingest path (each blob verified
//! against its digest) in one batch: one index commit and one index.json rewrite.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::layout::index_json::{Entry, IndexJson};
use crate::refname::ReferrerTag;
use crate::scan::{self, LayoutGraph};
use crate::store::{PutOptions, Store};

/// What an import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    /// Blobs copied into the store.
    pub copied_blobs: u64,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Blobs the store already held.
    pub present_blobs: u64,
    /// Referenced blobs the source layout lacks (sparse layouts), not copied.
    pub missing_blobs: Vec<Digest>,
    /// Tags set in the store.
    pub tags: Vec<String>,
    /// Untagged index.json entries added.
    pub untagged_entries: u64,
    /// Files of the source skipped while reading it.
    pub warnings: Vec<String>,
}

impl Store {
    /// Imports from the layout at `src` the entries tagged `tags` (all entries when empty),
    /// everything they reach, and their referrers.
    pub fn import(&self, src: &Path, tags: &[String]) -> Result<ImportReport> {
        let layout = Layout::new(src);
        layout.check()?;
        let (index, _) = IndexJson::read(&layout.index_json())?;
        let scanned = scan::scan(
            &layout,
            self.options().max_manifest_size,
            self.options().progress,
        )?;
        let graph = LayoutGraph::new(&scanned, &index);

        let mut chosen: Vec<&Entry> = Vec::new();
        if tags.is_empty() {
            chosen.extend(&index.entries);
        } else {
            for t in tags {
                let e = index
                    .entries
                    .iter()
                    .rev()
                    .find(|e| e.tag.as_deref() == Some(t.as_str()))
                    .ok_or_else(|| Error::NotFound(format!("tag {t:?} in {}", src.display())))?;
                chosen.push(e);
            }
        }
        // Grow the closure until no more linking entries join it (links can chain: a fallback
        // index of a signature of an SBOM).
        let mut closure = graph.closure(chosen.iter().map(|e| e.digest.clone()));
        loop {
            let linked: Vec<&Entry> = index
                .entries
                .iter()
                .filter(|e| !chosen.contains(e) && links_into(e, &closure))
                .collect();
            if linked.is_empty() {
                break;
            }
            chosen.extend(linked);
            closure = graph.closure(chosen.iter().map(|e| e.digest.clone()));
        }

        let mut report = ImportReport {
            warnings: scanned.warnings.clone(),
            ..ImportReport::default()
        };
        let sizes: HashMap<&Digest, u64> =
            scanned.blobs.iter().map(|b| (&b.digest, b.size)).collect();
        let mut batch = self.batch()?;
        for d in &children_first(&closure, &graph) {
            let Some(&size) = sizes.get(d) else {
                if self.blob_info(d)?.is_none() {
                    report.missing_blobs.push((*d).clone());
                }
                continue;
            };
            let opts = PutOptions {
                media_type: graph.manifests.get(d).map(|p| p.media_type.clone()),
                digest: Some((*d).clone()),
                size: Some(size),
            };
            let mut file = layout.open_blob(d)?;
            let put = batch.put(&mut file, &opts)?;
            if put.existed {
                report.present_blobs += 1;
            } else {
                report.copied_blobs += 1;
                report.copied_bytes += put.size;
            }
        }
        for e in &chosen {
            if !graph.manifests.contains_key(&e.digest) && self.manifest_info(&e.digest)?.is_none()
            {
                continue;
            }
            batch.add_entry(e)?;
            match &e.tag {
                Some(t) => report.tags.push(t.clone()),
                None => report.untagged_entries += 1,
            }
        }
        batch.commit()?;
        Ok(report)
    }
}

/// The closure in the order it is copied: every blob before a manifest that lists it, so that an
/// import cut short (by a crash) never leaves a manifest whose content is not there.
fn children_first<'c>(closure: &'c BTreeSet<Digest>, graph: &LayoutGraph<'_>) -> Vec<&'c Digest> {
    let mut order = Vec::with_capacity(closure.len());
    let mut placed: BTreeSet<&Digest> = BTreeSet::new();
    // Expanded, not yet placed: the path from the start of the current walk.
    let mut on_path: BTreeSet<&Digest> = BTreeSet::new();
    for start in closure {
        // Iterative post-order over the manifests' children (a cycle, which no valid layout
        // has, is cut where it closes).
        let mut stack = vec![(start, false)];
        while let Some((d, expanded)) = stack.pop() {
            if expanded {
                on_path.remove(d);
                if placed.insert(d) {
                    order.push(d);
                }
                continue;
            }
            if placed.contains(d) || on_path.contains(d) {
                continue;
            }
            on_path.insert(d);
            stack.push((d, true));
            if let Some(p) = graph.manifests.get(d) {
                for c in &p.children {
                    if let Some(c) = closure.get(&c.digest)
                        && !placed.contains(c)
                        && !on_path.contains(c)
                    {
                        stack.push((c, false));
                    }
                }
            }
        }
    }
    order
}

/// Whether an index.json entry links a referrer to a subject in `closure`: a cosign or fallback
/// tag named after it, or an untagged entry for a manifest already in it (oras style).
fn links_into(e: &Entry, closure: &BTreeSet<Digest>) -> bool {
    match e.tag.as_deref().map(ReferrerTag::parse) {
        Some(Some(link)) => closure.contains(&link.subject),
        Some(None) => false,
        None => closure.contains(&e.digest),
    }
}
