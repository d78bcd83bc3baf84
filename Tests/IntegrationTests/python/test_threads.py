"""One sidecast on four event loops (`--threads 4`, more loops than this machine may have cores,
on purpose): clients spread over every shard, a broadcast reaches each client once, a polling
client whose every request lands on a new TCP connection (so on another loop) is served
through its upgrade, 10,000 numbered emits from one backend to sockets of every shard arrive in
order, and fetch, count and rooms see every shard.

Which shard owns a socket is read from its id as sidecast writes it
(Sources/EngineIO/RandomID.swift, `LoopShard`): the first two characters hold a value whose
remainder by the number of shards is the shard.
"""

import json
import unittest

import requests
import websocket

from harness import TIMEOUT, RawSocketIO, SidecastTestCase, eio_url, wait_until
from test_ops import metric, scrape, start_node
from test_recovery import WINDOW, RawClient

THREADS = 4
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def shard_of(sid, count=THREADS):
    return (ALPHABET.index(sid[0]) | ALPHABET.index(sid[1]) << 6) % count


class ThreadsTestCase(SidecastTestCase):
    sidecast_flags = ("--threads", THREADS)

    def query(self, type, **fields):
        reply = self.backend.request({"type": type, "nsp": "/", **fields})
        self.assertTrue(reply["ok"], reply)
        return reply

    def clients_on_every_shard(self, count=8, **kwargs):
        """`count` connected python-socketio clients with their socket ids, at least one on each
        shard (the acceptor hands connections to the loops in turn)."""
        clients = [self.connected_client(**kwargs) for _ in range(count)]
        sids = [message["sid"] for _, message in clients]
        self.assertEqual({shard_of(sid) for sid in sids}, set(range(THREADS)), sids)
        return [client for client, _ in clients], sids

    def raw_clients_on_every_shard(self, count=8, backends=None):
        """`count` raw WebSocket clients (they read frames in arrival order; python-socketio
        hands each event to a thread of its own, which may reorder them) and their socket ids,
        at least one on each shard; each of `backends` (the test's one by default) has seen
        their connects."""
        clients = [RawSocketIO(self.sidecast) for _ in range(count)]
        for client in clients:
            self.addCleanup(client.close)
        sids = [client.connect() for client in clients]
        for backend in backends or [self.backend]:
            for sid in sids:
                backend.expect_connect(sid=sid)
        self.assertEqual({shard_of(sid) for sid in sids}, set(range(THREADS)), sids)
        return clients, sids


class ShardTests(ThreadsTestCase):
    def test_fetch_count_and_rooms_see_every_shard(self):
        clients, sids = self.clients_on_every_shard()
        for index, sid in enumerate(sids):
            self.backend.join(sid, f"r{index % 2}")
        self.assertEqual(self.query("count")["count"], 8)
        self.assertEqual(self.query("count", **{"in": ["r0"]})["count"], 4)
        self.assertEqual(self.query("count", **{"in": ["r1"], "except": [sids[1]]})["count"], 3)
        self.assertEqual(set(self.query("rooms")["rooms"]), {"r0", "r1"})
        sockets = self.query("fetch", **{"in": ["r1"]})["sockets"]
        self.assertEqual(sorted(s["sid"] for s in sockets), sorted(sids[1::2]))
        for socket in sockets:
            self.assertEqual(sorted(socket["rooms"]), sorted([socket["sid"], "r1"]))
        # A join by selector reaches every shard; so does a disconnect.
        self.assertTrue(self.backend.request({"type": "join", "nsp": "/", "in": ["r0"], "rooms": ["even"]})["ok"])
        self.assertEqual(self.query("count", **{"in": ["even"]})["count"], 4)
        self.assertTrue(self.backend.request({"type": "disconnect", "nsp": "/", "in": ["even"]})["ok"])
        for index, client in enumerate(clients):
            if index % 2 == 0:
                client.wait_for("disconnect")
        self.assertEqual(sorted(s["sid"] for s in self.query("fetch")["sockets"]), sorted(sids[1::2]))

    def test_ten_thousand_numbered_emits_arrive_in_order_on_every_shard(self):
        clients, sids = self.raw_clients_on_every_shard()
        total = 10_000
        for n in range(total):
            self.backend.emit("n", n, to=[sids[n % len(sids)]])
        for index, client in enumerate(clients):
            expected = [f'42["n",{n}]' for n in range(index, total, len(sids))]
            received = [client.recv_skipping_pings() for _ in expected]
            self.assertEqual(received, expected, f"socket {sids[index]} of shard {shard_of(sids[index])}")

    def test_emits_to_socket_ids_between_room_broadcasts_arrive_in_order(self):
        # An emit to one socket goes to its shard only, a broadcast to every shard: whichever
        # way each went, a socket gets them in the order the backend sent them (PROTOCOL.md §9).
        clients, sids = self.raw_clients_on_every_shard()
        for sid in sids:
            self.backend.join(sid, "all")
        expected = {sid: [] for sid in sids}
        for n in range(3_000):
            if n % 3 == 0:
                self.backend.emit("n", n, to=["all"])
                for sid in sids:
                    expected[sid].append(n)
            elif n % 3 == 1:
                self.backend.emit("n", n)
                for sid in sids:
                    expected[sid].append(n)
            else:
                sid = sids[n % len(sids)]
                self.backend.emit("n", n, to=[sid])
                expected[sid].append(n)
        for client, sid in zip(clients, sids):
            received = [client.recv_skipping_pings() for _ in expected[sid]]
            self.assertEqual(received, [f'42["n",{n}]' for n in expected[sid]], f"socket {sid} of shard {shard_of(sid)}")

    def test_a_room_named_after_a_socket_of_another_shard_gets_the_emits_to_that_id(self):
        # Node lets a socket join a room named after another socket; an emit to that id then
        # reaches both, though the member is on another shard than the id says.
        clients, sids = self.raw_clients_on_every_shard()
        a = next(i for i, sid in enumerate(sids) if shard_of(sid) == 1)
        b = next(i for i, sid in enumerate(sids) if shard_of(sid) == 2)
        # The emit follows the join at once: the join may not have been carried out, nor
        # reported, when the emit is routed.
        self.backend.join(sids[a], sids[b])
        self.backend.emit("to-b", 1, to=[sids[b]])
        self.assertEqual(clients[b].recv_skipping_pings(), '42["to-b",1]')
        self.assertEqual(clients[a].recv_skipping_pings(), '42["to-b",1]')
        # Once the room is reported, emits keep reaching it.
        self.assertEqual(self.query("rooms")["rooms"], [sids[b]])
        self.backend.emit("to-b", 2, to=[sids[b]])
        self.assertEqual(clients[b].recv_skipping_pings(), '42["to-b",2]')
        self.assertEqual(clients[a].recv_skipping_pings(), '42["to-b",2]')
        # After the leave, only b: a's next frame is the emit to a itself.
        self.assertTrue(self.backend.request({"type": "leave", "sid": sids[a], "nsp": "/", "rooms": [sids[b]]})["ok"])
        self.backend.emit("to-b", 3, to=[sids[b]])
        self.backend.emit("to-a", 4, to=[sids[a]])
        self.assertEqual(clients[b].recv_skipping_pings(), '42["to-b",3]')
        self.assertEqual(clients[a].recv_skipping_pings(), '42["to-a",4]')

    def test_a_clients_events_reach_the_backend_in_order_and_acks_come_back(self):
        clients, sids = self.clients_on_every_shard()
        for client in clients:
            for n in range(20):
                client.emit("seq", n)
        for sid in sids:
            for n in range(20):
                self.assertEqual(self.backend.expect_event("seq", sid=sid)["args"], [n])
        # An ack, and an emit with ack to one socket, cross to the socket's shard and back.
        client = clients[3]
        future = client.call_async("question")
        event = self.backend.expect_event("question", sid=sids[3])
        self.backend.ack(event, "answer")
        self.assertEqual(future.result(TIMEOUT), ("answer",))
        clients[5].ack_replies["ping"] = lambda *args: "pong"
        reply = self.backend.request({"type": "emit", "nsp": "/", "event": "ping", "args": [], "to": [sids[5]], "ack": {"timeout": 2000}})
        self.assertEqual(reply["args"], ["pong"], reply)



class BackendsOverLoopsTests(ThreadsTestCase):
    """Backend connections are handed to the loops in turn (the first to loop 1, the home loop
    last): with four loops, the four backends here parse their lines on four loops, and each
    hands its commands to the bridge, which carries them out in the order each backend sent."""

    def test_backends_on_different_loops_each_see_every_sockets_events_in_order(self):
        # Groups get a copy of every event each: every backend sees every socket's events.
        others = [self.sidecast.backend(self, group=f"g{n}") for n in range(3)]
        backends = [self.backend] + others
        clients, sids = self.raw_clients_on_every_shard(backends=backends)
        for client in clients:
            for n in range(50):
                client.ws.send(f'42["seq",{n}]')
        for backend in backends:
            for sid in sids:
                for n in range(50):
                    self.assertEqual(backend.expect_event("seq", sid=sid)["args"], [n])

    def test_commands_from_backends_on_different_loops_each_take_effect_in_order(self):
        others = [self.sidecast.backend(self, group=f"g{n}") for n in range(3)]
        backends = [self.backend] + others
        clients, sids = self.raw_clients_on_every_shard(backends=backends)
        per_backend = 1_000
        # Each backend's emits interleave on the wire with the others'; each backend's own
        # reach every socket in the order it sent them.
        for n in range(per_backend):
            for index, backend in enumerate(backends):
                backend.emit(f"b{index}", n, to=[sids[n % len(sids)]])
        for index, (client, sid) in enumerate(zip(clients, sids)):
            received = {f"b{b}": [] for b in range(len(backends))}
            total = len(backends) * len(range(index, per_backend, len(sids)))
            for _ in range(total):
                event, n = json.loads(client.recv_skipping_pings()[2:])
                received[event].append(n)
            for event, numbers in received.items():
                self.assertEqual(numbers, list(range(index, per_backend, len(sids))), f"{event} to {sid}")
        # A join, then an emit to the room from another backend once the join's reply came.
        self.assertTrue(backends[1].request({"type": "join", "sid": sids[0], "nsp": "/", "rooms": ["r"]})["ok"])
        backends[2].emit("in-r", 1, to=["r"])
        self.assertEqual(clients[0].recv_skipping_pings(), '42["in-r",1]')


class RecoveredSocketOnAnotherShardTests(unittest.TestCase):
    def test_emits_to_a_recovered_socket_reach_it_on_the_shard_that_restored_it(self):
        # A recovering client comes back on a new connection, which the acceptor gives the
        # next loop: restored there, its socket lives on another shard than its id names, and
        # an emit to its id must go to that shard. Two reconnects in a row land on two loops,
        # so at least one is not the id's own.
        node = start_node(self, "--threads", THREADS, "--recovery-window", WINDOW)
        backend = node.backend(self)
        client = RawClient(node)
        self.addCleanup(client.ws.close)
        client.connect()
        sid = client.sid
        backend.expect_connect(sid=sid)
        backend.emit("e", 0, to=[sid])
        self.assertEqual(client.read_event()[:2], ["e", 0])
        for round in range(1, 3):
            client.drop()
            backend.expect("disconnect", sid=sid)
            old, client = client, RawClient(node)
            self.addCleanup(client.ws.close)
            client.pid, client.offset = old.pid, old.offset
            client.recover()
            _, reply = client.read_until_connect()
            self.assertEqual(reply["sid"], sid)
            backend.expect_connect(sid=sid, recovered=True)
            for n in range(10):
                backend.emit("e", round * 100 + n, **({"to": [sid]} if n % 2 else {}))
            received = [client.read_event()[1] for _ in range(10)]
            self.assertEqual(received, [round * 100 + n for n in range(10)], f"round {round}")

class BroadcastOverShardsTests(unittest.TestCase):
    def test_clients_spread_over_every_shard_and_a_broadcast_reaches_each_once(self):
        node = start_node(self, "--threads", THREADS)
        backend = node.backend(self)
        clients = [RawSocketIO(node) for _ in range(16)]
        for client in clients:
            self.addCleanup(client.close)
        sids = [client.connect() for client in clients]
        self.assertEqual({shard_of(client.open["sid"]) for client in clients}, set(range(THREADS)))
        samples = scrape(node)
        per_shard = [metric(samples, "sidecast_connected_clients", transport="websocket", shard=str(shard))
                     for shard in range(THREADS)]
        self.assertEqual(sum(per_shard), 16, per_shard)
        self.assertTrue(all(count > 0 for count in per_shard), per_shard)
        self.assertEqual(metric(samples, "sidecast_connected_sockets", namespace="/"), 16)
        self.assertEqual({shard_of(sid) for sid in sids}, set(range(THREADS)))

        backend.emit("hello", "everyone")
        for client in clients:
            self.assertEqual(client.recv_skipping_pings(), '42["hello","everyone"]')
        for client in clients:
            client.ws.settimeout(0.3)
            try:
                extra = client.recv_skipping_pings()
            except websocket.WebSocketTimeoutException:
                continue
            self.fail(f"a second message after the broadcast: {extra!r}")


class PollingAcrossLoopsTests(ThreadsTestCase):
    """Every request on a new TCP connection: with four loops taking connections in turn,
    nearly every request lands on a loop other than its session's and is relayed."""

    def fresh(self, method, url, **kwargs):
        with requests.Session() as http:
            return http.request(method, url, headers={"Connection": "close"}, timeout=TIMEOUT, **kwargs)

    def poll(self, url):
        response = self.fresh("GET", url)
        self.assertEqual(response.status_code, 200, response.text)
        return response.text.split("\x1e")

    def test_a_client_on_new_connections_is_served_through_its_upgrade(self):
        for _ in range(THREADS):
            self.one_client_through_upgrade()

    def one_client_through_upgrade(self):
        opening = self.fresh("GET", eio_url(self.sidecast))
        sid = json.loads(opening.text[1:])["sid"]
        url = eio_url(self.sidecast, sid=sid)
        self.assertEqual(self.fresh("POST", url, data=b"40").text, "ok")
        packets = self.poll(url)
        socket_sid = json.loads(packets[0][2:])["sid"]
        self.backend.expect_connect(sid=socket_sid)
        self.backend.emit("over", "polling", to=[socket_sid])
        self.assertEqual(self.poll(url), ['42["over","polling"]'])
        self.assertEqual(self.fresh("POST", url, data=b'42["up",1]').text, "ok")
        self.assertEqual(self.backend.expect_event("up", sid=socket_sid)["args"], [1])

        ws = websocket.create_connection(eio_url(self.sidecast, transport="websocket", sid=sid)
                                         .replace("http://", "ws://", 1), timeout=TIMEOUT)
        self.addCleanup(ws.close)
        ws.send("2probe")
        self.assertEqual(ws.recv(), "3probe")
        ws.send("5")
        wait_until(lambda: self.fresh("GET", url).status_code == 400, message="polling to end after the upgrade")
        self.backend.emit("over", "websocket", to=[socket_sid])
        self.assertEqual(ws.recv(), '42["over","websocket"]')
        ws.send('42["down",2]')
        self.assertEqual(self.backend.expect_event("down", sid=socket_sid)["args"], [2])
        ws.close()
        self.backend.expect("disconnect", sid=socket_sid)


if __name__ == "__main__":
    unittest.main()
