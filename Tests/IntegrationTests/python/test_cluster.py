"""Three sidecast nodes sharing one redis-server: broadcasts, `in` selectors, queries,
`serverEmit` and acks across nodes, each driven by a backend on one node and checked on the
clients and backends of the others."""

import time
import unittest

import msgpack

from cluster import ClusterAssertions, start_nodes, start_redis
from harness import TIMEOUT, RawSocketIO, b64, wait_until

# The handshake fields the protocol promises in `connect` and `fetch` (§4).
HANDSHAKE_KEYS = ("headers", "query", "address", "url", "issued", "secure")
# Shorter than the default 5000 ms so that the timeout test is quick.
REQUESTS_TIMEOUT_MS = 2000


class ClusterTests(ClusterAssertions, unittest.TestCase):
    def start_cluster_nodes(self):
        """Three nodes on `self.redis`, once they hear one another: test_streams.py runs these
        tests again over a Redis stream by overriding this."""
        return start_nodes(self, self.redis, 3, "--requests-timeout", REQUESTS_TIMEOUT_MS)

    def setUp(self):
        self.redis = start_redis(self)
        self.a, self.b, self.c = self.start_cluster_nodes()
        self.ba = self.a.backend(self)
        self.bb = self.b.backend(self)
        self.bc = self.c.backend(self)
        self.assertEqual(len({self.ba.node, self.bb.node, self.bc.node}), 3, "node ids are distinct")
        # a1 on A; b1 and b2 on B; c1 on C. Mixed transports on purpose.
        self.clients = {}
        self.sids = {}
        self.connects = {}
        for name, node, backend, transports in (
            ("a1", self.a, self.ba, ["websocket"]),
            ("b1", self.b, self.bb, ["polling"]),
            ("b2", self.b, self.bb, ["websocket"]),
            ("c1", self.c, self.bc, ["polling"]),
        ):
            client = node.client(self, transports=transports)
            self.connects[name] = backend.expect_connect(sid=client.sid())
            self.clients[name] = client
            self.sids[name] = client.sid()
        # "red" = a1, b1, c1 (one per node); b2 stays out. Each join goes to the socket's own node.
        for name, backend in (("a1", self.ba), ("b1", self.bb), ("c1", self.bc)):
            self.ok(backend, {"type": "join", "sid": self.sids[name], "nsp": "/", "rooms": ["red"]})

    def count(self, backend, **selection):
        return self.ok(backend, {"type": "count", "nsp": "/", **selection})["count"]

    def sids_of(self, reply):
        return sorted(socket["sid"] for socket in reply["sockets"])

    def names(self, *names):
        return sorted(self.sids[name] for name in names)

    # Broadcasts

    def test_room_emit_reaches_members_on_every_node(self):
        self.ba.emit("news", "red team", {"n": 1}, to=["red"])
        self.assert_received("news", ("red team", {"n": 1}), ["a1", "b1", "c1"])

    def test_emit_to_everyone(self):
        self.bc.emit("all", 7)
        self.assert_received("all", (7,), ["a1", "b1", "b2", "c1"])

    def test_room_except_a_socket_on_another_node(self):
        self.ba.emit("news", "no b1", to=["red"], except_=[self.sids["b1"]])
        self.assert_received("news", ("no b1",), ["a1", "c1"])

    def test_everyone_except_a_room(self):
        self.bc.emit("news", "not red", except_=["red"])
        self.assert_received("news", ("not red",), ["b2"])

    def test_emit_to_one_socket_of_another_node(self):
        self.ba.emit("direct", "for c1", to=[self.sids["c1"]])
        self.assert_received("direct", ("for c1",), ["c1"])

    def test_emit_to_several_rooms_delivers_once(self):
        self.ba.emit("once", 1, to=["red", self.sids["b1"], self.sids["b2"]])
        self.assert_received("once", (1,), ["a1", "b1", "b2", "c1"])

    def test_local_emit_stays_on_its_node(self):
        self.ok(self.bb, {"type": "emit", "nsp": "/", "event": "local", "args": ["B only"], "local": True})
        self.assert_received("local", ("B only",), ["b1", "b2"])
        self.ok(self.ba, {"type": "emit", "nsp": "/", "event": "local", "args": ["A red"],
                          "to": ["red"], "local": True})
        self.assert_received("local", ("A red",), ["a1"])

    def test_binary_args_cross_nodes(self):
        blob = bytes(range(256))
        self.ba.emit("bin", "file", b64(blob), {"nested": [b64(b"\x00\xff")]}, to=["red"])
        for name in ("a1", "b1", "c1"):
            self.assertEqual(self.clients[name].wait_for("bin"),
                             ("file", blob, {"nested": [b"\x00\xff"]}), f"client {name}")
        self.clients["b2"].assert_no("bin", within=0.2)

    def test_emits_of_one_node_arrive_in_order(self):
        # To the two WebSocket clients: python-engineio refuses polling payloads of more than
        # 16 packets, which a burst like this one fills.
        for i in range(40):
            self.bc.emit("n", i, to=[self.sids["a1"], self.sids["b2"]])
        for name in ("a1", "b2"):
            self.assertEqual([self.clients[name].wait_for("n")[0] for _ in range(40)], list(range(40)),
                             f"client {name}")

    # join / leave / disconnect with `in`

    def test_sockets_join_across_nodes(self):
        self.ok(self.ba, {"type": "join", "nsp": "/", "in": ["red"], "rooms": ["blue"]})
        wait_until(lambda: self.count(self.bc, **{"in": ["blue"]}) == 3, message="3 sockets in blue")
        reply = self.ok(self.bc, {"type": "fetch", "nsp": "/", "in": ["blue"]})
        self.assertEqual(self.sids_of(reply), self.names("a1", "b1", "c1"))
        self.bb.emit("blue-news", "hi", to=["blue"])
        self.assert_received("blue-news", ("hi",), ["a1", "b1", "c1"])

    def test_sockets_join_with_except(self):
        self.ok(self.bc, {"type": "join", "nsp": "/", "in": [], "except": ["red"], "rooms": ["green"]})
        wait_until(lambda: self.count(self.ba, **{"in": ["green"]}) == 1, message="b2 in green")
        self.assertEqual(self.sids_of(self.ok(self.ba, {"type": "fetch", "nsp": "/", "in": ["green"]})),
                         self.names("b2"))

    def test_sockets_leave_across_nodes(self):
        self.ok(self.ba, {"type": "join", "nsp": "/", "in": [], "rooms": ["blue"]})
        wait_until(lambda: self.count(self.ba, **{"in": ["blue"]}) == 4, message="everyone in blue")
        self.ok(self.bb, {"type": "leave", "nsp": "/", "in": ["blue"], "except": [self.sids["c1"]],
                          "rooms": ["blue"]})
        wait_until(lambda: self.count(self.ba, **{"in": ["blue"]}) == 1, message="only c1 left in blue")
        self.assertEqual(self.sids_of(self.ok(self.ba, {"type": "fetch", "nsp": "/", "in": ["blue"]})),
                         self.names("c1"))
        self.ba.emit("blue-news", "c1 only", to=["blue"])
        self.assert_received("blue-news", ("c1 only",), ["c1"])

    def test_disconnect_sockets_across_nodes(self):
        self.ok(self.bc, {"type": "disconnect", "nsp": "/", "in": ["red"], "except": [self.sids["a1"]]})
        for name in ("b1", "c1"):
            self.clients[name].wait_for("disconnect")
        # Each node tells its own backend, with the reason of a server-side disconnect.
        self.assertEqual(self.bb.expect("disconnect", sid=self.sids["b1"])["reason"],
                         "server namespace disconnect")
        self.assertEqual(self.bc.expect("disconnect", sid=self.sids["c1"])["reason"],
                         "server namespace disconnect")
        self.clients["a1"].assert_no("disconnect", within=0.3)
        self.clients["b2"].assert_no("disconnect", within=0.05)
        self.assertEqual(self.sids_of(self.ok(self.ba, {"type": "fetch", "nsp": "/"})),
                         self.names("a1", "b2"))

    def test_local_join_stays_on_its_node(self):
        self.ok(self.bb, {"type": "join", "nsp": "/", "in": [], "rooms": ["mine"], "local": True})
        # A cluster-wide join published after it: once A and C applied this one, they would have
        # applied a published "mine" join too (one node's messages reach the others in order).
        self.ok(self.bb, {"type": "join", "nsp": "/", "in": [], "rooms": ["barrier"]})
        for backend in (self.ba, self.bc):
            wait_until(lambda: self.count(backend, local=True, **{"in": ["barrier"]}) == 1,
                       message="the barrier join applied")
            self.assertEqual(self.count(backend, local=True, **{"in": ["mine"]}), 0)
        self.assertEqual(self.sids_of(self.ok(self.bc, {"type": "fetch", "nsp": "/", "in": ["mine"]})),
                         self.names("b1", "b2"))

    # Queries

    def test_fetch_returns_sockets_of_every_node_with_their_data(self):
        for name, backend in (("a1", self.ba), ("b1", self.bb), ("b2", self.bb), ("c1", self.bc)):
            self.ok(backend, {"type": "data", "sid": self.sids[name], "nsp": "/", "data": {"name": name}})
        reply = self.ok(self.bb, {"type": "fetch", "nsp": "/"})
        by_sid = {socket["sid"]: socket for socket in reply["sockets"]}
        self.assertEqual(sorted(by_sid), self.names("a1", "b1", "b2", "c1"))
        for name, sid in self.sids.items():
            socket = by_sid[sid]
            self.assertEqual(socket["nsp"], "/", name)
            self.assertEqual(socket["data"], {"name": name}, name)
            self.assertEqual(socket["rooms"][0], sid, f"{name}: own room first")
            expected_rooms = {sid, "red"} if name != "b2" else {sid}
            self.assertEqual(set(socket["rooms"]), expected_rooms, name)
            self.assertEqual(len(socket["rooms"]), len(expected_rooms), name)
            handshake = {key: socket["handshake"].get(key) for key in HANDSHAKE_KEYS}
            expected = {key: self.connects[name]["handshake"][key] for key in HANDSHAKE_KEYS}
            self.assertEqual(handshake, expected, f"{name}: handshake as in connect")

    def test_fetch_with_selection(self):
        reply = self.ok(self.bc, {"type": "fetch", "nsp": "/", "in": ["red"], "except": [self.sids["a1"]]})
        self.assertEqual(self.sids_of(reply), self.names("b1", "c1"))
        reply = self.ok(self.bc, {"type": "fetch", "nsp": "/", "in": [self.sids["b2"]]})
        self.assertEqual(self.sids_of(reply), self.names("b2"))
        reply = self.ok(self.bc, {"type": "fetch", "nsp": "/", "in": ["nobody"]})
        self.assertEqual(reply["sockets"], [])

    def test_local_fetch_and_count(self):
        reply = self.ok(self.bb, {"type": "fetch", "nsp": "/", "local": True})
        self.assertEqual(self.sids_of(reply), self.names("b1", "b2"))
        self.assertEqual(self.count(self.bb, local=True), 2)
        self.assertEqual(self.count(self.bb, local=True, **{"in": ["red"]}), 1)

    def test_count_across_nodes(self):
        self.assertEqual(self.count(self.ba), 4)
        self.assertEqual(self.count(self.ba, **{"in": ["red"]}), 3)
        self.assertEqual(self.count(self.ba, **{"in": ["red"], "except": [self.sids["c1"]]}), 2)
        self.assertEqual(self.count(self.ba, **{"in": ["nobody"]}), 0)

    def test_rooms_across_nodes(self):
        self.ok(self.bb, {"type": "join", "sid": self.sids["b2"], "nsp": "/", "rooms": ["b-only"]})
        self.ok(self.bc, {"type": "join", "sid": self.sids["c1"], "nsp": "/", "rooms": ["c-only"]})
        reply = self.ok(self.ba, {"type": "rooms", "nsp": "/"})
        self.assertEqual(sorted(reply["rooms"]), ["b-only", "c-only", "red"])
        local = self.ok(self.ba, {"type": "rooms", "nsp": "/", "local": True})
        self.assertEqual(local["rooms"], ["red"])

    # serverEmit / serverEvent / serverAck

    def test_server_emit_with_answers_from_every_other_node(self):
        self.ba.send({"type": "serverEmit", "id": "load", "nsp": "/", "event": "load", "args": [{"q": 1}]})
        for backend, answer in ((self.bb, {"node": "B"}), (self.bc, {"node": "C"})):
            event = backend.expect("serverEvent", event="load")
            self.assertEqual(event["nsp"], "/")
            self.assertEqual(event["node"], self.ba.node)
            self.assertEqual(event["args"], [{"q": 1}])
            self.assertIsInstance(event["ack"], int)
            # Only the first element of args crosses nodes.
            backend.send({"type": "serverAck", "ack": event["ack"], "args": [answer, "dropped"]})
        reply = self.ba.expect("reply", id="load")
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(sorted(reply["responses"], key=lambda r: r["node"]), [{"node": "B"}, {"node": "C"}])
        self.ba.assert_no("serverEvent", within=0.2)

    def test_server_emit_binary_args_and_answers(self):
        # Expected behaviour (PROTOCOL.md §10): serverEmit and serverAck binary values reach the
        # other side as {"$binary": ...}. Sidecast currently delivers them as Node's JSON form of
        # a Buffer, {"type": "Buffer", "data": [...]}, so this test fails until that is fixed.
        self.ba.send({"type": "serverEmit", "id": "bin", "event": "blob", "args": [b64(b"\x01\x02")]})
        events = [backend.expect("serverEvent", event="blob") for backend in (self.bb, self.bc)]
        for backend, event in zip((self.bb, self.bc), events):
            backend.send({"type": "serverAck", "ack": event["ack"], "args": [b64(b"\xfe")]})
        reply = self.ba.expect("reply", id="bin")
        self.assertTrue(reply["ok"], reply)
        # Both directions at once, so a failure shows what each side got.
        self.assertEqual(([event["args"] for event in events], reply["responses"]),
                         ([[b64(b"\x01\x02")]] * 2, [b64(b"\xfe")] * 2))

    def test_server_emit_without_id_expects_no_answer(self):
        self.bc.send({"type": "serverEmit", "event": "config-changed", "args": ["motd"]})
        for backend in (self.ba, self.bb):
            event = backend.expect("serverEvent", event="config-changed")
            self.assertEqual((event["args"], event["node"]), (["motd"], self.bc.node))
            self.assertNotIn("ack", event)
        self.bc.assert_no("serverEvent", within=0.3)

    def test_server_emit_times_out_when_a_node_is_silent(self):
        sent = time.monotonic()
        self.ba.send({"type": "serverEmit", "id": "half", "event": "load"})
        event = self.bb.expect("serverEvent", event="load")
        self.bb.send({"type": "serverAck", "ack": event["ack"], "args": []})
        self.bc.expect("serverEvent", event="load")  # ... and C never answers
        reply = self.ba.expect("reply", id="half", timeout=REQUESTS_TIMEOUT_MS / 1000 + TIMEOUT)
        self.assertGreater(time.monotonic() - sent, REQUESTS_TIMEOUT_MS / 1000 - 0.2, "waited the timeout")
        self.assertFalse(reply["ok"], reply)
        self.assertEqual(reply["error"]["code"], "timeout")
        self.assertEqual(reply["responses"], [None])

    # Emit with ack to clients of several nodes

    def test_emit_with_ack_collects_answers_from_every_node(self):
        for name, client in self.clients.items():
            client.ack_replies["vote"] = lambda *args, name=name: f"{name}:{args[0]}"
        self.ba.send({"type": "emit", "id": "poll", "nsp": "/", "event": "vote", "args": ["lunch?"],
                      "to": ["red"], "ack": {"timeout": 4000}})
        reply = self.ba.expect("reply", id="poll")
        self.assertTrue(reply["ok"], reply)
        responses = reply["responses"]
        self.assertEqual(sorted(r["args"][0] for r in responses), ["a1:lunch?", "b1:lunch?", "c1:lunch?"])
        for response in responses:
            # Only this node's own clients are known by sid.
            expected_sid = self.sids["a1"] if response["args"][0].startswith("a1") else None
            self.assertEqual(response["sid"], expected_sid, response)
            self.assertEqual(len(response["args"]), 1, response)
        self.clients["b2"].assert_no("vote", within=0.1)

    def test_emit_with_ack_to_a_socket_of_another_node(self):
        self.clients["c1"].ack_replies["ping"] = lambda *args: "pong"
        self.bb.send({"type": "emit", "id": "p", "nsp": "/", "event": "ping", "args": [],
                      "to": [self.sids["c1"]], "ack": {"timeout": 4000}})
        reply = self.bb.expect("reply", id="p")
        self.assertEqual((reply["ok"], reply["responses"]), (True, [{"sid": None, "args": ["pong"]}]), reply)

    def test_emit_with_ack_binary_answer_crosses_nodes(self):
        self.clients["b1"].ack_replies["get"] = lambda *args: b"\x07\x08"
        self.bc.send({"type": "emit", "id": "g", "nsp": "/", "event": "get", "args": [],
                      "to": [self.sids["b1"], "nobody"], "ack": {"timeout": 4000}})
        reply = self.bc.expect("reply", id="g")
        self.assertEqual((reply["ok"], reply["responses"]), (True, [{"sid": None, "args": [b64(b"\x07\x08")]}]),
                         reply)

    def test_emit_with_ack_to_nobody_answers_at_once(self):
        self.ba.send({"type": "emit", "id": "none", "nsp": "/", "event": "x", "args": [],
                      "to": ["nobody"], "ack": {"timeout": 4000}})
        reply = self.ba.expect("reply", id="none", timeout=2)
        self.assertEqual((reply["ok"], reply["responses"]), (True, []), reply)

    def test_emit_with_ack_times_out_with_partial_answers(self):
        # A bare Socket.IO client on C that never answers acks, and b1 on B that does.
        silent = RawSocketIO(self.c)
        self.addCleanup(silent.close)
        silent_sid = silent.connect()
        self.bc.expect_connect(sid=silent_sid)
        self.ok(self.bc, {"type": "join", "sid": silent_sid, "nsp": "/", "rooms": ["slow"]})
        self.ok(self.bb, {"type": "join", "sid": self.sids["b1"], "nsp": "/", "rooms": ["slow"]})
        self.clients["b1"].ack_replies["slow"] = lambda *args: "b1"
        self.ba.send({"type": "emit", "id": "slow", "nsp": "/", "event": "slow", "args": [],
                      "to": ["slow"], "ack": {"timeout": 1500}})
        self.assertRegex(silent.recv_skipping_pings(), r'^42\d+\["slow"\]$')
        reply = self.ba.expect("reply", id="slow")
        self.assertFalse(reply["ok"], reply)
        self.assertEqual(reply["error"]["code"], "timeout")
        self.assertEqual(reply["responses"], [{"sid": None, "args": ["b1"]}])

class NodeClassicPeerTests(unittest.TestCase):
    """Emits to one socket between sidecast and a Node server with the classic adapter
    (`createAdapter`), whose `broadcast` and `onmessage` in `lib/index.ts` of
    socketio/socket.io-redis-adapter this re-creates: a one-room broadcast is the msgpack
    `[uid, packet, opts]` published on `prefix#nsp#room#`, every node hears it through its
    `PSUBSCRIBE prefix#nsp#*`, and a node drops it unless it has the room (`hasRoom`) — a
    socket's own id being one of its rooms."""

    def setUp(self):
        self.redis = start_redis(self)
        (self.node,) = start_nodes(self, self.redis, 1)
        self.backend = self.node.backend(self)
        self.client = self.node.client(self, transports=["websocket"])
        self.sid = self.backend.expect_connect(sid=self.client.sid())["sid"]

    def test_a_node_emit_to_a_sidecast_socket(self):
        node_uid = "NodeUid"
        packet = {"type": 2, "data": ["from-node", "x"], "nsp": "/"}
        opts = {"rooms": [self.sid], "except": [], "flags": {}}
        with self.redis.client(socket_timeout=2) as r:
            # Node's channel for one room: `this.channel + room + "#"`.
            receivers = r.publish(f"socket.io#/#{self.sid}#", msgpack.packb([node_uid, packet, opts]))
        self.assertEqual(receivers, 1, "sidecast hears every room channel through its pattern")
        self.assertEqual(list(self.client.wait_for("from-node")), ["x"])

    def test_a_sidecast_emit_to_a_node_socket(self):
        node_socket = "abcdefghij0123456789"  # 20 characters, as Node's base64id makes them
        with self.redis.client(socket_timeout=2) as r, r.pubsub() as pubsub:
            pubsub.psubscribe("socket.io#/#*")
            wait_until(lambda: pubsub.get_message(timeout=0.1) is not None, message="psubscribed")
            self.backend.emit("from-sidecast", "y", to=[node_socket])
            deadline = time.monotonic() + TIMEOUT
            message = None
            while message is None and time.monotonic() < deadline:
                item = pubsub.get_message(timeout=0.1)
                if item and item["type"] == "pmessage":
                    message = item
        self.assertIsNotNone(message, "nothing published for the Node socket")
        # Node's `onmessage`: the room from the channel name, then [uid, packet, opts].
        room = message["channel"].decode()[len("socket.io#/#"):-1]
        self.assertEqual(room, node_socket)
        uid, packet, opts = msgpack.unpackb(message["data"], raw=False)
        self.assertEqual(uid, self.backend.node)
        self.assertEqual((packet["nsp"], packet["data"]), ("/", ["from-sidecast", "y"]))
        self.assertEqual(opts["rooms"], [node_socket])


if __name__ == "__main__":
    unittest.main()
