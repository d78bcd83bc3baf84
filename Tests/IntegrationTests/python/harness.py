"""Test harness for the integration tests.

It runs the real `sidecast` binary (path in SIDECAST_BIN) on a free loopback port with a
private Unix socket, speaks the backend NDJSON protocol with the standard library
(`Backend`), and drives python-socketio clients whose events land in thread-safe inboxes
(`Client`). Every wait has a deadline; nothing sleeps a fixed time when a wait would do,
except `assert_nothing`, which by its nature watches a window of time.
"""

import base64
import concurrent.futures
import ctypes
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import requests
import socketio
import websocket

SIDECAST_BIN = os.environ.get("SIDECAST_BIN")
VERBOSE = os.environ.get("SIDECAST_TEST_VERBOSE") == "1"
TIMEOUT = float(os.environ.get("SIDECAST_TEST_WAIT", "5"))
# Event loops of every sidecast the harness starts (`--threads`); unset leaves sidecast's default.
THREADS = os.environ.get("SIDECAST_TEST_THREADS")
HERE = os.path.dirname(os.path.realpath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def b64(data):
    """The backend protocol's form of a binary value."""
    return {"$binary": base64.b64encode(data).decode("ascii")}


def unb64(value):
    """Bytes from a {"$binary": ...} value; fails the test when `value` is something else."""
    if not (isinstance(value, dict) and set(value) == {"$binary"}):
        raise AssertionError(f"expected a {{'$binary': ...}} value, got {value!r}")
    return base64.b64decode(value["$binary"])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A runner may start this process with signals blocked (Foundation's Process passes on the
# mask of the thread that spawns it): unblock them so SIGTERM stops this process and, through
# the inherited mask, the processes it starts.
signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _exit_when_orphaned(parent=os.getppid()):
    """A test process whose runner is gone (e.g. `swift test --filter` ended while this module
    ran in the background) exits at once; its servers follow through their death signal."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(3)


threading.Thread(target=_exit_when_orphaned, daemon=True, name="orphan-watch").start()


def _die_with_parent():
    """Runs in the child before exec: a test runner killed on timeout takes its servers along."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def start_process(args, name, **popen):
    """Starts a helper process whose output is copied, prefixed, into the test log."""
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
        **popen,
    )
    proc.log_lines = []

    def pump():
        with proc.stdout:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                proc.log_lines.append(line)
                print(f"[{name}] {line}", file=sys.stderr, flush=True)

    threading.Thread(target=pump, daemon=True, name=f"{name}-log").start()
    return proc


def wait_until(predicate, timeout=TIMEOUT, interval=0.02, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class Sidecast:
    """One running sidecast process. Use `start_sidecast(test, ...)`, which stops it at cleanup."""

    def __init__(self, *flags, namespaces=("/",), env=None, socket_path=None):
        if not SIDECAST_BIN:
            raise unittest.SkipTest("SIDECAST_BIN is not set: run scripts/test.sh")
        self.port = free_port()
        self.killed = False
        self._dir = tempfile.TemporaryDirectory(prefix="sidecast-test-")
        self.socket_path = socket_path or os.path.join(self._dir.name, "sidecast.sock")
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        # A free admin port, so that instances can run side by side, and no drain delay, so
        # that SIGTERM stops at once.
        args = [SIDECAST_BIN, "--host", "127.0.0.1", "--port", str(self.port),
                "--socket", self.socket_path, "--admin-port", "0", "--drain-delay", "0"]
        for nsp in namespaces:
            args += ["--namespace", nsp]
        if VERBOSE:
            args += ["--log-level", "debug"]
        if THREADS:
            args += ["--threads", THREADS]
        args += [str(f) for f in flags]
        print(f"[harness] starting {' '.join(args[1:])}", file=sys.stderr, flush=True)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = start_process(args, "sidecast", env=full_env)
        try:
            wait_until(self._ready, timeout=20, message="sidecast to accept on its port and socket")
        except AssertionError:
            self.proc.kill()
            self.proc.wait()
            raise

    @property
    def log(self):
        return "\n".join(self.proc.log_lines)

    def wait_for_log(self, text, count=1, timeout=TIMEOUT):
        """Waits until `text` appeared in `count` of sidecast's log lines: the only sign of some
        events, such as sidecast noticing that a backend went away."""
        wait_until(lambda: sum(text in line for line in self.proc.log_lines) >= count, timeout,
                   message=f"{count} sidecast log line(s) containing {text!r}")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"sidecast exited early with status {self.proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.socket_path)
            finally:
                s.close()
            return True
        except OSError:
            return False

    def kill(self):
        """SIGKILL: the node vanishes without draining; `stop` then expects no clean exit."""
        self.proc.kill()
        self.proc.wait()
        self.killed = True

    def stop(self):
        """SIGTERM, then asserts a clean exit (status 0) within ten seconds."""
        if self.killed:
            return self._dir.cleanup()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("sidecast did not exit within 10 s of SIGTERM")
        self._dir.cleanup()
        if self.proc.returncode != 0:
            raise AssertionError(f"sidecast exited with status {self.proc.returncode}, expected 0")

    def backend(self, test=None, hello=True, **hello_fields):
        """A connected `Backend`; with `hello`, the handshake is done and `welcome` checked."""
        backend = Backend(self.socket_path)
        if test is not None:
            test.addCleanup(backend.close)
        if hello:
            backend.hello(**hello_fields)
        return backend

    def client(self, test=None, **kwargs):
        """A connected `Client`; disconnected at cleanup when `test` is given."""
        client = Client(self.url, **kwargs)
        if test is not None:
            test.addCleanup(client.close)
        client.connect()
        return client


def start_sidecast(test, *flags, **kwargs):
    """Starts sidecast for `test` (a TestCase); stopping it with exit 0 is part of the test."""
    sidecast = Sidecast(*flags, **kwargs)
    test.addCleanup(sidecast.stop)
    return sidecast


class Inbox:
    """Thread-safe list of received items; `take` removes the first item matching a predicate,
    so items that a test did not ask for yet are kept for later waits."""

    def __init__(self, what):
        self._what = what
        self._items = []
        self._cond = threading.Condition()
        self.closed = False

    def put(self, item):
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def close(self):
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def pending(self):
        with self._cond:
            return list(self._items)

    def take(self, predicate, timeout=TIMEOUT, description="item"):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, item in enumerate(self._items):
                    if predicate(item):
                        return self._items.pop(i)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {self._what} {description}; "
                        f"pending: {self._items!r}")
                self._cond.wait(remaining)

    def assert_nothing(self, predicate, within=0.5, description="item"):
        """Fails if an item matching `predicate` is or becomes pending within `within` seconds."""
        deadline = time.monotonic() + within
        with self._cond:
            while True:
                found = [item for item in self._items if predicate(item)]
                if found:
                    raise AssertionError(f"unexpected {self._what} {description}: {found[0]!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def wait_closed(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {self._what} to close")
                self._cond.wait(remaining)


def _matches(fields):
    def predicate(message):
        return all(message.get(k) == v for k, v in fields.items())
    return predicate


class Backend:
    """A backend connection on sidecast's Unix socket, speaking NDJSON."""

    _ids = itertools.count(1)

    def __init__(self, socket_path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(self.socket_path_checked(socket_path))
        self.sock.settimeout(None)
        self.inbox = Inbox("backend message")
        self._send_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True, name="backend-reader").start()

    @staticmethod
    def socket_path_checked(path):
        if not os.path.exists(path):
            raise AssertionError(f"backend socket {path} does not exist")
        return path

    def _read(self):
        try:
            with self.sock.makefile("rb") as reader:
                for raw in reader:
                    try:
                        message = json.loads(raw)
                    except ValueError:
                        message = {"type": "<not json>", "line": raw.decode("utf-8", "replace")}
                    if VERBOSE:
                        print(f"[backend<] {raw.decode('utf-8', 'replace').rstrip()}", file=sys.stderr)
                    self.inbox.put(message)
        except OSError:
            pass
        finally:
            self.inbox.close()

    # Sending

    def send(self, message):
        self.send_raw(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def send_raw(self, data):
        if VERBOSE:
            print(f"[backend>] {data.decode('utf-8', 'replace').rstrip()}", file=sys.stderr)
        with self._send_lock:
            self.sock.sendall(data)

    def hello(self, nsps=("/",), group="default", authorize=False, **extra):
        self.send({"type": "hello", "version": 1, "nsps": list(nsps), "group": group,
                   "authorize": authorize, **extra})
        welcome = self.expect("welcome")
        if welcome.get("version") != 1 or not isinstance(welcome.get("node"), str):
            raise AssertionError(f"bad welcome: {welcome!r}")
        self.node = welcome["node"]
        return welcome

    def request(self, message, timeout=TIMEOUT):
        """Sends `message` with a fresh `id` and returns the `reply` carrying that id."""
        request_id = str(next(self._ids))
        self.send({**message, "id": request_id})
        return self.expect("reply", timeout=timeout, id=request_id)

    def emit(self, event, *args, nsp="/", **options):
        """`options` may hold to, except (write except_), volatile, id, ack."""
        if "except_" in options:
            options["except"] = options.pop("except_")
        self.send({"type": "emit", "nsp": nsp, "event": event, "args": list(args), **options})

    def ack(self, event_message, *args):
        self.send({"type": "ack", "sid": event_message["sid"], "nsp": event_message["nsp"],
                   "ack": event_message["ack"], "args": list(args)})

    def join(self, sid, *rooms, nsp="/"):
        self.send({"type": "join", "sid": sid, "nsp": nsp, "rooms": list(rooms)})

    def leave(self, sid, *rooms, nsp="/"):
        self.send({"type": "leave", "sid": sid, "nsp": nsp, "rooms": list(rooms)})

    def disconnect(self, sid, nsp="/"):
        self.send({"type": "disconnect", "sid": sid, "nsp": nsp})

    # Receiving

    def take(self, predicate, timeout=TIMEOUT, description="message"):
        return self.inbox.take(predicate, timeout, description)

    def expect(self, type, timeout=TIMEOUT, **fields):
        """Removes and returns the first message of `type` whose fields equal `fields`."""
        fields = {"type": type, **fields}
        return self.inbox.take(_matches(fields), timeout, f"matching {fields!r}")

    def assert_no(self, type, within=0.5, **fields):
        fields = {"type": type, **fields}
        self.inbox.assert_nothing(_matches(fields), within, f"matching {fields!r}")

    def expect_connect(self, nsp="/", timeout=TIMEOUT, **fields):
        return self.expect("connect", timeout, nsp=nsp, **fields)

    def expect_event(self, event, nsp="/", timeout=TIMEOUT, **fields):
        return self.expect("event", timeout, nsp=nsp, event=event, **fields)

    def wait_closed(self, timeout=TIMEOUT):
        self.inbox.wait_closed(timeout)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Client:
    """A python-socketio client whose received events, connects, connect errors and
    disconnects are recorded per namespace in `inbox` as (namespace, event, args) tuples."""

    def __init__(self, url, transports=("websocket",), namespaces=("/",), auth=None,
                 path="socket.io", headers=None, http_session=None):
        self.url = url
        self.transports = list(transports) if transports else None
        self.namespaces = list(namespaces)
        self.auth = auth
        self.path = path
        self.headers = headers or {}
        self.inbox = Inbox("client event")
        # Maps an event name to a function of its arguments whose result is the ack reply.
        self.ack_replies = {}
        # A requests.Session carries TLS settings (its `verify` CA file and client `cert`) to
        # both transports: python-engineio passes them on to websocket-client too.
        self.sio = socketio.Client(reconnection=False, http_session=http_session)
        self._handle_messages_in_order()
        for nsp in self.namespaces:
            self._register(nsp)

    def _handle_messages_in_order(self):
        """python-engineio's sync client hands every message to a thread of its own
        (engineio/client.py, `_receive_packet`: `_trigger_event('message', pkt.data,
        run_async=True)`), so the binary attachments of an event can be handled before the
        packet that announces them, and python-socketio then takes one for a packet and fails
        ("invalid literal for int()", python-socketio issue 436; CI saw it once in
        test_emitter). The JS client and browsers handle messages in the order they arrive;
        this client does too, on its read loop. Its handlers only record and compute ack
        replies, so they never wait on the loop they run on."""
        eio = self.sio.eio
        trigger = eio._trigger_event

        def in_order(event, *args, **kwargs):
            if event == "message":
                kwargs["run_async"] = False
            return trigger(event, *args, **kwargs)

        eio._trigger_event = in_order

    def _register(self, nsp):
        def on_any(event, *args):
            self.inbox.put((nsp, event, args))
            reply = self.ack_replies.get(event)
            return reply(*args) if reply else None

        def on_connect():
            self.inbox.put((nsp, "connect", ()))

        def on_connect_error(*data):
            self.inbox.put((nsp, "connect_error", data))

        def on_disconnect(*reason):
            self.inbox.put((nsp, "disconnect", reason))

        self.sio.on("*", on_any, namespace=nsp)
        self.sio.on("connect", on_connect, namespace=nsp)
        self.sio.on("connect_error", on_connect_error, namespace=nsp)
        self.sio.on("disconnect", on_disconnect, namespace=nsp)

    def connect(self):
        self.sio.connect(self.url, headers=self.headers, auth=self.auth,
                         transports=self.transports, namespaces=self.namespaces,
                         socketio_path=self.path, wait_timeout=TIMEOUT)

    def sid(self, nsp="/"):
        return self.sio.get_sid(nsp)

    def transport(self):
        return self.sio.transport()

    def emit(self, event, *args, nsp="/"):
        self.sio.emit(event, _socketio_data(args), namespace=nsp)

    def call(self, event, *args, nsp="/", timeout=TIMEOUT):
        """Emits with an ack callback; returns the ack's arguments as a tuple."""
        try:
            return self.call_async(event, *args, nsp=nsp).result(timeout)
        except concurrent.futures.TimeoutError:
            raise AssertionError(f"no ack for {event!r} on {nsp} within {timeout}s") from None

    def call_async(self, event, *args, nsp="/"):
        """Emits with an ack callback; returns a Future of the ack's arguments (a tuple)."""
        future = concurrent.futures.Future()
        self.sio.emit(event, _socketio_data(args), namespace=nsp,
                      callback=lambda *reply: future.set_result(reply))
        return future

    def wait_for(self, event, nsp="/", timeout=TIMEOUT):
        """Removes and returns the arguments of the first `event` received on `nsp`."""
        _, _, args = self.inbox.take(lambda item: item[0] == nsp and item[1] == event,
                                     timeout, f"{event!r} on {nsp}")
        return args

    def assert_no(self, event, nsp="/", within=0.5):
        self.inbox.assert_nothing(lambda item: item[0] == nsp and item[1] == event,
                                  within, f"{event!r} on {nsp}")

    def close(self):
        # python-engineio's polling writer stops as soon as disconnect() changes its state, so
        # packets queued while a POST is in flight (the DISCONNECT and CLOSE among them) would
        # never be sent and the close would wait for the next ping: let the queue drain first.
        eio = self.sio.eio
        deadline = time.monotonic() + 1
        while (eio.state == "connected" and getattr(eio, "queue", None) is not None
               and eio.queue.unfinished_tasks and time.monotonic() < deadline):
            time.sleep(0.01)
        try:
            self.sio.disconnect()
        except Exception:  # a client the server already closed may raise; either way it is gone
            pass


def _socketio_data(args):
    """python-socketio sends a tuple as several arguments and anything else as one."""
    if len(args) == 1:
        return args[0]
    return tuple(args)


# Raw Engine.IO helpers, for requests that python-socketio would never make.

def eio_url(sidecast, transport="polling", sid=None, eio="4", path="/socket.io/"):
    url = f"{sidecast.url}{path}?EIO={eio}&transport={transport}"
    if sid:
        url += f"&sid={sid}"
    return url


def polling_handshake(sidecast):
    """Opens an Engine.IO polling session; returns the open packet's data (sid, upgrades, ...)."""
    response = requests.get(eio_url(sidecast), timeout=TIMEOUT)
    if response.status_code != 200 or not response.text.startswith("0"):
        raise AssertionError(f"handshake failed: {response.status_code} {response.text!r}")
    return json.loads(response.text[1:])


def raw_websocket(sidecast, sid=None, timeout=TIMEOUT):
    """A websocket-client connection on the Engine.IO WebSocket endpoint."""
    url = eio_url(sidecast, transport="websocket", sid=sid).replace("http://", "ws://", 1)
    return websocket.create_connection(url, timeout=timeout)


class RawPolling:
    """A bare HTTP long-polling Engine.IO session."""

    def __init__(self, sidecast):
        self.sidecast = sidecast
        self.http = requests.Session()
        self.open = polling_handshake(sidecast)
        self.sid = self.open["sid"]
        self.url = eio_url(sidecast, sid=self.sid)

    def post(self, *packets, timeout=TIMEOUT):
        """Sends packets (strings) in one payload; returns the HTTP response."""
        return self.http.post(self.url, data="\x1e".join(packets).encode(), timeout=timeout,
                              headers={"Content-Type": "text/plain;charset=UTF-8"})

    def get(self, timeout=TIMEOUT):
        """One poll; returns the packets of its payload (raises on an HTTP error status)."""
        response = self.http.get(self.url, timeout=timeout)
        if response.status_code != 200:
            raise AssertionError(f"poll failed: {response.status_code} {response.text!r}")
        return response.text.split("\x1e")

    def connect(self, nsp="/"):
        """Joins `nsp`; returns the socket id from the CONNECT reply."""
        prefix = "" if nsp == "/" else nsp + ","
        response = self.post("40" + prefix)
        if response.status_code != 200:
            raise AssertionError(f"POST failed: {response.status_code} {response.text!r}")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for packet in self.get():
                if packet.startswith("40" + prefix):
                    return json.loads(packet[len("40" + prefix):])["sid"]
        raise AssertionError(f"no CONNECT reply for {nsp}")


class RawSocketIO:
    """A bare WebSocket Socket.IO client: it answers nothing by itself (no pongs)."""

    def __init__(self, sidecast, timeout=TIMEOUT):
        self.ws = raw_websocket(sidecast, timeout=timeout)
        opening = self.ws.recv()
        if not opening.startswith("0"):
            raise AssertionError(f"expected an Engine.IO open packet, got {opening!r}")
        self.open = json.loads(opening[1:])

    def connect(self, nsp="/", auth=None):
        prefix = "" if nsp == "/" else nsp + ","
        self.ws.send("40" + prefix + (json.dumps(auth) if auth is not None else ""))
        reply = self.recv_skipping_pings()
        if not reply.startswith("40" + prefix):
            raise AssertionError(f"expected a CONNECT reply for {nsp}, got {reply!r}")
        return json.loads(reply[len("40" + prefix):])["sid"]

    def recv_skipping_pings(self):
        while True:
            message = self.ws.recv()
            if message != "2":
                return message

    def close(self):
        try:
            self.ws.close()
        except Exception:  # already closed by the server
            pass


class SidecastTestCase(unittest.TestCase):
    """Base class: one sidecast per test unless a subclass says otherwise via `sidecast_flags`
    and `namespaces`; `self.backend` says hello for `backend_nsps`."""

    sidecast_flags = ()
    namespaces = ("/",)
    backend_nsps = ("/",)

    def setUp(self):
        self.sidecast = start_sidecast(self, *self.sidecast_flags, namespaces=self.namespaces)
        self.backend = self.sidecast.backend(self, nsps=self.backend_nsps)

    def client(self, **kwargs):
        return self.sidecast.client(self, **kwargs)

    def connected_client(self, nsp="/", **kwargs):
        """A client connected to `nsp`, and the backend's `connect` message for it."""
        client = self.client(namespaces=(nsp,), **kwargs)
        message = self.backend.expect_connect(nsp=nsp, sid=client.sid(nsp))
        return client, message
