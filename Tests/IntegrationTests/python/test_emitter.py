"""A two-node cluster driven from outside by a Redis emitter that publishes exactly what
`@socket.io/redis-emitter` 5.x publishes, plus garbage on the same channels."""

import json
import unittest

import msgpack

from cluster import ClusterAssertions, start_nodes, start_redis
from harness import wait_until

EMITTER_UID = "emitter"
RESERVED_EVENTS = {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}


class Emitter:
    """The messages of `@socket.io/redis-emitter` (lib/index.ts, lib/broadcast-operator.ts),
    non-sharded, with its default notepack.io parser: `emit` publishes the msgpack array
    `[uid, packet, opts]` on `key#nsp#` (or `key#nsp#room#` for exactly one room); the other
    operations publish `JSON.stringify` output on `key-request#nsp#`."""

    def __init__(self, redis_client, key="socket.io", nsp="/", rooms=(), except_rooms=(), flags=None):
        self.redis = redis_client
        self.key = key
        self.nsp = nsp
        self.rooms = list(dict.fromkeys(rooms))  # a JavaScript Set keeps insertion order
        self.except_rooms = list(dict.fromkeys(except_rooms))
        self.flags = dict(flags or {})

    @property
    def broadcast_channel(self):
        return f"{self.key}#{self.nsp}#"

    @property
    def request_channel(self):
        return f"{self.key}-request#{self.nsp}#"

    def _with(self, **changes):
        fields = {"key": self.key, "nsp": self.nsp, "rooms": self.rooms,
                  "except_rooms": self.except_rooms, "flags": self.flags, **changes}
        return Emitter(self.redis, **fields)

    def of(self, nsp):
        return self._with(nsp=nsp if nsp.startswith("/") else "/" + nsp, rooms=(), except_rooms=(), flags={})

    def to(self, *rooms):
        return self._with(rooms=self.rooms + list(rooms))

    in_ = to

    def except_(self, *rooms):
        return self._with(except_rooms=self.except_rooms + list(rooms))

    @property
    def volatile(self):
        return self._with(flags={**self.flags, "volatile": True})

    def emit(self, event, *args):
        """Python bytes are packed as msgpack bin, as notepack packs a Buffer."""
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        packet = {"type": 2, "data": [event, *args], "nsp": self.nsp}
        opts = {"rooms": self.rooms, "flags": self.flags, "except": self.except_rooms}
        message = msgpack.packb([EMITTER_UID, packet, opts], use_bin_type=True)
        channel = self.broadcast_channel
        if len(self.rooms) == 1:
            channel += self.rooms[0] + "#"
        return self.redis.publish(channel, message)

    def _request(self, request):
        text = json.dumps(request, separators=(",", ":"), ensure_ascii=False)
        return self.redis.publish(self.request_channel, text)

    def _selector(self):
        return {"rooms": self.rooms, "except": self.except_rooms}

    def sockets_join(self, rooms):
        rooms = rooms if isinstance(rooms, list) else [rooms]
        return self._request({"type": 2, "opts": self._selector(), "rooms": rooms})

    def sockets_leave(self, rooms):
        rooms = rooms if isinstance(rooms, list) else [rooms]
        return self._request({"type": 3, "opts": self._selector(), "rooms": rooms})

    def disconnect_sockets(self, close=False):
        return self._request({"type": 4, "opts": self._selector(), "close": close})

    def server_side_emit(self, *args):
        return self._request({"uid": EMITTER_UID, "type": 6, "data": list(args)})


class EmitterTests(ClusterAssertions, unittest.TestCase):
    def setUp(self):
        self.redis = start_redis(self)
        self.a, self.b = start_nodes(self, self.redis, 2, namespaces=("/", "/admin"))
        self.redis.wait_nodes(2, nsp="/admin")
        self.ba = self.a.backend(self, nsps=("/", "/admin"))
        self.bb = self.b.backend(self, nsps=("/", "/admin"))
        self.publisher = self.redis.client()
        self.addCleanup(self.publisher.close)
        self.emitter = Emitter(self.publisher)
        # a1, a2 on A; b1, b2 on B; "red" = a1, b1. Mixed transports on purpose.
        self.clients, self.sids = {}, {}
        for name, node, backend, transports in (
            ("a1", self.a, self.ba, ["websocket"]),
            ("a2", self.a, self.ba, ["polling"]),
            ("b1", self.b, self.bb, ["polling"]),
            ("b2", self.b, self.bb, ["websocket"]),
        ):
            client = node.client(self, transports=transports)
            backend.expect_connect(sid=client.sid())
            self.clients[name], self.sids[name] = client, client.sid()
        for name, backend in (("a1", self.ba), ("b1", self.bb)):
            self.ok(backend, {"type": "join", "sid": self.sids[name], "nsp": "/", "rooms": ["red"]})

    def count(self, room):
        return self.ok(self.ba, {"type": "count", "nsp": "/", "in": [room]})["count"]

    def publish(self, channel, message):
        """Publishes and checks that both nodes subscribe to the channel (or its pattern)."""
        self.assertEqual(self.publisher.publish(channel, message), 2, f"receivers of {channel}")

    # What the emitter does

    def test_emit_to_a_room(self):
        self.assertEqual(self.emitter.to("red").emit("news", "red team", {"n": 1}), 2)
        self.assert_received("news", ("red team", {"n": 1}), ["a1", "b1"])

    def test_emit_to_several_rooms_and_except(self):
        self.emitter.to("red", self.sids["b2"]).except_(self.sids["a1"]).emit("news", 2)
        self.assert_received("news", (2,), ["b1", "b2"])

    def test_emit_to_all(self):
        self.emitter.emit("all", "everyone")
        self.assert_received("all", ("everyone",), ["a1", "a2", "b1", "b2"])

    def test_emit_to_all_except_a_room(self):
        self.emitter.except_("red").emit("rest", [1, 2])
        self.assert_received("rest", ([1, 2],), ["a2", "b2"])

    def test_volatile_emit(self):
        self.emitter.volatile.to(self.sids["b2"]).emit("v", True)
        self.assert_received("v", (True,), ["b2"])

    def test_emit_binary(self):
        blob = bytes(range(256)) * 4
        self.emitter.emit("bin", "file", blob, {"inner": b"\x00\xff"})
        for name in self.clients:
            self.assertEqual(self.clients[name].wait_for("bin"), ("file", blob, {"inner": b"\x00\xff"}),
                             f"client {name}")

    def test_sockets_join_then_emit_to_the_joined_room(self):
        self.emitter.in_("red").sockets_join("blue")
        # The emitter publishes the emit right after the join, on the same connection: every
        # node must apply the join before it delivers the emit.
        self.emitter.to("blue").emit("blue-news", "joined")
        self.assert_received("blue-news", ("joined",), ["a1", "b1"])
        self.assertEqual(self.count("blue"), 2)

    def test_sockets_join_everyone_except(self):
        self.emitter.except_(self.sids["b2"]).sockets_join(["green", "yellow"])
        wait_until(lambda: self.count("yellow") == 3, message="3 sockets in yellow")
        reply = self.ok(self.bb, {"type": "fetch", "nsp": "/", "in": ["green"]})
        self.assertEqual(sorted(s["sid"] for s in reply["sockets"]),
                         sorted(self.sids[n] for n in ("a1", "a2", "b1")))

    def test_sockets_leave(self):
        self.emitter.in_(self.sids["b1"]).sockets_leave("red")
        self.emitter.to("red").emit("still-red", 1)
        self.assert_received("still-red", (1,), ["a1"])
        self.assertEqual(self.count("red"), 1)

    def test_disconnect_sockets(self):
        self.emitter.in_("red").except_(self.sids["a1"]).disconnect_sockets()
        self.clients["b1"].wait_for("disconnect")
        self.assertEqual(self.bb.expect("disconnect", sid=self.sids["b1"])["reason"],
                         "server namespace disconnect")
        for name in ("a1", "a2", "b2"):
            self.clients[name].assert_no("disconnect", within=0.3 if name == "a1" else 0.05)
        self.assertEqual(self.ok(self.ba, {"type": "count", "nsp": "/"})["count"], 3)

    def two_namespace_client(self):
        """A client on B in "/" and "/admin"; returns it and its sids in both."""
        client = self.b.client(self, namespaces=("/", "/admin"))
        main = self.bb.expect_connect(nsp="/", sid=client.sid("/"))["sid"]
        admin = self.bb.expect_connect(nsp="/admin", sid=client.sid("/admin"))["sid"]
        return client, main, admin

    def test_disconnect_sockets_of_another_namespace(self):
        client, main, admin = self.two_namespace_client()
        self.emitter.of("admin").in_(admin).disconnect_sockets()
        client.wait_for("disconnect", nsp="/admin")
        self.assertEqual(self.bb.expect("disconnect", nsp="/admin", sid=admin)["reason"],
                         "server namespace disconnect")
        self.bb.assert_no("disconnect", within=0.3, sid=main)
        client.emit("still-here", 1)
        self.bb.expect_event("still-here", sid=main)

    def test_disconnect_sockets_with_close_ends_the_whole_connection(self):
        client, main, admin = self.two_namespace_client()
        self.emitter.of("/admin").in_(admin).disconnect_sockets(True)
        self.assertEqual(self.bb.expect("disconnect", nsp="/admin", sid=admin)["reason"],
                         "server namespace disconnect")
        # The connection closed, so the client's socket in "/" went too.
        self.bb.expect("disconnect", nsp="/", sid=main)
        for name, other in self.clients.items():
            other.assert_no("disconnect", within=0.2 if name == "a1" else 0)

    def test_server_side_emit_reaches_every_node_backend(self):
        self.emitter.server_side_emit("config-changed", {"key": "motd"}, 3)
        for backend in (self.ba, self.bb):
            event = backend.expect("serverEvent", event="config-changed")
            self.assertEqual(event["nsp"], "/")
            self.assertEqual(event["node"], "emitter")
            self.assertEqual(event["args"], [{"key": "motd"}, 3])
            self.assertNotIn("ack", event)

    def test_server_side_emit_without_args(self):
        self.emitter.server_side_emit("tick")
        for backend in (self.ba, self.bb):
            self.assertEqual(backend.expect("serverEvent", event="tick")["args"], [])

    def test_emit_to_another_namespace(self):
        client, main, admin = self.two_namespace_client()
        self.emitter.of("admin").emit("adm", "for /admin")
        self.assertEqual(client.wait_for("adm", nsp="/admin"), ("for /admin",))
        client.assert_no("adm", nsp="/", within=0.2)
        for other in self.clients.values():
            other.assert_no("adm", within=0)

    def test_packet_of_another_namespace_on_this_channel_is_skipped(self):
        # Node's adapter drops a packet whose nsp is not the channel's namespace; so must we.
        client, main, admin = self.two_namespace_client()
        stray = msgpack.packb([EMITTER_UID, {"type": 2, "data": ["lost", 1], "nsp": "/admin"},
                               {"rooms": [], "flags": {}, "except": []}], use_bin_type=True)
        self.publish(self.emitter.broadcast_channel, stray)
        Emitter(self.publisher, key="other-app").emit("lost", 2)
        self.emitter.emit("found", 3)
        self.assert_received("found", (3,), ["a1", "a2", "b1", "b2"])
        for other in [client, *self.clients.values()]:
            other.assert_no("lost", within=0)
            other.assert_no("lost", nsp="/admin", within=0)

    # Garbage on the same channels

    def test_garbage_broadcasts_are_skipped(self):
        room = self.emitter.broadcast_channel + "red#"
        garbage = [
            b"not msgpack at all \xc1\xc1",
            b"",
            msgpack.packb({"uid": "emitter"}),
            msgpack.packb([1, 2, 3]),
            msgpack.packb(["emitter"]),
            msgpack.packb(["emitter", "not a packet", {}]),
            msgpack.packb(["emitter", {"type": "two", "data": ["x"], "nsp": "/"}, {}]),
            msgpack.packb(["emitter", {"type": 99, "data": ["x"], "nsp": "/"}, {}]),
            msgpack.packb(["emitter", {"type": 2, "data": ["x"], "nsp": "/"}, "not opts"]),
            msgpack.packb(["emitter", {"type": 2, "data": ["x"], "nsp": "/"}, {"rooms": "red"}]),
            msgpack.packb(["emitter", {"type": 2, "data": ["x"], "nsp": "/"}, {"rooms": [], "flags": 7}]),
            msgpack.packb(["emitter", {"type": 2, "data": ["x"], "nsp": "/", "id": -1}, {}]),
            msgpack.packb(["emitter", {"type": 2, "data": ["x"], "nsp": "/"}, {}])[:-3],
            b"{\"uid\":\"emitter\"}",
        ]
        for message in garbage:
            self.publish(self.emitter.broadcast_channel, message)
            self.publish(room, message)
        self.emitter.to("red").emit("after", "garbage")
        self.assert_received("after", ("garbage",), ["a1", "b1"])
        for client in self.clients.values():
            client.assert_no("x", within=0.05)
            client.assert_no("disconnect", within=0)
        self.assertEqual(self.ok(self.ba, {"type": "count", "nsp": "/"})["count"], 4)
        self.assertTrue(all(node.proc.poll() is None for node in (self.a, self.b)))

    def test_garbage_requests_are_skipped(self):
        garbage = [
            "not json at all",
            "{",
            "[]",
            "null",
            "{}",
            '{"type":99}',
            '{"type":"2","opts":{"rooms":[],"except":[]},"rooms":["x"]}',
            '{"type":2,"opts":"all","rooms":["x"]}',
            '{"type":2,"opts":{"rooms":"red","except":[]},"rooms":["x"]}',
            '{"type":2,"opts":{"rooms":[],"except":[]},"rooms":"x"}',
            '{"type":2,"opts":{"rooms":[],"except":[]},"rooms":[1]}',
            '{"type":4,"opts":null,"close":true}',
            '{"type":5,"opts":{"rooms":[],"except":[]}}',
            '{"uid":"emitter","type":6,"data":[]}',
            '{"uid":"emitter","type":6,"data":"x"}',
            '{"uid":"emitter","type":6,"data":[42]}',
            '{"uid":7,"type":6,"data":["x"]}',
            '{"uid":"emitter","type":1}',
            '{"uid":"emitter","type":7,"requestId":"r","packet":"x","opts":{}}',
        ]
        for text in garbage:
            self.publish(self.emitter.request_channel, text.encode())
        self.publish(self.emitter.request_channel, msgpack.packb({"type": 2, "opts": 1}))
        self.publish(self.emitter.request_channel, b"\xc1\xff\x00")
        # Nothing happened, and a good request and a good emit still work.
        self.emitter.in_("red").sockets_join("after")
        self.emitter.to("after").emit("after", "garbage")
        self.emitter.server_side_emit("after-garbage")
        self.assert_received("after", ("garbage",), ["a1", "b1"])
        for backend in (self.ba, self.bb):
            backend.expect("serverEvent", event="after-garbage")
            backend.assert_no("serverEvent", within=0.1, event="x")
            backend.assert_no("disconnect", within=0)
        self.assertEqual(self.count("x"), 0)
        self.assertEqual(self.ok(self.bb, {"type": "count", "nsp": "/"})["count"], 4)
        self.assertTrue(all(node.proc.poll() is None for node in (self.a, self.b)))


if __name__ == "__main__":
    unittest.main()
