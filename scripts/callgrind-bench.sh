#!/usr/bin/env bash
# Counts the instructions sidecast executes per chat message or per fan-out delivery, with
# valgrind's callgrind: the same figure on every run, where CPU time on a shared machine moves
# by ±20 %. Runs `sidecast-bench SCENARIO` twice under callgrind, for a short and a long
# measurement, and divides the difference by the extra messages (chat) or deliveries (fanout).
#
#   scripts/callgrind-bench.sh chat   [--clients N] [--rate R] [--top N] [--callees NAME] [--owners] [--sidecast PATH]
#   scripts/callgrind-bench.sh fanout [--clients N] [--rate R] [--top N] [--callees NAME] [--owners] [--sidecast PATH]
#
# --owners splits the instructions by the library or sidecast module that asked for them
# (SwiftNIO, jansson, sidecast; scripts/owners.py).
#
# Needs valgrind, objcopy (binutils), a C compiler and python3; builds the release products if
# --sidecast is not given. Under callgrind sidecast runs about 50 times slower, hence the small
# defaults (chat: 100 clients, 50 messages/s; fanout: 200 clients, 5 events/s).
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:-}
case "$scenario" in
    chat) clients=100 rate=50 ramp=20 ;;
    fanout) clients=200 rate=5 ramp=50 ;;
    *) echo "usage: $0 chat|fanout [--clients N] [--rate R] [--top N] [--callees NAME] [--owners] [--sidecast PATH]" >&2; exit 2 ;;
esac
shift
sidecast="" top=0 callees="" owners=""
short=2 long=6
while [ $# -gt 0 ]; do
    case "$1" in
        --clients) clients=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --top) top=$2; shift 2 ;;
        --callees) callees=$2; shift 2 ;;
        --owners) owners=--owners; shift ;;
        --sidecast) sidecast=$2; shift 2 ;;
        *) echo "error: unknown option $1" >&2; exit 2 ;;
    esac
done
for tool in valgrind objcopy python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is needed (Debian: apt-get install valgrind binutils python3)" >&2; exit 1; }
done
cc=$(command -v cc || command -v clang || command -v gcc) || { echo "error: a C compiler is needed" >&2; exit 1; }

# shellcheck source=scripts/common.sh
source scripts/common.sh
build_for_measuring

work=$(mktemp -d)
[ -n "${CALLGRIND_KEEP:-}" ] && echo "profiles kept in $work" >&2
trap '[ -n "${CALLGRIND_KEEP:-}" ] || rm -rf "$work"' EXIT
"$cc" -O2 -shared -fPIC -o "$work/shim.so" scripts/callgrind/sigsuspend-shim.c
# valgrind 3.19 cannot read the DWARF 5 the Swift toolchain writes; symbols stay.
objcopy --strip-debug "$sidecast" "$work/sidecast"

# Prints the path of the profile of the sidecast the run measured (the largest one: the bench
# also asks the binary for --help, which callgrind profiles too).
profile() {
    local duration=$1
    mkdir "$work/$duration"
    CALLGRIND_SHIM="$work/shim.so" CALLGRIND_SIDECAST="$work/sidecast" CALLGRIND_OUT="$work/$duration/callgrind.out" \
        "$bin/sidecast-bench" "$scenario" --sidecast scripts/callgrind/exec-sidecast.sh \
        --clients "$clients" --rate "$rate" --ramp "$ramp" --duration "$duration" --json "$work/$duration/bench.json" \
        >"$work/$duration/bench.txt" 2>&1 || {
        cat "$work/$duration/bench.txt" >&2
        exit 1
    }
    python3 -c 'import json, sys; figures = json.load(open(sys.argv[1]))["figures"]; sys.exit(any(f["name"] == "missing" and f["value"] for f in figures))' \
        "$work/$duration/bench.json" || { echo "error: the run lost messages:" >&2; cat "$work/$duration/bench.txt" >&2; exit 1; }
    ls -S "$work/$duration"/callgrind.out.* | head -1
}
short_profile=$(profile $short)
long_profile=$(profile $long)

case "$scenario" in
    chat) units=$(python3 -c "print(int($rate * $long) - int($rate * $short))"); unit="message" ;;
    fanout) units=$(python3 -c "print((int($rate * $long) - int($rate * $short)) * $clients)"); unit="delivery" ;;
esac
echo "$scenario: $clients clients, $rate/s, ${short} s and ${long} s under callgrind; per $unit ($units more in the long run):"
args=("$long_profile" "$short_profile" "$units" --top "$top")
[ -n "$callees" ] && args+=(--callees "$callees")
[ -n "$owners" ] && args+=("$owners")
python3 scripts/callgrind/diff.py "${args[@]}"
