"""Acknowledgements: client → backend (`ack` command) and backend → client (emit with `ack`)."""

import unittest

from harness import TIMEOUT, RawSocketIO, SidecastTestCase


class ClientAckTests(SidecastTestCase):
    def test_backend_answers_a_client_ack(self):
        client, connect = self.connected_client()
        reply = client.call_async("add", 2, 3)
        event = self.backend.expect_event("add", sid=connect["sid"])
        self.assertEqual(event["args"], [2, 3])
        self.assertIsInstance(event["ack"], int)
        self.assertGreaterEqual(event["ack"], 0)
        self.backend.ack(event, {"sum": 5}, "ok")
        self.assertEqual(reply.result(TIMEOUT), ({"sum": 5}, "ok"))

    def test_concurrent_acks_answered_out_of_order(self):
        client, connect = self.connected_client(transports=["polling"])
        first_reply = client.call_async("q", "first")
        second_reply = client.call_async("q", "second")
        first = self.backend.expect_event("q", sid=connect["sid"])
        second = self.backend.expect_event("q", sid=connect["sid"])
        self.assertEqual((first["args"], second["args"]), (["first"], ["second"]))
        self.assertNotEqual(first["ack"], second["ack"])
        self.backend.ack(second, "answer to second")
        self.assertEqual(second_reply.result(TIMEOUT), ("answer to second",))
        self.assertFalse(first_reply.done())
        self.backend.ack(first, "answer to first")
        self.assertEqual(first_reply.result(TIMEOUT), ("answer to first",))

    def test_empty_ack(self):
        client, connect = self.connected_client()
        reply = client.call_async("nothing")
        event = self.backend.expect_event("nothing", sid=connect["sid"])
        self.assertEqual(event["args"], [])
        self.backend.ack(event)
        self.assertEqual(reply.result(TIMEOUT), ())

    def test_unknown_or_repeated_ack(self):
        client, connect = self.connected_client()
        reply = client.call_async("once")
        event = self.backend.expect_event("once", sid=connect["sid"])
        self.backend.ack(event, 1)
        self.assertEqual(reply.result(TIMEOUT), (1,))
        ack = {"type": "ack", "sid": connect["sid"], "nsp": "/", "ack": event["ack"], "args": [2]}
        answer = self.backend.request(ack)
        self.assertFalse(answer["ok"])
        self.assertEqual(answer["error"]["code"], "unknown_ack")
        answer = self.backend.request({**ack, "ack": 999999})
        self.assertEqual(answer["error"]["code"], "unknown_ack")
        # Without an id a stale ack is ignored silently.
        self.backend.send(ack)
        self.backend.assert_no("error", within=0.3)

    def test_event_without_callback_has_no_ack_field(self):
        client, connect = self.connected_client()
        client.emit("fire", "and forget")
        self.assertNotIn("ack", self.backend.expect_event("fire", sid=connect["sid"]))


class EmitWithAckTests(SidecastTestCase):
    def emit_with_ack(self, to, timeout=3000, **extra):
        return self.backend.request({"type": "emit", "nsp": "/", "event": "ask", "args": ["q?"],
                                     "to": to, "ack": {"timeout": timeout}, **extra},
                                    timeout=timeout / 1000 + 5)

    def test_one_socket_answers(self):
        client, connect = self.connected_client()
        client.ack_replies["ask"] = lambda question: ("yes", question)
        reply = self.emit_with_ack([connect["sid"]])
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["args"], ["yes", "q?"])
        self.assertEqual(client.wait_for("ask"), ("q?",))

    def test_one_socket_over_polling(self):
        client, connect = self.connected_client(transports=["polling"])
        client.ack_replies["ask"] = lambda question: 42
        reply = self.emit_with_ack([connect["sid"]])
        self.assertEqual((reply["ok"], reply["args"]), (True, [42]))

    def test_one_socket_times_out(self):
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        sid = raw.connect()
        self.backend.expect_connect(sid=sid)
        reply = self.emit_with_ack([sid], timeout=300)
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["code"], "timeout")
        self.assertNotIn("args", reply)
        # The packet did reach the client, with an ack id it never answered.
        self.assertRegex(raw.recv_skipping_pings(), r'^42\d+\["ask","q\?"\]$')

    def test_many_sockets_answer(self):
        clients = []
        for name in ("a", "b"):
            client, connect = self.connected_client()
            client.ack_replies["ask"] = (lambda n: lambda question: n)(name)
            self.backend.join(connect["sid"], "room")
            clients.append((client, connect["sid"]))
        outsider, _ = self.connected_client()
        reply = self.emit_with_ack(["room"])
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(sorted((r["sid"], r["args"]) for r in reply["responses"]),
                         sorted([(clients[0][1], ["a"]), (clients[1][1], ["b"])]))
        outsider.assert_no("ask", within=0.2)

    def test_many_sockets_one_silent(self):
        client, connect = self.connected_client()
        client.ack_replies["ask"] = lambda question: "here"
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        silent = raw.connect()
        self.backend.expect_connect(sid=silent)
        reply = self.emit_with_ack([connect["sid"], silent], timeout=500)
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["code"], "timeout")
        self.assertEqual(reply["responses"], [{"sid": connect["sid"], "args": ["here"]}])

    def test_nobody_in_room(self):
        reply = self.emit_with_ack(["empty room"])
        self.assertEqual((reply["ok"], reply["responses"]), (True, []))

    def test_whole_namespace(self):
        client, connect = self.connected_client(transports=["polling"])
        client.ack_replies["ask"] = lambda question: "all"
        reply = self.backend.request({"type": "emit", "nsp": "/", "event": "ask", "args": ["q?"],
                                      "ack": {"timeout": 3000}})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["responses"], [{"sid": connect["sid"], "args": ["all"]}])

    def test_socket_that_disconnects_counts_as_not_answered(self):
        raw = RawSocketIO(self.sidecast)
        sid = raw.connect()
        self.backend.expect_connect(sid=sid)
        request_id = "bye"
        self.backend.send({"type": "emit", "id": request_id, "nsp": "/", "event": "ask", "args": [],
                           "to": [sid], "ack": {"timeout": 1500}})
        self.assertRegex(raw.recv_skipping_pings(), r'^42\d+\["ask"\]$')
        raw.close()
        reply = self.backend.expect("reply", id=request_id, timeout=6)
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["code"], "timeout")

    def test_ack_without_id_is_missing_field(self):
        self.backend.send({"type": "emit", "nsp": "/", "event": "ask", "args": [],
                           "ack": {"timeout": 100}})
        error = self.backend.expect("error")
        self.assertEqual(error["error"]["code"], "missing_field")
        self.assertEqual(error["line"], "emit")

    def test_bad_timeout(self):
        reply = self.emit_with_ack([], timeout=0)
        self.assertFalse(reply["ok"])
        self.assertEqual(reply["error"]["code"], "bad_message")


if __name__ == "__main__":
    unittest.main()
