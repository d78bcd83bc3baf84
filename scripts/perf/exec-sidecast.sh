#!/bin/bash
# sidecast-bench's --sidecast for scripts/perf-bench.sh: runs the binary it names under
# `perf record` (PERF_MODE=perf) or `strace -c` (PERF_MODE=strace), writing to PERF_OUT.
case "$*" in *--help*) exec "$PERF_SIDECAST" "$@" ;; esac
if [ "$PERF_MODE" = perf ]; then
    exec perf record -q -g -F "$PERF_HZ" -e cpu-clock -o "$PERF_OUT" "$PERF_SIDECAST" "$@"
fi
# strace: the bench stops sidecast with SIGTERM, which would end a parent strace before its
# summary, so strace attaches to every thread of a sidecast started here and is stopped first.
"$PERF_SIDECAST" "$@" &
sidecast=$!
strace -f -c -o "$PERF_OUT" -p "$sidecast" 2>/dev/null &
tracer=$!
trap 'kill -INT $tracer; wait $tracer; kill -TERM $sidecast' TERM INT
wait $sidecast
wait $sidecast
