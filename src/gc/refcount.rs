//! The reference-count strategy: garbage found from the counts kept on every write, at a cost
//! that follows the garbage rather than the store.
//!
//! The catalog keeps, per digest, its present strong parents, present `subject`-field subjects,
//! root tags and untagged entries, and the set `CANDIDATES` of present digests with no supporter
//! (see [`crate::catalog`]). From there:
//!
//! 1. `T` starts as the candidates that no root anchors (the same root rule as [`super::graph`]).
//! 2. Cascade: a digest joins `T` when every one of its supporters (strong parents and
//!    `subject`-field subjects) is in `T` and no root anchors it. A fallback index with no
//!    supporter that waits on its subject (`Writer::waits_on`) is not a candidate: it joins `T`
//!    once every subject it waits on has, unless a root anchors it. So fallback indexes of live
//!    images cost nothing until their images become garbage.
//! 3. Rescue: members of `T` linked to a present subject outside `T` (through a link that is not
//!    counted), and dangling referrers inside the grace, are live, with everything they reach
//!    inside `T`.
//!
//! What stays in `T` is garbage. Only links that cannot close a cycle of support are counted:
//! strong edges, the `subject` links [`crate::catalog::subject_link_counts`] admits, and the
//! cosign and fallback tag links in `TAG_COUNTED` (see `Writer::count_tag_link`). So counting
//! alone never keeps a cycle alive. The other links (`subject` links of referrers that list
//! manifests, tag links whose subject is itself a referrer, a fallback index's own link) can form
//! cycles, which is why they are resolved by marking in step 3 instead of counted; their
//! referrers are examined at every collection.

use std::collections::VecDeque;

use super::Removal;
use super::graph::Params;
use super::policy::Mode;
use crate::catalog::{Reader, Source, count, subject_link_counts};
use crate::error::Result;
use crate::fasthash::{FastMap, FastSet};

/// The garbage, as the reference counts find it, each digest with its size and why it goes.
/// Also returns when the first grace period of a protected dangling referrer ends.
pub(crate) fn garbage(r: &Reader, p: &Params<'_>) -> Result<(Vec<Removal>, u64)> {
    let mut memo_anchor: FastMap<String, bool> = FastMap::default();
    let mut anchored = |d: &str| -> Result<bool> {
        if let Some(&a) = memo_anchor.get(d) {
            return Ok(a);
        }
        let a = anchored(r, d, p)?;
        memo_anchor.insert(d.to_owned(), a);
        Ok(a)
    };
    let mut t: FastSet<String> = FastSet::default();
    let mut queue: VecDeque<String> = VecDeque::new();
    for d in r.candidates()? {
        if !anchored(&d)? {
            t.insert(d.clone());
            queue.push_back(d);
        }
    }
    // 2. Cascade over the counted edges.
    let mut in_t: FastMap<String, u32> = FastMap::default();
    // Each member of `T` is queued once: its size and when it was recorded, for step 3 and the
    // report.
    let mut records: FastMap<String, (u64, u64)> = FastMap::default();
    while let Some(x) = queue.pop_front() {
        let mut dependents = r.children(&x)?;
        let record = r.blob(&x)?;
        let x_is_manifest = record.as_ref().is_some_and(|b| b.manifest);
        if let Some(b) = record {
            records.insert(x.clone(), (b.size, b.recorded_at));
        }
        let referrers = r.referrers(&x)?;
        for (d, src) in &referrers {
            if *src == Source::Subject
                && r.manifest(d)?
                    .is_some_and(|m| subject_link_counts(x_is_manifest, &m))
            {
                dependents.push(d.clone());
            }
        }
        dependents.extend(r.counted_tag_referrers(&x)?);
        // Unsupported fallback indexes that waited on `x` (not candidates) join once every
        // subject they wait on has: as candidates they would have been in `T` from the start,
        // and live only through a subject outside it.
        for (y, src) in referrers {
            if src != Source::FallbackIndex || t.contains(&y) || r.blob(&y)?.is_none() {
                continue;
            }
            let c = r.counts(&y)?;
            if c[count::PARENTS] + c[count::SUBJECT_LINKS] > 0 {
                continue; // supported: the counted cascade below decides
            }
            let mut all_in_t = true;
            for (s, src) in r.subjects(&y)? {
                if src == Source::FallbackIndex
                    && !t.contains(&s)
                    && r.blob(&s)?.is_some_and(|b| b.manifest)
                    && r.subjects(&s)?.is_empty()
                {
                    all_in_t = false;
                    break;
                }
            }
            if all_in_t && !anchored(&y)? {
                t.insert(y.clone());
                queue.push_back(y);
            }
        }
        for y in dependents {
            if t.contains(&y) || r.blob(&y)?.is_none() {
                continue;
            }
            let c = r.counts(&y)?;
            let supporters = c[count::PARENTS] + c[count::SUBJECT_LINKS];
            let n = in_t.entry(y.clone()).or_insert(0);
            *n += 1;
            if *n >= supporters && !anchored(&y)? {
                t.insert(y.clone());
                queue.push_back(y);
            }
        }
    }
    // 3. Rescue what an uncounted link or the grace keeps, and what that reaches.
    let mut rescued: FastSet<String> = FastSet::default();
    let mut reasons: FastMap<&str, String> = FastMap::default();
    let mut next_expiry = u64::MAX;
    let mut queue: VecDeque<String> = VecDeque::new();
    for y in &t {
        let subjects = r.subjects(y)?;
        let mut present_subject = false;
        let mut first_present = None;
        let mut all_absent = !subjects.is_empty();
        for (s, _) in &subjects {
            if r.blob(s)?.is_some() {
                all_absent = false;
                first_present = first_present.or(Some(s.as_str()));
                if !t.contains(s) {
                    present_subject = true;
                }
            } else if absent_but_live(r, s, &t, p)? {
                // An absent subject can still be live (a live index lists it, a lease or a pin
                // protects it), and so are its referrers.
                present_subject = true;
            }
        }
        let recorded = records.get(y).map(|&(_, at)| at);
        let dangling = match recorded {
            Some(at) if all_absent => {
                p.now.saturating_sub(at) < p.grace_secs
                    && !subjects
                        .iter()
                        .any(|(s, _)| super::graph::collected_with(p, s, at))
                    && !lost(r, y, at, p)?
            }
            _ => false,
        };
        if dangling && let Some(at) = recorded {
            next_expiry = next_expiry.min(at.saturating_add(p.grace_secs));
        }
        if present_subject || dangling {
            rescued.insert(y.clone());
            queue.push_back(y.clone());
        } else {
            let untagged_dropped =
                subjects.is_empty() && p.delete_untagged && r.counts(y)?[count::UNTAGGED] > 0;
            let first = subjects.first().map(|(s, _)| s.as_str());
            let reason = super::graph::reason(first_present, first, untagged_dropped);
            reasons.insert(y.as_str(), reason);
        }
    }
    // Liveness passes through absent digests too (a live index lists a manifest not pushed
    // yet, whose referrers are here), so the walk visits them on its way.
    let mut transit: FastSet<String> = FastSet::default();
    while let Some(x) = queue.pop_front() {
        let mut next = r.children(&x)?;
        next.extend(r.referrers(&x)?.into_iter().map(|(d, _)| d));
        for y in next {
            if t.contains(&y) {
                if rescued.insert(y.clone()) {
                    queue.push_back(y);
                }
            } else if r.blob(&y)?.is_none() && transit.insert(y.clone()) {
                queue.push_back(y);
            }
        }
    }
    let mut out = Vec::with_capacity(t.len());
    for d in &t {
        if rescued.contains(d) {
            continue;
        }
        out.push(Removal {
            digest: d.clone(),
            size: records.get(d).map_or(0, |&(size, _)| size),
            reason: reasons.remove(d.as_str()).unwrap_or_default(),
        });
    }
    Ok((out, next_expiry))
}

/// Whether an absent digest is live: a root names it or a live parent (present, outside `T`)
/// lists it.
fn absent_but_live(r: &Reader, d: &str, t: &FastSet<String>, p: &Params<'_>) -> Result<bool> {
    if anchored(r, d, p)? {
        return Ok(true);
    }
    // `parents` lists present parents only.
    Ok(r.parents(d)?.iter().any(|parent| !t.contains(parent)))
}

/// Whether a root keeps `d` by itself: the rule of [`super::graph::View::roots`], read from the
/// counts instead of a loaded graph.
fn anchored(r: &Reader, d: &str, p: &Params<'_>) -> Result<bool> {
    if p.leased.contains(d) || r.is_pinned(d)? {
        return Ok(true);
    }
    if let Some(b) = r.blob(d)?
        && b.found
        && p.now.saturating_sub(b.recorded_at) < p.grace_secs
        && !lost(r, d, b.recorded_at, p)?
    {
        return Ok(true);
    }
    let c = r.counts(d)?;
    let referrer = !r.subjects(d)?.is_empty();
    if c[count::TAG_ROOTS] > 0 {
        if !referrer {
            return Ok(true);
        }
        let artifact_type = r.manifest(d)?.and_then(|m| m.artifact_type);
        if p.policy.mode(artifact_type.as_deref()) == Mode::Soft {
            return Ok(true);
        }
    }
    Ok(c[count::UNTAGGED] > 0 && !p.delete_untagged && !referrer)
}

/// [`super::graph::lost_to_collection`] over the index.
fn lost(r: &Reader, d: &str, recorded_at: u64, p: &Params<'_>) -> Result<bool> {
    super::graph::lost_to_collection(p, recorded_at, d.to_owned(), |x, next| {
        next.extend(r.children(x)?);
        next.extend(r.referrers(x)?.into_iter().map(|(d, _)| d));
        Ok(r.blob(x)?.is_none().then(|| x.clone()))
    })
}
