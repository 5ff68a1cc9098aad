#!/usr/bin/env bash
# Instructions per operation of LLFree's workloads (benches/llfree_workloads.rs) under
# callgrind, one thread, orders 0 and 9: counts, not times, so the figures are the same on
# a busy machine and comparable between commits.
#
#   kernel/mm/benches/callgrind.sh [BENCH_BINARY]
#
# Without an argument the bench is built (`cargo bench --no-run`). With one, any build of
# the bench is measured, e.g. an older commit's for a before/after comparison. Each
# measured phase is its own `#[inline(never)]` function; the inclusive cost of each,
# divided by the operations it ran, is the figure. Where identical code folding merged
# `rand_alloc` into `bulk_alloc` (older builds), the two are reported together.
set -euo pipefail
cd "$(dirname "$0")/../../.."
bin=${1:-}
if [ -z "$bin" ]; then
    bin=$(cargo bench -p zonebuddy --bench llfree_workloads --no-run 2>&1 |
        sed -n 's/.*Executable .*llfree_workloads.rs (\(.*\))$/\1/p' | tail -1)
fi
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }
[ -x "$bin" ] || { echo "callgrind.sh: no bench binary at '$bin'" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "instructions per operation (callgrind), 1 thread, 1 GiB, $bin"
for order in 0 9; do
    log="$out/o$order.log"
    MM_BENCH_ONLY=ours MM_BENCH_ORDER=$order MM_BENCH_THREADS=1 MM_BENCH_RUNS=1 \
        MM_BENCH_PAIRS=100000 valgrind --tool=callgrind --callgrind-out-file="$out/o$order.cg" \
        "$bin" --bench >"$log" 2>&1
    # "(N blocks per thread per bulk/rand phase, P repeat pairs, R runs)"
    read -r n pairs runs < <(sed -n 's/.*(\([0-9]*\) blocks per thread per bulk\/rand phase, \([0-9]*\) repeat pairs, \([0-9]*\) runs).*/\1 \2 \3/p' "$log")
    callgrind_annotate --inclusive=yes --threshold=100 "$out/o$order.cg" 2>/dev/null |
        grep -v '=>' >"$out/o$order.txt"
    cost() { # inclusive Ir of the phase function $1, or nothing
        grep -E "llfree_workloads::$1::<&zonebuddy" "$out/o$order.txt" | grep -v '\.rs:<' |
            head -1 | awk '{gsub(",", "", $1); print $1}' || true
    }
    ba=$(cost bulk_alloc); bf=$(cost bulk_free); ra=$(cost rand_alloc)
    rf=$(cost rand_free); rp=$(cost repeat_phase)
    per() { awk -v c="${1:-0}" -v k="$2" 'BEGIN { printf "%8.0f", (k > 0 ? c / k : 0) }'; }
    if [ -z "$ra" ]; then
        printf 'order %s: bulk+rand alloc %s  bulk free %s  rand free %s  repeat pair %s\n' \
            "$order" "$(per "$ba" $((2 * n * runs)))" "$(per "$bf" $((n * runs)))" \
            "$(per "$rf" $((n * runs)))" "$(per "$rp" $((pairs * runs)))"
    else
        printf 'order %s: bulk alloc %s  bulk free %s  rand alloc %s  rand free %s  repeat pair %s\n' \
            "$order" "$(per "$ba" $((n * runs)))" "$(per "$bf" $((n * runs)))" \
            "$(per "$ra" $((n * runs)))" "$(per "$rf" $((n * runs)))" \
            "$(per "$rp" $((pairs * runs)))"
    fi
done
