"""Rooms (join/leave by sid and by `in`), the fetch/count/rooms queries and server-side disconnect."""

import unittest

from harness import SidecastTestCase


class RoomTests(SidecastTestCase):
    def setUp(self):
        super().setUp()
        self.c1, connect1 = self.connected_client()
        self.c2, connect2 = self.connected_client(transports=["polling"])
        self.s1, self.s2 = connect1["sid"], connect2["sid"]

    def query(self, type, **fields):
        reply = self.backend.request({"type": type, "nsp": "/", **fields})
        self.assertTrue(reply["ok"], reply)
        return reply

    def count(self, **fields):
        return self.query("count", **fields)["count"]

    def rooms(self, **fields):
        rooms = self.query("rooms", **fields)["rooms"]
        self.assertEqual(len(rooms), len(set(rooms)), f"duplicates in {rooms}")
        return set(rooms)

    def test_join_count_rooms_fetch(self):
        self.backend.join(self.s1, "a", "b")
        self.backend.join(self.s2, "b")
        self.assertEqual(self.count(), 2)
        self.assertEqual(self.count(**{"in": []}), 2)
        self.assertEqual(self.count(**{"in": ["b"]}), 2)
        self.assertEqual(self.count(**{"in": ["a"]}), 1)
        self.assertEqual(self.count(**{"in": ["a", "b"]}), 2)
        self.assertEqual(self.count(**{"in": ["b"], "except": ["a"]}), 1)
        self.assertEqual(self.count(**{"in": ["nothing"]}), 0)
        self.assertEqual(self.count(**{"in": [self.s2]}), 1)
        self.assertEqual(self.rooms(), {"a", "b"})
        self.assertEqual(self.rooms(**{"in": [self.s2]}), {"b"})

        sockets = self.query("fetch", **{"in": ["a"]})["sockets"]
        self.assertEqual(len(sockets), 1)
        socket = sockets[0]
        self.assertEqual(socket["sid"], self.s1)
        self.assertEqual(socket["nsp"], "/")
        self.assertEqual(socket["rooms"][0], self.s1)
        self.assertEqual(sorted(socket["rooms"]), sorted([self.s1, "a", "b"]))
        self.assertEqual(set(socket["handshake"]),
                         {"headers", "query", "address", "url", "issued", "secure"})
        self.assertIsNone(socket["data"])
        everyone = self.query("fetch")["sockets"]
        self.assertEqual(sorted(s["sid"] for s in everyone), sorted([self.s1, self.s2]))

    def test_join_then_emit_in_order(self):
        self.backend.join(self.s2, "late")
        self.backend.emit("x", 1, to=["late"])
        self.assertEqual(self.c2.wait_for("x"), (1,))
        self.c1.assert_no("x", within=0.2)

    def test_leave(self):
        self.backend.join(self.s1, "a", "b")
        self.backend.leave(self.s1, "b", "never joined")
        self.assertEqual(self.count(**{"in": ["b"]}), 0)
        self.assertEqual(self.count(**{"in": ["a"]}), 1)
        self.assertEqual(self.rooms(), {"a"})
        self.backend.emit("x", "to b", to=["b"])
        self.backend.emit("x", "to a", to=["a"])
        self.assertEqual(self.c1.wait_for("x"), ("to a",))
        self.c1.assert_no("x", within=0.2)

    def test_cannot_leave_own_sid_room(self):
        self.backend.leave(self.s1, self.s1)
        self.assertEqual(self.count(**{"in": [self.s1]}), 1)
        self.backend.emit("x", "still", to=[self.s1])
        self.assertEqual(self.c1.wait_for("x"), ("still",))

    def test_join_twice_is_fine(self):
        reply = self.backend.request({"type": "join", "sid": self.s1, "nsp": "/", "rooms": ["a"]})
        self.assertTrue(reply["ok"])
        reply = self.backend.request({"type": "join", "sid": self.s1, "nsp": "/", "rooms": ["a"]})
        self.assertTrue(reply["ok"])
        self.assertEqual(self.count(**{"in": ["a"]}), 1)

    def test_join_and_leave_by_selection(self):
        self.backend.join(self.s1, "a")
        self.backend.send({"type": "join", "nsp": "/", "in": ["a"], "rooms": ["from-a"]})
        self.backend.send({"type": "join", "nsp": "/", "in": [], "except": ["a"], "rooms": ["not-a"]})
        self.assertEqual(self.query("fetch", **{"in": ["from-a"]})["sockets"][0]["sid"], self.s1)
        self.assertEqual(self.query("fetch", **{"in": ["not-a"]})["sockets"][0]["sid"], self.s2)
        self.assertEqual(self.count(**{"in": ["from-a", "not-a"]}), 2)
        self.backend.send({"type": "leave", "nsp": "/", "in": [], "rooms": ["from-a", "not-a"]})
        self.assertEqual(self.count(**{"in": ["from-a", "not-a"]}), 0)

    def test_join_errors(self):
        both = self.backend.request({"type": "join", "sid": self.s1, "in": ["a"], "nsp": "/",
                                     "rooms": ["x"]})
        self.assertEqual(both["error"]["code"], "bad_message")
        neither = self.backend.request({"type": "join", "nsp": "/", "rooms": ["x"]})
        self.assertEqual(neither["error"]["code"], "bad_message")
        unknown = self.backend.request({"type": "join", "sid": "nope", "nsp": "/", "rooms": ["x"]})
        self.assertEqual(unknown["error"]["code"], "unknown_sid")
        self.backend.join("nope", "x")
        error = self.backend.expect("error")
        self.assertEqual((error["error"]["code"], error["line"]), ("unknown_sid", "join"))
        namespace = self.backend.request({"type": "join", "sid": self.s1, "nsp": "/nope",
                                          "rooms": ["x"]})
        self.assertEqual(namespace["error"]["code"], "unknown_namespace")
        self.assertEqual(self.rooms(), set())

    def test_rooms_of_a_disconnected_socket_are_gone(self):
        self.backend.join(self.s1, "mine")
        self.c1.close()
        self.backend.expect("disconnect", sid=self.s1)
        self.assertEqual(self.rooms(), set())
        self.assertEqual(self.count(), 1)

    def test_server_side_disconnect(self):
        self.backend.disconnect(self.s1)
        self.assertEqual(self.c1.wait_for("disconnect"), ("server disconnect",))
        message = self.backend.expect("disconnect", sid=self.s1)
        self.assertEqual(message["reason"], "server namespace disconnect")
        self.assertEqual(self.count(), 1)
        self.backend.emit("x", "c2 still here", to=[self.s2])
        self.assertEqual(self.c2.wait_for("x"), ("c2 still here",))
        self.c2.assert_no("disconnect", within=0.1)
        reply = self.backend.request({"type": "disconnect", "sid": self.s1, "nsp": "/"})
        self.assertEqual(reply["error"]["code"], "unknown_sid")

    def test_disconnect_by_selection(self):
        self.backend.join(self.s2, "kick")
        reply = self.backend.request({"type": "disconnect", "nsp": "/", "in": ["kick"]})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(self.backend.expect("disconnect", sid=self.s2)["reason"],
                         "server namespace disconnect")
        self.c2.wait_for("disconnect")
        self.backend.assert_no("disconnect", within=0.2, sid=self.s1)
        self.assertEqual(self.count(), 1)


if __name__ == "__main__":
    unittest.main()
