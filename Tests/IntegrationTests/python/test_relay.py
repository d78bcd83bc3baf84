"""`--relay-sessions`: two sidecast nodes sharing a redis-server behind nginx with plain
round-robin and no affinity. Every polling request and upgrade of a session made by the other
node is relayed to it over Redis, so clients never hear "Session ID unknown"; with relaying off
(the control) they do. Also: a relayed GET and POST by hand, the answer when the owner is gone
or does not answer in time, the close of a WebSocket relayed for an owner that was SIGKILLed
(RelayOwnerKilledTests), and (RelayRecoveryTests) with --recovery-window on --redis-streams
the client's recovery on the node it reaches when its owner was drained.

How long the clients chat through nginx: the classic pub/sub round-robin run (RelayTests)
chats for the issue's minute of continuous traffic (60 s). The same run over `--redis-streams`
(RelayStreamsTests, at --threads 1 and 4) chats for a quarter of that (15 s): its relay is the
same code on a pub/sub connection of its own, so one long run proves the minute and the two
shorter ones prove the streams wiring and both thread counts while keeping CI's time (15 s still
spreads several hundred polling requests over both nodes; each run checks that many were
relayed). SIDECAST_RELAY_TEST_SECONDS shortens (or lengthens) every run alike, for local runs.
"""

import json
import os
import signal
import socket
import subprocess
import shutil
import tempfile
import threading
import time
import unittest

import requests
import socketio
import websocket

from cluster import start_redis
from harness import TIMEOUT, Client, free_port, start_process, wait_until
from test_config import ConfigTestCase
from test_ops import metric, scrape, start_node
from test_streams import wait_stream_nodes
from test_streams_recovery import SESSION_PREFIX, broadcast_ids

NGINX = os.environ.get("SIDECAST_NGINX") or shutil.which("nginx") or (
    "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
CHAT_SECONDS = float(os.environ.get("SIDECAST_RELAY_TEST_SECONDS", "60"))
# The streams variants' share of it (see the module's doc).
STREAMS_CHAT_SECONDS = CHAT_SECONDS / 4
# The owner's first answer must come within this (--requests-timeout); short, for the timeout test.
RELAY_TIMEOUT_MS = 1000
# How soon a WebSocket relayed for a killed owner must close: the relay checks the owner every
# 2 s and closes after two "not listening" answers (NodeRelay.swift), so within about 4-6 s;
# far under the client's own ping timeout (25 s + 20 s by default).
OWNER_GONE_CLOSE_SECONDS = 10
UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}

NGINX_CONF = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    # The upstream last: a request retried on another server lists both, comma-separated.
    log_format relay '$status $request_method $request_uri $upstream_addr';
    access_log {dir}/access.log relay;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    # Plain round-robin: no ip_hash, no cookie, no sticky anything.
    upstream sidecast {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sidecast;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 120s;
            {next_upstream}
        }}
    }}
}}
"""


class Nginx:
    """nginx in front of `nodes`, round-robin, run as the test's own process from a generated
    config in a temporary directory (pid, logs and temp files there too)."""

    # A failed request is the client's to see, not retried on the other node.
    NO_RETRY = "proxy_next_upstream off;"
    # Only a node that refuses the connection (it is gone) is skipped, as a balancer's health
    # check would; nginx retries no request a node has received, and marks the node down.
    SKIP_GONE = "proxy_next_upstream error;"

    def __init__(self, nodes, next_upstream=NO_RETRY):
        if not NGINX:
            raise unittest.SkipTest("nginx is not installed (apt-get install nginx-light)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="sidecast-nginx-")
        servers = "\n".join(f"        server 127.0.0.1:{node.port};" for node in nodes)
        conf = os.path.join(self._dir.name, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self._dir.name, servers=servers, port=self.port, next_upstream=next_upstream))
        self.proc = start_process([NGINX, "-e", os.path.join(self._dir.name, "error.log"),
                                   "-p", self._dir.name, "-c", conf], "nginx")
        wait_until(self._listening, timeout=10, message="nginx to listen")

    def _listening(self):
        if self.proc.poll() is not None:
            with open(os.path.join(self._dir.name, "error.log")) as f:
                raise AssertionError(f"nginx exited with {self.proc.returncode}: {f.read()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def access_log(self):
        """(status, method, uri, upstreams) of every request nginx has logged so far."""
        with open(os.path.join(self._dir.name, "access.log")) as f:
            return [tuple(line.split(" ", 3)) for line in f.read().splitlines()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._dir.cleanup()


class ChatBackend:
    """The backend of one node: a client's "ready" (with its room) joins it to that room and
    is acknowledged after the join; a "chat" goes to the sender's room."""

    def __init__(self, test, node):
        self.backend = node.backend(test)
        self.rooms = {}
        self.errors = []
        threading.Thread(target=self._serve, daemon=True, name="chat-backend").start()

    def _serve(self):
        while True:
            try:
                message = self.backend.take(lambda m: True, timeout=3600)
            except AssertionError:
                return
            try:
                if message["type"] == "event" and message["event"] == "ready":
                    room = message["args"][0]
                    self.rooms[message["sid"]] = room
                    self.backend.join(message["sid"], room)
                    self.backend.ack(message, "joined")
                elif message["type"] == "event" and message["event"] == "chat":
                    self.backend.emit("chat", *message["args"], to=[self.rooms[message["sid"]]])
            except Exception as error:  # noqa: BLE001 - reported by the test
                self.errors.append(f"{message!r}: {error!r}")


class RelayBase(unittest.TestCase):
    relay = True
    sharded = False
    streams = False
    flags = ()
    # --threads of both nodes; None leaves the harness's (SIDECAST_TEST_THREADS or sidecast's).
    threads = None

    def setUp(self):
        self.redis = start_redis(self)
        flags = ["--redis", self.redis.url, "--requests-timeout", RELAY_TIMEOUT_MS]
        if self.relay:
            flags.append("--relay-sessions")
        if self.sharded:
            flags.append("--redis-sharded")
        if self.streams:
            flags.append("--redis-streams")
        if self.threads is not None:
            flags += ["--threads", self.threads]
        flags += self.flags
        self.a = start_node(self, *flags)
        self.b = start_node(self, *flags)
        if self.streams:
            wait_stream_nodes(self.redis, 2)
        elif not self.sharded:
            self.redis.wait_nodes(2)
        if self.relay:
            wait_until(lambda: len(self.relay_channels()) == 2, message="both nodes on their relay channels")

    def relay_channels(self):
        with self.redis.client(socket_timeout=2) as r:
            if self.sharded:
                return r.execute_command("PUBSUB", "SHARDCHANNELS", "socket.io#relay#*")
            return r.pubsub_channels("socket.io#relay#*")

    def start_nginx(self, **options):
        nginx = Nginx([self.a, self.b], **options)
        self.addCleanup(nginx.stop)
        return nginx

    def poll_url(self, base, sid):
        return f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}"

    def handshake(self, base):
        response = requests.get(f"{base}/socket.io/?EIO=4&transport=polling", timeout=TIMEOUT)
        self.assertEqual(response.status_code, 200, response.text)
        return response.text.split('"sid":"', 1)[1].split('"', 1)[0]

    def round_robin(self, seconds):
        """Six python-socketio clients through nginx round-robin (three polling, three
        upgrading) join rooms and chat for `seconds`; every chat reaches its room once, no
        request fails and many polling requests were relayed."""
        nginx = self.start_nginx()
        backends = [ChatBackend(self, self.a), ChatBackend(self, self.b)]
        clients = {}
        for index in range(6):
            name = f"{'poll' if index < 3 else 'upgrade'}{index}"
            transports = ["polling"] if index < 3 else ["polling", "websocket"]
            client = Client(nginx.url, transports=transports)
            self.addCleanup(client.close)
            client.connect()
            client.room = f"room{index % 2}"
            self.assertEqual(client.call("ready", client.room), ("joined",))
            clients[name] = client
        wait_until(lambda: all(c.transport() == "websocket" for n, c in clients.items() if n.startswith("upgrade")),
                   message="the upgrading clients to be on WebSocket")
        sent = {name: 0 for name in clients}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for name, client in clients.items():
                client.emit("chat", name, sent[name])
                sent[name] += 1
            time.sleep(0.1)
        for name, client in clients.items():
            members = [other for other in clients if clients[other].room == client.room]
            expected = {(member, seq) for member in members for seq in range(sent[member])}

            def received(client=client):
                return {tuple(args) for nsp, event, args in list(client.inbox.pending()) if event == "chat"}
            wait_until(lambda: received() >= expected, timeout=TIMEOUT * 2,
                       message=f"{name} to receive every chat of its room")
            self.assertEqual(received(), expected, f"{name} received chats of its room only, each once")
            events = {event for nsp, event, args in client.inbox.pending()}
            self.assertEqual(events, {"connect", "chat"}, f"{name} was never disconnected")
        for backend in backends:
            self.assertEqual(backend.errors, [])
        log = nginx.access_log()
        self.assertEqual([entry for entry in log if entry[0] != "200" and entry[0] != "101"], [],
                         "no request failed (no 400 Session ID unknown)")
        upstreams = {entry[3] for entry in log}
        self.assertEqual(upstreams, {f"127.0.0.1:{self.a.port}", f"127.0.0.1:{self.b.port}"})
        relayed = sum(metric(scrape(node), "sidecast_relay_requests_total", kind=kind)
                      for node in (self.a, self.b) for kind in ("poll", "post"))
        self.assertGreater(relayed, 100, "many polling requests were relayed")
        failures = sum(metric(scrape(node), "sidecast_relay_failures_total", reason=reason)
                       for node in (self.a, self.b) for reason in ("timeout", "owner_gone"))
        self.assertEqual(failures, 0, "no request timed out, no relayed WebSocket was closed for its owner")
        upgrades = sum(metric(scrape(node), "sidecast_relay_requests_total", kind="upgrade") for node in (self.a, self.b))
        print(f"[test_relay] {len(log)} requests through nginx, {relayed:.0f} polling requests and "
              f"{upgrades:.0f} upgrades relayed, {sum(sent.values())} chats sent in {seconds:.0f} s")


    def websocket_on_b(self, sid):
        """Upgrades session `sid` of A to a WebSocket on B (probe, then upgrade)."""
        ws = websocket.create_connection(f"ws://127.0.0.1:{self.b.port}/socket.io/?EIO=4&transport=websocket&sid={sid}",
                                         timeout=TIMEOUT)
        self.addCleanup(ws.close)
        ws.send("2probe")
        self.assertEqual(ws.recv(), "3probe")
        ws.send("5")
        return ws

    def relayed_websocket_closes_when_owner_killed(self):
        """A session made on A, upgraded to a WebSocket on B (its frames relayed to A); A is
        SIGKILLed, so no close comes from it: B sees A off its relay channel and closes the
        WebSocket within seconds, the close engine.io-client answers by reconnecting, rather
        than at the client's ping timeout."""
        ws = self.websocket_on_b(self.handshake(self.a.url))
        # The Socket.IO CONNECT, answered by the owner through the relayed WebSocket.
        ws.send("40")
        frame = ws.recv()
        while frame == "6":
            frame = ws.recv()
        self.assertTrue(frame.startswith('40{"sid":'), frame)
        self.a.kill()
        killed = time.monotonic()
        ws.settimeout(OWNER_GONE_CLOSE_SECONDS)
        closed = False
        while not closed:
            try:
                frame = ws.recv()
            except websocket.WebSocketConnectionClosedException:
                closed = True
            except websocket.WebSocketTimeoutException:
                self.fail(f"the relayed WebSocket still open {OWNER_GONE_CLOSE_SECONDS} s after its owner was killed")
            else:
                closed = frame == ""
                self.assertIn(frame, ("", "2"), "nothing but a close or a ping after the owner is gone")
        elapsed = time.monotonic() - killed
        self.assertLess(elapsed, OWNER_GONE_CLOSE_SECONDS)
        self.assertEqual(metric(scrape(self.b), "sidecast_relay_failures_total", reason="owner_gone"), 1)
        print(f"[test_relay] relayed WebSocket closed {elapsed:.1f} s after its owner was killed")


class RelayTests(RelayBase):
    def test_sid_names_its_node(self):
        sid_a = self.handshake(self.a.url)
        sid_b = self.handshake(self.b.url)
        self.assertEqual(len(sid_a), 15)
        tags = {channel.decode().split("#")[2] for channel in self.relay_channels()}
        self.assertEqual({sid_a[2:6], sid_b[2:6]}, tags, "characters 2-5 of a sid are its node's channel tag")

    def test_relayed_post_and_get(self):
        sid = self.handshake(self.a.url)
        # CONNECT posted to the node that did not make the session, answered by the owner.
        response = requests.post(self.poll_url(self.b.url, sid), data="40", timeout=TIMEOUT)
        self.assertEqual((response.status_code, response.text), (200, "ok"))
        response = requests.get(self.poll_url(self.b.url, sid), timeout=TIMEOUT)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertTrue(response.text.startswith('40{"sid":'), response.text)
        self.assertEqual(response.headers["Content-Type"], "text/plain; charset=UTF-8")
        # A second POST through the owner directly still works: the session is one.
        response = requests.post(self.poll_url(self.a.url, sid), data="41", timeout=TIMEOUT)
        self.assertEqual((response.status_code, response.text), (200, "ok"))
        samples = scrape(self.b)
        self.assertEqual(metric(samples, "sidecast_relay_requests_total", kind="post"), 1)
        self.assertEqual(metric(samples, "sidecast_relay_requests_total", kind="poll"), 1)
        self.assertEqual(metric(samples, "sidecast_relay_latency_seconds_count"), 2)

    def test_relayed_errors_are_the_owners(self):
        sid = self.handshake(self.a.url)
        # The wrong transport for the session: the owner's "Bad request".
        response = requests.get(f"{self.b.url}/socket.io/?EIO=4&transport=websocket&sid={sid}", timeout=TIMEOUT)
        self.assertEqual((response.status_code, response.json()), (400, {"code": 3, "message": "Bad request"}))
        # A body over --max-payload is refused by the receiving node, as by the owner, and the
        # session fails: the owner answers the next poll "Session ID unknown".
        response = requests.post(self.poll_url(self.b.url, sid), data="4" + "x" * 1_000_001, timeout=TIMEOUT)
        self.assertEqual(response.status_code, 413)
        wait_until(lambda: requests.get(self.poll_url(self.a.url, sid), timeout=TIMEOUT).status_code == 400,
                   message="the session to fail on its owner")

    def test_owner_gone_answers_session_id_unknown(self):
        sid = self.handshake(self.a.url)
        self.a.stop()
        started = time.monotonic()
        response = requests.get(self.poll_url(self.b.url, sid), timeout=TIMEOUT)
        self.assertEqual((response.status_code, response.json()), (400, UNKNOWN_SID))
        self.assertLess(time.monotonic() - started, RELAY_TIMEOUT_MS / 1000 + 2)
        self.assertEqual(metric(scrape(self.b), "sidecast_relay_failures_total", reason="timeout"), 1)

    def test_owner_not_answering_in_time_answers_session_id_unknown(self):
        sid = self.handshake(self.a.url)
        self.a.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            response = requests.post(self.poll_url(self.b.url, sid), data="40", timeout=TIMEOUT)
            elapsed = time.monotonic() - started
        finally:
            self.a.proc.send_signal(signal.SIGCONT)
        self.assertEqual((response.status_code, response.json()), (400, UNKNOWN_SID))
        self.assertGreaterEqual(elapsed, RELAY_TIMEOUT_MS / 1000 - 0.1)

    def test_unknown_sid_of_this_node_is_not_relayed(self):
        sid = self.handshake(self.a.url)
        response = requests.get(self.poll_url(self.a.url, sid[:6] + "AAAAAAAAA"), timeout=TIMEOUT)
        self.assertEqual((response.status_code, response.json()), (400, UNKNOWN_SID))
        self.assertEqual(metric(scrape(self.a), "sidecast_relay_requests_total", kind="poll"), 0)

    def test_round_robin_without_sticky_sessions(self):
        self.round_robin(CHAT_SECONDS)


class RelayOwnerKilledTests(RelayBase):
    """Issue 15 item 4: a WebSocket relayed for an owner that dies without draining, at
    --threads 1 (and 4 below)."""

    threads = 1

    def test_relayed_websocket_closes_soon_after_owner_killed(self):
        self.relayed_websocket_closes_when_owner_killed()

    def test_owner_alive_keeps_relayed_websocket_open(self):
        # The control: with its owner alive, the relayed WebSocket outlives several checks.
        ws = self.websocket_on_b(self.handshake(self.a.url))
        time.sleep(OWNER_GONE_CLOSE_SECONDS / 2 + 2)
        ws.send("40")
        frame = ws.recv()
        while frame == "6":
            frame = ws.recv()
        self.assertTrue(frame.startswith('40{"sid":'), frame)
        self.assertEqual(metric(scrape(self.b), "sidecast_relay_failures_total", reason="owner_gone"), 0)


class RelayOwnerKilledFourThreadsTests(RelayOwnerKilledTests):
    threads = 4


class RelayStreamsTests(RelayBase):
    """Both nodes on --redis-streams at --threads 1: the relay bus on its own pub/sub
    connection, the cluster's messages (the chats' room broadcasts) through the stream."""

    streams = True
    threads = 1

    def test_round_robin_without_sticky_sessions(self):
        self.round_robin(STREAMS_CHAT_SECONDS)

    def test_owner_gone_answers_session_id_unknown(self):
        RelayTests.test_owner_gone_answers_session_id_unknown(self)

    def test_the_relays_redis_client_has_gauges_of_its_own(self):
        samples = scrape(self.a)
        self.assertEqual(metric(samples, "sidecast_redis_connected"), 1)
        self.assertEqual(metric(samples, "sidecast_relay_redis_connected"), 1)
        self.assertEqual(metric(samples, "sidecast_relay_redis_outbox_length"), 0)


class RelayStreamsFourThreadsTests(RelayStreamsTests):
    """The same at --threads 4: sessions of every loop relayed, broadcasts through every shard."""

    threads = 4


class PollingClient:
    """A Socket.IO client over raw Engine.IO long-polling (python-socketio has no connection
    state recovery), keeping what socket.io-client's lib/socket.ts keeps to recover (see
    test_recovery.RawClient): the CONNECT reply's pid, the last string argument of an event as
    its offset, and `{pid, offset}` in the CONNECT of a reconnection. A payload's packets are
    joined by the record separator, as engine.io-parser's encodePayload joins them."""

    def __init__(self, base):
        self.base = base
        self.http = requests.Session()
        self.sid = self.pid = self.offset = None
        self.events = []
        response = self.http.get(f"{base}/socket.io/?EIO=4&transport=polling", timeout=TIMEOUT)
        assert response.status_code == 200 and response.text.startswith("0"), (response.status_code, response.text)
        self.engine_sid = json.loads(response.text[1:])["sid"]
        self.url = f"{base}/socket.io/?EIO=4&transport=polling&sid={self.engine_sid}"

    def post(self, packet):
        response = self.http.post(self.url, data=packet.encode(), timeout=TIMEOUT,
                                  headers={"Content-Type": "text/plain;charset=UTF-8"})
        assert (response.status_code, response.text) == (200, "ok"), (response.status_code, response.text)

    def poll(self):
        """One GET: the response when it failed, else its Socket.IO packets (pings answered)."""
        response = self.http.get(self.url, timeout=TIMEOUT * 2)
        if response.status_code != 200:
            return response
        packets = []
        for packet in response.text.split("\x1e"):
            if packet == "2":
                self.post("3")
            else:
                assert packet.startswith("4"), packet
                packets.append(packet[1:])
        return packets

    def connect(self, auth=None):
        """Sends CONNECT; returns the events that came before the reply, and the reply."""
        self.post("40" + (json.dumps(auth) if auth is not None else ""))
        before = []
        while True:
            for packet in self.poll():
                if packet.startswith("0"):
                    reply = json.loads(packet[1:])
                    self.sid, self.pid = reply["sid"], reply.get("pid")
                    return before, reply
                before.append(self._event(packet))

    def read_events(self, count):
        events = []
        while len(events) < count:
            events += [self._event(packet) for packet in self.poll()]
        return events

    def _event(self, packet):
        assert packet.startswith("2"), packet
        data = json.loads(packet[1:])
        if isinstance(data[-1], str) and self.pid:
            self.offset = data[-1]
        self.events.append(data)
        return data


class RelayRecoveryTests(RelayBase):
    """Issue 15's failure behaviour with recovery on: nginx round-robin in front of two
    --redis-streams nodes with --relay-sessions and --recovery-window. The node owning a
    polling session is drained (SIGTERM), which keeps its sessions in Redis; the client's next
    poll reaches the other node, whose relay gets no answer from the owner within
    --requests-timeout: 400 Session ID unknown. The client reconnects, as engine.io-client does
    on that error, through nginx to the remaining node, and is recovered there: same sid, and
    the events it missed (sent by the owner but never polled, and sent after the owner left).
    A client upgraded to WebSocket, on the owner or relayed by the other node, sees its
    WebSocket close and is recovered the same way. A killed owner keeps nothing: the client gets
    the same 400 and connects anew (the control)."""

    streams = True
    flags = ("--recovery-window", "60000")

    def owner_of(self, engine_sid):
        """The node that made the session: characters 2-5 of the sid are its relay tag."""
        return next(node for node in (self.a, self.b) if f"relay_node={engine_sid[2:6]}" in node.log)

    def connected(self):
        """A client connected through nginx, in room "feed", that has received tick 0 (so it
        has an offset); sets the owner and the other node, and their backends."""
        self.nginx = self.start_nginx(next_upstream=Nginx.SKIP_GONE)
        client = PollingClient(self.nginx.url)
        self.owner = self.owner_of(client.engine_sid)
        self.other = self.b if self.owner is self.a else self.a
        self.owner_backend, self.other_backend = self.owner.backend(self), self.other.backend(self)
        self.assertEqual(client.connect(), ([], {"sid": client.sid, "pid": client.pid}))
        self.assertIsNotNone(client.pid, "recovery is on: the CONNECT reply carries a pid")
        self.owner_backend.expect_connect(sid=client.sid)
        self.assertTrue(self.owner_backend.request({"type": "join", "sid": client.sid, "nsp": "/", "rooms": ["feed"]})["ok"])
        self.owner_backend.emit("tick", 0, to=["feed"])
        self.assertEqual(client.read_events(1)[0][:2], ["tick", 0])
        self.assertIsNotNone(client.offset)
        return client

    def recovered_on_the_other_node(self, client, missed_ticks):
        """The reconnection, as engine.io-client makes it: a new Engine.IO session through
        nginx, which can only reach the node that stays, and a CONNECT carrying the pid and the
        last offset. Checks the recovery (same sid and pid, the missed ticks with their entry
        ids in stream order, the room kept) and that the socket is live there."""
        again = PollingClient(self.nginx.url)
        self.assertIs(self.owner_of(again.engine_sid), self.other)
        again.pid, again.offset = client.pid, client.offset
        missed, reply = again.connect({"pid": client.pid, "offset": client.offset})
        self.assertEqual(reply, {"sid": client.sid, "pid": client.pid}, "recovered: same sid and pid")
        self.assertEqual([(event[0], event[1], event[2]) for event in missed],
                         [("tick", n, entry) for entry, n in broadcast_ids(self.redis, "tick") if n in missed_ticks],
                         "the missed ticks, in stream order, with their entry ids")
        message = self.other_backend.expect_connect(sid=client.sid)
        self.assertIs(message["recovered"], True)
        self.assertEqual(message["rooms"], [client.sid, "feed"])
        self.other_backend.emit("tick", 99, to=["feed"])
        self.assertEqual(again.read_events(1)[0][:2], ["tick", 99])

    def assert_session_kept(self, client):
        with self.redis.client(socket_timeout=2) as r:
            self.assertIsNotNone(r.get(SESSION_PREFIX + client.pid), "the drained owner kept the session in Redis")

    def test_owner_drained_client_gets_unknown_sid_then_is_recovered_on_the_other_node(self):
        client = self.connected()
        owner, other, owner_backend, other_backend = self.owner, self.other, self.owner_backend, self.other_backend
        nginx = self.nginx
        # Sent by the owner and never polled: in the owner's buffer when it leaves.
        owner_backend.emit("tick", 1, to=["feed"])
        wait_until(lambda: len(broadcast_ids(self.redis, "tick")) == 2, message="tick 1 in the stream")
        owner.stop()
        self.assert_session_kept(client)
        # Sent while the client is away, by the node that stays.
        other_backend.emit("tick", 2, to=["feed"])
        response = client.poll()
        self.assertEqual((response.status_code, response.json()), (400, UNKNOWN_SID))
        self.assertEqual(metric(scrape(other), "sidecast_relay_failures_total", reason="timeout"), 1)
        self.recovered_on_the_other_node(client, missed_ticks=(1, 2))
        log = nginx.access_log()
        self.assertEqual([entry[:3] for entry in log if entry[0] != "200"],
                         [("400", "GET", f"/socket.io/?EIO=4&transport=polling&sid={client.engine_sid}")],
                         "one failed request: the poll of the lost session")


    def test_owner_killed_client_gets_unknown_sid_and_connects_fresh(self):
        # The control: a node kills leaves no session behind (as in Node, a session is kept
        # when its socket disconnects), so the reconnection after the 400 starts anew.
        client = self.connected()
        self.owner.kill()
        response = client.poll()
        self.assertEqual((response.status_code, response.json()), (400, UNKNOWN_SID))
        again = PollingClient(self.nginx.url)
        missed, reply = again.connect({"pid": client.pid, "offset": client.offset})
        self.assertEqual(missed, [])
        self.assertNotEqual(reply["sid"], client.sid)
        self.assertNotEqual(reply["pid"], client.pid)
        message = self.other_backend.expect_connect(sid=reply["sid"])
        self.assertNotIn("recovered", message)

    def upgraded_then_owner_drained(self, upgrade_on):
        """The client, polling through nginx, upgrades to WebSocket on `upgrade_on` (its frames relayed
        to the owner when that is the other node), gets tick 1 there, and the owner is drained:
        the WebSocket closes, as engine.io-client sees a "transport close". Tick 2 is sent
        while the client is away."""
        client = self.connected()
        target = self.owner if upgrade_on == "owner" else self.other
        # The WebSocket goes to `target` itself: which node nginx would pick depends on requests
        # it has not logged yet (a long-poll in flight), so its round-robin cannot be aimed.
        nginx_origin = self.nginx.url.replace("http://", "", 1)
        ws = websocket.create_connection(
            client.url.replace(nginx_origin, f"127.0.0.1:{target.port}", 1)
            .replace("http://", "ws://", 1).replace("polling", "websocket"),
            timeout=TIMEOUT)
        self.addCleanup(ws.close)
        ws.send("2probe")
        self.assertEqual(ws.recv(), "3probe")
        ws.send("5")
        self.owner_backend.emit("tick", 1, to=["feed"])
        frame = ws.recv()
        while frame in ("6", "2"):
            frame = ws.recv()
        client._event(frame[1:])
        self.assertEqual(client.events[-1][:2], ["tick", 1])
        self.owner.stop()
        self.assert_session_kept(client)
        closed = False
        while not closed:
            try:
                frame = ws.recv()
            except websocket.WebSocketConnectionClosedException:
                closed = True
            else:
                closed = frame == "" or frame == "1"
                self.assertIn(frame, ("", "1", "2"), "nothing but a close or a ping after tick 1")
        self.other_backend.emit("tick", 2, to=["feed"])
        return client

    def test_upgraded_on_the_owner_then_owner_drained_is_recovered_on_the_other_node(self):
        client = self.upgraded_then_owner_drained(upgrade_on="owner")
        self.recovered_on_the_other_node(client, missed_ticks=(2,))

    def test_upgraded_on_the_other_node_then_owner_drained_is_recovered_there(self):
        client = self.upgraded_then_owner_drained(upgrade_on="other")
        self.assertGreater(metric(scrape(self.other), "sidecast_relay_requests_total", kind="upgrade"), 0)
        self.recovered_on_the_other_node(client, missed_ticks=(2,))


class RelayShardedTests(RelayBase):
    """The relay's channels as shard channels, with --redis-sharded (Redis 7)."""

    sharded = True

    def test_relayed_post_and_get(self):
        RelayTests.test_relayed_post_and_get(self)

    def test_owner_gone_answers_session_id_unknown(self):
        RelayTests.test_owner_gone_answers_session_id_unknown(self)

    def test_relayed_websocket_closes_soon_after_owner_killed(self):
        # The owner's shard channel, counted by PUBSUB SHARDNUMSUB.
        self.relayed_websocket_closes_when_owner_killed()


class RelaySettingTests(ConfigTestCase):
    def test_flag_environment_and_file_turn_it_on(self):
        self.assertIs(self.print_config()["relay-sessions"], False)
        redis = ("--redis", "redis://127.0.0.1:1")
        self.assertIs(self.print_config(*redis, "--relay-sessions")["relay-sessions"], True)
        self.assertIs(self.print_config(*redis, env={"SIDECAST_RELAY_SESSIONS": "true"})["relay-sessions"], True)
        path = self.write('relay-sessions = true\nredis = "redis://127.0.0.1:1"\n')
        self.assertIs(self.print_config("--config", path)["relay-sessions"], True)
        # Without Redis there is nothing to relay over: refused at start, naming the setting.
        self.assert_rejected("--relay-sessions", mentions=("relay-sessions", "redis"))
        # With the stream transport too: the relay opens a pub/sub connection of its own.
        config = self.print_config(*redis, "--redis-streams", "--relay-sessions")
        self.assertIs(config["relay-sessions"], True)
        self.assertIs(config["redis-streams"], True)


class RelayOffControlTests(RelayBase):
    """The same cluster and balancer without --relay-sessions: what the relay prevents."""

    relay = False

    def test_round_robin_fails_without_relaying(self):
        nginx = self.start_nginx()
        # By hand: nginx alternates the nodes, so the first poll after the handshake reaches the
        # node that did not make the session.
        sid = self.handshake(nginx.url)
        response = requests.get(self.poll_url(nginx.url, sid), timeout=TIMEOUT)
        self.assertEqual((response.status_code, response.json()), (400, UNKNOWN_SID))
        # A python-socketio client fails to connect: its CONNECT reaches the other node.
        client = socketio.Client(reconnection=False)
        self.addCleanup(client.disconnect)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            client.connect(nginx.url, transports=["polling"], wait_timeout=3)
        self.assertIn("400", {entry[0] for entry in nginx.access_log()})


if __name__ == "__main__":
    unittest.main()
