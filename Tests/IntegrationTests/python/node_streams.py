"""A Node.js Socket.IO server with `@socket.io/redis-streams-adapter`, re-created in Python for
mixed clusters.

Its behaviour is taken, branch by branch, from:
- `lib/adapter.ts` of socketio/socket.io-redis-streams-adapter: `createAdapter`'s `poll()` (XREAD
  BLOCK 200 COUNT readCount from the last entry's id; entries routed by their `nsp`), `RedisStreamsAdapter.encode` (fields uid, nsp,
  type as text, and data: `JSON.stringify(data)`, or base64 of the msgpack of `data` for a kind
  that may carry binary and does), `decode` (data starting with `{` is JSON, else base64
  msgpack; it reads uid, nsp, type and data only, so sidecast's `sidecast-seq` is ignored, and
  the stand-in, like Node, writes none), `doPublish` (`XADD stream MAXLEN ~ maxLen *`, see `XADD` in `lib/util.ts`) and
  `doPublishResponse` (the same stream);
- `packages/socket.io-adapter/lib/cluster-adapter.ts` of socketio/socket.io: `ClusterAdapter`'s
  `onMessage` (own uid and other namespaces ignored; BROADCAST with and without `requestId`,
  SOCKETS_JOIN/LEAVE, DISCONNECT_SOCKETS, FETCH_SOCKETS, SERVER_SIDE_EMIT; answers handed to
  `onResponse`) and `onResponse` (BROADCAST_CLIENT_COUNT, BROADCAST_ACK), and
  `ClusterAdapterWithHeartbeat`: `init()` publishes INITIAL_HEARTBEAT, every publish pushes the
  HEARTBEAT timer back, `onMessage` records each sender's uid (not "emitter") with the time,
  answers INITIAL_HEARTBEAT with HEARTBEAT and forgets a node on ADAPTER_CLOSE, the cleanup
  timer forgets nodes quiet for heartbeatTimeout, `serverCount()` is 1 + the nodes known, and
  `fetchSockets` / `serverSideEmit` wait for the uids known when asked (`missingUids`), which
  `removeNode` also settles; `close()` publishes ADAPTER_CLOSE;
- `packages/socket.io-adapter/lib/in-memory-adapter.ts`: which sockets a broadcast's rooms and
  except select, and `broadcastWithAck` (the count first, then each socket's answer);
- `packages/socket.io/lib/broadcast-operator.ts`: `emitWithAck` completes when the counted
  servers all reported and every asked client answered;
- `lib/adapter.ts` again for connection state recovery: `persistSession` (`SET` with `PX`, see
  `lib/util.ts`), `restoreSession` (offset format, `GETDEL` as `MULTI GET DEL`, `XRANGE offset
  offset`, then `XRANGE nextOffset(offset) +` up to `RESTORE_SESSION_MAX_XRANGE_CALLS` times,
  BROADCAST entries of the namespace through `shouldIncludePacket`, each packet's data with its
  entry id appended since the adapter's pull request #40).

Node shares one connection between XADD and the blocking XREAD (hence the 200 ms block), and
its first XREAD, from "$", follows the XADD of INITIAL_HEARTBEAT on it: the stand-in reads on a
connection of its own, from that entry's id. Its sockets are records, not connections.
"""

import base64
import json
import os
import re
import threading
import time

import msgpack

from harness import TIMEOUT
from node_sharded import (BROADCAST, BROADCAST_ACK, BROADCAST_CLIENT_COUNT, DISCONNECT_SOCKETS,
                          FETCH_SOCKETS, FETCH_SOCKETS_RESPONSE, MAY_CONTAIN_BINARY, SERVER_SIDE_EMIT,
                          SERVER_SIDE_EMIT_RESPONSE, SOCKETS_JOIN, SOCKETS_LEAVE, PeerSocket, base64id,
                          has_binary)

INITIAL_HEARTBEAT, HEARTBEAT, ADAPTER_CLOSE = 1, 2, 13
EMITTER_UID = "emitter"
DEFAULT_TIMEOUT = 5.0  # cluster-adapter.ts DEFAULT_TIMEOUT, in seconds
BLOCK_DURATION_MS = 200  # util.ts BLOCK_DURATION_IN_MS
RESTORE_SESSION_MAX_XRANGE_CALLS = 100  # adapter.ts


class NodeStreamsPeer:
    """One Node server's namespace with the streams adapter and its default options."""

    def __init__(self, redis_server, nsp="/", stream_name="socket.io", max_len=10_000, read_count=100,
                 heartbeat_interval=5.0, heartbeat_timeout=10.0):
        self.nsp = nsp
        self.stream_name = stream_name
        self.max_len = max_len
        self.read_count = read_count
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.session_key_prefix = "sio:session:"  # `sessionKeyPrefix`'s default
        self.uid = os.urandom(8).hex()  # cluster-adapter.ts `randomId()`
        self.redis = redis_server.client(socket_timeout=5)
        self._reader = redis_server.client(socket_timeout=5)
        self._lock = threading.RLock()
        self.rooms = {}
        self.sids = {}
        self.sockets = {}
        self.nodes = {}  # uid -> monotonic time last heard (`nodesMap`)
        self.server_side_emits = []
        self.server_side_emit_reply = None
        self.ack_requests = {}
        self.custom_requests = {}
        self._last_publish = time.monotonic()
        self._stopped = threading.Event()
        # `init()`; Node's first XREAD "$" follows this XADD on the same connection, so it reads
        # from just after it.
        start = self._publish({"type": INITIAL_HEARTBEAT})
        self._thread = threading.Thread(target=self._poll, args=(start,), daemon=True)
        self._thread.start()
        self._timers = threading.Thread(target=self._run_timers, daemon=True)
        self._timers.start()

    def close(self):
        """`close()`: ADAPTER_CLOSE, then the timers and the poll loop stop."""
        self._publish({"type": ADAPTER_CLOSE})
        self._stopped.set()
        self._thread.join(timeout=TIMEOUT)
        self._timers.join(timeout=TIMEOUT)
        self.redis.close()
        self._reader.close()

    # -- adapter.ts: the stream ---------------------------------------------------------------

    def _poll(self, offset):
        while not self._stopped.is_set():
            try:
                response = self._reader.xread({self.stream_name: offset}, count=self.read_count,
                                              block=BLOCK_DURATION_MS)
            except Exception:  # noqa: BLE001 - poll() logs and polls again
                time.sleep(0.05)
                continue
            for _, entries in response or []:
                for entry_id, fields in entries:
                    message = {k.decode(): v.decode() for k, v in fields.items()}
                    if message.get("nsp") == self.nsp:  # namespaceToAdapters.get(message.nsp)
                        self._on_raw_message(message)
                    offset = entry_id.decode()

    @staticmethod
    def encode(message):
        raw = {"uid": message["uid"], "nsp": message["nsp"], "type": str(message["type"])}
        if message.get("data"):
            if message["type"] in MAY_CONTAIN_BINARY and has_binary(message["data"]):
                raw["data"] = base64.b64encode(msgpack.packb(message["data"], use_bin_type=True)).decode()
            else:
                raw["data"] = json.dumps(message["data"], separators=(",", ":"))
        return raw

    @staticmethod
    def decode(raw):
        message = {"uid": raw["uid"], "nsp": raw["nsp"], "type": int(raw["type"])}
        if raw.get("data"):
            if raw["data"].startswith("{"):
                message["data"] = json.loads(raw["data"])
            else:
                message["data"] = msgpack.unpackb(base64.b64decode(raw["data"]), raw=False)
        return message

    def _do_publish(self, message):
        return self.redis.xadd(self.stream_name, self.encode(message), maxlen=self.max_len, approximate=True).decode()

    def _on_raw_message(self, raw):
        try:
            message = self.decode(raw)
        except (ValueError, KeyError):
            return
        self._on_message(message)

    # -- cluster-adapter.ts: ClusterAdapterWithHeartbeat ----------------------------------------

    def _publish(self, message):
        message["uid"] = self.uid
        message["nsp"] = self.nsp
        self._last_publish = time.monotonic()  # scheduleHeartbeat(): the timer is pushed back
        return self._do_publish(message)

    def _run_timers(self):
        while not self._stopped.wait(0.05):
            now = time.monotonic()
            if now - self._last_publish >= self.heartbeat_interval:
                self._publish({"type": HEARTBEAT})
            with self._lock:
                for uid, seen in list(self.nodes.items()):
                    if now - seen > self.heartbeat_timeout:
                        self._remove_node(uid)

    def server_count(self):
        with self._lock:
            return 1 + len(self.nodes)

    def _remove_node(self, uid):
        for request_id, request in list(self.custom_requests.items()):
            request["missing"].discard(uid)
            if not request["missing"]:
                self.custom_requests.pop(request_id)
                request["done"].set()
        self.nodes.pop(uid, None)

    def _on_message(self, message):
        if message["uid"] == self.uid:
            return
        with self._lock:
            if message["uid"] and message["uid"] != EMITTER_UID:
                self.nodes[message["uid"]] = time.monotonic()
            kind = message["type"]
            if kind == INITIAL_HEARTBEAT:
                self._publish({"type": HEARTBEAT})
            elif kind == HEARTBEAT:
                pass
            elif kind == ADAPTER_CLOSE:
                self._remove_node(message["uid"])
            else:
                self._on_cluster_message(message)

    # -- cluster-adapter.ts: ClusterAdapter -----------------------------------------------------

    def _on_cluster_message(self, message):
        if message["nsp"] != self.nsp:
            return
        kind, data, sender = message["type"], message.get("data", {}), message["uid"]
        if kind == BROADCAST:
            if data.get("requestId") is not None:
                request_id = data["requestId"]
                self._local_broadcast_with_ack(
                    data["packet"], data["opts"],
                    lambda count: self._publish({"type": BROADCAST_CLIENT_COUNT,
                                                 "data": {"requestId": request_id, "clientCount": count}}),
                    lambda arg: self._publish({"type": BROADCAST_ACK,
                                               "data": {"requestId": request_id, "packet": arg}}))
            else:
                for socket in self._matching(data["opts"]):
                    self._deliver(socket, data["packet"])
        elif kind == SOCKETS_JOIN:
            for socket in self._matching(data["opts"]):
                self._add_all(socket.id, data["rooms"])
        elif kind == SOCKETS_LEAVE:
            for socket in self._matching(data["opts"]):
                for room in data["rooms"]:
                    self._del(room, socket.id)
        elif kind == DISCONNECT_SOCKETS:
            for socket in self._matching(data["opts"]):
                self._disconnect(socket)
        elif kind == FETCH_SOCKETS:
            sockets = [{"id": s.id, "handshake": {}, "rooms": sorted(self.sids.get(s.id, ())), "data": {}}
                       for s in self._matching(data["opts"])]
            self._publish({"type": FETCH_SOCKETS_RESPONSE,
                           "data": {"requestId": data["requestId"], "sockets": sockets}})
        elif kind == SERVER_SIDE_EMIT:
            self.server_side_emits.append(data["packet"])
            if data.get("requestId") is not None and self.server_side_emit_reply is not None:
                self._publish({"type": SERVER_SIDE_EMIT_RESPONSE,
                               "data": {"requestId": data["requestId"], "packet": self.server_side_emit_reply}})
        elif kind in (BROADCAST_CLIENT_COUNT, BROADCAST_ACK, FETCH_SOCKETS_RESPONSE, SERVER_SIDE_EMIT_RESPONSE):
            self._on_response(message)

    def _on_response(self, response):
        data = response.get("data", {})
        request_id = data.get("requestId")
        if response["type"] in (FETCH_SOCKETS_RESPONSE, SERVER_SIDE_EMIT_RESPONSE):
            request = self.custom_requests.get(request_id)
            if request is None:
                return
            if response["type"] == FETCH_SOCKETS_RESPONSE:
                request["responses"].extend(data["sockets"])
            else:
                request["responses"].append(data.get("packet"))
            request["missing"].discard(response["uid"])
            if not request["missing"]:
                self.custom_requests.pop(request_id)
                request["done"].set()
            return
        request = self.ack_requests.get(request_id)
        if request is None:
            return
        if response["type"] == BROADCAST_CLIENT_COUNT:
            request["client_count"](data["clientCount"])
        else:
            request["ack"](data.get("packet"))

    # -- in-memory-adapter.ts -----------------------------------------------------------------

    def connect(self, ack_reply=None):
        socket = PeerSocket(base64id())
        socket.ack_reply = ack_reply
        socket.disconnected = False
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
            self.rooms.setdefault(room, set()).add(sid)

    def _del(self, room, sid):
        self.sids.get(sid, set()).discard(room)
        if room in self.rooms:
            self.rooms[room].discard(sid)
            if not self.rooms[room]:
                del self.rooms[room]

    def _disconnect(self, socket):
        for room in list(self.sids.get(socket.id, ())):
            self._del(room, socket.id)
        self.sids.pop(socket.id, None)
        self.sockets.pop(socket.id, None)
        with socket.arrived:
            socket.disconnected = True
            socket.arrived.notify_all()

    def _matching(self, opts):
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

    def _local_broadcast_with_ack(self, packet, opts, client_count_callback, ack):
        targets = self._matching(opts)
        client_count_callback(len(targets))
        for socket in targets:
            self._deliver(socket, packet)
            if socket.ack_reply is not None:
                ack(socket.ack_reply)

    # -- the server's API, as a Node application calls it ----------------------------------------

    def emit(self, event, *args, rooms=(), except_=()):
        """`io.to(rooms).except(except_).emit(event, ...args)`: publish, then deliver locally.
        Returns the entry id, the offset `addOffsetIfNecessary` gives the packet."""
        packet = {"type": 2, "data": [event, *args], "nsp": self.nsp}
        opts = {"rooms": list(rooms), "except": list(except_), "flags": {}}
        with self._lock:
            offset = self._publish({"type": BROADCAST, "data": {"packet": packet, "opts": opts}})
            for socket in self._matching(opts):
                self._deliver(socket, packet)
        return offset

    def sockets_join(self, rooms, new_rooms):
        """`io.in(rooms).socketsJoin(new_rooms)`."""
        opts = {"rooms": list(rooms), "except": [], "flags": {}}
        with self._lock:
            self._publish({"type": SOCKETS_JOIN, "data": {"opts": opts, "rooms": list(new_rooms)}})
            for socket in self._matching(opts):
                self._add_all(socket.id, new_rooms)

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
            state["expected_servers"] = self.server_count()
            check_completeness()
        timed_out = not done.wait(timeout)
        with self._lock:
            self.ack_requests.pop(request_id, None)
            return list(state["responses"]), timed_out

    def _custom_request(self, kind, data, responses, timeout):
        """`fetchSockets` / `serverSideEmit` of ClusterAdapterWithHeartbeat: wait for the uids
        known now; returns (responses, timed_out)."""
        request_id = os.urandom(8).hex()
        with self._lock:
            if not self.nodes:
                return responses, False
            request = {"missing": set(self.nodes), "responses": responses, "done": threading.Event()}
            self.custom_requests[request_id] = request
            self._publish({"type": kind, "data": {**data, "requestId": request_id}})
        timed_out = not request["done"].wait(timeout)
        with self._lock:
            self.custom_requests.pop(request_id, None)
            return list(request["responses"]), timed_out

    def fetch_sockets(self, rooms=(), timeout=DEFAULT_TIMEOUT):
        """`io.in(rooms).fetchSockets()`: this server's sockets, then every other node's."""
        opts = {"rooms": list(rooms), "except": [], "flags": {}}
        with self._lock:
            local = [{"id": s.id, "rooms": sorted(self.sids.get(s.id, ()))} for s in self._matching(opts)]
        return self._custom_request(FETCH_SOCKETS, {"opts": opts}, local, timeout)

    def server_side_emit_with_ack(self, event, *args, timeout=DEFAULT_TIMEOUT):
        """`io.serverSideEmitWithAck(event, ...args)`."""
        return self._custom_request(SERVER_SIDE_EMIT, {"packet": [event, *args]}, [], timeout)

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

    # -- adapter.ts: connection state recovery ----------------------------------------------------

    def persist_session(self, session, max_disconnection_duration):
        """`persistSession`: `SET <sessionKeyPrefix><pid> <base64 of msgpack(session)>` with the
        server's maxDisconnectionDuration, which lib/util.ts `SET` passes as `PX`."""
        encoded = base64.b64encode(msgpack.packb(session, use_bin_type=True)).decode()
        self.redis.set(self.session_key_prefix + session["pid"], encoded, px=max_disconnection_duration)

    def restore_session(self, pid, offset):
        """`restoreSession`: the session with its `missedPackets`, or None where Node rejects."""
        if not re.fullmatch(r"[0-9]+-[0-9]+", offset):
            return None  # "invalid offset"
        key = self.session_key_prefix + pid
        # lib/util.ts `GETDEL`: MULTI GET DEL, beside `XRANGE offset offset`.
        pipeline = self.redis.pipeline(transaction=True)
        pipeline.get(key)
        pipeline.delete(key)
        raw_session, _ = pipeline.execute()
        offset_exists = self.redis.xrange(self.stream_name, offset, offset)
        if not raw_session or not offset_exists:
            return None  # "session or offset not found"
        session = msgpack.unpackb(base64.b64decode(raw_session), raw=False)
        session["missedPackets"] = []
        for _ in range(RESTORE_SESSION_MAX_XRANGE_CALLS):
            entries = self.redis.xrange(self.stream_name, self.next_offset(offset), "+")
            if not entries:
                break
            for entry_id, fields in entries:
                raw = {k.decode(): v.decode() for k, v in fields.items()}
                if raw.get("nsp") == self.nsp and raw.get("type") == "3":
                    message = self.decode(raw)
                    if self.should_include_packet(session["rooms"], message["data"]["opts"]):
                        # With the entry's id, as the adapter's pull request #40 appends it.
                        session["missedPackets"].append([*message["data"]["packet"]["data"], entry_id.decode()])
                offset = entry_id.decode()
        return session

    @staticmethod
    def next_offset(offset):
        """`nextOffset`: exclusive ranges without Redis 6.2's `(`."""
        timestamp, sequence = offset.split("-")
        return f"{timestamp}-{int(sequence) + 1}"

    @staticmethod
    def should_include_packet(session_rooms, opts):
        included = not opts["rooms"] or any(room in opts["rooms"] for room in session_rooms)
        not_excluded = all(room not in opts["except"] for room in session_rooms)
        return included and not_excluded

    def wait_nodes(self, count, timeout=TIMEOUT * 2):
        deadline = time.monotonic() + timeout
        while self.server_count() != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the Node peer counts {self.server_count()} servers, not {count}")
            time.sleep(0.01)
