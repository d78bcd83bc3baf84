#!/usr/bin/env python3
"""A chat backend for sidecast, using only the Python 3 standard library.

Usage: python3 chat.py [SOCKET_PATH]
The socket path defaults to $SIDECAST_SOCKET, then ./sidecast.sock.

What it does (see proto/PROTOCOL.md for the messages):
  - serves namespace "/" and authorizes connections: a client must send auth {"token": ...};
    the token is the user's name, kept by sidecast as the socket's data {"name": token};
  - on connect, joins the socket to the room named by the query parameter `room` (default
    "lobby") and emits "joined" {"sid": sid, "name": name} to that room;
  - event "message" [text]: emits "message" {"from": sid, "name": name, "text": text} to the
    room and answers the ack with {"ok": true} when the client asked for one;
  - event "who": answers the ack with [{"sid": sid, "name": name}, ...] for the room, from a
    `fetch` request (the names come from each socket's data);
  - on disconnect, emits "left" {"sid": sid, "name": name} to the room;
  - reconnects every second while sidecast is away.
"""

import itertools
import json
import os
import socket
import sys
import time

NAMESPACE = "/"
DEFAULT_ROOM = "lobby"


def log(*parts):
    print("chat:", *parts, file=sys.stderr, flush=True)


def name_of(socket, sid):
    """The name in a socket's data (a `connect` message or a `fetch` result), else its sid."""
    data = socket.get("data")
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else sid


class Connection:
    """One attachment to sidecast: line framing, and replies matched to requests by id."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.lines = self.sock.makefile("rb")
        self.ids = itertools.count(1)
        self.pending = {}  # request id -> callback(reply)

    def send(self, message):
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        self.sock.sendall(data.encode("utf-8") + b"\n")

    def request(self, message, callback):
        """Send a command with an id; `callback(reply)` runs when sidecast answers it.

        The read loop keeps running meanwhile: never wait for a reply inside a handler, or
        the reply could never be read.
        """
        message["id"] = next(self.ids)
        self.pending[message["id"]] = callback
        self.send(message)

    def receive(self):
        """The next message from sidecast, or None when the connection closed."""
        line = self.lines.readline()
        return json.loads(line) if line else None

    def close(self):
        self.lines.close()
        self.sock.close()


class Chat:
    """The application: reacts to sidecast's messages on one connection."""

    def __init__(self, conn):
        self.conn = conn
        self.members = {}  # sid -> (the chat room it joined, its name)

    def emit(self, room, event, *args):
        self.conn.send({"type": "emit", "nsp": NAMESPACE, "event": event,
                        "args": list(args), "to": [room]})

    def answer(self, message, *args):
        """Answer the client's acknowledgement, if the event asked for one."""
        if "ack" in message:
            self.conn.send({"type": "ack", "sid": message["sid"], "nsp": message["nsp"],
                            "ack": message["ack"], "args": list(args)})

    def on_connect(self, message):
        sid = message["sid"]
        if "req" in message:
            # An authorization question: the socket does not exist yet.
            auth = message["auth"]
            token = auth.get("token") if isinstance(auth, dict) else None
            if isinstance(token, str) and token:
                # The socket's data: sidecast hands it back in every later connect and fetch.
                self.conn.send({"type": "accept", "req": message["req"], "data": {"name": token}})
            else:
                self.conn.send({"type": "reject", "req": message["req"], "message": "missing token"})
            return
        room = message["handshake"]["query"].get("room") or DEFAULT_ROOM
        name = name_of(message, sid)
        self.members[sid] = (room, name)
        if message.get("resumed"):
            # Known before this backend (re)started: sidecast kept its rooms, nothing to redo.
            return
        self.conn.send({"type": "join", "sid": sid, "nsp": NAMESPACE, "rooms": [room]})
        self.emit(room, "joined", {"sid": sid, "name": name})

    def on_event(self, message):
        sid = message["sid"]
        room, name = self.members.get(sid, (DEFAULT_ROOM, sid))
        if message["event"] == "message":
            text = message["args"][0] if message["args"] else ""
            self.emit(room, "message", {"from": sid, "name": name, "text": text})
            self.answer(message, {"ok": True})
        elif message["event"] == "who" and "ack" in message:
            def reply(answer):
                sockets = answer.get("sockets", []) if answer["ok"] else []
                self.answer(message, [{"sid": s["sid"], "name": name_of(s, s["sid"])} for s in sockets])
            self.conn.request({"type": "fetch", "nsp": NAMESPACE, "in": [room]}, reply)

    def on_disconnect(self, message):
        member = self.members.pop(message["sid"], None)
        if member is not None:
            room, name = member
            self.emit(room, "left", {"sid": message["sid"], "name": name})

    def dispatch(self, message):
        kind = message.get("type")
        if kind == "connect":
            self.on_connect(message)
        elif kind == "event":
            self.on_event(message)
        elif kind == "disconnect":
            self.on_disconnect(message)
        elif kind == "reply":
            callback = self.conn.pending.pop(message.get("id"), None)
            if callback:
                callback(message)
        elif kind == "welcome":
            log("attached to sidecast node", message.get("node"))
        elif kind == "error":
            log("sidecast reports", message["error"], "for", repr(message.get("line")))
        elif kind == "shutdown":
            log("sidecast is shutting down")
        # Other types may appear in later protocol versions: ignore them.


def serve(path):
    """Attach once and handle messages until sidecast goes away."""
    conn = Connection(path)
    try:
        conn.send({"type": "hello", "version": 1, "nsps": [NAMESPACE],
                   "group": "chat", "authorize": True})
        chat = Chat(conn)
        while (message := conn.receive()) is not None:
            chat.dispatch(message)
    finally:
        conn.close()


def main():
    path = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get("SIDECAST_SOCKET") or "./sidecast.sock"
    waiting = False
    while True:
        try:
            serve(path)
            log("sidecast closed the connection")
            waiting = False
        except (FileNotFoundError, ConnectionRefusedError):
            if not waiting:
                log("waiting for sidecast at", path)
                waiting = True
        except (OSError, ValueError) as error:
            log("connection lost:", error)
        time.sleep(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
