"""Redis going away and coming back: nodes start without it, keep serving their own clients while
it is down, answer cluster queries with `unavailable` (or `timeout`) instead of hanging, deliver
the emits made meanwhile once it is back on the same port, and still exit cleanly."""

import time
import unittest

from cluster import start_nodes, start_redis
from harness import TIMEOUT, wait_until

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


if __name__ == "__main__":
    unittest.main()
