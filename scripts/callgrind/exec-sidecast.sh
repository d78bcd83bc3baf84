#!/bin/sh
# sidecast-bench's --sidecast for scripts/callgrind-bench.sh: runs the binary it names under
# callgrind, writing the profile where that script reads it.
exec env LD_PRELOAD="$CALLGRIND_SHIM" valgrind --tool=callgrind --callgrind-out-file="$CALLGRIND_OUT.%p" "$CALLGRIND_SIDECAST" "$@"
