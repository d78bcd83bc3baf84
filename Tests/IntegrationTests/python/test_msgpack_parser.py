"""--parser msgpack: python-socketio 5.x with serializer="msgpack" end to end, and the bytes
on the wire checked against socket.io-msgpack-parser's index.js.

The parser (index.js) packs the packet object `{type, data, nsp, id}` with notepack.io into one
binary message and checks incoming ones in `checkPacket`. python-socketio's `MsgPackPacket`
claims compatibility; read against index.js it holds, with one difference that sidecast
tolerates: python always writes the `data` key, as nil when there is none, and index.js refuses
a DISCONNECT whose data is not undefined ("invalid payload"), so a Node server would close a
python client that leaves a namespace with "parse error" rather than "client namespace
disconnect". Sidecast takes a nil payload as absent
(MsgpackWireTests.test_python_client_leaves_a_namespace). The other way, python accepts
whatever index.js would send, CONNECT_ERROR objects included (index.js itself would refuse
those, as its checkPacket wants a string for type 4).
Backends see the same NDJSON as with the default parser: msgpack `bin` becomes {"$binary"}.
"""

import os
import subprocess
import unittest

import msgpack
import socketio
import websocket

from harness import SIDECAST_BIN, TIMEOUT, Client, SidecastTestCase, b64, eio_url, start_sidecast, unb64


class MsgpackClient(Client):
    """The harness client, with python-socketio's msgpack serializer."""

    def __init__(self, url, **kwargs):
        super().__init__(url, **kwargs)
        self.sio = socketio.Client(reconnection=False, serializer="msgpack")
        for nsp in self.namespaces:
            self._register(nsp)


class MsgpackParserTests(SidecastTestCase):
    sidecast_flags = ("--parser", "msgpack")
    namespaces = ("/", "/chat")
    backend_nsps = ("/", "/chat")
    transports = ["websocket"]

    def msgpack_client(self, namespaces=("/",), **kwargs):
        client = MsgpackClient(self.sidecast.url, transports=self.transports, namespaces=namespaces, **kwargs)
        self.addCleanup(client.close)
        client.connect()
        sids = {nsp: self.backend.expect_connect(nsp=nsp, sid=client.sid(nsp))["sid"] for nsp in namespaces}
        return client, sids

    def test_emit_and_binary_reach_the_backend(self):
        client, sids = self.msgpack_client()
        client.emit("upload", "a.png", {"data": b"\x89PNG\x00", "n": 1.5, "big": 2 ** 40})
        event = self.backend.expect_event("upload", sid=sids["/"])
        self.assertEqual(event["args"][0], "a.png")
        self.assertEqual(unb64(event["args"][1]["data"]), b"\x89PNG\x00")
        self.assertEqual(event["args"][1]["n"], 1.5)
        self.assertEqual(event["args"][1]["big"], 2 ** 40)

    def test_acks_both_ways_with_binary(self):
        client, sids = self.msgpack_client()
        reply = client.call_async("thumb", b"\x01\x02")
        event = self.backend.expect_event("thumb", sid=sids["/"])
        self.assertEqual(unb64(event["args"][0]), b"\x01\x02")
        self.backend.ack(event, b64(b"small"), "ok")
        self.assertEqual(reply.result(TIMEOUT), (b"small", "ok"))

        client.ack_replies["sign"] = lambda data: data[::-1]
        answer = self.backend.request({"type": "emit", "nsp": "/", "event": "sign", "args": [b64(b"abc")],
                                       "to": [sids["/"]], "ack": {"timeout": 3000}})
        self.assertTrue(answer["ok"], answer)
        self.assertEqual(unb64(answer["args"][0]), b"cba")

    def test_broadcast_to_a_room_with_binary(self):
        first, first_sids = self.msgpack_client()
        second, second_sids = self.msgpack_client()
        for sids in (first_sids, second_sids):
            self.backend.join(sids["/"], "lobby")
        self.backend.emit("blob", b64(b"\xff\x00"), {"nested": [b64(b"x")]}, to=["lobby"])
        self.assertEqual(first.wait_for("blob"), (b"\xff\x00", {"nested": [b"x"]}))
        self.assertEqual(second.wait_for("blob"), (b"\xff\x00", {"nested": [b"x"]}))

    def test_unknown_namespace_gets_connect_error(self):
        client = MsgpackClient(self.sidecast.url, transports=self.transports, namespaces=("/nowhere",))
        self.addCleanup(client.close)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            client.connect()


class MsgpackParserPollingTests(MsgpackParserTests):
    transports = ["polling"]


class MsgpackWireTests(SidecastTestCase):
    """Raw bytes, compared with what notepack.io writes for the same objects (python's msgpack
    packs these small values with the same types: fixmap, fixstr, positive fixint, bin 8)."""

    sidecast_flags = ("--parser", "msgpack")

    def open_websocket(self):
        ws = websocket.create_connection(eio_url(self.sidecast, transport="websocket").replace("http://", "ws://", 1),
                                         timeout=TIMEOUT)
        self.addCleanup(ws.close)
        self.assertTrue(ws.recv().startswith("0"))
        return ws

    def recv_binary(self, ws):
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                return data
            self.assertEqual(data, b"2", "only pings may come as text")

    def test_packets_on_the_wire(self):
        ws = self.open_websocket()
        # What the JavaScript client sends for `io()`: no data key, and the `options` member it
        # adds to emits is ignored.
        ws.send_binary(msgpack.packb({"type": 0, "nsp": "/"}))
        connect = msgpack.unpackb(self.recv_binary(ws))
        sid = self.backend.expect_connect()["sid"]
        self.assertEqual(connect, {"type": 0, "data": {"sid": sid}, "nsp": "/"})

        ws.send_binary(msgpack.packb({"type": 2, "data": ["hi", b"\x00"], "nsp": "/", "id": 7,
                                      "options": {"compress": True}}))
        event = self.backend.expect_event("hi", sid=sid)
        self.assertEqual(unb64(event["args"][0]), b"\x00")
        self.backend.ack(event, "yes")
        self.assertEqual(self.recv_binary(ws), msgpack.packb({"type": 3, "data": ["yes"], "nsp": "/", "id": 7}))

        self.backend.emit("news", b64(b"\x01"), to=[sid])
        self.assertEqual(self.recv_binary(ws), msgpack.packb({"type": 2, "data": ["news", b"\x01"], "nsp": "/"}))

    def test_python_client_leaves_a_namespace(self):
        # A DISCONNECT as python-socketio's MsgPackPacket writes it (`_to_dict`: the data key is
        # always there, nil when there is none). python's own disconnect() may close the
        # WebSocket before its queue is written, so the packet is sent here by hand.
        ws = self.open_websocket()
        ws.send_binary(msgpack.packb({"type": 0, "data": None, "nsp": "/"}))
        self.recv_binary(ws)
        sid = self.backend.expect_connect()["sid"]
        ws.send_binary(msgpack.packb({"type": 1, "data": None, "nsp": "/"}))
        self.assertEqual(self.backend.expect("disconnect", sid=sid)["reason"], "client namespace disconnect")

    def test_malformed_packets_close_the_client(self):
        # Each one fails a check of index.js's checkPacket, or is not msgpack at all.
        for bad in [b"\xc1", msgpack.packb({"type": 7, "nsp": "/"}), msgpack.packb({"type": 2}),
                    msgpack.packb({"type": 2, "nsp": "/", "data": 4}),
                    msgpack.packb({"type": 2, "nsp": "/", "data": [], "id": "a"}),
                    msgpack.packb({"type": 2, "nsp": "/", "data": ["disconnect"]})]:
            with self.subTest(packet=bad):
                ws = self.open_websocket()
                ws.send_binary(msgpack.packb({"type": 0, "nsp": "/"}))
                self.recv_binary(ws)
                sid = self.backend.expect_connect()["sid"]
                ws.send_binary(bad)
                self.assertEqual(self.backend.expect("disconnect", sid=sid)["reason"], "parse error")

    def test_text_message_closes_the_client(self):
        ws = self.open_websocket()
        ws.send_binary(msgpack.packb({"type": 0, "nsp": "/"}))
        self.recv_binary(ws)
        sid = self.backend.expect_connect()["sid"]
        ws.send('42["hi"]')
        self.assertEqual(self.backend.expect("disconnect", sid=sid)["reason"], "parse error")


class ParserSettingTests(unittest.TestCase):
    def test_default_parser_speaks_json_with_attachments(self):
        sidecast = start_sidecast(self, "--parser", "default")
        backend = sidecast.backend(self)
        client = sidecast.client(self)
        sid = backend.expect_connect(sid=client.sid())["sid"]
        client.emit("plain", b"\x01")
        self.assertEqual(unb64(backend.expect_event("plain", sid=sid)["args"][0]), b"\x01")

    def test_unknown_parser_is_refused(self):
        if not SIDECAST_BIN:
            raise unittest.SkipTest("SIDECAST_BIN is not set: run scripts/test.sh")
        for args, env in [(["--parser", "json"], {}), ([], {"SIDECAST_PARSER": "protobuf"})]:
            with self.subTest(args=args, env=env):
                result = subprocess.run([SIDECAST_BIN, *args, "--print-config"], capture_output=True, text=True,
                                        timeout=TIMEOUT * 2, env={**os.environ, **env})
                self.assertNotEqual(result.returncode, 0)
                self.assertIn("must be default or msgpack", result.stderr)


if __name__ == "__main__":
    unittest.main()
