"""Connection authorization: accept, reject, timeout, and how the other groups see it."""

import concurrent.futures
import json
import time
import unittest

import socketio

from harness import TIMEOUT, Client, RawSocketIO, SidecastTestCase


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


if __name__ == "__main__":
    unittest.main()
