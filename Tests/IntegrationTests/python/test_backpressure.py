"""A backend that stops reading stops sidecast reading the clients that send to it.

Four WebSocket clients (at `--threads 4` the acceptor hands them to four loops, so three are
sockets of another shard than the bridge's) flood events at a backend that has stopped reading
its socket. Sidecast must stop reading those clients (PROTOCOL.md §9: memory stays bounded by
the backend channel's buffer and one read per stalled client) rather than queue their events,
and once the backend reads again every event must arrive, in each client's order.
"""

import json
import os
import socket
import sys
import threading
import time
import unittest

import websocket

from harness import TIMEOUT, start_sidecast, wait_until

CLIENTS = 4
EVENTS = 4000
PAYLOAD = "x" * 8000  # 4 clients x 4,000 x 8 KB = 128 MB offered


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class StalledBackend:
    """A backend that attaches, then reads nothing until `drain` is called."""

    def __init__(self, socket_path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(socket_path)
        self.reader = self.sock.makefile("rb")
        self.sock.sendall(b'{"type":"hello","version":1,"nsps":["/"]}\n')
        welcome = json.loads(self.reader.readline())
        assert welcome["type"] == "welcome", welcome

    def drain(self, expected, deadline):
        """Reads until `expected` flood events arrived; returns the sequence numbers per client."""
        received = {}
        count = 0
        self.sock.settimeout(max(1.0, deadline - time.monotonic()))
        while count < expected:
            message = json.loads(self.reader.readline())
            if message.get("type") == "event" and message.get("event") == "flood":
                data = message["args"][0]
                received.setdefault(data["c"], []).append(data["s"])
                count += 1
        return received

    def close(self):
        self.reader.close()
        self.sock.close()


class Flooder(threading.Thread):
    """A raw Engine.IO v4 WebSocket client that sends EVENTS events as fast as its socket takes them."""

    def __init__(self, url, index):
        super().__init__(daemon=True, name=f"flooder-{index}")
        self.index = index
        self.sent = 0
        self.error = None
        self.ws = websocket.create_connection(f"{url}/socket.io/?EIO=4&transport=websocket", timeout=TIMEOUT)
        opened = self.ws.recv()
        assert opened.startswith("0"), opened
        self.ws.send("40")
        connected = self.ws.recv()
        assert connected.startswith("40"), connected
        # The sends below may block for as long as the backend stalls.
        self.ws.sock.settimeout(None)

    def run(self):
        try:
            for sequence in range(EVENTS):
                payload = json.dumps({"c": self.index, "s": sequence, "p": PAYLOAD}, separators=(",", ":"))
                self.ws.send('42["flood",' + payload + "]")
                self.sent += 1
        except Exception as error:  # reported by the test
            self.error = error

    def close(self):
        self.ws.close()


class BackpressureTests(unittest.TestCase):
    def test_a_stalled_backend_pauses_its_clients_and_loses_nothing(self):
        sidecast = start_sidecast(self)
        backend = StalledBackend(sidecast.socket_path)
        self.addCleanup(backend.close)
        flooders = [Flooder(sidecast.ws_url, index) for index in range(CLIENTS)]
        for flooder in flooders:
            self.addCleanup(flooder.close)
        before = rss_bytes(sidecast.proc.pid)
        for flooder in flooders:
            flooder.start()

        # The clients stop making progress: sidecast no longer reads them.
        last = [-1]

        def stalled():
            sent = sum(flooder.sent for flooder in flooders)
            if sent == last[0]:
                return True
            last[0] = sent
            return False

        wait_until(stalled, timeout=60, interval=1.0, message="the clients to stall")
        offered = CLIENTS * EVENTS
        self.assertLess(last[0], offered, "every event was taken although the backend reads nothing")
        grown = rss_bytes(sidecast.proc.pid) - before
        print(f"[test] the clients stalled after {last[0]} of {offered} events; sidecast grew by {grown} bytes",
              file=sys.stderr)
        self.assertLess(grown, 16 * 1024 * 1024, f"sidecast grew by {grown} bytes while its backend stalled")

        # The backend reads again: everything arrives, in each client's order.
        received = backend.drain(offered, deadline=time.monotonic() + 120)
        for flooder in flooders:
            flooder.join(timeout=TIMEOUT)
            self.assertFalse(flooder.is_alive(), f"client {flooder.index} is still sending")
            self.assertIsNone(flooder.error)
            self.assertEqual(received.get(flooder.index), list(range(EVENTS)), f"client {flooder.index}")
        self.assertIsNone(sidecast.proc.poll(), "sidecast exited")


if __name__ == "__main__":
    unittest.main()
