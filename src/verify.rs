//! Verify and repair: rehash every blob, check every edge, and check that the index, the layout
//! and index.json agree, and that the index's tables agree with each other.
//!
//! What is checked, and what `--repair` does about each finding:
//!
//! | problem | found when | repair |
//! | --- | --- | --- |
//! | `corrupt` | a file does not hash to its name | moved to `.ocistore/quarantine/`, then forgotten by the index |
//! | `not-a-blob` | an entry of `blobs/` is a symlink, a directory, or not named by a digest | moved to `.ocistore/quarantine/` (a symlink is moved, never followed) |
//! | `missing-file` | the index lists a blob whose file is gone | the index forgets it |
//! | `unindexed-file` | a blob file the index does not know | indexed (as found content, subject to the grace period) |
//! | `wrong-size` | a blob's file size differs from the index's record | recorded again from the file |
//! | `edges-differ` | a manifest's children in the index differ from its document | recorded again from the file |
//! | `missing-child` | a manifest's child is absent, and the layout is not sparse there by design (foreign layers with `urls`, inline `data`); a manifest the next collection removes is not checked | cannot be repaired: push or import the content |
//! | `child-size` | a child's declared size differs from its file's | cannot be repaired: the manifest or the child is wrong |
//! | `index-json` | index.json lists other tags or entries than the index | index.json is written again, taking in any change another tool made |
//! | `index-inconsistent` | the index's tables disagree with each other: a link row without its inverse or its source (a `subject` field, a cosign or fallback tag), an edge without its `parents` row, a `parents` row naming an absent parent or a `subject` link row naming an absent referrer once no sweep is pending, or counts that a recount from the edges, tags and entries does not give (checked on a writable store) | cannot be repaired in place: `ocistore rebuild` recreates the index from the layout |
//!
//! Nothing is ever deleted: a repair moves bad content aside or changes only the index and
//! index.json. The order is the store's usual one for content leaving `blobs/`: the file is moved
//! out first (so a crash leaves a missing file, which recovery forgets), then the index commits.
//! After repairs, the whole check runs again, and the report's `ok` says whether that second
//! check found nothing left.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::{BlobRecord, Writer};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::fault::{self, Step};
use crate::gc::GcOptions;
use crate::layout::index_json::IndexJson;
use crate::layout::sync_dir;
use crate::manifest;
use crate::scan;
use crate::store::Store;

/// What [`Store::verify`] does.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Repair what can be repaired (see the [module documentation](self)).
    pub repair: bool,
}

/// A kind of problem [`Store::verify`] finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// A file does not hash to its name.
    Corrupt,
    /// An entry of `blobs/` that is not a blob file.
    NotABlob,
    /// An indexed blob without a file.
    MissingFile,
    /// A blob file the index does not know.
    UnindexedFile,
    /// A file whose size differs from the index's record.
    WrongSize,
    /// A manifest whose children in the index differ from its document.
    EdgesDiffer,
    /// A manifest's child that is absent.
    MissingChild,
    /// A child whose size differs from the size its parent declares.
    ChildSize,
    /// index.json disagrees with the index.
    IndexJson,
    /// The index's tables disagree with each other.
    IndexInconsistent,
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

/// One problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Its kind.
    pub kind: ProblemKind,
    /// What it concerns: a digest, or a path inside the layout.
    pub subject: String,
    /// What is wrong, in a sentence fragment.
    pub detail: String,
    /// Whether `--repair` fixed it (a second check no longer finds it).
    pub repaired: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.subject, self.detail)?;
        if self.repaired {
            f.write_str(" (repaired)")?;
        }
        Ok(())
    }
}

/// What [`Store::verify`] found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// True when nothing is wrong (after repairs, when asked for).
    pub ok: bool,
    /// Blob files read.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs whose algorithm the store cannot compute, so their content was not checked.
    pub unverifiable: u64,
    /// Manifests whose edges were checked.
    pub manifests: u64,
    /// Seconds spent.
    pub seconds: f64,
    /// Every problem found, repaired or not.
    pub problems: Vec<Problem>,
}

/// The outcome of reading one blob file.
struct FileCheck {
    digest: Digest,
    size: u64,
    /// `Some(actual)` when the content hashes to another digest.
    mismatch: Option<Digest>,
    verified: bool,
    /// The manifest's parse, when the index says it is one.
    children: Option<Vec<manifest::Child>>,
    error: Option<String>,
}

/// A finding, with what a repair needs to know.
struct Finding {
    problem: Problem,
    fix: Fix,
}

enum Fix {
    None,
    Quarantine(PathBuf, Option<Digest>),
    Forget(Digest),
    Reindex(Digest),
    IndexJson,
}

const BUF: usize = 256 * 1024;

impl Store {
    /// Rehashes every blob (in parallel), checks every edge, and checks that the index agrees with
    /// the layout, index.json with the index, and (on a writable store) the index's tables with
    /// each other. With `repair`, fixes what can be fixed; nothing is deleted (bad content goes
    /// to `.ocistore/quarantine/`).
    ///
    /// ```
    /// use ocistore::verify::VerifyOptions;
    /// use ocistore::{Options, PutOptions, Store};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::init(dir.path(), &Options::default())?;
    /// store.put(&mut &b"layer"[..], &PutOptions::default())?;
    /// let report = store.verify(&VerifyOptions::default())?;
    /// assert!(report.ok, "{:?}", report.problems);
    /// assert_eq!(report.blobs, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, opts: &VerifyOptions) -> Result<VerifyReport> {
        let start = Instant::now();
        if opts.repair {
            self.mark_writing()?;
        }
        let (mut report, findings) = self.check()?;
        if opts.repair && !findings.is_empty() {
            self.repair(&findings)?;
            let (_, again) = self.check()?;
            let again: Vec<Problem> = again.into_iter().map(|f| f.problem).collect();
            let left: HashSet<(ProblemKind, String)> =
                again.iter().map(|p| (p.kind, p.subject.clone())).collect();
            let mut problems: Vec<Problem> = findings
                .into_iter()
                .map(|f| {
                    let mut p = f.problem;
                    p.repaired = !left.contains(&(p.kind, p.subject.clone()));
                    p
                })
                .collect();
            let before: HashSet<(ProblemKind, String)> = problems
                .iter()
                .map(|p| (p.kind, p.subject.clone()))
                .collect();
            problems.extend(
                again
                    .into_iter()
                    .filter(|p| !before.contains(&(p.kind, p.subject.clone()))),
            );
            report.problems = problems;
            report.ok = left.is_empty();
        } else {
            report.problems = findings.into_iter().map(|f| f.problem).collect();
            report.ok = report.problems.is_empty();
        }
        report.seconds = start.elapsed().as_secs_f64();
        Ok(report)
    }

    fn check(&self) -> Result<(VerifyReport, Vec<Finding>)> {
        let layout = self.layout_ref();
        let reader = self.reader()?;
        let mut indexed: HashMap<String, BlobRecord> = HashMap::new();
        reader.for_each_blob(|d, rec| {
            indexed.insert(d.to_owned(), rec);
        })?;
        let pending: HashSet<String> = reader.pending()?.into_iter().collect();
        let (files, skipped) = scan::list_blob_entries(layout)?;
        let mut media_types: HashMap<String, String> = HashMap::new();
        for (d, _) in &files {
            if indexed.get(d.as_str()).is_some_and(|r| r.manifest)
                && let Some(m) = reader.manifest(d.as_str())?
            {
                media_types.insert(d.to_string(), m.media_type);
            }
        }
        let max_manifest = self.options().max_manifest_size;
        let bar = scan::progress_bar(files.len() as u64, self.options().progress);
        bar.set_message("verifying");
        let checks: Vec<FileCheck> = files
            .par_iter()
            .map(|(digest, size)| {
                let declared = media_types.get(digest.as_str()).map(String::as_str);
                let c = check_file(self, digest, *size, declared, max_manifest);
                bar.inc(1);
                c
            })
            .collect();
        bar.finish_and_clear();

        let mut report = VerifyReport::default();
        let mut findings = Vec::new();
        let problem = |kind, subject: &str, detail: String| Problem {
            kind,
            subject: subject.to_owned(),
            detail,
            repaired: false,
        };
        for s in &skipped {
            findings.push(Finding {
                problem: problem(ProblemKind::NotABlob, &relative(layout.root(), &s.path), {
                    s.reason.to_owned()
                }),
                fix: Fix::Quarantine(s.path.clone(), None),
            });
        }
        let on_disk: HashSet<&str> = files.iter().map(|(d, _)| d.as_str()).collect();
        for c in &checks {
            report.blobs += 1;
            report.bytes += c.size;
            let d = c.digest.as_str();
            if !c.verified && c.error.is_none() && c.mismatch.is_none() {
                report.unverifiable += 1;
            }
            if let Some(e) = &c.error {
                findings.push(Finding {
                    problem: problem(ProblemKind::Corrupt, d, format!("cannot be read: {e}")),
                    fix: Fix::Quarantine(layout.blob_path(&c.digest), Some(c.digest.clone())),
                });
                continue;
            }
            if let Some(actual) = &c.mismatch {
                findings.push(Finding {
                    problem: problem(
                        ProblemKind::Corrupt,
                        d,
                        format!("content hashes to {actual}"),
                    ),
                    fix: Fix::Quarantine(layout.blob_path(&c.digest), Some(c.digest.clone())),
                });
                continue;
            }
            let Some(rec) = indexed.get(d) else {
                if !pending.contains(d) {
                    findings.push(Finding {
                        problem: problem(
                            ProblemKind::UnindexedFile,
                            d,
                            "the index does not know this file".into(),
                        ),
                        fix: Fix::Reindex(c.digest.clone()),
                    });
                }
                continue;
            };
            if rec.size != c.size {
                findings.push(Finding {
                    problem: problem(
                        ProblemKind::WrongSize,
                        d,
                        format!(
                            "the index records {} bytes, the file has {}",
                            rec.size, c.size
                        ),
                    ),
                    fix: Fix::Reindex(c.digest.clone()),
                });
            }
            let Some(children) = &c.children else {
                continue;
            };
            report.manifests += 1;
            let in_doc: BTreeSet<String> = children.iter().map(|c| c.digest.to_string()).collect();
            let in_index: BTreeSet<String> = reader.children(d)?.into_iter().collect();
            if in_doc != in_index {
                findings.push(Finding {
                    problem: problem(
                        ProblemKind::EdgesDiffer,
                        d,
                        format!(
                            "the document lists {} children, the index {}",
                            in_doc.len(),
                            in_index.len()
                        ),
                    ),
                    fix: Fix::Reindex(c.digest.clone()),
                });
            }
            for child in children {
                let cd = child.digest.as_str();
                match indexed.get(cd) {
                    None if !on_disk.contains(cd) && !child.may_be_absent => {
                        findings.push(Finding {
                            problem: problem(
                                ProblemKind::MissingChild,
                                d,
                                format!("child {cd} is not in the layout"),
                            ),
                            fix: Fix::None,
                        });
                    }
                    Some(child_rec) if child.size.is_some_and(|s| s != child_rec.size) => {
                        findings.push(Finding {
                            problem: problem(
                                ProblemKind::ChildSize,
                                d,
                                format!(
                                    "declares {} bytes for child {cd}, which has {}",
                                    child.size.unwrap_or_default(),
                                    child_rec.size
                                ),
                            ),
                            fix: Fix::None,
                        });
                    }
                    _ => {}
                }
            }
        }
        for d in indexed.keys() {
            if !on_disk.contains(d.as_str()) && !pending.contains(d) {
                findings.push(Finding {
                    problem: problem(
                        ProblemKind::MissingFile,
                        d,
                        "indexed, but its file is gone".into(),
                    ),
                    fix: Fix::Forget(crate::catalog::stored_digest(d)?),
                });
            }
        }
        if let Some(detail) = index_json_differs(self)? {
            findings.push(Finding {
                problem: problem(ProblemKind::IndexJson, "index.json", detail),
                fix: Fix::IndexJson,
            });
        }
        drop(reader);
        // The index against itself: on a writable store only (the check recomputes counts in
        // a transaction it then aborts).
        if !self.is_read_only() {
            let txn = self.write_txn()?;
            let inconsistent = Writer::new(&txn).audit()?;
            txn.abort()?;
            for (d, detail) in inconsistent {
                findings.push(Finding {
                    problem: problem(ProblemKind::IndexInconsistent, &d, detail),
                    fix: Fix::None,
                });
            }
        }
        // A manifest the next collection removes may lack children: a delete removes a
        // manifest that only garbage lists. That is not damage.
        if findings
            .iter()
            .any(|f| f.problem.kind == ProblemKind::MissingChild)
        {
            let garbage: HashSet<String> = self
                .gc(&GcOptions {
                    dry_run: true,
                    // Past the answer kept from the last collection: list what would go.
                    scan_orphans: true,
                    ..GcOptions::default()
                })?
                .removed
                .into_iter()
                .map(|r| r.digest)
                .collect();
            findings.retain(|f| {
                f.problem.kind != ProblemKind::MissingChild || !garbage.contains(&f.problem.subject)
            });
        }
        // A write that ran beside the check (an ingest between its rename and its commit, a
        // collection between its commit and its unlinks) is not a problem: keep a file/index
        // disagreement only if it is still there.
        let reader = self.reader()?;
        let pending_now: HashSet<String> = reader.pending()?.into_iter().collect();
        let mut kept = Vec::with_capacity(findings.len());
        for f in findings {
            let still = match f.problem.kind {
                ProblemKind::MissingFile => {
                    reader.blob(&f.problem.subject)?.is_some()
                        && !pending_now.contains(&f.problem.subject)
                        && fs::symlink_metadata(
                            layout.blob_path(&crate::catalog::stored_digest(&f.problem.subject)?),
                        )
                        .is_err()
                }
                ProblemKind::UnindexedFile => reader.blob(&f.problem.subject)?.is_none(),
                _ => true,
            };
            if still {
                kept.push(f);
            }
        }
        kept.sort_by(|a, b| {
            (a.problem.kind, &a.problem.subject).cmp(&(b.problem.kind, &b.problem.subject))
        });
        Ok((report, kept))
    }

    fn repair(&self, findings: &[Finding]) -> Result<()> {
        let layout = self.layout_ref();
        let quarantine = layout.private_dir().join("quarantine");
        let mut forget: BTreeSet<Digest> = BTreeSet::new();
        let mut reindex: BTreeSet<Digest> = BTreeSet::new();
        let mut rewrite_index_json = false;
        for f in findings {
            match &f.fix {
                Fix::None => {}
                Fix::Quarantine(path, digest) => {
                    if let Some(d) = digest {
                        let _stripe = self.stripe(d.as_str());
                        move_aside(&quarantine, path, layout.root())?;
                        forget.insert(d.clone());
                    } else {
                        move_aside(&quarantine, path, layout.root())?;
                    }
                }
                Fix::Forget(d) => {
                    forget.insert(d.clone());
                }
                Fix::Reindex(d) => {
                    reindex.insert(d.clone());
                }
                Fix::IndexJson => rewrite_index_json = true,
            }
        }
        let files: Vec<(Digest, u64)> = reindex
            .iter()
            .filter_map(|d| {
                fs::symlink_metadata(layout.blob_path(d))
                    .ok()
                    .map(|m| (d.clone(), m.len()))
            })
            .collect();
        let (scanned, _) = scan::read_blobs(
            layout,
            files,
            self.options().max_manifest_size,
            self.options().progress,
        );
        let txn = self.write_txn()?;
        let w = Writer::new(&txn);
        for d in forget.iter().chain(&reindex) {
            w.forget_blob(d.as_str())?;
        }
        crate::store::insert_scanned(&w, layout, &scanned, true)?;
        if rewrite_index_json || !forget.is_empty() {
            self.write_index_json(&w)?;
        }
        w.set_meta(
            crate::catalog::meta::BLOBS_STAMP,
            crate::store::blobs_stamp(layout)?.as_bytes(),
        )?;
        drop(w);
        txn.commit()?;
        Ok(())
    }
}

/// Reads and hashes one blob file; parses it when the index says it is a manifest.
fn check_file(
    store: &Store,
    digest: &Digest,
    size: u64,
    declared: Option<&str>,
    max_manifest: u64,
) -> FileCheck {
    let mut out = FileCheck {
        digest: digest.clone(),
        size,
        mismatch: None,
        verified: false,
        children: None,
        error: None,
    };
    let mut file = match store.layout_ref().open_blob(digest) {
        Ok(f) => f,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    let keep = declared.is_some() && size <= max_manifest;
    let mut kept = Vec::new();
    let mut hasher = Hasher::new(digest.algorithm());
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if let Some(h) = &mut hasher {
                    h.update(&buf[..n]);
                }
                if keep {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        }
    }
    out.size = total;
    if let Some(h) = hasher {
        let actual = h.finish();
        if actual != *digest {
            out.mismatch = Some(actual);
            return out;
        }
        out.verified = true;
    }
    if keep {
        out.children = Some(match manifest::parse(&kept, declared) {
            Ok(Some(p)) => p.children,
            _ => Vec::new(),
        });
    }
    out
}

/// Compares index.json's tags and untagged entries with the index's. `None` when they agree.
fn index_json_differs(store: &Store) -> Result<Option<String>> {
    let path = store.layout_ref().index_json();
    let file = match IndexJson::read(&path) {
        Ok((f, _)) => f,
        Err(e) => return Ok(Some(format!("cannot be read: {e}"))),
    };
    let (tags, untagged, repeated) = file.split();
    let reader = store.reader()?;
    let want_tags: BTreeMap<String, String> = reader
        .tags()?
        .into_iter()
        .map(|r| (r.tag, r.digest))
        .collect();
    let have_tags: BTreeMap<String, String> = tags
        .into_iter()
        .map(|(t, e)| (t, e.digest.to_string()))
        .collect();
    let want_untagged: BTreeSet<String> = reader.untagged()?.into_iter().map(|(d, _)| d).collect();
    let have_untagged: BTreeSet<String> = untagged.iter().map(|e| e.digest.to_string()).collect();
    if want_tags != have_tags {
        let differ = want_tags
            .keys()
            .chain(have_tags.keys())
            .filter(|t| want_tags.get(*t) != have_tags.get(*t))
            .collect::<BTreeSet<_>>();
        return Ok(Some(format!(
            "tags differ from the index: {}",
            differ
                .into_iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if want_untagged != have_untagged {
        return Ok(Some(format!(
            "lists {} untagged entries, the index {}",
            have_untagged.len(),
            want_untagged.len()
        )));
    }
    if !repeated.is_empty() {
        return Ok(Some(format!("repeats tags {repeated:?}")));
    }
    Ok(None)
}

/// Moves `path` (a file, a symlink or a directory; never followed) into `quarantine/`, under a
/// name derived from its place in the layout.
fn move_aside(quarantine: &Path, path: &Path, root: &Path) -> Result<()> {
    match fs::create_dir(quarantine) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(Error::io("create directory", quarantine, e));
        }
        _ => {}
    }
    crate::layout::real_dir(quarantine)?;
    let base = relative(root, path).replace('/', "_");
    let mut target = quarantine.join(&base);
    let mut n = 1;
    while fs::symlink_metadata(&target).is_ok() {
        target = quarantine.join(format!("{base}.{n}"));
        n += 1;
    }
    fault::check(Step::Rename, &target)
        .and_then(|()| fs::rename(path, &target))
        .map_err(|e| Error::io("move into quarantine", path, e))?;
    sync_dir(quarantine)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// `path` relative to the layout's root, for reports.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
