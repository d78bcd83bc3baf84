"""Backends going away: restart inside the grace period loses nothing, sockets move within a
group, resumed and queued connects carry the data backends set, the grace period ends, and other
groups are never affected.

Lines sidecast wrote to a backend before it noticed the backend was gone are lost by design
(PROTOCOL.md §7), so each test waits for sidecast's "backend detached" log line before it makes
clients talk."""

import time
import unittest

from harness import TIMEOUT, SidecastTestCase


class RestartTests(SidecastTestCase):
    sidecast_flags = ("--backend-grace", "5")

    def test_restart_inside_grace_loses_no_event(self):
        early, early_connect = self.connected_client()
        early_sid = early_connect["sid"]
        self.backend.close()
        self.sidecast.wait_for_log("backend detached")

        for i in range(5):
            early.emit("during", i)
        pending_ack = early.call_async("question", "still there?")
        late = self.client()
        late_sid = late.sid()
        late.emit("during", "late")
        early.close()
        early.wait_for("disconnect")

        restarted = self.sidecast.backend(self)
        resumed = restarted.expect_connect(sid=early_sid)
        self.assertIs(resumed.get("resumed"), True)
        self.assertEqual(resumed["handshake"], early_connect["handshake"])
        self.assertEqual([restarted.expect_event("during", sid=early_sid)["args"] for _ in range(5)],
                         [[i] for i in range(5)])
        question = restarted.expect_event("question", sid=early_sid)
        # python-engineio may close the WebSocket before its DISCONNECT packet is written.
        self.assertIn(restarted.expect("disconnect", sid=early_sid)["reason"],
                      ("client namespace disconnect", "transport close"))
        fresh = restarted.expect_connect(sid=late_sid)
        self.assertNotIn("resumed", fresh)
        self.assertEqual(restarted.expect_event("during", sid=late_sid)["args"], ["late"])
        self.assertFalse(pending_ack.done())
        self.assertIn("ack", question)

    def test_queued_ack_is_answered_after_restart(self):
        client, connect = self.connected_client()
        self.backend.close()
        self.sidecast.wait_for_log("backend detached")
        reply = client.call_async("question", 1)
        restarted = self.sidecast.backend(self)
        restarted.expect_connect(sid=connect["sid"])
        restarted.ack(restarted.expect_event("question", sid=connect["sid"]), "answer")
        self.assertEqual(reply.result(TIMEOUT), ("answer",))

    def test_socket_moves_to_another_backend_of_the_group(self):
        second = self.sidecast.backend(self)
        client = self.client()
        sid = client.sid()
        # Sticky: exactly one of the two backends got the socket.
        owner, other = None, None
        deadline = time.monotonic() + TIMEOUT
        while owner is None and time.monotonic() < deadline:
            for candidate, rest in ((self.backend, second), (second, self.backend)):
                if any(m.get("type") == "connect" and m.get("sid") == sid for m in candidate.inbox.pending()):
                    owner, other = candidate, rest
            time.sleep(0.01)
        self.assertIsNotNone(owner, "no backend got the connect")
        owner.expect_connect(sid=sid)
        other.assert_no("connect", within=0.2, sid=sid)
        client.emit("before", 1)
        owner.expect_event("before", sid=sid)
        other.assert_no("event", within=0.2, sid=sid)

        owner.close()
        self.sidecast.wait_for_log("backend detached")
        client.emit("after", 2)
        moved = other.expect_connect(sid=sid)
        self.assertIs(moved.get("resumed"), True)
        self.assertEqual(other.expect_event("after", sid=sid)["args"], [2])

    def test_a_resumed_connect_carries_the_data_a_backend_set(self):
        # Four clients: with four loops (SIDECAST_TEST_THREADS=4) the loops take them in turn,
        # so at least three live on a loop other than the bridge's, which keeps nothing of them
        # between their messages.
        clients = [self.connected_client() for _ in range(4)]
        for n, (_, connect) in enumerate(clients):
            reply = self.backend.request({"type": "data", "sid": connect["sid"], "nsp": "/", "data": {"n": n}})
            self.assertIs(reply.get("ok"), True)
        self.backend.close()
        self.sidecast.wait_for_log("backend detached")
        for client, _ in clients:
            client.emit("after", 1)
        restarted = self.sidecast.backend(self)
        for n, (_, connect) in enumerate(clients):
            resumed = restarted.expect_connect(sid=connect["sid"])
            self.assertIs(resumed.get("resumed"), True)
            self.assertEqual(resumed["data"], {"n": n})
            self.assertEqual(resumed["handshake"], connect["handshake"])
            self.assertEqual(restarted.expect_event("after", sid=connect["sid"])["args"], [1])

    def test_data_set_while_a_group_waits_reaches_its_next_backend(self):
        # The group's queue keeps the connects of clients that came during its grace period;
        # another group's backend sets their data meanwhile, and the connects carry it.
        audit = self.sidecast.backend(self, group="audit")
        self.backend.close()
        self.sidecast.wait_for_log("backend detached")
        sids = [self.client().sid() for _ in range(4)]
        for n, sid in enumerate(sids):
            audit.expect_connect(sid=sid)
            reply = audit.request({"type": "data", "sid": sid, "nsp": "/", "data": {"n": n}})
            self.assertIs(reply.get("ok"), True)
        restarted = self.sidecast.backend(self)
        for n, sid in enumerate(sids):
            connect = restarted.expect_connect(sid=sid)
            self.assertNotIn("resumed", connect)
            self.assertEqual(connect["data"], {"n": n})

    def test_other_groups_are_not_affected(self):
        audit = self.sidecast.backend(self, group="audit")
        client = self.client()
        sid = client.sid()
        self.backend.expect_connect(sid=sid)
        audit.expect_connect(sid=sid)
        self.backend.close()
        self.sidecast.wait_for_log("backend detached")
        client.emit("e", 1)
        self.assertEqual(audit.expect_event("e", sid=sid)["args"], [1])


class GraceEndTests(SidecastTestCase):
    sidecast_flags = ("--backend-grace", "1")

    def test_events_are_dropped_after_the_grace_period(self):
        client, connect = self.connected_client()
        self.backend.close()
        self.sidecast.wait_for_log("backend detached")
        client.emit("lost", 1)
        time.sleep(2.5)  # the grace period must pass: there is no event to wait for
        restarted = self.sidecast.backend(self)
        client.emit("kept", 2)
        newcomer = self.client()
        restarted.expect_connect(sid=newcomer.sid())
        restarted.expect_event("kept", sid=connect["sid"])
        restarted.assert_no("event", within=0.2, event="lost")


if __name__ == "__main__":
    unittest.main()
