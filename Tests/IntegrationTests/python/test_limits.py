"""Per-client limits (PROTOCOL.md §11): what one client can make sidecast hold is bounded, each
limit behaves as documented, and each is counted in sidecast_client_limit_exceeded_total."""

import json
import socket
import time
import unittest

import requests

from harness import TIMEOUT, RawPolling, RawSocketIO, eio_url
from test_ops import metric, scrape, start_node

ACKS_OWED = 1000
PENDING_CONNECTS = 16


def limit_hits(node, limit):
    return metric(scrape(node), "sidecast_client_limit_exceeded_total", limit=limit)


class AcksOwedTests(unittest.TestCase):
    def test_unanswered_acks_past_the_limit_forget_the_oldest(self):
        node = start_node(self)
        backend = node.backend(self)
        raw = RawSocketIO(node)
        self.addCleanup(raw.close)
        sid = raw.connect()
        backend.expect_connect(sid=sid)
        extra = 200
        # The client asks for an ack with every event, and the backend answers none.
        for ack in range(ACKS_OWED + extra):
            raw.ws.send(f'42{ack}["ask",{ack}]')
        backend.expect_event("ask", sid=sid, ack=ACKS_OWED + extra - 1)
        self.assertEqual(limit_hits(node, "acks_owed"), extra)
        # The oldest were forgotten: answering them is an unknown ack, and reaches nobody.
        for ack in (0, extra - 1):
            reply = backend.request({"type": "ack", "sid": sid, "nsp": "/", "ack": ack, "args": []})
            self.assertEqual(reply["error"]["code"], "unknown_ack", reply)
        # The connection carries on: the acks still owed are answered as usual.
        for ack in (extra, ACKS_OWED + extra - 1):
            reply = backend.request({"type": "ack", "sid": sid, "nsp": "/", "ack": ack, "args": [ack]})
            self.assertTrue(reply["ok"], reply)
            self.assertEqual(raw.recv_skipping_pings(), f"43{ack}[{ack}]")
        raw.ws.send('42["still-here"]')
        backend.expect_event("still-here", sid=sid)


class PendingConnectsTests(unittest.TestCase):
    def test_connects_past_the_limit_are_refused_and_the_rest_carry_on(self):
        namespaces = [f"/n{i}" for i in range(PENDING_CONNECTS + 2)]
        flags = [arg for nsp in namespaces for arg in ("--authorize", nsp)]
        node = start_node(self, *flags)
        gate = node.backend(self, group="auth", nsps=namespaces, authorize=True)
        raw = RawSocketIO(node)
        self.addCleanup(raw.close)
        for nsp in namespaces[:PENDING_CONNECTS + 1]:
            raw.ws.send(f"40{nsp},")
        requests_seen = [gate.take(lambda m: m.get("type") == "connect" and "req" in m, description="connect with req")
                         for _ in range(PENDING_CONNECTS)]
        self.assertEqual([r["nsp"] for r in requests_seen], namespaces[:PENDING_CONNECTS])
        refused = namespaces[PENDING_CONNECTS]
        answer = raw.recv_skipping_pings()
        self.assertEqual(answer, f'44{refused},{{"message":"too many pending connects"}}')
        gate.assert_no("connect", within=0.3, nsp=refused)
        self.assertEqual(limit_hits(node, "pending_connects"), 1)
        # An answer frees a slot; the client may then ask for another namespace.
        gate.send({"type": "accept", "req": requests_seen[0]["req"]})
        self.assertTrue(raw.recv_skipping_pings().startswith(f"40{namespaces[0]},"))
        raw.ws.send(f"40{refused},")
        request = gate.take(lambda m: m.get("type") == "connect" and "req" in m, description="connect with req")
        self.assertEqual(request["nsp"], refused)
        gate.send({"type": "accept", "req": request["req"]})
        self.assertTrue(raw.recv_skipping_pings().startswith(f"40{refused},"))
        self.assertEqual(limit_hits(node, "pending_connects"), 1)


class PollingPostTests(unittest.TestCase):
    def test_post_before_the_last_was_answered_closes_the_session(self):
        node = start_node(self)
        backend = node.backend(self)
        polling = RawPolling(node)
        sid = polling.connect()
        backend.expect_connect(sid=sid)
        # A POST whose body has not all arrived yet...
        body = b'42["half"]'
        unfinished = socket.create_connection(("127.0.0.1", node.port), timeout=TIMEOUT)
        self.addCleanup(unfinished.close)
        path = eio_url(node, sid=polling.sid)[len(node.url):]
        unfinished.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                           f"Content-Length: {len(body) + 10}\r\n\r\n".encode() + body)
        # On several event loops (SIDECAST_TEST_THREADS) the two connections may be served by
        # different loops, which hand their requests to the session's in whatever order they
        # run; nothing outside shows that the first has arrived, so it gets a head start.
        time.sleep(0.3)
        # ...then another one: refused, and the session is closed as in Node.
        overlap = polling.post('42["overlap"]')
        self.assertEqual(overlap.status_code, 400, overlap.text)
        backend.expect("disconnect", sid=sid, reason="transport error")
        self.assertEqual(limit_hits(node, "polling_posts"), 1)
        after = requests.get(polling.url, timeout=TIMEOUT)
        self.assertEqual((after.status_code, json.loads(after.text)["message"]), (400, "Session ID unknown"))
        backend.assert_no("event", within=0.2)


if __name__ == "__main__":
    unittest.main()
