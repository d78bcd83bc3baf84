"""Operations: the admin listener's /metrics, /healthz and /readyz, and graceful drain.

Metrics are scraped while real python-socketio clients and backends make traffic, so each
assertion checks that a counter or gauge moved by the amount the traffic implies. /readyz is
followed through a drain, a Redis outage and --require-backend. SIGTERM must drain (refuse new
clients at once, close the others after the drain delay) and exit 0 within the drain timeout
while clients fail over to a second node; SIGINT skips the delay.
"""

import json
import re
import signal
import socket
import threading
import time
import unittest

import requests
import socketio
import websocket

from cluster import start_redis
from harness import TIMEOUT, Client, Inbox, eio_url, free_port, start_sidecast, wait_until

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
# Reconnecting to Redis backs off up to 5 s between attempts.
REDIS_RECONNECT_WAIT = 12


def start_node(test, *flags, **kwargs):
    """A sidecast with its admin listener on a free port of its own (`node.admin`)."""
    admin_port = free_port()
    node = start_sidecast(test, "--admin-port", admin_port, *flags, **kwargs)
    node.admin = f"http://127.0.0.1:{admin_port}"
    return node


def scrape(node):
    """The node's /metrics as {(name, frozenset of (label, value)): float}."""
    response = requests.get(node.admin + "/metrics", timeout=TIMEOUT)
    assert response.status_code == 200, response.status_code
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4"), response.headers
    samples = {}
    for line in response.text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(LABEL.findall(match.group(3) or ""))
        samples[(match.group(1), labels)] = float(match.group(4))
    return samples


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def readyz(node):
    """(status code, JSON body) of /readyz."""
    response = requests.get(node.admin + "/readyz", timeout=TIMEOUT)
    return response.status_code, response.json()


def wait_ready(node, ready, reason=None, timeout=TIMEOUT):
    """Waits for /readyz to say `ready` (and, when not ready, to give `reason`)."""
    def check():
        status, body = readyz(node)
        if ready:
            return status == 200 and body == {"ready": True}
        return status == 503 and body["ready"] is False and (reason is None or reason in body["reasons"])
    wait_until(check, timeout=timeout, message=f"/readyz ready={ready} reason={reason!r}")


class FailoverClient:
    """A python-socketio client given several node URLs: when the server disconnects it, it
    connects again, trying the URLs in turn until one takes it (a node that drains answers
    new handshakes with 503)."""

    def __init__(self, urls):
        self.urls = list(urls)
        self.inbox = Inbox("failover client event")
        self.connected_to = None
        self._closing = False
        self._sio = None
        self._connect_somewhere(deadline=time.monotonic() + TIMEOUT)

    def _connect_somewhere(self, deadline):
        while not self._closing:
            for url in self.urls:
                sio = socketio.Client(reconnection=False)
                sio.on("disconnect", lambda *reason, url=url: self._disconnected(url, reason))
                sio.on("*", lambda event, *args: self.inbox.put((event, args)))
                try:
                    sio.connect(url, transports=["websocket"], wait_timeout=TIMEOUT)
                except socketio.exceptions.ConnectionError:
                    continue
                self._sio = sio
                self.connected_to = url
                self.inbox.put(("connected", (url,)))
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"no node of {self.urls} took the client")
            time.sleep(0.1)

    def _disconnected(self, url, reason):
        self.inbox.put(("disconnected", (url,)))
        if not self._closing:
            deadline = time.monotonic() + TIMEOUT
            threading.Thread(target=self._connect_somewhere, args=(deadline,), daemon=True).start()

    def sid(self):
        return self._sio.get_sid()

    def take(self, event, timeout=TIMEOUT):
        return self.inbox.take(lambda item: item[0] == event, timeout, repr(event))[1]

    def close(self):
        self._closing = True
        if self._sio is not None:
            try:
                self._sio.disconnect()
            except Exception:  # already disconnected by the server
                pass


class MetricsTests(unittest.TestCase):
    def test_counters_and_gauges_follow_real_clients(self):
        node = start_node(self)
        backend = node.backend(self)
        before = scrape(node)
        self.assertEqual(metric(before, "sidecast_connected_clients", transport="websocket"), 0)
        self.assertEqual(metric(before, "sidecast_backends", group="default"), 1)

        a = node.client(self, transports=["websocket"])
        backend.expect_connect(sid=a.sid())
        b = node.client(self, transports=["websocket"])
        backend.expect_connect(sid=b.sid())
        connected = scrape(node)
        self.assertEqual(metric(connected, "sidecast_connected_clients", transport="websocket"), 2)
        self.assertEqual(metric(connected, "sidecast_connected_sockets", namespace="/"), 2)
        self.assertEqual(metric(connected, "sidecast_connections_opened_total", transport="websocket")
                         - metric(before, "sidecast_connections_opened_total", transport="websocket"), 2)

        # A client's event: one packet in, of its text form's size.
        a.emit("hello", "world")
        backend.expect_event("hello", sid=a.sid())
        after_event = scrape(node)
        self.assertEqual(metric(after_event, "sidecast_packets_in_total")
                         - metric(connected, "sidecast_packets_in_total"), 1)
        self.assertEqual(metric(after_event, "sidecast_bytes_in_total")
                         - metric(connected, "sidecast_bytes_in_total"), len('42["hello","world"]'))

        # One broadcast to both clients: one backend emit, two deliveries of the same bytes.
        backend.emit("news", 1)
        self.assertEqual(a.wait_for("news"), (1,))
        self.assertEqual(b.wait_for("news"), (1,))
        after_broadcast = scrape(node)
        delta = {name: metric(after_broadcast, name) - metric(after_event, name)
                 for name in ("sidecast_backend_emits_total", "sidecast_deliveries_total",
                              "sidecast_packets_out_total", "sidecast_bytes_out_total")}
        self.assertEqual(delta, {
            "sidecast_backend_emits_total": 1,
            "sidecast_deliveries_total": 2,
            "sidecast_packets_out_total": 2,
            "sidecast_bytes_out_total": 2 * len('42["news",1]'),
        })

        a_sid = a.sid()
        a.close()
        backend.expect("disconnect", sid=a_sid)
        wait_until(lambda: metric(scrape(node), "sidecast_connected_clients", transport="websocket") == 1,
                   message="the websocket gauge to fall to 1")
        closed = scrape(node)
        self.assertEqual(metric(closed, "sidecast_connected_sockets", namespace="/"), 1)
        self.assertEqual(metric(closed, "sidecast_connections_closed_total", reason="transport_close")
                         - metric(before, "sidecast_connections_closed_total", reason="transport_close"), 1)

    def test_healthz_and_unknown_paths(self):
        node = start_node(self)
        response = requests.get(node.admin + "/healthz", timeout=TIMEOUT)
        self.assertEqual((response.status_code, response.json()), (200, {"status": "ok"}))
        self.assertEqual(requests.get(node.admin + "/nothing", timeout=TIMEOUT).status_code, 404)
        # The admin endpoints are not served on the client port.
        self.assertEqual(requests.get(node.url + "/metrics", timeout=TIMEOUT).status_code, 404)

    def test_a_client_that_stops_reading_is_cut_off_while_another_keeps_receiving(self):
        node = start_node(self, "--max-buffered", 65536)
        backend = node.backend(self)
        reader = node.client(self, transports=["websocket"])
        backend.expect_connect(sid=reader.sid())

        # A raw WebSocket client with a tiny receive window that never reads after connecting.
        url = eio_url(node, transport="websocket").replace("http://", "ws://", 1)
        stalled = websocket.create_connection(url, timeout=TIMEOUT,
                                              sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        self.addCleanup(stalled.close)
        self.assertTrue(stalled.recv().startswith("0"))
        stalled.send("40")
        stalled_sid = json.loads(stalled.recv()[2:])["sid"]
        backend.expect_connect(sid=stalled_sid)

        payload = "x" * 32768
        count = 300
        before = scrape(node)
        # In lockstep with the reader, so only the stalled client falls behind.
        for i in range(count):
            backend.emit("bulk", i, payload)
            self.assertEqual(reader.wait_for("bulk")[0], i)
        backend.expect("disconnect", sid=stalled_sid, reason="forced close")
        after = scrape(node)
        self.assertGreaterEqual(metric(after, "sidecast_drops_total", cause="slow_client")
                                - metric(before, "sidecast_drops_total", cause="slow_client"), 1)
        self.assertEqual(metric(after, "sidecast_connected_sockets", namespace="/"), 1)
        # The reader got every packet: more deliveries than the stalled client could have taken.
        self.assertGreaterEqual(metric(after, "sidecast_deliveries_total")
                                - metric(before, "sidecast_deliveries_total"), count)


class ReadinessTests(unittest.TestCase):
    def test_readyz_follows_redis(self):
        redis_server = start_redis(self)
        node = start_node(self, "--redis", redis_server.url)
        backend = node.backend(self)
        wait_ready(node, True)
        self.assertEqual(metric(scrape(node), "sidecast_redis_connected"), 1)

        redis_server.kill()
        wait_ready(node, False, "redis disconnected")
        self.assertEqual(metric(scrape(node), "sidecast_redis_connected"), 0)
        # Liveness does not depend on Redis.
        self.assertEqual(requests.get(node.admin + "/healthz", timeout=TIMEOUT).status_code, 200)
        # A broadcast made meanwhile waits in the outbox.
        self.assertTrue(backend.request({"type": "emit", "nsp": "/", "event": "later", "args": []})["ok"])
        self.assertEqual(metric(scrape(node), "sidecast_redis_outbox_length"), 1)

        redis_server.start()
        wait_ready(node, True, timeout=REDIS_RECONNECT_WAIT)
        self.assertEqual(metric(scrape(node), "sidecast_redis_connected"), 1)
        # The queued publish goes out once other nodes had time to resubscribe; its reply times it.
        wait_until(lambda: metric(scrape(node), "sidecast_redis_outbox_length") == 0,
                   message="the outbox to empty")
        wait_until(lambda: metric(scrape(node), "sidecast_redis_publish_duration_seconds_count") >= 1,
                   message="a timed publish")

    def test_require_backend_waits_for_a_backend_on_every_namespace(self):
        node = start_node(self, "--require-backend", "--backend-grace", 30, namespaces=("/", "/chat"))
        wait_ready(node, False, "no backend for namespace /")
        self.assertIn("no backend for namespace /chat", readyz(node)[1]["reasons"])

        main = node.backend(self, nsps=["/"])
        wait_ready(node, False, "no backend for namespace /chat")
        self.assertNotIn("no backend for namespace /", readyz(node)[1]["reasons"])
        chat = node.backend(self, nsps=["/chat"], group="chat")
        wait_ready(node, True)

        # A group in its grace period has no backend to take new clients; what it owes waits.
        chat.close()
        chat.wait_closed()
        wait_ready(node, False, "no backend for namespace /chat")
        self.assertEqual(metric(scrape(node), "sidecast_backends", group="chat"), 0)
        node.client(self, namespaces=["/chat"])
        wait_until(lambda: metric(scrape(node), "sidecast_backend_queue_depth", group="chat") == 1,
                   message="the chat group's queued connect")
        main.close()


    def test_at_max_connections_new_clients_are_refused_at_once(self):
        """python-socketio, over either transport, sees its connection refused within a second
        at the cap, and gets in once a client left; /readyz says "full" meanwhile."""
        node = start_node(self, "--max-connections", 2)
        self.assertEqual(metric(scrape(node), "sidecast_max_connections"), 2)
        first = node.client(self)
        second = node.client(self)
        wait_ready(node, False, "full")
        self.assertEqual(readyz(node)[1]["reasons"], ["full"])
        for transports in (["websocket"], ["polling"]):
            extra = Client(node.url, transports=transports)
            started = time.monotonic()
            with self.assertRaises(socketio.exceptions.ConnectionError):
                extra.connect()
            self.assertLess(time.monotonic() - started, 1.0, transports)
            extra.close()
        self.assertEqual(metric(scrape(node), "sidecast_connections_refused_total", reason="full"), 2)
        second.close()
        wait_ready(node, True)
        node.client(self)
        first.close()


class DrainTests(unittest.TestCase):
    def failover_client(self, urls):
        client = FailoverClient(urls)
        self.addCleanup(client.close)
        return client

    def test_sigterm_drains_and_clients_fail_over_to_another_node(self):
        delay, timeout = 1.5, 6
        a = start_node(self, "--drain-delay", delay, "--drain-timeout", timeout)
        b = start_node(self)
        backend_a = a.backend(self)
        backend_b = b.backend(self)
        client = self.failover_client([a.url, b.url])
        self.assertEqual(client.take("connected"), (a.url,))
        backend_a.expect_connect(sid=client.sid())
        wait_ready(a, True)

        started = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        wait_ready(a, False, "draining", timeout=1)
        self.assertLess(time.monotonic() - started, 1)
        self.assertEqual(requests.get(a.admin + "/healthz", timeout=TIMEOUT).status_code, 200)
        # New clients are refused with 503 while the connected one stays.
        handshake = requests.get(eio_url(a), timeout=TIMEOUT)
        self.assertEqual(handshake.status_code, 503)

        self.assertEqual(client.take("disconnected", timeout=delay + TIMEOUT), (a.url,))
        self.assertGreaterEqual(time.monotonic() - started, delay - 0.1, "clients closed before the drain delay")
        backend_a.expect("disconnect", reason="server shutting down")
        backend_a.expect("shutdown")
        self.assertEqual(client.take("connected", timeout=TIMEOUT), (b.url,))
        backend_b.expect_connect(sid=client.sid())

        a.proc.wait(timeout=timeout)
        self.assertLess(time.monotonic() - started, timeout, "sidecast outlived its drain timeout")
        self.assertEqual(a.proc.returncode, 0)

    def test_sigint_closes_clients_without_the_delay(self):
        a = start_node(self, "--drain-delay", 20, "--drain-timeout", 30)
        b = start_node(self)
        backend_a = a.backend(self)
        client = self.failover_client([a.url, b.url])
        self.assertEqual(client.take("connected"), (a.url,))
        backend_a.expect_connect(sid=client.sid())

        started = time.monotonic()
        a.proc.send_signal(signal.SIGINT)
        self.assertEqual(client.take("disconnected"), (a.url,))
        backend_a.expect("shutdown")
        a.proc.wait(timeout=TIMEOUT)
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(a.proc.returncode, 0)
        self.assertEqual(client.take("connected"), (b.url,))

    def test_the_drain_timeout_cuts_a_long_delay_short(self):
        a = start_node(self, "--drain-delay", 3, "--drain-timeout", 3)
        client = self.failover_client([a.url])
        started = time.monotonic()
        a.proc.send_signal(signal.SIGTERM)
        self.assertEqual(client.take("disconnected", timeout=TIMEOUT), (a.url,))
        a.proc.wait(timeout=TIMEOUT)
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(a.proc.returncode, 0)

    def test_sigint_during_the_drain_delay_ends_it(self):
        a = start_node(self, "--drain-delay", 20, "--drain-timeout", 30)
        a.proc.send_signal(signal.SIGTERM)
        wait_ready(a, False, "draining")
        started = time.monotonic()
        a.proc.send_signal(signal.SIGINT)
        a.proc.wait(timeout=TIMEOUT)
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(a.proc.returncode, 0)


if __name__ == "__main__":
    unittest.main()
