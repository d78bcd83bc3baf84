"""Redis going away and coming back: nodes start without it, keep serving their own clients while
it is down, answer cluster queries with `unavailable` (or `timeout`) instead of hanging, deliver
the emits made meanwhile once it is back on the same port, and still exit cleanly."""

import sys
import threading
import time
import unittest

from cluster import start_nodes, start_redis
from harness import TIMEOUT, free_port, start_sidecast, wait_until
from test_ops import metric, scrape

REQUESTS_TIMEOUT_MS = 2000
# A cluster request must be answered within the requests timeout plus this much.
SLACK = 1.0
# Reconnecting backs off (up to 5 s between attempts), so allow more than one attempt.
RECONNECT_WAIT = 10


class RedisOutageTests(unittest.TestCase):
    def setUp(self):
        self.redis = start_redis(self, start=False)

    def start_cluster(self):
        self.a, self.b = start_nodes(self, self.redis, 2, "--requests-timeout", REQUESTS_TIMEOUT_MS,
                                     wait=self.redis.running)
        self.ba = self.a.backend(self)
        self.bb = self.b.backend(self)
        self.a1 = self.a.client(self, transports=["websocket"])
        self.sa1 = self.ba.expect_connect(sid=self.a1.sid())["sid"]
        self.b1 = self.b.client(self, transports=["polling"])
        self.sb1 = self.bb.expect_connect(sid=self.b1.sid())["sid"]
        # b1 is the only member of "red".
        self.ok(self.bb, {"type": "join", "sid": self.sb1, "nsp": "/", "rooms": ["red"]})

    def ok(self, backend, command):
        reply = backend.request(command)
        self.assertTrue(reply["ok"], f"{command!r} -> {reply!r}")
        return reply

    def assert_unavailable(self, backend, command):
        """The cluster request fails with `unavailable` or `timeout`, in time."""
        started = time.monotonic()
        reply = backend.request(command, timeout=REQUESTS_TIMEOUT_MS / 1000 + SLACK + 1)
        elapsed = time.monotonic() - started
        self.assertFalse(reply["ok"], f"{command!r} -> {reply!r}")
        self.assertIn(reply["error"]["code"], ("unavailable", "timeout"), reply)
        self.assertLess(elapsed, REQUESTS_TIMEOUT_MS / 1000 + SLACK, f"{command!r} answered late")
        return reply

    def assert_cluster_queries_unavailable(self, backend):
        for command in ({"type": "fetch", "nsp": "/"},
                        {"type": "count", "nsp": "/", "in": ["red"]},
                        {"type": "rooms", "nsp": "/"},
                        {"type": "serverEmit", "event": "load"}):
            self.assert_unavailable(backend, command)

    def cluster_sees_both(self):
        reply = self.ba.request({"type": "fetch", "nsp": "/"})
        return reply["ok"] and sorted(s["sid"] for s in reply["sockets"]) == sorted([self.sa1, self.sb1])

    def assert_local_delivery_works(self):
        self.ok(self.ba, {"type": "emit", "nsp": "/", "event": "local-a", "args": [1], "to": [self.sa1]})
        self.assertEqual(self.a1.wait_for("local-a"), (1,))
        self.ok(self.bb, {"type": "emit", "nsp": "/", "event": "local-b", "args": [2], "to": ["red"]})
        self.assertEqual(self.b1.wait_for("local-b"), (2,))
        # Local queries need no Redis.
        reply = self.ok(self.ba, {"type": "fetch", "nsp": "/", "local": True})
        self.assertEqual([s["sid"] for s in reply["sockets"]], [self.sa1])

    def test_nodes_start_without_redis_and_join_when_it_comes(self):
        self.start_cluster()
        self.assert_local_delivery_works()
        # Since Redis never answered, nothing can have been asked of other nodes: `unavailable`.
        self.assertEqual(self.assert_unavailable(self.ba, {"type": "fetch", "nsp": "/"})["error"]["code"],
                         "unavailable")
        self.assert_cluster_queries_unavailable(self.bb)

        self.redis.start()
        self.redis.wait_nodes(2, timeout=RECONNECT_WAIT)
        wait_until(self.cluster_sees_both, timeout=RECONNECT_WAIT, message="fetch to see both nodes")
        self.ba.emit("cross", "to B", to=["red"])
        self.assertEqual(self.b1.wait_for("cross"), ("to B",))
        self.a1.assert_no("cross", within=0.2)

    def test_redis_killed_and_restarted(self):
        self.redis.start()
        self.start_cluster()
        self.ba.emit("cross", "before", to=["red"])
        self.assertEqual(self.b1.wait_for("cross"), ("before",))

        self.redis.kill()
        # At once, whether or not the nodes noticed yet: no hang, no crash.
        self.assert_cluster_queries_unavailable(self.ba)
        self.assert_local_delivery_works()
        self.ok(self.ba, {"type": "emit", "nsp": "/", "event": "all", "args": ["during"]})
        self.assertEqual(self.a1.wait_for("all"), ("during",))
        self.assert_cluster_queries_unavailable(self.bb)
        self.assertIsNone(self.a.proc.poll(), "node A is running")
        self.assertIsNone(self.b.proc.poll(), "node B is running")

        self.redis.start()
        wait_until(self.cluster_sees_both, timeout=RECONNECT_WAIT, message="fetch to see both nodes")
        self.redis.wait_nodes(2)
        self.ba.emit("cross", "after", to=["red"])
        self.assertEqual(self.b1.wait_for("cross"), ("after",))
        self.a1.assert_no("all", within=0.1)  # its own outbox copy is not delivered twice

        for node in (self.a, self.b):
            node.stop()  # SIGTERM; fails unless the exit status is 0

    # Expected behaviour (PROTOCOL.md §8, `unavailable`: emits "wait in the Redis outbox for the
    # others"). Sidecast currently loses them whenever the emitting node flushes its outbox before
    # the receiving node has subscribed again: see the two tests below.

    def test_emits_during_an_outage_arrive_after_restart(self):
        self.redis.start()
        self.start_cluster()
        self.redis.kill()
        for i in range(5):
            self.ba.emit("missed", i, to=["red"])
        self.ok(self.ba, {"type": "emit", "nsp": "/", "event": "all", "args": ["during"]})
        self.assertEqual(self.a1.wait_for("all"), ("during",))
        self.redis.start()
        self.assertEqual([self.b1.wait_for("missed", timeout=RECONNECT_WAIT)[0] for _ in range(5)],
                         list(range(5)))
        self.assertEqual(self.b1.wait_for("all", timeout=RECONNECT_WAIT), ("during",))

    def test_emits_before_redis_first_comes_arrive(self):
        self.start_cluster()
        self.ok(self.ba, {"type": "emit", "nsp": "/", "event": "early", "args": ["before Redis"]})
        self.assertEqual(self.a1.wait_for("early"), ("before Redis",))
        self.redis.start()
        self.assertEqual(self.b1.wait_for("early", timeout=RECONNECT_WAIT), ("before Redis",))
        self.a1.assert_no("early", within=0.2)

    def test_sigterm_while_redis_is_down(self):
        self.redis.start()
        self.start_cluster()
        self.redis.kill()
        self.ba.emit("undeliverable", 1, to=["red"])
        started = time.monotonic()
        for node in (self.a, self.b):
            node.stop()
        self.assertLess(time.monotonic() - started, TIMEOUT * 2, "both nodes stopped promptly")


class BacklogAfterAnOutageTests(unittest.TestCase):
    """Issue 18: node A's backend emits numbered events at a steady rate to a room whose members
    are on node B; redis-server is SIGKILLed mid-run and restarted on the same port 3 s later.
    The backlog A queued must reach B's clients, in order and without loss, as soon as B has
    subscribed again, not after the fixed settle bound (maximum reconnect backoff + 0.5 s)."""

    RATE = 50  # events per second
    CLIENTS = 3
    # The node's defaults: reconnect backoff up to 1 s, so the settle bound is 1.5 s.
    SETTLE_BOUND = 1.5

    def setUp(self):
        self.redis = start_redis(self)
        self.a, self.b = (self.start_node() for _ in range(2))
        self.redis.wait_nodes(2)
        self.ba = self.a.backend(self)
        self.bb = self.b.backend(self)
        self.arrivals = [[] for _ in range(self.CLIENTS)]
        for index in range(self.CLIENTS):
            client = self.b.client(self, transports=["websocket"])
            client.sio.on("n", lambda i, arrivals=self.arrivals[index]: arrivals.append((time.monotonic(), i)))
            sid = self.bb.expect_connect(sid=client.sid())["sid"]
            reply = self.bb.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["live"]})
            self.assertTrue(reply["ok"], reply)
        self.sent = []  # (monotonic time, number)
        self.stop_emitting = threading.Event()
        # Node A takes a few seconds to count B as subscribed (it samples every second).
        time.sleep(1.2)

    def start_node(self):
        admin_port = free_port()
        node = start_sidecast(self, "--redis", self.redis.url, "--admin-port", admin_port)
        node.admin = f"http://127.0.0.1:{admin_port}"
        return node

    def emit_steadily(self):
        """Emits `n` 0, 1, 2, ... to the room at RATE per second, on schedule, until stopped."""
        started = time.monotonic()
        number = 0
        while not self.stop_emitting.is_set():
            self.ba.emit("n", number, to=["live"])
            self.sent.append((time.monotonic(), number))
            number += 1
            delay = started + number / self.RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def watch_reconnects(self, since, nodes):
        """The monotonic time each node logs that Redis is reachable again, seen as it is logged."""
        seen = {}

        def watch():
            deadline = time.monotonic() + 30
            counts = {id(node): sum("Redis reachable again" in l for l in node.proc.log_lines) for node in nodes}
            while len(seen) < len(nodes) and time.monotonic() < deadline:
                for node in nodes:
                    if id(node) not in seen and sum("Redis reachable again" in l for l in node.proc.log_lines) > counts[id(node)]:
                        seen[id(node)] = time.monotonic()
                time.sleep(0.005)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return seen, thread

    def run_outage(self, during_outage=None):
        """Emits across a kill and a restart of Redis 3 s later; returns (kill time, the time the
        restarted Redis answered PING, the reconnect watcher's times)."""
        emitter = threading.Thread(target=self.emit_steadily, daemon=True)
        emitter.start()
        self.addCleanup(self.stop_emitting.set)
        time.sleep(1)
        killed = time.monotonic()
        self.redis.kill()
        if during_outage:
            during_outage()
        time.sleep(max(0, killed + 3 - time.monotonic()))
        nodes = [self.a] if during_outage else [self.a, self.b]
        seen, watcher = self.watch_reconnects(killed, nodes)
        self.redis.start()
        up = time.monotonic()
        watcher.join()
        self.assertEqual(len(seen), len(nodes), "every node logged that Redis is reachable again")
        time.sleep(2.5)
        self.stop_emitting.set()
        emitter.join()
        return killed, up, [seen[id(node)] for node in nodes]

    def numbers_in_order(self, arrivals):
        """Each number once, in the order it first arrived (at-least-once may repeat one)."""
        first = {}
        for at, number in arrivals:
            first.setdefault(number, at)
        return [number for number, _ in sorted(first.items(), key=lambda item: item[1])], first

    def test_backlog_arrives_as_soon_as_the_other_node_is_back(self):
        killed, up, reconnected = self.run_outage()
        total = len(self.sent)
        for arrivals in self.arrivals:
            wait_until(lambda: len({n for _, n in arrivals}) >= total, timeout=10,
                       message=f"all {total} events at B's clients")
        backlog = [number for at, number in self.sent if killed <= at < up]
        self.assertGreater(len(backlog), 100, "the backlog spans the outage")
        last = backlog[-1]
        back = max(reconnected)
        for arrivals in self.arrivals:
            order, first = self.numbers_in_order(list(arrivals))
            self.assertEqual(order, list(range(total)), "nothing lost, order kept")
            after_restart = first[last] - up
            after_reconnect = first[last] - back
            print(f"\n[backlog] {len(backlog)} events queued; last one arrived {after_restart:.2f} s after Redis "
                  f"answered again, {after_reconnect:.2f} s after both nodes reported it reachable "
                  f"(A {reconnected[0] - up:.2f} s, B {reconnected[1] - up:.2f} s)", file=sys.stderr, flush=True)
            self.assertLess(after_reconnect, 1.0, "the backlog waits for B only, not for the settle bound")
            # Reconnecting alone may take up to the 1 s maximum backoff after Redis is back.
            self.assertLess(after_restart, self.SETTLE_BOUND)
        samples = scrape(self.a)
        self.assertEqual(metric(samples, "sidecast_redis_outbox_settle_seconds_count", reason="subscribers_back"), 1)
        self.assertEqual(metric(samples, "sidecast_redis_outbox_settle_seconds_count", reason="bound"), 0)
        self.assertLess(metric(samples, "sidecast_redis_outbox_settle_seconds_sum", reason="subscribers_back"), 1.0)

    def test_backlog_waits_the_bound_for_a_node_that_never_comes_back(self):
        # B stops while Redis is down, so it never subscribes again: A cannot know it left.
        killed, up, (reconnected,) = self.run_outage(self.b.stop)
        wait_until(lambda: any("sending publishes queued while Redis was unreachable" in l for l in self.a.proc.log_lines),
                   timeout=5, message="A to send its backlog")
        line = next(l for l in self.a.proc.log_lines if "sending publishes queued while Redis was unreachable" in l)
        print(f"\n[backlog, node B gone] {line}", file=sys.stderr, flush=True)
        self.assertIn("redis.settle-reason=bound", line)
        samples = scrape(self.a)
        self.assertEqual(metric(samples, "sidecast_redis_outbox_settle_seconds_count", reason="bound"), 1)
        self.assertEqual(metric(samples, "sidecast_redis_outbox_settle_seconds_count", reason="subscribers_back"), 0)
        waited = metric(samples, "sidecast_redis_outbox_settle_seconds_sum", reason="bound")
        self.assertGreaterEqual(waited, self.SETTLE_BOUND - 0.01)
        self.assertLess(waited, self.SETTLE_BOUND + 0.5)


if __name__ == "__main__":
    unittest.main()
