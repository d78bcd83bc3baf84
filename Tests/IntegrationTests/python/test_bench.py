"""sidecast-bench, the benchmark tool of BENCHMARKS.md, run briefly on every scenario: each one
starts the sidecast it is given, loads it, stops it and writes its row as JSON with nothing
missing; it refuses a target outside loopback and more clients than the open-file limit allows.
These runs check that the tool works, not how fast sidecast is: the figures are BENCHMARKS.md's."""

import json
import os
import resource
import subprocess
import sys
import tempfile
import unittest

from cluster import REDIS_SERVER
from harness import SIDECAST_BIN

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
import owners  # noqa: E402  (scripts/owners.py, the split of scripts/perf-bench.sh and callgrind-bench.sh --owners)
from callgrind.diff import Profile, owner_costs  # noqa: E402


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


class OwnersTests(unittest.TestCase):
    """The split BENCHMARKS.md's floor rests on: runtime work charged to the code that asked
    for it, in perf samples and in callgrind profiles."""

    NIO_WRITE = "$s8NIOPosix17BaseSocketChannelC6flush0yyF"
    BRIDGE_EMIT = "$s6BridgeAAC4emityyF"

    def test_names_the_module_of_swift_code_and_leaves_the_runtime_to_its_caller(self):
        self.assertEqual(owners.module_of("/x/sidecast", self.NIO_WRITE), "NIOPosix")
        self.assertEqual(owners.module_of("/x/sidecast", self.BRIDGE_EMIT), "Bridge")
        self.assertEqual(owners.module_of("/x/libjansson.so.4.14.0", "0x00000000000056b0"), "libjansson.so.4.14.0")
        self.assertIsNone(owners.module_of("/x/libswiftCore.so", "swift_retain"))
        self.assertIsNone(owners.module_of("/x/libc.so.6", "malloc"))
        self.assertIsNone(owners.module_of("/x/sidecast", "$sSh8containsySbxFSS_Tg5"), "a stdlib specialization")
        self.assertEqual(owners.group_of("NIOCore"), "SwiftNIO")
        self.assertEqual(owners.group_of("SocketIO"), "sidecast")
        self.assertEqual(owners.group_of("libjansson.so.4.14.0"), "jansson")

    def test_charges_each_perf_sample_to_its_innermost_owned_frame(self):
        script = f"""
\t    7f01 swift_retain (/x/libswiftCore.so)
\t    5501 {self.NIO_WRITE} (/x/sidecast)
\t    5502 {self.BRIDGE_EMIT} (/x/sidecast)

\tffffffff81 tcp_sendmsg ([kernel.kallsyms])
\t    5501 {self.NIO_WRITE} (/x/sidecast)

\t    6601 malloc (/x/libc.so.6)
\t    4680 0x0000000000004680 (/x/libjansson.so.4.14.0)
\t    5503 {self.BRIDGE_EMIT} (/x/sidecast)

\t    5502 {self.BRIDGE_EMIT} (/x/sidecast)
""".splitlines()
        counts = owners.perf_owner_counts(script)
        self.assertEqual(dict(counts), {"NIOPosix": 1, "[kernel]": 1, "libjansson.so.4.14.0": 1, "Bridge": 1})

    def test_shares_a_runtime_functions_instructions_among_its_callers(self):
        """swift_retain's 40 instructions, called for 30 by Bridge and 10 by NIOPosix, go 30/10;
        two standard-library functions that call each other, entered only from NIOPosix, are
        NIOPosix's whole (the cycle must not keep any of it)."""
        profile = f"""events: Ir
ob=(1) /x/sidecast
fn=(1) {self.BRIDGE_EMIT}
0 100
cob=(2) /x/libswiftCore.so
cfn=(3) swift_retain
calls=3 0
0 30
fn=(2) {self.NIO_WRITE}
0 50
cob=(2)
cfn=(3)
calls=1 0
0 10
cfn=(4) $ss5loopAyyF
calls=1 0
0 20
fn=(4)
0 10
cfn=(5) $ss5loopByyF
calls=1 0
0 10
fn=(5)
0 10
cfn=(4)
calls=1 0
0 5
ob=(2)
fn=(3)
0 40
"""
        with tempfile.NamedTemporaryFile("w", suffix=".out") as file:
            file.write(profile)
            file.flush()
            costs = owner_costs(Profile(file.name))
        self.assertEqual(set(costs), {"Bridge", "NIOPosix", "runtime (unattributed)"})
        self.assertAlmostEqual(costs["Bridge"], 130.0)
        self.assertAlmostEqual(costs["NIOPosix"], 80.0)
        self.assertAlmostEqual(costs["runtime (unattributed)"], 0.0)

    def test_reads_an_strace_summary(self):
        summary = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 48.83    0.535151          41     12825           epoll_wait
 12.57    0.137763           2     65086           write
  0.05    0.000548           0       718       207 accept4
------ ----------- ----------- --------- --------- ----------------
100.00    1.095964          10    100029       209 total
"""
        with tempfile.NamedTemporaryFile("w") as file:
            file.write(summary)
            file.flush()
            self.assertEqual(dict(owners.strace_counts(file.name)), {"epoll_wait": 12825, "write": 65086, "accept4": 718})


if __name__ == "__main__":
    unittest.main()
