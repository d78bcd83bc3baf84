"""Connection authorization: accept, reject, timeout, and how the other groups see it; and
failing closed (PROTOCOL.md §6): --authorize, and no authorizer attached means refusal."""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import unittest

import socketio

from harness import (REPO, SIDECAST_BIN, TIMEOUT, Client, RawSocketIO, SidecastTestCase, start_process,
                     start_sidecast, wait_until)


class AuthorizeTests(SidecastTestCase):
    def setUp(self):
        super().setUp()
        self.gate = self.sidecast.backend(self, group="auth", authorize=True)
        self.pool = concurrent.futures.ThreadPoolExecutor(4)
        self.addCleanup(self.pool.shutdown, wait=False)

    def expect_request(self):
        """The gate's next authorization request (a connect with `req`)."""
        return self.gate.take(lambda m: m.get("type") == "connect" and "req" in m,
                              description="connect with req")

    def start_client(self, auth, transports=("websocket",)):
        """A client connecting in the background (connect blocks until the gate answers)."""
        client = Client(self.sidecast.url, transports=transports, auth=auth)
        self.addCleanup(client.close)
        return client, self.pool.submit(client.connect)

    def test_accept(self):
        client, connecting = self.start_client({"token": "good"})
        request = self.expect_request()
        self.assertIsInstance(request["req"], int)
        self.assertEqual(request["auth"], {"token": "good"})
        self.assertIsNone(request["data"])
        # The other group hears nothing until the socket exists.
        self.backend.assert_no("connect", within=0.2)
        self.gate.send({"type": "accept", "req": request["req"], "data": {"user": "ann"}})
        connecting.result(TIMEOUT)
        self.assertEqual(client.sid(), request["sid"])
        for backend in (self.gate, self.backend):
            connect = backend.expect_connect(sid=request["sid"])
            self.assertNotIn("req", connect)
            self.assertEqual(connect["data"], {"user": "ann"})
            self.assertEqual(connect["auth"], {"token": "good"})
        fetched = self.backend.request({"type": "fetch", "nsp": "/"})["sockets"]
        self.assertEqual([(s["sid"], s["data"]) for s in fetched], [(request["sid"], {"user": "ann"})])
        client.emit("after", 1)
        self.backend.expect_event("after", sid=request["sid"])

    def test_accept_over_polling_without_data(self):
        client, connecting = self.start_client(None, transports=("polling",))
        request = self.expect_request()
        self.assertEqual(request["auth"], {})  # python-socketio sends {} when given no auth
        self.gate.send({"type": "accept", "req": request["req"]})
        connecting.result(TIMEOUT)
        self.assertIsNone(self.backend.expect_connect(sid=request["sid"])["data"])

    def test_reject_with_data(self):
        client, connecting = self.start_client({"token": "bad"})
        request = self.expect_request()
        reply = self.gate.request({"type": "reject", "req": request["req"], "message": "bad token",
                                   "data": {"hint": "pass auth.token"}})
        self.assertTrue(reply["ok"], reply)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            connecting.result(TIMEOUT)
        self.assertEqual(client.wait_for("connect_error"),
                         ({"message": "bad token", "data": {"hint": "pass auth.token"}},))
        self.backend.assert_no("connect", within=0.3)
        self.gate.assert_no("connect", within=0.05)
        self.assertEqual(self.backend.request({"type": "count", "nsp": "/"})["count"], 0)

    def test_reject_without_data(self):
        client, connecting = self.start_client({})
        request = self.expect_request()
        self.gate.send({"type": "reject", "req": request["req"], "message": "no"})
        with self.assertRaises(socketio.exceptions.ConnectionError):
            connecting.result(TIMEOUT)
        self.assertEqual(client.wait_for("connect_error"), ({"message": "no"},))

    def test_unknown_or_repeated_req(self):
        client, connecting = self.start_client({})
        request = self.expect_request()
        self.gate.send({"type": "accept", "req": request["req"]})
        connecting.result(TIMEOUT)
        again = self.gate.request({"type": "reject", "req": request["req"], "message": "late"})
        self.assertEqual((again["ok"], again["error"]["code"]), (False, "unknown_req"))
        never = self.gate.request({"type": "accept", "req": 987654})
        self.assertEqual(never["error"]["code"], "unknown_req")
        # A backend cannot answer a request sent to another backend.
        other_client, other_connecting = self.start_client({})
        other_request = self.expect_request()
        stolen = self.backend.request({"type": "accept", "req": other_request["req"]})
        self.assertEqual(stolen["error"]["code"], "unknown_req")
        self.gate.send({"type": "accept", "req": other_request["req"]})
        other_connecting.result(TIMEOUT)

    def test_reject_requires_a_message(self):
        client, connecting = self.start_client({})
        request = self.expect_request()
        reply = self.gate.request({"type": "reject", "req": request["req"]})
        self.assertEqual(reply["error"]["code"], "missing_field")
        self.gate.send({"type": "accept", "req": request["req"]})
        connecting.result(TIMEOUT)

    def test_client_that_leaves_while_pending(self):
        raw = RawSocketIO(self.sidecast)
        raw.ws.send("40")
        request = self.expect_request()
        self.assertIsNone(request["auth"])
        raw.close()
        # Nothing tells a backend that a client left before its socket existed: give sidecast
        # time to see the close.
        time.sleep(0.5)
        reply = self.gate.request({"type": "accept", "req": request["req"]})
        self.assertFalse(reply["ok"], reply)
        self.assertEqual(reply["error"]["code"], "unknown_req")
        self.backend.assert_no("connect", within=0.2, sid=request["sid"])

    def test_no_answer_is_an_authorization_timeout(self):
        raw = RawSocketIO(self.sidecast, timeout=15)
        self.addCleanup(raw.close)
        raw.ws.send('40{"token":"slow"}')
        request = self.expect_request()
        self.assertEqual(request["auth"], {"token": "slow"})
        answer = raw.recv_skipping_pings()
        self.assertTrue(answer.startswith("44"), answer)
        self.assertEqual(json.loads(answer[2:]), {"message": "authorization timeout"})
        late = self.gate.request({"type": "accept", "req": request["req"]})
        self.assertEqual(late["error"]["code"], "unknown_req")


UNAVAILABLE = {"message": "authorization unavailable"}
REFUSAL_WARNING = "refusing clients: no backend that authorizes the namespace is attached"


class FailClosedTests(unittest.TestCase):
    """A namespace that requires authorization never lets a client in without an answer from
    an authorizing backend, whatever happened to the backends."""

    def start(self, *flags, namespaces=("/",)):
        self.sidecast = start_sidecast(self, "--backend-grace", "1", *flags, namespaces=namespaces)
        # An ordinary group serving every namespace: it must never hear of a refused client.
        self.watcher = self.sidecast.backend(self, nsps=namespaces)

    def refused(self, nsp="/", auth=None):
        """Connects a raw client to `nsp` and returns the CONNECT_ERROR payload it got."""
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        prefix = "" if nsp == "/" else nsp + ","
        raw.ws.send("40" + prefix + (json.dumps(auth) if auth is not None else ""))
        answer = raw.recv_skipping_pings()
        self.assertTrue(answer.startswith("44" + prefix), answer)
        return json.loads(answer[len("44" + prefix):])

    def assert_refused_every_time(self, nsp="/", attempts=5):
        before = self.watcher.request({"type": "count", "nsp": nsp})["count"]
        for attempt in range(attempts):
            self.assertEqual(self.refused(nsp, auth={} if attempt % 2 else None), UNAVAILABLE,
                             f"attempt {attempt + 1}")
        # python-socketio sees the same CONNECT_ERROR as a failed connect.
        client = Client(self.sidecast.url, namespaces=(nsp,))
        self.addCleanup(client.close)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            client.connect()
        self.assertEqual(client.wait_for("connect_error", nsp=nsp), (UNAVAILABLE,))
        self.watcher.assert_no("connect", within=0.3, nsp=nsp)
        self.assertEqual(self.watcher.request({"type": "count", "nsp": nsp})["count"], before)

    def accept_next(self, gate, nsp="/"):
        """Lets a client in through `gate`; returns the client."""
        pool = concurrent.futures.ThreadPoolExecutor(1)
        self.addCleanup(pool.shutdown, wait=False)
        client = Client(self.sidecast.url, namespaces=(nsp,), auth={"token": "good"})
        self.addCleanup(client.close)
        connecting = pool.submit(client.connect)
        request = gate.take(lambda m: m.get("type") == "connect" and "req" in m, description="connect with req")
        self.assertEqual((request["nsp"], request["auth"]), (nsp, {"token": "good"}))
        gate.send({"type": "accept", "req": request["req"]})
        connecting.result(TIMEOUT)
        self.watcher.expect_connect(nsp=nsp, sid=request["sid"])
        return client

    def test_authorizer_gone_past_the_grace_period_refuses_every_client(self):
        self.start()
        gate = self.sidecast.backend(self, group="auth", authorize=True)
        self.accept_next(gate)
        gate.close()
        self.sidecast.wait_for_log("group forgotten after its grace period", timeout=TIMEOUT + 2)
        self.assert_refused_every_time()
        # One warning for the whole burst of refusals: it is rate-limited per namespace.
        self.sidecast.wait_for_log(REFUSAL_WARNING)
        time.sleep(0.2)
        self.assertEqual(sum(REFUSAL_WARNING in line for line in self.sidecast.proc.log_lines), 1,
                         self.sidecast.log)
        # A backend that serves / without authorizing does not reopen it.
        plain = self.sidecast.backend(self, group="plain", authorize=False)
        self.assertEqual(self.refused(), UNAVAILABLE)
        plain.assert_no("connect", within=0.2)
        # An authorizer attaching again restores the usual behaviour.
        again = self.sidecast.backend(self, group="auth", authorize=True)
        self.accept_next(again)

    def test_example_backend_killed_past_the_grace_period(self):
        """The Python example backend (which authorizes by token) is killed with SIGKILL and
        stays down: clients without a token are refused, and so are clients with one."""
        self.start()
        chat = start_process([sys.executable, os.path.join(REPO, "examples", "python", "chat.py"),
                              self.sidecast.socket_path], "chat-python", cwd=REPO)
        self.addCleanup(lambda: chat.poll() is None and (chat.kill(), chat.wait()))
        wait_until(lambda: any("attached to sidecast node" in line for line in chat.log_lines),
                   message="the example backend to attach")
        client = Client(self.sidecast.url, auth={"token": "ann"})
        self.addCleanup(client.close)
        client.connect()
        self.watcher.expect_connect(sid=client.sid())
        chat.send_signal(signal.SIGKILL)
        chat.wait(TIMEOUT)
        self.sidecast.wait_for_log("group forgotten after its grace period", timeout=TIMEOUT + 2)
        self.assert_refused_every_time()
        self.assertEqual(self.refused(auth={"token": "ann"}), UNAVAILABLE)

    def test_request_queued_in_grace_is_refused_when_the_grace_period_ends(self):
        self.start()
        gate = self.sidecast.backend(self, group="auth", authorize=True)
        gate.close()
        self.sidecast.wait_for_log("group has no backend")
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        raw.ws.send("40")
        answer = raw.recv_skipping_pings()
        self.assertTrue(answer.startswith("44"), answer)
        self.assertEqual(json.loads(answer[2:]), UNAVAILABLE)
        self.sidecast.wait_for_log("group forgotten after its grace period")

    def test_authorize_flag_with_no_backend_ever(self):
        self.start("--authorize", "/x", namespaces=("/",))
        self.assert_refused_every_time("/x")
        # Namespaces not named by --authorize are unaffected.
        client = self.sidecast.client(self)
        self.watcher.expect_connect(sid=client.sid())

    def test_authorize_flag_with_an_authorizer_attached_changes_nothing(self):
        self.start("--authorize", "/", "--authorize", "/x", namespaces=("/", "/x"))
        gate = self.sidecast.backend(self, group="auth", nsps=("/", "/x"), authorize=True)
        client = self.accept_next(gate, "/x")
        client.emit("hello", 1, nsp="/x")
        self.watcher.expect_event("hello", nsp="/x", sid=client.sid("/x"))
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        raw.ws.send("40")
        request = gate.take(lambda m: m.get("type") == "connect" and "req" in m, description="connect with req")
        gate.send({"type": "reject", "req": request["req"], "message": "no token"})
        self.assertEqual(json.loads(raw.recv_skipping_pings()[2:]), {"message": "no token"})

    def test_authorize_flag_makes_the_namespace_exist(self):
        self.start("--authorize", "/x", namespaces=("/",))
        raw = RawSocketIO(self.sidecast)
        self.addCleanup(raw.close)
        raw.ws.send("40/y,")
        self.assertEqual(json.loads(raw.recv_skipping_pings()[len("44/y,"):]), {"message": "Invalid namespace"})
        self.assertEqual(self.refused("/x"), UNAVAILABLE)

    def test_authorize_must_name_a_namespace(self):
        for args, env, source in ((["--authorize", "x"], {}, "--authorize"),
                                  ([], {"SIDECAST_AUTHORIZE": "/ok,x"}, "SIDECAST_AUTHORIZE")):
            result = subprocess.run([SIDECAST_BIN, "--print-config", *args], capture_output=True, text=True,
                                    timeout=TIMEOUT * 2, env={**os.environ, **env})
            self.assertEqual(result.returncode, 1, result)
            self.assertIn(source, result.stderr)
            self.assertIn("must start with '/'", result.stderr)
        result = subprocess.run([SIDECAST_BIN, "--print-config", "--authorize", "/a", "--authorize", "/b"],
                                capture_output=True, text=True, timeout=TIMEOUT * 2)
        self.assertEqual(result.returncode, 0, result)
        self.assertIn('authorize = ["/a", "/b"]  # from --authorize', result.stdout)


if __name__ == "__main__":
    unittest.main()
