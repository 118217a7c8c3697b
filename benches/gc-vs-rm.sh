#!/usr/bin/env bash
# Same-run comparison of `ocistore gc` with deleting the same garbage by hand, on a synthetic
# layout of 20,000 images (~182k blobs, ~53k of them garbage):
#
#   ocistore synth DIR --images 20000 --layers 6 --shared 0.5 --referrers 1 --untag 0.3 --seed 1
#
# generated once under target/bench-data/gc-20k-layout and reused. Each trial makes fresh copies
# of it (`cp -a`, then `sync`) and times, on the same bytes:
#   (a) `ocistore --store A init` (adoption, its own row), then `ocistore --store A gc --json`;
#   (e) a second `ocistore --store A gc --json` right after (a): nothing left to collect, and no
#       write since (a), which the store answers from the record of its last collection;
#   (e2) `ocistore pin` + `unpin` of a live blob (untimed), then `gc --json` again: nothing to
#       collect either, but the write makes the collection run in full;
#   (f) init + `gc --json --strategy refcount` on copy A2;
#   (b) `xargs -P 8 -n 2000 rm -f` over the garbage files of synth-truth.json, on copy B;
#   (c) the same with `-P 1` (one rm at a time), on copy B2;
#   (d) `umoci gc --layout C`, when umoci is installed (it follows index.json descriptors only,
#       so it also removes referrers that nothing in index.json lists; its count differs).
# Each timing is the wall time (`date +%s.%N`) of the command alone; "+ sync" adds the `sync`
# that follows it, so that work left in the page cache (rm's and umoci's unlinks are not
# durable when they return) is counted too. "CPU" is the user plus system time of the command
# and its children (bash's `times`), which bounds how fast it can be on this many cores. The rows are the medians of the trials. Each gc's
# JSON report (without its list of removals) and stderr are kept in
# target/bench-data/logs/gc-vs-rm/<row>.<trial>.{json,stderr}.
#
# It checks that ocistore removed exactly the garbage of synth-truth.json, and that the files
# left are the live set, and fails otherwise.
#
# Usage: TRIALS=3 benches/gc-vs-rm.sh     (from anywhere; runs in the crate's root)
# Env:   TRIALS (3), JOBS (8, the -P of row b), KEEP=1 keeps the copies of the last trial.
# Time:  about 3.5-5 minutes per trial on 2 cores: five copies of 182k files per trial, each
#        ~13 s to make and ~12 s to remove, dominate.
set -euo pipefail

cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-3}
JOBS=${JOBS:-8}
DATA=target/bench-data
LAYOUT=$DATA/gc-20k-layout
WORK=$PWD/$DATA/tmp/gc-vs-rm.$$
BIN=target/release/ocistore
SYNTH_ARGS=(--images 20000 --layers 6 --shared 0.5 --referrers 1 --untag 0.3 --seed 1)
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

command -v jq >/dev/null || { echo "gc-vs-rm.sh needs jq" >&2; exit 1; }
HAVE_UMOCI=0
command -v umoci >/dev/null && HAVE_UMOCI=1

cleanup() {
    if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "== cargo build --release"
cargo build --release --quiet

mkdir -p "$DATA/tmp"
KEY="synth ${SYNTH_ARGS[*]}"
if [[ -f $LAYOUT.complete && $(cat "$LAYOUT.complete") == "$KEY" && ! -e $LAYOUT/.ocistore ]]; then
    echo "== reusing $LAYOUT"
else
    echo "== $BIN synth $LAYOUT ${SYNTH_ARGS[*]}"
    rm -rf "$LAYOUT" "$LAYOUT.complete"
    "$BIN" synth "$LAYOUT" "${SYNTH_ARGS[@]}" >/dev/null
    echo "$KEY" >"$LAYOUT.complete"
fi
TRUTH=$LAYOUT/synth-truth.json
GARBAGE=$(jq '.garbage | length' "$TRUTH")
LIVE=$(jq '.live | length' "$TRUTH")
BLOBS=$(find "$LAYOUT/blobs" -type f | wc -l)
echo "   $BLOBS blobs, $LIVE live, $GARBAGE garbage (synth-truth.json)"
if ((LIVE + GARBAGE != BLOBS)); then
    echo "synth-truth.json lists $((LIVE + GARBAGE)) blobs, the layout holds $BLOBS" >&2
    exit 1
fi
mkdir -p "$WORK"
# Each gc's JSON report (without its list of removals) and stderr, per row and trial.
LOGS=$DATA/logs/gc-vs-rm
rm -rf "$LOGS"
mkdir -p "$LOGS"
# The empty config `{}`: live referrers list it, so it is live and pinning it changes nothing.
EMPTY=sha256:$(printf '{}' | sha256sum | cut -d' ' -f1)
if ! jq -e --arg d "$EMPTY" '.live | index($d)' "$TRUTH" >/dev/null; then
    echo "$EMPTY is not live in synth-truth.json" >&2
    exit 1
fi
# The garbage files as paths relative to a copy's root, and the live set, sorted.
jq -r '.garbage[] | sub("^sha256:"; "blobs/sha256/")' "$TRUTH" >"$WORK/garbage.txt"
jq -r '.live[] | sub("^sha256:"; "")' "$TRUTH" | sort >"$WORK/live.txt"

now() { date +%s.%N; }
# cpu_now: sets CPU to the user plus system seconds of this shell's waited-for children. It
# runs `times` in this shell, not in a subshell, which would count only its own children.
CPU=0
cpu_now() {
    local f=$WORK/times a b
    times >"$f"
    { read -r _ && read -r a b; } <"$f"
    CPU=$(awk -v a="$a" -v b="$b" '
        function secs(x, p) { split(x, p, "m"); sub("s", "", p[2]); return p[1] * 60 + p[2] }
        BEGIN { printf "%.3f", secs(a) + secs(b) }')
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
files_in() { find "$1/blobs" -type f | wc -l; }

# Results: R[<row>,<trial>] in seconds (or ms for JSON fields).
declare -A R
record() { R[$1,$2]=$3; }

# copy NAME: a fresh copy of the layout, synced.
copy() {
    local dst=$WORK/$1
    rm -rf "$dst"
    cp -a "$LAYOUT" "$dst"
}

# time_gc ROW DIR TRIAL [ARGS...]: times `ocistore --store DIR gc --json ARGS` and then sync.
time_gc() {
    local row=$1 dir=$2 t=$3
    shift 3
    local s e s2 c0 out=$WORK/report.json
    cpu_now
    c0=$CPU
    s=$(now)
    # The report goes to a file: read into a shell variable, its list of 53k removals would
    # add the shell's own reading time to the collection's.
    "$BIN" --store "$dir" gc --json "$@" >"$out" 2>"$LOGS/$row.$t.stderr"
    e=$(now)
    cpu_now
    record "$row.cpu" "$t" "$(elapsed "$c0" "$CPU")"
    sync
    s2=$(now)
    record "$row" "$t" "$(elapsed "$s" "$e")"
    record "$row+sync" "$t" "$(elapsed "$s" "$s2")"
    jq 'del(.removed)' "$out" >"$LOGS/$row.$t.json"
    rm -f "$out"
    if [[ -s $LOGS/$row.$t.stderr ]]; then sed 's/^/   stderr: /' "$LOGS/$row.$t.stderr"; fi
    for f in strategy mark_ms max_pause_ms unlink_ms total_ms removed_blobs unchanged; do
        record "$row.$f" "$t" "$(jq -r ".$f" "$LOGS/$row.$t.json")"
    done
}

# time_init ROW DIR TRIAL: times `ocistore --store DIR init` (adoption) and then sync.
time_init() {
    local row=$1 dir=$2 t=$3 s e s2 c0
    cpu_now
    c0=$CPU
    s=$(now)
    "$BIN" --store "$dir" init >/dev/null
    e=$(now)
    cpu_now
    record "$row.cpu" "$t" "$(elapsed "$c0" "$CPU")"
    sync
    s2=$(now)
    record "$row" "$t" "$(elapsed "$s" "$e")"
    record "$row+sync" "$t" "$(elapsed "$s" "$s2")"
}

# time_cmd ROW TRIAL CMD...: times CMD, then sync.
time_cmd() {
    local row=$1 t=$2 s e s2 c0
    shift 2
    cpu_now
    c0=$CPU
    s=$(now)
    "$@"
    e=$(now)
    cpu_now
    record "$row.cpu" "$t" "$(elapsed "$c0" "$CPU")"
    sync
    s2=$(now)
    record "$row" "$t" "$(elapsed "$s" "$e")"
    record "$row+sync" "$t" "$(elapsed "$s" "$s2")"
}

rm_garbage() { # DIR P
    (cd "$1" && xargs -P "$2" -n 2000 rm -f <"$WORK/garbage.txt")
}

# check_left DIR WHAT: fails unless exactly the live set is left in DIR.
check_left() {
    local left
    left=$(find "$1/blobs/sha256" -type f -printf '%f\n' | sort)
    if [[ $left != "$(cat "$WORK/live.txt")" ]]; then
        echo "FAIL: after $2, the files left are not the live set of synth-truth.json" \
            "($(wc -l <<<"$left") files, expected $LIVE)" >&2
        exit 1
    fi
}

check_removed() { # ROW TRIAL
    local got=${R[$1.removed_blobs,$2]}
    if [[ $got != "$GARBAGE" ]]; then
        echo "FAIL: $1 removed $got blobs, synth-truth.json lists $GARBAGE garbage blobs" >&2
        exit 1
    fi
}

for ((t = 1; t <= TRIALS; t++)); do
    echo "== trial $t/$TRIALS: copies (cp -a, sync)"
    copies=(A A2 B B2)
    ((HAVE_UMOCI)) && copies+=(C)
    for c in "${copies[@]}"; do copy "$c"; done
    sync

    echo "   (a) ocistore init + gc (default strategy), (e) gc again"
    time_init init "$WORK/A" "$t"
    time_gc gc "$WORK/A" "$t"
    check_removed gc "$t"
    time_gc noop "$WORK/A" "$t"
    if [[ ${R[noop.removed_blobs,$t]} != 0 ]]; then
        echo "FAIL: the second gc removed ${R[noop.removed_blobs,$t]} blobs" >&2
        exit 1
    fi
    if [[ ${R[noop.unchanged,$t]} != true ]]; then
        echo "   note: the second gc ran in full (not answered from the record of the last" \
            "collection); see $LOGS/noop.$t.json"
    fi
    echo "   (e2) ocistore pin + unpin, gc again"
    "$BIN" --store "$WORK/A" pin "$EMPTY" >/dev/null
    "$BIN" --store "$WORK/A" unpin "$EMPTY" >/dev/null
    sync
    time_gc noop_w "$WORK/A" "$t"
    if [[ ${R[noop_w.removed_blobs,$t]} != 0 || ${R[noop_w.unchanged,$t]} != false ]]; then
        echo "FAIL: gc after pin + unpin removed ${R[noop_w.removed_blobs,$t]} blobs," \
            "unchanged=${R[noop_w.unchanged,$t]}" >&2
        exit 1
    fi
    check_left "$WORK/A" "ocistore gc"

    echo "   (f) ocistore init + gc --strategy refcount"
    time_init init_rc "$WORK/A2" "$t"
    time_gc gc_rc "$WORK/A2" "$t" --strategy refcount
    check_removed gc_rc "$t"
    check_left "$WORK/A2" "ocistore gc --strategy refcount"

    echo "   (b) xargs -P $JOBS -n 2000 rm -f"
    time_cmd rm_p "$t" rm_garbage "$WORK/B" "$JOBS"
    check_left "$WORK/B" "xargs rm"

    echo "   (c) xargs -P 1 -n 2000 rm -f"
    time_cmd rm_1 "$t" rm_garbage "$WORK/B2" 1
    check_left "$WORK/B2" "xargs -P 1 rm"

    if ((HAVE_UMOCI)); then
        echo "   (d) umoci gc --layout C"
        time_cmd umoci "$t" umoci gc --layout "$WORK/C"
        record umoci.removed_blobs "$t" $((BLOBS - $(files_in "$WORK/C")))
    fi
    for c in "${copies[@]}"; do
        if [[ ${KEEP:-0} != 1 || $t != "$TRIALS" ]]; then rm -rf "${WORK:?}/$c"; fi
    done
    printf '   gc %ss (+sync %ss), noop %ss, noop after write %ss, refcount %ss, rm -P%s %ss, rm -P1 %ss%s\n' \
        "${R[gc,$t]}" "${R[gc+sync,$t]}" "${R[noop,$t]}" "${R[noop_w,$t]}" "${R[gc_rc,$t]}" "$JOBS" \
        "${R[rm_p,$t]}" "${R[rm_1,$t]}" \
        "$( ((HAVE_UMOCI)) && echo ", umoci ${R[umoci,$t]}s")"
done

# median ROW: the median over the trials (the mean of the middle two for an even count).
median() {
    local i vals=()
    for ((i = 1; i <= TRIALS; i++)); do vals+=("${R[$1,$i]:-}"); done
    printf '%s\n' "${vals[@]}" | sort -g | awk '
        NF { v[n++] = $1 }
        END {
            if (n == 0) { print ""; exit }
            if (n % 2) print v[(n - 1) / 2]; else print (v[n / 2 - 1] + v[n / 2]) / 2
        }'
}
count_true() { # ROW: in how many trials the field is true
    local i n=0
    for ((i = 1; i <= TRIALS; i++)); do [[ ${R[$1,$i]:-} == true ]] && n=$((n + 1)); done
    echo "$n"
}
ms() { awk -v s="$1" 'BEGIN { if (s == "") print "n/a"; else printf "%.0f ms", s * 1000 }'; }
msf() { awk -v m="$1" 'BEGIN { if (m == "") print "n/a"; else printf "%.0f ms", m }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

echo
echo "## ocistore gc vs rm on the same garbage ($(date -u +%Y-%m-%d), $(nproc) cores, $(df -T "$DATA" | awk 'NR == 2 { print $2 }'))"
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | awk '{ print $2 }' | paste -sd' ')
if [[ -n $DIRTY ]]; then REV="$REV + uncommitted changes in: $DIRTY"; fi
echo "library: $REV; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "layout: ocistore synth ${SYNTH_ARGS[*]}: $BLOBS blobs, $GARBAGE garbage; medians of $TRIALS trials"
echo "load average before: $LOAD0; after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| what | wall | wall + sync | CPU | removed | note |"
echo "| --- | --- | --- | --- | --- | --- |"
row() { # LABEL ROW REMOVED NOTE
    echo "| $1 | $(ms "$(median "$2")") | $(ms "$(median "$2+sync")") | $(ms "$(median "$2.cpu")") | $3 | $4 |"
}
strategies() { # ROW: the strategies the trials' reports name (the default picks one)
    for ((i = 1; i <= TRIALS; i++)); do echo "${R[$1.strategy,$i]:-}"; done | sort -u | paste -sd/
}
gc_note() { # ROW
    echo "$(strategies "$1"), mark $(msf "$(median "$1.mark_ms")"), max pause $(msf "$(median "$1.max_pause_ms")"), unlink $(msf "$(median "$1.unlink_ms")"), total_ms $(msf "$(median "$1.total_ms")")"
}
row "ocistore init (adoption, once per layout)" init "" "indexes $BLOBS blobs"
row "ocistore gc (default strategy)" gc "$(median gc.removed_blobs)" "$(gc_note gc)"
row "ocistore gc again (nothing to collect, no write since)" noop "$(median noop.removed_blobs)" \
    "answered from the record of the last collection in $(count_true noop.unchanged)/$TRIALS trials"
row "ocistore gc after pin + unpin (nothing to collect)" noop_w "$(median noop_w.removed_blobs)" \
    "$(gc_note noop_w)"
row "ocistore init (refcount copy)" init_rc "" ""
row "ocistore gc --strategy refcount" gc_rc "$(median gc_rc.removed_blobs)" "$(gc_note gc_rc)"
row "xargs -P $JOBS -n 2000 rm -f" rm_p "$GARBAGE" "the list from synth-truth.json, no liveness work"
row "xargs -P 1 -n 2000 rm -f" rm_1 "$GARBAGE" "one rm at a time"
if ((HAVE_UMOCI)); then
    row "umoci gc ($(umoci --version | awk '{ print $3 }'))" umoci "$(median umoci.removed_blobs)" \
        "follows index.json only: also removes referrers listed nowhere"
else
    echo "| umoci gc | not installed | | | | |"
fi
echo
GC=$(median gc)
RC=$(median gc_rc)
echo "ocistore gc / xargs -P $JOBS rm: $(ratio "$GC" "$(median rm_p)") (wall), $(ratio "$(median gc+sync)" "$(median rm_p+sync)") (wall + sync)"
echo "ocistore gc / xargs -P 1 rm: $(ratio "$GC" "$(median rm_1)") (wall), $(ratio "$(median gc+sync)" "$(median rm_1+sync)") (wall + sync)"
echo "ocistore gc --strategy refcount / xargs -P $JOBS rm: $(ratio "$RC" "$(median rm_p)") (wall)"
if ((HAVE_UMOCI)); then
    echo "umoci gc / ocistore gc: $(ratio "$(median umoci)" "$GC") (wall), $(ratio "$(median umoci+sync)" "$(median gc+sync)") (wall + sync)"
    echo "umoci gc / (ocistore init + gc): $(ratio "$(median umoci)" "$(awk -v a="$(median init)" -v b="$GC" 'BEGIN { print a + b }')") (wall)"
fi
# A command that needs CPU seconds of work cannot take less than CPU / cores of wall time.
NPROC=$(nproc)
echo "CPU (user + system) / $NPROC cores, the least wall time that work can take here:" \
    "ocistore gc $(ms "$(awk -v c="$(median gc.cpu)" -v n="$NPROC" 'BEGIN { print c / n }')")," \
    "xargs -P $JOBS rm $(ms "$(awk -v c="$(median rm_p.cpu)" -v n="$NPROC" 'BEGIN { print c / n }')");" \
    "ocistore gc's CPU / xargs -P $JOBS rm's wall: $(ratio "$(awk -v c="$(median gc.cpu)" -v n="$NPROC" 'BEGIN { print c / n }')" "$(median rm_p)")"
echo "max pause (longest sweep transaction): default ($(strategies gc)) $(msf "$(median gc.max_pause_ms)"), refcount $(msf "$(median gc_rc.max_pause_ms)")"
echo
echo "total run time: $(($(date +%s) - T0)) s"
