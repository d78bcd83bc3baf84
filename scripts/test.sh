#!/usr/bin/env bash
# The test command: installs what is missing, builds sidecast (debug) and runs the whole
# suite (unit tests and the integration tests that drive the real binary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/common.sh
source scripts/common.sh

if ! command -v swift >/dev/null 2>&1; then
    echo "error: swift is not on PATH (Swift 6 toolchain required)" >&2
    exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
    ensure_apt_packages python3 python3-venv
fi

ensure_system_packages
ensure_test_packages
ensure_venv

step "fetching the Socket.IO browser client for examples/web"
.venv/bin/python examples/web/fetch-client.py

step "swift build (debug)"
swift build

SIDECAST_BIN="$(swift build --show-bin-path)/sidecast"
SIDECAST_PYTHON="$PWD/.venv/bin/python"
export SIDECAST_BIN SIDECAST_PYTHON
if [ ! -x "$SIDECAST_BIN" ]; then
    echo "error: build produced no sidecast binary" >&2
    exit 1
fi

step "swift test"
# The project's tests are XCTest; without this, Swift Testing would close the output with a
# "0 tests" line of its own. The integration tests start every sidecast with one event loop,
# then, for a whole run, again with four (more loops than this machine may have cores, on
# purpose: correctness must not depend on the number of cores).
SIDECAST_TEST_THREADS="${SIDECAST_TEST_THREADS:-1}" swift test --disable-swift-testing "$@"
if [ $# -eq 0 ]; then
    step "integration tests with --threads 4"
    SIDECAST_TEST_THREADS=4 swift test --disable-swift-testing --skip-build --filter IntegrationTests.IntegrationTests
fi
