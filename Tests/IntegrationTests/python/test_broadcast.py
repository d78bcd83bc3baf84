"""Backend emits: to everyone, to a room, to one socket, with `except`, and their errors."""

import unittest

from harness import SidecastTestCase


class BroadcastTests(SidecastTestCase):
    def setUp(self):
        super().setUp()
        # a and b are in "red"; c is alone. Mixed transports on purpose.
        self.a, connect_a = self.connected_client(transports=["websocket"])
        self.b, connect_b = self.connected_client(transports=["polling"])
        self.c, connect_c = self.connected_client(transports=["polling", "websocket"])
        self.sa, self.sb, self.sc = connect_a["sid"], connect_b["sid"], connect_c["sid"]
        self.backend.join(self.sa, "red")
        self.backend.join(self.sb, "red")

    def assert_received(self, event, args, receivers):
        everyone = {"a": self.a, "b": self.b, "c": self.c}
        for name in receivers:
            self.assertEqual(everyone[name].wait_for(event), args, f"client {name}")
        for name, client in everyone.items():
            # Nobody gets it twice, and the others not at all.
            client.assert_no(event, within=0.3 if name == "a" else 0.05)

    def test_to_everyone(self):
        self.backend.emit("news", "hello all", {"n": 1})
        self.assert_received("news", ("hello all", {"n": 1}), "abc")

    def test_empty_to_is_everyone(self):
        self.backend.emit("news", 1, to=[])
        self.assert_received("news", (1,), "abc")

    def test_to_a_room(self):
        self.backend.emit("news", "red only", to=["red"])
        self.assert_received("news", ("red only",), "ab")

    def test_to_one_socket(self):
        self.backend.emit("news", "just c", to=[self.sc])
        self.assert_received("news", ("just c",), "c")

    def test_to_overlapping_rooms_delivers_once(self):
        self.backend.emit("news", "once", to=["red", self.sa, self.sc])
        self.assert_received("news", ("once",), "abc")

    def test_except_a_room(self):
        self.backend.emit("news", "not red", except_=["red"])
        self.assert_received("news", ("not red",), "c")

    def test_room_except_a_socket(self):
        self.backend.emit("news", "red but a", to=["red"], except_=[self.sa])
        self.assert_received("news", ("red but a",), "b")

    def test_to_unknown_room_reaches_nobody(self):
        reply = self.backend.request({"type": "emit", "nsp": "/", "event": "news", "args": [1],
                                      "to": ["nobody here"]})
        self.assertTrue(reply["ok"], reply)
        self.assert_received("news", None, "")

    def test_no_args(self):
        self.backend.emit("ping-all")
        self.assert_received("ping-all", (), "abc")

    def test_volatile_reaches_ready_clients(self):
        self.backend.emit("v", 1, to=[self.sa], volatile=True)
        self.assertEqual(self.a.wait_for("v"), (1,))

    def test_emit_with_id_is_acknowledged(self):
        reply = self.backend.request({"type": "emit", "nsp": "/", "event": "news", "args": ["x"]})
        self.assertEqual(reply, {"type": "reply", "id": reply["id"], "ok": True})
        self.assert_received("news", ("x",), "abc")

    def test_order_is_kept_per_backend(self):
        for i in range(50):
            self.backend.emit("n", i, to=["red"] if i % 2 else [])
        self.assertEqual([self.a.wait_for("n")[0] for _ in range(50)], list(range(50)))
        self.assertEqual([self.c.wait_for("n")[0] for _ in range(25)], list(range(0, 50, 2)))

    def test_reserved_event_names_are_refused(self):
        for name in ("connect", "connect_error", "disconnect", "disconnecting", "newListener",
                     "removeListener"):
            reply = self.backend.request({"type": "emit", "nsp": "/", "event": name, "args": []})
            self.assertFalse(reply["ok"], name)
            self.assertEqual(reply["error"]["code"], "bad_message", name)
        self.a.assert_no("disconnect", within=0.2)

    def test_unknown_namespace(self):
        reply = self.backend.request({"type": "emit", "nsp": "/nope", "event": "x", "args": []})
        self.assertEqual((reply["ok"], reply["error"]["code"]), (False, "unknown_namespace"))

    def test_another_backend_can_emit(self):
        other = self.sidecast.backend(self, group="other")
        other.emit("from-other", "hi", to=[self.sb])
        self.assert_received("from-other", ("hi",), "b")


if __name__ == "__main__":
    unittest.main()
