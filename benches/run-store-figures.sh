#!/usr/bin/env bash
# Measures the store's headline figures in one run and prints them as a markdown table:
#   1. open time of a store with 20,000 tagged images, and of stores of 1,000 / 5,000 / 20,000
#      images (benches/store_open.rs),
#   2. referrers query latency (benches/referrers.rs),
#   3. ingest throughput of a 64 MiB and a 1 GiB blob against sha256 alone, and of small image
#      manifests, 1,000 in one batch and 100 one put at a time (benches/ingest.rs),
# plus coreutils `sha256sum` on the same 1 GiB file (best of 3), for a same-run comparison.
#
# Fixtures are built once under target/bench-data/ and reused (about 1 minute and 1.7 GB the
# first time). Whole run: about 6 minutes on 2 cores. Medians come from criterion's
# target/criterion/<group>/<bench>/new/estimates.json (median.point_estimate, in ns).
#
# Usage: benches/run-store-figures.sh        (from anywhere; runs in the crate's root)
set -euo pipefail

cd "$(dirname "$0")/.."
DATA=target/bench-data
LOGS=$DATA/logs
mkdir -p "$LOGS"
STAMP=$DATA/run-started
touch "$STAMP"
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

BENCHES=(store_open referrers ingest)
# Build once, then run the built executables: every figure comes from the same build, even if
# the sources change while the benches run (cargo bench --bench X would rebuild each time).
echo "== cargo bench --no-run --bench store_open --bench referrers --bench ingest"
cargo bench --no-run --message-format=json-render-diagnostics "${BENCHES[@]/#/--bench=}" \
    >"$LOGS/build.json"
declare -A EXE
for bench in "${BENCHES[@]}"; do
    EXE[$bench]=$(grep "\"kind\":\[\"bench\"\],[^}]*\"name\":\"$bench\"" "$LOGS/build.json" |
        sed -nE 's/.*"executable":"([^"]+)".*/\1/p' | tail -n 1)
    if [[ -z ${EXE[$bench]} ]]; then
        echo "no executable for bench $bench in $LOGS/build.json" >&2
        exit 1
    fi
done

for bench in "${BENCHES[@]}"; do
    echo "== ${EXE[$bench]#"$PWD/"} --bench --noplot   (cargo bench --bench $bench; log: $LOGS/$bench.log)"
    "${EXE[$bench]}" --bench --noplot 2>&1 | tee "$LOGS/$bench.log"
done

FILE=$DATA/blob-1GiB.bin
echo "== time sha256sum $FILE   (best of 3)"
SUM_BEST=
for _ in 1 2 3; do
    start=$(date +%s%N)
    out=$(sha256sum "$FILE")
    end=$(date +%s%N)
    ns=$((end - start))
    echo "   $(awk -v ns="$ns" 'BEGIN { printf "%.3f s", ns / 1e9 }')"
    if [[ -z $SUM_BEST || $ns -lt $SUM_BEST ]]; then SUM_BEST=$ns; fi
done
expected=$(sed 's/^sha256://' "$DATA/blob-1GiB.bin.sha256")
if [[ ${out%% *} != "$expected" ]]; then
    echo "sha256sum disagrees with the bench's digest: ${out%% *} vs $expected" >&2
    exit 1
fi

# median_ns GROUP/BENCH: the median of this run, or nothing if the bench did not run now.
median_ns() {
    local f=target/criterion/$1/new/estimates.json
    [[ -f $f && $f -nt $STAMP ]] || return 0
    if command -v jq >/dev/null; then
        jq -r '.median.point_estimate' "$f"
    else
        sed -E 's/.*"median":\{"confidence_interval":\{[^}]*\},"point_estimate":([0-9.eE+-]+).*/\1/' "$f"
    fi
}

# human NS: a duration with a unit that suits it.
human() {
    awk -v ns="$1" 'BEGIN {
        if (ns == "") { print "n/a"; exit }
        if (ns < 1e3) printf "%.0f ns", ns
        else if (ns < 1e6) printf "%.2f µs", ns / 1e3
        else if (ns < 1e9) printf "%.2f ms", ns / 1e6
        else printf "%.3f s", ns / 1e9
    }'
}

# mibs BYTES NS: throughput in MiB/s.
mibs() {
    awk -v b="$1" -v ns="$2" 'BEGIN { if (ns == "") print "n/a"; else printf "%.0f MiB/s", b / 1048576 / (ns / 1e9) }'
}

# per_second COUNT NS: COUNT items in NS nanoseconds, as items per second.
per_second() {
    awk -v n="$1" -v ns="$2" 'BEGIN { if (ns == "") print "n/a"; else printf "%.0f/s", n / (ns / 1e9) }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "n/a"; else printf "%.2f", a / b }'
}

GIB=$((1 << 30))
MIB64=$((64 << 20))
SHA_1G=$(median_ns ingest_1GiB/sha256_only)
PUT_1G=$(median_ns ingest_1GiB/put_without_digest)
PUTD_1G=$(median_ns ingest_1GiB/put_with_digest)

echo
echo "## ocistore figures ($(date -u +%Y-%m-%d), $(nproc) cores, $(df -T . | awk 'NR == 2 { print $2 }'))"
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- src Cargo.toml 2>/dev/null) ]]; then REV="$REV + uncommitted changes"; fi
echo "library: $REV; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load before run: $LOAD0"
echo
echo "| figure | median | note |"
echo "| --- | --- | --- |"
row() { echo "| $1 | $(human "$(median_ns "$2")") | $3 |"; }
row "open, writable (20k images)" open_20k/open "Store::open, lock included"
row "open + close, writable" open_20k/open_close "what one CLI call pays"
row "open, read-only (20k images)" open_20k/open_read_only "Store::open_read_only"
row "open + close, read-only" open_20k/open_read_only_close ""
for n in 1000 5000 20000; do
    row "open + close, writable, $n images" "open_vs_size/open_close/$n" ""
    row "open + close, read-only, $n images" "open_vs_size/open_read_only_close/$n" ""
done
row "referrers, 1 referrer (20k store)" referrers/store20k_1 ""
for n in 1 10 100 1000; do
    row "referrers, fan-out $n" "referrers/fanout/$n" ""
done
for size in 64MiB 1GiB; do
    bytes=$GIB
    [[ $size == 64MiB ]] && bytes=$MIB64
    sha=$(median_ns "ingest_$size/sha256_only")
    for b in sha256_only put_with_digest put_without_digest; do
        t=$(median_ns "ingest_$size/$b")
        note="$(mibs "$bytes" "$t")"
        [[ $b != sha256_only ]] && note="$note, $(ratio "$t" "$sha")x sha256 alone"
        echo "| ingest $size, $b | $(human "$t") | $note |"
    done
done
for bench in batch_put_tag/1000 put_one_by_one/100; do
    t=$(median_ns "ingest_manifests/$bench")
    echo "| manifests, $bench | $(human "$t") | $(per_second "${bench#*/}" "$t") |"
done
echo "| sha256sum 1GiB (coreutils, best of 3) | $(human "$SUM_BEST") | $(mibs "$GIB" "$SUM_BEST") |"
echo
echo "ocistore ingest $(human "$PUT_1G") vs sha256sum $(human "$SUM_BEST"), ratio $(ratio "$PUT_1G" "$SUM_BEST") (1 GiB, put without digest)"
echo "ocistore ingest $(human "$PUTD_1G") vs sha256sum $(human "$SUM_BEST"), ratio $(ratio "$PUTD_1G" "$SUM_BEST") (1 GiB, put with digest)"
echo "ocistore ingest $(human "$PUT_1G") vs in-process sha256 $(human "$SHA_1G"), ratio $(ratio "$PUT_1G" "$SHA_1G")"
echo
echo "total run time: $(($(date +%s) - T0)) s"
