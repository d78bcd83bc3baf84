"""Sharded pub/sub: three sidecast nodes on a Redis Cluster (3 masters, 3 replicas) with
`--redis-cluster ... --redis-sharded`, in the message format of the Node adapter's
`createShardedAdapter`. Emits to rooms whose channels spread over many hash slots cross nodes;
fetch, count and serverEmit reach every node, which count one another as Node's sharded adapter
does (`PUBSUB SHARDNUMSUB` of the namespace's channel, no heartbeats); SIGKILL of the master owning the namespace's
channel interrupts delivery only briefly. Emits to one socket of another node arrive in every
`--redis-subscription-mode`, between sidecast nodes and next to a re-created Node sharded node
(node_sharded.py). A last test measures cross-node latency (p50/p99 over
a few hundred emits) in sharded mode next to classic pub/sub on a single Redis, and prints both."""

import statistics
import subprocess
import sys
import json
import time
import unittest

from cluster import start_nodes, start_redis
from harness import TIMEOUT, start_sidecast, wait_until
from node_sharded import NodeShardedPeer, looks_like_a_socket_id
from test_ha import FAILOVER_WAIT, REDIS_CLI, ROOMS, HATestCase, RedisProcess, cluster_port

LATENCY_EMITS = 300


def start_redis_cluster(test):
    """Six cluster-enabled redis-servers joined as 3 masters with one replica each."""
    ports = []
    while len(ports) < 6:
        port = cluster_port()
        if port not in ports:
            ports.append(port)
    nodes = [RedisProcess(test, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", "1000", port=port, name="cluster")
             for port in ports]
    out = subprocess.run([REDIS_CLI, "--cluster", "create", *(n.address for n in nodes),
                          "--cluster-replicas", "1", "--cluster-yes"],
                         capture_output=True, text=True, timeout=60)
    test.assertIn("All 16384 slots covered", out.stdout, out.stdout + out.stderr)
    for node in nodes:
        wait_until(lambda: node.command("CLUSTER", "INFO").find("cluster_state:ok") >= 0, timeout=20,
                   message=f"cluster state ok on {node.port}")
        wait_until(lambda: node.command("ROLE")[0] == "master"
                   or node.command("INFO", "replication").get("master_link_status") == "up",
                   timeout=20, message=f"replication sync on {node.port}")
    return nodes


def shard_subscribers(redis_nodes, channel):
    """`PUBSUB SHARDNUMSUB` summed over the live nodes: only the slot's master has any."""
    total = 0
    for node in redis_nodes:
        if node.proc.poll() is not None:
            continue
        try:
            reply = node.command("PUBSUB", "SHARDNUMSUB", channel)
            total += int(reply[1])
        except Exception:  # a node down or still failing over
            pass
    return total


def owner_of(redis_nodes, channel):
    """The master whose slots hold `channel`."""
    live = next(n for n in redis_nodes if n.proc.poll() is None)
    slot = live.command("CLUSTER", "KEYSLOT", channel)
    for start, end, master, *_ in live.command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return next(n for n in redis_nodes if n.port == int(master[1]))
    raise AssertionError(f"no master owns slot {slot}")


def measure_latency(test, backend, client, label):
    """Emits LATENCY_EMITS events one at a time from `backend` to `client` on another node;
    returns (p50, p99) in milliseconds and prints them."""
    samples = []
    for i in range(LATENCY_EMITS):
        sent = time.perf_counter()
        backend.emit("lat", i, to=["latency-room"])
        test.assertEqual(list(client.wait_for("lat")), [i])
        samples.append((time.perf_counter() - sent) * 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(f"\n[{label}] cross-node emit latency over {LATENCY_EMITS} emits: p50 {p50:.2f} ms, p99 {p99:.2f} ms",
          file=sys.stderr, flush=True)
    return p50, p99


class ShardedClusterTests(HATestCase):
    def setUp(self):
        self.redis = start_redis_cluster(self)
        seeds = [n.address for n in self.redis]
        self.nodes = [start_sidecast(self, "--redis-cluster", ",".join(seeds[i:] + seeds[:i]), "--redis-sharded")
                      for i in range(3)]
        wait_until(lambda: shard_subscribers(self.redis, "socket.io#/#") == 3, timeout=FAILOVER_WAIT,
                   message="three sidecast nodes subscribed to the namespace's shard channel")
        self.backends = [node.backend(self) for node in self.nodes]
        self.clients = []
        self.sids = []
        for node, backend in zip(self.nodes, self.backends):
            client = node.client(self, transports=["websocket"])
            self.sids.append(backend.expect_connect(sid=client.sid())["sid"])
            self.clients.append(client)
        reply = self.backends[2].request({"type": "join", "sid": self.sids[2], "nsp": "/", "rooms": ROOMS})
        self.assertTrue(reply["ok"], reply)
        # Dynamic mode: node C subscribes each room's own channel once its socket joined.
        wait_until(lambda: all(shard_subscribers(self.redis, f"socket.io#/#{room}#") == 1 for room in ROOMS),
                   timeout=TIMEOUT, message="node C subscribed to every room channel")
        # Nodes count one another by the subscribers of the namespace's channel.
        wait_until(lambda: self.count(self.backends[0]) == 3, timeout=TIMEOUT * 2, message="three nodes counted")

    def count(self, backend, **selection):
        reply = backend.request({"type": "count", "nsp": "/", **selection})
        return reply.get("count")

    def assert_cluster_requests(self):
        self.assertEqual(self.count(self.backends[1], **{"in": ROOMS[:1]}), 1)
        reply = self.backends[0].request({"type": "fetch", "nsp": "/"})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(sorted(s["sid"] if "sid" in s else s["id"] for s in reply["sockets"]), sorted(self.sids))
        self.backends[0].send({"type": "serverEmit", "id": "load", "nsp": "/", "event": "load", "args": [{"q": 1}]})
        for backend, answer in ((self.backends[1], {"node": "B"}), (self.backends[2], {"node": "C"})):
            event = backend.expect("serverEvent", event="load")
            self.assertEqual(event["args"], [{"q": 1}])
            backend.send({"type": "serverAck", "ack": event["ack"], "args": [answer]})
        reply = self.backends[0].expect("reply", id="load")
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(sorted(reply["responses"], key=lambda r: r["node"]), [{"node": "B"}, {"node": "C"}])
        # An emit to one socket of another node, single and with acks: it goes on the
        # namespace's channel, as Node routes 20-character socket ids (issue 11).
        self.backends[0].emit("to-sid", 1, to=[self.sids[2]])
        self.assertEqual(list(self.clients[2].wait_for("to-sid")), [1])
        self.clients[1].ack_replies["ping"] = lambda *args: "pong"
        reply = self.backends[0].request({"type": "emit", "nsp": "/", "event": "ping", "args": [],
                                          "to": [self.sids[1]], "ack": {"timeout": 4000}})
        self.assertEqual((reply["ok"], reply["responses"]), (True, [{"sid": None, "args": ["pong"]}]), reply)

    def kill_and_measure_rooms_on(self, victim):
        """`ticks_across_a_kill` over the rooms whose channels the victim held; prints the gap."""
        rooms = [room for room in ROOMS if owner_of(self.redis, f"socket.io#/#{room}#") is victim]
        self.assertTrue(rooms, "some room channels live on the victim")
        first, sent = self.ticks_across_a_kill(victim, rooms)
        print(f"\n[sharded cluster] gap from SIGKILL of a master to the first delivery on its slots: {first:.2f} s; "
              f"{sent} emits during it, all delivered", file=sys.stderr, flush=True)
        for node in self.nodes:
            self.assertIsNone(node.proc.poll(), "sidecast kept running")

    def test_rooms_requests_and_a_killed_master(self):
        slots = {self.redis[0].command("CLUSTER", "KEYSLOT", f"socket.io#/#{room}#") for room in ROOMS}
        self.assertGreater(len(slots), 30, "the rooms' channels spread over many slots")
        self.assert_rooms_cross_nodes("before")
        self.assert_cluster_requests()
        # A room C left is unsubscribed, and C gets nothing more for it.
        reply = self.backends[2].request({"type": "leave", "sid": self.sids[2], "nsp": "/", "rooms": [ROOMS[0]]})
        self.assertTrue(reply["ok"], reply)
        wait_until(lambda: shard_subscribers(self.redis, f"socket.io#/#{ROOMS[0]}#") == 0, timeout=TIMEOUT,
                   message="the left room's channel unsubscribed")
        self.backends[0].emit("gone", 1, to=[ROOMS[0]])
        self.clients[2].assert_no("gone", within=0.3)
        self.backends[2].request({"type": "join", "sid": self.sids[2], "nsp": "/", "rooms": [ROOMS[0]]})
        wait_until(lambda: shard_subscribers(self.redis, f"socket.io#/#{ROOMS[0]}#") == 1, timeout=TIMEOUT,
                   message="the room's channel subscribed again")
        # The master of the namespace's channel: the node count and requests live there.
        victim = owner_of(self.redis, "socket.io#/#")
        self.kill_and_measure_rooms_on(victim)
        self.assert_rooms_cross_nodes("after")
        wait_until(lambda: self.count(self.backends[0]) == 3, timeout=FAILOVER_WAIT, message="three nodes counted again")
        self.assert_cluster_requests()


class ShardedSingleRedisTests(unittest.TestCase):
    """`--redis URL --redis-sharded`: one Redis 7 server takes shard commands for every channel."""

    @staticmethod
    def shard_numsub(server, channel):
        with server.client(socket_timeout=2) as r:
            return int(r.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])

    def test_rooms_and_count_across_two_nodes(self):
        server = start_redis(self)
        nodes = start_nodes(self, server, 2, "--redis-sharded", wait=False)
        wait_until(lambda: self.shard_numsub(server, "socket.io#/#") == 2,
                   timeout=TIMEOUT * 2, message="two nodes subscribed to the shard channel")
        backends = [node.backend(self) for node in nodes]
        client = nodes[1].client(self, transports=["websocket"])
        sid = backends[1].expect_connect(sid=client.sid())["sid"]
        self.assertTrue(backends[1].request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["lobby"]})["ok"])
        wait_until(lambda: self.shard_numsub(server, "socket.io#/#lobby#") == 1,
                   timeout=TIMEOUT, message="the room's shard channel subscribed")
        self.assertEqual(server.subscribers("socket.io#/#lobby#"), 0, "no classic subscription")
        backends[0].emit("hello", "world", to=["lobby"])
        self.assertEqual(list(client.wait_for("hello")), ["world"])
        wait_until(lambda: backends[0].request({"type": "count", "nsp": "/", "in": ["lobby"]}).get("count") == 1,
                   timeout=TIMEOUT * 2, message="node A counts node B's socket")

    def test_a_node_style_peer_is_counted_and_answers(self):
        """A peer speaking only what Node's `ClusterAdapter` speaks: it hears no heartbeat, is
        counted because it subscribes the namespace's channel, and its fetch answer is used."""
        server = start_redis(self)
        peer_uid = "0123456789abcdef"
        redis_client = server.client(socket_timeout=2)
        self.addCleanup(redis_client.close)
        peer = redis_client.pubsub()
        self.addCleanup(peer.close)
        peer.ssubscribe("socket.io#/#", f"socket.io#/#{peer_uid}#")
        wait_until(lambda: self.shard_numsub(server, "socket.io#/#") == 1, timeout=TIMEOUT,
                   message="the peer subscribed")
        nodes = start_nodes(self, server, 1, "--redis-sharded", wait=False)
        wait_until(lambda: self.shard_numsub(server, "socket.io#/#") == 2,
                   timeout=TIMEOUT * 2, message="sidecast subscribed to the shard channel")
        backend = nodes[0].backend(self)
        client = nodes[0].client(self, transports=["websocket"])
        sid = backend.expect_connect(sid=client.sid())["sid"]

        def next_message(timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                item = peer.get_sharded_message(timeout=0.1)
                if item and item["type"] == "smessage":
                    return json.loads(item["data"])
            return None

        self.assertIsNone(next_message(1.0), "sidecast published something (a heartbeat?) unasked")
        backend.send({"type": "fetch", "id": "f", "nsp": "/"})
        request = next_message(TIMEOUT)
        self.assertIsNotNone(request, "no FETCH_SOCKETS request reached the peer")
        self.assertEqual(request["type"], 7, request)
        self.assertEqual(request["nsp"], "/")
        remote = {"id": "peer-socket-00000001", "handshake": {}, "rooms": ["peer-socket-00000001"], "data": None}
        redis_client.execute_command("SPUBLISH", f"socket.io#/#{request['uid']}#", json.dumps({
            "type": 8, "data": {"requestId": request["data"]["requestId"], "sockets": [remote]},
            "uid": peer_uid, "nsp": "/",
        }))
        reply = backend.expect("reply", id="f")
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(sorted(s["sid"] if "sid" in s else s["id"] for s in reply["sockets"]),
                         sorted([sid, remote["id"]]))
        # The peer leaves without a word, as Node does: the count follows its unsubscribe.
        peer.sunsubscribe("socket.io#/#", f"socket.io#/#{peer_uid}#")
        wait_until(lambda: self.shard_numsub(server, "socket.io#/#") == 1, timeout=TIMEOUT,
                   message="the peer unsubscribed")
        reply = backend.request({"type": "fetch", "nsp": "/"})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual([s["sid"] if "sid" in s else s["id"] for s in reply["sockets"]], [sid])


SUBSCRIPTION_MODES = ("static", "dynamic", "dynamic-private")


def shard_numsub(server, channel):
    with server.client(socket_timeout=2) as r:
        return int(r.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])


class SidEmitTests(unittest.TestCase):
    """Emits to one socket id of the other node with `--redis-sharded` on one Redis 7 server, in
    each `--redis-subscription-mode`, single and with acks: between two sidecast nodes, and
    between sidecast and a re-created Node sharded node (node_sharded.py, taken from
    `lib/sharded-adapter.ts` and socket.io-adapter's `cluster-adapter.ts`). Node routes a one-room
    broadcast by the room's length (`looksLikeASocketId`: 20 characters); sidecast's socket ids
    have 20 characters so that both sides route an emit to a socket the same way."""

    def sidecast_node(self, server, mode, expected_nodes):
        node = start_nodes(self, server, 1, "--redis-sharded", "--redis-subscription-mode", mode, wait=False)[0]
        wait_until(lambda: shard_numsub(server, "socket.io#/#") == expected_nodes, timeout=TIMEOUT * 2,
                   message=f"{expected_nodes} nodes subscribed to the namespace channel")
        return node

    def connected_client(self, node, backend):
        client = node.client(self, transports=["websocket"])
        sid = backend.expect_connect(sid=client.sid())["sid"]
        self.assertEqual(len(sid), 20, "a socket id Node's looksLikeASocketId recognises")
        return client, sid

    def assert_sid_channel(self, server, mode, sid):
        """dynamic-private subscribes each socket's own channel, the other modes never do."""
        channel = f"socket.io#/#{sid}#"
        if mode == "dynamic-private":
            wait_until(lambda: shard_numsub(server, channel) == 1, timeout=TIMEOUT, message=f"{channel} subscribed")
        else:
            self.assertEqual(shard_numsub(server, channel), 0, channel)

    def check_two_sidecast_nodes(self, mode):
        server = start_redis(self)
        a = self.sidecast_node(server, mode, 1)
        b = self.sidecast_node(server, mode, 2)
        ba, bb = a.backend(self), b.backend(self)
        client, sid = self.connected_client(b, bb)
        self.assert_sid_channel(server, mode, sid)
        # Rooms: a public room's channel exists in the dynamic modes only.
        self.assertTrue(bb.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["lobby"]})["ok"])
        if mode == "static":
            time.sleep(0.2)
            self.assertEqual(shard_numsub(server, "socket.io#/#lobby#"), 0)
        else:
            wait_until(lambda: shard_numsub(server, "socket.io#/#lobby#") == 1, timeout=TIMEOUT,
                       message="the room's channel subscribed")
        ba.emit("to-room", 1, to=["lobby"])
        self.assertEqual(list(client.wait_for("to-room")), [1])

        ba.emit("hello", "world", to=[sid])
        self.assertEqual(list(client.wait_for("hello")), ["world"])
        client.ack_replies["ping"] = lambda *args: "pong"
        ba.send({"type": "emit", "id": "p", "nsp": "/", "event": "ping", "args": [], "to": [sid], "ack": {"timeout": 4000}})
        reply = ba.expect("reply", id="p")
        self.assertEqual((reply["ok"], reply["responses"]), (True, [{"sid": None, "args": ["pong"]}]), reply)

    def test_two_sidecast_nodes_static(self):
        self.check_two_sidecast_nodes("static")

    def test_two_sidecast_nodes_dynamic(self):
        self.check_two_sidecast_nodes("dynamic")

    def test_two_sidecast_nodes_dynamic_private(self):
        self.check_two_sidecast_nodes("dynamic-private")

    def check_with_a_node_peer(self, mode):
        server = start_redis(self)
        peer = NodeShardedPeer(server, mode=mode)
        self.addCleanup(peer.close)
        peer_socket = peer.connect(ack_reply="peer-pong")
        peer_channel = f"socket.io#/#{peer_socket.id}#"
        if mode == "dynamic-private":
            peer.wait_subscribed(peer_channel)
        node = self.sidecast_node(server, mode, 2)
        backend = node.backend(self)
        client, sid = self.connected_client(node, backend)
        self.assert_sid_channel(server, mode, sid)
        self.assertEqual(shard_numsub(server, peer_channel), 1 if mode == "dynamic-private" else 0)

        # Node → sidecast: the peer routes by its own rule.
        peer.emit("from-node", "x", rooms=[sid])
        expected_channel = f"socket.io#/#{sid}#" if mode == "dynamic-private" else "socket.io#/#"
        self.assertEqual(peer.published_on, expected_channel)
        self.assertEqual(list(client.wait_for("from-node")), ["x"])

        # sidecast → Node.
        backend.emit("from-sidecast", "y", to=[peer_socket.id])
        self.assertEqual(peer.wait_received(peer_socket, "from-sidecast"), ["y"])

        # With acks, both ways.
        backend.send({"type": "emit", "id": "p", "nsp": "/", "event": "ping", "args": [],
                      "to": [peer_socket.id], "ack": {"timeout": 4000}})
        reply = backend.expect("reply", id="p")
        self.assertEqual((reply["ok"], reply["responses"]), (True, [{"sid": None, "args": ["peer-pong"]}]), reply)
        client.ack_replies["ask"] = lambda *args: f"client:{args[0]}"
        responses, timed_out = peer.emit_with_ack("ask", "q", rooms=[sid], timeout=4)
        self.assertEqual((responses, timed_out), (["client:q"], False))

    def test_node_peer_static(self):
        self.check_with_a_node_peer("static")

    def test_node_peer_dynamic(self):
        self.check_with_a_node_peer("dynamic")

    def test_node_peer_dynamic_private(self):
        self.check_with_a_node_peer("dynamic-private")

    def test_the_node_peer_follows_nodes_socket_id_rule(self):
        """The stand-in would have caught 15-character ids: in "dynamic" it publishes an emit to
        such an id on the room's channel, which no node subscribes."""
        server = start_redis(self)
        peer = NodeShardedPeer(server, mode="dynamic")
        self.addCleanup(peer.close)
        self.assertTrue(looks_like_a_socket_id(peer.connect().id))
        peer.emit("e", rooms=["abcdefghij01234"])
        self.assertEqual(peer.published_on, "socket.io#/#abcdefghij01234#")
        peer.emit("e", rooms=["abcdefghij0123456789"])
        self.assertEqual(peer.published_on, "socket.io#/#")


class LatencyTests(unittest.TestCase):
    """Cross-node latency, classic pub/sub on one Redis next to sharded pub/sub on a cluster."""

    def two_nodes_with_a_listener(self, nodes):
        backend = nodes[0].backend(self)
        listener_backend = nodes[1].backend(self)
        client = nodes[1].client(self, transports=["websocket"])
        sid = listener_backend.expect_connect(sid=client.sid())["sid"]
        self.assertTrue(listener_backend.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["latency-room"]})["ok"])
        return backend, client

    def test_latency_classic_single_and_sharded_cluster(self):
        server = start_redis(self)
        classic = start_nodes(self, server, 2)
        backend, client = self.two_nodes_with_a_listener(classic)
        measure_latency(self, backend, client, "warm-up, classic")
        classic_p = measure_latency(self, backend, client, "classic pub/sub, single Redis")

        redis_nodes = start_redis_cluster(self)
        seeds = ",".join(n.address for n in redis_nodes)
        sharded = [start_sidecast(self, "--redis-cluster", seeds, "--redis-sharded") for _ in range(2)]
        wait_until(lambda: shard_subscribers(redis_nodes, "socket.io#/#") == 2, timeout=FAILOVER_WAIT,
                   message="two sharded nodes subscribed")
        backend, client = self.two_nodes_with_a_listener(sharded)
        wait_until(lambda: shard_subscribers(redis_nodes, "socket.io#/#latency-room#") == 1, timeout=TIMEOUT,
                   message="the listener subscribed to the room's channel")
        measure_latency(self, backend, client, "warm-up, sharded")
        sharded_p = measure_latency(self, backend, client, "sharded pub/sub, 3+3 Redis Cluster")
        print(f"\n[latency] classic single p50/p99 {classic_p[0]:.2f}/{classic_p[1]:.2f} ms; "
              f"sharded cluster p50/p99 {sharded_p[0]:.2f}/{sharded_p[1]:.2f} ms", file=sys.stderr, flush=True)


if __name__ == "__main__":
    unittest.main()
