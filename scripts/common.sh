# Shared by scripts/test.sh and scripts/run.sh: installs what the project needs on a
# Debian/Ubuntu machine, doing nothing when it is already there. Source it; don't run it.

# System packages: the C libraries the build links, and the tools the tests use (redis-server for
# the cluster tests; socat, jq and Go for the example backends in examples/; Chromium and its
# driver for the browser test of examples/web; openssl for the TLS test's certificates; nginx as
# the round-robin load balancer of the relay test).
SIDECAST_APT_PACKAGES=(libhiredis-dev libjansson-dev libmsgpack-dev redis-server socat jq)
SIDECAST_TEST_APT_PACKAGES=(golang-go chromium chromium-driver openssl nginx-light)

step() { printf '==> %s\n' "$*" >&2; }

# How sidecast is built for use and for measuring: release, without the run-time checks of
# exclusive access (Swift 5's default keeps them in release builds). They cost a seventh of the
# instructions of a chat message and a quarter of a fan-out delivery, most of them inside
# SwiftNIO's write path (BENCHMARKS.md, "Exclusivity checks"); the compiler still enforces
# what it can prove, and the debug build the test suite runs keeps every run-time check. The
# flag must reach the dependencies too, hence -Xswiftc rather than Package.swift. Building
# with and without it in one .build rebuilds everything each time.
SIDECAST_RELEASE_FLAGS=(-c release -Xswiftc -enforce-exclusivity=unchecked)

# For the measuring scripts: builds sidecast-bench, and sidecast unless `sidecast` already
# names a binary; sets `bin` (the build's products) and `sidecast`.
build_for_measuring() {
    swift build "${SIDECAST_RELEASE_FLAGS[@]}" --product sidecast-bench >&2
    bin=$(swift build "${SIDECAST_RELEASE_FLAGS[@]}" --show-bin-path)
    if [ -z "$sidecast" ]; then
        swift build "${SIDECAST_RELEASE_FLAGS[@]}" --product sidecast >&2
        sidecast=$bin/sidecast
    fi
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

missing_apt_packages() {
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            printf '%s\n' "$pkg"
        fi
    done
}

_apt_updated=0
ensure_apt_packages() {
    local missing
    missing=$(missing_apt_packages "$@")
    if [ -z "$missing" ]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing packages and no apt-get: $(echo $missing)" >&2
        return 1
    fi
    if [ "$_apt_updated" -eq 0 ]; then
        step "apt-get update"
        as_root apt-get update -qq
        _apt_updated=1
    fi
    step "apt-get install $(echo $missing)"
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

ensure_system_packages() {
    step "checking system packages"
    ensure_apt_packages "${SIDECAST_APT_PACKAGES[@]}"
}

# What only the tests need, and Node unless some node is already on PATH.
ensure_test_packages() {
    ensure_apt_packages "${SIDECAST_TEST_APT_PACKAGES[@]}"
    if ! command -v node >/dev/null 2>&1; then
        ensure_apt_packages nodejs
    fi
}

# Creates .venv (gitignored) with the test requirements, and .venv-eio3 with the Engine.IO v3
# clients (python-socketio 4.x cannot share a venv with 5.x). A stamp holding the hash of the
# requirements file makes a second run skip pip entirely.
ensure_venv() {
    ensure_one_venv .venv scripts/requirements-test.txt
    ensure_one_venv .venv-eio3 scripts/requirements-eio3.txt
}

ensure_one_venv() {
    local venv=$1
    local requirements=$2
    local stamp=$venv/.requirements.sha256
    local want
    want=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ -x "$venv"/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        step "python venv $venv up to date"
        return 0
    fi
    if [ ! -x "$venv"/bin/python ]; then
        step "creating python venv $venv"
        if ! python3 -m venv "$venv" 2>/dev/null; then
            # Debian's own python3 ships venv/ensurepip separately.
            rm -rf "$venv"
            ensure_apt_packages python3-venv
            python3 -m venv "$venv"
        fi
    fi
    step "installing python packages into $venv"
    "$venv"/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
    printf '%s\n' "$want" >"$stamp"
}
