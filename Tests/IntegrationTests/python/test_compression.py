"""Compression: permessage-deflate for WebSocket (--per-message-deflate) and gzip/deflate for
long-polling responses (--http-compression), both off by default, both from 1024 bytes on, as
Node's `perMessageDeflate` and `httpCompression` thresholds.

websocket-client cannot offer permessage-deflate, so `DeflateWebSocket` speaks RFC 6455 over a
raw socket with the extension as RFC 7692 defines it for a client: the offer of §5.1 (as
Chromium sends it), RSV1 marking a compressed message (§6), DEFLATE with the sync-flush tail
removed (§7.2.1) and put back to inflate (§7.2.2), and the client keeping its compression
context between messages, which it may unless it agreed to client_no_context_takeover
(§7.1.1.2). Headless Chromium, which always offers the extension, checks the same with a real
browser."""

import base64
import gzip
import json
import os
import socket
import struct
import unittest
import zlib

import requests

from harness import TIMEOUT, start_sidecast
from browser import CLIENT_BUNDLE, ChromiumTestCase

TAIL = b"\x00\x00\xff\xff"
CHROMIUM_OFFER = "permessage-deflate; client_max_window_bits"
AGREED = "permessage-deflate; server_no_context_takeover"


class DeflateWebSocket:
    """An Engine.IO WebSocket client on a raw socket that offers permessage-deflate."""

    def __init__(self, port, offer=CHROMIUM_OFFER):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n")
        if offer:
            request += f"Sec-WebSocket-Extensions: {offer}\r\n"
        self.sock.sendall((request + "\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0]:
            raise AssertionError(f"upgrade refused: {lines[0]}")
        headers = dict(line.split(":", 1) for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, value in headers.items()}
        self.extensions = headers.get("sec-websocket-extensions")
        # The client keeps its context from message to message (RFC 7692 §7.1.1.2).
        self.compressor = zlib.compressobj(wbits=-15)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed")
        self.buffer += chunk

    def _take(self, count):
        while len(self.buffer) < count:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def recv_frame(self):
        """(rsv1, opcode, payload as sent): server frames are unmasked and unfragmented here."""
        first, second = self._take(2)
        if second & 0x80:
            raise AssertionError("a server frame must not be masked")
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._take(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._take(8))[0]
        if not first & 0x80:
            raise AssertionError("unexpected fragment")
        return bool(first & 0x40), first & 0x0F, self._take(length)

    def recv(self, predicate=lambda text: True):
        """(was_compressed, text) of the first text message `predicate` accepts; pings are answered."""
        while True:
            rsv1, opcode, payload = self.recv_frame()
            if rsv1:
                # Without context takeover each message inflates on its own.
                payload = zlib.decompressobj(wbits=-15).decompress(payload + TAIL)
            if opcode == 1:
                text = payload.decode()
                if text == "2":
                    self.send("3")
                    continue
                if predicate(text):
                    return rsv1, text

    def send(self, text, compress=False, opcode=1, fragments=1):
        """One message; with `fragments`, its (compressed) payload split over that many frames,
        RSV1 on the first only (RFC 7692 §6.1)."""
        payload = text.encode() if isinstance(text, str) else text
        if compress:
            payload = self.compressor.compress(payload) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
            assert payload.endswith(TAIL)
            payload = payload[:-4]
        size = -(-len(payload) // fragments)
        for index in range(fragments):
            first = (0x80 if index == fragments - 1 else 0) | (opcode if index == 0 else 0)
            if compress and index == 0:
                first |= 0x40
            self._send_frame(first, payload[index * size:(index + 1) * size])

    def _send_frame(self, first, payload):
        mask = os.urandom(4)
        header = bytes([first])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def open_socket(self, backend):
        """Engine.IO open, then the Socket.IO CONNECT to "/"; returns the socket's sid."""
        _, opened = self.recv(lambda text: text.startswith("0"))
        self.send("40")
        _, connected = self.recv(lambda text: text.startswith("40"))
        sid = json.loads(connected[2:])["sid"]
        backend.expect_connect(sid=sid)
        return sid

    def close(self):
        self.sock.close()


class PerMessageDeflateTests(unittest.TestCase):
    def connect(self, sidecast, backend, offer=CHROMIUM_OFFER):
        client = DeflateWebSocket(sidecast.port, offer)
        self.addCleanup(client.close)
        return client, client.open_socket(backend)

    def test_offered_extension_is_agreed_and_large_messages_are_compressed(self):
        sidecast = start_sidecast(self, "--per-message-deflate")
        backend = sidecast.backend(self)
        client, sid = self.connect(sidecast, backend)
        self.assertEqual(client.extensions, AGREED)

        big = "chat " * 400
        backend.emit("news", big, to=[sid])
        compressed, text = client.recv(lambda text: text.startswith("42"))
        self.assertTrue(compressed)
        self.assertEqual(json.loads(text[2:]), ["news", big])
        # Under the threshold a message goes as it is.
        backend.emit("news", "short", to=[sid])
        compressed, text = client.recv(lambda text: text.startswith("42"))
        self.assertFalse(compressed)
        self.assertEqual(json.loads(text[2:]), ["news", "short"])

        # Compressed messages from the client, the second one referring back into the first.
        for n in (1, 2):
            client.send("42" + json.dumps(["upload", big, n]), compress=True)
            event = backend.expect_event("upload", sid=sid)
            self.assertEqual(event["args"], [big, n])
        client.send("42" + json.dumps(["upload", "small", 3]), compress=True)
        self.assertEqual(backend.expect_event("upload", sid=sid)["args"], ["small", 3])
        client.send("42" + json.dumps(["upload", "plain", 4]))
        self.assertEqual(backend.expect_event("upload", sid=sid)["args"], ["plain", 4])
        # Compressed messages in fragments, RSV1 on the first: the first fragmented message
        # brings NIO's aggregator into the pipeline, later ones go through it.
        for n in (5, 6):
            client.send("42" + json.dumps(["upload", big, n]), compress=True, fragments=3)
            self.assertEqual(backend.expect_event("upload", sid=sid)["args"], [big, n])
        client.send("42" + json.dumps(["upload", big, 7]), fragments=2)
        self.assertEqual(backend.expect_event("upload", sid=sid)["args"], [big, 7])
        client.send("42" + json.dumps(["upload", big, 8]), compress=True)
        self.assertEqual(backend.expect_event("upload", sid=sid)["args"], [big, 8])

    def test_a_broadcast_reaches_compressing_and_plain_clients_alike(self):
        sidecast = start_sidecast(self, "--per-message-deflate")
        backend = sidecast.backend(self)
        deflating = [self.connect(sidecast, backend) for _ in range(3)]
        plain = [self.connect(sidecast, backend, offer=None) for _ in range(2)]
        for client, _ in plain:
            self.assertIsNone(client.extensions)
        big = {"rows": [{"n": n, "name": f"row {n}"} for n in range(200)]}
        backend.emit("table", big)
        for client, _ in deflating + plain:
            compressed, text = client.recv(lambda text: text.startswith("42"))
            self.assertEqual(compressed, client.extensions is not None)
            self.assertEqual(json.loads(text[2:]), ["table", big])

    def test_offers_the_server_cannot_honour_are_declined(self):
        sidecast = start_sidecast(self, "--per-message-deflate")
        backend = sidecast.backend(self)
        client, sid = self.connect(sidecast, backend, offer="permessage-deflate; server_max_window_bits=10")
        self.assertIsNone(client.extensions)
        backend.emit("news", "x" * 5000, to=[sid])
        compressed, _ = client.recv(lambda text: text.startswith("42"))
        self.assertFalse(compressed)

    def test_client_no_context_takeover_is_agreed_and_honoured(self):
        sidecast = start_sidecast(self, "--per-message-deflate")
        backend = sidecast.backend(self)
        client, sid = self.connect(sidecast, backend, offer="permessage-deflate; client_no_context_takeover")
        self.assertEqual(client.extensions, AGREED + "; client_no_context_takeover")
        for n in (1, 2):
            client.compressor = zlib.compressobj(wbits=-15)
            client.send("42" + json.dumps(["upload", "again " * 300, n]), compress=True)
            self.assertEqual(backend.expect_event("upload", sid=sid)["args"], ["again " * 300, n])

    def test_off_by_default_and_rsv1_without_the_extension_is_a_protocol_error(self):
        sidecast = start_sidecast(self)
        backend = sidecast.backend(self)
        client, sid = self.connect(sidecast, backend)
        self.assertIsNone(client.extensions)
        backend.emit("news", "x" * 5000, to=[sid])
        compressed, _ = client.recv(lambda text: text.startswith("42"))
        self.assertFalse(compressed)
        client.send("42" + json.dumps(["upload", "x"]), compress=True)
        rsv1, opcode, payload = client.recv_frame()
        while opcode != 8:
            rsv1, opcode, payload = client.recv_frame()
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 1002)
        self.assertEqual(backend.expect("disconnect", sid=sid)["reason"], "transport error")

    def test_a_message_that_inflates_past_max_payload_closes_with_1009(self):
        sidecast = start_sidecast(self, "--per-message-deflate", "--max-payload", "10000")
        backend = sidecast.backend(self)
        client, sid = self.connect(sidecast, backend)
        # 20 kB of text that compresses to a few dozen bytes.
        client.send("42" + json.dumps(["upload", "a" * 20000]), compress=True)
        _, opcode, payload = client.recv_frame()
        while opcode != 8:
            _, opcode, payload = client.recv_frame()
        self.assertEqual(struct.unpack("!H", payload[:2])[0], 1009)
        backend.assert_no("event", within=0.3, sid=sid)


class HTTPCompressionTests(unittest.TestCase):
    def open_polling(self, sidecast, backend):
        http = requests.Session()
        opened = http.get(f"{sidecast.url}/socket.io/?EIO=4&transport=polling", timeout=TIMEOUT)
        sid = json.loads(opened.text[1:])["sid"]
        url = f"{sidecast.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        http.post(url, data=b"40", timeout=TIMEOUT)
        connected = http.get(url, timeout=TIMEOUT).text
        socket_sid = json.loads(connected[2:])["sid"]
        backend.expect_connect(sid=socket_sid)
        return http, url, socket_sid

    def poll(self, http, url, accept):
        """The raw response of one poll, undecoded."""
        response = http.get(url, headers={"Accept-Encoding": accept}, timeout=TIMEOUT, stream=True)
        body = response.raw.read(decode_content=False)
        return response, body

    def test_large_polling_responses_follow_accept_encoding(self):
        sidecast = start_sidecast(self, "--http-compression")
        backend = sidecast.backend(self)
        http, url, sid = self.open_polling(sidecast, backend)
        big = "poll " * 400
        for accept, decode in (("gzip, deflate", gzip.decompress), ("deflate", zlib.decompress),
                               ("gzip;q=0.2, deflate;q=0.9", zlib.decompress)):
            with self.subTest(accept=accept):
                backend.emit("news", big, to=[sid])
                response, body = self.poll(http, url, accept)
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.headers["Content-Encoding"], decode is gzip.decompress and "gzip" or "deflate")
                self.assertEqual(int(response.headers["Content-Length"]), len(body))
                self.assertLess(len(body), len(big) / 4)
                self.assertEqual(json.loads(decode(body).decode()[2:]), ["news", big])
        # Small payloads, and clients that accept neither coding, get the payload as it is.
        for text, accept in (("short", "gzip"), (big, "identity"), (big, "br")):
            with self.subTest(text=text[:10], accept=accept):
                backend.emit("news", text, to=[sid])
                response, body = self.poll(http, url, accept)
                self.assertNotIn("Content-Encoding", response.headers)
                self.assertEqual(json.loads(body.decode()[2:]), ["news", text])

    def test_off_by_default(self):
        sidecast = start_sidecast(self)
        backend = sidecast.backend(self)
        http, url, sid = self.open_polling(sidecast, backend)
        backend.emit("news", "poll " * 400, to=[sid])
        response, body = self.poll(http, url, "gzip")
        self.assertNotIn("Content-Encoding", response.headers)
        self.assertEqual(json.loads(body.decode()[2:]), ["news", "poll " * 400])


class CompressionBrowserTests(ChromiumTestCase):
    """Chromium offers permessage-deflate on every WebSocket and compresses what it sends."""


    def test_chromium_agrees_and_large_messages_round_trip(self):
        sidecast = start_sidecast(self, "--per-message-deflate", "--http-compression")
        backend = sidecast.backend(self)
        driver = self.start_chromium()
        driver.set_script_timeout(TIMEOUT * 3)
        # A page of sidecast's own origin: the Engine.IO open packet, with the client loaded into it.
        driver.get(f"{sidecast.url}/socket.io/?EIO=4&transport=polling")
        with open(CLIENT_BUNDLE) as file:
            driver.execute_script(file.read())
        big = "browser " * 500
        opened = driver.execute_async_script("""
            const [url, big, done] = arguments;
            const socket = io(url, { transports: ["websocket"], reconnection: false });
            window.received = [];
            socket.on("news", (text) => window.received.push(text));
            socket.on("connect_error", (error) => done({ error: String(error) }));
            socket.on("connect", () => {
                socket.emit("upload", big);
                done({ id: socket.id, extensions: socket.io.engine.transport.ws.extensions });
            });
        """, sidecast.url, big)
        self.assertNotIn("error", opened)
        self.assertEqual(opened["extensions"], AGREED)
        sid = opened["id"]
        backend.expect_connect(sid=sid)
        self.assertEqual(backend.expect_event("upload", sid=sid)["args"], [big])
        backend.emit("news", big, to=[sid])
        received = driver.execute_async_script("""
            const done = arguments[0];
            const check = () => window.received.length ? done(window.received[0]) : setTimeout(check, 20);
            check();
        """)
        self.assertEqual(received, big)


if __name__ == "__main__":
    unittest.main()
