//! The `ocistore` command: parses arguments, calls the library, renders the result.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ocistore::verify::VerifyOptions;
use ocistore::{Error, Options, PutOptions, ReferrersQuery, Store};
use serde::Serialize;

/// mimalloc instead of glibc's allocator: about 12% of a large collection's sweeping thread
/// was in `malloc` and `free`, mostly under the index's page reads and writes. Four
/// interleaved collections of the 20,000-image layout (README, "Performance") used 1.91–2.10 s
/// of user CPU instead of 2.13–2.27 s, and took 2.92–3.19 s instead of 2.96–3.37 s, for a
/// peak RSS of 228 MB instead of 192 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An OCI image-layout store with a transactional index and reference-aware deletes.
#[derive(Parser)]
#[command(name = "ocistore", version, about)]
struct Cli {
    /// The store (an OCI image layout directory).
    #[arg(long, global = true, env = "OCISTORE_DIR", default_value = ".")]
    store: PathBuf,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for another writer to release the store.
    #[arg(long, global = true, default_value_t = 10.0)]
    lock_timeout: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a store in an empty directory, or adopt the OCI layout already there.
    Init,
    /// Copy images from another layout, with everything they reach and their referrers.
    Import {
        /// The source layout.
        src: PathBuf,
        /// Import only these tags (all entries by default).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Store a blob or manifest from a file (or `-` for stdin); prints its digest.
    Put {
        /// The file, or `-`.
        file: PathBuf,
        /// Its media type (a manifest type makes it parsed strictly as that manifest).
        #[arg(long)]
        media_type: Option<String>,
        /// Tag the manifest.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Point a tag at the manifest REF names (a tag or a digest).
    Tag {
        /// A tag or digest.
        reference: String,
        /// The tag to set.
        new_tag: String,
    },
    /// Remove a tag.
    Untag {
        /// The tag.
        tag: String,
    },
    /// List tags and index.json entries.
    Ls,
    /// Write the raw bytes of a blob or manifest to stdout.
    Cat {
        /// A tag or digest.
        reference: String,
    },
    /// Print the referrers of REF as an OCI image index.
    Referrers {
        /// A tag or digest.
        reference: String,
        /// Keep only this artifact type.
        #[arg(long)]
        artifact_type: Option<String>,
        /// Include referrers of referrers.
        #[arg(long)]
        transitive: bool,
    },
    /// Counts of blobs, manifests, tags and edges.
    Stats,
    /// Recreate the index from the layout alone.
    Rebuild,
    /// Delete a tag (only the tag), a manifest (with its tags, entries and hard referrers), or
    /// an unreferenced blob.
    Delete {
        /// A tag or digest.
        reference: String,
        /// Say what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete a manifest even while a live index lists it.
        #[arg(long)]
        force: bool,
    },
    /// Collect garbage: unreachable blobs, orphan files and stale temporary files.
    Gc {
        /// Say what would go, and why; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How garbage is found: mark-sweep, refcount, scan, or auto (refcount while few digests
        /// are candidates, at most one per 128 blobs; mark-sweep otherwise).
        #[arg(long, default_value = "auto")]
        strategy: ocistore::gc::Strategy,
        #[command(flatten)]
        liveness: LivenessArgs,
        /// Walk blobs/ for orphan files even if no walk is due.
        #[arg(long)]
        scan_orphans: bool,
        /// The most blobs one sweep transaction removes.
        #[arg(long, default_value_t = ocistore::gc::GcOptions::default().chunk)]
        chunk: usize,
        /// The pause, in milliseconds, each sweep transaction aims at (smaller: shorter waits
        /// for writers, more commits).
        #[arg(long, default_value_t = ocistore::gc::GcOptions::default().chunk_time.as_millis() as u64)]
        chunk_ms: u64,
    },
    /// Rehash every blob, check every edge, and check that the index, the layout and
    /// index.json agree. Exits with 1 when a problem is left.
    Verify {
        /// Repair what can be repaired; corrupt content goes to .ocistore/quarantine/, nothing
        /// is deleted.
        #[arg(long)]
        repair: bool,
    },
    /// Print the path from a root that keeps DIGEST, or why it would go.
    Explain {
        /// A tag or digest.
        reference: String,
        #[command(flatten)]
        liveness: LivenessArgs,
    },
    /// Pin a manifest or blob: a root until unpinned.
    Pin {
        /// A tag or digest.
        reference: String,
    },
    /// Remove a pin.
    Unpin {
        /// A tag or digest.
        reference: String,
    },
    /// Write a synthetic OCI layout (for benchmarks), with the expected live set in
    /// OUT/synth-truth.json.
    Synth {
        /// The directory to create.
        out: PathBuf,
        /// Number of images.
        #[arg(long, default_value_t = 100)]
        images: usize,
        /// Layers per image.
        #[arg(long, default_value_t = 3)]
        layers: usize,
        /// Fraction of layers drawn from a shared pool.
        #[arg(long, default_value_t = 0.3)]
        shared: f64,
        /// Referrer chains per image, on average.
        #[arg(long, default_value_t = 1.0)]
        referrers: f64,
        /// Fraction of tags removed at the end.
        #[arg(long, default_value_t = 0.0)]
        untag: f64,
        /// Orphan blobs to add.
        #[arg(long, default_value_t = 0)]
        orphans: usize,
        /// Write real tar layers.
        #[arg(long)]
        real_tar: bool,
        /// The seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Build a sample store and print its graph.
    Demo {
        /// Where to build it (a new temporary directory by default).
        dir: Option<PathBuf>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Compare the collection strategies (and umoci, when installed) on synthetic layouts of
    /// several sizes, and optionally under churn; writes gc.md, gc.json and gc.svg into OUT.
    Gc {
        /// Store sizes in blobs, comma-separated (k and m suffixes: 1k,10k,100k).
        #[arg(long, default_value = "1k,10k", value_delimiter = ',',
              value_parser = ocistore::bench::parse_size)]
        sizes: Vec<u64>,
        /// `all`, or a comma-separated list of mark-sweep, refcount, scan.
        #[arg(long, default_value = "all")]
        strategies: ocistore::bench::StrategyList,
        /// Runs per strategy and size (the report gives the median).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also run a churn workload of this many operations, from the first size.
        #[arg(long)]
        churn: Option<usize>,
        /// During churn, collect every this many operations.
        #[arg(long, default_value_t = 200)]
        gc_every: usize,
        /// Where the cached layouts, the copies and the results go.
        #[arg(long, default_value = "target/bench-gc")]
        out: PathBuf,
    },
    /// Adopt the layout in DIR, timed (a child process of `bench gc`).
    #[command(hide = true)]
    AdoptChild { dir: PathBuf },
    /// Open the store in DIR and collect it, timed (a child process of `bench gc`).
    #[command(hide = true)]
    CollectChild {
        dir: PathBuf,
        #[arg(long)]
        strategy: ocistore::gc::Strategy,
    },
    /// The churn workload on the layout in DIR (a child process of `bench gc`).
    #[command(hide = true)]
    ChurnChild {
        dir: PathBuf,
        #[arg(long)]
        strategy: ocistore::gc::Strategy,
        #[arg(long)]
        ops: usize,
        #[arg(long)]
        gc_every: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

/// What decides liveness, shared by `gc` and `explain`.
#[derive(clap::Args)]
struct LivenessArgs {
    /// How long a referrer whose subject is absent is kept, from when the store recorded it
    /// (for example 0, 90s, 30m, 24h, 7d).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    grace: Duration,
    /// Drop untagged index.json entries that are not referrers.
    #[arg(long)]
    delete_untagged: bool,
    /// Keep referrers of this artifact type while they have a root of their own.
    #[arg(long = "soft", value_name = "ARTIFACT_TYPE")]
    soft: Vec<String>,
    /// Make referrers of this artifact type die with their subject.
    #[arg(long = "hard", value_name = "ARTIFACT_TYPE")]
    hard: Vec<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 0, 90s, 30m, 24h, 7d)"))?;
    let secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("invalid duration unit in {s:?} (s, m, h or d)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

impl LivenessArgs {
    fn options(&self, store: &Store) -> ocistore::Result<ocistore::gc::GcOptions> {
        let mut policy = ocistore::gc::Policy::load(&store.root().join(".ocistore"))?;
        for t in &self.soft {
            policy
                .artifact_types
                .insert(t.clone(), ocistore::gc::Mode::Soft);
        }
        for t in &self.hard {
            policy
                .artifact_types
                .insert(t.clone(), ocistore::gc::Mode::Hard);
        }
        Ok(ocistore::gc::GcOptions {
            grace: self.grace,
            delete_untagged: self.delete_untagged,
            policy: Some(policy),
            ..Default::default()
        })
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {info}");
    }));
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
}

fn options(cli: &Cli) -> Options {
    Options {
        lock_timeout: Duration::from_secs_f64(cli.lock_timeout.max(0.0)),
        progress: true,
        ..Options::default()
    }
}

fn open_for_writing(cli: &Cli) -> ocistore::Result<Store> {
    let store = Store::open(&cli.store, &options(cli))?;
    warn_report(store.open_report());
    Ok(store)
}

/// Opens for a command that only reads: as a writer when the store is free (which lets it
/// take in changes other tools made), read-only when another process is writing.
fn open_for_reading(cli: &Cli) -> ocistore::Result<Store> {
    let opts = Options {
        lock_timeout: Duration::ZERO,
        ..options(cli)
    };
    let store = match Store::open(&cli.store, &opts) {
        Err(Error::Locked { .. }) => Store::open_read_only(&cli.store, &opts),
        other => other,
    }?;
    warn_report(store.open_report());
    Ok(store)
}

fn print_json(v: &impl Serialize) -> ocistore::Result<()> {
    // Buffered: stdout alone is line-buffered, a write per line of a report that may list
    // tens of thousands of removals.
    let mut out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, v)
        .map_err(|e| Error::io("write", "stdout", e.into()))?;
    writeln!(out).map_err(|e| Error::io("write", "stdout", e))?;
    out.flush().map_err(|e| Error::io("write", "stdout", e))
}

fn say(line: impl AsRef<str>) -> ocistore::Result<()> {
    writeln!(io::stdout(), "{}", line.as_ref()).map_err(|e| Error::io("write", "stdout", e))
}

fn warn_report(report: &ocistore::OpenReport) {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if !report.removed_outside.is_empty() {
        eprintln!(
            "warning: {} blobs the store held were removed by another tool: {}",
            report.removed_outside.len(),
            some_of(&report.removed_outside)
        );
    }
    if report.recovered {
        eprintln!(
            "note: the last writer did not close the store; recovered ({} blobs indexed)",
            report.indexed_blobs
        );
    }
    if let Some(r) = &report.reconciled
        && !r.conflicts.is_empty()
    {
        eprintln!(
            "warning: index.json and the store both changed {} tags ({}); the store's change was kept",
            r.conflicts.len(),
            some_of(&r.conflicts)
        );
    }
}

/// The first few of `items`, and how many more: a warning stays one readable line however
/// many there are (a layout emptied by hand would otherwise list every digest it held).
fn some_of(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let shown = items[..items.len().min(SHOWN)].join(", ");
    match items.len().saturating_sub(SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

fn run(cli: &Cli) -> ocistore::Result<()> {
    match &cli.command {
        Command::Init => {
            let store = Store::init(&cli.store, &options(cli))?;
            warn_report(store.open_report());
            if cli.json {
                return print_json(store.open_report());
            }
            let r = store.open_report();
            say(format!(
                "store ready at {} ({} blobs indexed)",
                store.root().display(),
                r.indexed_blobs
            ))
        }
        Command::Import { src, tags } => {
            let store = open_for_writing(cli)?;
            let r = store.import(src, tags)?;
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            if cli.json {
                return print_json(&r);
            }
            say(format!(
                "imported {} blobs ({} bytes), {} already present, {} missing in source; tags: {}",
                r.copied_blobs,
                r.copied_bytes,
                r.present_blobs,
                r.missing_blobs.len(),
                r.tags.join(", ")
            ))
        }
        Command::Put {
            file,
            media_type,
            tags,
        } => {
            for t in tags {
                ocistore::validate_tag(t)?;
            }
            let mut input: Box<dyn Read> = if file == Path::new("-") {
                Box::new(io::stdin().lock())
            } else {
                let meta = std::fs::metadata(file).map_err(|e| Error::io("open", file, e))?;
                if !meta.is_file() {
                    return Err(Error::io(
                        "put",
                        file,
                        io::Error::other("not a regular file"),
                    ));
                }
                Box::new(std::fs::File::open(file).map_err(|e| Error::io("open", file, e))?)
            };
            let store = open_for_writing(cli)?;
            let opts = PutOptions {
                media_type: media_type.clone(),
                ..PutOptions::default()
            };
            // The content and its tags commit together, or not at all.
            let mut batch = store.batch()?;
            let put = batch.put(&mut input, &opts)?;
            for t in tags {
                batch.tag(put.digest.as_str(), t)?;
            }
            batch.commit()?;
            if cli.json {
                return print_json(&put);
            }
            say(put.digest.as_str())
        }
        Command::Tag { reference, new_tag } => {
            let store = open_for_writing(cli)?;
            let d = store.tag(reference, new_tag)?;
            if cli.json {
                return print_json(&serde_json::json!({"tag": new_tag, "digest": d}));
            }
            say(format!("{new_tag} -> {d}"))
        }
        Command::Untag { tag } => {
            let store = open_for_writing(cli)?;
            let d = store.untag(tag)?;
            if cli.json {
                return print_json(&serde_json::json!({"tag": tag, "digest": d}));
            }
            say(format!("removed tag {tag} (was {d})"))
        }
        Command::Ls => {
            let store = open_for_reading(cli)?;
            let entries = store.list()?;
            if cli.json {
                return print_json(&entries);
            }
            for e in entries {
                say(format!(
                    "{:<30} {} {} {}",
                    e.tag.as_deref().unwrap_or("<untagged>"),
                    e.digest,
                    e.media_type.as_deref().unwrap_or("-"),
                    e.size.map_or("-".into(), |s| s.to_string())
                ))?;
            }
            Ok(())
        }
        Command::Cat { reference } => {
            let store = open_for_reading(cli)?;
            let d = store.resolve(reference)?;
            let mut f = store.open_blob(&d)?;
            let mut out = io::stdout().lock();
            io::copy(&mut f, &mut out)
                .map_err(|e| Error::io("copy to stdout", store.root().join(d.blob_path()), e))?;
            out.flush().map_err(|e| Error::io("write", "stdout", e))
        }
        Command::Referrers {
            reference,
            artifact_type,
            transitive,
        } => {
            let store = open_for_reading(cli)?;
            let d = store.resolve(reference)?;
            let q = ReferrersQuery {
                artifact_type: artifact_type.clone(),
                transitive: *transitive,
            };
            let answer = store.referrers(&d, &q)?;
            if !answer.filters_applied.is_empty() && !cli.json {
                eprintln!("filters applied: {}", answer.filters_applied.join(","));
            }
            print_json(&answer)
        }
        Command::Stats => {
            let store = open_for_reading(cli)?;
            let c = store.stats()?;
            if cli.json {
                return print_json(&c);
            }
            say(format!(
                "blobs {} ({} bytes), manifests {}, tags {}, untagged entries {}, edges {}, referrer edges {}",
                c.blobs, c.bytes, c.manifests, c.tags, c.untagged, c.edges, c.referrer_edges
            ))
        }
        Command::Rebuild => {
            let store = Store::rebuild(&cli.store, &options(cli))?;
            warn_report(store.open_report());
            if cli.json {
                return print_json(store.open_report());
            }
            say(format!(
                "index rebuilt from the layout: {} blobs",
                store.open_report().indexed_blobs
            ))
        }
        Command::Delete {
            reference,
            dry_run,
            force,
        } => {
            let store = open_for_writing(cli)?;
            let r = store.delete(
                reference,
                &ocistore::gc::DeleteOptions {
                    dry_run: *dry_run,
                    force: *force,
                },
            )?;
            if cli.json {
                return print_json(&r);
            }
            let verb = if *dry_run { "would remove" } else { "removed" };
            for t in &r.tags {
                say(format!("{verb} tag {t}"))?;
            }
            for x in &r.removed {
                say(format!(
                    "{verb} {} ({} bytes): {}",
                    x.digest, x.size, x.reason
                ))?;
            }
            Ok(())
        }
        Command::Gc {
            dry_run,
            strategy,
            liveness,
            scan_orphans,
            chunk,
            chunk_ms,
        } => {
            let store = open_for_writing(cli)?;
            let mut opts = liveness.options(&store)?;
            opts.chunk = *chunk;
            opts.chunk_time = Duration::from_millis(*chunk_ms);
            opts.dry_run = *dry_run;
            opts.strategy = *strategy;
            opts.scan_orphans = *scan_orphans;
            let r = store.gc(&opts)?;
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            if cli.json {
                return print_json(&r);
            }
            if *dry_run {
                for x in &r.removed {
                    say(format!(
                        "would remove {} ({} bytes): {}",
                        x.digest, x.size, x.reason
                    ))?;
                }
            }
            say(format!(
                "{} {} blobs ({} bytes), kept {} blobs ({} bytes){}; orphan files {}, temp files {}{}; {:.1} ms",
                if *dry_run { "would remove" } else { "removed" },
                r.removed_blobs,
                r.removed_bytes,
                r.kept_blobs,
                r.kept_bytes,
                if r.kept_by_recheck > 0 {
                    format!(", {} saved by recheck", r.kept_by_recheck)
                } else {
                    String::new()
                },
                r.orphan_files,
                r.temp_files,
                if r.finished_unlinks > 0 {
                    format!(
                        ", unlinks left by an earlier collection {}",
                        r.finished_unlinks
                    )
                } else {
                    String::new()
                },
                r.total_ms
            ))
        }
        Command::Verify { repair } => {
            let store = if *repair {
                open_for_writing(cli)?
            } else {
                open_for_reading(cli)?
            };
            let r = store.verify(&VerifyOptions { repair: *repair })?;
            if cli.json {
                print_json(&r)?;
            } else {
                for p in &r.problems {
                    say(p.to_string())?;
                }
                say(format!(
                    "verified {} blobs ({} bytes, {} manifests) in {:.2}s: {}",
                    r.blobs,
                    r.bytes,
                    r.manifests,
                    r.seconds,
                    if r.ok { "ok" } else { "problems found" }
                ))?;
            }
            if !r.ok {
                let left = r.problems.iter().filter(|p| !p.repaired).count();
                eprintln!("error: {left} problem(s) left in the store");
                io::stdout().flush().ok();
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Explain {
            reference,
            liveness,
        } => {
            let store = open_for_reading(cli)?;
            let d = store.resolve(reference)?;
            let e = store.explain(&d, &liveness.options(&store)?)?;
            if cli.json {
                return print_json(&e);
            }
            if !e.present {
                return say(format!("{} is not in the store", e.digest));
            }
            if e.live {
                say(format!("{} is kept:", e.digest))?;
                for step in &e.path {
                    say(format!("  {step}"))?;
                }
                Ok(())
            } else {
                say(format!(
                    "{} would be removed: {}",
                    e.digest,
                    e.reason.unwrap_or_default()
                ))
            }
        }
        Command::Pin { reference } => {
            let store = open_for_writing(cli)?;
            let d = store.resolve(reference)?;
            store.pin(&d)?;
            say(format!("pinned {d}"))
        }
        Command::Unpin { reference } => {
            let store = open_for_writing(cli)?;
            let d = store.resolve(reference)?;
            if !store.unpin(&d)? {
                return Err(Error::NotFound(format!("pin of {d}")));
            }
            say(format!("unpinned {d}"))
        }
        Command::Synth {
            out,
            images,
            layers,
            shared,
            referrers,
            untag,
            orphans,
            real_tar,
            seed,
        } => {
            if out.exists()
                && std::fs::read_dir(out)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                return Err(Error::io(
                    "synth into",
                    out,
                    io::Error::other("directory exists and is not empty"),
                ));
            }
            let r = ocistore::synth::synth(
                out,
                &ocistore::synth::SynthOptions {
                    images: *images,
                    layers: *layers,
                    shared: *shared,
                    referrers: *referrers,
                    untag: *untag,
                    orphans: *orphans,
                    real_tar: *real_tar,
                    seed: *seed,
                },
            )?;
            if cli.json {
                return print_json(&r);
            }
            say(format!(
                "{} blobs ({} bytes), {} manifests, {} tags; expected: {} live, {} garbage ({} bytes)",
                r.blobs,
                r.bytes,
                r.manifests,
                r.tags,
                r.live_blobs,
                r.garbage_blobs,
                r.garbage_bytes
            ))
        }
        Command::Bench { what } => bench(cli, what),
        Command::Demo { dir } => {
            let dir = match dir {
                Some(d) => d.clone(),
                None => tempfile::Builder::new()
                    .prefix("ocistore-demo-")
                    .tempdir()
                    .map_err(|e| {
                        Error::io("create temporary directory in", std::env::temp_dir(), e)
                    })?
                    .keep(),
            };
            let store = ocistore::demo::build(&dir)?;
            let c = store.stats()?;
            if cli.json {
                return print_json(
                    &serde_json::json!({"store": store.root(), "entries": store.list()?, "stats": c}),
                );
            }
            say(ocistore::demo::render(&store)?)?;
            say(format!(
                "{} blobs, {} manifests, {} tags, {} referrer edges",
                c.blobs, c.manifests, c.tags, c.referrer_edges
            ))?;
            say(format!(
                "store: {}\ntry: ocistore --store {} referrers web:1.0 --transitive",
                store.root().display(),
                store.root().display()
            ))
        }
    }
}

fn bench(cli: &Cli, what: &BenchCommand) -> ocistore::Result<()> {
    use ocistore::bench;
    match what {
        BenchCommand::Gc {
            sizes,
            strategies,
            runs,
            churn,
            gc_every,
            out,
        } => {
            let exe = std::env::current_exe()
                .map_err(|e| Error::io("locate", "the running executable", e))?;
            let r = bench::gc_bench(&bench::GcBenchOptions {
                sizes: sizes.clone(),
                strategies: strategies.0.clone(),
                runs: *runs,
                churn: *churn,
                gc_every: *gc_every,
                out: out.clone(),
                exe,
                command: std::env::args().collect::<Vec<_>>().join(" "),
            })?;
            if cli.json {
                print_json(&r)?;
            } else {
                say(bench::render_markdown(&r))?;
                say(format!(
                    "wrote gc.md, gc.json and gc.svg in {}",
                    out.display()
                ))?;
            }
            if r.mismatches.is_empty() {
                Ok(())
            } else {
                Err(Error::Index(format!(
                    "{} results disagree with the expected live set or with each other",
                    r.mismatches.len()
                )))
            }
        }
        BenchCommand::AdoptChild { dir } => print_json(&bench::adopt_child(dir)?),
        BenchCommand::CollectChild { dir, strategy } => {
            print_json(&bench::collect_child(dir, *strategy)?)
        }
        BenchCommand::ChurnChild {
            dir,
            strategy,
            ops,
            gc_every,
            seed,
        } => print_json(&bench::churn_child(dir, *strategy, *ops, *gc_every, *seed)?),
    }
}
