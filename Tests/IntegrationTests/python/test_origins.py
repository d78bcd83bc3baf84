"""Cross-site WebSocket hijacking: with --cors-origin set, every Engine.IO request whose Origin is
not allowed is refused with 403 and Engine.IO's "Forbidden" error, logged (rate-limited) and
counted in /metrics; requests without Origin, from sidecast's own origin or from an allowed
origin get through. Without --cors-origin nothing is checked, and a cross-origin poll, which the
browser will not let its page read, is logged. Then headless Chromium: a page from a foreign
origin cannot connect, the same page from an allowed origin can.

Error bodies and the 403 status follow Node's engine.io (packages/engine.io/lib/server.ts,
`abortRequest`: code 4 "Forbidden" is answered with 403). Python's websocket-client sends
`Origin: http://HOST:PORT` of the server it connects to unless told otherwise, which is how the
python-socketio client below gets through as sidecast's own origin."""

import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import requests
import websocket

from browser import BROWSER_WAIT, CLIENT_BUNDLE, ChromiumTestCase
from harness import SIDECAST_BIN, TIMEOUT, SidecastTestCase, eio_url, free_port, start_sidecast
from test_ops import metric, scrape

try:
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # reported by ChromiumTestCase.setUpClass
    pass

FORBIDDEN = {"code": 4, "message": "Origin not allowed"}
EVIL = "https://evil.example"
UPGRADE_HEADERS = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def ws_url(sidecast, sid=None):
    return eio_url(sidecast, transport="websocket", sid=sid).replace("http://", "ws://", 1)


class AllowedOriginTests(SidecastTestCase):
    sidecast_flags = ("--cors-origin", "http://app.example", "--cors-origin", "https://*.example.com")

    def setUp(self):
        self.admin_port = free_port()
        self.sidecast_flags = self.sidecast_flags + ("--admin-port", self.admin_port)
        super().setUp()
        self.sidecast.admin = f"http://127.0.0.1:{self.admin_port}"

    def assert_forbidden(self, response):
        self.assertEqual(response.status_code, 403, response.text)
        self.assertEqual(response.headers.get("Content-Type"), "application/json")
        self.assertEqual(response.json(), FORBIDDEN)
        self.assertIsNone(response.headers.get("Access-Control-Allow-Origin"))

    def websocket_request(self, origin, sid=None):
        """A WebSocket handshake sent with `requests`, which reads a refusal's body (a 101 would
        leave it waiting, so this is only for origins that are refused)."""
        return requests.get(eio_url(self.sidecast, transport="websocket", sid=sid), timeout=TIMEOUT,
                            headers={**UPGRADE_HEADERS, "Origin": origin})

    def open_websocket(self, origin):
        """An Engine.IO WebSocket opened with `Origin: origin`; returns its open packet."""
        ws = websocket.create_connection(ws_url(self.sidecast), timeout=TIMEOUT, origin=origin)
        self.addCleanup(ws.close)
        opening = ws.recv()
        self.assertTrue(opening.startswith("0"), opening)
        return json.loads(opening[1:])

    def refused_count(self):
        return metric(scrape(self.sidecast), "sidecast_connections_refused_total", reason="origin")

    def test_foreign_origin_on_a_websocket_handshake_is_refused(self):
        self.assert_forbidden(self.websocket_request(EVIL))
        # And as a WebSocket client sees it.
        with self.assertRaises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(ws_url(self.sidecast), timeout=TIMEOUT, origin=EVIL)
        self.assertEqual(refused.exception.status_code, 403)
        self.backend.assert_no("connect", within=0.2)

    def test_foreign_origin_on_a_polling_handshake_is_refused(self):
        self.assert_forbidden(requests.get(eio_url(self.sidecast), headers={"Origin": EVIL}, timeout=TIMEOUT))

    def test_foreign_origin_cannot_upgrade_poll_or_post_in_an_open_session(self):
        client, connect = self.connected_client(transports=["polling"])
        # A bare polling session of our own, opened without Origin, whose sid the page would know.
        opened = requests.get(eio_url(self.sidecast), timeout=TIMEOUT)
        self.assertEqual(opened.status_code, 200)
        sid = json.loads(opened.text[1:])["sid"]
        self.assert_forbidden(self.websocket_request(EVIL, sid=sid))
        self.assert_forbidden(requests.get(eio_url(self.sidecast, sid=sid), headers={"Origin": EVIL}, timeout=TIMEOUT))
        self.assert_forbidden(requests.post(eio_url(self.sidecast, sid=sid), data="40", headers={"Origin": EVIL},
                                            timeout=TIMEOUT))
        self.backend.assert_no("connect", within=0.2)
        # The session is untouched: without the foreign origin it connects to "/" as usual.
        self.assertEqual(requests.post(eio_url(self.sidecast, sid=sid), data="40", timeout=TIMEOUT).status_code, 200)
        self.backend.expect_connect()
        # And the python-socketio client carried on through all of it.
        client.emit("still-here", 1)
        self.backend.expect_event("still-here", sid=connect["sid"])

    def test_allowed_origins_and_no_origin_get_through(self):
        for origin in ("http://app.example", "https://chat.example.com", "https://a.b.example.com"):
            response = requests.get(eio_url(self.sidecast), headers={"Origin": origin}, timeout=TIMEOUT)
            self.assertEqual(response.status_code, 200, origin)
            self.assertEqual(response.headers.get("Access-Control-Allow-Origin"), origin)
            self.assertIn("sid", self.open_websocket(origin))
        self.assertEqual(requests.get(eio_url(self.sidecast), timeout=TIMEOUT).status_code, 200)
        ws = websocket.create_connection(ws_url(self.sidecast), timeout=TIMEOUT, suppress_origin=True)
        self.addCleanup(ws.close)
        self.assertTrue(ws.recv().startswith("0"))
        # python-socketio over WebSocket sends sidecast's own URL as its Origin.
        client, connect = self.connected_client(transports=["websocket"])
        self.assertEqual(client.transport(), "websocket")
        # An allowed origin may also upgrade a session.
        sid = json.loads(requests.get(eio_url(self.sidecast), timeout=TIMEOUT).text[1:])["sid"]
        ws = websocket.create_connection(ws_url(self.sidecast, sid=sid), timeout=TIMEOUT, origin="http://app.example")
        self.addCleanup(ws.close)
        ws.send("2probe")
        self.assertEqual(ws.recv(), "3probe")

    def test_the_wildcard_matches_subdomains_and_not_lookalikes(self):
        self.assertIn("sid", self.open_websocket("https://chat.example.com"))
        for lookalike in ("https://example.com.evil.net", "https://evilexample.com", "https://example.com",
                          "http://chat.example.com", "https://chat.example.com:8443"):
            self.assert_forbidden(self.websocket_request(lookalike))
            self.assert_forbidden(requests.get(eio_url(self.sidecast), headers={"Origin": lookalike},
                                               timeout=TIMEOUT))

    def test_refusals_are_counted_and_logged_at_most_once_a_minute(self):
        before = self.refused_count()
        for _ in range(3):
            self.assert_forbidden(self.websocket_request(EVIL))
            self.assert_forbidden(requests.get(eio_url(self.sidecast), headers={"Origin": "https://other.example"},
                                               timeout=TIMEOUT))
        self.assertEqual(self.refused_count(), before + 6)
        self.sidecast.wait_for_log("refused a request from origin https://evil.example")
        lines = [line for line in self.sidecast.proc.log_lines if "refused a request from origin" in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("--cors-origin", lines[0])


class NoAllowedOriginTests(SidecastTestCase):
    """Without --cors-origin, behaviour as before: any origin connects, polling gets no CORS
    headers. A cross-origin poll is logged, since the browser will refuse its page the answer."""

    def test_any_origin_connects(self):
        ws = websocket.create_connection(ws_url(self.sidecast), timeout=TIMEOUT, origin=EVIL)
        self.addCleanup(ws.close)
        self.assertTrue(ws.recv().startswith("0"))
        response = requests.get(eio_url(self.sidecast), headers={"Origin": EVIL}, timeout=TIMEOUT)
        self.assertEqual(response.status_code, 200)
        self.assertIsNone(response.headers.get("Access-Control-Allow-Origin"))

    def test_a_cross_origin_poll_says_which_flag_would_let_it_read(self):
        for _ in range(3):
            requests.get(eio_url(self.sidecast), headers={"Origin": "http://localhost:8000"}, timeout=TIMEOUT)
        self.sidecast.wait_for_log("--cors-origin http://localhost:8000")
        lines = [line for line in self.sidecast.proc.log_lines if "gets no CORS headers" in line]
        self.assertEqual(len(lines), 1, lines)
        # Its own origin is no cross-origin request.
        own = requests.get(eio_url(self.sidecast), headers={"Origin": self.sidecast.url}, timeout=TIMEOUT)
        self.assertEqual(own.status_code, 200)
        self.assertFalse(any(self.sidecast.url in line for line in self.sidecast.proc.log_lines
                             if "gets no CORS headers" in line))


class InvalidOriginTests(unittest.TestCase):
    def test_a_value_that_is_no_origin_stops_sidecast_at_start(self):
        if not SIDECAST_BIN:
            raise unittest.SkipTest("SIDECAST_BIN is not set: run scripts/test.sh")
        for value, says in (("https://app.example/", "no path"), ("app.example", "scheme://host"),
                            ("https://*.*.example", "wildcard"), ("https://a*.example", "'*'")):
            run = subprocess.run([SIDECAST_BIN, "--cors-origin", value, "--port", "0", "--admin-port", "0"],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(run.returncode, 1, run.stderr)
            self.assertIn("--cors-origin", run.stderr)
            self.assertIn(value, run.stderr)
            self.assertIn(says, run.stderr)


class _Pages(ThreadingHTTPServer):
    daemon_threads = True


def serve(directory):
    """A static HTTP server of `directory` on a free loopback port, in a thread; returns its origin."""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            pass
    server = _Pages(("127.0.0.1", 0), functools.partial(Quiet, directory=directory))
    threading.Thread(target=server.serve_forever, daemon=True, name="pages").start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


PROBE_PAGE = """<!doctype html>
<script src="socket.io.min.js"></script>
<script>
  // Connects with one transport and says in the title what happened.
  const params = new URLSearchParams(location.search);
  const socket = io(params.get("server"), { transports: [params.get("transport")], reconnection: false });
  socket.on("connect", () => { document.title = "connected " + socket.io.engine.transport.name; });
  socket.on("connect_error", (err) => { document.title = "refused: " + err.message; });
</script>
"""


class BrowserOriginTests(ChromiumTestCase):
    """The same probe page, served by two local HTTP servers (two origins): only the page of the
    allowed origin connects. The chat page on its own origin is test_browser's: its sidecast has
    --cors-origin set to the page's origin, so the check runs there too. Chromium is found and
    skipped (outside CI) as in test_browser."""

    def setUp(self):
        pages = tempfile.TemporaryDirectory(prefix="sidecast-pages-")
        self.addCleanup(pages.cleanup)
        with open(os.path.join(pages.name, "probe.html"), "w") as page:
            page.write(PROBE_PAGE)
        shutil.copy(CLIENT_BUNDLE, pages.name)
        self.pages = {}
        for name in ("allowed", "foreign"):
            server, origin = serve(pages.name)
            self.addCleanup(server.server_close)
            self.addCleanup(server.shutdown)
            self.pages[name] = origin
        self.driver = self.start_chromium()

    def probe(self, page, sidecast, transport):
        """Opens the probe page of origin `page`; returns its title once it connected or failed."""
        self.driver.get(f"{self.pages[page]}/probe.html?server={sidecast.url}&transport={transport}")
        WebDriverWait(self.driver, BROWSER_WAIT, poll_frequency=0.05).until(
            lambda driver: driver.title.startswith(("connected", "refused")),
            f"waiting for the {page} page to connect over {transport}")
        return self.driver.title

    def test_a_page_from_a_foreign_origin_cannot_connect(self):
        sidecast = start_sidecast(self, "--cors-origin", self.pages["allowed"])
        for transport in ("websocket", "polling"):
            self.assertEqual(self.probe("allowed", sidecast, transport), f"connected {transport}")
            self.assertTrue(self.probe("foreign", sidecast, transport).startswith("refused"), transport)
        sidecast.wait_for_log(f"refused a request from origin {self.pages['foreign']}")

    def test_without_allowed_origins_a_foreign_page_connects_over_websocket(self):
        """What README warns of: with no list, any page opens a WebSocket."""
        sidecast = start_sidecast(self)
        self.assertEqual(self.probe("foreign", sidecast, "websocket"), "connected websocket")


if __name__ == "__main__":
    unittest.main()
