//! Reading a layout from disk alone: the blobs it holds, which of them are manifests, and its
//! index.json. Used to adopt a foreign layout, to rebuild the index, to recover after a crash,
//! and to import from another layout.
//!
//! Blobs are read in parallel (rayon). Files up to the manifest size limit are read whole,
//! hashed, and parsed when they look like JSON; larger files are only stat'ed (they are layers,
//! and `verify` hashes them). Symlinks, directories and names that are not digests are skipped
//! and reported, never followed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use rayon::prelude::*;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::layout::index_json::IndexJson;
use crate::manifest::{self, Parsed};
use crate::refname::{LinkKind, ReferrerTag};

/// One blob found on disk.
#[derive(Debug)]
pub struct ScannedBlob {
    /// Its digest (from its path).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Whether its content was hashed and matched.
    pub verified: bool,
    /// Its parse, when it is a manifest.
    pub parsed: Option<Parsed>,
}

/// A layout as found on disk.
#[derive(Debug)]
pub struct Scan {
    /// Every blob, in digest order.
    pub blobs: Vec<ScannedBlob>,
    /// What was skipped, and why.
    pub warnings: Vec<String>,
}

impl Scan {
    /// Parsed manifests by digest.
    pub fn manifests(&self) -> HashMap<&Digest, &Parsed> {
        self.blobs
            .iter()
            .filter_map(|b| b.parsed.as_ref().map(|p| (&b.digest, p)))
            .collect()
    }
}

/// An entry of `blobs/` that is not a blob file, left alone.
#[derive(Clone, Debug)]
pub struct Skipped {
    /// Its path.
    pub path: PathBuf,
    /// Why it is not a blob.
    pub reason: &'static str,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped {}: {}", self.path.display(), self.reason)
    }
}

/// Blob files: digest and size, in digest order.
pub type BlobFiles = Vec<(Digest, u64)>;

/// Lists `blobs/<alg>/<encoded>` files, skipping (with a warning) anything unsafe or malformed.
pub fn list_blob_files(layout: &Layout, warnings: &mut Vec<String>) -> Result<Vec<(Digest, u64)>> {
    let (files, skipped) = list_blob_entries(layout)?;
    warnings.extend(skipped.iter().map(Skipped::to_string));
    Ok(files)
}

/// Lists `blobs/<alg>/<encoded>` regular files (sorted), and separately every other entry:
/// symlinks (never followed), directories, and names that are not digests.
pub fn list_blob_entries(layout: &Layout) -> Result<(BlobFiles, Vec<Skipped>)> {
    let blobs = layout.blobs_dir();
    crate::layout::real_dir(&blobs)?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for alg in fs::read_dir(&blobs).map_err(|e| Error::io("read", &blobs, e))? {
        let alg = alg.map_err(|e| Error::io("read", &blobs, e))?;
        let alg_path = alg.path();
        let ft = alg
            .file_type()
            .map_err(|e| Error::io("stat", &alg_path, e))?;
        if !ft.is_dir() {
            skipped.push(Skipped {
                path: alg_path,
                reason: "not a directory",
            });
            continue;
        }
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        for f in fs::read_dir(&alg_path).map_err(|e| Error::io("read", &alg_path, e))? {
            let f = f.map_err(|e| Error::io("read", &alg_path, e))?;
            let path = f.path();
            let name = f.file_name().to_string_lossy().into_owned();
            let digest = match Digest::parse(&format!("{alg_name}:{name}")) {
                Ok(d) => d,
                Err(_) => {
                    skipped.push(Skipped {
                        path,
                        reason: "name is not a digest",
                    });
                    continue;
                }
            };
            let meta = fs::symlink_metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
            if !meta.is_file() {
                let reason = if meta.file_type().is_symlink() {
                    "a symlink (not followed)"
                } else {
                    "not a regular file"
                };
                skipped.push(Skipped { path, reason });
                continue;
            }
            out.push((digest, meta.len()));
        }
    }
    out.sort();
    Ok((out, skipped))
}

/// Reads, hashes and parses the given blob files in parallel.
pub fn read_blobs(
    layout: &Layout,
    files: Vec<(Digest, u64)>,
    max_manifest: u64,
    progress: bool,
) -> (Vec<ScannedBlob>, Vec<String>) {
    let bar = progress_bar(files.len() as u64, progress);
    let results: Vec<_> = files
        .into_par_iter()
        .map(|(digest, size)| {
            let r = read_one(layout, digest, size, max_manifest);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    let mut blobs = Vec::with_capacity(results.len());
    let mut warnings = Vec::new();
    for r in results {
        match r {
            Ok((blob, warning)) => {
                warnings.extend(warning);
                blobs.push(blob);
            }
            Err(e) => warnings.push(format!("skipped blob: {e}")),
        }
    }
    (blobs, warnings)
}

fn read_one(
    layout: &Layout,
    digest: Digest,
    size: u64,
    max_manifest: u64,
) -> Result<(ScannedBlob, Option<String>)> {
    let mut blob = ScannedBlob {
        digest,
        size,
        verified: false,
        parsed: None,
    };
    if size > max_manifest {
        return Ok((blob, None));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    let path = layout.blob_path(&blob.digest);
    layout
        .open_blob(&blob.digest)?
        .take(max_manifest + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", &path, e))?;
    blob.size = bytes.len() as u64;
    if let Some(mut h) = Hasher::new(blob.digest.algorithm()) {
        h.update(&bytes);
        let actual = h.finish();
        if actual != blob.digest {
            let w = format!(
                "{} does not match its content (hashes to {actual}); not parsed",
                path.display()
            );
            return Ok((blob, Some(w)));
        }
        blob.verified = true;
    }
    blob.parsed = manifest::parse(&bytes, None).ok().flatten();
    Ok((blob, None))
}

/// Scans the whole layout.
pub fn scan(layout: &Layout, max_manifest: u64, progress: bool) -> Result<Scan> {
    let mut warnings = Vec::new();
    let files = list_blob_files(layout, &mut warnings)?;
    let (blobs, more) = read_blobs(layout, files, max_manifest, progress);
    warnings.extend(more);
    Ok(Scan { blobs, warnings })
}

pub(crate) fn progress_bar(len: u64, wanted: bool) -> indicatif::ProgressBar {
    if wanted && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} blobs ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message("indexing layout");
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// The referrer graph of a scanned layout, for import: which manifests refer to which subject.
pub struct LayoutGraph<'a> {
    /// Parsed manifests.
    pub manifests: HashMap<&'a Digest, &'a Parsed>,
    /// subject -> referrers.
    pub referrers: BTreeMap<Digest, BTreeSet<Digest>>,
}

impl<'a> LayoutGraph<'a> {
    /// Builds the graph from a scan and the layout's index.json.
    pub fn new(scan: &'a Scan, index: &IndexJson) -> LayoutGraph<'a> {
        let manifests = scan.manifests();
        let mut referrers: BTreeMap<Digest, BTreeSet<Digest>> = BTreeMap::new();
        for (d, p) in &manifests {
            if let Some(s) = &p.subject {
                referrers.entry(s.clone()).or_default().insert((*d).clone());
            }
        }
        for e in &index.entries {
            let Some(link) = e.tag.as_deref().and_then(ReferrerTag::parse) else {
                continue;
            };
            let set = referrers.entry(link.subject).or_default();
            match link.kind {
                LinkKind::Fallback => {
                    if let Some(p) = manifests.get(&e.digest) {
                        set.extend(p.children.iter().map(|c| c.digest.clone()));
                    }
                }
                _ => {
                    set.insert(e.digest.clone());
                }
            }
        }
        LayoutGraph {
            manifests,
            referrers,
        }
    }

    /// Everything reachable from `roots` through strong edges and, transitively, referrers.
    pub fn closure(&self, roots: impl IntoIterator<Item = Digest>) -> BTreeSet<Digest> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Digest> = roots.into_iter().collect();
        while let Some(d) = stack.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            if let Some(p) = self.manifests.get(&d) {
                stack.extend(p.children.iter().map(|c| c.digest.clone()));
            }
            if let Some(rs) = self.referrers.get(&d) {
                stack.extend(rs.iter().cloned());
            }
        }
        seen
    }
}
