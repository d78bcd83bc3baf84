"""Connection state recovery across nodes on `--redis-streams` (PROTOCOL.md §13), as
`@socket.io/redis-streams-adapter` does it in its lib/adapter.ts: a kept broadcast's offset is
its stream entry id (`addOffsetIfNecessary` in socket.io-adapter's lib/cluster-adapter.ts, fed
the id `XADD` returned or the entry's id as read); `persistSession` writes
`SET sio:session:<pid> <base64 of the msgpack of {sid, pid, rooms, data}> PX <window>` (lib/util.ts
`SET`); `restoreSession` rejects an offset that is not `<digits>-<digits>`, takes the session
(`GETDEL`, `MULTI GET DEL` in lib/util.ts), checks the offset is still in the stream
(`XRANGE offset offset`) and replays the BROADCAST entries of the namespace after it that
`shouldIncludePacket` lets through, each with its entry id appended (the adapter's fix for
socket.io#5419, its pull request #40).

Clients speak raw Engine.IO and Socket.IO frames as socket.io-client's lib/socket.ts does (see
test_recovery.py): the last string argument of an event is the offset, `{pid, offset}` goes in
the CONNECT of a reconnection; one test runs the official JavaScript client in headless
Chromium behind a small TCP balancer. The Node side of a mixed cluster is node_streams.py's
stand-in, whose `persist_session` and `restore_session` follow lib/adapter.ts.
"""

import base64
import json
import re
import socket
import threading
import time
import unittest

import msgpack

from browser import CLIENT_BUNDLE, ChromiumTestCase
from cluster import start_redis
from harness import TIMEOUT, b64, free_port, start_sidecast, wait_until
from node_streams import NodeStreamsPeer
from test_ops import metric, scrape, start_node
from test_recovery import RawClient
from test_streams import SEQUENCE, STREAM, stream_entries, start_stream_nodes

WINDOW = "60000"
OFFSET = re.compile(r"^\d+-\d+$")
SESSION_PREFIX = "sio:session:"


def broadcast_ids(redis_server, event):
    """The ids of the BROADCAST entries of `event`, in stream order, with their first argument."""
    found = []
    for entry_id, fields in stream_entries(redis_server):
        if fields[b"type"] != b"3":
            continue
        data = NodeStreamsPeer.decode({k.decode(): v.decode() for k, v in fields.items()})["data"]
        if data["packet"]["data"][0] == event:
            found.append((entry_id.decode(), data["packet"]["data"][1]))
    return found


class StreamsRecoveryCase(unittest.TestCase):
    window = WINDOW

    def setUp(self):
        self.redis = start_redis(self)
        self.a, self.b = start_stream_nodes(self, self.redis, 2, "--recovery-window", self.window)
        self.backend_a = self.a.backend(self)
        self.backend_b = self.b.backend(self)

    def client(self, node):
        client = RawClient(node)
        self.addCleanup(client.ws.close)
        return client

    def connected(self, node, backend, *rooms):
        client = self.client(node)
        client.connect()
        backend.expect_connect(sid=client.sid)
        for room in rooms:
            self.assertTrue(backend.request({"type": "join", "sid": client.sid, "nsp": "/", "rooms": [room]})["ok"])
        return client

    def stored_session(self, pid):
        with self.redis.client(socket_timeout=2) as r:
            return r.get(SESSION_PREFIX + pid)

    def wait_session_stored(self, pid):
        wait_until(lambda: self.stored_session(pid) is not None, message="the session in Redis")

    def recover_on(self, node, client):
        """A new connection to `node` recovering `client`: (client, missed events, CONNECT data)."""
        again = self.client(node)
        again.pid, again.offset = client.pid, client.offset
        again.recover()
        missed, connect = again.read_until_connect()
        return again, missed, connect


class CrossNodeTests(StreamsRecoveryCase):
    def test_offsets_are_stream_entry_ids_and_a_session_comes_back_on_the_other_node(self):
        client = self.connected(self.a, self.backend_a, "lobby")
        self.assertTrue(self.backend_a.request({"type": "data", "sid": client.sid, "nsp": "/", "data": {"user": "ann"}})["ok"])
        # From the other node, then from its own: each event carries the id of its entry.
        self.backend_b.emit("e", 0, to=["lobby"])
        received = [client.read_event()]
        self.backend_a.emit("e", 1, to=["lobby"])
        received.append(client.read_event())
        self.assertEqual([event[:2] for event in received], [["e", 0], ["e", 1]])
        self.assertEqual([event[2] for event in received], [entry for entry, _ in broadcast_ids(self.redis, "e")])
        for event in received:
            self.assertRegex(event[2], OFFSET)
        sid, pid, offset = client.sid, client.pid, client.offset
        client.drop()
        self.backend_a.expect("disconnect", sid=sid, reason="transport close")
        self.wait_session_stored(pid)
        stored = msgpack.unpackb(base64.b64decode(self.stored_session(pid)), raw=False)
        self.assertEqual(stored, {"sid": sid, "pid": pid, "rooms": [sid, "lobby"], "data": {"user": "ann"}})
        with self.redis.client(socket_timeout=2) as r:
            ttl = r.pttl(SESSION_PREFIX + pid)
        self.assertTrue(0 < ttl <= int(WINDOW), ttl)
        # While it is away, from both nodes: only what was for it is replayed.
        self.backend_b.emit("e", 2, to=["lobby"])
        self.backend_a.emit("e", 3, to=["lobby"])
        self.backend_b.emit("e", 4)
        self.backend_a.emit("e", 5, to=["elsewhere"])
        self.backend_b.emit("e", 6, to=["lobby"], except_=[sid])
        self.backend_a.emit("e", 7, to=["lobby"], volatile=True)
        wait_until(lambda: len(broadcast_ids(self.redis, "e")) == 8, message="every emit in the stream")
        client, missed, connect = self.recover_on(self.b, client)
        self.assertEqual(connect, {"sid": sid, "pid": pid})
        # In stream order (the two nodes' emits may land either way round), with their ids.
        self.assertEqual([(event[1], event[2]) for event in missed],
                         [(n, entry) for entry, n in broadcast_ids(self.redis, "e") if n in (2, 3, 4)])
        ids = dict((n, entry) for entry, n in broadcast_ids(self.redis, "e"))
        message = self.backend_b.expect_connect(sid=sid)
        self.assertIs(message["recovered"], True)
        self.assertEqual(message["rooms"], [sid, "lobby"])
        self.assertEqual(message["data"], {"user": "ann"})
        self.assertIsNone(self.stored_session(pid), "a restored session is taken out (GETDEL)")
        # Live on B from here on, from either node, by room and by sid.
        self.backend_a.emit("e", 8, to=["lobby"])
        self.assertEqual(client.read_event()[:2], ["e", 8])
        self.assertTrue(self.backend_b.request({"type": "join", "sid": sid, "nsp": "/", "rooms": ["late"]})["ok"])
        self.backend_a.emit("e", 9, to=["late"])
        self.assertEqual(client.read_event()[:2], ["e", 9])
        # It drops again: recovered from the offset the replay and live events gave it.
        self.assertEqual(client.offset, ids.get(9) or broadcast_ids(self.redis, "e")[-1][0])
        client.drop()
        self.backend_b.expect("disconnect", sid=sid, reason="transport close")
        self.wait_session_stored(pid)
        self.backend_b.emit("e", 10, to=["late"])
        client, missed, connect = self.recover_on(self.a, client)
        self.assertEqual(connect, {"sid": sid, "pid": pid})
        self.assertEqual([event[:2] for event in missed], [["e", 10]])

    def test_a_missed_binary_event_is_replayed_with_its_attachment_and_offset(self):
        client = self.connected(self.a, self.backend_a, "lobby")
        self.backend_a.emit("e", 0, to=["lobby"])
        client.read_event()
        client.drop()
        self.wait_session_stored(client.pid)
        self.backend_b.emit("blob", b64(b"\x00\x01"), to=["lobby"])
        wait_until(lambda: any(f[b"type"] == b"3" and f[b"data"][:1] != b"{" for _, f in stream_entries(self.redis)),
                   message="the binary broadcast in the stream (base64 msgpack)")
        entry = stream_entries(self.redis)[-1][0].decode()
        again = self.client(self.b)
        again.ws.send("40" + json.dumps({"pid": client.pid, "offset": client.offset}))
        frames = []
        while not (frames and isinstance(frames[-1], str) and frames[-1].startswith("40")):
            frame = again.ws.recv()
            if frame == "2":
                again.ws.send("3")
            else:
                frames.append(frame)
        self.assertEqual(frames[:2], ['451-["blob",{"_placeholder":true,"num":0},"%s"]' % entry, b"\x00\x01"])
        self.assertEqual(json.loads(frames[2][2:]), {"sid": client.sid, "pid": client.pid})

    def test_unknown_taken_or_unreadable_sessions_and_offsets_connect_fresh(self):
        client = self.connected(self.a, self.backend_a, "r")
        self.backend_a.emit("e", 0, to=["r"])
        client.read_event()
        sid, pid, offset = client.sid, client.pid, client.offset
        client.drop()
        self.wait_session_stored(pid)
        cases = [
            ("unknown pid", {"pid": "nobody", "offset": offset}),
            ("offset not an entry id", {"pid": pid, "offset": "abc"}),
            ("offset not in the stream", {"pid": pid, "offset": "1-1"}),
        ]
        for what, auth in cases:
            with self.subTest(what):
                fresh = self.client(self.b)
                reply = fresh.connect(auth)
                self.assertNotEqual(reply["sid"], sid)
                self.backend_b.expect_connect(sid=reply["sid"])
                fresh.ws.close()
        # A key that holds no session is no session.
        with self.redis.client(socket_timeout=2) as r:
            r.set(SESSION_PREFIX + "junk", "not base64 msgpack!", px=60000)
        fresh = self.client(self.b)
        self.assertNotEqual(fresh.connect({"pid": "junk", "offset": offset})["sid"], sid)
        # The look-up before the authorization found nothing to restore and took nothing: the
        # right offset still recovers.
        again, missed, connect = self.recover_on(self.b, client)
        self.assertEqual((missed, connect), ([], {"sid": sid, "pid": pid}))
        self.assertIsNone(self.stored_session(pid))


class OwnCommandsTests(StreamsRecoveryCase):
    """With recovery on, a node applies its own backends' emits, joins, leaves and disconnects
    when it reads them back from the stream: they keep the order of the backend's lines."""

    def test_a_backends_lines_take_effect_in_order_and_local_emits_carry_no_offset(self):
        client = self.connected(self.a, self.backend_a)
        sid = client.sid
        # Sent without waiting for replies: each line after the one before it.
        self.backend_a.join(sid, "r")
        self.backend_a.emit("e", 1, to=["r"])
        self.backend_a.leave(sid, "r")
        self.backend_a.emit("e", 2, to=["r"])
        self.backend_a.emit("e", 3)
        self.assertEqual([client.read_event()[:2] for _ in range(2)], [["e", 1], ["e", 3]])
        # Only to this node's clients, never in the stream: no offset, as Node's
        # `addOffsetIfNecessary` gets none for a local broadcast.
        self.backend_a.emit("e", 4, local=True)
        self.assertEqual(client.read_event(), ["e", 4])
        self.backend_a.emit("bye", to=[sid])
        self.backend_a.disconnect(sid)
        self.assertEqual(client.read_event()[:1], ["bye"])
        self.assertEqual(client.read(), "1")
        self.backend_a.expect("disconnect", sid=sid, reason="server namespace disconnect")
        self.assertIsNone(self.stored_session(client.pid), "a socket the server let go keeps nothing")


    def test_own_binary_emits_come_back_as_binary_and_volatile_ones_without_an_offset(self):
        # A python-socketio client: it reads binary attachments (and knows nothing of offsets).
        client = self.a.client(self)
        sid = client.sid()
        self.backend_a.expect_connect(sid=sid)
        # Kept like any event, as in Node, where the adapter sees an EVENT packet and only the
        # encoder makes it a BINARY_EVENT.
        self.backend_a.emit("blob", b64(b"\x00\x01"), to=[sid])
        data, offset = client.wait_for("blob")
        self.assertEqual(data, b"\x00\x01")
        self.assertRegex(offset, OFFSET)
        self.backend_a.emit("v", 1, to=[sid], volatile=True)
        self.assertEqual(client.wait_for("v"), (1,))


class DuplicateEntryTests(StreamsRecoveryCase):
    """The copy a retry appends of an entry already in the stream (see test_streams.py's
    StreamDuplicateTests) is replayed no more than it is delivered live: a restore skips the
    copies the node's reader dropped, and, on a node that started after them, the copies of the
    entry at the client's offset and of entries from its writer before it."""

    def append_copy(self, entry_id):
        with self.redis.client(socket_timeout=2) as r:
            ((_, fields),) = r.xrange(STREAM, entry_id, entry_id)
            self.assertIn(SEQUENCE, fields)
            r.xadd(STREAM, fields)

    def events_after_connect(self, missed, client, count):
        """The first `count` events of a restored client: the missed ones, then live ones."""
        events = [event[:2] for event in missed]
        while len(events) < count:
            events.append(client.read_event()[:2])
        return events

    def test_a_copy_is_replayed_no_more_than_delivered_live(self):
        client = self.connected(self.a, self.backend_a, "lobby")
        watcher = self.connected(self.b, self.backend_b, "lobby")
        self.backend_a.emit("e", 0, to=["lobby"])
        self.assertEqual(client.read_event()[:2], ["e", 0])
        self.backend_b.emit("e", 1, to=["lobby"])
        self.assertEqual(client.read_event()[:2], ["e", 1])
        self.assertEqual([watcher.read_event()[:2] for _ in range(2)], [["e", 0], ["e", 1]])
        sid, pid = client.sid, client.pid
        client.drop()
        self.backend_a.expect("disconnect", sid=sid, reason="transport close")
        self.wait_session_stored(pid)
        # While it is away: e 2, copies of e 2 and of A's e 0 (which it had, before the
        # offset, from another writer than the offset's entry), then e 3.
        self.backend_b.emit("e", 2, to=["lobby"])
        wait_until(lambda: len(broadcast_ids(self.redis, "e")) == 3, message="e 2 in the stream")
        ids = dict((n, entry) for entry, n in broadcast_ids(self.redis, "e"))
        self.append_copy(ids[2])
        self.append_copy(ids[0])
        self.backend_b.emit("e", 3, to=["lobby"])
        # Live on B, the copies are dropped; once e 3 is in, B's reader is past them.
        self.assertEqual([watcher.read_event()[:2] for _ in range(2)], [["e", 2], ["e", 3]])
        client, missed, connect = self.recover_on(self.b, client)
        self.assertEqual(connect, {"sid": sid, "pid": pid})
        self.assertEqual(self.events_after_connect(missed, client, 2), [["e", 2], ["e", 3]], "no copy replayed")
        self.backend_b.expect_connect(sid=sid)

        # It drops from B at e 3's offset; copies of e 3 and e 2 follow in the stream, then a
        # node C starts, whose reader never reads them, and e 4 is emitted.
        client.drop()
        self.backend_b.expect("disconnect", sid=sid, reason="transport close")
        self.wait_session_stored(pid)
        ids = dict((n, entry) for entry, n in broadcast_ids(self.redis, "e"))
        self.assertEqual(client.offset, ids[3])
        self.append_copy(ids[3])
        self.append_copy(ids[2])
        c = start_sidecast(self, "--redis", self.redis.url, "--redis-streams", "--recovery-window", self.window)
        backend_c = c.backend(self)
        self.backend_b.emit("e", 4, to=["lobby"])
        wait_until(lambda: any(n == 4 for _, n in broadcast_ids(self.redis, "e")), message="e 4 in the stream")
        client, missed, connect = self.recover_on(c, client)
        self.assertEqual(connect, {"sid": sid, "pid": pid})
        self.assertEqual(self.events_after_connect(missed, client, 1), [["e", 4]], "no copy replayed before e 4")
        backend_c.expect_connect(sid=sid)


class KeyPrefixTests(StreamsRecoveryCase):
    def setUp(self):
        self.redis = start_redis(self)
        self.a, self.b = start_stream_nodes(self, self.redis, 2, "--recovery-window", WINDOW,
                                            "--redis-session-key-prefix", "chat:s:")
        self.backend_a = self.a.backend(self)
        self.backend_b = self.b.backend(self)

    def test_sessions_are_kept_under_the_prefix_given(self):
        client = self.connected(self.a, self.backend_a)
        self.backend_a.emit("e", 0)
        client.read_event()
        client.drop()
        with self.redis.client(socket_timeout=2) as r:
            wait_until(lambda: r.exists("chat:s:" + client.pid), message="the session under chat:s:")
            self.assertFalse(r.exists(SESSION_PREFIX + client.pid))
        again, missed, connect = self.recover_on(self.b, client)
        self.assertEqual(connect, {"sid": client.sid, "pid": client.pid})


class RedisAwayTests(unittest.TestCase):
    def test_sockets_that_drop_while_redis_is_away_lose_their_session_and_are_counted(self):
        redis_server = start_redis(self)
        node = start_node(self, "--redis", redis_server.url, "--redis-streams", "--recovery-window", WINDOW)
        wait_until(lambda: len(stream_entries(redis_server)) >= 1, message="the node's announcement")
        backend = node.backend(self)
        client = RawClient(node)
        self.addCleanup(client.ws.close)
        client.connect()
        backend.expect_connect(sid=client.sid)
        backend.emit("e", 0)
        client.read_event()
        redis_server.kill()
        client.drop()
        backend.expect("disconnect", sid=client.sid, reason="transport close")
        wait_until(lambda: metric(scrape(node), "sidecast_recovery_lost_sessions_total") == 1,
                   message="the lost session counted")
        again = RawClient(node)
        self.addCleanup(again.ws.close)
        reply = again.connect({"pid": client.pid, "offset": client.offset})
        self.assertNotEqual(reply["sid"], client.sid)
        self.assertEqual(metric(scrape(node), "sidecast_recoveries_total", result="redis_unreachable"), 1)
        self.assertIn("cannot keep sessions in Redis", node.log)


class ExpiryTests(StreamsRecoveryCase):
    window = "1000"

    def test_after_the_window_redis_has_dropped_the_session_and_the_client_connects_fresh(self):
        client = self.connected(self.a, self.backend_a, "r")
        self.backend_a.emit("e", 0, to=["r"])
        client.read_event()
        sid, pid = client.sid, client.pid
        client.drop()
        self.wait_session_stored(pid)
        wait_until(lambda: self.stored_session(pid) is None, timeout=5, message="Redis to expire the session")
        again, missed, connect = self.recover_on(self.b, client)
        self.assertEqual(missed, [])
        self.assertNotEqual(connect["sid"], sid)
        self.backend_b.expect_connect(sid=connect["sid"])


class RollingRestartTests(StreamsRecoveryCase):
    CLIENTS = 5

    def test_a_rolling_restart_of_both_nodes_loses_nothing_and_repeats_nothing(self):
        clients = [self.connected(self.a, self.backend_a, "feed") for _ in range(self.CLIENTS)]
        # Every client needs an offset before it can recover.
        self.backend_a.emit("tick", -1, to=["feed"])
        for client in clients:
            self.assertEqual(client.read_event()[:2], ["tick", -1])
        sessions = {client.pid: client.sid for client in clients}
        # Emits go on throughout, in turn from the backends of the nodes not being stopped.
        feeding = [(self.backend_a, self.backend_b)]
        done = threading.Event()

        def feed():
            n = 0
            while not done.is_set():
                backends = feeding[0]
                try:
                    backends[n % len(backends)].emit("tick", n, to=["feed"])
                except OSError:
                    pass  # the backend's node went away under it
                n += 1
                time.sleep(0.005)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        self.addCleanup(done.set)

        def restart(stopping, onto):
            """Stops `stopping`; each client reads what it still had from it, then recovers on
            `onto` with what it missed."""
            stopping.stop()
            for index, client in enumerate(clients):
                while True:
                    try:
                        client.read_event()
                    except Exception:  # noqa: BLE001 - the closed connection ends its part
                        break
                again, missed, connect = self.recover_on(onto, client)
                self.assertEqual(connect, {"sid": client.sid, "pid": client.pid})
                again.events = client.events + missed
                clients[index] = again

        time.sleep(0.2)
        feeding[0] = (self.backend_b,)
        restart(self.a, onto=self.b)
        # A comes back as a new process, then B goes.
        a2 = start_sidecast(self, "--redis", self.redis.url, "--redis-streams", "--recovery-window", WINDOW)
        wait_until(lambda: len({f[b"uid"] for _, f in stream_entries(self.redis) if f[b"type"] == b"1"}) == 3,
                   message="the new node on the stream")
        backend_a2 = a2.backend(self)
        feeding[0] = (self.backend_b, backend_a2)
        time.sleep(0.2)
        feeding[0] = (backend_a2,)
        restart(self.b, onto=a2)
        time.sleep(0.2)
        done.set()
        feeder.join(timeout=TIMEOUT)
        backend_a2.emit("tick", "end", to=["feed"])

        def ticks_through_the_end():
            # The backend's emit reaches the stream after its line is read: wait for it there.
            ticks = [(entry, n) for entry, n in broadcast_ids(self.redis, "tick")]
            return ticks if ticks and ticks[-1][1] == "end" else None

        expected = wait_until(ticks_through_the_end, message="the last tick in the stream")
        self.assertGreater(len(expected), 40)
        for client in clients:
            while client.events[-1][1] != "end":
                client.read_event()  # kept in client.events
            got = [(event[2], event[1]) for event in client.events]
            self.assertEqual(got, expected, "every tick of the stream, in order, once")
        self.assertEqual({client.pid: client.sid for client in clients}, sessions)
        for client in clients:
            self.assertIsNone(self.stored_session(client.pid))


class MixedClusterTests(StreamsRecoveryCase):
    """With a Node streams-adapter node (node_streams.py): each restores the other's sessions."""

    def setUp(self):
        super().setUp()
        self.peer = NodeStreamsPeer(self.redis)
        self.addCleanup(self.peer.close)
        self.peer.wait_nodes(3)

    def test_a_session_node_persisted_is_restored_by_sidecast(self):
        socket = self.peer.connect()
        self.peer.join(socket, "lobby")
        offset = self.peer.emit("e", 0, rooms=["lobby"])
        pid = "node-pid-" + socket.id
        self.peer.persist_session({"sid": socket.id, "pid": pid, "rooms": [socket.id, "lobby"],
                                   "data": {"user": "bob"}}, 60000)
        self.peer.emit("e", 1, rooms=["lobby"])
        self.backend_a.emit("e", 2, to=["lobby"])
        self.peer.emit("e", 3, rooms=["other"])
        wait_until(lambda: len(broadcast_ids(self.redis, "e")) == 4, message="every emit in the stream")
        ids = dict((n, entry) for entry, n in broadcast_ids(self.redis, "e"))
        self.assertEqual(ids[0], offset)
        client = self.client(self.b)
        client.pid, client.offset = pid, offset
        again, missed, connect = self.recover_on(self.b, client)
        self.assertEqual(connect, {"sid": socket.id, "pid": pid})
        self.assertEqual(missed, [["e", 1, ids[1]], ["e", 2, ids[2]]])
        message = self.backend_b.expect_connect(sid=socket.id)
        self.assertEqual(message["rooms"], [socket.id, "lobby"])
        self.assertEqual(message["data"], {"user": "bob"})

    def test_a_session_sidecast_persisted_is_restored_by_node(self):
        client = self.connected(self.a, self.backend_a, "lobby")
        self.assertTrue(self.backend_a.request({"type": "data", "sid": client.sid, "nsp": "/", "data": {"n": [1, "x"]}})["ok"])
        self.backend_a.emit("e", 0, to=["lobby"])
        client.read_event()
        client.drop()
        self.wait_session_stored(client.pid)
        self.peer.emit("e", 1, rooms=["lobby"])
        self.backend_b.emit("e", 2)
        self.backend_a.emit("e", 3, to=["other"])
        wait_until(lambda: len(broadcast_ids(self.redis, "e")) == 4, message="every emit in the stream")
        ids = dict((n, entry) for entry, n in broadcast_ids(self.redis, "e"))
        session = self.peer.restore_session(client.pid, client.offset)
        self.assertEqual(session, {"sid": client.sid, "pid": client.pid, "rooms": [client.sid, "lobby"],
                                   "data": {"n": [1, "x"]}, "missedPackets": [["e", 1, ids[1]], ["e", 2, ids[2]]]})
        self.assertIsNone(self.peer.restore_session(client.pid, client.offset), "taken once")


class Balancer:
    """A TCP load balancer in front of the nodes, as small as can be: each new connection goes
    to the current `target` node, and stays with it until either side closes."""

    def __init__(self, test, target):
        self.target = target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = threading.Event()
        test.addCleanup(self.close)
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._closed.set()
        self._listener.close()

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target.port), timeout=TIMEOUT)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        # Either side closing ends both directions; the other pipe's recv then returns.
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()


class BrowserRollingRestartTests(ChromiumTestCase):
    """The official JavaScript client (the bundle examples/web fetches) in headless Chromium,
    behind a load balancer: its node is SIGTERMed while a backend on the other node emits
    numbered events to its room; socket.io-client's Manager reconnects by itself, through the
    balancer, to the other node."""

    def run_feed(self, *flags):
        """The events the page got, its connects ({id, recovered}), its first sid, and B's
        backend's connect of it."""
        redis_server = start_redis(self)
        a, b = start_stream_nodes(self, redis_server, 2, *flags)
        backend_a, backend_b = a.backend(self), b.backend(self)
        balancer = Balancer(self, a)
        driver = self.start_chromium()
        driver.set_script_timeout(TIMEOUT * 3)
        # A page of the balancer's origin (the Engine.IO open packet), the client loaded into it.
        driver.get(f"{balancer.url}/socket.io/?EIO=4&transport=polling")
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
        """, balancer.url)
        backend_a.expect_connect(sid=first)
        self.assertTrue(backend_a.request({"type": "join", "sid": first, "nsp": "/", "rooms": ["feed"]})["ok"])
        total = 300
        stop = threading.Event()

        def feed():
            for n in range(total):
                if stop.is_set():
                    return
                backend_b.emit("n", n, to=["feed"])
                time.sleep(0.01)

        emitter = threading.Thread(target=feed, daemon=True)
        emitter.start()
        self.addCleanup(stop.set)
        wait_until(lambda: driver.execute_script("return got.length") >= 50, message="50 events in the page")
        balancer.target = b
        a.stop()
        connect = backend_b.expect("connect", timeout=TIMEOUT * 2)
        if not connect.get("recovered"):
            # The control: a new socket, which the application puts back in its room.
            self.assertTrue(backend_b.request({"type": "join", "sid": connect["sid"], "nsp": "/", "rooms": ["feed"]})["ok"])
        emitter.join(TIMEOUT * 3)
        backend_b.emit("n", "end", to=["feed"])
        wait_until(lambda: driver.execute_script("return got.includes('end')"), message="the last event in the page")
        return driver.execute_script("return got")[:-1], driver.execute_script("return connects"), first, connect

    def test_the_page_recovers_on_the_other_node_and_misses_nothing(self):
        got, page, first, connect = self.run_feed("--recovery-window", WINDOW)
        self.assertEqual(got, list(range(300)), "no gap, no duplicate")
        self.assertEqual([(c["id"], c["recovered"]) for c in page], [(first, False), (first, True)])
        self.assertIs(connect["recovered"], True)
        self.assertEqual((connect["sid"], connect["rooms"]), (first, [first, "feed"]))

    def test_without_recovery_the_page_loses_what_was_sent_while_it_moved(self):
        got, page, first, connect = self.run_feed()
        self.assertEqual(len(page), 2)
        self.assertNotEqual(page[1]["id"], first)
        self.assertNotIn("recovered", connect)
        self.assertEqual(got, sorted(set(got)), "in order, no duplicate")
        self.assertLess(len(got), 300, "the events sent while it reconnected are lost")
        self.assertEqual(got[-1], 299)


if __name__ == "__main__":
    unittest.main()
