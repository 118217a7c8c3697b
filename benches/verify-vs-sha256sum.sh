#!/usr/bin/env bash
# Verify throughput against coreutils sha256sum run as 2 parallel processes over the same files.
#
# Uses the verify store of benches/common/mod.rs (about 1.1 GiB in 2,080 blobs; built once by
# `cargo bench --bench verify`, which this script runs in its quick --test mode when needed).
# Every timing reads from the page cache: the files are read once before the first one.
# Prints the median of TRIALS (default 3) runs of each command, and their ratio.
#
# Usage: benches/verify-vs-sha256sum.sh      (from anywhere; runs in the crate's root)
set -euo pipefail

cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-3}
ROOT=target/bench-data/store-verify

cargo build --release --quiet
if [[ ! -f target/bench-data/store-verify.complete ]]; then
    cargo bench --quiet --bench verify -- --test >/dev/null
fi
cat "$ROOT"/blobs/sha256/* >/dev/null
FILES=$(find "$ROOT/blobs" -type f | wc -l)
BYTES=$(du -sb "$ROOT/blobs" | cut -f1)

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { # prints seconds
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null
    e=$(date +%s.%N)
    echo "$e - $s" | bc
}

verify_runs=()
sum_runs=()
for _ in $(seq "$TRIALS"); do
    verify_runs+=("$(timed target/release/ocistore --store "$ROOT" verify)")
    sum_runs+=("$(timed sh -c "find '$ROOT/blobs' -type f | xargs -P 2 -n $((FILES / 2 + 1)) sha256sum")")
done
v=$(printf '%s\n' "${verify_runs[@]}" | median)
s=$(printf '%s\n' "${sum_runs[@]}" | median)
echo "files: $FILES, bytes: $BYTES, trials: $TRIALS (medians)"
echo "| command | seconds | MB/s |"
echo "| --- | --- | --- |"
printf '| `ocistore verify` | %.2f | %.0f |\n' "$v" "$(echo "$BYTES / $v / 1000000" | bc -l)"
printf '| `xargs -P 2 sha256sum` | %.2f | %.0f |\n' "$s" "$(echo "$BYTES / $s / 1000000" | bc -l)"
printf 'ocistore verify / sha256sum -P2 time ratio: %.2f\n' "$(echo "$v / $s" | bc -l)"
