"""Bad HTTP and WebSocket requests get Engine.IO's error answers, and a well-behaved client
connected at the same time keeps working after each of them."""

import unittest

import requests
import websocket

from harness import TIMEOUT, RawPolling, RawSocketIO, SidecastTestCase, eio_url, raw_websocket

MAX_PAYLOAD = 10000


class BadHTTPTests(SidecastTestCase):
    sidecast_flags = ("--max-payload", MAX_PAYLOAD)

    def setUp(self):
        super().setUp()
        self.good, connect = self.connected_client(transports=["polling"])
        self.good_sid = connect["sid"]

    def tearDown(self):
        # The well-behaved client is unaffected by whatever the test did.
        self.good.emit("still-working", 1)
        self.backend.expect_event("still-working", sid=self.good_sid)
        self.backend.emit("reply", 2, to=[self.good_sid])
        self.assertEqual(self.good.wait_for("reply"), (2,))
        self.backend.assert_no("disconnect", within=0.01, sid=self.good_sid)

    def assert_error(self, response, status, code, message):
        self.assertEqual(response.status_code, status, response.text)
        self.assertEqual(response.json(), {"code": code, "message": message})

    def test_unknown_sid(self):
        url = eio_url(self.sidecast, sid="doesnotexist")
        self.assert_error(requests.get(url, timeout=TIMEOUT), 400, 1, "Session ID unknown")
        self.assert_error(requests.post(url, data="40", timeout=TIMEOUT), 400, 1, "Session ID unknown")

    def test_unknown_transport(self):
        response = requests.get(eio_url(self.sidecast, transport="carrier-pigeon"), timeout=TIMEOUT)
        self.assert_error(response, 400, 0, "Transport unknown")

    def test_eio3_is_unsupported(self):
        response = requests.get(eio_url(self.sidecast, eio="3"), timeout=TIMEOUT)
        self.assert_error(response, 400, 5, "Unsupported protocol version")

    def test_missing_eio(self):
        response = requests.get(f"{self.sidecast.url}/socket.io/?transport=polling", timeout=TIMEOUT)
        self.assertEqual(response.status_code, 400)
        self.assertIn(response.json()["code"], (3, 5))

    def test_handshake_must_be_get(self):
        response = requests.post(eio_url(self.sidecast), data="40", timeout=TIMEOUT)
        self.assert_error(response, 400, 2, "Bad handshake method")

    def test_websocket_transport_without_upgrade(self):
        response = requests.get(eio_url(self.sidecast, transport="websocket"), timeout=TIMEOUT)
        self.assert_error(response, 400, 3, "Bad request")

    def test_polling_a_websocket_session(self):
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        response = requests.get(eio_url(self.sidecast, sid=raw.open["sid"]), timeout=TIMEOUT)
        self.assert_error(response, 400, 3, "Bad request")

    def test_websocket_with_unknown_sid(self):
        with self.assertRaises(websocket.WebSocketBadStatusException) as failure:
            raw_websocket(self.sidecast, sid="doesnotexist")
        self.assertEqual(failure.exception.status_code, 400)

    def test_other_paths_are_not_socket_io(self):
        response = requests.get(f"{self.sidecast.url}/other/?EIO=4&transport=polling", timeout=TIMEOUT)
        self.assertEqual(response.status_code, 404)

    def test_oversized_polling_post(self):
        polling = RawPolling(self.sidecast)
        sid = polling.connect()
        self.backend.expect_connect(sid=sid)
        big = '42["big","' + "x" * (MAX_PAYLOAD + 100) + '"]'
        response = polling.post(big)
        self.assertEqual(response.status_code, 413)
        self.backend.assert_no("event", within=0.3, event="big")

    def test_payload_just_under_the_limit_is_accepted(self):
        text = "y" * (MAX_PAYLOAD - 100)
        self.good.emit("big", text)
        self.assertEqual(self.backend.expect_event("big", sid=self.good_sid)["args"], [text])

    def test_oversized_websocket_message(self):
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        sid = raw.connect()
        self.backend.expect_connect(sid=sid)
        raw.ws.send('42["big","' + "x" * (MAX_PAYLOAD + 100) + '"]')
        with self.assertRaises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
            while True:
                if raw.ws.recv() == "":
                    raise websocket.WebSocketConnectionClosedException("closed")
        self.backend.expect("disconnect", sid=sid)
        self.backend.assert_no("event", within=0.1, event="big")

    def test_cors_preflight_and_origin(self):
        response = requests.options(eio_url(self.sidecast), timeout=TIMEOUT,
                                    headers={"Origin": "http://elsewhere.example",
                                             "Access-Control-Request-Method": "GET"})
        self.assertNotEqual(response.headers.get("Access-Control-Allow-Origin"),
                            "http://elsewhere.example")


class CORSTests(SidecastTestCase):
    sidecast_flags = ("--cors-origin", "http://app.example", "--cors-origin", "http://other.example")

    def test_allowed_origin_is_echoed(self):
        for origin in ("http://app.example", "http://other.example"):
            response = requests.get(eio_url(self.sidecast), headers={"Origin": origin}, timeout=TIMEOUT)
            self.assertEqual(response.status_code, 200)
            self.assertEqual(response.headers.get("Access-Control-Allow-Origin"), origin)
            preflight = requests.options(eio_url(self.sidecast), timeout=TIMEOUT,
                                         headers={"Origin": origin,
                                                  "Access-Control-Request-Method": "POST"})
            self.assertIn(preflight.status_code, (200, 204))
            self.assertEqual(preflight.headers.get("Access-Control-Allow-Origin"), origin)

    def test_other_origin_gets_no_cors_header(self):
        response = requests.get(eio_url(self.sidecast), headers={"Origin": "http://evil.example"},
                                timeout=TIMEOUT)
        self.assertNotEqual(response.headers.get("Access-Control-Allow-Origin"), "http://evil.example")
        self.assertNotEqual(response.headers.get("Access-Control-Allow-Origin"), "*")


if __name__ == "__main__":
    unittest.main()
