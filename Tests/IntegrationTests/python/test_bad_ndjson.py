"""Bad lines on the backend Unix socket get `error` lines (or `reply` lines when they carry an
id); they never close the connection after `hello`, and never disturb other backends or clients."""

import json
import socket
import unittest

from harness import Backend, SidecastTestCase


class BadLineTests(SidecastTestCase):
    def setUp(self):
        super().setUp()
        self.good, connect = self.connected_client()
        self.good_sid = connect["sid"]
        # The misbehaving backend is in its own group, so it gets copies of everything too.
        self.bad = self.sidecast.backend(self, group="bad")

    def tearDown(self):
        # The bad backend's connection is still open and usable...
        self.assertEqual(self.bad.request({"type": "count", "nsp": "/"})["count"], 1)
        # ...and the good backend and client are unaffected.
        self.good.emit("still-working", 1)
        self.backend.expect_event("still-working", sid=self.good_sid)
        self.backend.emit("reply", 2, to=[self.good_sid])
        self.assertEqual(self.good.wait_for("reply"), (2,))
        self.backend.assert_no("error", within=0.01)

    def assert_error(self, line, code, offending):
        self.bad.send_raw(line if isinstance(line, bytes) else line.encode())
        error = self.bad.expect("error")
        self.assertEqual(error["error"]["code"], code, error)
        self.assertIsInstance(error["error"]["message"], str)
        self.assertEqual(error["line"], offending)
        return error

    def assert_reply_error(self, message, code):
        reply = self.bad.request(message)
        self.assertFalse(reply["ok"], reply)
        self.assertEqual(reply["error"]["code"], code, reply)
        return reply

    def test_not_json(self):
        self.assert_error(b"not json at all\n", "bad_json", "not json at all")

    def test_long_garbage_is_quoted_to_64_characters(self):
        self.assert_error(b"x" * 100 + b"\n", "bad_json", "x" * 64)

    def test_json_that_is_not_an_object(self):
        for line in ("[1,2]", '"text"', "3", "null"):
            self.assert_error(line + "\n", "bad_json", line)

    def test_invalid_utf8(self):
        self.bad.send_raw(b'{"type":"emit","nsp":"/","event":"\xff\xfe","args":[]}\n')
        error = self.bad.expect("error")
        self.assertEqual(error["error"]["code"], "bad_json")
        self.assertIsInstance(error["line"], str)

    def test_unknown_type(self):
        self.assert_error('{"type":"shout","nsp":"/"}\n', "unknown_type", "shout")

    def test_missing_type(self):
        error = self.assert_error('{"nsp":"/"}\n', "unknown_type", '{"nsp":"/"}')
        self.assertNotIn("id", error)

    def test_type_not_a_string(self):
        self.assert_error('{"type":5}\n', "unknown_type", '{"type":5}')

    def test_missing_field(self):
        error = self.assert_error('{"type":"emit","nsp":"/","args":[]}\n', "missing_field", "emit")
        self.assertIn("event", error["error"]["message"])
        self.assert_reply_error({"type": "emit", "nsp": "/", "args": []}, "missing_field")
        self.assert_reply_error({"type": "join", "sid": self.good_sid, "nsp": "/"}, "missing_field")
        self.assert_reply_error({"type": "ack", "sid": self.good_sid, "nsp": "/", "args": []},
                                "missing_field")

    def test_wrong_field_types(self):
        self.assert_error('{"type":"emit","nsp":"/","event":"x","args":"no"}\n', "bad_message", "emit")
        self.assert_reply_error({"type": "emit", "nsp": "/", "event": 5, "args": []}, "bad_message")
        self.assert_reply_error({"type": "emit", "nsp": "/", "event": "", "args": []}, "bad_message")
        self.assert_reply_error({"type": "emit", "nsp": "no-slash", "event": "x", "args": []},
                                "bad_message")
        self.assert_reply_error({"type": "join", "sid": self.good_sid, "nsp": "/", "rooms": "a"},
                                "bad_message")
        self.assert_reply_error({"type": "ack", "sid": self.good_sid, "nsp": "/", "ack": "zero",
                                 "args": []}, "bad_message")
        self.assert_reply_error({"type": "emit", "nsp": "/", "event": "x", "args": [], "to": "room"},
                                "bad_message")
        self.good.assert_no("x", within=0.2)

    def test_unknown_sid(self):
        self.assert_error(json.dumps({"type": "join", "sid": "nope", "nsp": "/", "rooms": ["x"]}) + "\n",
                          "unknown_sid", "join")
        self.assert_reply_error({"type": "leave", "sid": "nope", "nsp": "/", "rooms": ["x"]}, "unknown_sid")
        self.assert_reply_error({"type": "disconnect", "sid": "nope", "nsp": "/"}, "unknown_sid")
        # An ack for a socket that does not exist is not pending.
        reply = self.bad.request({"type": "ack", "sid": "nope", "nsp": "/", "ack": 0, "args": []})
        self.assertFalse(reply["ok"])
        self.assertIn(reply["error"]["code"], ("unknown_ack", "unknown_sid"))

    def test_unknown_namespace(self):
        self.assert_reply_error({"type": "emit", "nsp": "/nowhere", "event": "x", "args": []},
                                "unknown_namespace")
        self.assert_reply_error({"type": "count", "nsp": "/nowhere"}, "unknown_namespace")

    def test_numeric_and_string_ids(self):
        self.bad.send({"type": "count", "nsp": "/", "id": 41})
        self.assertEqual(self.bad.expect("reply", id=41)["count"], 1)
        self.bad.send({"type": "shout", "id": "s-1"})
        reply = self.bad.expect("reply", id="s-1")
        self.assertEqual((reply["ok"], reply["error"]["code"]), (False, "unknown_type"))

    def test_second_hello(self):
        reply = self.assert_reply_error({"type": "hello", "version": 1, "nsps": ["/"]}, "bad_message")
        self.assertIn("error", reply)

    def test_framing_details(self):
        count = {"type": "count", "nsp": "/"}
        # CRLF, empty lines, several lines in one write, one line across several writes.
        self.bad.send_raw(json.dumps({**count, "id": "crlf"}).encode() + b"\r\n\n\n")
        self.assertEqual(self.bad.expect("reply", id="crlf")["count"], 1)
        both = (json.dumps({**count, "id": "one"}) + "\n" + json.dumps({**count, "id": "two"}) + "\n")
        self.bad.send_raw(both.encode())
        self.bad.expect("reply", id="one")
        self.bad.expect("reply", id="two")
        split = (json.dumps({**count, "id": "split"}) + "\n").encode()
        for i in range(0, len(split), 3):
            self.bad.send_raw(split[i:i + 3])
        self.bad.expect("reply", id="split")
        self.bad.assert_no("error", within=0.1)

    def test_line_over_16_mib(self):
        self.bad.send_raw(b'{"type":"emit","nsp":"/","event":"x","args":["' + b"a" * (16 * 1024 * 1024)
                          + b'"]}\n')
        error = self.bad.expect("error", timeout=30)
        self.assertEqual((error["error"]["code"], error["line"]), ("too_large", ""))
        self.good.assert_no("x", within=0.1)

    def test_unknown_fields_are_ignored(self):
        self.bad.send({"type": "emit", "nsp": "/", "event": "extra", "args": [], "to": [self.good_sid],
                       "future": {"x": 1}})
        self.assertEqual(self.good.wait_for("extra"), ())


class HandshakeTests(SidecastTestCase):
    """A connection that does not start with a valid hello is answered and closed."""

    def raw_backend(self):
        backend = Backend(self.sidecast.socket_path)
        self.addCleanup(backend.close)
        return backend

    def assert_refused(self, line, code):
        backend = self.raw_backend()
        backend.send_raw(line)
        error = backend.expect("error")
        self.assertEqual(error["error"]["code"], code, error)
        backend.wait_closed()
        self.backend.request({"type": "count", "nsp": "/"})  # the others are fine

    def test_first_line_not_hello(self):
        self.assert_refused(b'{"type":"count","nsp":"/","id":1}\n', "not_hello")

    def test_first_line_not_json(self):
        self.assert_refused(b"hello?\n", "bad_json")

    def test_hello_without_namespaces(self):
        self.assert_refused(b'{"type":"hello","version":1,"nsps":[]}\n', "not_hello")

    def test_hello_with_bad_namespace(self):
        self.assert_refused(b'{"type":"hello","version":1,"nsps":["chat"]}\n', "not_hello")

    def test_unsupported_version(self):
        self.assert_refused(b'{"type":"hello","version":2,"nsps":["/"]}\n', "unsupported_version")

    def test_hello_defaults(self):
        backend = self.raw_backend()
        backend.send_raw(b'{"type":"hello","version":1,"nsps":["/"]}\n')
        welcome = backend.expect("welcome")
        self.assertEqual(welcome["version"], 1)
        self.assertEqual(welcome["node"], self.backend.node)

    def test_silent_backend_is_closed_after_ten_seconds(self):
        sock = socket.socket(socket.AF_UNIX)
        self.addCleanup(sock.close)
        sock.connect(self.sidecast.socket_path)
        sock.settimeout(15)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            self.assertTrue(chunk, "closed without an error line")
            data += chunk
        self.assertEqual(json.loads(data)["error"]["code"], "not_hello")
        self.assertEqual(sock.recv(4096), b"")


if __name__ == "__main__":
    unittest.main()
