//! Model-based tests of the garbage collector.
//!
//! A small, independent model of the liveness rule (plain maps, written from the specification,
//! not from the library) is kept in step with a real store while random graphs are pushed and
//! random operations applied; then the three strategies must each find exactly the model's
//! garbage, a real collection must remove exactly that, and a second collection nothing.
//!
//! The rule the model implements:
//!
//! - Referrer links (subject -> referrer): a present manifest's `subject` field; a tag
//!   `sha256-<hex of S>.sig|.att|.sbom` on M links S -> M; a tag `sha256-<hex of S>` on an
//!   index F links S -> F and S -> each child of F. A referrer is a manifest with a link in.
//! - Roots: tags that are not link tags, except a referrer's under the hard policy; untagged
//!   index.json entries of non-referrers (unless `delete_untagged`); pins; leases; referrers all of
//!   whose subjects are absent, while inside the grace.
//! - Live: reachable from a root through strong edges (of present manifests) and referrer links.
//!   Reachability is over digests, present or not: an absent manifest that a live index lists, or
//!   that is pinned or leased, is live, and so are its referrers. Garbage: the rest of what is
//!   present.
//!
//! Some referrers are stored under names the pusher gives (an algorithm the store cannot verify)
//! instead of their sha256, so that a `subject` field may name a referrer built after it, and
//! `subject` fields may form cycles, as content hashes cannot. A link tag for such a name is a
//! plain tag (`x-model-ref1.sig` is not `<alg>-<hex>` of a known algorithm), for the store as
//! for the model.
//!
//! Each check runs every strategy in a dry run twice: computed in full, and as users get it (a
//! store unchanged since its last collection gets an O(1) answer); both must match the model.
//! Known problems that the default random test steps around are listed in [`Scope`].
//!
//! `OCISTORE_GC_PROPTEST_CASES` sets the number of random cases (48 by default).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use ocistore::gc::{DeleteOptions, GcOptions, Mode, Policy, Strategy};
use ocistore::verify::{ProblemKind, VerifyOptions};
use ocistore::{Digest, Entry, LinkKind, Options, PutOptions, ReferrerTag, Store};
use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const SIG: &str = "application/vnd.example.sig";
const SPDX: &str = "application/spdx+json";
const SIG_CONFIG: &str = "application/vnd.example.sig.config";

/// The artifact types a policy may name: two `artifactType` values and three config media types.
const TYPES: [&str; 5] = [SIG, SPDX, SIG_CONFIG, EMPTY, CONFIG];
/// Config media types of referrers without an `artifactType`.
const REF_CONFIGS: [&str; 3] = [SIG_CONFIG, EMPTY, CONFIG];
/// Plain tag names (a small pool, so that tags move).
const TAG_NAMES: [&str; 5] = ["latest", "v1", "v2", "stable", "dev"];
const LINK_KINDS: [LinkKind; 4] = [
    LinkKind::CosignSig,
    LinkKind::CosignAtt,
    LinkKind::CosignSbom,
    LinkKind::Fallback,
];
const STRATEGIES: [Strategy; 3] = [Strategy::MarkSweep, Strategy::Refcount, Strategy::Scan];
const LAYERS: usize = 6;
const CONFIGS: usize = 3;
const GHOSTS: usize = 2;
const DAY: Duration = Duration::from_secs(24 * 3600);

// ---------------------------------------------------------------------------------------------
// The universe: every blob a case may push, with what the model needs to know of it.

#[derive(Clone, Debug)]
struct Blob {
    label: String,
    bytes: Vec<u8>,
    digest: Digest,
    /// Media type given to `put` (and to index.json entries).
    put_type: &'static str,
    manifest: bool,
    index: bool,
    /// Strong children (config and layers, or index entries).
    children: Vec<String>,
    /// The `subject` field.
    subject: Option<String>,
    /// `artifactType`, else the config's media type.
    artifact_type: Option<String>,
    /// Stored under a name the pusher gives (an algorithm the store cannot verify) instead of
    /// its sha256: such names, unlike content hashes, can form cycles of `subject` fields.
    named: bool,
}

impl Blob {
    fn raw(label: String, put_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            label,
            digest: Digest::sha256(&bytes),
            bytes,
            put_type,
            manifest: false,
            index: false,
            children: Vec::new(),
            subject: None,
            artifact_type: None,
            named: false,
        }
    }

    fn doc(label: String, doc: &Value) -> Blob {
        let bytes = serde_json::to_vec(doc).unwrap();
        let index = doc["mediaType"] == INDEX;
        let mut children: Vec<String> = Vec::new();
        if let Some(c) = doc.get("config") {
            children.push(c["digest"].as_str().unwrap().to_owned());
        }
        for list in ["layers", "manifests"] {
            for d in doc
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                children.push(d["digest"].as_str().unwrap().to_owned());
            }
        }
        let artifact_type = doc
            .get("artifactType")
            .or_else(|| doc.get("config").map(|c| &c["mediaType"]))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Blob {
            label,
            digest: Digest::sha256(&bytes),
            bytes,
            put_type: if index { INDEX } else { MANIFEST },
            manifest: true,
            index,
            children,
            subject: doc
                .get("subject")
                .map(|s| s["digest"].as_str().unwrap().to_owned()),
            artifact_type,
            named: false,
        }
    }

    /// As [`Blob::doc`], stored under `name`.
    fn named(label: String, doc: &Value, name: &str) -> Blob {
        Blob {
            digest: name.parse().unwrap(),
            named: true,
            ..Blob::doc(label, doc)
        }
    }

    /// The options that store it under its digest.
    fn put_options(&self) -> PutOptions {
        PutOptions {
            media_type: Some(self.put_type.to_owned()),
            digest: self.named.then(|| self.digest.clone()),
            size: self.named.then_some(self.bytes.len() as u64),
        }
    }

    fn desc(&self) -> Value {
        json!({"mediaType": self.put_type, "digest": self.digest.as_str(), "size": self.bytes.len()})
    }

    fn desc_as(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest.as_str(), "size": self.bytes.len()})
    }
}

/// One step applied to the store and the model.
#[derive(Clone, Debug)]
enum Step {
    Push(usize),
    Tag(usize, String),
    /// Removes the n-th current tag (modulo their number).
    Untag(usize),
    Entry(usize),
    Delete(usize),
    /// Deletes the n-th current tag through `Store::delete`.
    DeleteTag(usize),
    /// Deletes a manifest (force), pushes it again, and restores its tags and its entry.
    Repush(usize),
    Pin(usize),
    Unpin(usize),
    Lease(usize),
    Gc(Strategy, bool, bool),
}

struct Universe {
    blobs: Vec<Blob>,
    by_digest: HashMap<String, usize>,
    steps: Vec<Step>,
}

impl Universe {
    fn blob(&self, d: &str) -> Option<&Blob> {
        self.by_digest.get(d).map(|&i| &self.blobs[i])
    }

    fn label(&self, d: &str) -> String {
        self.blob(d).map_or_else(
            || format!("?{}", &d[..15.min(d.len())]),
            |b| b.label.clone(),
        )
    }

    fn labels(&self, set: &BTreeSet<String>) -> Vec<String> {
        set.iter().map(|d| self.label(d)).collect()
    }

    /// A tag, with the digest of a link tag shown as the label of its subject.
    fn show_tag(&self, tag: &str) -> String {
        match parse_link_tag(tag) {
            Some((s, _)) => {
                let suffix = [".sig", ".att", ".sbom"]
                    .into_iter()
                    .find(|x| tag.ends_with(x))
                    .unwrap_or("");
                format!("sha256-<{}>{suffix}", self.label(&s))
            }
            None => tag.to_owned(),
        }
    }

    fn show(&self, step: &Step) -> String {
        let l = |i: &usize| self.blobs[*i].label.clone();
        match step {
            Step::Push(i) => format!("push {}", l(i)),
            Step::Tag(i, t) => format!("tag {} {}", l(i), self.show_tag(t)),
            Step::Untag(n) => format!("untag #{n}"),
            Step::Entry(i) => format!("untagged entry {}", l(i)),
            Step::Delete(i) => format!("delete {}", l(i)),
            Step::DeleteTag(n) => format!("delete tag #{n}"),
            Step::Repush(i) => format!("delete and push again {}", l(i)),
            Step::Pin(i) => format!("pin {}", l(i)),
            Step::Unpin(i) => format!("unpin {}", l(i)),
            Step::Lease(i) => format!("lease {}", l(i)),
            Step::Gc(s, g, du) => format!("gc {s:?} grace={} delete_untagged={du}", grace_str(*g)),
        }
    }
}

fn grace_str(g: bool) -> &'static str {
    if g { "24h" } else { "0" }
}

/// `sha256-<hex>.sig|.att|.sbom` -> (subject, false); `sha256-<hex>` -> (subject, true).
fn parse_link_tag(tag: &str) -> Option<(String, bool)> {
    let (stem, fallback) = match [".sig", ".att", ".sbom"]
        .iter()
        .find_map(|s| tag.strip_suffix(s))
    {
        Some(stem) => (stem, false),
        None => (tag, true),
    };
    let hex = stem.strip_prefix("sha256-")?;
    let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| (format!("sha256:{hex}"), fallback))
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, Default)]
struct Model {
    present: BTreeSet<String>,
    tags: BTreeMap<String, String>,
    untagged: BTreeSet<String>,
    pins: BTreeSet<String>,
    leased: BTreeSet<String>,
}

/// The model's answer.
struct Liveness {
    garbage: BTreeSet<String>,
    /// Whether the absent-digest case of [`Scope`] holds: an absent digest with a present
    /// referrer is live, is neither pinned nor leased, and no present parent of it is reachable
    /// from a root through strong edges and `subject` fields alone (the counted edges).
    absent_via_link: bool,
    /// Whether the cycle case of [`Scope`] holds: a cycle of edges (strong edges and
    /// `subject` fields) among present blobs, as when a referrer lists its own subject.
    counted_cycle: bool,
}

struct Rule<'a> {
    grace: bool,
    delete_untagged: bool,
    policy: &'a Policy,
}

impl Model {
    fn garbage(&self, u: &Universe, rule: &Rule<'_>) -> Liveness {
        // Referrer links, both ways.
        let mut referrers: HashMap<String, Vec<String>> = HashMap::new();
        let mut subjects: HashMap<String, Vec<String>> = HashMap::new();
        let mut link = |s: &str, r: &str| {
            referrers
                .entry(s.to_owned())
                .or_default()
                .push(r.to_owned());
            subjects.entry(r.to_owned()).or_default().push(s.to_owned());
        };
        for d in &self.present {
            if let Some(s) = u.blob(d).and_then(|b| b.subject.as_ref()) {
                link(s, d);
            }
        }
        for (tag, d) in &self.tags {
            if let Some((s, fallback)) = parse_link_tag(tag) {
                link(&s, d);
                if fallback {
                    for c in &u.blob(d).unwrap().children {
                        link(&s, c);
                    }
                }
            }
        }
        let is_referrer = |d: &str| subjects.contains_key(d);
        let soft = |d: &str| {
            let t = u.blob(d).and_then(|b| b.artifact_type.as_deref());
            let mode = t
                .and_then(|t| rule.policy.artifact_types.get(t).copied())
                .unwrap_or(rule.policy.default);
            mode == Mode::Soft
        };
        let mut roots: Vec<String> = Vec::new();
        for (tag, d) in &self.tags {
            if parse_link_tag(tag).is_none() && (!is_referrer(d) || soft(d)) {
                roots.push(d.clone());
            }
        }
        if !rule.delete_untagged {
            roots.extend(self.untagged.iter().filter(|d| !is_referrer(d)).cloned());
        }
        roots.extend(self.pins.iter().cloned());
        roots.extend(self.leased.iter().cloned());
        let counted_roots = roots.clone();
        if rule.grace {
            for d in &self.present {
                if let Some(ss) = subjects.get(d)
                    && ss.iter().all(|s| !self.present.contains(s))
                {
                    roots.push(d.clone());
                }
            }
        }
        let mut live: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<String> = roots.into_iter().collect();
        while let Some(x) = queue.pop_front() {
            if !live.insert(x.clone()) {
                continue;
            }
            if self.present.contains(&x) {
                queue.extend(u.blob(&x).unwrap().children.iter().cloned());
            }
            queue.extend(referrers.get(&x).into_iter().flatten().cloned());
        }
        // Not part of the rule: the condition of the absent-digest case of `Scope`.
        let mut counted: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<String> = counted_roots.into_iter().collect();
        while let Some(x) = queue.pop_front() {
            if !self.present.contains(&x) || !counted.insert(x.clone()) {
                continue;
            }
            queue.extend(u.blob(&x).unwrap().children.iter().cloned());
            queue.extend(
                self.present
                    .iter()
                    .filter(|r| u.blob(r).unwrap().subject.as_ref() == Some(&x))
                    .cloned(),
            );
        }
        let absent_via_link = live.iter().any(|d| {
            !self.present.contains(d)
                && !self.pins.contains(d)
                && !self.leased.contains(d)
                && referrers
                    .get(d)
                    .is_some_and(|rs| rs.iter().any(|r| self.present.contains(r)))
                && !counted
                    .iter()
                    .any(|p| u.blob(p).unwrap().children.contains(d))
        });
        // A cycle of counted edges among present blobs (Kahn: what never loses its last edge in).
        let mut edges: Vec<(&String, &String)> = Vec::new();
        for x in &self.present {
            let b = u.blob(x).unwrap();
            edges.extend(
                b.children
                    .iter()
                    .filter(|c| self.present.contains(*c))
                    .map(|c| (x, c)),
            );
            if let Some(s) = b.subject.as_ref().filter(|s| self.present.contains(*s)) {
                edges.push((s, x));
            }
        }
        let mut indegree: BTreeMap<&String, usize> = BTreeMap::new();
        for (_, to) in &edges {
            *indegree.entry(to).or_default() += 1;
        }
        let mut free: Vec<&String> = self
            .present
            .iter()
            .filter(|d| !indegree.contains_key(d))
            .collect();
        let mut freed = 0;
        while let Some(x) = free.pop() {
            freed += 1;
            for (_, to) in edges.iter().filter(|(from, _)| *from == x) {
                let n = indegree.get_mut(to).unwrap();
                *n -= 1;
                if *n == 0 {
                    free.push(to);
                }
            }
        }
        let counted_cycle = freed < self.present.len();
        Liveness {
            garbage: self.present.difference(&live).cloned().collect(),
            absent_via_link,
            counted_cycle,
        }
    }

    /// Removes what a delete or a collection removed (with their tags, entries and pins).
    fn remove(&mut self, removed: &BTreeSet<String>) {
        self.tags.retain(|_, d| !removed.contains(d));
        for d in removed {
            self.present.remove(d);
            self.untagged.remove(d);
            self.pins.remove(d);
        }
    }

    /// Whether a fallback index among `garbage` lists something that stays: removing it takes
    /// its tag, hence its links, away from what stays (the spec corner of [`Scope`]).
    fn unlinks_survivors(&self, u: &Universe, garbage: &BTreeSet<String>) -> bool {
        self.tags.iter().any(|(t, f)| {
            parse_link_tag(t).is_some_and(|(_, fallback)| fallback)
                && garbage.contains(f)
                && u.blob(f)
                    .unwrap()
                    .children
                    .iter()
                    .any(|c| self.present.contains(c) && !garbage.contains(c))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Plans (what proptest generates) and how they become a universe and steps.

#[derive(Clone, Debug)]
struct ImagePlan {
    config: usize,
    layers: Vec<usize>,
    tag: Option<usize>,
    entry: bool,
}

#[derive(Clone, Debug)]
struct IndexPlan {
    members: Vec<usize>,
    tag: Option<usize>,
    entry: bool,
}

#[derive(Clone, Debug)]
enum LinkPlan {
    /// The `subject` field.
    Field,
    /// A cosign tag of this kind (0..3).
    Cosign(usize),
    /// An entry of the fallback index of its subject.
    Fallback,
}

#[derive(Clone, Debug)]
struct RefPlan {
    link: LinkPlan,
    /// Among ghosts, images, indexes and the earlier referrers (modulo).
    subject: usize,
    /// 0: SIG, 1: SPDX, 2: none (the config media type is the artifact type).
    art: usize,
    config: usize,
    shared_payload: Option<usize>,
    tag: Option<usize>,
    entry: bool,
    /// Also tag `sha256-<self>.sig` onto its subject: a referrer cycle.
    cycle: bool,
    /// An index listing this image (modulo) instead of a manifest with a payload.
    lists: Option<usize>,
    naming: Naming,
}

/// How a referrer is named, and whether its `subject` field names a referrer built after it.
#[derive(Clone, Debug)]
struct Naming {
    /// Stored under a name of its own (see [`Blob::named`]), not its sha256.
    named: bool,
    /// With a `subject` field: a later named referrer (modulo their number) as subject
    /// instead, known by its name before it is built.
    ahead: Option<usize>,
    /// The subject is the last earlier referrer whose `ahead` chose this one, if any: a cycle of
    /// `subject` fields.
    close: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Push(usize),
    Tag(usize, usize),
    LinkTag(usize, usize, usize),
    Untag(usize),
    Entry(usize),
    Delete(usize),
    DeleteManifest(usize),
    DeleteTag(usize),
    /// Delete a manifest, then push it again.
    DeleteAndPush(usize),
    Pin(usize),
    Unpin(usize),
    Lease(usize),
    Gc(usize, bool, bool),
}

#[derive(Clone, Debug)]
struct Plan {
    images: Vec<ImagePlan>,
    indexes: Vec<IndexPlan>,
    referrers: Vec<RefPlan>,
    /// Blobs not pushed by the setup (modulo the blobs other than ghosts).
    skip: Vec<usize>,
    /// Blobs pushed at the end of the setup, after the tags (so after their referrers).
    delay: Vec<usize>,
    ops: Vec<Op>,
    default_soft: bool,
    /// Per entry of [`TYPES`]: an override, `true` for soft.
    overrides: Vec<Option<bool>>,
    grace: bool,
    delete_untagged: bool,
    strategy: usize,
}

impl Plan {
    fn policy(&self) -> Policy {
        let mode = |soft: bool| if soft { Mode::Soft } else { Mode::Hard };
        Policy {
            default: mode(self.default_soft),
            artifact_types: TYPES
                .iter()
                .zip(&self.overrides)
                .filter_map(|(t, o)| o.map(|s| ((*t).to_owned(), mode(s))))
                .collect(),
        }
    }

    /// The universe of the plan. A referrer whose `subject` field names a later, named referrer
    /// holds that referrer's size, known only once it is built: the sizes are guessed, then
    /// corrected until every document holds the true size of its subject.
    fn universe(&self) -> Universe {
        let mut guess = HashMap::new();
        for _ in 0..8 {
            let (universe, sizes) = self.universe_with(&guess);
            if sizes == guess {
                return universe;
            }
            guess = sizes;
        }
        panic!("the sizes of named referrers did not settle: {guess:?}");
    }

    /// The name of the `i`-th referrer, when it is named.
    fn ref_name(i: usize) -> String {
        format!("x-model:ref{i}")
    }

    /// Builds the universe with `guess` as the sizes of named referrers that others name before
    /// they are built; returns it with the true sizes of those referrers.
    fn universe_with(&self, guess: &HashMap<usize, u64>) -> (Universe, HashMap<usize, u64>) {
        let mut blobs: Vec<Blob> = Vec::new();
        let layers: Vec<usize> = (0..LAYERS)
            .map(|i| {
                blobs.push(Blob::raw(
                    format!("layer{i}"),
                    LAYER,
                    format!("layer {i}").into_bytes(),
                ));
                blobs.len() - 1
            })
            .collect();
        let configs: Vec<usize> = (0..CONFIGS)
            .map(|i| {
                let bytes = format!(r#"{{"architecture":"amd64","os":"linux","n":{i}}}"#);
                blobs.push(Blob::raw(format!("config{i}"), CONFIG, bytes.into_bytes()));
                blobs.len() - 1
            })
            .collect();
        blobs.push(Blob::raw("empty".into(), EMPTY, b"{}".to_vec()));
        let empty = blobs.len() - 1;
        let payloads: Vec<usize> = (0..self.referrers.len())
            .map(|i| {
                blobs.push(Blob::raw(
                    format!("payload{i}"),
                    "application/octet-stream",
                    format!("payload {i}").into_bytes(),
                ));
                blobs.len() - 1
            })
            .collect();
        let mut subjectable: Vec<usize> = Vec::new();
        let first_ghost = blobs.len();
        for g in 0..GHOSTS {
            let doc = json!({"schemaVersion": 2, "mediaType": MANIFEST,
                "config": blobs[configs[0]].desc(), "layers": [],
                "annotations": {"ghost": g.to_string()}});
            blobs.push(Blob::doc(format!("ghost{g}"), &doc));
            subjectable.push(blobs.len() - 1);
        }
        let mut images = Vec::new();
        for (i, p) in self.images.iter().enumerate() {
            let ls: Vec<Value> = p.layers.iter().map(|&l| blobs[layers[l]].desc()).collect();
            let doc = json!({"schemaVersion": 2, "mediaType": MANIFEST,
                "config": blobs[configs[p.config]].desc(), "layers": ls,
                "annotations": {"image": i.to_string()}});
            blobs.push(Blob::doc(format!("image{i}"), &doc));
            images.push(blobs.len() - 1);
        }
        subjectable.extend(&images);
        let mut indexes = Vec::new();
        for (i, p) in self.indexes.iter().enumerate() {
            let ms: Vec<Value> = p
                .members
                .iter()
                .map(|&m| blobs[images[m % images.len()]].desc())
                .collect();
            let doc = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": ms,
                "annotations": {"index": i.to_string()}});
            blobs.push(Blob::doc(format!("index{i}"), &doc));
            indexes.push(blobs.len() - 1);
        }
        subjectable.extend(&indexes);
        let mut referrers = Vec::new();
        let mut fallback_groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut link_tags: Vec<(usize, usize, LinkKind)> = Vec::new(); // (subject, target, kind)
        let mut sizes = HashMap::new();
        // Referrer -> the last earlier referrer whose `ahead` names it.
        let mut named_by: HashMap<usize, usize> = HashMap::new();
        for (i, p) in self.referrers.iter().enumerate() {
            let ahead = p
                .naming
                .ahead
                .filter(|_| matches!(p.link, LinkPlan::Field))
                .and_then(|k| {
                    let later: Vec<usize> = (i + 1..self.referrers.len())
                        .filter(|&j| self.referrers[j].naming.named)
                        .collect();
                    (!later.is_empty()).then(|| later[k % later.len()])
                });
            let subject = match named_by.get(&i) {
                Some(&earlier) if p.naming.close => referrers[earlier],
                _ => subjectable[p.subject % subjectable.len()],
            };
            let config_type = REF_CONFIGS[p.config];
            let payload = p.shared_payload.map_or(payloads[i], |l| layers[l]);
            let mut doc = match p.lists {
                None => json!({"schemaVersion": 2, "mediaType": MANIFEST,
                    "config": blobs[empty].desc_as(config_type),
                    "layers": [blobs[payload].desc()],
                    "annotations": {"referrer": i.to_string()}}),
                Some(k) => json!({"schemaVersion": 2, "mediaType": INDEX,
                    "manifests": [blobs[images[k % images.len()]].desc()],
                    "annotations": {"referrer": i.to_string()}}),
            };
            let art = [Some(SIG), Some(SPDX), None][p.art];
            if let Some(a) = art {
                doc["artifactType"] = a.into();
            }
            let subject_label = match ahead {
                Some(j) => format!("ref{j}"),
                None => blobs[subject].label.clone(),
            };
            let how = match (&p.link, ahead) {
                (LinkPlan::Field, Some(j)) => {
                    named_by.insert(j, i);
                    let media_type = match self.referrers[j].lists {
                        Some(_) => INDEX,
                        None => MANIFEST,
                    };
                    let size = guess.get(&j).copied().unwrap_or(0);
                    doc["subject"] =
                        json!({"mediaType": media_type, "digest": Plan::ref_name(j), "size": size});
                    "field".to_owned()
                }
                (LinkPlan::Field, None) => {
                    doc["subject"] = blobs[subject].desc();
                    "field".to_owned()
                }
                (LinkPlan::Cosign(k), _) => format!("cosign-{}", ["sig", "att", "sbom"][*k]),
                (LinkPlan::Fallback, _) => "fallback".to_owned(),
            };
            let kind = match (p.lists, art) {
                (Some(k), _) => format!("index of {}", blobs[images[k % images.len()]].label),
                (None, a) => a
                    .unwrap_or(config_type)
                    .rsplit(['/', '.'])
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            };
            let label = format!("ref{i}[{how}->{subject_label} {kind}]");
            if p.naming.named {
                let blob = Blob::named(label, &doc, &Plan::ref_name(i));
                sizes.insert(i, blob.bytes.len() as u64);
                blobs.push(blob);
            } else {
                blobs.push(Blob::doc(label, &doc));
            }
            let me = blobs.len() - 1;
            match p.link {
                LinkPlan::Field => {
                    if p.cycle && ahead.is_none() {
                        link_tags.push((me, subject, LinkKind::CosignSig));
                    }
                }
                LinkPlan::Cosign(k) => link_tags.push((subject, me, LINK_KINDS[k])),
                LinkPlan::Fallback => fallback_groups.entry(subject).or_default().push(me),
            }
            referrers.push(me);
            subjectable.push(me);
        }
        for (subject, members) in &fallback_groups {
            let ms: Vec<Value> = members
                .iter()
                .map(|&m| {
                    let mut d = blobs[m].desc();
                    if let Some(a) = &blobs[m].artifact_type {
                        d["artifactType"] = a.as_str().into();
                    }
                    d
                })
                .collect();
            let doc = json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": ms});
            blobs.push(Blob::doc(
                format!("fallback[->{}]", blobs[*subject].label),
                &doc,
            ));
            link_tags.push((*subject, blobs.len() - 1, LinkKind::Fallback));
        }
        let by_digest = blobs
            .iter()
            .enumerate()
            .map(|(i, b)| (b.digest.to_string(), i))
            .collect();
        let manifests: Vec<usize> = (0..blobs.len()).filter(|&i| blobs[i].manifest).collect();

        // The setup: pushes in dependency order, then tags and entries, then delayed pushes.
        let pushable: Vec<usize> = (0..blobs.len())
            .filter(|&i| !(first_ghost..first_ghost + GHOSTS).contains(&i))
            .collect();
        let skip: BTreeSet<usize> = self
            .skip
            .iter()
            .map(|&s| pushable[s % pushable.len()])
            .collect();
        let delay: Vec<usize> = self
            .delay
            .iter()
            .map(|&s| pushable[s % pushable.len()])
            .filter(|i| !skip.contains(i))
            .collect();
        let mut steps: Vec<Step> = pushable
            .iter()
            .filter(|i| !skip.contains(i) && !delay.contains(i))
            .map(|&i| Step::Push(i))
            .collect();
        let tag_name = |t: usize| TAG_NAMES[t].to_owned();
        for (p, &i) in self.images.iter().zip(&images) {
            steps.extend(p.tag.map(|t| Step::Tag(i, tag_name(t))));
            if p.entry {
                steps.push(Step::Entry(i));
            }
        }
        for (p, &i) in self.indexes.iter().zip(&indexes) {
            steps.extend(p.tag.map(|t| Step::Tag(i, tag_name(t))));
            if p.entry {
                steps.push(Step::Entry(i));
            }
        }
        for (p, &i) in self.referrers.iter().zip(&referrers) {
            steps.extend(p.tag.map(|t| Step::Tag(i, tag_name(t))));
            if p.entry {
                steps.push(Step::Entry(i));
            }
        }
        for (s, t, k) in link_tags {
            steps.push(Step::Tag(t, ReferrerTag::name(&blobs[s].digest, k)));
        }
        steps.extend(delay.iter().map(|&i| Step::Push(i)));

        // The random operations.
        let m = |i: usize| manifests[i % manifests.len()];
        let b = |i: usize| i % blobs.len();
        for op in &self.ops {
            steps.push(match *op {
                Op::Push(i) => Step::Push(b(i)),
                Op::Tag(i, t) => Step::Tag(m(i), tag_name(t)),
                Op::LinkTag(s, t, k) => {
                    let (s, t) = (m(s), m(t));
                    let k = if k == 3 && !blobs[t].index { 0 } else { k };
                    Step::Tag(t, ReferrerTag::name(&blobs[s].digest, LINK_KINDS[k]))
                }
                Op::Untag(n) => Step::Untag(n),
                Op::Entry(i) => Step::Entry(m(i)),
                Op::Delete(i) => Step::Delete(b(i)),
                Op::DeleteManifest(i) => Step::Delete(m(i)),
                Op::DeleteTag(n) => Step::DeleteTag(n),
                Op::DeleteAndPush(i) => Step::Repush(m(i)),
                Op::Pin(i) => Step::Pin(b(i)),
                Op::Unpin(i) => Step::Unpin(b(i)),
                Op::Lease(i) => Step::Lease(b(i)),
                Op::Gc(s, g, du) => Step::Gc(STRATEGIES[s], g, du),
            });
        }
        let universe = Universe {
            blobs,
            by_digest,
            steps,
        };
        (universe, sizes)
    }
}

fn image_plan() -> impl proptest::strategy::Strategy<Value = ImagePlan> {
    (
        0..CONFIGS,
        proptest::collection::vec(0..LAYERS, 0..=3),
        proptest::option::weighted(0.6, 0..TAG_NAMES.len()),
        proptest::bool::weighted(0.25),
    )
        .prop_map(|(config, layers, tag, entry)| ImagePlan {
            config,
            layers,
            tag,
            entry,
        })
}

fn index_plan() -> impl proptest::strategy::Strategy<Value = IndexPlan> {
    (
        proptest::collection::vec(0..8usize, 1..=3),
        proptest::option::weighted(0.5, 0..TAG_NAMES.len()),
        proptest::bool::weighted(0.25),
    )
        .prop_map(|(members, tag, entry)| IndexPlan {
            members,
            tag,
            entry,
        })
}

fn ref_plan() -> impl proptest::strategy::Strategy<Value = RefPlan> {
    (
        prop_oneof![
            3 => Just(LinkPlan::Field),
            2 => (0..3usize).prop_map(LinkPlan::Cosign),
            2 => Just(LinkPlan::Fallback),
        ],
        0..64usize,
        0..3usize,
        0..REF_CONFIGS.len(),
        proptest::option::weighted(0.2, 0..LAYERS),
        proptest::option::weighted(0.45, 0..TAG_NAMES.len()),
        proptest::bool::weighted(0.4),
        proptest::bool::weighted(0.15),
        proptest::option::weighted(0.2, 0..8usize),
        (
            proptest::bool::weighted(0.3),
            proptest::option::weighted(0.25, 0..8usize),
            proptest::bool::weighted(0.5),
        )
            .prop_map(|(named, ahead, close)| Naming {
                named,
                ahead,
                close,
            }),
    )
        .prop_map(
            |(link, subject, art, config, shared_payload, tag, entry, cycle, lists, naming)| {
                RefPlan {
                    link,
                    subject,
                    art,
                    config,
                    shared_payload,
                    tag,
                    entry,
                    cycle,
                    lists,
                    naming,
                }
            },
        )
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    let i = || 0..256usize;
    prop_oneof![
        3 => i().prop_map(Op::Push),
        3 => (i(), 0..TAG_NAMES.len()).prop_map(|(m, t)| Op::Tag(m, t)),
        2 => (i(), i(), 0..4usize).prop_map(|(s, t, k)| Op::LinkTag(s, t, k)),
        2 => i().prop_map(Op::Untag),
        1 => i().prop_map(Op::Entry),
        1 => i().prop_map(Op::Delete),
        2 => i().prop_map(Op::DeleteManifest),
        1 => i().prop_map(Op::DeleteTag),
        2 => i().prop_map(Op::DeleteAndPush),
        1 => i().prop_map(Op::Pin),
        1 => i().prop_map(Op::Unpin),
        1 => i().prop_map(Op::Lease),
        1 => (0..3usize, any::<bool>(), proptest::bool::weighted(0.3))
            .prop_map(|(s, g, du)| Op::Gc(s, g, du)),
    ]
}

fn plan() -> impl proptest::strategy::Strategy<Value = Plan> {
    (
        proptest::collection::vec(image_plan(), 1..=4),
        proptest::collection::vec(index_plan(), 0..=2),
        proptest::collection::vec(ref_plan(), 0..=7),
        proptest::collection::vec(0..256usize, 0..=2),
        proptest::collection::vec(0..256usize, 0..=2),
        proptest::collection::vec(op(), 0..=20),
        proptest::bool::weighted(0.2),
        proptest::collection::vec(
            proptest::option::weighted(0.5, proptest::bool::weighted(0.75)),
            TYPES.len(),
        ),
        any::<bool>(),
        proptest::bool::weighted(0.3),
        0..3usize,
    )
        .prop_map(
            |(
                images,
                indexes,
                referrers,
                skip,
                delay,
                ops,
                default_soft,
                overrides,
                grace,
                delete_untagged,
                strategy,
            )| Plan {
                images,
                indexes,
                referrers,
                skip,
                delay,
                ops,
                default_soft,
                overrides,
                grace,
                delete_untagged,
                strategy,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Running a plan against a real store.

/// Which hard cases a run checks. Each has a minimal reproduction below.
#[derive(Clone, Copy, Debug)]
struct Scope {
    /// Refcount and referrers of an absent digest that is live through a parent Refcount only
    /// finds live in its rescue step. (Once a bug, now fixed: checked by both tests.)
    refcount_absent_via_link: bool,
    /// Refcount and cycles of strong edges and `subject` fields, as a referrer that lists its
    /// own subject. (Once a bug, now fixed: Refcount no longer counts such links.)
    refcount_counted_cycles: bool,
    /// Spec corner: a collection that removes a fallback index unlinks its entries that stay,
    /// which may then be garbage (so a second collection removes more). The O(1) answer of a
    /// collection with nothing written since the last one says nothing is garbage then. Once a
    /// collection has done that, emptiness of a second collection and the O(1) answer are not
    /// checked.
    idempotence: bool,
}

const STRICT: Scope = Scope {
    refcount_absent_via_link: true,
    refcount_counted_cycles: true,
    idempotence: true,
};

const AROUND_KNOWN_PROBLEMS: Scope = Scope {
    refcount_absent_via_link: true,
    refcount_counted_cycles: true,
    idempotence: false,
};

struct Run<'a> {
    u: &'a Universe,
    scope: Scope,
    store: &'a Store,
    root: &'a Path,
    model: Model,
    log: Vec<String>,
    policy: Policy,
    /// A collection removed a fallback index with entries that stay (the spec corner).
    unlinked: bool,
}

fn opts(
    strategy: Strategy,
    grace: bool,
    delete_untagged: bool,
    dry_run: bool,
    policy: &Policy,
) -> GcOptions {
    GcOptions {
        strategy,
        dry_run,
        grace: if grace { DAY } else { Duration::ZERO },
        delete_untagged,
        policy: Some(policy.clone()),
        ..Default::default()
    }
}

/// A dry run that computes the garbage in full: asking for the orphan walk skips the O(1) answer
/// of a collection with nothing written since the last one (and a dry run walks nothing).
fn full(strategy: Strategy, grace: bool, delete_untagged: bool, policy: &Policy) -> GcOptions {
    GcOptions {
        scan_orphans: true,
        ..opts(strategy, grace, delete_untagged, true, policy)
    }
}

fn digests(report: &ocistore::gc::GcReport) -> BTreeSet<String> {
    report.removed.iter().map(|r| r.digest.clone()).collect()
}

impl Run<'_> {
    fn fail(&self, msg: String) -> TestCaseError {
        TestCaseError::fail(format!(
            "{msg}\n--- policy: {:?}\n--- operations:\n  {}",
            self.policy,
            self.log.join("\n  ")
        ))
    }

    fn ensure(&self, ok: bool, msg: impl FnOnce() -> String) -> Result<(), TestCaseError> {
        if ok { Ok(()) } else { Err(self.fail(msg())) }
    }

    fn present(&self, i: usize) -> bool {
        self.model.present.contains(self.u.blobs[i].digest.as_str())
    }

    fn current_tag(&self, n: usize) -> Option<String> {
        let tags: Vec<&String> = self.model.tags.keys().collect();
        (!tags.is_empty()).then(|| tags[n % tags.len()].clone())
    }

    fn apply(&mut self, step: &Step, lease: &ocistore::Lease<'_>) -> Result<(), TestCaseError> {
        let u = self.u;
        let mut line = u.show(step);
        match step {
            Step::Push(i) => {
                let b = &u.blobs[*i];
                let put = self
                    .store
                    .put(&mut &b.bytes[..], &b.put_options())
                    .map_err(|e| self.fail(format!("{line}: {e}")))?;
                let was = self.present(*i);
                self.ensure(put.existed == was, || {
                    format!(
                        "{line}: existed={} but the model says present={was}",
                        put.existed
                    )
                })?;
                self.model.present.insert(b.digest.to_string());
            }
            Step::Tag(i, tag) => {
                let d = &u.blobs[*i].digest;
                let r = self.store.tag(d.as_str(), tag);
                if self.present(*i) {
                    r.map_err(|e| self.fail(format!("{line}: {e}")))?;
                    self.model.tags.insert(tag.clone(), d.to_string());
                } else {
                    line.push_str(" (absent: refused)");
                    self.ensure(r.is_err(), || {
                        format!("{line}: tagging an absent manifest worked")
                    })?;
                }
            }
            Step::Untag(n) => match self.current_tag(*n) {
                None => line.push_str(" (no tags)"),
                Some(t) => {
                    line = format!("untag {}", u.show_tag(&t));
                    self.store
                        .untag(&t)
                        .map_err(|e| self.fail(format!("{line}: {e}")))?;
                    self.model.tags.remove(&t);
                }
            },
            Step::Entry(i) => {
                let b = &u.blobs[*i];
                let entry = Entry::new(&b.digest, b.put_type, b.bytes.len() as u64, None);
                let r = self.store.batch().and_then(|mut batch| {
                    batch.add_entry(&entry)?;
                    batch.commit()
                });
                if self.present(*i) {
                    r.map_err(|e| self.fail(format!("{line}: {e}")))?;
                    self.model.untagged.insert(b.digest.to_string());
                } else {
                    line.push_str(" (absent: refused)");
                    self.ensure(r.is_err(), || {
                        format!("{line}: an entry for an absent manifest")
                    })?;
                }
            }
            Step::Delete(i) => {
                let b = &u.blobs[*i];
                let d = b.digest.to_string();
                let force = DeleteOptions {
                    force: true,
                    dry_run: false,
                };
                match self.store.delete(&d, &force) {
                    Ok(report) => {
                        let removed: BTreeSet<String> =
                            report.removed.iter().map(|r| r.digest.clone()).collect();
                        line.push_str(&format!(" -> removed {:?}", u.labels(&removed)));
                        self.ensure(removed.contains(&d), || {
                            format!("{line}: not removed itself")
                        })?;
                        for r in &removed {
                            self.ensure(self.model.present.contains(r), || {
                                format!("{line}: removed {}, absent in the model", u.label(r))
                            })?;
                        }
                        let expected_tags: BTreeSet<&String> = self
                            .model
                            .tags
                            .iter()
                            .filter(|(_, t)| removed.contains(*t))
                            .map(|(n, _)| n)
                            .collect();
                        let tags: BTreeSet<&String> = report.tags.iter().collect();
                        self.ensure(tags == expected_tags, || {
                            format!(
                                "{line}: removed tags {tags:?}, the model has {expected_tags:?}"
                            )
                        })?;
                        self.model.remove(&removed);
                    }
                    Err(e) => {
                        line.push_str(&format!(" -> refused ({e})"));
                        let parent = self
                            .model
                            .present
                            .iter()
                            .any(|p| u.blob(p).is_some_and(|pb| pb.children.contains(&d)));
                        self.ensure(!self.present(*i) || (!b.manifest && parent), || {
                            format!("{line}: refused although present and deletable")
                        })?;
                    }
                }
            }
            Step::DeleteTag(n) => match self.current_tag(*n) {
                None => line.push_str(" (no tags)"),
                Some(t) => {
                    line = format!("delete tag {}", u.show_tag(&t));
                    let report = self
                        .store
                        .delete(&t, &DeleteOptions::default())
                        .map_err(|e| self.fail(format!("{line}: {e}")))?;
                    self.ensure(
                        report.tags == [t.clone()] && report.removed.is_empty(),
                        || format!("{line}: {report:?}"),
                    )?;
                    self.model.tags.remove(&t);
                }
            },
            Step::Pin(i) => {
                let d = &u.blobs[*i].digest;
                let changed = self
                    .store
                    .pin(d)
                    .map_err(|e| self.fail(format!("{line}: {e}")))?;
                let expected = self.model.pins.insert(d.to_string());
                self.ensure(changed == expected, || {
                    format!("{line}: pin returned {changed}")
                })?;
            }
            Step::Unpin(i) => {
                let d = &u.blobs[*i].digest;
                let changed = self
                    .store
                    .unpin(d)
                    .map_err(|e| self.fail(format!("{line}: {e}")))?;
                let expected = self.model.pins.remove(d.as_str());
                self.ensure(changed == expected, || {
                    format!("{line}: unpin returned {changed}")
                })?;
            }
            Step::Lease(i) => {
                let d = &u.blobs[*i].digest;
                lease.protect(d);
                self.model.leased.insert(d.to_string());
            }
            Step::Repush(i) => {
                let d = u.blobs[*i].digest.as_str();
                let tags: Vec<String> = self
                    .model
                    .tags
                    .iter()
                    .filter(|(_, t)| *t == d)
                    .map(|(n, _)| n.clone())
                    .collect();
                let entry = self.model.untagged.contains(d);
                if !self.present(*i) {
                    line.push_str(" (absent)");
                } else {
                    self.log.push(line);
                    self.apply(&Step::Delete(*i), lease)?;
                    self.apply(&Step::Push(*i), lease)?;
                    for t in tags {
                        self.apply(&Step::Tag(*i, t), lease)?;
                    }
                    if entry {
                        self.apply(&Step::Entry(*i), lease)?;
                    }
                    return Ok(());
                }
            }
            Step::Gc(strategy, grace, du) => {
                self.log.push(line);
                self.gc(*strategy, *grace, *du, false)?;
                return Ok(());
            }
        }
        self.log.push(line);
        Ok(())
    }

    /// Every strategy finds the model's garbage in a dry run, computed in full and as users get
    /// it; returns that garbage, and whether Refcount is out of scope here.
    fn dry_runs(&self, grace: bool, du: bool) -> Result<(BTreeSet<String>, bool), TestCaseError> {
        let u = self.u;
        let rule = Rule {
            grace,
            delete_untagged: du,
            policy: &self.policy,
        };
        let liveness = self.model.garbage(u, &rule);
        let expected = liveness.garbage;
        let skip_refcount = (liveness.absent_via_link && !self.scope.refcount_absent_via_link)
            || (liveness.counted_cycle && !self.scope.refcount_counted_cycles);
        let mut msgs = Vec::new();
        for s in STRATEGIES {
            let run = |o: &GcOptions| {
                self.store
                    .gc(o)
                    .map_err(|e| self.fail(format!("dry-run gc {s:?}: {e}")))
            };
            let whole = run(&full(s, grace, du, &self.policy))?;
            let quick = run(&opts(s, grace, du, true, &self.policy))?;
            let found = digests(&whole);
            self.ensure(whole.removed_blobs == found.len() as u64, || {
                format!("{s:?}: removed_blobs {} for {found:?}", whole.removed_blobs)
            })?;
            if skip_refcount && s == Strategy::Refcount {
                continue;
            }
            if found != expected {
                let extra: BTreeSet<String> = found.difference(&expected).cloned().collect();
                let missing: BTreeSet<String> = expected.difference(&found).cloned().collect();
                msgs.push(format!(
                    "{s:?} disagrees with the model (grace={}, delete_untagged={du}): \
                     removes live {:?}; keeps garbage {:?}",
                    grace_str(grace),
                    u.labels(&extra),
                    u.labels(&missing)
                ));
            }
            let answer = digests(&quick);
            let corner = quick.unchanged && self.unlinked && !self.scope.idempotence;
            if answer != expected && !corner {
                msgs.push(format!(
                    "{s:?}: the O(1) answer (unchanged={}) removes {:?}, the model {:?}",
                    quick.unchanged,
                    u.labels(&answer),
                    u.labels(&expected)
                ));
            }
        }
        self.ensure(msgs.is_empty(), || {
            format!(
                "{}\n--- model garbage: {:?}\n--- present: {:?}",
                msgs.join("\n"),
                u.labels(&expected),
                u.labels(&self.model.present)
            )
        })?;
        Ok((expected, skip_refcount))
    }

    /// The dry runs, then a real collection with `strategy` (Scan if it is out of scope) must
    /// remove exactly the garbage; after the last one, a second finds nothing.
    fn gc(
        &mut self,
        strategy: Strategy,
        grace: bool,
        du: bool,
        last: bool,
    ) -> Result<(), TestCaseError> {
        let u = self.u;
        let (expected, skip_refcount) = self.dry_runs(grace, du)?;
        let strategy = if skip_refcount && strategy == Strategy::Refcount {
            self.log
                .push("  (Refcount out of scope here: Scan instead)".into());
            Strategy::Scan
        } else {
            strategy
        };
        // Chunks of one or two digests as well as one chunk for all: removals spread over
        // transactions leave stale parent rows for later ones to drop. With chunks of one, no
        // time at all: every transaction of the sweep takes the least it can, tags and entries
        // included.
        let i = self.log.len() % 3;
        let chunk = [1, 2, GcOptions::default().chunk][i];
        let chunk_time = if i == 0 {
            Duration::ZERO
        } else {
            GcOptions::default().chunk_time
        };
        let report = self
            .store
            .gc(&GcOptions {
                chunk,
                chunk_time,
                ..opts(strategy, grace, du, false, &self.policy)
            })
            .map_err(|e| self.fail(format!("gc {strategy:?} (chunks of {chunk}): {e}")))?;
        let removed = digests(&report);
        if report.unchanged && self.unlinked && !self.scope.idempotence {
            self.log.push("  (the O(1) answer: nothing removed)".into());
        } else {
            self.ensure(removed == expected, || {
                format!(
                    "real gc {strategy:?} removed {:?}, the model's garbage is {:?}",
                    u.labels(&removed),
                    u.labels(&expected)
                )
            })?;
        }
        self.unlinked |= self.model.unlinks_survivors(u, &removed);
        self.model.remove(&removed);
        self.check_presence(&format!("after gc {strategy:?}"))?;
        self.check_index(&format!("after gc {strategy:?} (chunks of {chunk})"))?;
        if last {
            let (again, _) = self.dry_runs(grace, du)?;
            if !again.is_empty() && self.unlinked && !self.scope.idempotence {
                self.log.push(format!(
                    "  (a second collection removes {:?}: the spec corner)",
                    u.labels(&again)
                ));
                return Ok(());
            }
            self.ensure(again.is_empty(), || {
                format!("a second collection removes {:?}", u.labels(&again))
            })?;
        }
        Ok(())
    }

    /// The index's tables agree with each other (`verify`'s `index-inconsistent` check).
    fn check_index(&self, when: &str) -> Result<(), TestCaseError> {
        let report = self
            .store
            .verify(&VerifyOptions::default())
            .map_err(|e| self.fail(format!("{when}: verify: {e}")))?;
        let bad: Vec<String> = report
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::IndexInconsistent)
            .map(|p| p.to_string())
            .collect();
        self.ensure(bad.is_empty(), || {
            format!("{when}: the index disagrees with itself: {bad:?}")
        })
    }

    /// The store holds exactly what the model says is present: index rows and files.
    fn check_presence(&self, when: &str) -> Result<(), TestCaseError> {
        for b in &self.u.blobs {
            let want = self.model.present.contains(b.digest.as_str());
            let indexed = self
                .store
                .blob_info(&b.digest)
                .map_err(|e| self.fail(format!("{when}: blob_info: {e}")))?
                .is_some();
            let file = self.root.join(b.digest.blob_path()).exists();
            self.ensure(indexed == want && file == want, || {
                format!(
                    "{when}: {} indexed={indexed} file={file}, the model says present={want}",
                    b.label
                )
            })?;
        }
        Ok(())
    }
}

fn run(plan: &Plan, scope: Scope) -> Result<(), TestCaseError> {
    let u = plan.universe();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let lease = store.lease();
    let mut run = Run {
        u: &u,
        scope,
        store: &store,
        root: dir.path(),
        model: Model::default(),
        log: Vec::new(),
        policy: plan.policy(),
        unlinked: false,
    };
    for step in &u.steps {
        run.apply(step, &lease)?;
    }
    run.check_presence("before the final collection")?;
    let strategy = STRATEGIES[plan.strategy];
    run.log.push(format!(
        "final gc {strategy:?} grace={} delete_untagged={}",
        grace_str(plan.grace),
        plan.delete_untagged
    ));
    run.gc(strategy, plan.grace, plan.delete_untagged, true)?;
    drop(lease);
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("OCISTORE_GC_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random graphs and operations: the three strategies agree with the model, a real
    /// collection removes exactly the model's garbage, and a second one nothing. Steps around
    /// the spec corner where a second collection may remove more (see [`Scope`]), which the
    /// test below does not.
    #[test]
    fn strategies_agree_with_the_model(plan in plan()) {
        run(&plan, AROUND_KNOWN_PROBLEMS)?;
    }

    /// The same, with every check on, the spec corner included. That corner is a known
    /// difference (reproduced by `a_second_collection_finds_nothing`), which random plans meet
    /// about once in a thousand cases, so this runs on request: `cargo test --test gc_model --
    /// --ignored strictly`.
    #[test]
    #[ignore = "includes the known spec corner of a_second_collection_finds_nothing; run with --ignored"]
    fn strategies_agree_with_the_model_strictly(plan in plan()) {
        run(&plan, STRICT)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic cases.

fn put(store: &Store, bytes: &[u8], media_type: &str) -> (Digest, u64) {
    let p = store
        .put(
            &mut &bytes[..],
            &PutOptions {
                media_type: Some(media_type.to_owned()),
                ..Default::default()
            },
        )
        .unwrap();
    (p.digest, p.size)
}

fn put_doc(store: &Store, doc: &Value) -> (Digest, u64) {
    let mt = doc["mediaType"].as_str().unwrap().to_owned();
    put(store, &serde_json::to_vec(doc).unwrap(), &mt)
}

fn desc(mt: &str, d: &(Digest, u64)) -> Value {
    json!({"mediaType": mt, "digest": d.0.as_str(), "size": d.1})
}

/// An image: its manifest, config and layer.
fn image(store: &Store, name: &str) -> [(Digest, u64); 3] {
    let config = put(store, format!(r#"{{"image":"{name}"}}"#).as_bytes(), CONFIG);
    let layer = put(store, format!("layer of {name}").as_bytes(), LAYER);
    let m = put_doc(
        store,
        &json!({"schemaVersion": 2, "mediaType": MANIFEST, "config": desc(CONFIG, &config),
            "layers": [desc(LAYER, &layer)]}),
    );
    [m, config, layer]
}

/// An artifact of `artifact_type` with a payload, with a `subject` field naming `subject`.
fn artifact(
    store: &Store,
    artifact_type: &str,
    payload: &str,
    subject: Option<&(Digest, u64)>,
) -> [(Digest, u64); 3] {
    let empty = put(store, b"{}", EMPTY);
    let layer = put(store, payload.as_bytes(), "application/octet-stream");
    let mut doc = json!({"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": artifact_type,
        "config": desc(EMPTY, &empty), "layers": [desc("application/octet-stream", &layer)]});
    if let Some(s) = subject {
        doc["subject"] = desc(MANIFEST, s);
    }
    let m = put_doc(store, &doc);
    [m, empty, layer]
}

fn set<'a>(ds: impl IntoIterator<Item = &'a (Digest, u64)>) -> BTreeSet<String> {
    ds.into_iter().map(|d| d.0.to_string()).collect()
}

/// The garbage every strategy finds in a full dry run (they must agree).
fn garbage(store: &Store, grace: bool, policy: &Policy) -> BTreeSet<String> {
    let found: Vec<BTreeSet<String>> = STRATEGIES
        .iter()
        .map(|&s| {
            store
                .gc(&full(s, grace, false, policy))
                .unwrap()
                .removed
                .into_iter()
                .map(|r| r.digest)
                .collect()
        })
        .collect();
    for (s, f) in STRATEGIES.iter().zip(&found) {
        assert_eq!(*f, found[0], "{s:?} disagrees with {:?}", STRATEGIES[0]);
    }
    found[0].clone()
}

fn soft(types: &[&str]) -> Policy {
    Policy {
        default: Mode::Hard,
        artifact_types: types
            .iter()
            .map(|t| ((*t).to_owned(), Mode::Soft))
            .collect(),
    }
}

/// A's subject field names B, and the cosign tag `sha256-<A>.sig` points at B: each is a referrer
/// of the other. Nothing else anchors them, so both go (with their content) under either grace;
/// a tag on B anchors the pair only when B's type is soft; a live index listing B keeps both.
#[test]
fn a_referrer_cycle_is_garbage_unless_something_else_anchors_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let b = image(&store, "b");
    let a = artifact(&store, SIG, "signature of b", Some(&b[0]));
    store
        .tag(
            b[0].0.as_str(),
            &ReferrerTag::name(&a[0].0, LinkKind::CosignSig),
        )
        .unwrap();
    let everything = set(a.iter().chain(&b));
    let hard = Policy::default();
    assert_eq!(garbage(&store, false, &hard), everything);
    assert_eq!(garbage(&store, true, &hard), everything);

    // B's own tag: B is a referrer (of A), so under hard its tag is no root.
    store.tag(b[0].0.as_str(), "b").unwrap();
    assert_eq!(garbage(&store, false, &hard), everything);
    assert!(garbage(&store, false, &soft(&[CONFIG])).is_empty());

    // An index listing B keeps B, hence its referrer A.
    let index = put_doc(
        &store,
        &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc(MANIFEST, &b[0])]}),
    );
    store.tag(index.0.as_str(), "index").unwrap();
    assert!(garbage(&store, false, &hard).is_empty());
    store.untag("index").unwrap();
    store.untag("b").unwrap();

    let report = store
        .gc(&opts(Strategy::Refcount, false, false, false, &hard))
        .unwrap();
    let removed: BTreeSet<String> = report.removed.into_iter().map(|r| r.digest).collect();
    let mut all = everything.clone();
    all.insert(index.0.to_string());
    assert_eq!(removed, all);
    for d in a.iter().chain(&b) {
        assert!(store.blob_info(&d.0).unwrap().is_none());
        assert!(!dir.path().join(d.0.blob_path()).exists());
    }
    assert!(store.list().unwrap().is_empty(), "the link tag went with B");
}

/// A signature whose subject is an SBOM whose subject is an image: liveness is transitive both
/// ways, and a tag on the signature alone keeps nothing under hard.
#[test]
fn a_signature_on_an_sbom_on_an_image_lives_and_dies_with_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "app");
    let sbom = artifact(&store, SPDX, "sbom of app", Some(&img[0]));
    let sig = artifact(&store, SIG, "signature of the sbom", Some(&sbom[0]));
    store.tag(img[0].0.as_str(), "app").unwrap();
    store.tag(sig[0].0.as_str(), "sig").unwrap();
    let hard = Policy::default();
    assert!(garbage(&store, false, &hard).is_empty());

    store.untag("app").unwrap();
    let everything = set(img.iter().chain(&sbom).chain(&sig));
    assert_eq!(garbage(&store, false, &hard), everything);
    // Soft signatures: the signature stays with its own content (the shared empty config too).
    let keep_sig = soft(&[SIG]);
    let mut expected = everything.clone();
    for d in &sig {
        expected.remove(d.0.as_str());
    }
    assert_eq!(garbage(&store, false, &keep_sig), expected);

    store
        .gc(&opts(Strategy::Scan, false, false, false, &hard))
        .unwrap();
    for d in img.iter().chain(&sbom).chain(&sig) {
        assert!(store.blob_info(&d.0).unwrap().is_none(), "{}", d.0);
    }
}

/// An image with no tag and no entry, whose signature (subject field) is tagged: under hard both
/// go; under soft the signature stays (its tag is a root) and the image goes (links lead from a
/// subject to its referrers, not back).
#[test]
fn an_untagged_image_whose_signature_is_tagged() {
    for (policy, sig_stays) in [(Policy::default(), false), (soft(&[SIG]), true)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path(), &Options::default()).unwrap();
        let img = image(&store, "img");
        let sig = artifact(&store, SIG, "sig", Some(&img[0]));
        store.tag(sig[0].0.as_str(), "signature").unwrap();
        let mut expected = set(&img);
        if !sig_stays {
            expected.extend(set(&sig));
        }
        assert_eq!(garbage(&store, false, &policy), expected, "{policy:?}");
        assert_eq!(garbage(&store, true, &policy), expected, "{policy:?}");
        let report = store
            .gc(&opts(Strategy::MarkSweep, false, false, false, &policy))
            .unwrap();
        let removed: BTreeSet<String> = report.removed.into_iter().map(|r| r.digest).collect();
        assert_eq!(removed, expected);
        assert_eq!(store.blob_info(&sig[0].0).unwrap().is_some(), sig_stays);
        // Now the signature is dangling, but still anchored by its soft tag.
        assert!(garbage(&store, false, &policy).is_empty());
    }
}

/// A referrer whose subject was never pushed: kept inside the grace (24h), removed with grace 0;
/// once the subject arrives and is tagged, kept with grace 0 too.
#[test]
fn a_dangling_referrer_is_kept_for_the_grace_period_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let later = json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": EMPTY, "digest": Digest::sha256(b"{}").as_str(), "size": 2},
        "layers": []});
    let later_bytes = serde_json::to_vec(&later).unwrap();
    let subject = (Digest::sha256(&later_bytes), later_bytes.len() as u64);
    let sig = artifact(&store, SIG, "early signature", Some(&subject));
    let hard = Policy::default();
    assert!(garbage(&store, true, &hard).is_empty());
    assert_eq!(garbage(&store, false, &hard), set(&sig));

    // A cosign tag naming the absent subject is a link too: still dangling.
    let cosign = artifact(&store, SIG, "early cosign signature", None);
    store
        .tag(
            cosign[0].0.as_str(),
            &ReferrerTag::name(&subject.0, LinkKind::CosignSig),
        )
        .unwrap();
    let mut both = set(&sig);
    both.extend(set(&cosign));
    assert!(garbage(&store, true, &hard).is_empty());
    assert_eq!(garbage(&store, false, &hard), both);

    // The subject arrives, untagged: no longer dangling, and not live either.
    put(&store, &later_bytes, MANIFEST);
    let mut all = both.clone();
    all.insert(subject.0.to_string());
    assert_eq!(garbage(&store, true, &hard), all);
    store.tag(subject.0.as_str(), "later").unwrap();
    assert!(garbage(&store, false, &hard).is_empty());

    // Deleting the subject takes its hard referrers; the cosign tag goes with its target.
    let report = store
        .delete(
            subject.0.as_str(),
            &DeleteOptions {
                force: false,
                dry_run: false,
            },
        )
        .unwrap();
    let removed: BTreeSet<String> = report.removed.into_iter().map(|r| r.digest).collect();
    let expected: BTreeSet<String> = [&subject.0, &sig[0].0, &cosign[0].0]
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(removed, expected);
    let rest: BTreeSet<String> = [&sig[1], &sig[2], &cosign[2]]
        .iter()
        .map(|d| d.0.to_string())
        .collect();
    assert_eq!(garbage(&store, true, &hard), rest);
}

// ---------------------------------------------------------------------------------------------
// Minimal cases of the disagreements the random cases found: regression tests for the bugs they
// showed, and (ignored) the spec corner where a second collection removes more.

/// The strategies that do not find `expected` in a full dry run, with what they found.
fn disagreeing(
    store: &Store,
    grace: bool,
    policy: &Policy,
    expected: &BTreeSet<String>,
) -> Vec<String> {
    STRATEGIES
        .iter()
        .filter_map(|&s| {
            let found: BTreeSet<String> = store
                .gc(&full(s, grace, false, policy))
                .unwrap()
                .removed
                .into_iter()
                .map(|r| r.digest)
                .collect();
            (found != *expected).then(|| {
                format!(
                    "{s:?}: removes live {:?}, keeps garbage {:?}",
                    found.difference(expected).collect::<Vec<_>>(),
                    expected.difference(&found).collect::<Vec<_>>()
                )
            })
        })
        .collect()
}

/// A tagged index lists a manifest not pushed yet, whose signature (subject field) is already
/// here. The signature is reachable (tag -> index -> absent manifest -> its referrer), so it is
/// live even with grace 0; likewise when the absent subject is leased or pinned. (Refcount's
/// rescue step used to follow links from present subjects only.)
#[test]
fn referrers_of_a_live_absent_subject_are_live() {
    let mut failures = Vec::new();
    for anchor in ["index", "lease", "pin"] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path(), &Options::default()).unwrap();
        let later = json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": Digest::sha256(b"not here").as_str(), "size": 8},
            "layers": []});
        let later_bytes = serde_json::to_vec(&later).unwrap();
        let absent = (Digest::sha256(&later_bytes), later_bytes.len() as u64);
        artifact(&store, SIG, "early signature", Some(&absent));
        let lease = store.lease();
        match anchor {
            "index" => {
                let index = put_doc(
                    &store,
                    &json!({"schemaVersion": 2, "mediaType": INDEX,
                        "manifests": [desc(MANIFEST, &absent)]}),
                );
                store.tag(index.0.as_str(), "index").unwrap();
            }
            "lease" => lease.protect(&absent.0),
            _ => {
                store.pin(&absent.0).unwrap();
            }
        }
        // Everything present is live, with grace 0.
        for bad in disagreeing(&store, false, &Policy::default(), &BTreeSet::new()) {
            failures.push(format!("anchored by {anchor}: {bad}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A referrer deleted while its subject is present, then pushed again, goes with its subject.
/// (Its count of present subjects used to stay behind in the catalog, so that pushed again it
/// counted its subject twice and Refcount kept it and its content.)
#[test]
fn a_referrer_deleted_and_pushed_again_goes_with_its_subject() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "app");
    store.tag(img[0].0.as_str(), "app").unwrap();
    let sig = artifact(&store, SIG, "signature", Some(&img[0]));
    let removed = store
        .delete(sig[0].0.as_str(), &DeleteOptions::default())
        .unwrap();
    assert_eq!(removed.removed.len(), 1);
    let again = artifact(&store, SIG, "signature", Some(&img[0]));
    assert_eq!(again[0].0, sig[0].0);
    store.untag("app").unwrap();
    let expected = set(img.iter().chain(&sig));
    let bad = disagreeing(&store, false, &Policy::default(), &expected);
    assert!(bad.is_empty(), "{bad:#?}");
}

/// A fallback index F tagged `sha256-<S>` lists C. C deleted (force) and pushed again is still
/// listed by F under that tag, so C is a referrer of S: with S not live, C's own tag is no root
/// under hard. (The catalog used to drop the link S -> C with C and not restore it, so that
/// mark-sweep and Refcount kept C; Scan, which reads the files, did not.) The image is tagged
/// while C is deleted: a garbage F would go with C.
#[test]
fn an_entry_of_a_fallback_index_pushed_again_is_still_a_referrer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "app");
    store.tag(img[0].0.as_str(), "app").unwrap();
    let entry = artifact(&store, SIG, "fallback signature", None);
    let fallback = put_doc(
        &store,
        &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc(MANIFEST, &entry[0])]}),
    );
    store
        .tag(
            fallback.0.as_str(),
            &ReferrerTag::name(&img[0].0, LinkKind::Fallback),
        )
        .unwrap();
    let force = DeleteOptions {
        force: true,
        dry_run: false,
    };
    store.delete(entry[0].0.as_str(), &force).unwrap();
    artifact(&store, SIG, "fallback signature", None);
    store.tag(entry[0].0.as_str(), "signature").unwrap();
    store.untag("app").unwrap();
    // Nothing anchors the image: all goes, the entry too (a hard referrer of a dead image).
    let mut expected = set(img.iter().chain(&entry));
    expected.insert(fallback.0.to_string());
    let bad = disagreeing(&store, false, &Policy::default(), &expected);
    assert!(bad.is_empty(), "{bad:#?}");
}

/// F is tagged `sha256-<G>` (G never pushed) and `sha256-<I>.sig` (I present, not live); F lists
/// C. C is a referrer of G only, hence dangling, hence kept inside the grace; F is a referrer of
/// I too, so it is not dangling, and goes. Its fallback tag goes with it, C stops being a
/// referrer, and is garbage: a second collection removes it, once something is written (or the
/// orphan walk is asked for). Until then the O(1) answer says that nothing can have become
/// garbage. Every strategy agrees: this follows from the rule itself.
#[test]
#[ignore = "spec: removing a garbage fallback index unlinks its entries, so a second collection \
            removes more (and the O(1) answer of an unchanged store says nothing)"]
fn a_second_collection_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "i");
    let ghost = Digest::sha256(b"never pushed");
    let entry = artifact(&store, SIG, "entry", None);
    let fallback = put_doc(
        &store,
        &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc(MANIFEST, &entry[0])]}),
    );
    let fallback_tag = ReferrerTag::name(&ghost, LinkKind::Fallback);
    store.tag(fallback.0.as_str(), &fallback_tag).unwrap();
    let cosign_tag = ReferrerTag::name(&img[0].0, LinkKind::CosignSig);
    store.tag(fallback.0.as_str(), &cosign_tag).unwrap();
    let hard = Policy::default();
    let mut first = set(&img);
    first.insert(fallback.0.to_string());
    assert!(disagreeing(&store, true, &hard, &first).is_empty());
    let report = store
        .gc(&opts(Strategy::MarkSweep, true, false, false, &hard))
        .unwrap();
    assert_eq!(digests(&report), first);
    let quick = store
        .gc(&opts(Strategy::MarkSweep, true, false, true, &hard))
        .unwrap();
    assert!(quick.unchanged && quick.removed.is_empty());
    // A full computation finds the entry and its content garbage now.
    assert_eq!(
        garbage(&store, true, &hard),
        BTreeSet::new(),
        "the second collection"
    );
}

/// An index X tagged `sha256-<I>.sig` (a cosign referrer of the live image I) lists a manifest A
/// not pushed yet, whose signature R (subject field) is here. I is live, so X is, so A is, so R
/// is (with grace 0). Refcount treats X as garbage until its rescue step, and asks whether A's
/// parents are live before that step has rescued X.
#[test]
fn a_referrer_of_an_absent_manifest_listed_by_a_live_referrer_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "app");
    store.tag(img[0].0.as_str(), "app").unwrap();
    let absent = (Digest::sha256(b"a manifest not pushed yet"), 25);
    let index = put_doc(
        &store,
        &json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc(MANIFEST, &absent)]}),
    );
    store
        .tag(
            index.0.as_str(),
            &ReferrerTag::name(&img[0].0, LinkKind::CosignSig),
        )
        .unwrap();
    artifact(
        &store,
        SIG,
        "signature of the absent manifest",
        Some(&absent),
    );
    let bad = disagreeing(&store, false, &Policy::default(), &BTreeSet::new());
    assert!(bad.is_empty(), "{bad:#?}");
}

/// An index R whose subject field names the image I and which also lists I: I is R's child and
/// R is I's referrer. Nothing else anchors them, so both go (with I's content). Refcount counts I
/// as supported by its parent R and R by its subject I, so neither is ever a candidate.
#[test]
fn a_referrer_that_lists_its_own_subject_is_collected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "i");
    let referrer = put_doc(
        &store,
        &json!({"schemaVersion": 2, "mediaType": INDEX, "artifactType": SIG,
            "manifests": [desc(MANIFEST, &img[0])], "subject": desc(MANIFEST, &img[0])}),
    );
    store.tag(img[0].0.as_str(), "i").unwrap();
    assert!(disagreeing(&store, false, &Policy::default(), &BTreeSet::new()).is_empty());
    store.untag("i").unwrap();
    let mut expected = set(&img);
    expected.insert(referrer.0.to_string());
    let bad = disagreeing(&store, false, &Policy::default(), &expected);
    assert!(bad.is_empty(), "{bad:#?}");
}
