"""Engine.IO v3 clients under --allow-eio3: python-socketio 4.x (Socket.IO v4 protocol over
Engine.IO v3) next to python-socketio 5.x clients, and raw v3 polling exchanges.

The 4.x client runs in its own venv (.venv-eio3, from scripts/requirements-eio3.txt) as the
subprocess eio3_client.py. The behaviour expected of the server is Node's with `allowEIO3`:
engine.io's `lib/socket.ts` (the client pings, the server answers), `lib/transports/polling.ts`
and the vendored `lib/parser-v3/index.ts` (payloads), socket.io's `lib/index.ts`
(`onconnection` connects a v3 client to "/" unasked), `lib/client.ts` (`ondecoded`: the query
in a v3 CONNECT's namespace is its auth) and `lib/socket.ts` (`_onconnect`: no data in a v3
CONNECT).
"""

import base64
import json
import os
import subprocess
import sys
import threading
import time
import unittest

import requests

from harness import REPO, TIMEOUT, Inbox, SidecastTestCase, _die_with_parent, b64, start_sidecast, unb64

EIO3_PYTHON = os.environ.get("SIDECAST_EIO3_PYTHON", os.path.join(REPO, ".venv-eio3", "bin", "python"))
DRIVER = os.path.join(os.path.dirname(os.path.realpath(__file__)), "eio3_client.py")


class Eio3Client:
    """eio3_client.py in the second venv; its reports land in `inbox`."""

    def __init__(self, test):
        if not os.path.exists(EIO3_PYTHON):
            raise unittest.SkipTest(f"no Engine.IO v3 venv at {EIO3_PYTHON}: run scripts/test.sh")
        self.proc = subprocess.Popen([EIO3_PYTHON, DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     preexec_fn=_die_with_parent)
        self.inbox = Inbox("eio3 client report")
        test.addCleanup(self.close)
        threading.Thread(target=self._read, daemon=True, name="eio3-client").start()

    def _read(self):
        for raw in self.proc.stdout:
            message = json.loads(raw)
            print(f"[eio3-client] {message}", file=sys.stderr, flush=True)
            self.inbox.put(message)
        self.inbox.close()

    def send(self, **command):
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()

    def expect(self, type, timeout=TIMEOUT, **fields):
        def matches(message):
            if message.get("type") == "error":
                raise AssertionError(f"eio3 client failed: {message['message']}")
            return message.get("type") == type and all(message.get(k) == v for k, v in fields.items())
        return self.inbox.take(matches, timeout, f"{type} {fields!r}")

    def connect(self, sidecast, transports, namespaces=("/",), events=()):
        self.send(cmd="connect", url=sidecast.url, transports=list(transports), namespaces=list(namespaces),
                  events=list(events))
        connected = self.expect("connected", timeout=TIMEOUT * 2)
        for nsp in namespaces:
            self.expect("connect", nsp=nsp)
        return connected["transport"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send(cmd="disconnect")
                self.proc.stdin.close()
                self.proc.wait(timeout=TIMEOUT)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def as_bytes(value):
    return {"$bytes": base64.b64encode(value).decode()}


def open_sid(payload):
    """The sid of the open packet at the start of a v3 text payload ("<length>:0{...}...")."""
    return json.JSONDecoder().raw_decode(payload[payload.index("{"):])[0]["sid"]


class Eio3ClientTests(SidecastTestCase):
    sidecast_flags = ("--allow-eio3",)
    namespaces = ("/", "/chat")
    backend_nsps = ("/", "/chat")

    def eio3_client(self, transports, namespaces=("/",), events=("news", "blob", "question")):
        client = Eio3Client(self)
        transport = client.connect(self.sidecast, transports, namespaces, events)
        sids = {nsp: self.backend.expect_connect(nsp=nsp)["sid"] for nsp in namespaces}
        return client, transport, sids

    def check_emit_ack_rooms_binary(self, transports):
        old, transport, sids = self.eio3_client(transports, namespaces=("/", "/chat"))
        self.assertEqual(transport, transports[-1])
        sid = sids["/"]

        # Emit and ack, both ways.
        old.send(cmd="emit", event="hello", args=["from v3", {"n": 1}], ack=1)
        event = self.backend.expect_event("hello", sid=sid)
        self.assertEqual(event["args"], ["from v3", {"n": 1}])
        self.backend.ack(event, "ok", 42)
        self.assertEqual(old.expect("ack", id=1)["args"], ["ok", 42])

        reply = self.backend.request({"type": "emit", "nsp": "/", "event": "question", "args": ["a", "b"],
                                      "to": [sid], "ack": {"timeout": 3000}})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["args"], ["b", "a"])

        # Binary from the client reaches the backend; binary from the backend reaches the client.
        old.send(cmd="emit", event="upload", args=["f", as_bytes(b"\x00\x01\xfe\xff")])
        event = self.backend.expect_event("upload", sid=sid)
        self.assertEqual(unb64(event["args"][1]), b"\x00\x01\xfe\xff")
        self.backend.emit("blob", b64(b"\x89PNG"), {"nested": b64(b"\x01")}, to=[sid])
        self.assertEqual(old.expect("event", event="blob")["args"], [as_bytes(b"\x89PNG"), {"nested": as_bytes(b"\x01")}])

        # A room joined through the backend holds a v3 and a v5 client; both get its broadcast.
        new, connect = self.connected_client(transports=["websocket"])
        self.backend.join(sid, "lobby")
        self.backend.join(connect["sid"], "lobby")
        # Joins take effect in order with the emit that follows them on the backend's socket.
        self.backend.emit("news", "in the lobby", to=["lobby"])
        self.assertEqual(old.expect("event", event="news")["args"], ["in the lobby"])
        self.assertEqual(new.wait_for("news"), ("in the lobby",))

        # Another namespace, over the same session.
        old.send(cmd="emit", event="hi", args=[], nsp="/chat")
        self.backend.expect_event("hi", nsp="/chat", sid=sids["/chat"])

        old.send(cmd="disconnect")
        old.expect("disconnected")
        self.backend.expect("disconnect", sid=sid)

    def test_polling(self):
        self.check_emit_ack_rooms_binary(["polling"])

    def test_websocket_after_polling(self):
        self.check_emit_ack_rooms_binary(["polling", "websocket"])

    def test_websocket_only(self):
        self.check_emit_ack_rooms_binary(["websocket"])


class RawEio3PollingTests(SidecastTestCase):
    """Byte-level v3 exchanges, where python-socketio 4.x cannot reach (the query in a CONNECT's
    namespace) or hides the format (text payloads, the ping direction)."""

    sidecast_flags = ("--allow-eio3", "--ping-interval", "1000", "--ping-timeout", "500")
    namespaces = ("/", "/chat")
    backend_nsps = ("/", "/chat")

    def url(self, sid=None, extra=""):
        return f"{self.sidecast.url}/socket.io/?EIO=3&transport=polling{extra}" + (f"&sid={sid}" if sid else "")

    def test_handshake_text_payload_query_auth_and_client_ping(self):
        # b64=1 asks for text payloads throughout (engine.io's `supportsBinary = !query.b64`).
        response = requests.get(self.url(extra="&b64=1"), timeout=TIMEOUT)
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))
        body = response.text
        length, _, rest = body.partition(":")
        open_packet = rest[:int(length)]
        self.assertEqual(open_packet[0], "0")
        handshake = json.loads(open_packet[1:])
        sid = handshake["sid"]
        self.assertEqual(handshake["pingInterval"], 1000)
        self.assertEqual(rest[int(length):], "")
        # "/" is connected unasked, and its CONNECT carries no data (Socket.IO v4 protocol); as
        # from Node, it follows the open packet in the next poll.
        main_sid = self.backend.expect_connect(nsp="/")["sid"]
        self.assertEqual(requests.get(self.url(sid, "&b64=1"), timeout=TIMEOUT).text, "2:40")

        # A CONNECT to another namespace carries its auth as a query; lengths count UTF-16
        # units, so "é" (two UTF-8 bytes) counts one and "😀" (four) counts two.
        connect = "40/chat?token=\u00e9\U0001F600,"
        ping = "2"
        payload = f"{len(connect.encode('utf-16-le')) // 2}:{connect}{len(ping)}:{ping}"
        self.assertEqual(payload[:3], "18:")
        response = requests.post(self.url(sid, "&b64=1"), data=payload.encode(),
                                 headers={"Content-Type": "text/plain;charset=UTF-8"}, timeout=TIMEOUT)
        self.assertEqual(response.text, "ok")
        self.assertEqual(self.backend.expect_connect(nsp="/chat")["auth"], {"token": "\u00e9\U0001F600"})
        # The client's ping is answered with a pong, and the namespace's CONNECT follows.
        response = requests.get(self.url(sid, "&b64=1"), timeout=TIMEOUT)
        self.assertIn("1:3", response.text)
        if "8:40/chat," not in response.text:
            response = requests.get(self.url(sid, "&b64=1"), timeout=TIMEOUT)
            self.assertIn("8:40/chat,", response.text)

        # Binary as base64 with its type: "b4…".
        self.backend.emit("blob", b64(b"\x01\x02"), to=[main_sid])
        response = requests.get(self.url(sid, "&b64=1"), timeout=TIMEOUT)
        self.assertEqual(response.text, '42:451-["blob",{"_placeholder":true,"num":0}]6:b4AQI=')

        # A pong from a v3 client is the wrong direction: "transport error".
        requests.post(self.url(sid, "&b64=1"), data=b"1:3", timeout=TIMEOUT)
        self.backend.expect("disconnect", sid=main_sid, reason="transport error")

    def test_silent_v3_client_times_out_after_interval_plus_timeout(self):
        started = time.monotonic()
        response = requests.get(self.url(), timeout=TIMEOUT)
        self.assertTrue(open_sid(response.text))
        main_sid = self.backend.expect_connect(nsp="/")["sid"]
        message = self.backend.expect("disconnect", sid=main_sid, timeout=TIMEOUT)
        self.assertEqual(message["reason"], "ping timeout")
        # pingInterval + pingTimeout (1.5 s), not pingTimeout alone: the server never pings.
        self.assertGreaterEqual(time.monotonic() - started, 1.4)

    def test_xhr2_binary_payload(self):
        # Without b64 a payload holding binary is the XHR2 format (encodePayloadAsBinary), and
        # the client may POST that format as application/octet-stream.
        response = requests.get(self.url(), timeout=TIMEOUT)
        sid = open_sid(response.text)
        main_sid = self.backend.expect_connect(nsp="/")["sid"]
        self.assertEqual(requests.get(self.url(sid), timeout=TIMEOUT).text, "2:40")
        self.backend.emit("blob", b64(b"\xff"), to=[main_sid])
        response = requests.get(self.url(sid), timeout=TIMEOUT)
        self.assertEqual(response.headers["Content-Type"], "application/octet-stream")
        text = b'451-["blob",{"_placeholder":true,"num":0}]'
        self.assertEqual(len(text), 42)
        self.assertEqual(response.content, bytes([0, 4, 2, 255]) + text + bytes([1, 2, 255, 4, 0xFF]))

        packet = b'451-["up",{"_placeholder":true,"num":0}]'
        self.assertEqual(len(packet), 40)
        body = bytes([0, 4, 0, 255]) + packet + bytes([1, 3, 255, 4, 0xAB, 0xCD])
        response = requests.post(self.url(sid), data=body, headers={"Content-Type": "application/octet-stream"},
                                 timeout=TIMEOUT)
        self.assertEqual(response.text, "ok")
        event = self.backend.expect_event("up", sid=main_sid)
        self.assertEqual(unb64(event["args"][0]), b"\xab\xcd")


class Eio3CompressionTests(SidecastTestCase):
    """v3 payloads go through --http-compression like v4 ones (engine.io's polling `doWrite`
    compresses whatever the parser produced), and the python-socketio 4.x client reads them."""

    sidecast_flags = ("--allow-eio3", "--http-compression")

    def test_large_v3_payloads_are_compressed(self):
        url = f"{self.sidecast.url}/socket.io/?EIO=3&transport=polling&b64=1"
        sid = open_sid(requests.get(url, timeout=TIMEOUT).text)
        url += f"&sid={sid}"
        main_sid = self.backend.expect_connect(nsp="/")["sid"]
        self.assertEqual(requests.get(url, timeout=TIMEOUT).text, "2:40")
        self.backend.emit("big", "é" * 2000, to=[main_sid])
        response = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=TIMEOUT)
        self.assertEqual(response.headers.get("Content-Encoding"), "gzip")
        packet = '42["big","' + "é" * 2000 + '"]'
        self.assertEqual(response.text, f"{len(packet)}:{packet}")

    def test_python_socketio_4_over_compressed_polling(self):
        client = Eio3Client(self)
        client.connect(self.sidecast, ["polling"], events=["big"])
        sid = self.backend.expect_connect(nsp="/")["sid"]
        self.backend.emit("big", "x" * 5000, b64(b"\x00" * 3000), to=[sid])
        self.assertEqual(client.expect("event", event="big")["args"], ["x" * 5000, as_bytes(b"\x00" * 3000)])


class Eio3AuthorizeTests(SidecastTestCase):
    """A backend's rejection reaches a v3 client as the ERROR packet of the Socket.IO v4
    protocol: a plain string (`err.data || err.message` in socket.io's `lib/namespace.ts`)."""

    sidecast_flags = ("--allow-eio3", "--authorize", "/chat")
    namespaces = ("/", "/chat")
    backend_nsps = ("/", "/chat")

    def setUp(self):
        self.sidecast = start_sidecast(self, *self.sidecast_flags, namespaces=self.namespaces)
        self.backend = self.sidecast.backend(self, nsps=self.backend_nsps, authorize=True)

    def test_rejection_is_a_plain_string(self):
        url = f"{self.sidecast.url}/socket.io/?EIO=3&transport=polling&b64=1"
        sid = open_sid(requests.get(url, timeout=TIMEOUT).text)
        url += f"&sid={sid}"
        # The backend authorizes "/" too: the unasked connect of "/" waits for its answer.
        request = self.backend.expect_connect(nsp="/")
        self.assertEqual(request["auth"], {})
        self.backend.send({"type": "accept", "req": request["req"]})
        self.backend.expect_connect(nsp="/", sid=request["sid"])
        self.assertEqual(requests.get(url, timeout=TIMEOUT).text, "2:40")
        connect = "40/chat?token=nope,"
        requests.post(url, data=f"{len(connect)}:{connect}".encode(), timeout=TIMEOUT)
        request = self.backend.expect_connect(nsp="/chat")
        self.assertEqual(request["auth"], {"token": "nope"})
        self.backend.send({"type": "reject", "req": request["req"], "message": "bad token"})
        self.assertEqual(requests.get(url, timeout=TIMEOUT).text, '19:44/chat,"bad token"')


class WithoutAllowEio3Tests(unittest.TestCase):
    def test_eio3_handshake_is_refused(self):
        sidecast = start_sidecast(self)
        response = requests.get(f"{sidecast.url}/socket.io/?EIO=3&transport=polling", timeout=TIMEOUT)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json(), {"code": 5, "message": "Unsupported protocol version"})


if __name__ == "__main__":
    unittest.main()
