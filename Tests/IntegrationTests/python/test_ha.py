"""High-availability Redis: three sidecast nodes on a Redis Cluster (3 masters, 3 replicas) with
`--redis-cluster`, and on a Sentinel-watched master with `--redis-sentinel`. Emits to rooms
spread over many hash slots cross nodes; SIGKILL of the master a node uses interrupts delivery
only briefly, with no sidecast restart, and the emits made meanwhile arrive from the outbox.
Each test prints the measured gap."""

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import redis

from harness import free_port, start_process, start_sidecast, wait_until

REDIS_SERVER = os.environ.get("SIDECAST_REDIS_SERVER") or shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
ROOMS = [f"room-{i}" for i in range(40)]
FAILOVER_WAIT = 30


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def cluster_port():
    """A free port whose cluster bus port (10000 above) is free too."""
    for _ in range(200):
        port = random.randint(20000, 40000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise AssertionError("no free port pair for a cluster node")


class RedisProcess:
    """One redis-server (or Sentinel, with `sentinel_conf`) on 127.0.0.1:`port` in a temp dir."""

    def __init__(self, test, *args, port=None, pick_port=free_port, sentinel_conf=None, name="redis",
                 password=None):
        if not (REDIS_SERVER and REDIS_CLI):
            raise unittest.SkipTest("redis-server and redis-cli are needed")
        self.password = password
        self._dir = tempfile.TemporaryDirectory(prefix="sidecast-ha-")
        test.addCleanup(self._dir.cleanup)
        argv = [REDIS_SERVER]
        if sentinel_conf is not None:
            path = os.path.join(self._dir.name, "sentinel.conf")
            with open(path, "w") as f:
                f.write(sentinel_conf)
            argv += [path, "--sentinel"]
        else:
            argv += ["--save", "", "--appendonly", "no"]
        if password:
            argv += ["--requirepass", password]
        # A port found free can be taken by another process before redis binds it (modules run
        # in parallel): a picked port is picked again when redis exits at start; a port the
        # caller named is its own to fail on.
        for _ in range(5):
            self.port = port or pick_port()
            self.proc = start_process(argv + ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name,
                                              "--protected-mode", "no", "--loglevel", "warning", *map(str, args)],
                                      f"{name}-{self.port}")
            wait_until(lambda: self._ping() or self.proc.poll() is not None, timeout=10,
                       message=f"{name} on port {self.port}")
            if self.proc.poll() is None:
                break
            if port is not None:
                raise AssertionError(f"{name} on port {self.port} exited with {self.proc.returncode}")
        else:
            raise AssertionError(f"{name} exited at start on 5 picked ports")
        test.addCleanup(self.kill)

    def _ping(self):
        if self.proc.poll() is not None:
            return False
        try:
            return self.client().ping()
        except redis.exceptions.ConnectionError:
            return False

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True,
                           password=self.password)

    def command(self, *args):
        with self.client() as r:
            return r.execute_command(*args)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def request_subscribers(nodes, nsp="/"):
    """Subscribers of the namespace's request channel summed over `nodes`: one per sidecast node."""
    total = 0
    channel = f"socket.io-request#{nsp}#"
    for node in nodes:
        if node.proc.poll() is not None:
            continue
        try:
            with node.client() as r:
                total += dict(r.pubsub_numsub(channel)).get(channel, 0)
        except redis.exceptions.ConnectionError:
            pass
    return total


class HATestCase(unittest.TestCase):
    def start_sidecasts(self, redis_nodes, flags_for):
        """Three sidecast nodes, a backend and a websocket client on each; the client of node C
        joins every room of ROOMS."""
        self.nodes = [start_sidecast(self, *flags_for(i)) for i in range(3)]
        wait_until(lambda: request_subscribers(redis_nodes) == 3, timeout=FAILOVER_WAIT,
                   message="three sidecast nodes subscribed")
        self.backends = [node.backend(self) for node in self.nodes]
        self.clients = []
        self.sids = []
        for node, backend in zip(self.nodes, self.backends):
            client = node.client(self, transports=["websocket"])
            self.sids.append(backend.expect_connect(sid=client.sid())["sid"])
            self.clients.append(client)
        reply = self.backends[2].request({"type": "join", "sid": self.sids[2], "nsp": "/", "rooms": ROOMS})
        self.assertTrue(reply["ok"], reply)

    def assert_rooms_cross_nodes(self, event):
        """An emit to each room from A (and to every other one from B) reaches C's client only."""
        for i, room in enumerate(ROOMS):
            self.backends[i % 2].emit(event, i, to=[room])
        got = sorted(self.clients[2].wait_for(event)[0] for _ in ROOMS)
        self.assertEqual(got, list(range(len(ROOMS))))
        self.clients[0].assert_no(event, within=0.1)
        self.clients[1].assert_no(event, within=0.1)

    def ticks_across_a_kill(self, victim, rooms):
        """SIGKILLs `victim`, emits `tick` n to room n % len(rooms) from node A every 50 ms until
        C's client receives one, then checks that every tick arrives. Returns the gap from the
        kill to that first delivery, and how many ticks were sent meanwhile."""
        killed = time.monotonic()
        victim.kill()
        sent = 0
        first = None
        while time.monotonic() - killed < FAILOVER_WAIT:
            self.backends[0].emit("tick", sent, to=[rooms[sent % len(rooms)]])
            sent += 1
            if any(item[1] == "tick" for item in self.clients[2].inbox.pending()):
                first = time.monotonic() - killed
                break
            time.sleep(0.05)
        self.assertIsNotNone(first, f"no delivery within {FAILOVER_WAIT} s of the kill")
        received = set()
        wait_until(lambda: received.update(self.clients[2].wait_for("tick", timeout=FAILOVER_WAIT)[0:1])
                   or received >= set(range(sent)), timeout=FAILOVER_WAIT,
                   message=f"all {sent} ticks at C (got {len(received)})")
        return first, sent

    def kill_and_measure(self, victim, label):
        """`ticks_across_a_kill` over every room; prints the gap and what A's outbox carried."""
        first, sent = self.ticks_across_a_kill(victim, ROOMS)
        queued = [int(m) for line in self.nodes[0].proc.log_lines
                  for m in re.findall(r"redis\.queued=(\d+) .*sending publishes queued while Redis was unreachable", line)]
        print(f"\n[{label}] gap from SIGKILL to the first delivery: {first:.2f} s; {sent} emits during it, "
              f"{sum(queued)} carried by node A's outbox", file=sys.stderr, flush=True)
        for node in self.nodes:
            self.assertIsNone(node.proc.poll(), "sidecast kept running")
        return first


class RedisClusterHATests(HATestCase):
    def setUp(self):
        self.redis = [RedisProcess(self, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                   "--cluster-node-timeout", "1000", pick_port=cluster_port, name="cluster")
                      for _ in range(6)]
        out = subprocess.run([REDIS_CLI, "--cluster", "create", *(n.address for n in self.redis),
                              "--cluster-replicas", "1", "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        self.assertIn("All 16384 slots covered", out.stdout, out.stdout + out.stderr)
        for node in self.redis:
            wait_until(lambda: node.command("CLUSTER", "INFO").find("cluster_state:ok") >= 0, timeout=20,
                       message=f"cluster state ok on {node.port}")
            # A replica that never synced is too stale to take over from its master.
            wait_until(lambda: node.command("ROLE")[0] == "master"
                       or node.command("INFO", "replication").get("master_link_status") == "up",
                       timeout=20, message=f"replication sync on {node.port}")
        seeds = [n.address for n in self.redis]
        # Each sidecast node gets a different first seed; all of them know the others.
        self.start_sidecasts(self.redis, lambda i: ["--redis-cluster", ",".join(seeds[i:] + seeds[:i])])

    def test_rooms_across_slots_and_a_killed_master(self):
        slots = {self.redis[0].command("CLUSTER", "KEYSLOT", f"socket.io#/#{room}#") for room in ROOMS}
        self.assertGreater(len(slots), 30, "the rooms' channels spread over many slots")
        self.assert_rooms_cross_nodes("before")
        # The master node A publishes on: its emits wait in the outbox while A moves.
        used = re.findall(r"redis\.node=127\.0\.0\.1:(\d+) .*using Redis Cluster node", self.nodes[0].log)
        self.assertTrue(used, "node A logged the cluster node it uses")
        victim = next(n for n in self.redis if n.port == int(used[-1]))
        self.assertEqual(victim.command("ROLE")[0], "master")
        self.kill_and_measure(victim, "cluster")
        self.assert_rooms_cross_nodes("after")
        survivor = next(n for n in self.redis if n is not victim)
        wait_until(lambda: sum(1 for line in survivor.command("CLUSTER", "NODES").splitlines()
                               if "master" in line and "fail" not in line) == 3,
                   timeout=FAILOVER_WAIT, message="the killed master's replica to take over")
        # Cluster-wide queries count every node, wherever its subscription lives.
        reply = self.backends[0].request({"type": "count", "nsp": "/", "in": ROOMS[:1]})
        self.assertEqual(reply.get("count"), 1, reply)


class RedisSentinelHATests(HATestCase):
    def setUp(self):
        master = RedisProcess(self, name="master")
        replica = RedisProcess(self, "--replicaof", "127.0.0.1", master.port, name="replica")
        wait_until(lambda: replica.command("INFO", "replication").get("master_link_status") == "up",
                   timeout=20, message="the replica to sync")
        conf = (f"sentinel monitor ha 127.0.0.1 {master.port} 2\n"
                "sentinel down-after-milliseconds ha 1000\n"
                "sentinel failover-timeout ha 3000\n")
        sentinels = [RedisProcess(self, sentinel_conf=conf, name="sentinel") for _ in range(3)]
        for s in sentinels:
            wait_until(lambda: self.quorum(s) and len(s.command("SENTINEL", "REPLICAS", "ha")) == 1,
                       timeout=20, message="sentinels to know one another and the replica")
        self.master, self.replica = master, replica
        self.start_sidecasts([master], lambda i: ["--redis-sentinel", ",".join(s.address for s in sentinels),
                                                  "--redis-master", "ha"])

    @staticmethod
    def quorum(sentinel):
        try:
            return sentinel.command("SENTINEL", "CKQUORUM", "ha").startswith("OK 3")
        except redis.exceptions.ResponseError:  # NOQUORUM while the sentinels find one another
            return False

    def test_master_killed(self):
        self.assert_rooms_cross_nodes("before")
        self.kill_and_measure(self.master, "sentinel")
        self.assertEqual(self.replica.command("ROLE")[0], "master")
        self.assert_rooms_cross_nodes("after")
        for node in self.nodes:
            node.wait_for_log("Redis failover complete", timeout=FAILOVER_WAIT)


class RedisSentinelAuthTests(unittest.TestCase):
    """Sentinels with their own `requirepass`: sidecast logs in to them with
    `--redis-sentinel-password` (or SIDECAST_REDIS_SENTINEL_PASSWORD) and to the master, which
    has no password here, without it; a wrong or missing password is reported clearly."""

    def setUp(self):
        self.master = RedisProcess(self, name="master")
        self.sentinel = RedisProcess(self, sentinel_conf=f"sentinel monitor ha 127.0.0.1 {self.master.port} 1\n",
                                     name="sentinel", password="s3ntinel")
        wait_until(lambda: self.sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "ha") == ["127.0.0.1", str(self.master.port)],
                   timeout=10, message="the sentinel to name the master")

    def node(self, *flags, env=None):
        return start_sidecast(self, "--redis-sentinel", self.sentinel.address, "--redis-master", "ha", *flags, env=env)

    def test_nodes_log_in_to_the_sentinel_and_cross_deliver(self):
        a = self.node("--redis-sentinel-password", "s3ntinel")
        b = self.node(env={"SIDECAST_REDIS_SENTINEL_PASSWORD": "s3ntinel"})
        wait_until(lambda: request_subscribers([self.master]) == 2, timeout=FAILOVER_WAIT, message="both nodes subscribed")
        backend_a, backend_b = a.backend(self), b.backend(self)
        client = b.client(self, transports=["websocket"])
        sid = backend_b.expect_connect(sid=client.sid())["sid"]
        self.assertTrue(backend_b.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["r"]})["ok"])
        backend_a.emit("hello", 1, to=["r"])
        self.assertEqual(client.wait_for("hello"), (1,))
        # Each node's Sentinel event link (SUBSCRIBE +switch-master) is logged in too.
        def event_subscribers():
            with self.sentinel.client() as r:
                return sum(1 for c in r.client_list() if c.get("sub") == "1")
        wait_until(lambda: event_subscribers() >= 2, timeout=10, message="both nodes subscribed to the sentinel's events")

    def test_wrong_or_missing_sentinel_password_is_a_clear_error(self):
        for flags, expected in ((["--redis-sentinel-password", "wrong"], "WRONGPASS"), ([], "NOAUTH")):
            node = self.node(*flags)
            # The data links say which sentinel refused them, and why, in words from Redis.
            wait_until(lambda: any(expected in line and f"sentinel {self.sentinel.address}" in line
                                   and "cannot connect to Redis" in line for line in node.proc.log_lines),
                       timeout=10, message=f"a connection error naming the sentinel and {expected}")
            self.assertNotIn("s3ntinel", node.log)
            self.assertEqual(request_subscribers([self.master]), 0)


if __name__ == "__main__":
    unittest.main()
