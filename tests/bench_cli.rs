//! `ocistore bench gc`, run as a process on a small layout: the files it writes, the agreement
//! of the strategies with each other and with the generator's truth, and a short churn run.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ocistore");
const STRATEGIES: [&str; 3] = ["mark-sweep", "refcount", "scan"];

/// Runs `ocistore bench gc` with `args` into `out`, expects success, returns gc.json.
fn bench(out: &Path, args: &[&str]) -> Value {
    let o = Command::new(BIN)
        .env_remove("OCISTORE_DIR")
        .stdin(Stdio::null())
        .args(["bench", "gc", "--strategies", "all", "--runs", "1", "--out"])
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for f in ["gc.md", "gc.json", "gc.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    serde_json::from_slice(&std::fs::read(out.join("gc.json")).unwrap()).unwrap()
}

#[test]
fn strategies_agree_with_the_truth_and_the_files_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let report = bench(&out, &["--sizes", "200"]);
    assert_eq!(report["mismatches"], Value::Array(vec![]), "{report:#}");
    let size = &report["sizes"][0];
    let garbage = size["garbage_blobs"].as_u64().unwrap();
    assert!(garbage > 0, "{size}");
    // The layout the bench generated, with its truth.
    let images = size["images"].as_u64().unwrap();
    let truth: Value = serde_json::from_slice(
        &std::fs::read(out.join(format!("cache/synth-{images}/synth-truth.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(truth["garbage"].as_array().unwrap().len() as u64, garbage);
    let rows = report["rows"].as_array().unwrap();
    for s in STRATEGIES {
        let row = rows
            .iter()
            .find(|r| r["strategy"] == s)
            .unwrap_or_else(|| panic!("no row for {s}: {report:#}"));
        assert_eq!(row["blobs_removed"].as_u64(), Some(garbage), "{row}");
        assert_eq!(
            row["bytes_freed"], truth["report"]["garbage_bytes"],
            "{row}"
        );
        assert_eq!(row["matches_truth"], true, "{row}");
        assert!(row["median_gc_ms"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["peak_rss_kib"].as_u64().unwrap() > 0, "{row}");
    }

    let md = std::fs::read_to_string(out.join("gc.md")).unwrap();
    for s in STRATEGIES {
        assert!(md.contains(&format!("| {s} |")), "{md}");
    }
    let svg = std::fs::read_to_string(out.join("gc.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    for s in STRATEGIES {
        assert!(
            svg.contains(&format!("<polyline data-series=\"{s}\"")),
            "no line for {s}"
        );
    }
    // Every element opened is closed: a cheap well-formedness check.
    let opened = svg.matches("<svg").count() + svg.matches("<text").count();
    let closed = svg.matches("</svg>").count() + svg.matches("</text>").count();
    assert_eq!(opened, closed);
}

#[test]
fn churn_reports_amplification_and_pauses_per_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let report = bench(
        &out,
        &["--sizes", "200", "--churn", "30", "--gc-every", "10"],
    );
    assert_eq!(report["mismatches"], Value::Array(vec![]), "{report:#}");
    let churn = report["churn"].as_array().unwrap();
    assert_eq!(churn.len(), STRATEGIES.len());
    for (c, s) in churn.iter().zip(STRATEGIES) {
        assert_eq!(c["strategy"], s);
        assert_eq!(c["ops"], 30);
        assert_eq!(c["collections"], 3, "{c}");
        assert_eq!(c["pause"]["count"], 3, "{c}");
        assert!(c["amplification_mean"].as_f64().unwrap() >= 1.0, "{c}");
        assert!(c["amplification_max"].as_f64().unwrap() >= 1.0, "{c}");
        assert!(c["write_wait"]["count"].as_u64().unwrap() >= 6, "{c}");
        // Every strategy collects the same blobs at the same points.
        assert_eq!(c["removed_per_gc"], churn[0]["removed_per_gc"]);
    }
    let md = std::fs::read_to_string(out.join("gc.md")).unwrap();
    assert!(md.contains("## Churn"), "{md}");
}
