"""Connection state recovery on one node (`--recovery-window`, PROTOCOL.md §13), spoken with raw
Engine.IO and Socket.IO frames as the official JavaScript client speaks them; a node of a Redis
cluster keeping what other nodes emit; and the official client itself in headless Chromium.

What the client does is taken from socket.io-client's lib/socket.ts: it keeps the `pid` of the
CONNECT reply (`onconnect`), takes the last argument of every event as its offset when it is a
string (`emitEvent`: `_lastOffset`), and on reconnection sends `{pid, offset}` merged into its
auth (`_sendConnectPacket`). What the server does is Node's: socket.io's lib/socket.ts (the
recoverable disconnect reasons, `pid` in the CONNECT reply, missed packets sent before it),
lib/namespace.ts (`_createSocket`, `skipMiddlewares`) and socket.io-adapter's
lib/in-memory-adapter.ts (`SessionAwareAdapter`: only events without ack and not volatile get
an offset; `restoreSession` fails for an unknown pid, an expired session or an offset no longer
kept).
"""

import json
import threading
import time
import unittest

from browser import CLIENT_BUNDLE, ChromiumTestCase
from cluster import start_nodes, start_redis
from harness import TIMEOUT, raw_websocket, start_sidecast, wait_until
from test_ops import metric, scrape, start_node

WINDOW = "60000"


class RawClient:
    """One Socket.IO client over a raw WebSocket, reading frames in the order they arrive."""

    def __init__(self, sidecast):
        self.ws = raw_websocket(sidecast, timeout=TIMEOUT)
        opening = self.ws.recv()
        assert opening.startswith("0"), opening
        self.pid = None
        self.offset = None
        self.sid = None
        self.events = []

    def send_connect(self, auth=None):
        self.ws.send("40" + (json.dumps(auth) if auth is not None else ""))

    def recover(self):
        """Sends the CONNECT a reconnecting JavaScript client sends: its pid and last offset."""
        self.send_connect({"pid": self.pid, "offset": self.offset})

    def read(self):
        """The next Socket.IO packet, answering pings on the way."""
        while True:
            frame = self.ws.recv()
            if frame == "2":
                self.ws.send("3")
                continue
            assert frame.startswith("4"), frame
            return frame[1:]

    def read_event(self):
        packet = self.read()
        assert packet.startswith("2"), packet
        return self._event(json.loads(packet[1:]))

    def _event(self, data):
        if isinstance(data[-1], str) and self.pid:
            self.offset = data[-1]
        self.events.append(data)
        return data

    def read_until_connect(self):
        """Events received before the CONNECT reply, then the reply's data."""
        before = []
        while True:
            packet = self.read()
            if packet.startswith("0"):
                reply = json.loads(packet[1:])
                self.sid = reply["sid"]
                self.pid = reply.get("pid")
                return before, reply
            assert packet.startswith("2"), packet
            before.append(self._event(json.loads(packet[1:])))

    def connect(self, auth=None):
        self.send_connect(auth)
        before, reply = self.read_until_connect()
        assert before == [], before
        return reply

    def drop(self):
        """Closes the transport under the socket, as a lost network does."""
        self.ws.sock.close()


class RecoveryTestCase(unittest.TestCase):
    flags = ("--recovery-window", WINDOW)

    def setUp(self):
        self.start(*self.flags)

    def start(self, *flags):
        self.sidecast = start_node(self, *flags)
        self.backend = self.sidecast.backend(self)

    def client(self):
        client = RawClient(self.sidecast)
        self.addCleanup(client.ws.close)
        return client

    def connected(self, *rooms):
        client = self.client()
        client.connect()
        self.backend.expect_connect(sid=client.sid)
        for room in rooms:
            self.assertTrue(self.backend.request({"type": "join", "sid": client.sid, "nsp": "/", "rooms": [room]})["ok"])
        return client

    def emit_and_read(self, client, *args, **options):
        self.backend.emit("e", *args, **options)
        return client.read_event()

    def dropped(self, client, reason="transport close"):
        client.drop()
        self.backend.expect("disconnect", sid=client.sid, reason=reason)

    def reconnect(self, client):
        """The dropped client's new connection, recovering; returns the events before the
        CONNECT reply and the reply."""
        # The backend's lines before this are carried out before its answer to a later one
        # (PROTOCOL.md §9): what the test emitted is kept before the client comes back.
        self.assertIn("count", self.backend.request({"type": "count", "nsp": "/"}))
        old = client
        client = self.client()
        client.pid, client.offset = old.pid, old.offset
        client.recover()
        missed, reply = client.read_until_connect()
        return client, missed, reply


class RecoveryTests(RecoveryTestCase):
    def test_connect_reply_carries_pid_and_only_kept_events_carry_an_offset(self):
        client = self.connected()
        self.assertRegex(client.pid or "", r"^[A-Za-z0-9_-]{20}$")
        self.assertNotEqual(client.pid, client.sid)
        first = self.emit_and_read(client, 1)
        self.assertEqual(first[:2], ["e", 1])
        self.assertEqual(len(first), 3)
        self.assertIsInstance(first[2], str)
        second = self.emit_and_read(client, 2, to=[client.sid])
        self.assertEqual(second[:2], ["e", 2])
        self.assertNotEqual(second[2], first[2])
        # Volatile: no offset, as Node keeps nothing volatile.
        self.assertEqual(self.emit_and_read(client, 3, volatile=True), ["e", 3])
        # With an ack: no offset either (the callback cannot be replayed).
        self.backend.send({"type": "emit", "nsp": "/", "event": "e", "args": [4], "to": [client.sid],
                           "id": "q", "ack": {"timeout": 5000}})
        packet = client.read()
        self.assertRegex(packet, r'^2\d+\["e",4\]$')

    def test_recovery_restores_sid_rooms_data_and_replays_missed_events_in_order(self):
        client = self.connected("lobby")
        self.assertTrue(self.backend.request({"type": "data", "sid": client.sid, "nsp": "/", "data": {"user": "ann"}})["ok"])
        self.emit_and_read(client, 0, to=["lobby"])
        sid, pid, offset = client.sid, client.pid, client.offset
        self.dropped(client)
        # While the socket is away: commands about it fail, emits to its rooms are kept.
        reply = self.backend.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["x"]})
        self.assertEqual(reply["error"]["code"], "unknown_sid")
        for n in range(1, 6):
            self.backend.emit("e", n, to=["lobby"])
        self.backend.emit("e", 6)  # the whole namespace
        self.backend.emit("e", 7, to=["elsewhere"])  # not for it
        self.backend.emit("e", 8, to=["lobby"], except_=[sid])  # it is excluded
        self.backend.emit("e", 9, to=[sid], volatile=True)  # volatile: never kept
        self.assertTrue(self.backend.request({"type": "count", "nsp": "/"})["ok"])
        client, missed, connect = self.reconnect(client)
        self.assertEqual(connect, {"sid": sid, "pid": pid})
        self.assertEqual([event[1] for event in missed], [1, 2, 3, 4, 5, 6])
        message = self.backend.expect_connect(sid=sid)
        self.assertIs(message["recovered"], True)
        self.assertEqual(message["rooms"], [sid, "lobby"])
        self.assertEqual(message["data"], {"user": "ann"})
        self.assertEqual(message["auth"], {"pid": pid, "offset": offset})
        # Back in its rooms, reachable by sid, live from here on.
        self.assertEqual(self.emit_and_read(client, 10, to=["lobby"])[1], 10)
        self.assertTrue(self.backend.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["late"]})["ok"])
        self.assertEqual(self.emit_and_read(client, 11, to=["late"])[1], 11)
        fetched = self.backend.request({"type": "fetch", "nsp": "/"})["sockets"]
        self.assertEqual([(s["sid"], sorted(s["rooms"]), s["data"]) for s in fetched],
                         [(sid, sorted([sid, "lobby", "late"]), {"user": "ann"})])
        metrics = scrape(self.sidecast)
        self.assertEqual(metric(metrics, "sidecast_recoveries_total", result="recovered"), 1)
        self.assertEqual(metric(metrics, "sidecast_recovery_replayed_packets_total"), 6)

    def test_a_recovered_socket_recovers_again(self):
        client = self.connected("r")
        self.emit_and_read(client, 0, to=["r"])
        for round in range(1, 4):
            sid = client.sid
            self.dropped(client)
            self.backend.emit("e", round, to=["r"])
            client, missed, connect = self.reconnect(client)
            self.assertEqual(connect["sid"], sid)
            self.assertEqual([event[1] for event in missed], [round])
            self.backend.expect_connect(sid=sid, recovered=True)

    def test_a_client_that_had_no_event_yet_cannot_recover(self):
        # The JavaScript client sends `offset` only once it has one; Node needs both strings.
        client = self.connected("r")
        self.dropped(client)
        fresh = self.client()
        fresh.send_connect({"pid": client.pid})
        _, reply = fresh.read_until_connect()
        self.assertNotEqual(reply["sid"], client.sid)
        self.assertNotIn("recovered", self.backend.expect_connect(sid=reply["sid"]))

    def test_unknown_pid_and_unknown_offset_connect_fresh(self):
        client = self.connected("r")
        self.emit_and_read(client, 0, to=["r"])
        self.dropped(client)
        for auth in ({"pid": "A" * 20, "offset": client.offset}, {"pid": client.pid, "offset": "nope"}):
            fresh = self.client()
            fresh.send_connect(auth)
            missed, reply = fresh.read_until_connect()
            self.assertEqual(missed, [])
            self.assertNotEqual(reply["sid"], client.sid)
            self.assertNotEqual(reply["pid"], client.pid)
            message = self.backend.expect_connect(sid=reply["sid"])
            self.assertNotIn("recovered", message)
            self.assertNotIn("rooms", message)
        # Neither attempt took the session: the right pid and offset still recover it.
        _, _, reply = self.reconnect(client)
        self.assertEqual(reply["sid"], client.sid)
        metrics = scrape(self.sidecast)
        self.assertEqual(metric(metrics, "sidecast_recoveries_total", result="unknown_session"), 1)
        self.assertEqual(metric(metrics, "sidecast_recoveries_total", result="offset_not_kept"), 1)

    def test_a_session_is_restored_once(self):
        client = self.connected()
        self.emit_and_read(client, 0)
        self.dropped(client)
        _, _, first = self.reconnect(client)
        self.assertEqual(first["sid"], client.sid)
        _, _, second = self.reconnect(client)
        self.assertNotEqual(second["sid"], client.sid)

    def test_leaving_on_purpose_keeps_nothing(self):
        client = self.connected()
        self.emit_and_read(client, 0)
        client.ws.send("41")  # client namespace disconnect
        self.backend.expect("disconnect", sid=client.sid, reason="client namespace disconnect")
        fresh = self.client()
        fresh.send_connect({"pid": client.pid, "offset": client.offset})
        _, reply = fresh.read_until_connect()
        self.assertNotEqual(reply["sid"], client.sid)
        other = self.connected()
        self.emit_and_read(other, 1)
        self.backend.disconnect(other.sid)
        self.assertEqual(other.read(), "1")
        self.backend.expect("disconnect", sid=other.sid, reason="server namespace disconnect")
        again = self.client()
        again.send_connect({"pid": other.pid, "offset": other.offset})
        _, reply = again.read_until_connect()
        self.assertNotEqual(reply["sid"], other.sid)

    def test_a_thousand_clients_drop_and_recover_at_once(self):
        count, before, away = 1000, 3, 5
        clients = [self.connected() for _ in range(count)]
        sids = [client.sid for client in clients]
        joined = self.backend.request({"type": "join", "nsp": "/", "in": [], "rooms": ["all"]})
        self.assertTrue(joined["ok"], joined)
        for index in range(0, count, 2):
            self.backend.join(sids[index], "even")
        self.assertEqual(self.backend.request({"type": "count", "nsp": "/", "in": ["even"]})["count"], count // 2)
        for n in range(before):
            self.backend.emit("e", n, to=["all"])
        for client in clients:
            self.assertEqual([client.read_event()[1] for _ in range(before)], list(range(before)))
        for client in clients:
            client.drop()
        disconnected = {self.backend.expect("disconnect", timeout=30, reason="transport close")["sid"] for _ in range(count)}
        self.assertEqual(disconnected, set(sids))
        for n in range(before, before + away):
            self.backend.emit("e", n, to=["all"])
            self.backend.emit("odd-free", n, to=["even"])
        # Every client reconnects before any reads: they recover at once.
        recovering = []
        for old in clients:
            client = self.client()
            client.pid, client.offset = old.pid, old.offset
            client.recover()
            recovering.append(client)
        replayed = 0
        for index, client in enumerate(recovering):
            missed, reply = client.read_until_connect()
            self.assertEqual(reply, {"sid": sids[index], "pid": clients[index].pid})
            expected = [["e", n] for n in range(before, before + away)]
            if index % 2 == 0:
                expected = [item for n in range(before, before + away) for item in (["e", n], ["odd-free", n])]
            self.assertEqual([event[:2] for event in missed], expected)
            self.assertEqual(len({event[2] for event in missed}), len(missed))
            replayed += len(missed)
        self.assertEqual(replayed, count * away + count // 2 * away)
        connects = {}
        for _ in range(count):
            message = self.backend.expect("connect", timeout=30)
            connects[message["sid"]] = message
        self.assertEqual(set(connects), set(sids))
        for index, sid in enumerate(sids):
            self.assertIs(connects[sid]["recovered"], True)
            rooms = [sid, "all", "even"] if index % 2 == 0 else [sid, "all"]
            self.assertEqual(connects[sid]["rooms"], rooms)
        # Live again, each exactly once, and reachable by sid on whatever loop took it back.
        self.backend.emit("e", "live", to=["all"])
        for client in recovering:
            self.assertEqual(client.read_event()[:2], ["e", "live"])
        for sid in sids[:50]:
            self.assertTrue(self.backend.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["late"]})["ok"])
        self.backend.emit("e", "late", to=["late"])
        for client in recovering[:50]:
            self.assertEqual(client.read_event()[:2], ["e", "late"])
        metrics = scrape(self.sidecast)
        self.assertEqual(metric(metrics, "sidecast_recoveries_total", result="recovered"), count)
        self.assertEqual(metric(metrics, "sidecast_recovery_replayed_packets_total"), replayed)
        self.assertEqual(metric(metrics, "sidecast_recovery_sessions"), 0)


class BoundsTests(RecoveryTestCase):
    flags = ("--recovery-window", WINDOW, "--recovery-max-packets", "5")

    def test_an_offset_that_fell_out_connects_fresh_and_is_counted(self):
        client = self.connected()
        self.emit_and_read(client, 0)
        self.dropped(client)
        for n in range(1, 6):
            self.backend.emit("e", n)
        self.assertTrue(self.backend.request({"type": "count", "nsp": "/"})["ok"])
        _, missed, reply = self.reconnect(client)
        self.assertEqual(missed, [])
        self.assertNotEqual(reply["sid"], client.sid)
        metrics = scrape(self.sidecast)
        self.assertEqual(metric(metrics, "sidecast_recovery_evicted_packets_total", cause="size"), 1)
        self.assertEqual(metric(metrics, "sidecast_recovery_packets"), 5)
        self.assertEqual(metric(metrics, "sidecast_recoveries_total", result="offset_not_kept"), 1)


class ReplayLimitTests(RecoveryTestCase):
    flags = ("--recovery-window", WINDOW, "--max-buffered", "4000")

    def test_a_client_that_missed_more_than_max_buffered_connects_fresh(self):
        client = self.connected()
        self.emit_and_read(client, 0)
        self.dropped(client)
        for n in range(40):
            self.backend.emit("e", n, "x" * 100)
        fresh, missed, reply = self.reconnect(client)
        self.assertEqual(missed, [], "nothing of a replay that does not fit is sent")
        self.assertNotEqual(reply["sid"], client.sid)
        self.assertNotIn("recovered", self.backend.expect_connect(sid=reply["sid"]))
        self.assertEqual(metric(scrape(self.sidecast), "sidecast_recoveries_total", result="replay_too_large"), 1)
        # A replay that fits still recovers.
        self.emit_and_read(fresh, 41)
        self.dropped(fresh)
        for n in range(10):
            self.backend.emit("e", n, "x" * 100)
        _, missed, again = self.reconnect(fresh)
        self.assertEqual(again["sid"], reply["sid"])
        self.assertEqual([event[1] for event in missed], list(range(10)))


class WindowTests(RecoveryTestCase):
    flags = ("--recovery-window", "300")

    def test_after_the_window_the_client_connects_fresh(self):
        client = self.connected()
        self.emit_and_read(client, 0)
        self.dropped(client)
        time.sleep(0.6)
        _, missed, reply = self.reconnect(client)
        self.assertEqual(missed, [])
        self.assertNotEqual(reply["sid"], client.sid)
        self.assertNotIn("recovered", self.backend.expect_connect(sid=reply["sid"]))
        metrics = scrape(self.sidecast)
        expired = (metric(metrics, "sidecast_recoveries_total", result="expired") or 0) + \
            (metric(metrics, "sidecast_recoveries_total", result="unknown_session") or 0)
        self.assertEqual(expired, 1)
        wait_until(lambda: metric(scrape(self.sidecast), "sidecast_recovery_packets") == 0,
                   message="the kept event to fall out of the window")
        self.assertGreaterEqual(metric(scrape(self.sidecast), "sidecast_recovery_evicted_packets_total", cause="window"), 1)


class RedisTests(unittest.TestCase):
    """Two nodes on one redis-server (classic pub/sub), recovery on both: what another node
    emits reaches this node's clients over Redis and is kept for them like a local emit."""

    def test_events_from_another_node_are_replayed_and_offsets_stay_on_their_node(self):
        redis = start_redis(self)
        a, b = start_nodes(self, redis, 2, "--recovery-window", WINDOW)
        backend_a, backend_b = a.backend(self), b.backend(self)
        client, witness = RawClient(a), RawClient(a)
        for each in (client, witness):
            self.addCleanup(each.ws.close)
            each.connect()
            backend_a.expect_connect(sid=each.sid)
            self.assertTrue(backend_a.request({"type": "join", "sid": each.sid, "nsp": "/", "rooms": ["r"]})["ok"])
        backend_b.emit("e", 0, to=["r"])
        self.assertEqual(witness.read_event()[:2], ["e", 0])
        first = client.read_event()
        self.assertEqual(first[:2], ["e", 0])
        self.assertEqual(len(first), 3, "node A appends its own offset to what node B sent")
        client.drop()
        backend_a.expect("disconnect", sid=client.sid)
        backend_b.emit("e", 1, to=["r"])
        backend_a.emit("e", 2, to=["r"])
        # Node A has both once its other client in the room got both.
        self.assertEqual(sorted(witness.read_event()[1] for _ in range(2)), [1, 2])
        again = RawClient(a)
        self.addCleanup(again.ws.close)
        again.pid, again.offset = client.pid, client.offset
        again.recover()
        missed, reply = again.read_until_connect()
        self.assertEqual(reply["sid"], client.sid)
        self.assertEqual(sorted(event[1] for event in missed), [1, 2])
        # Node B sees the recovered socket in its room again.
        self.assertEqual(backend_b.request({"type": "count", "nsp": "/", "in": ["r"]})["count"], 2)


class RecoveryOffTests(RecoveryTestCase):
    flags = ()

    def test_no_pid_no_offset_and_a_drop_loses_the_socket(self):
        client = self.connected("r")
        self.assertIsNone(client.pid)
        self.assertEqual(self.emit_and_read(client, 1, to=["r"]), ["e", 1])
        self.dropped(client)
        self.backend.emit("e", 2, to=["r"])
        fresh = self.client()
        fresh.send_connect({"pid": "whatever", "offset": "x"})
        missed, reply = fresh.read_until_connect()
        self.assertEqual(missed, [])
        self.assertEqual(list(reply), ["sid"])
        self.assertNotEqual(reply["sid"], client.sid)


class AuthorizingBackendCase(RecoveryTestCase):
    """A gate backend authorizes "/"; every client is accepted with data {"user": "ann"}."""

    def setUp(self):
        super().setUp()
        self.gate = self.sidecast.backend(self, group="auth", authorize=True)

    def question(self):
        return self.gate.take(lambda m: m.get("type") == "connect" and "req" in m, description="connect with req")

    def authorized(self):
        client = self.client()
        client.send_connect({"token": "t"})
        question = self.question()
        self.gate.send({"type": "accept", "req": question["req"], "data": {"user": "ann"}})
        client.read_until_connect()
        self.backend.expect_connect(sid=client.sid)
        return client

    def assert_not_asked(self, within=0.3):
        self.gate.inbox.assert_nothing(lambda m: m.get("type") == "connect" and "req" in m, within,
                                       "connect with req")


class AuthorizationTests(AuthorizingBackendCase):
    flags = ("--recovery-window", WINDOW, "--authorize", "/")

    def test_a_recovering_client_is_asked_about_again_with_its_old_sid(self):
        client = self.authorized()
        self.emit_and_read(client, 0)
        self.dropped(client)
        self.backend.emit("e", 1)
        self.assertTrue(self.backend.request({"type": "count", "nsp": "/"})["ok"])
        again = self.client()
        again.pid, again.offset = client.pid, client.offset
        again.send_connect({"token": "t", "pid": client.pid, "offset": client.offset})
        question = self.question()
        self.assertEqual(question["sid"], client.sid)
        self.assertIs(question["recovered"], True)
        self.backend.emit("e", 2)  # sent while the backend decides: still replayed
        self.assertTrue(self.backend.request({"type": "count", "nsp": "/"})["ok"])
        self.gate.send({"type": "accept", "req": question["req"]})
        missed, reply = again.read_until_connect()
        self.assertEqual(reply["sid"], client.sid)
        self.assertEqual([event[1] for event in missed], [1, 2])
        message = self.backend.expect_connect(sid=client.sid)
        self.assertIs(message["recovered"], True)
        self.assertEqual(message["data"], {"user": "ann"})

    def test_a_rejected_recovery_keeps_the_session_for_a_later_try(self):
        client = self.authorized()
        self.emit_and_read(client, 0)
        self.dropped(client)
        again = self.client()
        again.send_connect({"pid": client.pid, "offset": client.offset})
        self.gate.send({"type": "reject", "req": self.question()["req"], "message": "no"})
        self.assertEqual(json.loads(again.read()[1:]), {"message": "no"})
        third = self.client()
        third.send_connect({"pid": client.pid, "offset": client.offset})
        question = self.question()
        self.assertEqual(question["sid"], client.sid)
        self.gate.send({"type": "accept", "req": question["req"]})
        _, reply = third.read_until_connect()
        self.assertEqual(reply["sid"], client.sid)


class SkipAuthorizationTests(AuthorizingBackendCase):
    flags = ("--recovery-window", WINDOW, "--authorize", "/", "--recovery-skip-authorization")

    def test_a_recovered_client_is_not_asked_about_again(self):
        client = self.authorized()
        self.emit_and_read(client, 0)
        self.dropped(client)
        self.backend.emit("e", 1)
        client, missed, reply = self.reconnect(client)
        self.assertEqual([event[1] for event in missed], [1])
        message = self.backend.expect_connect(sid=reply["sid"], recovered=True)
        self.assertEqual(message["data"], {"user": "ann"})
        self.assert_not_asked()
        # A client that cannot recover is asked about as always.
        fresh = self.client()
        fresh.send_connect({"pid": "B" * 20, "offset": "x"})
        self.gate.send({"type": "reject", "req": self.question()["req"], "message": "no"})
        self.assertEqual(json.loads(fresh.read()[1:]), {"message": "no"})


class BrowserTests(ChromiumTestCase):
    """The official JavaScript client (the bundle examples/web fetches) in headless Chromium: a
    backend emits numbered events to a room at about 100 a second while the page's WebSocket is
    closed under the client, which reconnects by itself (socket.io-client's Manager)."""

    def run_feed(self, *flags):
        """The events the page got, its connects ({id, recovered}), and the backend's connects."""
        sidecast = start_sidecast(self, *flags)
        backend = sidecast.backend(self)
        driver = self.start_chromium()
        driver.set_script_timeout(TIMEOUT * 3)
        # A page of sidecast's own origin (the Engine.IO open packet), the client loaded into it.
        driver.get(f"{sidecast.url}/socket.io/?EIO=4&transport=polling")
        with open(CLIENT_BUNDLE) as file:
            driver.execute_script(file.read())
        first = driver.execute_async_script("""
            const [url, done] = arguments;
            window.got = [];
            window.connects = [];
            window.socket = io(url, { transports: ["websocket"], reconnectionDelay: 200, reconnectionDelayMax: 400 });
            socket.on("n", (n) => got.push(n));
            socket.on("connect", () => {
                connects.push({ id: socket.id, recovered: socket.recovered });
                if (connects.length === 1) done(socket.id);
            });
        """, sidecast.url)
        connects = [backend.expect_connect(sid=first)]
        self.assertTrue(backend.request({"type": "join", "sid": first, "nsp": "/", "rooms": ["feed"]})["ok"])
        total = 300
        stop = threading.Event()

        def feed():
            for n in range(total):
                if stop.is_set():
                    return
                backend.emit("n", n, to=["feed"])
                time.sleep(0.01)

        emitter = threading.Thread(target=feed, daemon=True)
        emitter.start()
        self.addCleanup(stop.set)
        wait_until(lambda: driver.execute_script("return got.length") >= 50, message="50 events in the page")
        driver.execute_script("socket.io.engine.transport.ws.close()")
        backend.expect("disconnect", sid=first, reason="transport close")
        connects.append(backend.expect("connect", timeout=TIMEOUT * 2))
        if not connects[1].get("recovered"):
            # The control: a new socket, which the application puts back in its room.
            self.assertTrue(backend.request({"type": "join", "sid": connects[1]["sid"], "nsp": "/", "rooms": ["feed"]})["ok"])
        emitter.join(TIMEOUT * 3)
        backend.emit("n", "end", to=["feed"])
        wait_until(lambda: driver.execute_script("return got.includes('end')"), message="the last event in the page")
        got = driver.execute_script("return got")
        return got[:-1], driver.execute_script("return connects"), connects

    def test_the_page_misses_nothing_and_keeps_its_socket(self):
        got, page, backend = self.run_feed("--recovery-window", WINDOW)
        self.assertEqual(got, list(range(300)), "no gap, no duplicate")
        self.assertEqual(len(page), 2)
        self.assertEqual(page[1]["id"], page[0]["id"])
        self.assertEqual([connect["recovered"] for connect in page], [False, True])
        self.assertIs(backend[1]["recovered"], True)
        self.assertEqual(backend[1]["sid"], page[0]["id"])
        self.assertEqual(backend[1]["rooms"], [page[0]["id"], "feed"])

    def test_without_recovery_the_page_loses_what_was_sent_while_it_was_away(self):
        got, page, backend = self.run_feed()
        self.assertEqual(len(page), 2)
        self.assertNotEqual(page[1]["id"], page[0]["id"])
        # socket.io-client sets `recovered` to `pid && this._pid === pid`: no pid, not true.
        self.assertEqual([bool(connect["recovered"]) for connect in page], [False, False])
        self.assertNotIn("recovered", backend[1])
        self.assertEqual(got, sorted(set(got)), "in order, no duplicate")
        self.assertLess(len(got), 300, "the events sent while it reconnected are lost")
        self.assertEqual(got[-1], 299)


if __name__ == "__main__":
    unittest.main()
