"""The example backends (examples/python/chat.py, examples/node/chat.js) run as real processes
next to sidecast, and two python-socketio clients chat through them."""

import os
import shutil
import sys
import unittest

import socketio

from harness import REPO, TIMEOUT, Client, start_process, start_sidecast, wait_until

EXAMPLES = os.path.join(REPO, "examples")


class ChatExample:
    """Mixin: `command(socket_path)` names the backend process to run."""

    def setUp(self):
        self.sidecast = start_sidecast(self)
        self.backend_process = self.start_backend()

    def start_backend(self):
        process = start_process(self.command(self.sidecast.socket_path), "chat", cwd=REPO)

        def stop():
            process.terminate()
            process.wait(timeout=10)

        self.addCleanup(stop)
        wait_until(lambda: any("attached to sidecast node" in line for line in process.log_lines)
                   or process.poll() is not None,
                   timeout=15, message="the example backend to attach")
        self.assertIsNone(process.poll(), "the example backend exited")
        return process

    def chat_client(self, token="secret", room="lobby"):
        client = Client(f"{self.sidecast.url}/?room={room}", transports=["polling", "websocket"],
                        auth={"token": token} if token else None)
        self.addCleanup(client.close)
        client.connect()
        return client

    def test_client_without_token_is_rejected(self):
        client = Client(self.sidecast.url, auth=None)
        self.addCleanup(client.close)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            client.connect()
        self.assertEqual(client.wait_for("connect_error"), ({"message": "missing token"},))

    def test_two_clients_chat(self):
        ann = self.chat_client()
        self.assertEqual(ann.wait_for("joined"), ({"sid": ann.sid()},))
        bob = self.chat_client()
        self.assertEqual(bob.wait_for("joined"), ({"sid": bob.sid()},))
        self.assertEqual(ann.wait_for("joined"), ({"sid": bob.sid()},))
        elsewhere = self.chat_client(room="kitchen")
        self.assertEqual(elsewhere.wait_for("joined"), ({"sid": elsewhere.sid()},))

        self.assertEqual(ann.call("message", "hello bob"), ({"ok": True},))
        expected = ({"from": ann.sid(), "text": "hello bob"},)
        self.assertEqual(bob.wait_for("message"), expected)
        self.assertEqual(ann.wait_for("message"), expected)
        self.assertEqual(bob.call("message", "hi ann"), ({"ok": True},))
        self.assertEqual(ann.wait_for("message"), ({"from": bob.sid(), "text": "hi ann"},))

        (who,) = bob.call("who")
        self.assertEqual(sorted(who), sorted([ann.sid(), bob.sid()]))

        ann_sid = ann.sid()
        ann.close()
        self.assertEqual(bob.wait_for("left"), ({"sid": ann_sid},))
        elsewhere.assert_no("message", within=0.2)
        elsewhere.assert_no("left", within=0.01)

    def test_backend_restart_loses_nothing(self):
        ann = self.chat_client()
        bob = self.chat_client()
        ann.wait_for("joined")
        self.backend_process.terminate()
        self.backend_process.wait(timeout=10)
        reply = bob.call_async("message", "while you were away")
        self.backend_process = self.start_backend()
        self.assertEqual(reply.result(TIMEOUT), ({"ok": True},))
        self.assertEqual(ann.wait_for("message"), ({"from": bob.sid(), "text": "while you were away"},))


class PythonChatTests(ChatExample, unittest.TestCase):
    def command(self, socket_path):
        return [sys.executable, os.path.join(EXAMPLES, "python", "chat.py"), socket_path]


class NodeChatTests(ChatExample, unittest.TestCase):
    def setUp(self):
        if shutil.which("node") is None:
            raise unittest.SkipTest("node is not installed, so examples/node/chat.js cannot run")
        super().setUp()

    def command(self, socket_path):
        return ["node", os.path.join(EXAMPLES, "node", "chat.js"), socket_path]


if __name__ == "__main__":
    unittest.main()
