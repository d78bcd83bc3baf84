"""A Node.js Socket.IO server with `createShardedAdapter`, re-created in Python for mixed clusters.

Its behaviour is taken, branch by branch, from:
- `lib/sharded-adapter.ts` of socketio/socket.io-redis-adapter (8.3): the channels, the three
  subscription modes (`shouldUseASeparateNamespace`), `computeChannel` with `looksLikeASocketId`
  (exactly 20 characters), `encode` (JSON unless a binary-capable message carries binary, then
  msgpack), `onRawMessage` (the response channel's messages are responses) and `serverCount`
  (`PUBSUB SHARDNUMSUB` of the namespace channel);
- `packages/socket.io-adapter/lib/cluster-adapter.ts` of socketio/socket.io: `onMessage` (own uid
  and other namespaces ignored, BROADCAST with and without `requestId`, SOCKETS_JOIN/LEAVE,
  FETCH_SOCKETS, SERVER_SIDE_EMIT), `onResponse` (BROADCAST_CLIENT_COUNT, BROADCAST_ACK),
  `broadcast` and `broadcastWithAck` (publish, then deliver locally);
- `packages/socket.io-adapter/lib/in-memory-adapter.ts`: `addAll`/`delAll` with their
  `create-room`/`delete-room` events, and which sockets a broadcast's rooms and except select;
- `packages/socket.io/lib/broadcast-operator.ts`: `emitWithAck` completes when the counted
  servers all reported and every asked client answered;
- `base64id`: socket ids of 20 characters.

Its sockets are records, not connections: each keeps what it received and answers an
acknowledgement with `ack_reply` when that is set.
"""

import base64
import json
import os
import queue
import threading
import time

import msgpack

from harness import TIMEOUT

BROADCAST, SOCKETS_JOIN, SOCKETS_LEAVE, DISCONNECT_SOCKETS = 3, 4, 5, 6
FETCH_SOCKETS, FETCH_SOCKETS_RESPONSE, SERVER_SIDE_EMIT, SERVER_SIDE_EMIT_RESPONSE = 7, 8, 9, 10
BROADCAST_CLIENT_COUNT, BROADCAST_ACK = 11, 12
MAY_CONTAIN_BINARY = (BROADCAST, BROADCAST_ACK, FETCH_SOCKETS_RESPONSE, SERVER_SIDE_EMIT, SERVER_SIDE_EMIT_RESPONSE)


def looks_like_a_socket_id(room):
    """`looksLikeASocketId` of sharded-adapter.ts."""
    return isinstance(room, str) and len(room) == 20


def base64id():
    """A socket id as Node's `base64id.generateId()` makes it: 15 random bytes, base64, 20 characters."""
    return base64.b64encode(os.urandom(15)).decode().replace("/", "_").replace("+", "-")


def has_binary(value):
    if isinstance(value, (bytes, bytearray)):
        return True
    if isinstance(value, list):
        return any(has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(has_binary(v) for v in value.values())
    return False


class PeerSocket:
    def __init__(self, sid):
        self.id = sid
        self.received = []  # (event, args)
        self.ack_reply = None
        self.arrived = threading.Condition()


class NodeShardedPeer:
    """One Node server's namespace "/" with the sharded adapter, on a single Redis 7 server."""

    def __init__(self, redis_server, mode="dynamic", prefix="socket.io", nsp="/"):
        self.mode = mode
        self.nsp = nsp
        self.uid = os.urandom(8).hex()  # cluster-adapter.ts `randomId()`
        self.channel = f"{prefix}#{nsp}#"
        self.response_channel = f"{prefix}#{nsp}#{self.uid}#"
        self.pub = redis_server.client(socket_timeout=5)
        self._sub_client = redis_server.client(socket_timeout=5)
        self._pubsub = self._sub_client.pubsub()
        self._commands = queue.Queue()
        self._lock = threading.RLock()
        self.rooms = {}  # room -> set of socket ids (in-memory-adapter.ts `rooms`)
        self.sids = {}  # socket id -> set of rooms (`sids`)
        self.sockets = {}
        self.server_side_emits = []
        self.server_side_emit_reply = None
        self.ack_requests = {}
        self.subscribed = set()
        self._stopped = threading.Event()
        self._ssubscribe(self.channel)
        self._ssubscribe(self.response_channel)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # -- subscriptions, run on the reader thread --------------------------------------------

    def _ssubscribe(self, channel):
        self._commands.put(("ssubscribe", channel))

    def _sunsubscribe(self, channel):
        self._commands.put(("sunsubscribe", channel))

    def _run(self):
        while not self._stopped.is_set():
            while True:
                try:
                    command, channel = self._commands.get_nowait()
                except queue.Empty:
                    break
                getattr(self._pubsub, command)(channel)
            if not self._pubsub.subscribed:
                time.sleep(0.01)
                continue
            item = self._pubsub.get_sharded_message(timeout=0.02)
            if item is None:
                continue
            if item["type"] == "ssubscribe":
                with self._lock:
                    self.subscribed.add(item["channel"].decode())
            elif item["type"] == "sunsubscribe":
                with self._lock:
                    self.subscribed.discard(item["channel"].decode())
            elif item["type"] == "smessage":
                self._on_raw_message(item["data"], item["channel"].decode())

    def wait_subscribed(self, channel, subscribed=True, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if (channel in self.subscribed) == subscribed:
                    return
            time.sleep(0.01)
        raise AssertionError(f"peer {'never subscribed' if subscribed else 'still subscribes'} {channel}")

    def close(self):
        """sharded-adapter.ts `close()`: unsubscribes the namespace, response and room channels."""
        channels = [self.channel, self.response_channel]
        if self.mode in ("dynamic", "dynamic-private"):
            channels += [self._dynamic_channel(r) for r in self.rooms if self._should_use_a_separate_namespace(r)]
        for channel in channels:
            self._sunsubscribe(channel)
        deadline = time.monotonic() + TIMEOUT
        while self.subscribed and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopped.set()
        self._thread.join(timeout=TIMEOUT)
        self._pubsub.close()
        self._sub_client.close()
        self.pub.close()

    # -- in-memory-adapter.ts ----------------------------------------------------------------

    def connect(self, ack_reply=None):
        """A socket connects: `socket.join(socket.id)` → `addAll(id, [id])`."""
        socket = PeerSocket(base64id())
        socket.ack_reply = ack_reply
        with self._lock:
            self.sockets[socket.id] = socket
            self._add_all(socket.id, [socket.id])
        return socket

    def join(self, socket, room):
        with self._lock:
            self._add_all(socket.id, [room])

    def _add_all(self, sid, rooms):
        self.sids.setdefault(sid, set())
        for room in rooms:
            self.sids[sid].add(room)
            if room not in self.rooms:
                self.rooms[room] = set()
                self._on_create_room(room)
            self.rooms[room].add(sid)

    def _del(self, room, sid):
        if room in self.rooms:
            self.rooms[room].discard(sid)
            if not self.rooms[room]:
                del self.rooms[room]
                self._on_delete_room(room)

    def _matching(self, opts):
        """`apply`: sockets in any of `rooms` (all when empty), minus those in any `except` room."""
        excluded = set()
        for room in opts.get("except", []):
            excluded |= self.rooms.get(room, set())
        if opts.get("rooms"):
            ids = set()
            for room in opts["rooms"]:
                ids |= self.rooms.get(room, set())
        else:
            ids = set(self.sids)
        return [self.sockets[i] for i in sorted(ids - excluded) if i in self.sockets]

    def _deliver(self, socket, packet):
        data = packet["data"]
        with socket.arrived:
            socket.received.append((data[0], data[1:]))
            socket.arrived.notify_all()

    # -- sharded-adapter.ts ------------------------------------------------------------------

    def _should_use_a_separate_namespace(self, room):
        is_public_room = room not in self.sids
        return (self.mode == "dynamic" and is_public_room) or self.mode == "dynamic-private"

    def _on_create_room(self, room):
        if self.mode in ("dynamic", "dynamic-private") and self._should_use_a_separate_namespace(room):
            self._ssubscribe(self._dynamic_channel(room))

    def _on_delete_room(self, room):
        if self.mode in ("dynamic", "dynamic-private") and self._should_use_a_separate_namespace(room):
            self._sunsubscribe(self._dynamic_channel(room))

    def _dynamic_channel(self, room):
        return self.channel + room + "#"

    def compute_channel(self, message):
        """`computeChannel`: broadcasts with acks can't use a room's channel (serverCount counts
        every server); a one-room broadcast does in `dynamic` unless the room looks like a
        socket id, and always in `dynamic-private`."""
        use_dynamic_channel = (
            message["type"] == BROADCAST
            and message["data"].get("requestId") is None
            and len(message["data"]["opts"]["rooms"]) == 1
            and ((self.mode == "dynamic" and not looks_like_a_socket_id(message["data"]["opts"]["rooms"][0]))
                 or self.mode == "dynamic-private"))
        return self._dynamic_channel(message["data"]["opts"]["rooms"][0]) if use_dynamic_channel else self.channel

    def _encode(self, message):
        if message["type"] in MAY_CONTAIN_BINARY and has_binary(message.get("data")):
            return msgpack.packb(message, use_bin_type=True)
        return json.dumps(message, separators=(",", ":"))

    def _do_publish(self, message):
        self.published_on = self.compute_channel(message)
        self.pub.execute_command("SPUBLISH", self.published_on, self._encode(message))

    def _do_publish_response(self, requester_uid, response):
        self.pub.execute_command("SPUBLISH", f"{self.channel}{requester_uid}#", self._encode(response))

    def _on_raw_message(self, raw, channel):
        try:
            message = json.loads(raw) if raw[:1] == b"{" else msgpack.unpackb(raw, raw=False)
        except ValueError:
            return
        if channel == self.response_channel:
            self._on_response(message)
        else:
            self._on_message(message)

    def server_count(self):
        return int(self.pub.execute_command("PUBSUB", "SHARDNUMSUB", self.channel)[1])

    # -- cluster-adapter.ts ------------------------------------------------------------------

    def _publish(self, message):
        message["uid"] = self.uid
        message["nsp"] = self.nsp
        self._do_publish(message)

    def _publish_response(self, requester_uid, response):
        response["uid"] = self.uid
        response["nsp"] = self.nsp
        self._do_publish_response(requester_uid, response)

    def _on_message(self, message):
        if message.get("uid") == self.uid or message.get("nsp") != self.nsp:
            return
        kind, data = message["type"], message.get("data", {})
        with self._lock:
            if kind == BROADCAST:
                if data.get("requestId") is not None:
                    request_id, requester = data["requestId"], message["uid"]
                    self._local_broadcast_with_ack(
                        data["packet"], data["opts"],
                        lambda count: self._publish_response(requester, {
                            "type": BROADCAST_CLIENT_COUNT, "data": {"requestId": request_id, "clientCount": count}}),
                        lambda arg: self._publish_response(requester, {
                            "type": BROADCAST_ACK, "data": {"requestId": request_id, "packet": arg}}))
                else:
                    for socket in self._matching(data["opts"]):
                        self._deliver(socket, data["packet"])
            elif kind == SOCKETS_JOIN:
                for socket in self._matching(data["opts"]):
                    self._add_all(socket.id, data["rooms"])
            elif kind == SOCKETS_LEAVE:
                for socket in self._matching(data["opts"]):
                    for room in data["rooms"]:
                        self.sids.get(socket.id, set()).discard(room)
                        self._del(room, socket.id)
            elif kind == FETCH_SOCKETS:
                sockets = [{"id": s.id, "handshake": {}, "rooms": sorted(self.sids.get(s.id, ())), "data": {}}
                           for s in self._matching(data["opts"])]
                self._publish_response(message["uid"], {
                    "type": FETCH_SOCKETS_RESPONSE, "data": {"requestId": data["requestId"], "sockets": sockets}})
            elif kind == SERVER_SIDE_EMIT:
                self.server_side_emits.append(data["packet"])
                if data.get("requestId") is not None and self.server_side_emit_reply is not None:
                    self._publish_response(message["uid"], {
                        "type": SERVER_SIDE_EMIT_RESPONSE,
                        "data": {"requestId": data["requestId"], "packet": self.server_side_emit_reply}})
            elif kind in (BROADCAST_CLIENT_COUNT, BROADCAST_ACK, FETCH_SOCKETS_RESPONSE, SERVER_SIDE_EMIT_RESPONSE):
                self._on_response(message)

    def _on_response(self, response):
        data = response.get("data", {})
        with self._lock:
            request = self.ack_requests.get(data.get("requestId"))
            if request is None:
                return
            if response["type"] == BROADCAST_CLIENT_COUNT:
                request["client_count"](data["clientCount"])
            elif response["type"] == BROADCAST_ACK:
                request["ack"](data.get("packet"))

    def _local_broadcast_with_ack(self, packet, opts, client_count_callback, ack):
        """in-memory-adapter.ts `broadcastWithAck`: count first, then each socket's answer."""
        targets = self._matching(opts)
        client_count_callback(len(targets))
        for socket in targets:
            self._deliver(socket, packet)
            if socket.ack_reply is not None:
                ack(socket.ack_reply)

    def emit(self, event, *args, rooms=(), except_=()):
        """`io.to(rooms).emit(event, ...args)`: publish, then deliver locally."""
        packet = {"type": 2, "data": [event, *args], "nsp": self.nsp}
        opts = {"rooms": list(rooms), "except": list(except_), "flags": {}}
        with self._lock:
            self._publish({"type": BROADCAST, "data": {"packet": packet, "opts": opts}})
            for socket in self._matching(opts):
                self._deliver(socket, packet)

    def emit_with_ack(self, event, *args, rooms=(), timeout=2.0):
        """`io.to(rooms).timeout(ms).emitWithAck(event, ...args)`; returns (responses, timed_out)."""
        done = threading.Event()
        state = {"expected_servers": -1, "actual_servers": 0, "expected_clients": 0, "responses": []}

        def check_completeness():
            if (state["expected_servers"] == state["actual_servers"]
                    and len(state["responses"]) == state["expected_clients"]):
                done.set()

        def client_count(count):
            state["expected_clients"] += count
            state["actual_servers"] += 1
            check_completeness()

        def on_ack(arg):
            state["responses"].append(arg)
            check_completeness()

        request_id = os.urandom(8).hex()
        packet = {"type": 2, "data": [event, *args], "nsp": self.nsp}
        opts = {"rooms": list(rooms), "except": [], "flags": {"timeout": int(timeout * 1000)}}
        with self._lock:
            self.ack_requests[request_id] = {"client_count": client_count, "ack": on_ack}
            self._publish({"type": BROADCAST, "data": {"packet": packet, "requestId": request_id, "opts": opts}})
            self._local_broadcast_with_ack(packet, opts, client_count, on_ack)
        count = self.server_count()
        with self._lock:
            state["expected_servers"] = count
            check_completeness()
        timed_out = not done.wait(timeout)
        with self._lock:
            self.ack_requests.pop(request_id, None)
            return list(state["responses"]), timed_out

    # -- test helpers ------------------------------------------------------------------------

    def wait_received(self, socket, event, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with socket.arrived:
            while True:
                for name, args in socket.received:
                    if name == event:
                        return args
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"peer socket {socket.id} never received {event!r}: {socket.received!r}")
                socket.arrived.wait(left)
