"""`--redis-streams`: the cluster's messages travel through one Redis stream in the format of
`@socket.io/redis-streams-adapter` (`lib/adapter.ts`: `XADD <stream> MAXLEN ~ <maxLen> *` with
the fields uid, nsp, type and data; every node reads the stream with `XREAD` from the last id it
saw). The cross-node tests of test_cluster.py run again over the stream, with the nodes on one
event loop and on four; the entries are checked field by field; a Node streams-adapter node
re-created from the adapter's source (node_streams.py) exchanges broadcasts, requests, answers
and heartbeats with sidecast; a copy of an entry, appended again as a retry after a lost reply
would, is delivered once; an emit whose reply a cut connection lost (through a proxy that
drops Redis's replies) is not appended again, so the Node peer gets it once; and redis-server is SIGKILLed and restarted on the same port while
a backend emits: every emit reaches the other node's clients once the stream is back, in order
and once each."""

import base64
import json
import socket
import sys
import threading
import time
import unittest

import msgpack

import test_cluster
from cluster import start_redis
from harness import TIMEOUT, b64, start_sidecast, wait_until
from node_streams import NodeStreamsPeer
from test_ops import metric, scrape, start_node

STREAM = "socket.io"
INITIAL_HEARTBEAT, HEARTBEAT = b"1", b"2"
# Sidecast's number of each entry it appends; Node's adapter writes no such field.
SEQUENCE = b"sidecast-seq"


def stream_entries(redis_server, stream=STREAM):
    """Every entry of the stream as (id, {field: value}), bytes throughout."""
    with redis_server.client(socket_timeout=2) as r:
        return r.xrange(stream)


def wait_stream_nodes(redis_server, count, stream=STREAM):
    """Waits until `count` nodes announced themselves (`INITIAL_HEARTBEAT`, appended once a
    node's reader has its position) and heard one another: a node that announced earlier reads
    a later one's announcement and answers it (`HEARTBEAT`), which the later one reads."""
    def ready():
        entries = [fields for _, fields in stream_entries(redis_server, stream)]
        announcements = [(index, fields[b"uid"]) for index, fields in enumerate(entries)
                         if fields[b"type"] == INITIAL_HEARTBEAT]
        if len({uid for _, uid in announcements}) != count:
            return False
        for position, (index, _) in enumerate(announcements):
            earlier = {uid for _, uid in announcements[:position]}
            if not earlier <= {fields[b"uid"] for fields in entries[index + 1:]}:
                return False
        return True
    wait_until(ready, timeout=TIMEOUT * 2, message=f"{count} nodes on the stream")


def start_stream_nodes(test, redis_server, count, *flags):
    nodes = [start_sidecast(test, "--redis", redis_server.url, "--redis-streams", *flags) for _ in range(count)]
    wait_stream_nodes(redis_server, count)
    return nodes


# Imported as a module, so that this module does not run test_cluster's own tests again.
class StreamsClusterTests(test_cluster.ClusterTests):
    """test_cluster.py's three-node tests over the stream, each node on one event loop."""

    threads = 1

    def start_cluster_nodes(self):
        return start_stream_nodes(self, self.redis, 3, "--requests-timeout", test_cluster.REQUESTS_TIMEOUT_MS,
                                  "--threads", self.threads)


class StreamsClusterOnFourLoopsTests(StreamsClusterTests):
    """The same with every node on four event loops: what arrives from the stream is handed to
    the loop of each socket it concerns."""

    threads = 4


class StreamEntriesTests(unittest.TestCase):
    """What a node writes, as a Node streams-adapter node reads it."""

    def test_entries_have_the_node_adapters_fields(self):
        server = start_redis(self)
        a, b = start_stream_nodes(self, server, 2, "--redis-stream-max-len", "20")
        ba, bb = a.backend(self), b.backend(self)
        client = b.client(self, transports=["websocket"])
        sid = bb.expect_connect(sid=client.sid())["sid"]
        self.assertTrue(bb.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["lobby"]})["ok"])
        ba.emit("hello", "world", to=["lobby"])
        self.assertEqual(list(client.wait_for("hello")), ["world"])
        ba.emit("bin", b64(b"\x01\x02"), to=["lobby"])
        self.assertEqual(list(client.wait_for("bin")), [b"\x01\x02"])

        entries = stream_entries(server)
        broadcasts = [fields for _, fields in entries if fields[b"type"] == b"3"]
        self.assertEqual(len(broadcasts), 2, entries)
        text, binary = broadcasts
        # Node's fields in its order, then sidecast's number, which Node's decode ignores.
        self.assertEqual(list(text), [b"uid", b"nsp", b"type", b"data", SEQUENCE], "the Node adapter's field order")
        self.assertEqual(text[b"uid"], ba.node.encode())
        self.assertEqual(text[b"nsp"], b"/")
        self.assertEqual(json.loads(text[b"data"]), {
            "packet": {"type": 2, "data": ["hello", "world"], "nsp": "/"},
            "opts": {"rooms": ["lobby"], "except": [], "flags": {}},
        })
        # Binary: the msgpack of `data` alone, in base64.
        data = msgpack.unpackb(base64.b64decode(binary[b"data"]), raw=False)
        self.assertEqual(data["packet"]["data"], ["bin", b"\x01\x02"])
        for _, fields in entries:
            if fields[b"type"] in (INITIAL_HEARTBEAT, HEARTBEAT):
                self.assertEqual(list(fields), [b"uid", b"nsp", b"type", SEQUENCE], "heartbeats carry no data")
        # Each node numbers everything it appends, 1, 2, 3, ... (its uid is fresh per process).
        for uid in (ba.node.encode(), bb.node.encode()):
            numbers = [int(fields[SEQUENCE]) for _, fields in entries if fields[b"uid"] == uid]
            self.assertEqual(numbers, list(range(1, len(numbers) + 1)), uid)

        # MAXLEN ~ 20: Redis trims whole macro nodes, so the stream stays near the bound.
        for number in range(300):
            ba.emit("n", number, to=["nobody"])
        wait_until(lambda: sum(f[b"type"] == b"3" for _, f in stream_entries(server)) > 0
                   and b"299" in stream_entries(server)[-1][1].get(b"data", b""),
                   timeout=TIMEOUT, message="the last emit in the stream")
        with server.client(socket_timeout=2) as r:
            self.assertLess(r.xlen(STREAM), 300, "the stream is trimmed")

    def test_a_malformed_entry_is_logged_and_skipped(self):
        server = start_redis(self)
        (node,) = start_stream_nodes(self, server, 1)
        backend = node.backend(self)
        client = node.client(self, transports=["websocket"])
        backend.expect_connect(sid=client.sid())
        with server.client(socket_timeout=2) as r:
            for fields in ({"uid": "0123456789abcdef", "nsp": "/", "type": "3", "data": '{"packet":'},
                           {"uid": "0123456789abcdef", "nsp": "/", "type": "3", "data": "!not base64!"},
                           {"uid": "0123456789abcdef", "nsp": "/", "type": "42"}):
                r.xadd(STREAM, fields)
            # What a Node streams-adapter node writes for io.emit("after", 1).
            r.xadd(STREAM, {"uid": "0123456789abcdef", "nsp": "/", "type": "3", "data": json.dumps(
                {"packet": {"type": 2, "data": ["after", 1], "nsp": "/"}, "opts": {"rooms": [], "except": [], "flags": {}}})})
        self.assertEqual(list(client.wait_for("after")), [1])

        def skipped():
            return [line for line in node.proc.log_lines if "skipping a malformed entry of the Redis stream" in line]
        # Another thread reads sidecast's log: its lines can come after the client's event.
        wait_until(lambda: len(skipped()) >= 3, message="three skipped entries in the log")
        self.assertEqual(len(skipped()), 3, skipped())

    def test_a_stream_name_of_ones_own(self):
        server = start_redis(self)
        a, b = (start_sidecast(self, "--redis", server.url, "--redis-streams", "--redis-stream-name", "chat-cluster")
                for _ in range(2))
        wait_stream_nodes(server, 2, stream="chat-cluster")
        ba, bb = a.backend(self), b.backend(self)
        client = b.client(self, transports=["websocket"])
        bb.expect_connect(sid=client.sid())
        ba.emit("hi", 1)
        self.assertEqual(list(client.wait_for("hi")), [1])
        with server.client(socket_timeout=2) as r:
            self.assertEqual(r.exists(STREAM), 0, "nothing in the default stream")


class NodeStreamsPeerTests(unittest.TestCase):
    """Sidecast and a Node streams-adapter node (node_streams.py) in one cluster."""

    def setUp(self):
        self.redis = start_redis(self)
        self.node = start_sidecast(self, "--redis", self.redis.url, "--redis-streams", "--threads", 2,
                                   "--requests-timeout", 3000)
        wait_stream_nodes(self.redis, 1)
        self.peer = NodeStreamsPeer(self.redis)
        self.addCleanup(self.close_peer)
        self.peer.wait_nodes(2)
        self.backend = self.node.backend(self)
        self.client = self.node.client(self, transports=["websocket"])
        self.sid = self.backend.expect_connect(sid=self.client.sid())["sid"]
        self.assertTrue(self.backend.request({"type": "join", "sid": self.sid, "nsp": "/", "rooms": ["mixed"]})["ok"])
        self.peer_socket = self.peer.connect(ack_reply="from node")
        self.peer.join(self.peer_socket, "mixed")
        # Sidecast counts the peer once it heard it (the peer answered sidecast's announcement).
        wait_until(lambda: self.count() == 2, timeout=TIMEOUT, message="sidecast counts the peer's socket")

    def close_peer(self):
        if self.peer is not None:
            self.peer.close()
            self.peer = None

    def count(self, **selection):
        return self.backend.request({"type": "count", "nsp": "/", **selection}).get("count")

    def test_broadcasts_both_ways(self):
        self.backend.emit("from-sidecast", "hi", b64(b"\x00\x01"), to=["mixed"])
        self.assertEqual(self.peer.wait_received(self.peer_socket, "from-sidecast"), ["hi", b"\x00\x01"])
        self.peer.emit("from-node", {"n": 1}, b"\x02", rooms=["mixed"])
        self.assertEqual(list(self.client.wait_for("from-node")), [{"n": 1}, b"\x02"])
        self.peer.emit("not-you", rooms=["mixed"], except_=[self.sid])
        self.client.assert_no("not-you", within=0.3)
        # The stand-in writes what Node's encode writes, no number: sidecast delivers it as is.
        peer_entries = [fields for _, fields in stream_entries(self.redis) if fields[b"uid"] == self.peer.uid.encode()]
        self.assertTrue(peer_entries)
        for fields in peer_entries:
            self.assertNotIn(SEQUENCE, fields)

    def test_fetch_and_join_both_ways(self):
        reply = self.backend.request({"type": "fetch", "nsp": "/", "in": ["mixed"]})
        self.assertTrue(reply["ok"], reply)
        ids = sorted(s.get("sid") or s.get("id") for s in reply["sockets"])
        self.assertEqual(ids, sorted([self.sid, self.peer_socket.id]))
        sockets, timed_out = self.peer.fetch_sockets(rooms=["mixed"])
        self.assertFalse(timed_out, "sidecast answered the peer's fetch")
        self.assertEqual(sorted(s["id"] for s in sockets), sorted([self.sid, self.peer_socket.id]))
        remote = next(s for s in sockets if s["id"] == self.sid)
        self.assertEqual(sorted(remote["rooms"]), sorted([self.sid, "mixed"]))
        # io.in("mixed").socketsJoin("vip") on the peer reaches sidecast's socket.
        self.peer.sockets_join(["mixed"], ["vip"])
        wait_until(lambda: self.count(local=True, **{"in": ["vip"]}) == 1, message="sidecast's socket joined vip")
        self.assertTrue(self.backend.request({"type": "join", "nsp": "/", "in": ["vip"], "rooms": ["vvip"]})["ok"])
        wait_until(lambda: "vvip" in self.peer.sids.get(self.peer_socket.id, ()), message="the peer's socket joined vvip")
        self.assertTrue(self.backend.request({"type": "disconnect", "nsp": "/", "in": ["vvip"], "except": [self.sid]})["ok"])
        wait_until(lambda: self.peer_socket.disconnected, message="the peer's socket disconnected by selector")

    def test_server_side_emits_and_acks_both_ways(self):
        self.peer.server_side_emit_reply = {"node": "peer"}
        self.backend.send({"type": "serverEmit", "id": "q", "nsp": "/", "event": "load", "args": [1]})
        reply = self.backend.expect("reply", id="q")
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["responses"], [{"node": "peer"}])
        self.assertEqual(self.peer.server_side_emits, [["load", 1]])

        def answer():
            event = self.backend.expect("serverEvent", event="ask")
            self.assertEqual(event["args"], ["x"])
            self.backend.send({"type": "serverAck", "ack": event["ack"], "args": ["sidecast"]})
        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        responses, timed_out = self.peer.server_side_emit_with_ack("ask", "x")
        thread.join()
        self.assertEqual((responses, timed_out), (["sidecast"], False))

        self.client.ack_replies["vote"] = lambda *args: "sidecast client"
        reply = self.backend.request({"type": "emit", "nsp": "/", "event": "vote", "args": [], "to": ["mixed"],
                                      "ack": {"timeout": 3000}})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(sorted(reply["responses"], key=lambda r: r["args"]),
                         [{"sid": None, "args": ["from node"]}, {"sid": self.sid, "args": ["sidecast client"]}])

        self.client.ack_replies["poll"] = lambda *args: "sidecast client"
        responses, timed_out = self.peer.emit_with_ack("poll", rooms=["mixed"], timeout=3.0)
        self.assertEqual((sorted(responses), timed_out), (["from node", "sidecast client"], False))

    def test_a_closed_peer_stops_being_counted_at_once(self):
        self.peer.close()
        self.peer = None
        # ADAPTER_CLOSE: sidecast expects no answer from the peer any more.
        started = time.monotonic()
        reply = self.backend.request({"type": "serverEmit", "nsp": "/", "event": "anyone", "args": [], "id": "s"})
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["responses"], [])
        self.assertLess(time.monotonic() - started, 1.0, "no wait for the closed peer")

    def test_sidecast_stopping_tells_the_peer(self):
        self.node.stop()
        wait_until(lambda: self.peer.server_count() == 1, timeout=TIMEOUT, message="the peer forgets sidecast")


class StreamDuplicateTests(unittest.TestCase):
    """An `XADD` whose reply a lost connection took may have reached Redis, and the other
    nodes' readers, already: the stream client sends it again (its requeue), and the entry is
    in the stream twice. Reproduced without killing Redis: the test appends a copy of an entry
    node A wrote, field for field as the retry would. Node B's clients get the emit once; what
    A appends next, numbered higher, still reaches them, and so do entries without a number,
    as a Node streams-adapter node writes them (`RedisStreamsAdapter.encode` in lib/adapter.ts
    writes uid, nsp, type and data; its `decode` reads those and ignores any other field)."""

    def test_a_copy_of_an_entry_already_read_is_dropped_and_counted(self):
        server = start_redis(self)
        a, b = (start_node(self, "--redis", server.url, "--redis-streams") for _ in range(2))
        wait_stream_nodes(server, 2)
        ba, bb = a.backend(self), b.backend(self)
        client = b.client(self, transports=["websocket"])
        got = []
        client.sio.on("n", lambda number: got.append(number))
        sid = bb.expect_connect(sid=client.sid())["sid"]
        self.assertTrue(bb.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["lobby"]})["ok"])

        ba.emit("n", 1, to=["lobby"])
        wait_until(lambda: got == [1], message="the first emit at B's client")
        (original,) = [fields for _, fields in stream_entries(server)
                       if fields[b"uid"] == ba.node.encode() and fields[b"type"] == b"3"]
        self.assertIn(SEQUENCE, original)
        with server.client(socket_timeout=2) as r:
            r.xadd(STREAM, original)  # the retry's copy: same fields, same order, same number
        ba.emit("n", 2, to=["lobby"])
        # What a Node node writes: no number.
        node_entry = {"uid": "0123456789abcdef", "nsp": "/", "type": "3", "data": json.dumps(
            {"packet": {"type": 2, "data": ["n", 3], "nsp": "/"}, "opts": {"rooms": ["lobby"], "except": [], "flags": {}}})}
        with server.client(socket_timeout=2) as r:
            wait_until(lambda: r.xlen(STREAM) and b'"n",2' in r.xrevrange(STREAM, count=1)[0][1].get(b"data", b""),
                       message="A's second emit in the stream")
            r.xadd(STREAM, node_entry)
        # B reads in stream order: once 3 is in, the copy was judged before it.
        wait_until(lambda: len(got) >= 3, message="the emits after the copy at B's client")
        self.assertEqual(got, [1, 2, 3], "the copy is not delivered; the next emit and the unnumbered entry are")

        entries = stream_entries(server)
        copies = [fields for _, fields in entries if fields == original]
        self.assertEqual(len(copies), 2, "the entry is in the stream twice")
        second = next(fields for _, fields in entries if fields[b"uid"] == ba.node.encode() and b'"n",2' in fields.get(b"data", b""))
        self.assertGreater(int(second[SEQUENCE]), int(original[SEQUENCE]))
        self.assertEqual(metric(scrape(b), "sidecast_drops_total", cause="stream_duplicate"), 1)
        # A reads the copy of its own entry too (with recovery it applies its own broadcasts).
        wait_until(lambda: metric(scrape(a), "sidecast_drops_total", cause="stream_duplicate") == 1,
                   message="A drops the copy of its own entry")


class ReplyDroppingProxy:
    """A TCP proxy in front of redis-server that, once told (`drop_replies`), still passes on
    what its clients send but no more of Redis's replies, and then `cut`s every connection it
    has: Redis ran the commands, the client lost the replies with the connection, as when a
    network fails. Connections made after the cut are passed through whole."""

    def __init__(self, test, port):
        self.port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._connections = []  # (client socket, Redis socket, {"dropping": bool})
        self._dropping = False
        threading.Thread(target=self._accept, daemon=True).start()
        test.addCleanup(self._close)

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            with self._lock:
                state = {"dropping": self._dropping}
                self._connections.append((client, upstream, state))
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state), daemon=True).start()

    def _pump(self, source, destination, state):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                break
            if not data:
                break
            if state is not None and state["dropping"]:
                continue
            try:
                destination.sendall(data)
            except OSError:
                break
        for end in (source, destination):
            self._shut(end)

    @staticmethod
    def _shut(end):
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()

    def drop_replies(self):
        with self._lock:
            self._dropping = True
            for _, _, state in self._connections:
                state["dropping"] = True

    def cut(self):
        with self._lock:
            self._dropping = False
            connections, self._connections = self._connections, []
        for client, upstream, _ in connections:
            self._shut(client)
            self._shut(upstream)

    def _close(self):
        self._listener.close()
        self.cut()


class StreamResendTests(unittest.TestCase):
    """A lost reply for real: node A reaches Redis through a `ReplyDroppingProxy`. Its backend
    emits; the Node peer (node_streams.py, whose `decode`, like `RedisStreamsAdapter.decode` in
    lib/adapter.ts, ignores `sidecast-seq`) reads the entry, so Redis appended it, but A never
    hears the reply: the proxy drops it and cuts A's connections. A takes the append back; before
    sending it again it reads the stream after the last entry Redis confirmed, finds it there,
    and leaves it out. The peer's socket gets every emit once, in order. (--threads from
    SIDECAST_TEST_THREADS.)"""

    def test_an_emit_whose_reply_was_lost_reaches_a_node_peer_once(self):
        redis = start_redis(self)
        proxy = ReplyDroppingProxy(self, redis.port)
        node = start_node(self, "--redis", proxy.url, "--redis-streams")
        wait_stream_nodes(redis, 1)
        peer = NodeStreamsPeer(redis)
        self.addCleanup(peer.close)
        peer.wait_nodes(2)
        member = peer.connect()
        peer.join(member, "lobby")
        backend = node.backend(self)

        def emits():
            with member.arrived:
                return [args for name, args in member.received if name == "n"]

        backend.emit("n", 0, to=["lobby"])
        wait_until(lambda: emits() == [[0]], message="emit 0 at the peer")
        proxy.drop_replies()
        backend.emit("n", 1, to=["lobby"])
        wait_until(lambda: emits() == [[0], [1]], message="emit 1 in the stream, at the peer")
        proxy.cut()
        backend.emit("n", 2, to=["lobby"])
        # Stream order: a copy of 1 would be appended before 2.
        wait_until(lambda: len(emits()) >= 3, timeout=TIMEOUT * 2, message="emit 2 at the peer")
        self.assertEqual(emits(), [[0], [1], [2]], "each emit once, in order")
        copies = [fields for _, fields in stream_entries(redis) if b'"n",1' in fields.get(b"data", b"")]
        self.assertEqual(len(copies), 1, "emit 1 is in the stream once")


class StreamOutageTests(unittest.TestCase):
    """Node A's backend emits numbered events at a steady rate to a room whose members are on
    node B; redis-server is SIGKILLed mid-run and restarted on the same port 2 s later. A keeps
    what it could not append, B's reader resumes after the last id it read: every number
    reaches B's clients once, in order."""

    RATE = 50  # events per second
    CLIENTS = 2

    def run_outage(self, threads):
        redis = start_redis(self)
        a, b = start_stream_nodes(self, redis, 2, "--threads", threads)
        ba, bb = a.backend(self), b.backend(self)
        arrivals = [[] for _ in range(self.CLIENTS)]
        for index in range(self.CLIENTS):
            client = b.client(self, transports=["websocket"])
            client.sio.on("n", lambda i, seen=arrivals[index]: seen.append(i))
            sid = bb.expect_connect(sid=client.sid())["sid"]
            self.assertTrue(bb.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["live"]})["ok"])

        sent = []
        stop = threading.Event()
        self.addCleanup(stop.set)

        def emit_steadily():
            started = time.monotonic()
            while not stop.is_set():
                ba.emit("n", len(sent), to=["live"])
                sent.append(time.monotonic())
                delay = started + len(sent) / self.RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

        emitter = threading.Thread(target=emit_steadily, daemon=True)
        emitter.start()
        time.sleep(1)
        killed = time.monotonic()
        redis.kill()
        time.sleep(2)
        redis.start()
        up = time.monotonic()
        time.sleep(1.5)
        stop.set()
        emitter.join()
        total = len(sent)
        during = sum(killed <= at < up for at in sent)
        self.assertGreater(during, 50, "emits while Redis was down")
        for seen in arrivals:
            wait_until(lambda: len(seen) >= total, timeout=TIMEOUT * 2, message=f"all {total} events at B's clients")
            time.sleep(0.3)
            self.assertEqual(seen, list(range(total)), "every emit once, in order")
        print(f"\n[streams, --threads {threads}] {total} emits, {during} while Redis was down: all delivered once, in order",
              file=sys.stderr, flush=True)
        for node in (a, b):
            self.assertIsNone(node.proc.poll(), "sidecast kept running")

    def test_redis_killed_and_restarted_one_loop(self):
        self.run_outage(1)

    def test_redis_killed_and_restarted_four_loops(self):
        self.run_outage(4)


if __name__ == "__main__":
    unittest.main()
