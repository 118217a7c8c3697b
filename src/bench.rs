//! Benchmarks of the garbage collector: the strategies against store size, and under churn.
//!
//! [`gc_bench`] generates, for each size, one synthetic layout with [`crate::synth`] (cached in
//! `OUT/cache/`), then for each strategy and run makes a fresh copy of it in `OUT/work/` (files
//! copied, never linked: a collection unlinks, and each run must adopt its own index; the copy
//! an earlier run left is brought back file by file and its index removed), adopts it in one
//! child process and collects it in another. Each child is the running executable with a hidden
//! command ([`adopt_child`], [`collect_child`], [`churn_child`]); its peak resident memory comes
//! from `wait4`. After each collection the files left in `blobs/` are compared with the live set
//! of `synth-truth.json`: any difference is reported as a mismatch. When `umoci` is on `PATH`,
//! `umoci gc --layout` runs on a fresh copy too, as a peer row.
//!
//! The churn workload ([`churn_child`]) adopts a copy of a synthetic layout and applies a seeded
//! stream of pushes (images with layers, some shared, some signed), retags and deletes, with a
//! collection every `gc_every` operations. Before each collection it measures the bytes in
//! `blobs/`; after it, the bytes the store keeps: their ratio is the space amplification. While
//! each collection runs, a probe thread pins and unpins a tagged manifest in a loop and times each
//! of these small write transactions: the time a writer waits for the collector's write lock.
//!
//! The results go to `OUT/gc.md` (tables), `OUT/gc.json` ([`GcBenchReport`]) and `OUT/gc.svg`
//! (median collection time against store size, one line per strategy).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::gc::{DeleteOptions, GcOptions, GcReport, Strategy};
use crate::manifest::{OCI_EMPTY, OCI_MANIFEST};
use crate::store::{Options, PutOptions, Store};
use crate::synth::{SynthOptions, synth};

/// The synthetic layout every size is drawn from: `--layers 6 --shared 0.5 --referrers 1
/// --untag 0.3 --seed 1`, with `--images` chosen for the size.
pub const SYNTH_LAYERS: usize = 6;
/// Fraction of layers drawn from the shared pool.
pub const SYNTH_SHARED: f64 = 0.5;
/// Referrer chains per image.
pub const SYNTH_REFERRERS: f64 = 1.0;
/// Fraction of tags removed.
pub const SYNTH_UNTAG: f64 = 0.3;
/// The seed.
pub const SYNTH_SEED: u64 = 1;
/// Images of the layout that measures blobs per image.
const CALIBRATION_IMAGES: usize = 256;
/// Bump when the cached layouts would differ.
const CACHE_VERSION: &str = "v1";

/// What [`gc_bench`] measures.
#[derive(Clone, Debug)]
pub struct GcBenchOptions {
    /// Store sizes, in blobs (approximate: the layout has about this many).
    pub sizes: Vec<u64>,
    /// The strategies compared.
    pub strategies: Vec<Strategy>,
    /// Runs per strategy and size; the report gives the median.
    pub runs: usize,
    /// Operations of the churn workload (none: no churn).
    pub churn: Option<usize>,
    /// A collection every this many churn operations.
    pub gc_every: usize,
    /// Where the cache, the copies and the results go.
    pub out: PathBuf,
    /// The executable that runs the child processes (this program).
    pub exe: PathBuf,
    /// The command line, recorded in the report.
    pub command: String,
}

/// One strategy (or umoci) at one size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GcRow {
    /// The size asked for, in blobs.
    pub target: u64,
    /// Blobs in the generated layout.
    pub blobs: u64,
    /// `mark-sweep`, `refcount`, `scan` or `umoci`.
    pub strategy: String,
    /// Wall time of each adoption (`Store::init` of the copy), in milliseconds; empty for umoci.
    pub adopt_ms: Vec<f64>,
    /// Wall time of each collection, in milliseconds (for ocistore, `Store::gc` alone; for
    /// umoci, the whole `umoci gc` process).
    pub gc_ms: Vec<f64>,
    /// The median of `adopt_ms`.
    pub median_adopt_ms: f64,
    /// The median of `gc_ms`.
    pub median_gc_ms: f64,
    /// Largest peak resident memory of the collecting process over the runs, in KiB.
    pub peak_rss_kib: u64,
    /// Largest peak resident memory of the adopting process over the runs, in KiB.
    pub adopt_peak_rss_kib: u64,
    /// Bytes freed (blob files removed), as measured on disk.
    pub bytes_freed: u64,
    /// Blob files removed.
    pub blobs_removed: u64,
    /// Whether every run left exactly the live set of `synth-truth.json`.
    pub matches_truth: bool,
}

/// The layout generated for one size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SizeInfo {
    /// The size asked for, in blobs.
    pub target: u64,
    /// `--images` given to synth.
    pub images: usize,
    /// Blobs written.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs the truth says are garbage.
    pub garbage_blobs: u64,
    /// Their bytes.
    pub garbage_bytes: u64,
}

/// Percentiles of a sample, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Spread {
    /// Number of values.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Spread {
            count: v.len(),
            p50: rank(0.5),
            p95: rank(0.95),
            max: v[v.len() - 1],
        }
    }
}

/// The churn workload under one strategy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChurnResult {
    /// The strategy.
    pub strategy: String,
    /// Blobs of the starting layout.
    pub start_blobs: u64,
    /// Operations applied.
    pub ops: usize,
    /// Pushes among them.
    pub pushes: usize,
    /// Retags.
    pub retags: usize,
    /// Deletes (untags and deletes by digest).
    pub deletes: usize,
    /// Collections run.
    pub collections: usize,
    /// Blobs removed by each collection.
    pub removed_per_gc: Vec<u64>,
    /// Bytes in `blobs/` before each collection, divided by the bytes kept after it.
    pub amplification: Vec<f64>,
    /// Mean of `amplification`.
    pub amplification_mean: f64,
    /// Largest of `amplification`.
    pub amplification_max: f64,
    /// The longest sweep transaction of each collection (`max_pause_ms`), spread over the
    /// collections.
    pub pause: Spread,
    /// Wall time of each collection, spread over the collections.
    pub gc_time: Spread,
    /// The probe's write transactions while collections ran: how long a writer waited.
    pub write_wait: Spread,
    /// The same probe with no collection running.
    pub write_idle: Spread,
    /// Milliseconds in collections, in all.
    pub gc_total_ms: f64,
    /// Milliseconds of the whole workload (operations and collections, not the adoption).
    pub total_ms: f64,
    /// Peak resident memory of the process, in KiB (filled in by the parent).
    pub peak_rss_kib: u64,
}

/// Everything [`gc_bench`] measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GcBenchReport {
    /// The command line.
    pub command: String,
    /// The machine: cores, CPU model, memory, file system of the output directory.
    pub machine: String,
    /// Runs per strategy and size.
    pub runs: usize,
    /// The layouts.
    pub sizes: Vec<SizeInfo>,
    /// One row per size and strategy (and umoci).
    pub rows: Vec<GcRow>,
    /// The churn workload per strategy, when asked for.
    pub churn: Vec<ChurnResult>,
    /// Churn operations and collection interval, and the size it started from.
    pub churn_setup: Option<(usize, usize, u64)>,
    /// Results that disagree with the truth or with each other. Empty when all is well.
    pub mismatches: Vec<String>,
}

/// What a child that adopts or collects reports on stdout.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChildReport {
    /// Milliseconds to open (or adopt) the store.
    pub open_ms: f64,
    /// Blobs indexed by the open.
    pub indexed_blobs: u64,
    /// Milliseconds in `Store::gc` (zero when only adopting).
    pub gc_ms: f64,
    /// Blobs the collection removed.
    pub removed_blobs: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// The longest sweep transaction, in milliseconds.
    pub max_pause_ms: f64,
}

/// Parses a store size: a number of blobs with an optional `k` or `m` suffix (`200`, `10k`,
/// `1.5m`).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mul) = match t.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => match t.strip_suffix('m') {
            Some(n) => (n, 1e6),
            None => (t.as_str(), 1.0),
        },
    };
    match num.parse::<f64>() {
        Ok(n) if n.is_finite() && n * mul >= 1.0 => Ok((n * mul).round() as u64),
        _ => Err(format!(
            "invalid size {s:?} (a number of blobs: 200, 10k, 1m)"
        )),
    }
}

/// Parses a comma-separated list of sizes.
pub fn parse_sizes(s: &str) -> std::result::Result<Vec<u64>, String> {
    s.split(',').map(parse_size).collect()
}

/// Parses `all` or a comma-separated list of strategies.
pub fn parse_strategies(s: &str) -> std::result::Result<Vec<Strategy>, String> {
    if s.trim() == "all" {
        return Ok(vec![
            Strategy::MarkSweep,
            Strategy::Refcount,
            Strategy::Scan,
        ]);
    }
    s.split(',').map(|x| x.trim().parse()).collect()
}

/// A list of strategies, as parsed from `all` or `mark-sweep,refcount`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategyList(pub Vec<Strategy>);

impl std::str::FromStr for StrategyList {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<StrategyList, String> {
        parse_strategies(s).map(StrategyList)
    }
}

/// The name of a strategy, as the command line spells it.
pub fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Auto => "auto",
        Strategy::MarkSweep => "mark-sweep",
        Strategy::Refcount => "refcount",
        Strategy::Scan => "scan",
    }
}

fn fail(op: &'static str, path: &Path, msg: impl Into<String>) -> Error {
    Error::io(op, path, io::Error::other(msg.into()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &[f64]) -> f64 {
    Spread::of(v).p50
}

/// Progress on stderr, with the seconds since the first line.
fn note(line: impl AsRef<str>) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("bench [{t:6.1}s]: {}", line.as_ref());
}

/// Runs the benchmark and writes `gc.md`, `gc.json` and `gc.svg` into `opts.out`.
pub fn gc_bench(opts: &GcBenchOptions) -> Result<GcBenchReport> {
    let out = &opts.out;
    fs::create_dir_all(out.join("cache")).map_err(|e| Error::io("create", out, e))?;
    let work = out.join("work");
    fs::create_dir_all(&work).map_err(|e| Error::io("create", &work, e))?;
    let mut report = GcBenchReport {
        command: opts.command.clone(),
        machine: machine(out),
        runs: opts.runs.max(1),
        ..GcBenchReport::default()
    };
    note("calibrating the layout generator");
    let per_image = blobs_per_image(out)?;
    let umoci = on_path("umoci");
    for &target in &opts.sizes {
        let images = ((target as f64 / per_image).round() as usize).max(1);
        let (layout, info) = cached_layout(out, target, images)?;
        note(format!(
            "size {target}: {} images, {} blobs ({} garbage)",
            images, info.blobs, info.garbage_blobs
        ));
        let truth = Truth::load(&layout)?;
        let mut rows: Vec<GcRow> = Vec::new();
        for &s in &opts.strategies {
            rows.push(ocistore_row(
                opts,
                &layout,
                &work,
                &info,
                &truth,
                s,
                &mut report,
            )?);
        }
        if umoci {
            rows.push(umoci_row(opts, &layout, &work, &info, &truth)?);
        }
        report.sizes.push(info);
        report.rows.extend(rows);
    }
    if let Some(ops) = opts.churn {
        let &target = opts.sizes.first().ok_or_else(|| {
            fail(
                "churn",
                out,
                "the churn workload needs a size to start from",
            )
        })?;
        let images = ((target as f64 / per_image).round() as usize).max(1);
        let (layout, _) = cached_layout(out, target, images)?;
        report.churn_setup = Some((ops, opts.gc_every.max(1), target));
        for &s in &opts.strategies {
            let dir = work_dir(&work, &layout);
            fresh_copy(&layout, &dir)?;
            note(format!(
                "churn {}: {ops} operations, a collection every {}",
                strategy_name(s),
                opts.gc_every
            ));
            let mut cmd = Command::new(&opts.exe);
            cmd.args(["bench", "churn-child"])
                .arg(&dir)
                .args(["--strategy", strategy_name(s)])
                .args(["--ops", &ops.to_string()])
                .args(["--gc-every", &opts.gc_every.max(1).to_string()]);
            let (stdout, rss) = run_child(cmd)?;
            let mut r: ChurnResult = serde_json::from_slice(&stdout)
                .map_err(|e| fail("parse", &dir, format!("churn child output: {e}")))?;
            r.peak_rss_kib = rss;
            report.churn.push(r);
        }
        if let Some(first) = report.churn.first() {
            for r in &report.churn[1..] {
                if r.removed_per_gc != first.removed_per_gc {
                    report.mismatches.push(format!(
                        "churn: {} removed {:?} blobs per collection, {} removed {:?}",
                        first.strategy, first.removed_per_gc, r.strategy, r.removed_per_gc
                    ));
                }
            }
        }
    }
    for m in &report.mismatches {
        eprintln!("MISMATCH: {m}");
    }
    write_file(out, "gc.json", &json_bytes(&report)?)?;
    write_file(out, "gc.md", render_markdown(&report).as_bytes())?;
    write_file(out, "gc.svg", render_svg(&report).as_bytes())?;
    Ok(report)
}

fn json_bytes(v: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::Index(e.to_string()))
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let p = dir.join(name);
    fs::write(&p, bytes).map_err(|e| Error::io("write", &p, e))
}

fn remove_dir(dir: &Path) -> Result<()> {
    fs::remove_dir_all(dir).map_err(|e| Error::io("remove", dir, e))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Blobs per image of the synthetic layout, measured on a small one.
fn blobs_per_image(out: &Path) -> Result<f64> {
    let (_, info) = cached_layout(out, 0, CALIBRATION_IMAGES)?;
    Ok(info.blobs as f64 / CALIBRATION_IMAGES as f64)
}

/// The cached layout of `images` images, generated if missing.
fn cached_layout(out: &Path, target: u64, images: usize) -> Result<(PathBuf, SizeInfo)> {
    let key = format!(
        "{CACHE_VERSION} synth --images {images} --layers {SYNTH_LAYERS} --shared {SYNTH_SHARED} \
         --referrers {SYNTH_REFERRERS} --untag {SYNTH_UNTAG} --seed {SYNTH_SEED}"
    );
    let dir = out.join("cache").join(format!("synth-{images}"));
    let marker = out.join("cache").join(format!("synth-{images}.complete"));
    let info_of = |r: &crate::synth::SynthReport| SizeInfo {
        target,
        images,
        blobs: r.blobs,
        bytes: r.bytes,
        garbage_blobs: r.garbage_blobs,
        garbage_bytes: r.garbage_bytes,
    };
    if fs::read_to_string(&marker).is_ok_and(|k| k == key) && !dir.join(".ocistore").exists() {
        let truth = Truth::load(&dir)?;
        return Ok((dir, info_of(&truth.report)));
    }
    let _ = fs::remove_dir_all(&dir);
    let r = synth(
        &dir,
        &SynthOptions {
            images,
            layers: SYNTH_LAYERS,
            shared: SYNTH_SHARED,
            referrers: SYNTH_REFERRERS,
            untag: SYNTH_UNTAG,
            orphans: 0,
            real_tar: false,
            seed: SYNTH_SEED,
        },
    )?;
    fs::write(&marker, key).map_err(|e| Error::io("write", &marker, e))?;
    Ok((dir, info_of(&r)))
}

/// `synth-truth.json`: the live set.
struct Truth {
    report: crate::synth::SynthReport,
    live: BTreeSet<String>,
}

#[derive(Deserialize)]
struct TruthFile {
    report: TruthReport,
    live: Vec<String>,
}

#[derive(Deserialize)]
struct TruthReport {
    blobs: u64,
    bytes: u64,
    manifests: u64,
    tags: u64,
    live_blobs: u64,
    garbage_blobs: u64,
    garbage_bytes: u64,
}

impl Truth {
    fn load(layout: &Path) -> Result<Truth> {
        let p = layout.join("synth-truth.json");
        let bytes = fs::read(&p).map_err(|e| Error::io("read", &p, e))?;
        let t: TruthFile =
            serde_json::from_slice(&bytes).map_err(|e| fail("parse", &p, e.to_string()))?;
        let r = t.report;
        Ok(Truth {
            report: crate::synth::SynthReport {
                blobs: r.blobs,
                bytes: r.bytes,
                manifests: r.manifests,
                tags: r.tags,
                live_blobs: r.live_blobs,
                garbage_blobs: r.garbage_blobs,
                garbage_bytes: r.garbage_bytes,
            },
            live: t.live.into_iter().collect(),
        })
    }

    /// What differs between the blobs left in `dir` and the live set, if anything.
    fn check(&self, dir: &Path) -> Result<Option<String>> {
        let left: BTreeSet<String> = blob_files(dir)?.into_keys().collect();
        if left == self.live {
            return Ok(None);
        }
        let missing = self.live.difference(&left).count();
        let extra = left.difference(&self.live).count();
        Ok(Some(format!(
            "{missing} live blobs removed, {extra} garbage blobs left (of {} live)",
            self.live.len()
        )))
    }
}

/// The blob files of a layout: `sha256:<hex>` to size.
fn blob_files(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let blobs = dir.join("blobs");
    for alg in fs::read_dir(&blobs).map_err(|e| Error::io("read", &blobs, e))? {
        let alg = alg.map_err(|e| Error::io("read", &blobs, e))?;
        let name = alg.file_name().to_string_lossy().into_owned();
        for f in fs::read_dir(alg.path()).map_err(|e| Error::io("read", alg.path(), e))? {
            let f = f.map_err(|e| Error::io("read", alg.path(), e))?;
            let len = f
                .metadata()
                .map_err(|e| Error::io("stat", f.path(), e))?
                .len();
            out.insert(format!("{name}:{}", f.file_name().to_string_lossy()), len);
        }
    }
    Ok(out)
}

fn disk_bytes(dir: &Path) -> Result<u64> {
    Ok(blob_files(dir)?.values().sum())
}

/// The working copy of a cached layout, kept between runs (see [`fresh_copy`]).
fn work_dir(work: &Path, layout: &Path) -> PathBuf {
    work.join(layout.file_name().unwrap_or_default())
}

/// Makes `dst` a fresh copy of the layout in `src`: the same `oci-layout`, `index.json` and blob
/// files (copied, never linked), and no index. A `dst` left by an earlier run is brought back
/// rather than copied anew: blobs it lacks (or holds with another size) are copied, blobs `src`
/// does not have are removed, and `.ocistore/` goes. On this file system creating and
/// removing small files dominates a run, so this keeps a 100k-blob run to the files the last
/// collection removed. Then it syncs, so that write-back does not land in what is timed next.
fn fresh_copy(src: &Path, dst: &Path) -> Result<()> {
    let private = dst.join(".ocistore");
    if private.exists() {
        remove_dir(&private)?;
    }
    let sub = dst.join("blobs/sha256");
    fs::create_dir_all(&sub).map_err(|e| Error::io("create", &sub, e))?;
    for name in ["oci-layout", "index.json"] {
        fs::copy(src.join(name), dst.join(name))
            .map_err(|e| Error::io("copy", src.join(name), e))?;
    }
    let want = blob_files(src)?;
    let have = blob_files(dst)?;
    let extra: Vec<&String> = have.keys().filter(|d| !want.contains_key(*d)).collect();
    let missing: Vec<&String> = want
        .iter()
        .filter(|(d, size)| have.get(*d) != Some(size))
        .map(|(d, _)| d)
        .collect();
    let path = |root: &Path, d: &str| root.join("blobs").join(d.replacen(':', "/", 1));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(8)
        .build()
        .map_err(|e| fail("start copy threads for", dst, e.to_string()))?;
    pool.install(|| {
        extra.par_iter().try_for_each(|d| {
            fs::remove_file(path(dst, d)).map_err(|e| Error::io("remove", path(dst, d), e))
        })?;
        missing.par_iter().try_for_each(|d| {
            fs::copy(path(src, d), path(dst, d))
                .map(|_| ())
                .map_err(|e| Error::io("copy", path(src, d), e))
        })
    })?;
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    Ok(())
}

/// Runs `cmd` to completion with stdout captured; returns stdout and the child's peak resident
/// memory in KiB (from `wait4`). Fails if the child fails.
fn run_child(mut cmd: Command) -> Result<(Vec<u8>, u64)> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("run", &what, e))?;
    let mut stdout = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut stdout)
            .map_err(|e| Error::io("read output of", &what, e))?;
    }
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped (std's `Child` is never waited on here), and
    // both pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        return Err(Error::io("wait for", &what, io::Error::last_os_error()));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(fail(
            "run",
            Path::new(&what),
            format!("failed (wait status {status})"),
        ));
    }
    Ok((stdout, usage.ru_maxrss.max(0) as u64))
}

fn child_report(exe: &Path, args: &[&str], dir: &Path) -> Result<(ChildReport, u64)> {
    let mut cmd = Command::new(exe);
    cmd.args(["bench", args[0]]).arg(dir).args(&args[1..]);
    let (stdout, rss) = run_child(cmd)?;
    let r = serde_json::from_slice(&stdout)
        .map_err(|e| fail("parse", dir, format!("child output: {e}")))?;
    Ok((r, rss))
}

fn ocistore_row(
    opts: &GcBenchOptions,
    layout: &Path,
    work: &Path,
    info: &SizeInfo,
    truth: &Truth,
    s: Strategy,
    report: &mut GcBenchReport,
) -> Result<GcRow> {
    let name = strategy_name(s);
    let mut row = new_row(info, name);
    for run in 1..=opts.runs.max(1) {
        let dir = work_dir(work, layout);
        fresh_copy(layout, &dir)?;
        let before = blob_files(&dir)?;
        let (adopt, adopt_rss) = child_report(&opts.exe, &["adopt-child"], &dir)?;
        let (gc, rss) = child_report(&opts.exe, &["collect-child", "--strategy", name], &dir)?;
        let after = blob_files(&dir)?;
        let freed: u64 = before.values().sum::<u64>() - after.values().sum::<u64>();
        let removed = (before.len() - after.len()) as u64;
        if let Some(diff) = truth.check(&dir)? {
            report
                .mismatches
                .push(format!("{name} at {} blobs, run {run}: {diff}", info.blobs));
            row.matches_truth = false;
        }
        if gc.removed_bytes != freed || gc.removed_blobs != removed {
            report.mismatches.push(format!(
                "{name} at {} blobs, run {run}: reported {} blobs ({} bytes) removed, the disk \
                 lost {removed} ({freed} bytes)",
                info.blobs, gc.removed_blobs, gc.removed_bytes
            ));
        }
        note(format!(
            "  {name} run {run}: adopt {:.0} ms, gc {:.1} ms, {removed} blobs ({freed} bytes), \
             peak {} MiB",
            adopt.open_ms,
            gc.gc_ms,
            rss / 1024
        ));
        row.adopt_ms.push(adopt.open_ms);
        row.gc_ms.push(gc.gc_ms);
        row.peak_rss_kib = row.peak_rss_kib.max(rss);
        row.adopt_peak_rss_kib = row.adopt_peak_rss_kib.max(adopt_rss);
        row.bytes_freed = freed;
        row.blobs_removed = removed;
    }
    row.median_adopt_ms = median(&row.adopt_ms);
    row.median_gc_ms = median(&row.gc_ms);
    Ok(row)
}

fn new_row(info: &SizeInfo, name: &str) -> GcRow {
    GcRow {
        target: info.target,
        blobs: info.blobs,
        strategy: name.to_string(),
        adopt_ms: Vec::new(),
        gc_ms: Vec::new(),
        median_adopt_ms: 0.0,
        median_gc_ms: 0.0,
        peak_rss_kib: 0,
        adopt_peak_rss_kib: 0,
        bytes_freed: 0,
        blobs_removed: 0,
        matches_truth: true,
    }
}

/// `umoci gc --layout` on fresh copies: a peer with other semantics, so its result is not
/// checked against the truth (only recorded).
fn umoci_row(
    opts: &GcBenchOptions,
    layout: &Path,
    work: &Path,
    info: &SizeInfo,
    truth: &Truth,
) -> Result<GcRow> {
    let mut row = new_row(info, "umoci");
    for run in 1..=opts.runs.max(1) {
        let dir = work_dir(work, layout);
        fresh_copy(layout, &dir)?;
        let before = blob_files(&dir)?;
        let mut cmd = Command::new("umoci");
        cmd.args(["gc", "--layout"]).arg(&dir);
        let t = Instant::now();
        let (_, rss) = run_child(cmd)?;
        let took = ms(t.elapsed());
        let after = blob_files(&dir)?;
        row.gc_ms.push(took);
        row.peak_rss_kib = row.peak_rss_kib.max(rss);
        row.bytes_freed = before.values().sum::<u64>() - after.values().sum::<u64>();
        row.blobs_removed = (before.len() - after.len()) as u64;
        row.matches_truth = truth.check(&dir)?.is_none();
        note(format!(
            "  umoci run {run}: gc {took:.1} ms, {} blobs ({} bytes), peak {} MiB",
            row.blobs_removed,
            row.bytes_freed,
            rss / 1024
        ));
    }
    row.median_gc_ms = median(&row.gc_ms);
    Ok(row)
}

fn quiet() -> Options {
    Options {
        progress: false,
        ..Options::default()
    }
}

fn gc_options(strategy: Strategy) -> GcOptions {
    GcOptions {
        strategy,
        grace: Duration::ZERO,
        ..GcOptions::default()
    }
}

/// The child that adopts the layout in `dir` (`Store::init`), timed.
pub fn adopt_child(dir: &Path) -> Result<ChildReport> {
    let t = Instant::now();
    let store = Store::init(dir, &quiet())?;
    let open_ms = ms(t.elapsed());
    Ok(ChildReport {
        open_ms,
        indexed_blobs: store.open_report().indexed_blobs,
        ..ChildReport::default()
    })
}

/// The child that opens the store in `dir` and collects it with `strategy` (grace 0), each
/// timed.
pub fn collect_child(dir: &Path, strategy: Strategy) -> Result<ChildReport> {
    let t = Instant::now();
    let store = Store::open(dir, &quiet())?;
    let open_ms = ms(t.elapsed());
    let t = Instant::now();
    let r = store.gc(&gc_options(strategy))?;
    let gc_ms = ms(t.elapsed());
    Ok(ChildReport {
        open_ms,
        indexed_blobs: store.open_report().indexed_blobs,
        gc_ms,
        removed_blobs: r.removed_blobs,
        removed_bytes: r.removed_bytes,
        max_pause_ms: r.max_pause_ms,
    })
}

/// A small deterministic generator (xorshift64*), so that every strategy sees the same
/// operations.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn descriptor(media_type: &str, d: &Digest, size: u64) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": d.as_str(), "size": size})
}

/// Layers of a pushed image.
const CHURN_LAYERS: usize = 4;
/// Distinct shared layers pushes draw from.
const CHURN_SHARED_POOL: usize = 64;
/// Tags that retags move between images.
const MOVING_TAGS: usize = 8;
/// Probe writes with no collection running, before each collection.
const IDLE_PROBES: usize = 4;

/// The churn state every strategy shares: the model of the tags.
struct Churn<'s> {
    store: &'s Store,
    rng: Stream,
    /// Each image's own tag, to the image.
    own: BTreeMap<String, Digest>,
    /// Moving tags (`latest<n>`), to the image.
    moving: BTreeMap<String, Digest>,
    pushed: usize,
    result: ChurnResult,
}

impl Churn<'_> {
    fn put(batch: &mut crate::store::Batch<'_>, bytes: &[u8], mt: Option<&str>) -> Result<Digest> {
        let opts = PutOptions {
            media_type: mt.map(str::to_string),
            ..PutOptions::default()
        };
        Ok(batch.put(&mut &bytes[..], &opts)?.digest)
    }

    /// Pushes an image: layers (half from a shared pool), a config, the manifest and its tag;
    /// one image in three also gets a signature referrer.
    fn push(&mut self) -> Result<()> {
        let i = self.pushed;
        self.pushed += 1;
        let mut batch = self.store.batch()?;
        let mut layers = Vec::new();
        for l in 0..CHURN_LAYERS {
            let label = if self.rng.below(2) == 0 {
                format!("churn shared layer {}", self.rng.below(CHURN_SHARED_POOL))
            } else {
                format!("churn layer {l} of image {i}")
            };
            let len = 1024 + (blake3::hash(label.as_bytes()).as_bytes()[0] as usize) * 64;
            // Deterministic bytes: the BLAKE3 extendable output of the label.
            let mut bytes = vec![0u8; len];
            let mut xof = blake3::Hasher::new()
                .update(label.as_bytes())
                .finalize_xof();
            xof.fill(&mut bytes);
            let d = Self::put(&mut batch, &bytes, None)?;
            layers.push(descriptor(
                "application/vnd.oci.image.layer.v1.tar",
                &d,
                len as u64,
            ));
        }
        let config = format!(r#"{{"architecture":"amd64","os":"linux","churn":{i}}}"#);
        let config_d = Self::put(&mut batch, config.as_bytes(), None)?;
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config_d, config.len() as u64),
            "layers": layers});
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Index(e.to_string()))?;
        let m = Self::put(&mut batch, &bytes, Some(OCI_MANIFEST))?;
        if self.rng.below(3) == 0 {
            let empty = Self::put(&mut batch, b"{}", None)?;
            let payload = format!("signature of churn image {i}");
            let p = Self::put(&mut batch, payload.as_bytes(), None)?;
            let sig = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                "config": descriptor(OCI_EMPTY, &empty, 2),
                "layers": [descriptor("application/octet-stream", &p, payload.len() as u64)],
                "subject": descriptor(OCI_MANIFEST, &m, bytes.len() as u64)});
            let sig = serde_json::to_vec(&sig).map_err(|e| Error::Index(e.to_string()))?;
            Self::put(&mut batch, &sig, Some(OCI_MANIFEST))?;
        }
        let tag = format!("churn{i}");
        batch.tag(m.as_str(), &tag)?;
        batch.commit()?;
        self.own.insert(tag, m);
        self.result.pushes += 1;
        Ok(())
    }

    fn pick_own(&mut self) -> Option<(String, Digest)> {
        let n = self.rng.below(self.own.len());
        self.own.iter().nth(n).map(|(t, d)| (t.clone(), d.clone()))
    }

    /// Points a moving tag at an image that has its own tag.
    fn retag(&mut self) -> Result<()> {
        let tag = format!("latest{}", self.rng.below(MOVING_TAGS));
        if let Some((_, d)) = self.pick_own() {
            self.store.tag(d.as_str(), &tag)?;
            self.moving.insert(tag, d);
            self.result.retags += 1;
        }
        Ok(())
    }

    /// Removes an image's own tag, or (one time in two) deletes the image by digest, with all
    /// its tags and hard referrers.
    fn delete(&mut self) -> Result<()> {
        let by_digest = self.rng.below(2) == 0;
        let Some((tag, d)) = self.pick_own() else {
            return Ok(());
        };
        if by_digest {
            self.store.delete(d.as_str(), &DeleteOptions::default())?;
            self.own.retain(|_, x| *x != d);
            self.moving.retain(|_, x| *x != d);
        } else {
            self.store.untag(&tag)?;
            self.own.remove(&tag);
        }
        self.result.deletes += 1;
        Ok(())
    }
}

/// Times pin and unpin of `probe`, pausing 2 ms between pairs, until `stop` is set (at least
/// one pair).
fn probe_writes(store: &Store, probe: &Digest, stop: &AtomicBool) -> Result<Vec<f64>> {
    let mut waits = Vec::new();
    loop {
        for pin in [true, false] {
            let t = Instant::now();
            if pin {
                store.pin(probe)?;
            } else {
                store.unpin(probe)?;
            }
            waits.push(ms(t.elapsed()));
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(waits);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The churn child: adopts the layout in `dir`, then applies `ops` seeded operations (45%
/// pushes, 20% retags, 35% deletes) with a collection by `strategy` every `gc_every` of them.
pub fn churn_child(
    dir: &Path,
    strategy: Strategy,
    ops: usize,
    gc_every: usize,
    seed: u64,
) -> Result<ChurnResult> {
    let store = Store::init(dir, &quiet())?;
    let start_blobs = store.stats()?.blobs;
    let own: BTreeMap<String, Digest> = store
        .list()?
        .into_iter()
        .filter_map(|e| Some((e.tag?, e.digest)))
        .filter(|(t, _)| t.starts_with("img"))
        .collect();
    // The probe: a tagged manifest nothing deletes, pinned and unpinned while collections run.
    let probe = {
        let mut batch = store.batch()?;
        let empty = Churn::put(&mut batch, b"{}", None)?;
        let m = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_EMPTY, &empty, 2), "layers": []});
        let m = serde_json::to_vec(&m).map_err(|e| Error::Index(e.to_string()))?;
        let d = Churn::put(&mut batch, &m, Some(OCI_MANIFEST))?;
        batch.tag(d.as_str(), "bench-probe")?;
        batch.commit()?;
        d
    };
    let mut c = Churn {
        store: &store,
        rng: Stream(seed | 1),
        own,
        moving: BTreeMap::new(),
        pushed: 0,
        result: ChurnResult {
            strategy: strategy_name(strategy).to_string(),
            start_blobs,
            ops,
            ..ChurnResult::default()
        },
    };
    let gc_every = gc_every.max(1);
    let (mut pauses, mut gc_times, mut waits, mut idle) = (vec![], vec![], vec![], vec![]);
    let started = Instant::now();
    for op in 1..=ops {
        match c.rng.below(100) {
            0..45 => c.push()?,
            45..65 => c.retag()?,
            _ => c.delete()?,
        }
        if op % gc_every != 0 && op != ops {
            continue;
        }
        let before = disk_bytes(dir)?;
        for _ in 0..IDLE_PROBES {
            let stop = AtomicBool::new(true);
            // With `stop` already set, one pin and one unpin are timed.
            idle.extend(probe_writes(&store, &probe, &stop)?);
        }
        let stop = AtomicBool::new(false);
        let (r, took, w): (Result<GcReport>, f64, Result<Vec<f64>>) = std::thread::scope(|s| {
            let prober = s.spawn(|| probe_writes(&store, &probe, &stop));
            let t = Instant::now();
            let r = store.gc(&gc_options(strategy));
            let took = ms(t.elapsed());
            stop.store(true, Ordering::Relaxed);
            let w = prober
                .join()
                .unwrap_or_else(|_| Err(Error::Index("the probe thread failed".into())));
            (r, took, w)
        });
        let r = r?;
        waits.extend(w?);
        gc_times.push(took);
        pauses.push(r.max_pause_ms);
        c.result.removed_per_gc.push(r.removed_blobs);
        c.result
            .amplification
            .push(before as f64 / r.kept_bytes.max(1) as f64);
    }
    let mut result = c.result;
    result.total_ms = ms(started.elapsed());
    result.collections = gc_times.len();
    let amp = &result.amplification;
    result.amplification_mean = amp.iter().sum::<f64>() / amp.len().max(1) as f64;
    result.amplification_max = amp.iter().copied().fold(0.0, f64::max);
    result.pause = Spread::of(&pauses);
    result.gc_time = Spread::of(&gc_times);
    result.write_wait = Spread::of(&waits);
    result.write_idle = Spread::of(&idle);
    result.gc_total_ms = gc_times.iter().sum();
    Ok(result)
}

/// The machine, as the report states it.
fn machine(dir: &Path) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let fs_line = Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE,OPTIONS", "-T"])
        .arg(dir)
        .output()
        .ok()
        .map(|o| {
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let mut f = out.split_whitespace();
            match (f.next(), f.next()) {
                (Some(t), Some(o)) => format!(", {t} mounted with {o}"),
                _ => String::new(),
            }
        })
        .unwrap_or_default();
    format!("{cores} vCPU {cpu}, {mem_gib:.0} GiB{fs_line}")
}

fn human_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn spread_ms(s: &Spread) -> String {
    format!(
        "{} / {} / {}",
        human_ms(s.p50),
        human_ms(s.p95),
        human_ms(s.max)
    )
}

/// The report as markdown: the strategies per size, then the churn workload.
pub fn render_markdown(r: &GcBenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# GC strategies\n\n`{}`\n\nMachine: {}.\n",
        r.command, r.machine
    );
    let _ = writeln!(
        s,
        "Layouts: `ocistore synth --layers {SYNTH_LAYERS} --shared {SYNTH_SHARED} --referrers \
         {SYNTH_REFERRERS} --untag {SYNTH_UNTAG} --seed {SYNTH_SEED}` with `--images` chosen \
         for the size. Each run: a fresh copy of the files, adopted in one process (`adopt`), \
         collected in another with `--grace 0` (`gc`: `Store::gc` alone; peak RSS of that \
         process). Times are medians of {} run(s).\n",
        r.runs
    );
    let _ = writeln!(
        s,
        "| blobs | strategy | adopt | gc (median) | peak RSS | bytes freed | blobs removed | \
         exact live set |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for row in &r.rows {
        let umoci = row.strategy == "umoci";
        let _ = writeln!(
            s,
            "| {} | {}{} | {} | {} | {} | {} | {} | {} |",
            row.blobs,
            row.strategy,
            if umoci { " ¹" } else { "" },
            if umoci {
                "–".into()
            } else {
                human_ms(row.median_adopt_ms)
            },
            human_ms(row.median_gc_ms),
            mib(row.peak_rss_kib),
            row.bytes_freed,
            row.blobs_removed,
            match (umoci, row.matches_truth) {
                (_, true) => "yes",
                (true, false) => "no (other semantics)",
                (false, false) => "**NO**",
            }
        );
    }
    if r.rows.iter().any(|x| x.strategy == "umoci") {
        let _ = writeln!(
            s,
            "\n¹ `umoci gc --layout`, whole process, on a fresh copy of the same layout. Its \
             semantics differ: it keeps only what index.json's descriptors reach, so it also \
             removes referrers linked to their subject only by `subject`, and it does not know \
             cosign or fallback tags."
        );
    }
    if let (Some((ops, every, target)), false) = (r.churn_setup, r.churn.is_empty()) {
        let start = r.churn.first().map_or(0, |c| c.start_blobs);
        let _ = writeln!(
            s,
            "\n## Churn\n\nFrom the {target}-blob layout ({start} blobs), {ops} seeded \
             operations (45% pushes of 4-layer images, half the layers from a shared pool of \
             {CHURN_SHARED_POOL}, one in three signed; 20% retags of {MOVING_TAGS} moving tags; \
             35% deletes, half untags, half deletes by digest), a collection every {every}. \
             Space amplification: bytes in `blobs/` before a collection over the bytes it keeps. \
             Pause: the longest sweep transaction of each collection. Write wait: a probe \
             thread's pin/unpin transactions while a collection runs (idle: the same with none \
             running). Spreads are p50 / p95 / max.\n"
        );
        let _ = writeln!(
            s,
            "| strategy | collections | space amp. mean / max | pause p50 / p95 / max | write \
             wait p50 / p95 / max | write idle p50 | gc time p50 / p95 / max | gc total | total \
             | peak RSS |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for c in &r.churn {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} / {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                c.strategy,
                c.collections,
                c.amplification_mean,
                c.amplification_max,
                spread_ms(&c.pause),
                spread_ms(&c.write_wait),
                human_ms(c.write_idle.p50),
                spread_ms(&c.gc_time),
                human_ms(c.gc_total_ms),
                human_ms(c.total_ms),
                mib(c.peak_rss_kib)
            );
        }
    }
    if r.mismatches.is_empty() {
        let _ = writeln!(
            s,
            "\nEvery collection left exactly the live set of synth-truth.json{}.",
            if r.churn.is_empty() {
                ""
            } else {
                "; under churn, every strategy removed the same number of blobs at each collection"
            }
        );
    } else {
        let _ = writeln!(s, "\n**MISMATCHES**\n");
        for m in &r.mismatches {
            let _ = writeln!(s, "- {m}");
        }
    }
    s
}

const COLORS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

/// The log10 range of the axis that shows every positive value, with some margin.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values.filter(|v| *v > 0.0) {
        lo = lo.min(v.log10());
        hi = hi.max(v.log10());
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.15);
    (lo - pad, hi + pad)
}

/// Ticks of a log axis over `[lo, hi]` (log10): 1, 2 and 5 times each power of ten, the powers
/// of ten marked as major.
fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, bool)> {
    let mut out = Vec::new();
    for e in (lo.floor() as i32)..=(hi.ceil() as i32) {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if (lo..=hi).contains(&v.log10()) {
                out.push((v, m == 1.0));
            }
        }
    }
    out
}

/// `v` with at most three decimals, without trailing zeros.
fn short(v: f64) -> String {
    format!("{}", (v * 1000.0).round() / 1000.0)
}

fn tick_count(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{}M", short(v / 1e6)),
        v if v >= 1e3 => format!("{}k", short(v / 1e3)),
        v => short(v),
    }
}

fn tick_time(ms: f64) -> String {
    match ms {
        v if v >= 1000.0 => format!("{} s", short(v / 1000.0)),
        v if v >= 1.0 => format!("{} ms", short(v)),
        v => format!("{} µs", short(v * 1000.0)),
    }
}

/// The chart: median collection time (y, log scale) against blobs in the store (x, log scale),
/// one line per strategy.
pub fn render_svg(r: &GcBenchReport) -> String {
    let (w, h) = (800.0, 480.0);
    let (left, right, top, bottom) = (80.0, 230.0, 50.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let (x0, x1) = log_range(r.rows.iter().map(|x| x.blobs as f64));
    let (y0, y1) = log_range(r.rows.iter().map(|x| x.median_gc_ms));
    let xpos = |v: f64| left + (v.log10() - x0) / (x1 - x0) * pw;
    let ypos = |v: f64| top + ph - (v.max(1e-9).log10() - y0) / (y1 - y0) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="#ffffff"/>
<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">ocistore gc: collection time against store size</text>"##,
        left + pw / 2.0
    );
    // Grid and tick labels: powers of ten dark, 2 and 5 times them light.
    let shade = |major: bool| {
        if major {
            ("#cccccc", "#000000")
        } else {
            ("#eeeeee", "#777777")
        }
    };
    for (v, major) in log_ticks(x0, x1) {
        let (x, (line, text)) = (xpos(v), shade(major));
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="{line}"/>
<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{text}">{}</text>"#,
            top + ph,
            top + ph + 18.0,
            tick_count(v)
        );
    }
    for (v, major) in log_ticks(y0, y1) {
        let (y, (line, text)) = (ypos(v), shade(major));
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{line}"/>
<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{text}">{}</text>"#,
            left + pw,
            left - 8.0,
            y + 4.0,
            tick_time(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#000000"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">blobs in the store (log scale)</text>
<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">gc wall time, median (log scale)</text>"##,
        left + pw / 2.0,
        h - 16.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    let mut series: Vec<&str> = Vec::new();
    for row in &r.rows {
        if !series.contains(&row.strategy.as_str()) {
            series.push(&row.strategy);
        }
    }
    for (i, name) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts: Vec<(f64, f64)> = r
            .rows
            .iter()
            .filter(|x| x.strategy == *name)
            .map(|x| (xpos(x.blobs as f64), ypos(x.median_gc_ms)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let points: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let dash = if *name == "umoci" {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline data-series="{name}" points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            points.join(" ")
        );
        for (x, y) in &pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"/>"#
            );
        }
        let ly = top + 14.0 + i as f64 * 22.0;
        let lx = left + pw + 16.0;
        let label = if *name == "umoci" {
            "umoci gc (other rules)".to_string()
        } else {
            format!("ocistore {name}")
        };
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/>
<circle cx="{:.1}" cy="{ly:.1}" r="3.5" fill="{color}"/>
<text x="{:.1}" y="{:.1}">{label}</text>"#,
            lx + 24.0,
            lx + 12.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(
            parse_sizes("1k,10k,100k,200,1.5m"),
            Ok(vec![1000, 10_000, 100_000, 200, 1_500_000])
        );
        assert!(parse_size("ten").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn strategies_parse() {
        assert_eq!(parse_strategies("all").unwrap().len(), 3);
        assert_eq!(
            parse_strategies("scan,refcount"),
            Ok(vec![Strategy::Scan, Strategy::Refcount])
        );
        assert!(parse_strategies("mark").is_err());
    }

    #[test]
    fn spread_uses_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Spread::of(&v);
        assert_eq!((s.p50, s.p95, s.max, s.count), (50.0, 95.0, 100.0, 100));
        assert_eq!(Spread::of(&[]).count, 0);
    }
}
