#!/usr/bin/env bash
# Counts the instructions one collection executes, by phase, under valgrind's callgrind. Unlike
# wall time, which on a shared 2-core machine varies by 20% from one run to the next, the count
# is the same on every run, so it can tell two builds apart by a few percent.
#
# The layout is benches/gc-vs-rm.sh's (20,000 images, 53,162 garbage blobs; it is generated
# there once, under target/bench-data/gc-20k-layout). For each binary: one copy on tmpfs
# (/dev/shm), adopted with `ocistore init`, then
#
#   valgrind --tool=callgrind ocistore --store COPY gc --json --chunk-ms 1000000
#
# The large pause target makes every sweep transaction take 8,192 removals, whatever the time,
# so every binary does the same transactions (under valgrind, time-bounded transactions would
# be tiny and many). System calls are not counted: this measures the CPU work of the index,
# not the unlinks or the syncs. It checks that each collection removed the garbage of
# synth-truth.json.
#
# Usage: benches/gc-instructions.sh [BIN...]   (default: target/release/ocistore, built first)
# Needs: valgrind (callgrind_annotate), jq, about 2 GB free in /dev/shm.
# Time:  about 3 minutes per binary on 2 cores.
set -euo pipefail

cd "$(dirname "$0")/.."
LAYOUT=target/bench-data/gc-20k-layout
SHM=/dev/shm/ocistore-gc-instructions.$$
OUT=target/bench-data/logs/gc-instructions

for tool in valgrind callgrind_annotate jq; do
    command -v "$tool" >/dev/null || { echo "gc-instructions.sh needs $tool" >&2; exit 1; }
done
if [[ ! -f $LAYOUT.complete ]]; then
    echo "no layout at $LAYOUT: run benches/gc-vs-rm.sh once to generate it" >&2
    exit 1
fi
if (($# == 0)); then
    echo "== cargo build --release"
    cargo build --release --quiet
    set -- target/release/ocistore
fi
GARBAGE=$(jq '.garbage | length' "$LAYOUT/synth-truth.json")

cleanup() { rm -rf "$SHM"; }
trap cleanup EXIT
mkdir -p "$SHM" "$OUT"

# The inclusive count of the first symbol matching $2 (as the binary's own symbol) in $1.
count() {
    awk -v s="$2" 'index($0, s) && (index($0, " [") || s == "PROGRAM TOTALS") { gsub(",", "", $1); print $1; exit }' "$1"
}

ROWS=("PROGRAM TOTALS|whole collection"
    "gc::load_view [|loading the graph (mark-sweep)"
    "gc::view_garbage [|marking (mark-sweep)"
    "Store>::sweep_entries [|tags and entries of the garbage"
    "Store>::sweep_chunk [|sweep transactions"
    "Writer::remove_blob_keeping [|  of which the removals"
    "Store>::drop_stale [|stale parents rows left to the end"
    "WriteTransaction::commit [|every commit")
declare -A RESULT
NAMES=()
for bin in "$@"; do
    name=$(basename "$(dirname "$(readlink -f "$bin")")")/$(basename "$bin")
    NAMES+=("$name")
    echo "== $bin: copy to tmpfs, adopt, collect under callgrind"
    rm -rf "$SHM/c"
    cp -a "$LAYOUT" "$SHM/c"
    "$bin" --store "$SHM/c" init >/dev/null
    tag=$(echo "$name" | tr '/' '_')
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$tag.callgrind" \
        "$bin" --store "$SHM/c" gc --json --chunk-ms 1000000 >"$OUT/$tag.json" 2>"$OUT/$tag.stderr"
    removed=$(jq .removed_blobs "$OUT/$tag.json")
    if ((removed != GARBAGE)); then
        echo "$bin removed $removed blobs, synth-truth.json lists $GARBAGE garbage" >&2
        exit 1
    fi
    callgrind_annotate --inclusive=yes "$OUT/$tag.callgrind" >"$OUT/$tag.txt" 2>/dev/null
    for row in "${ROWS[@]}"; do
        sym=${row%%|*}
        RESULT["$name|$sym"]=$(count "$OUT/$tag.txt" "$sym")
    done
done

echo
header="| phase (millions of instructions) |"
rule="| --- |"
for name in "${NAMES[@]}"; do
    header+=" $name |"
    rule+=" --- |"
done
echo "$header"
echo "$rule"
for row in "${ROWS[@]}"; do
    sym=${row%%|*}
    line="| ${row#*|} |"
    for name in "${NAMES[@]}"; do
        v=${RESULT["$name|$sym"]:-}
        if [[ -n $v ]]; then line+=" $((v / 1000000)) |"; else line+=" - |"; fi
    done
    echo "$line"
done
echo
echo "callgrind profiles: $OUT/*.callgrind (callgrind_annotate --inclusive=yes FILE)"
