"""Binary attachments both ways, as {"$binary": base64} on the backend side."""

import unittest

from harness import TIMEOUT, SidecastTestCase, b64, unb64

PNG = b"\x89PNG\r\n\x1a\n\x00\xff\xfe"


class BinaryTests(SidecastTestCase):
    transports = ["websocket"]

    def client_and_sid(self):
        client, connect = self.connected_client(transports=self.transports)
        return client, connect["sid"]

    def test_client_bytes_reach_the_backend_as_base64(self):
        client, sid = self.client_and_sid()
        client.emit("upload", "a.png", PNG)
        event = self.backend.expect_event("upload", sid=sid)
        self.assertEqual(event["args"][0], "a.png")
        self.assertEqual(event["args"][1], {"$binary": "iVBORw0KGgoA//4="})
        self.assertEqual(unb64(event["args"][1]), PNG)

    def test_nested_and_several_attachments(self):
        client, sid = self.client_and_sid()
        client.emit("files", {"name": "x", "parts": [b"one", b"", b"\x00" * 1000]}, [b"last"])
        args = self.backend.expect_event("files", sid=sid)["args"]
        self.assertEqual(args[0]["name"], "x")
        self.assertEqual([unb64(part) for part in args[0]["parts"]], [b"one", b"", b"\x00" * 1000])
        self.assertEqual(unb64(args[1][0]), b"last")

    def test_backend_base64_reaches_the_client_as_bytes(self):
        client, sid = self.client_and_sid()
        self.backend.emit("download", "a.png", b64(PNG), {"more": [b64(b"\x01\x02")]}, to=[sid])
        name, data, nested = client.wait_for("download")
        self.assertEqual(name, "a.png")
        self.assertIsInstance(data, bytes)
        self.assertEqual(data, PNG)
        self.assertEqual(nested, {"more": [b"\x01\x02"]})

    def test_broadcast_binary_to_several_clients(self):
        first, sid1 = self.client_and_sid()
        second, sid2 = self.client_and_sid()
        self.backend.emit("blob", b64(PNG))
        self.assertEqual(first.wait_for("blob"), (PNG,))
        self.assertEqual(second.wait_for("blob"), (PNG,))

    def test_binary_in_a_client_ack(self):
        client, sid = self.client_and_sid()
        reply = client.call_async("thumb", PNG)
        event = self.backend.expect_event("thumb", sid=sid)
        self.assertEqual(unb64(event["args"][0]), PNG)
        self.backend.ack(event, b64(b"small"), "ok")
        self.assertEqual(reply.result(TIMEOUT), (b"small", "ok"))

    def test_binary_in_a_backend_ack_request(self):
        client, sid = self.client_and_sid()
        client.ack_replies["sign"] = lambda data: data[::-1]
        reply = self.backend.request({"type": "emit", "nsp": "/", "event": "sign",
                                      "args": [b64(b"abc")], "to": [sid], "ack": {"timeout": 3000}})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(unb64(reply["args"][0]), b"cba")

    def test_plain_text_is_not_mistaken_for_binary(self):
        client, sid = self.client_and_sid()
        client.emit("text", {"$binary": 5}, {"$binary": "AAAA", "other": 1})
        args = self.backend.expect_event("text", sid=sid)["args"]
        self.assertEqual(args, [{"$binary": 5}, {"$binary": "AAAA", "other": 1}])

    def test_invalid_base64_is_refused(self):
        client, sid = self.client_and_sid()
        reply = self.backend.request({"type": "emit", "nsp": "/", "event": "x",
                                      "args": [{"$binary": "not base64!"}], "to": [sid]})
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["code"], "bad_message")
        client.assert_no("x", within=0.2)


class PollingBinaryTests(BinaryTests):
    transports = ["polling"]


if __name__ == "__main__":
    unittest.main()
