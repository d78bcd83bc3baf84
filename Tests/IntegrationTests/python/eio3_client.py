"""A python-socketio 4.x client (Socket.IO v4 protocol over Engine.IO v3), driven over stdin.

It runs in the second venv (.venv-eio3, scripts/requirements-eio3.txt), because python-socketio
4.x and 5.x cannot be installed side by side; test_eio3.py starts it as a subprocess.

One JSON command per stdin line, one JSON report per stdout line. Bytes travel as
{"$bytes": base64} in both directions.

Commands:
  {"cmd": "connect", "url": ..., "transports": [...], "namespaces": [...], "events": [...]}
  {"cmd": "emit", "event": ..., "args": [...], "nsp": "/", "ack": id or null}
  {"cmd": "disconnect"}
Reports:
  {"type": "connected", "transport": ...}     after connect() returned
  {"type": "connect", "nsp": ...}             a namespace's connect event
  {"type": "connect_error", "nsp": ..., "args": [...]}
  {"type": "event", "nsp": ..., "event": ..., "args": [...]}
  {"type": "ack", "id": ..., "args": [...]}
  {"type": "disconnect", "nsp": ...}
  {"type": "error", "message": ...}
"""

import base64
import json
import sys
import threading
import time

import socketio

_write_lock = threading.Lock()


def report(**message):
    with _write_lock:
        sys.stdout.write(json.dumps(to_json(message)) + "\n")
        sys.stdout.flush()


def to_json(value):
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def from_json(value):
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        return {key: from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json(item) for item in value]
    return value


def main():
    sio = socketio.Client(reconnection=False)

    def register(nsp, events):
        sio.on("connect", lambda: report(type="connect", nsp=nsp), namespace=nsp)
        sio.on("disconnect", lambda: report(type="disconnect", nsp=nsp), namespace=nsp)
        sio.on("connect_error", lambda *args: report(type="connect_error", nsp=nsp, args=list(args)), namespace=nsp)
        for event in events:
            def handler(*args, event=event):
                report(type="event", nsp=nsp, event=event, args=list(args))
                # An event the server asks an ack for is answered with its arguments reversed.
                return tuple(reversed(args))
            sio.on(event, handler, namespace=nsp)

    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["cmd"] == "connect":
                for nsp in command["namespaces"]:
                    register(nsp, command.get("events", []))
                sio.connect(command["url"], transports=command["transports"], namespaces=command["namespaces"])
                report(type="connected", transport=sio.transport())
            elif command["cmd"] == "emit":
                args = from_json(command["args"])
                ack = command.get("ack")
                callback = None
                if ack is not None:
                    callback = lambda *reply, ack=ack: report(type="ack", id=ack, args=list(reply))
                # python-socketio sends a tuple as several arguments.
                sio.emit(command["event"], tuple(args), namespace=command.get("nsp", "/"), callback=callback)
            elif command["cmd"] == "disconnect":
                # python-engineio's polling writer stops once disconnect() changes its state, so
                # the DISCONNECT and CLOSE queued behind a POST in flight would never be sent:
                # let the queue drain first (as harness.Client.close does for 5.x).
                eio = sio.eio
                deadline = time.monotonic() + 1
                while (eio.state == "connected" and getattr(eio, "queue", None) is not None
                       and eio.queue.unfinished_tasks and time.monotonic() < deadline):
                    time.sleep(0.01)
                sio.disconnect()
                report(type="disconnected")
        except Exception as error:  # reported to the test, which fails with it
            report(type="error", message=f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
