"""Malformed Engine.IO and Socket.IO packets over WebSocket and polling: the offending
connection is closed with "parse error" (or answered, where Socket.IO answers), and a
well-behaved client connected at the same time keeps working."""

import json
import unittest

import websocket

from harness import TIMEOUT, RawPolling, RawSocketIO, SidecastTestCase, wait_until


class BadPacketTests(SidecastTestCase):
    namespaces = ("/", "/admin")

    def setUp(self):
        super().setUp()
        self.good, connect = self.connected_client(transports=["websocket"])
        self.good_sid = connect["sid"]

    def tearDown(self):
        self.good.emit("still-working", 1)
        self.backend.expect_event("still-working", sid=self.good_sid)
        self.backend.emit("reply", 2, to=[self.good_sid])
        self.assertEqual(self.good.wait_for("reply"), (2,))
        self.backend.assert_no("disconnect", within=0.01, sid=self.good_sid)

    def connected_raw(self):
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        sid = raw.connect()
        self.backend.expect_connect(sid=sid)
        return raw, sid

    def assert_closed(self, raw):
        with self.assertRaises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
            while True:
                if raw.ws.recv() == "":
                    raise websocket.WebSocketConnectionClosedException("closed")

    def assert_parse_error(self, frame, binary=False):
        raw, sid = self.connected_raw()
        if binary:
            raw.ws.send_binary(frame)
        else:
            raw.ws.send(frame)
        self.assert_closed(raw)
        self.assertEqual(self.backend.expect("disconnect", sid=sid)["reason"], "parse error",
                         f"after {frame!r}")
        self.backend.assert_no("event", within=0.05, sid=sid)

    def test_unknown_engine_io_packet_type(self):
        self.assert_parse_error("9hello")

    def test_empty_message(self):
        self.assert_parse_error("")

    def test_unknown_socket_io_packet_type(self):
        self.assert_parse_error("49")

    def test_truncated_json(self):
        self.assert_parse_error('42["unterminated')

    def test_event_payload_not_an_array(self):
        self.assert_parse_error('42{"not":"an array"}')

    def test_event_without_a_name(self):
        self.assert_parse_error("42[]")

    def test_event_name_not_a_string(self):
        self.assert_parse_error('42[{"a":1},2]')

    def test_bad_ack_id(self):
        self.assert_parse_error('42x["e"]')

    def test_unexpected_binary_frame(self):
        self.assert_parse_error(b"\x01\x02\x03", binary=True)

    def test_reserved_event_name(self):
        self.assert_parse_error('42["disconnect"]')

    def test_empty_socket_io_packet(self):
        self.assert_parse_error("4")

    def test_text_where_an_attachment_is_expected(self):
        raw, sid = self.connected_raw()
        raw.ws.send('451-["e",{"_placeholder":true,"num":0}]')
        raw.ws.send('42["e"]')
        self.assert_closed(raw)
        self.assertEqual(self.backend.expect("disconnect", sid=sid)["reason"], "parse error")

    def test_placeholder_out_of_range(self):
        raw, sid = self.connected_raw()
        raw.ws.send('451-["e",{"_placeholder":true,"num":5}]')
        raw.ws.send_binary(b"\x00")
        self.assert_closed(raw)
        self.assertEqual(self.backend.expect("disconnect", sid=sid)["reason"], "parse error")

    def test_connect_to_unknown_namespace_is_answered(self):
        raw, sid = self.connected_raw()
        raw.ws.send("40/nope,")
        answer = raw.recv_skipping_pings()
        self.assertTrue(answer.startswith("44/nope,"), answer)
        self.assertEqual(json.loads(answer[len("44/nope,"):]), {"message": "Invalid namespace"})
        # The connection itself stays usable.
        raw.ws.send('42["ok",1]')
        self.assertEqual(self.backend.expect_event("ok", sid=sid)["args"], [1])

    def test_event_for_a_namespace_not_joined_is_ignored(self):
        raw, sid = self.connected_raw()
        raw.ws.send('42/admin,["sneaky"]')
        raw.ws.send('42["ok",1]')
        self.assertEqual(self.backend.expect_event("ok", sid=sid)["args"], [1])
        self.backend.assert_no("event", within=0.1, event="sneaky")

    def test_polling_garbage_payload(self):
        polling = RawPolling(self.sidecast)
        sid = polling.connect()
        self.backend.expect_connect(sid=sid)
        polling.post("9garbage")
        self.assertEqual(self.backend.expect("disconnect", sid=sid)["reason"], "parse error")
        # The session is gone (a pending close may be delivered once first).
        wait_until(lambda: polling.http.get(polling.url, timeout=TIMEOUT).status_code == 400,
                   message="the session to be closed")

    def test_polling_empty_packet_in_payload(self):
        polling = RawPolling(self.sidecast)
        sid = polling.connect()
        self.backend.expect_connect(sid=sid)
        polling.post('42["first"]', "")
        self.assertEqual(self.backend.expect("disconnect", sid=sid)["reason"], "parse error")

    def test_polling_bad_socket_io_packet(self):
        polling = RawPolling(self.sidecast)
        sid = polling.connect()
        self.backend.expect_connect(sid=sid)
        polling.post('42["ok"]', "42[null]")
        self.assertEqual(self.backend.expect("disconnect", sid=sid)["reason"], "parse error")


if __name__ == "__main__":
    unittest.main()
