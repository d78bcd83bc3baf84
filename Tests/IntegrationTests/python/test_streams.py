"""`--redis-streams`: the cluster's messages travel through one Redis stream in the format of
`@socket.io/redis-streams-adapter` (`lib/adapter.ts`: `XADD <stream> MAXLEN ~ <maxLen> *` with
the fields uid, nsp, type and data; every node reads the stream with `XREAD` from the last id it
saw). The cross-node tests of test_cluster.py run again over the stream, with the nodes on one
event loop and on four; the entries are checked field by field; and redis-server is SIGKILLed
and restarted on the same port while a backend emits: every emit reaches the other node's
clients once the stream is back, in order and once each."""

import base64
import json
import sys
import threading
import time
import unittest

import msgpack

import test_cluster
from cluster import start_redis
from harness import TIMEOUT, b64, start_sidecast, wait_until

STREAM = "socket.io"
INITIAL_HEARTBEAT, HEARTBEAT = b"1", b"2"


def stream_entries(redis_server, stream=STREAM):
    """Every entry of the stream as (id, {field: value}), bytes throughout."""
    with redis_server.client(socket_timeout=2) as r:
        return r.xrange(stream)


def wait_stream_nodes(redis_server, count, stream=STREAM):
    """Waits until `count` nodes announced themselves (`INITIAL_HEARTBEAT`, appended once a
    node's reader has its position) and every pair heard each other: of two nodes, one reads
    the other's announcement and answers it with a `HEARTBEAT`, which the other reads."""
    def ready():
        entries = stream_entries(redis_server, stream)
        announced = {fields[b"uid"] for _, fields in entries if fields[b"type"] == INITIAL_HEARTBEAT}
        answers = sum(fields[b"type"] == HEARTBEAT for _, fields in entries)
        return len(announced) == count and answers >= count * (count - 1) // 2
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
        self.assertEqual(list(text), [b"uid", b"nsp", b"type", b"data"], "the Node adapter's field order")
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
                self.assertEqual(list(fields), [b"uid", b"nsp", b"type"], "heartbeats carry no data")

        # MAXLEN ~ 20: Redis trims whole macro nodes, so the stream stays near the bound.
        for number in range(300):
            ba.emit("n", number, to=["nobody"])
        wait_until(lambda: sum(f[b"type"] == b"3" for _, f in stream_entries(server)) > 0
                   and b"299" in stream_entries(server)[-1][1].get(b"data", b""),
                   timeout=TIMEOUT, message="the last emit in the stream")
        with server.client(socket_timeout=2) as r:
            self.assertLess(r.xlen(STREAM), 300, "the stream is trimmed")

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
