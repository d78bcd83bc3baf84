#!/usr/bin/env bash
# The run command: installs what is missing, builds sidecast (release) and runs it in the
# foreground. Every argument is passed to sidecast, e.g. scripts/run.sh --port 8080.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

ensure_system_packages

step "swift build ${SIDECAST_RELEASE_FLAGS[*]}"
swift build "${SIDECAST_RELEASE_FLAGS[@]}"

step "starting sidecast"
exec "$(swift build "${SIDECAST_RELEASE_FLAGS[@]}" --show-bin-path)/sidecast" "$@"
