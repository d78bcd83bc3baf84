#!/usr/bin/env bash
# Where sidecast's CPU time per chat message or fan-out delivery goes, by owner: SwiftNIO,
# jansson, sidecast's own modules, the kernel (scripts/owners.py). Runs `sidecast-bench SCENARIO`
# twice, for a short and a long measurement, with sidecast under `perf record` (cpu-clock
# samples with call graphs), and splits the samples the long run took beyond the short one by
# the extra messages or deliveries. With --syscalls, it counts system calls per unit the same
# way under `strace -c` instead.
#
#   scripts/perf-bench.sh chat|fanout [--syscalls] [--sidecast PATH] [--hz N] [bench options…]
#
# Needs perf (Debian: linux-perf) or strace. Time comes from samples, so it moves with the
# machine as CPU time does; the shares are what to compare. callgrind-bench.sh --owners gives
# the same split in instructions, exactly.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:-}
case "$scenario" in
    chat | fanout) ;;
    *) echo "usage: $0 chat|fanout [--syscalls] [--sidecast PATH] [--hz N] [bench options…]" >&2; exit 2 ;;
esac
shift
mode=perf sidecast="" hz=4999 short=4 long=12 bench_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --syscalls) mode=strace; shift ;;
        --sidecast) sidecast=$2; shift 2 ;;
        --hz) hz=$2; shift 2 ;;
        --duration) echo "error: the script picks the durations ($short s and $long s)" >&2; exit 2 ;;
        *) bench_args+=("$1"); shift ;;
    esac
done
tool=perf
[ "$mode" = strace ] && tool=strace
command -v "$tool" >/dev/null || { echo "error: $tool is needed (Debian: apt-get install ${tool/perf/linux-perf})" >&2; exit 1; }

# shellcheck source=scripts/common.sh
source scripts/common.sh
build_for_measuring

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
measure() {
    local duration=$1
    PERF_MODE=$mode PERF_HZ=$hz PERF_OUT="$work/$duration.out" PERF_SIDECAST=$sidecast \
        "$bin/sidecast-bench" "$scenario" --sidecast scripts/perf/exec-sidecast.sh --duration "$duration" \
        --json "$work/$duration.json" "${bench_args[@]}" >"$work/$duration.txt" 2>&1 || {
        cat "$work/$duration.txt" >&2
        exit 1
    }
    python3 - "$work/$duration.json" <<'PY' || { echo "error: the run lost messages:" >&2; cat "$work/$duration.txt" >&2; exit 1; }
import json, sys
figures = json.load(open(sys.argv[1]))["figures"]
sys.exit(any(f["name"] == "missing" and f["value"] for f in figures))
PY
}
measure $short
measure $long

# The extra units: messages the clients sent, or deliveries, over the extra seconds.
units=$(python3 - "$work/$short.json" "$work/$long.json" "$scenario" <<'PY'
import json, sys
def figure(path, name):
    return next(f["value"] for f in json.load(open(path))["figures"] if f["name"] == name)
def units(path):
    seconds = float(json.load(open(path))["parameters"]["duration_s"])
    return figure(path, "messages/s" if sys.argv[3] == "chat" else "deliveries/s") * seconds
print(units(sys.argv[2]) - units(sys.argv[1]))
PY
)
unit=message
[ "$scenario" = fanout ] && unit=delivery
echo "$scenario: ${short} s and ${long} s; per $unit (${units%.*} more in the long run):"
python3 scripts/owners.py "$mode" "$work/$long.out" "$work/$short.out" "$units" "$unit" "$hz"
