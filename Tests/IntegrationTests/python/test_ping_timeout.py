"""Heartbeats: a client that stops answering pings (or stops polling) is dropped with
"ping timeout"; a client that never joins a namespace is dropped after --connect-timeout;
well-behaved clients on the same server are not affected."""

import time
import unittest

import requests
import websocket

from harness import TIMEOUT, RawPolling, RawSocketIO, SidecastTestCase

INTERVAL_MS = 300
TIMEOUT_MS = 300


class PingTimeoutTests(SidecastTestCase):
    sidecast_flags = ("--ping-interval", INTERVAL_MS, "--ping-timeout", TIMEOUT_MS)

    def test_silent_websocket_client_is_dropped(self):
        good, good_connect = self.connected_client()
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        self.assertEqual((raw.open["pingInterval"], raw.open["pingTimeout"]), (INTERVAL_MS, TIMEOUT_MS))
        sid = raw.connect()
        self.backend.expect_connect(sid=sid)
        started = time.monotonic()
        self.assertEqual(raw.ws.recv(), "2")
        # Never answer: the server must close within interval + timeout (plus slack).
        with self.assertRaises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
            while True:
                message = raw.ws.recv()
                self.assertIn(message, ("2", ""), "only pings (or the close) may arrive")
                if message == "":
                    raise websocket.WebSocketConnectionClosedException("closed")
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, (INTERVAL_MS + TIMEOUT_MS) / 1000 + 3)
        disconnect = self.backend.expect("disconnect", sid=sid)
        self.assertEqual(disconnect["reason"], "ping timeout")

        # The python-socketio client answers pings and survives several intervals.
        time.sleep(3 * (INTERVAL_MS + TIMEOUT_MS) / 1000)
        self.backend.assert_no("disconnect", within=0.01, sid=good_connect["sid"])
        good.emit("alive", 1)
        self.backend.expect_event("alive", sid=good_connect["sid"])

    def test_polling_client_that_stops_polling_is_dropped(self):
        good, good_connect = self.connected_client(transports=["polling"])
        polling = RawPolling(self.sidecast)
        sid = polling.connect()
        self.backend.expect_connect(sid=sid)
        disconnect = self.backend.expect("disconnect", sid=sid)
        self.assertEqual(disconnect["reason"], "ping timeout")
        response = requests.get(polling.url, timeout=TIMEOUT)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json(), {"code": 1, "message": "Session ID unknown"})
        self.backend.assert_no("disconnect", within=0.01, sid=good_connect["sid"])
        good.emit("alive", 1)
        self.backend.expect_event("alive", sid=good_connect["sid"])

    def test_answering_pings_by_hand_keeps_the_session(self):
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        sid = raw.connect()
        self.backend.expect_connect(sid=sid)
        deadline = time.monotonic() + 3 * (INTERVAL_MS + TIMEOUT_MS) / 1000
        pings = 0
        while time.monotonic() < deadline:
            self.assertEqual(raw.ws.recv(), "2")
            raw.ws.send("3")
            pings += 1
        self.assertGreaterEqual(pings, 3)
        self.backend.assert_no("disconnect", within=0.01, sid=sid)


class ConnectTimeoutTests(SidecastTestCase):
    sidecast_flags = ("--connect-timeout", "500")

    def test_client_that_never_joins_a_namespace_is_closed(self):
        good, good_connect = self.connected_client()
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        started = time.monotonic()
        with self.assertRaises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
            while True:
                if raw.ws.recv() == "":
                    raise websocket.WebSocketConnectionClosedException("closed")
        self.assertLess(time.monotonic() - started, 3)
        self.assertGreater(time.monotonic() - started, 0.3)
        good.emit("alive", 1)
        self.backend.expect_event("alive", sid=good_connect["sid"])


if __name__ == "__main__":
    unittest.main()
