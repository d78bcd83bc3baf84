#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ (address sanitizer on) and runs each for a while.
#
#   scripts/fuzz.sh                      every target, 20 s each (what CI runs)
#   scripts/fuzz.sh FuzzBridge 300       one target for 5 minutes
#   scripts/fuzz.sh all 60               every target, 60 s each
#   scripts/fuzz.sh FuzzBridge crash-…   re-run one input (a crash libFuzzer saved), then stop
#
# The build lives in .build-fuzz, apart from the normal one. New inputs libFuzzer finds go to
# .build-fuzz/corpus/TARGET (kept between runs); the committed seeds in Fuzz/Corpus/TARGET are
# only read. A crash, a hang (-timeout) or an allocation past -malloc_limit_mb is saved as
# .build-fuzz/artifacts/TARGET-crash-… and fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

ALL_TARGETS=(FuzzEngineIO FuzzSocketIO FuzzBridge FuzzAdapter FuzzRedis)
SCRATCH=.build-fuzz

target=${1:-all}
seconds_or_input=${2:-20}
if [ "$target" = all ]; then
    targets=("${ALL_TARGETS[@]}")
elif [[ " ${ALL_TARGETS[*]} " == *" $target "* ]]; then
    targets=("$target")
else
    echo "error: unknown fuzz target '$target' (one of: ${ALL_TARGETS[*]}, or all)" >&2
    exit 2
fi

ensure_system_packages

build_flags=(-c debug --scratch-path "$SCRATCH" -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
export SIDECAST_FUZZ=1
for t in "${targets[@]}"; do
    step "building $t"
    # gold warns once per object about an ASan symbol it cannot export; nothing to act on.
    swift build "${build_flags[@]}" --product "$t" 2>&1 | { grep -v "Cannot export local symbol '__asan" || true; }
done
bin_dir=$(swift build "${build_flags[@]}" --show-bin-path)

if [ -f "$seconds_or_input" ]; then
    exec "$bin_dir/${targets[0]}" "$seconds_or_input"
fi
if ! [[ "$seconds_or_input" =~ ^[0-9]+$ ]]; then
    echo "error: '$seconds_or_input' is neither a number of seconds nor an input file" >&2
    exit 2
fi

mkdir -p "$SCRATCH/artifacts"
failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$SCRATCH/corpus/$t"
    log="$SCRATCH/artifacts/$t.log"
    step "fuzzing $t for ${seconds_or_input}s"
    # -timeout: an input taking over 10 s is a hang. -malloc_limit_mb: one allocation over
    # 256 MiB is a finding (no message a peer sends should cost that). -rss_limit_mb bounds
    # the whole process.
    status=0
    "$bin_dir/$t" \
        -max_total_time="$seconds_or_input" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -malloc_limit_mb=256 \
        -print_final_stats=1 \
        -artifact_prefix="$SCRATCH/artifacts/$t-" \
        "$SCRATCH/corpus/$t" "Fuzz/Corpus/$t" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        failed+=("$t")
        summary+=("$t: FAILED after ${runs:-?} executions (log: $log)")
    else
        summary+=("$t: ${runs:-?} executions, no finding")
    fi
done

step "fuzzing summary"
printf '  %s\n' "${summary[@]}" >&2
if [ "${#failed[@]}" -gt 0 ]; then
    echo "error: fuzzing found a problem in: ${failed[*]} (inputs in $SCRATCH/artifacts/)" >&2
    exit 1
fi
