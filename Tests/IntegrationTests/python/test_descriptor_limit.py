"""At the descriptor limit (issue 19): sidecast runs under a small open-file limit (`ulimit -n` in the
spawning shell) and is flooded with more WebSocket clients than fit. While it is full, its own
CPU time (read from /proc, so the load of other processes does not matter) stays under 10 % of a
core, a backend attaches and exchanges lines, /healthz answers 200 and /readyz 503 with `full`,
every excess client fails within a second, and once some clients leave new ones get in again.

With `--max-connections` set above what the limit allows, the descriptors themselves run out:
the listener drains its backlog through a spare descriptor (clients are closed at once rather
than left in the backlog until they time out), backs off instead of spinning on EMFILE, and
logs one warning with the numbers.
"""

import concurrent.futures
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import unittest

import requests
import websocket

from harness import SIDECAST_BIN, TIMEOUT, Backend, free_port, start_process, wait_until
from test_ops import metric, scrape

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class LimitedSidecast:
    """A sidecast started through `sh -c 'ulimit -n N && exec sidecast ...'`: the shell sets the
    limit and becomes sidecast, so `proc.pid` is sidecast's own pid for /proc."""

    def __init__(self, test, nofile, *flags):
        if not SIDECAST_BIN:
            raise unittest.SkipTest("SIDECAST_BIN is not set: run scripts/test.sh")
        self.port = free_port()
        self.admin_port = free_port()
        directory = tempfile.TemporaryDirectory(prefix="sidecast-limits-")
        test.addCleanup(directory.cleanup)
        self.socket_path = os.path.join(directory.name, "sidecast.sock")
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        # Long heartbeats: the raw WebSocket clients below never answer pings.
        args = ["--host", "127.0.0.1", "--port", self.port, "--admin-port", self.admin_port,
                "--socket", self.socket_path, "--drain-delay", "0", "--ping-interval", "120000", *flags]
        print(f"[harness] starting with ulimit -n {nofile}: {' '.join(map(str, args))}", file=sys.stderr, flush=True)
        self.proc = start_process(["sh", "-c", f'ulimit -n {nofile} && exec "$@"', "sh", SIDECAST_BIN,
                                   *map(str, args)], "sidecast")
        test.addCleanup(self.stop)
        wait_until(self._listening, timeout=20, message="sidecast to listen")

    def _listening(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"sidecast exited early with status {self.proc.returncode}")
        return any("sidecast listening" in line for line in self.proc.log_lines)

    @property
    def log(self):
        return "\n".join(self.proc.log_lines)

    def cpu_ticks(self):
        """User plus system CPU time sidecast has used, in clock ticks (fields 14 and 15 of stat)."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def cpu_share(self, seconds):
        """Sidecast's CPU over `seconds` of wall-clock time, as a fraction of one core."""
        before, started = self.cpu_ticks(), time.monotonic()
        time.sleep(seconds)
        return (self.cpu_ticks() - before) / CLOCK_TICKS / (time.monotonic() - started)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
        assert self.proc.returncode == 0, f"sidecast exited with status {self.proc.returncode}"


def attempt(url):
    """Opens one Engine.IO WebSocket. Returns (socket or None, seconds taken, what failed)."""
    started = time.monotonic()
    try:
        ws = websocket.create_connection(url, timeout=TIMEOUT)
        opening = ws.recv()
        if not opening.startswith("0"):
            raise AssertionError(f"not an open packet: {opening!r}")
        return ws, time.monotonic() - started, None
    except (websocket.WebSocketException, OSError) as error:
        status = getattr(error, "status_code", None)
        return None, time.monotonic() - started, status or type(error).__name__


def flood(url, count, workers=32):
    """`count` clients connecting at once; returns (the ones that got in, the failures)."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda _: attempt(url), range(count)))
    return [ws for ws, _, _ in results if ws], [(took, why) for ws, took, why in results if not ws]


def readmit(url):
    """Whether a client gets in; closes it again."""
    ws = attempt(url)[0]
    if ws:
        ws.close()
    return ws is not None


def closed_within(family, address):
    """Seconds until sidecast closes a connection made to `address` without a word."""
    started = time.monotonic()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(address)
        try:
            if sock.recv(1) != b"":
                raise AssertionError(f"{address} answered while out of descriptors")
        except ConnectionResetError:
            pass
    return time.monotonic() - started


def close_all(sockets):
    for ws in sockets:
        try:
            ws.close(timeout=0.2)
        except (websocket.WebSocketException, OSError):
            pass


class Retrier:
    """Excess clients that keep trying, as Socket.IO clients reconnect: one attempt every
    `interval` seconds until stopped; records how long each failure took."""

    def __init__(self, url, interval=0.05):
        self.failures = []
        self.got_in = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, interval), daemon=True)
        self._thread.start()

    def _run(self, url, interval):
        while not self._stop.wait(interval):
            ws, took, why = attempt(url)
            if ws:
                self.got_in.append(ws)
            else:
                self.failures.append((took, why))

    def stop(self):
        self._stop.set()
        self._thread.join()
        close_all(self.got_in)


def readyz(node):
    response = requests.get(node.admin + "/readyz", timeout=TIMEOUT)
    return response.status_code, response.json()


class DescriptorLimitTests(unittest.TestCase):
    def test_a_full_node_sheds_clients_fast_and_keeps_its_door_open(self):
        node = LimitedSidecast(self, 256)
        capacity = int(metric(scrape(node), "sidecast_max_connections"))
        # The default: the limit less the reserve for backends, Redis, admin and files.
        self.assertEqual(capacity, 256 - 80)

        admitted, failures = flood(node.ws_url, capacity + 60)
        self.addCleanup(close_all, admitted)
        self.assertEqual(len(admitted), capacity)
        self.assertEqual(len(failures), 60)
        slowest = max(took for took, _ in failures)
        self.assertLess(slowest, 1.0, f"an excess client waited {slowest:.2f} s for its failure")

        status, body = readyz(node)
        self.assertEqual((status, body), (503, {"ready": False, "reasons": ["full"]}))
        self.assertEqual(requests.get(node.admin + "/healthz", timeout=TIMEOUT).status_code, 200)
        refused = requests.get(f"{node.url}/socket.io/?EIO=4&transport=polling", timeout=TIMEOUT)
        self.assertEqual((refused.status_code, refused.json()), (503, {"error": "server full"}))

        retrier = Retrier(node.ws_url)
        try:
            share = node.cpu_share(3.0)
            self.assertLess(share, 0.10, f"sidecast used {share:.0%} of a core while full")
            backend = Backend(node.socket_path)
            self.addCleanup(backend.close)
            backend.hello()
            reply = backend.request({"type": "fetch", "nsp": "/"})
            self.assertTrue(reply["ok"], reply)
            self.assertEqual(len(reply["sockets"]), 0)  # raw Engine.IO clients joined no namespace
        finally:
            retrier.stop()
        self.assertGreater(len(retrier.failures), 10)
        self.assertEqual(retrier.got_in, [])
        slowest = max(took for took, _ in retrier.failures)
        self.assertLess(slowest, 1.0, f"a retrying client waited {slowest:.2f} s for its failure")

        samples = scrape(node)
        self.assertGreaterEqual(metric(samples, "sidecast_connections_refused_total", reason="full"),
                                60 + len(retrier.failures) + 1)

        close_all(admitted[:10])
        wait_until(lambda: readyz(node)[0] == 200, message="/readyz ready once clients left")
        again, failures = flood(node.ws_url, 10, workers=10)
        self.addCleanup(close_all, again)
        self.assertEqual((len(again), failures), (10, []))
        self.assertNotIn("out of file descriptors", node.log)

    def test_out_of_descriptors_the_listener_drains_and_never_spins(self):
        node = LimitedSidecast(self, 128, "--max-connections", "1000")
        self.assertIn("--max-connections leaves too few descriptors", node.log)
        admitted, failures = flood(node.ws_url, 160)
        self.addCleanup(close_all, admitted)
        self.assertGreater(len(admitted), 60)
        self.assertGreater(len(failures), 0)
        slowest = max(took for took, _ in failures)
        self.assertLess(slowest, 1.0, f"a client beyond the descriptors waited {slowest:.2f} s")

        # The backend and admin listeners drain their backlogs too: closed at once, no hanging.
        for family, address in ((socket.AF_UNIX, node.socket_path), (socket.AF_INET, ("127.0.0.1", node.admin_port))):
            self.assertLess(closed_within(family, address), 1.0, address)

        retrier = Retrier(node.ws_url)
        try:
            share = node.cpu_share(3.0)
            self.assertLess(share, 0.10, f"sidecast used {share:.0%} of a core out of descriptors")
        finally:
            retrier.stop()
        self.assertGreater(len(retrier.failures), 10)
        slowest = max(took for took, _ in retrier.failures)
        self.assertLess(slowest, 1.0, f"a retrying client waited {slowest:.2f} s for its failure")
        warnings = [line for line in node.proc.log_lines if "out of file descriptors" in line]
        self.assertEqual(len(warnings), 1, warnings)
        for number in ("open_file_limit=128", "max_connections=1000", "clients="):
            self.assertIn(number, warnings[0])

        close_all(admitted[:20])
        wait_until(lambda: readmit(node.ws_url), message="a client to get in again")
        backend = Backend(node.socket_path)
        self.addCleanup(backend.close)
        backend.hello()
        samples = scrape(node)
        self.assertGreater(metric(samples, "sidecast_connections_refused_total", reason="no_descriptors"), 0)


if __name__ == "__main__":
    unittest.main()
