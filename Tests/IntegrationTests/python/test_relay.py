"""`--relay-sessions`: two sidecast nodes sharing a redis-server behind nginx with plain
round-robin and no affinity. Every polling request and upgrade of a session made by the other
node is relayed to it over Redis, so clients never hear "Session ID unknown"; with relaying off
(the control) they do. Also: a relayed GET and POST by hand, and the answer when the owner is
gone or does not answer in time.

SIDECAST_RELAY_TEST_SECONDS sets how long the clients chat through nginx (default 15 s, a
quarter of the issue's minute, which keeps the suite's time: it still spreads several hundred
polling requests over both nodes; the test checks that many were relayed).
"""

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

from cluster import start_redis
from harness import TIMEOUT, Client, free_port, start_process, wait_until
from test_config import ConfigTestCase
from test_ops import metric, scrape, start_node

NGINX = os.environ.get("SIDECAST_NGINX") or shutil.which("nginx") or (
    "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
CHAT_SECONDS = float(os.environ.get("SIDECAST_RELAY_TEST_SECONDS", "15"))
# The owner's first answer must come within this (--requests-timeout); short, for the timeout test.
RELAY_TIMEOUT_MS = 1000
UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}

NGINX_CONF = """
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    log_format relay '$status $request_method $upstream_addr $request_uri';
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
            # A failed request is the client's to see, not retried on the other node.
            proxy_next_upstream off;
        }}
    }}
}}
"""


class Nginx:
    """nginx in front of `nodes`, round-robin, run as the test's own process from a generated
    config in a temporary directory (pid, logs and temp files there too)."""

    def __init__(self, nodes):
        if not NGINX:
            raise unittest.SkipTest("nginx is not installed (apt-get install nginx-light)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="sidecast-nginx-")
        servers = "\n".join(f"        server 127.0.0.1:{node.port};" for node in nodes)
        conf = os.path.join(self._dir.name, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self._dir.name, servers=servers, port=self.port))
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
        """(status, method, upstream, uri) of every request nginx has logged so far."""
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

    def setUp(self):
        self.redis = start_redis(self)
        flags = ["--redis", self.redis.url, "--requests-timeout", RELAY_TIMEOUT_MS]
        if self.relay:
            flags.append("--relay-sessions")
        if self.sharded:
            flags.append("--redis-sharded")
        self.a = start_node(self, *flags)
        self.b = start_node(self, *flags)
        if not self.sharded:
            self.redis.wait_nodes(2)
        if self.relay:
            wait_until(lambda: len(self.relay_channels()) == 2, message="both nodes on their relay channels")

    def relay_channels(self):
        with self.redis.client(socket_timeout=2) as r:
            if self.sharded:
                return r.execute_command("PUBSUB", "SHARDCHANNELS", "socket.io#relay#*")
            return r.pubsub_channels("socket.io#relay#*")

    def start_nginx(self):
        nginx = Nginx([self.a, self.b])
        self.addCleanup(nginx.stop)
        return nginx

    def poll_url(self, base, sid):
        return f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}"

    def handshake(self, base):
        response = requests.get(f"{base}/socket.io/?EIO=4&transport=polling", timeout=TIMEOUT)
        self.assertEqual(response.status_code, 200, response.text)
        return response.text.split('"sid":"', 1)[1].split('"', 1)[0]


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
        deadline = time.monotonic() + CHAT_SECONDS
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
        upstreams = {entry[2] for entry in log}
        self.assertEqual(upstreams, {f"127.0.0.1:{self.a.port}", f"127.0.0.1:{self.b.port}"})
        relayed = sum(metric(scrape(node), "sidecast_relay_requests_total", kind=kind)
                      for node in (self.a, self.b) for kind in ("poll", "post"))
        self.assertGreater(relayed, 100, "many polling requests were relayed")
        failures = sum(metric(scrape(node), "sidecast_relay_failures_total", reason="timeout") for node in (self.a, self.b))
        self.assertEqual(failures, 0)
        upgrades = sum(metric(scrape(node), "sidecast_relay_requests_total", kind="upgrade") for node in (self.a, self.b))
        print(f"[test_relay] {len(log)} requests through nginx, {relayed:.0f} polling requests and "
              f"{upgrades:.0f} upgrades relayed, {sum(sent.values())} chats sent in {CHAT_SECONDS:.0f} s")


class RelayShardedTests(RelayBase):
    """The relay's channels as shard channels, with --redis-sharded (Redis 7)."""

    sharded = True

    def test_relayed_post_and_get(self):
        RelayTests.test_relayed_post_and_get(self)

    def test_owner_gone_answers_session_id_unknown(self):
        RelayTests.test_owner_gone_answers_session_id_unknown(self)


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
        self.assert_rejected(*redis, "--redis-streams", "--relay-sessions", mentions=("relay-sessions", "redis-streams"))


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
