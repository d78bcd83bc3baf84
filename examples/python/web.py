#!/usr/bin/env python3
"""Serves the browser chat page of examples/web, using only the Python 3 standard library.

Usage: python3 web.py [--host 127.0.0.1] [--port 8000] [--sidecast http://127.0.0.1:3000]

This is a plain file server: sidecast only does sockets, so the page is served from here and
connects to sidecast at its own URL (given by --sidecast, or by `?server=` in the page's URL).
The browser then makes cross-origin requests: start sidecast with
`--cors-origin http://HOST:PORT` naming this server. The page also needs the Socket.IO client
in examples/web/vendor/, put there by `python3 examples/web/fetch-client.py`.
"""

import argparse
import functools
import json
import os
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

WEB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")


class PageHandler(SimpleHTTPRequestHandler):
    """Files of examples/web, plus /config.js, which tells the page where sidecast is."""

    sidecast_url = "http://127.0.0.1:3000"

    def do_GET(self):
        if self.path.split("?", 1)[0] != "/config.js":
            return super().do_GET()
        body = f"window.SIDECAST_URL = {json.dumps(self.sidecast_url)};\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/javascript; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def end_headers(self):
        # The page is edited while it runs: make browsers ask again rather than keep old copies.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format, *args):
        print("web:", self.address_string(), format % args, file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description="Serve the sidecast chat page (examples/web).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--sidecast", default=os.environ.get("SIDECAST_URL", "http://127.0.0.1:3000"),
                        help="URL of sidecast for the page (default $SIDECAST_URL, then http://127.0.0.1:3000)")
    options = parser.parse_args()

    if not os.path.exists(os.path.join(WEB, "vendor", "socket.io.min.js")):
        print("web: examples/web/vendor/socket.io.min.js is missing: "
              "run python3 examples/web/fetch-client.py", file=sys.stderr, flush=True)
    PageHandler.sidecast_url = options.sidecast
    handler = functools.partial(PageHandler, directory=WEB)
    with ThreadingHTTPServer((options.host, options.port), handler) as server:
        host, port = server.server_address[:2]
        print(f"web: serving the chat page on http://{host}:{port}/ (sidecast at {options.sidecast})",
              file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
