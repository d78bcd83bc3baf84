"""Transports: WebSocket only, polling only, the polling → WebSocket upgrade, the handshake
that backends see, and the Engine.IO open packet."""

import concurrent.futures
import json
import time
import unittest

import requests

from harness import (SidecastTestCase, TIMEOUT, Client, RawPolling, RawSocketIO, eio_url,
                     polling_handshake, raw_websocket, start_sidecast, wait_until)


class TransportTests(SidecastTestCase):
    def roundtrip(self, client, nsp="/"):
        """Client → backend and backend → client with the socket's own sid as the room."""
        sid = client.sid(nsp)
        client.emit("hello", "there", 1, nsp=nsp)
        event = self.backend.expect_event("hello", nsp=nsp, sid=sid)
        self.assertEqual(event["args"], ["there", 1])
        self.assertNotIn("ack", event)
        self.backend.emit("greet", {"n": 1}, nsp=nsp, to=[sid])
        self.assertEqual(client.wait_for("greet", nsp=nsp), ({"n": 1},))

    def assert_handshake(self, connect, transport):
        handshake = connect["handshake"]
        self.assertEqual(set(handshake), {"headers", "query", "address", "url", "issued", "secure"})
        self.assertEqual(handshake["query"]["transport"], transport)
        self.assertEqual(handshake["query"]["EIO"], "4")
        self.assertEqual(handshake["address"], "127.0.0.1")
        self.assertFalse(handshake["secure"])
        self.assertTrue(handshake["url"].startswith("/socket.io/?"), handshake["url"])
        self.assertEqual(handshake["headers"]["host"], f"127.0.0.1:{self.sidecast.port}")
        self.assertLess(abs(handshake["issued"] / 1000 - time.time()), 60)
        self.assertEqual(connect["auth"], {})  # python-socketio sends {} when given no auth
        self.assertIsNone(connect["data"])
        self.assertNotIn("req", connect)
        self.assertNotIn("resumed", connect)

    def test_websocket_only(self):
        client, connect = self.connected_client(transports=["websocket"])
        self.assertEqual(client.transport(), "websocket")
        self.assert_handshake(connect, "websocket")
        self.roundtrip(client)

    def test_websocket_messages_larger_than_a_read_arrive_whole(self):
        """Frames of several hundred KiB take many reads: the frame reader keeps what it has of
        a frame between them, both ways, and the messages arrive whole and in order."""
        client, connect = self.connected_client(transports=["websocket"])
        sid = connect["sid"]
        texts = ["a" * 300_000, "b" * 70_000, "c"]
        for text in texts:
            client.emit("big", text)
        self.assertEqual([self.backend.expect_event("big", sid=sid)["args"] for _ in texts], [[t] for t in texts])
        for text in texts:
            self.backend.emit("big", text, to=[sid])
        self.assertEqual([client.wait_for("big") for _ in texts], [(t,) for t in texts])

    def test_polling_only(self):
        client, connect = self.connected_client(transports=["polling"])
        self.assertEqual(client.transport(), "polling")
        self.assert_handshake(connect, "polling")
        self.roundtrip(client)

    def test_polling_keeps_order_both_ways(self):
        client, connect = self.connected_client(transports=["polling"])
        sid = connect["sid"]
        for i in range(12):
            self.backend.emit("n", i, to=[sid])
        self.assertEqual([client.wait_for("n")[0] for _ in range(12)], list(range(12)))
        for i in range(30):
            client.emit("seq", i)
        self.assertEqual([self.backend.expect_event("seq", sid=sid)["args"][0] for _ in range(30)],
                         list(range(30)))

    def test_polling_burst_larger_than_python_engineio_payload_limit(self):
        # python-engineio rejects a poll response of more than 16 packets and drops the
        # connection ("Unexpected packet from server"): a burst must be split across polls.
        client, connect = self.connected_client(transports=["polling"])
        for i in range(40):
            self.backend.emit("n", i, to=[connect["sid"]])
        self.assertEqual([client.wait_for("n")[0] for _ in range(40)], list(range(40)))
        client.assert_no("disconnect", within=0.01)

    def test_upgrade_from_polling_to_websocket(self):
        # python-socketio's default: handshake over polling, then probe and upgrade.
        client, connect = self.connected_client(transports=["polling", "websocket"])
        self.assert_handshake(connect, "polling")
        self.assertEqual(client.transport(), "websocket")
        self.roundtrip(client)
        self.backend.assert_no("disconnect", within=0.3, sid=connect["sid"])

    def test_messages_sent_around_the_upgrade_are_not_lost(self):
        """A hand-driven upgrade: events emitted before, during and after it arrive once, in order."""
        polling = RawPolling(self.sidecast)
        sid = polling.connect()
        self.backend.expect_connect(sid=sid)
        ticks = []

        def collect(packets):
            for packet in packets:
                if packet.startswith("42"):
                    ticks.append(json.loads(packet[2:])[1])

        for i in range(0, 5):
            self.backend.emit("tick", i, to=[sid])
        wait_until(lambda: collect(polling.get()) or len(ticks) >= 5, message="ticks 0-4 by polling")

        pending = concurrent.futures.ThreadPoolExecutor(1).submit(polling.get)
        ws = raw_websocket(self.sidecast, sid=polling.sid)
        self.addCleanup(ws.close)
        ws.send("2probe")
        self.assertEqual(ws.recv(), "3probe")
        # The server must release the pending poll so that the client can finish the upgrade.
        collect(pending.result(timeout=TIMEOUT))
        for i in range(5, 10):
            self.backend.emit("tick", i, to=[sid])
        ws.send("5")
        for i in range(10, 15):
            self.backend.emit("tick", i, to=[sid])
        while len(ticks) < 15:
            message = ws.recv()
            if message != "2":
                collect([message])
        self.assertEqual(ticks, list(range(15)))

        ws.send('42["after",1]')
        self.assertEqual(self.backend.expect_event("after", sid=sid)["args"], [1])
        self.backend.assert_no("disconnect", within=0.2, sid=sid)
        self.assertEqual(requests.get(polling.url, timeout=TIMEOUT).status_code, 400)

    def test_query_auth_and_headers_reach_the_backend(self):
        client = Client(self.sidecast.url + "/?room=lobby&who=a+b%21", transports=["websocket"],
                        auth={"token": "t0k"}, headers={"X-Test": "yes"})
        self.addCleanup(client.close)
        client.connect()
        connect = self.backend.expect_connect(sid=client.sid())
        self.assertEqual(connect["auth"], {"token": "t0k"})
        self.assertEqual(connect["handshake"]["query"]["room"], "lobby")
        self.assertEqual(connect["handshake"]["query"]["who"], "a b!")
        self.assertEqual(connect["handshake"]["headers"]["x-test"], "yes")

    def test_each_client_gets_its_own_sid(self):
        a, ca = self.connected_client()
        b, cb = self.connected_client(transports=["polling"])
        self.assertNotEqual(ca["sid"], cb["sid"])
        self.backend.emit("only", "a", to=[ca["sid"]])
        self.assertEqual(a.wait_for("only"), ("a",))
        b.assert_no("only", within=0.3)

    def test_client_disconnect_reaches_the_backend(self):
        client, connect = self.connected_client()
        client.close()
        message = self.backend.expect("disconnect", sid=connect["sid"])
        self.assertEqual(message["nsp"], "/")
        # python-engineio may close the WebSocket before its DISCONNECT packet is written.
        self.assertIn(message["reason"], ("client namespace disconnect", "transport close"))

    def test_namespace_disconnect_packet(self):
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        sid = raw.connect()
        connect = self.backend.expect_connect(sid=sid)
        self.assertIsNone(connect["auth"])  # a CONNECT packet without a payload
        raw.ws.send("41")
        message = self.backend.expect("disconnect", sid=sid)
        self.assertEqual(message["reason"], "client namespace disconnect")
        # The Engine.IO connection stays open: the client may join again, with a new sid.
        again = raw.connect()
        self.assertNotEqual(again, sid)
        self.backend.expect_connect(sid=again)

    def test_closed_websocket_is_transport_close(self):
        raw = RawSocketIO(self.sidecast)
        sid = raw.connect()
        self.backend.expect_connect(sid=sid)
        raw.ws.close()
        message = self.backend.expect("disconnect", sid=sid)
        self.assertEqual(message["reason"], "transport close")

    def test_sid_is_gone_after_disconnect(self):
        client, connect = self.connected_client()
        client.close()
        self.backend.expect("disconnect", sid=connect["sid"])
        reply = self.backend.request({"type": "join", "sid": connect["sid"], "nsp": "/", "rooms": ["x"]})
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["code"], "unknown_sid")


class OpenPacketTests(unittest.TestCase):
    def test_open_packet_reflects_the_flags(self):
        sidecast = start_sidecast(self, "--ping-interval", "1500", "--ping-timeout", "1200",
                                  "--max-payload", "50000")
        opening = polling_handshake(sidecast)
        self.assertIsInstance(opening["sid"], str)
        self.assertGreater(len(opening["sid"]), 0)
        self.assertEqual(opening["upgrades"], ["websocket"])
        self.assertEqual(opening["pingInterval"], 1500)
        self.assertEqual(opening["pingTimeout"], 1200)
        self.assertEqual(opening["maxPayload"], 50000)
        raw = RawSocketIO(sidecast)
        self.addCleanup(raw.close)
        self.assertEqual(raw.open["upgrades"], [])
        self.assertEqual(raw.open["pingInterval"], 1500)
        self.assertNotEqual(raw.open["sid"], opening["sid"])

    def test_custom_path(self):
        sidecast = start_sidecast(self, "--path", "/rt/")
        backend = sidecast.backend(self)
        client = Client(sidecast.url, transports=["polling", "websocket"], path="rt")
        self.addCleanup(client.close)
        client.connect()
        self.assertEqual(client.transport(), "websocket")
        connect = backend.expect_connect(sid=client.sid())
        self.assertTrue(connect["handshake"]["url"].startswith("/rt/?"), connect["handshake"]["url"])
        response = requests.get(eio_url(sidecast), timeout=TIMEOUT)
        self.assertNotEqual(response.status_code, 200)
        self.assertFalse(response.text.startswith("0{"))


if __name__ == "__main__":
    unittest.main()
