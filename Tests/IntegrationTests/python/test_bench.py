"""sidecast-bench, the benchmark tool of BENCHMARKS.md, run briefly on every scenario: each one
starts the sidecast it is given, loads it, stops it and writes its row as JSON with nothing
missing; it refuses a target outside loopback and more clients than the open-file limit allows.
These runs check that the tool works, not how fast sidecast is: the figures are BENCHMARKS.md's."""

import json
import os
import resource
import subprocess
import tempfile
import unittest

from cluster import REDIS_SERVER
from harness import SIDECAST_BIN


class BenchTests(unittest.TestCase):
    def setUp(self):
        if not SIDECAST_BIN:
            raise unittest.SkipTest("SIDECAST_BIN is not set: run scripts/test.sh")
        self.bench = os.path.join(os.path.dirname(SIDECAST_BIN), "sidecast-bench")
        if not os.path.exists(self.bench):
            raise unittest.SkipTest(f"{self.bench} is not built")

    def run_bench(self, *args, open_files=None):
        """`open_files` sets the open-file limit (soft and hard) of the bench and its sidecast."""
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))) if open_files else None
        return subprocess.run([self.bench, *args, "--sidecast", SIDECAST_BIN], capture_output=True,
                              text=True, timeout=120, preexec_fn=limit)

    def scenario(self, name, *args):
        """Runs `name` for one second and returns its figures by name, and its notes."""
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "row.json")
            done = self.run_bench(name, *args, "--duration", "1", "--json", path)
            self.assertEqual(done.returncode, 0, done.stderr + done.stdout)
            self.assertIn(name, done.stdout, "the table row is printed")
            with open(path) as file:
                row = json.load(file)
        self.assertEqual(row["scenario"], name)
        self.assertEqual(row["machine"]["cores"], os.cpu_count())
        return {figure["name"]: figure["value"] for figure in row["figures"]}, row["notes"]

    def test_idle(self):
        figures, notes = self.scenario("idle", "--clients", "20")
        self.assertEqual(figures["clients"], 20)
        self.assertGreater(figures["RSS after"], 0)
        self.assertGreater(figures["RSS/conn"], 0)
        self.assertEqual(notes, [], "no client was dropped")

    def test_idle_reports_how_the_ramp_spread_over_the_shards(self):
        # Read from sidecast's /metrics (`sidecast_connected_clients{shard=...}`): the acceptor
        # hands connections to the loops in turn, so 20 clients make 5 on each of 4.
        figures, notes = self.scenario("idle", "--clients", "20", "--threads", "4")
        self.assertEqual(figures["shards"], 4)
        self.assertEqual(figures["shard max/mean"], 1.0)
        self.assertEqual(figures["shard min/mean"], 1.0)
        self.assertIn("clients per shard: 5 5 5 5", notes)

    def test_idle_after_a_large_first_message(self):
        figures, notes = self.scenario("idle", "--clients", "20", "--first-message", "50000")
        self.assertGreater(figures["RSS/conn"], 0)
        self.assertEqual(notes, [], "no client was dropped")
        done = self.run_bench("idle", "--first-message", "2000000")
        self.assertEqual(done.returncode, 2)
        self.assertIn("--first-message must be 0 or 40...900000", done.stderr)

    def test_fanout(self):
        figures, _ = self.scenario("fanout", "--clients", "20", "--rate", "20")
        self.assertGreater(figures["events"], 0)
        self.assertGreater(figures["deliveries/s"], 0)
        self.assertEqual(figures["missing"], 0)
        self.assertGreater(figures["sidecar CPU/delivery"], 0)
        self.assertLessEqual(figures["of which kernel"], figures["sidecar CPU/delivery"])

    def test_fanout_with_deflate(self):
        """--deflate: the clients offer permessage-deflate, inflate what they get, and the
        bytes that reach them per delivery shrink (the bench's padding compresses well)."""
        plain, _ = self.scenario("fanout", "--clients", "10", "--rate", "10", "--payload-bytes", "4000")
        deflated, _ = self.scenario("fanout", "--clients", "10", "--rate", "10", "--payload-bytes", "4000", "--deflate")
        self.assertEqual(deflated["missing"], 0)
        self.assertGreater(plain["bytes/delivery"], 4000)
        self.assertLess(deflated["bytes/delivery"], 400)

    def test_chat(self):
        figures, _ = self.scenario("chat", "--clients", "20", "--room-size", "5", "--rate", "50")
        self.assertGreater(figures["deliveries/s"], figures["messages/s"], "each message reaches a room of 5")
        self.assertEqual(figures["missing"], 0)
        self.assertGreater(figures["wake-ups/message"], 0, "sidecast sleeps between messages at 50/s")

    def test_bridge(self):
        figures, _ = self.scenario("bridge", "--clients", "2")
        self.assertGreater(figures["to-socket emits/s"], 0)
        self.assertGreater(figures["to-room deliveries/s"], figures["to-room emits/s"], "a room emit reaches both clients")
        self.assertEqual(figures["missing"], 0)

    def test_bridge_with_two_backends(self):
        figures, _ = self.scenario("bridge", "--clients", "2", "--backends", "2")
        self.assertGreater(figures["to-socket emits/s"], 0)
        self.assertEqual(figures["missing"], 0, "every emit of both backends reached its clients")
        done = self.run_bench("bridge", "--backends", "0")
        self.assertEqual(done.returncode, 2)
        self.assertIn("--backends must be 1...64", done.stderr)

    def test_cluster(self):
        if not REDIS_SERVER:
            raise unittest.SkipTest("redis-server is not installed")
        figures, _ = self.scenario("cluster", "--clients", "2", "--rate", "100",
                                   "--redis-server", REDIS_SERVER)
        self.assertGreater(figures["emits/s"], 0)
        self.assertEqual(figures["missing local"], 0)
        self.assertEqual(figures["missing remote"], 0)
        self.assertGreater(figures["remote p50"], 0)

    def test_relay(self):
        if not REDIS_SERVER:
            raise unittest.SkipTest("redis-server is not installed")
        figures, _ = self.scenario("relay", "--clients", "2", "--redis-server", REDIS_SERVER)
        for phase in ("direct", "relayed"):
            self.assertGreater(figures[f"{phase} requests/s"], 0)
            self.assertGreater(figures[f"{phase} p50"], 0)
        # Relayed requests are node B's work.
        self.assertGreater(figures["relayed CPU B/request"], 0)

    def test_recovery(self):
        figures, _ = self.scenario("recovery", "--clients", "20", "--rate", "20")
        self.assertEqual(figures["recovered"], 20, "every client got its sid back")
        self.assertEqual(figures["events replayed"], 20 * 20, "each missed the 20 events sent while away")
        self.assertEqual(figures["events missing"], 0)
        self.assertGreater(figures["RSS away"], 0)

    def test_refuses_a_target_outside_loopback(self):
        done = self.run_bench("idle", "--host", "10.1.2.3")
        self.assertEqual(done.returncode, 2)
        self.assertIn("--host 10.1.2.3 is not a loopback address", done.stderr)

    def test_serves_every_client_the_open_file_limit_allows(self):
        """At an open-file limit of 200 the bench allows 136 clients (200 less its 64 spare);
        sidecast alone would cap clients at the limit less its reserve of 80 and answer the
        last 16 with HTTP 503, so the bench gives it a cap that fits the run."""
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "row.json")
            done = self.run_bench("idle", "--clients", "136", "--duration", "1", "--json", path, open_files=200)
            self.assertEqual(done.returncode, 0, done.stderr + done.stdout)
            with open(path) as file:
                row = json.load(file)
        figures = {figure["name"]: figure["value"] for figure in row["figures"]}
        self.assertEqual(figures["clients"], 136)
        self.assertEqual(row["notes"], [], "no client was dropped")
        self.assertIn("use at most 136 clients", self.run_bench("idle", "--clients", "137", open_files=200).stderr)

    def test_refuses_more_clients_than_open_files_allow(self):
        done = self.run_bench("idle", "--clients", "1000000")
        self.assertEqual(done.returncode, 1)
        self.assertRegex(done.stderr, r"--clients 1000000 needs about \d+ open files .* use at most \d+ clients")


if __name__ == "__main__":
    unittest.main()
