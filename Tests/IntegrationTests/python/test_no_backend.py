"""Client events that no backend serves: dropped and counted, and a rate-limited warning names
the namespace, so a client that connected to a namespace nobody listens on does not go
unnoticed (PROTOCOL.md §7). Likewise clients of an --authorize namespace with no authorizer are
refused, counted and warned about (§6)."""

import json
import time
import unittest

from harness import RawSocketIO
from test_ops import metric, scrape, start_node

WARNING = "dropping client events: no backend serves the namespace"


def warnings(node, nsp):
    return [line for line in node.proc.log_lines if WARNING in line and f"nsp={nsp} " in line + " "]


class NoBackendTests(unittest.TestCase):
    def test_events_without_a_backend_are_counted_and_warned_about_once(self):
        node = start_node(self, namespaces=("/", "/quiet"))
        raw = RawSocketIO(node)
        self.addCleanup(raw.close)
        raw.connect()
        raw.connect("/quiet")
        for i in range(20):
            raw.ws.send(f'42["chat",{i}]')
        raw.ws.send('42/quiet,["shh"]')
        node.wait_for_log(WARNING, count=2)
        samples = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            samples = scrape(node)
            if metric(samples, "sidecast_drops_total", cause="no_backend") >= 21:
                break
            time.sleep(0.05)
        self.assertEqual(metric(samples, "sidecast_drops_total", cause="no_backend"), 21)
        # One line per namespace for the whole burst: the rest wait for the next interval.
        time.sleep(0.2)
        self.assertEqual(len(warnings(node, "/")), 1, node.log)
        self.assertEqual(len(warnings(node, "/quiet")), 1, node.log)
        line = warnings(node, "/")[0]
        self.assertIn("event=chat", line)
        self.assertIn("hint=", line)
        self.assertIn("dropped=1", line)

    def test_no_warning_while_a_backend_serves_the_namespace(self):
        node = start_node(self)
        backend = node.backend(self)
        raw = RawSocketIO(node)
        self.addCleanup(raw.close)
        sid = raw.connect()
        raw.ws.send('42["chat","hi"]')
        backend.expect_event("chat", sid=sid)
        time.sleep(0.2)
        self.assertEqual(warnings(node, "/"), [])
        self.assertEqual(metric(scrape(node), "sidecast_drops_total", cause="no_backend"), 0)

    def test_refusals_without_an_authorizer_are_counted_and_warned_about_once(self):
        node = start_node(self, "--authorize", "/vault")
        for _ in range(3):
            raw = RawSocketIO(node)
            self.addCleanup(raw.close)
            raw.ws.send("40/vault,")
            answer = raw.recv_skipping_pings()
            self.assertEqual(json.loads(answer[len("44/vault,"):]), {"message": "authorization unavailable"})
        self.assertEqual(metric(scrape(node), "sidecast_authorizations_unavailable_total"), 3)
        node.wait_for_log("refusing clients: no backend that authorizes the namespace is attached")
        time.sleep(0.2)
        refusals = [line for line in node.proc.log_lines if "refusing clients" in line]
        self.assertEqual(len(refusals), 1, node.log)
        self.assertIn("nsp=/vault ", refusals[0] + " ")
        self.assertIn("refused=1", refusals[0])


if __name__ == "__main__":
    unittest.main()
