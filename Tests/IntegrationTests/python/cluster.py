"""Cluster helpers for the integration tests: a private redis-server and sidecast nodes sharing it.

`RedisServer` runs redis-server on a free loopback port without persistence, in a temporary
directory; it can be killed (SIGKILL) and started again on the same port, to test outages.
`start_nodes` starts sidecast nodes with `--redis` pointing at it, using harness.py's `Sidecast`,
so each node offers harness's `backend()` and `client()` helpers.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import unittest

import redis

from harness import TIMEOUT, free_port, start_process, start_sidecast, wait_until

REDIS_SERVER = os.environ.get("SIDECAST_REDIS_SERVER") or shutil.which("redis-server")


class RedisServer:
    """A redis-server on 127.0.0.1:`port`, restartable on the same port."""

    def __init__(self, port=None):
        if not REDIS_SERVER:
            raise unittest.SkipTest("redis-server is not installed")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="sidecast-redis-")
        self.proc = None
        self.starts = 0

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        """Starts redis-server and waits until it answers PING."""
        if self.running:
            raise AssertionError("redis-server is already running")
        self.starts += 1
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self._dir.name,
                "--protected-mode", "no"]
        self.proc = start_process(args, f"redis-{self.starts}")
        try:
            wait_until(self._answers_ping, timeout=10, message=f"redis-server on port {self.port}")
        except AssertionError:
            self.kill()
            raise
        return self

    def _answers_ping(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited early with status {self.proc.returncode}")
        try:
            return self.client(socket_timeout=1).ping()
        except redis.exceptions.ConnectionError:
            return False

    def kill(self):
        """SIGKILL: Redis vanishes without closing its connections politely."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self):
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._dir.cleanup()

    def client(self, **kwargs):
        """A new redis-py client (bytes replies), for publishing and for PUBSUB queries."""
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def subscribers(self, channel):
        """`PUBSUB NUMSUB channel`: how many connections subscribe to it right now."""
        with self.client(socket_timeout=2) as r:
            return dict(r.pubsub_numsub(channel)).get(channel.encode(), 0)

    def wait_nodes(self, count, nsp="/", prefix="socket.io", timeout=TIMEOUT * 2):
        """Waits until `count` nodes subscribe to the namespace's request channel: from then on
        every node receives what the others publish (the adapter counts nodes the same way)."""
        # A node subscribes to the response channel after the broadcast pattern and the request
        # channel, on the same connection, so Redis has processed all three once it counts.
        for channel in (f"{prefix}-request#{nsp}#", f"{prefix}-response#{nsp}#"):
            wait_until(lambda: self.subscribers(channel) == count, timeout=timeout,
                       message=f"{count} subscribers of {channel}")


def start_redis(test, start=True):
    """A `RedisServer` for `test`, stopped at cleanup (after the nodes registered later)."""
    server = RedisServer()
    test.addCleanup(server.stop)
    if start:
        server.start()
    return server


def start_nodes(test, redis_server, count, *flags, wait=True, **kwargs):
    """Starts `count` sidecast nodes on `redis_server` (each must exit 0 on SIGTERM at cleanup);
    with `wait`, returns once every node has subscribed to the cluster's channels."""
    nodes = [start_sidecast(test, "--redis", redis_server.url, *flags, **kwargs)
             for _ in range(count)]
    if wait:
        redis_server.wait_nodes(count)
    return nodes


class ClusterAssertions:
    """For test cases with named clients spread over several nodes (`self.clients`, the client
    called "a1" on the node that emits): a backend command that must succeed, and an event
    that must reach exactly some of the clients."""

    def ok(self, backend, command):
        reply = backend.request(command)
        self.assertTrue(reply["ok"], f"{command!r} -> {reply!r}")
        return reply

    def assert_received(self, event, args, receivers):
        """`receivers` get `event` with `args` exactly once; the other clients never get it."""
        for name in receivers:
            self.assertEqual(self.clients[name].wait_for(event), args, f"client {name}")
        for name, client in self.clients.items():
            client.assert_no(event, within=0.4 if name == "a1" else 0.05)
