//! A deterministic workload generator: real OCI layouts of any size, with the expected live set.
//!
//! The layout is written straight to files (not through a store), as another tool would leave
//! it, so that adopting it, collecting it and comparing with other tools all start from the same
//! bytes. It holds images with layers drawn partly from a shared pool, multi-platform indexes
//! nested in an outer index, referrer chains (a signature and an SBOM on an image, a signature
//! on the SBOM) linked by `subject`, by cosign tags and by fallback indexes, oras-style untagged
//! entries, and orphan blobs. Then a fraction of the tags is removed.
//!
//! `synth-truth.json`, written beside `index.json`, lists the digests that must survive a
//! collection under the store's default semantics (hard referrers, untagged non-referrer entries
//! kept, grace irrelevant as no referrer is dangling).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use serde::Serialize;
use serde_json::{Value, json};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{OCI_EMPTY, OCI_INDEX, OCI_MANIFEST};
use crate::refname::{LinkKind, REF_NAME, ReferrerTag};

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// Number of images.
    pub images: usize,
    /// Layers per image.
    pub layers: usize,
    /// Fraction of layers drawn from a shared pool (0..=1).
    pub shared: f64,
    /// Referrer chains per image, on average (each chain: a signature; every second one also
    /// an SBOM with its own signature).
    pub referrers: f64,
    /// Fraction of tags removed at the end (0..=1).
    pub untag: f64,
    /// Orphan blobs (files nothing references).
    pub orphans: usize,
    /// Write real tar layers instead of random bytes.
    pub real_tar: bool,
    /// The seed: the same options and seed give the same bytes.
    pub seed: u64,
}

impl Default for SynthOptions {
    fn default() -> SynthOptions {
        SynthOptions {
            images: 100,
            layers: 3,
            shared: 0.3,
            referrers: 1.0,
            untag: 0.0,
            orphans: 0,
            real_tar: false,
            seed: 1,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SynthReport {
    /// Blob files written.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Manifests and indexes among them.
    pub manifests: u64,
    /// Tags left in index.json.
    pub tags: u64,
    /// Blobs expected to survive a collection.
    pub live_blobs: u64,
    /// Blobs expected to go.
    pub garbage_blobs: u64,
    /// Bytes expected to go.
    pub garbage_bytes: u64,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Writer<'a> {
    root: &'a Path,
    written: HashSet<Digest>,
    sizes: BTreeMap<Digest, u64>,
    children: BTreeMap<Digest, Vec<Digest>>,
    report: SynthReport,
}

impl Writer<'_> {
    fn blob(&mut self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let d = Digest::sha256(bytes);
        if self.written.insert(d.clone()) {
            let path = self.root.join(d.blob_path());
            fs::write(&path, bytes).map_err(|e| Error::io("write", &path, e))?;
            self.report.blobs += 1;
            self.report.bytes += bytes.len() as u64;
            self.sizes.insert(d.clone(), bytes.len() as u64);
        }
        Ok((d, bytes.len() as u64))
    }

    fn manifest(&mut self, doc: &Value, children: Vec<Digest>) -> Result<(Digest, u64)> {
        let bytes = serde_json::to_vec(doc).map_err(|e| Error::Index(e.to_string()))?;
        let (d, size) = self.blob(&bytes)?;
        if !self.children.contains_key(&d) {
            self.report.manifests += 1;
            self.children.insert(d.clone(), children);
        }
        Ok((d, size))
    }
}

fn desc(mt: &str, d: &(Digest, u64)) -> Value {
    json!({"mediaType": mt, "digest": d.0.as_str(), "size": d.1})
}

/// Writes a synthetic layout into `out` (created; must be empty or missing).
pub fn synth(out: &Path, opts: &SynthOptions) -> Result<SynthReport> {
    fs::create_dir_all(out.join("blobs/sha256")).map_err(|e| Error::io("create", out, e))?;
    let mut rng = Rng(opts.seed);
    let mut w = Writer {
        root: out,
        written: HashSet::new(),
        sizes: BTreeMap::new(),
        children: BTreeMap::new(),
        report: SynthReport::default(),
    };
    let pool = (opts.images / 4).max(4) as u64;
    let mut entries: Vec<Value> = Vec::new();
    let mut tagged: Vec<(String, Digest)> = Vec::new();
    // subject -> referrers, for the truth.
    let mut referrers: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
    let empty = w.blob(b"{}")?;
    let mut i = 0;
    while i < opts.images {
        let multi = i % 10 == 9 && i + 1 < opts.images;
        let arches: &[&str] = if multi {
            &["amd64", "arm64"]
        } else {
            &["amd64"]
        };
        let mut platform_manifests = Vec::new();
        for (k, arch) in arches.iter().enumerate() {
            let n = i + k;
            let mut layers = Vec::new();
            for l in 0..opts.layers {
                let (content, pad) = if rng.chance(opts.shared) {
                    let k = rng.below(pool);
                    (format!("shared layer {k} seed {}", opts.seed), k % 512)
                } else {
                    (
                        format!("layer {l} of image {n} seed {} {}", opts.seed, rng.next()),
                        rng.below(512),
                    )
                };
                let bytes = if opts.real_tar {
                    crate::demo::tar_with_file(&format!("l{l}.txt"), content.as_bytes())
                } else {
                    let mut b = content.into_bytes();
                    b.resize(b.len() + pad as usize, b'.');
                    b
                };
                layers.push(w.blob(&bytes)?);
            }
            let config = json!({"architecture": arch, "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.0.as_str()).collect::<Vec<_>>()},
                "config": {"Labels": {"image": n.to_string()}}});
            let config =
                w.blob(&serde_json::to_vec(&config).map_err(|e| Error::Index(e.to_string()))?)?;
            let doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": desc("application/vnd.oci.image.config.v1+json", &config),
                "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>()});
            let mut kids = vec![config.0.clone()];
            kids.extend(layers.iter().map(|l| l.0.clone()));
            platform_manifests.push((w.manifest(&doc, kids)?, *arch));
        }
        let top = if multi {
            let inner = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": platform_manifests.iter().map(|(m, a)| {
                    let mut d = desc(OCI_MANIFEST, m);
                    d["platform"] = json!({"architecture": a, "os": "linux"});
                    d
                }).collect::<Vec<_>>()});
            let inner_d = w.manifest(
                &inner,
                platform_manifests
                    .iter()
                    .map(|(m, _)| m.0.clone())
                    .collect(),
            )?;
            // Nested: an outer index over the platform index.
            let outer = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(OCI_INDEX, &inner_d)]});
            (w.manifest(&outer, vec![inner_d.0.clone()])?, OCI_INDEX)
        } else {
            (platform_manifests[0].0.clone(), OCI_MANIFEST)
        };
        let tag = format!("img{i}:v1");
        let mut e = desc(top.1, &top.0);
        e["annotations"] = json!({REF_NAME: tag});
        entries.push(e);
        tagged.push((tag, top.0.0.clone()));
        // Referrer chains on the first platform manifest.
        let subject = platform_manifests[0].0.clone();
        let chains = opts.referrers.floor() as u64 + u64::from(rng.chance(opts.referrers.fract()));
        for c in 0..chains {
            let link = rng.below(4);
            let sig = artifact(
                &mut w,
                &empty,
                "application/vnd.dev.cosign.artifact.sig.v1+json",
                &format!("sig {i} {c}"),
                (link == 0 || link == 3).then_some(&subject),
            )?;
            referrers
                .entry(subject.0.clone())
                .or_default()
                .push(sig.0.clone());
            match link {
                1 => {
                    let mut e = desc(OCI_MANIFEST, &sig);
                    e["annotations"] =
                        json!({REF_NAME: ReferrerTag::name(&subject.0, LinkKind::CosignSig)});
                    entries.push(e);
                }
                2 => {
                    let fb = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(OCI_MANIFEST, &sig)]});
                    let fb = w.manifest(&fb, vec![sig.0.clone()])?;
                    referrers
                        .entry(subject.0.clone())
                        .or_default()
                        .push(fb.0.clone());
                    let mut e = desc(OCI_INDEX, &fb);
                    e["annotations"] =
                        json!({REF_NAME: ReferrerTag::name(&subject.0, LinkKind::Fallback)});
                    entries.push(e);
                }
                3 => entries.push(desc(OCI_MANIFEST, &sig)), // oras style: untagged entry
                _ => {}                                      // listed nowhere (cosign v3 style)
            }
            if c % 2 == 1 || chains == 1 && i % 2 == 0 {
                let sbom = artifact(
                    &mut w,
                    &empty,
                    "application/spdx+json",
                    &format!("sbom {i} {c}"),
                    Some(&subject),
                )?;
                referrers
                    .entry(subject.0.clone())
                    .or_default()
                    .push(sbom.0.clone());
                let sbom_sig = artifact(
                    &mut w,
                    &empty,
                    "application/vnd.dev.cosign.artifact.sig.v1+json",
                    &format!("sbom sig {i} {c}"),
                    Some(&sbom),
                )?;
                referrers
                    .entry(sbom.0.clone())
                    .or_default()
                    .push(sbom_sig.0.clone());
            }
        }
        i += arches.len();
    }
    for o in 0..opts.orphans {
        w.blob(format!("orphan {o} seed {}", opts.seed).as_bytes())?;
    }
    // Remove a fraction of the image tags.
    let mut removed: HashSet<String> = HashSet::new();
    for (tag, _) in &tagged {
        if rng.chance(opts.untag) {
            removed.insert(tag.clone());
        }
    }
    entries.retain(|e| {
        e["annotations"][REF_NAME]
            .as_str()
            .is_none_or(|t| !removed.contains(t))
    });
    // Link entries of subjects that lost their image go too only through collection: they stay
    // in index.json, as a tool that untags leaves them.
    w.report.tags = entries
        .iter()
        .filter(|e| e["annotations"][REF_NAME].is_string())
        .count() as u64;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    write(
        out,
        "index.json",
        &serde_json::to_vec(&index).map_err(|e| Error::Index(e.to_string()))?,
    )?;
    write(out, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;

    // The truth: roots are the remaining image tags; live is their strong closure plus
    // referrers of live nodes, transitively.
    let mut live: BTreeSet<Digest> = BTreeSet::new();
    let mut stack: Vec<Digest> = tagged
        .iter()
        .filter(|(t, _)| !removed.contains(t))
        .map(|(_, d)| d.clone())
        .collect();
    while let Some(d) = stack.pop() {
        if !live.insert(d.clone()) {
            continue;
        }
        stack.extend(w.children.get(&d).cloned().unwrap_or_default());
        stack.extend(referrers.get(&d).cloned().unwrap_or_default());
    }
    w.report.live_blobs = live.len() as u64;
    w.report.garbage_blobs = w.report.blobs - w.report.live_blobs;
    w.report.garbage_bytes = w
        .sizes
        .iter()
        .filter(|(d, _)| !live.contains(*d))
        .map(|(_, s)| s)
        .sum();
    let garbage: Vec<&str> = w
        .sizes
        .keys()
        .filter(|d| !live.contains(*d))
        .map(Digest::as_str)
        .collect();
    let truth = json!({"report": &w.report, "live": live.iter().map(Digest::as_str).collect::<Vec<_>>(), "garbage": garbage});
    write(
        out,
        "synth-truth.json",
        &serde_json::to_vec(&truth).map_err(|e| Error::Index(e.to_string()))?,
    )?;
    Ok(w.report)
}

fn artifact(
    w: &mut Writer<'_>,
    empty: &(Digest, u64),
    artifact_type: &str,
    payload: &str,
    subject: Option<&(Digest, u64)>,
) -> Result<(Digest, u64)> {
    let payload = w.blob(payload.as_bytes())?;
    let mut doc = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": desc(OCI_EMPTY, empty), "layers": [desc("application/octet-stream", &payload)]});
    if let Some(s) = subject {
        doc["subject"] = desc(OCI_MANIFEST, s);
    }
    w.manifest(&doc, vec![empty.0.clone(), payload.0.clone()])
}

fn write(root: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = root.join(name);
    fs::write(&path, bytes).map_err(|e| Error::io("write", &path, e))
}
