"""The chat backend of examples/ in each language (Python, Node, Go, shell) runs as a real process
next to sidecast and passes the same scripted session, driven by python-socketio clients: a client
without a token is rejected, the token is the name (kept in the socket's data) that "joined",
"message", "who" and "left" carry, messages reach the room with an ack, "who" lists the room through
a `fetch`, "left" follows a disconnect, and the backend attaches again when sidecast restarts.

A language whose toolchain is absent is skipped (the reason is printed), except under CI=true,
where every toolchain must be there."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

import socketio

from harness import REPO, TIMEOUT, Client, start_process, start_sidecast, wait_until

EXAMPLES = os.path.join(REPO, "examples")
IN_CI = os.environ.get("CI") == "true"
ATTACHED = "attached to sidecast node"


def require_tools(*tools):
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if not absent:
        return
    reason = f"{', '.join(absent)} not installed"
    if IN_CI:
        raise AssertionError(f"{reason}, but CI=true: scripts/common.sh should install it")
    print(f"skipping: {reason}", file=sys.stderr, flush=True)
    raise unittest.SkipTest(reason)


class ChatSession:
    """Mixin: a subclass names its toolchain in `tools` and its process in `command(path)`.

    The backend reaches sidecast through a symbolic link, so that a test can point it at a
    restarted sidecast (each harness sidecast has a socket of its own)."""

    tools = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        require_tools(*cls.tools)

    def setUp(self):
        self.sidecast = start_sidecast(self)
        links = tempfile.TemporaryDirectory(prefix="sidecast-chat-")
        self.addCleanup(links.cleanup)
        self.link = os.path.join(links.name, "sidecast.sock")
        os.symlink(self.sidecast.socket_path, self.link)
        self.start_backend()

    def start_backend(self):
        self.backend_process = start_process(self.command(self.link), f"chat-{self.language}", cwd=REPO)
        self.addCleanup(self.stop_backend)
        self.wait_attached(1)

    def stop_backend(self):
        if self.backend_process.poll() is not None:
            return
        self.backend_process.terminate()
        try:
            self.backend_process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.backend_process.kill()
            self.backend_process.wait()
            raise AssertionError(f"the {self.language} backend ignored SIGTERM for 10 s")

    def wait_attached(self, times):
        """Waits until the backend has logged its `times`-th welcome from sidecast."""
        def attached():
            if self.backend_process.poll() is not None:
                raise AssertionError(f"the {self.language} backend exited "
                                     f"with status {self.backend_process.returncode}")
            return sum(ATTACHED in line for line in self.backend_process.log_lines) >= times
        wait_until(attached, timeout=30, message=f"the {self.language} backend to attach")

    def chat_client(self, name, room="lobby"):
        client = Client(f"{self.sidecast.url}/?room={room}", transports=["polling", "websocket"],
                        auth={"token": name})
        self.addCleanup(client.close)
        client.connect()
        self.assertEqual(client.wait_for("joined"), ({"sid": client.sid(), "name": name},))
        return client

    @staticmethod
    def online(*clients):
        """What "who" answers for these clients, in its order-free form."""
        return sorted(({"sid": client.sid(), "name": name} for client, name in clients),
                      key=lambda member: member["sid"])

    def assert_who(self, asker, *clients):
        (who,) = asker.call("who")
        self.assertEqual(sorted(who, key=lambda member: member["sid"]), self.online(*clients))

    def assert_rejected(self, auth):
        client = Client(self.sidecast.url, auth=auth)
        self.addCleanup(client.close)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            client.connect()
        self.assertEqual(client.wait_for("connect_error"), ({"message": "missing token"},))

    def test_client_without_token_is_rejected(self):
        self.assert_rejected(None)
        self.assert_rejected({"token": ""})
        self.assert_rejected({"name": "ann"})

    def test_chat_session(self):
        ann = self.chat_client("ann")
        bob = self.chat_client("bob")
        self.assertEqual(ann.wait_for("joined"), ({"sid": bob.sid(), "name": "bob"},))
        kitchen = self.chat_client("kim", room="kitchen")

        self.assertEqual(ann.call("message", "hello bob"), ({"ok": True},))
        expected = ({"from": ann.sid(), "name": "ann", "text": "hello bob"},)
        self.assertEqual(bob.wait_for("message"), expected)
        self.assertEqual(ann.wait_for("message"), expected)

        # Quotes, a newline and characters outside ASCII survive each language's JSON handling.
        text = 'she said "ça va?"\n\tnaïve ✓ 🎉'
        self.assertEqual(bob.call("message", text), ({"ok": True},))
        self.assertEqual(ann.wait_for("message"), ({"from": bob.sid(), "name": "bob", "text": text},))
        self.assertEqual(bob.wait_for("message"), ({"from": bob.sid(), "name": "bob", "text": text},))

        self.assert_who(bob, (ann, "ann"), (bob, "bob"))
        self.assert_who(kitchen, (kitchen, "kim"))

        ann_sid = ann.sid()
        ann.close()
        self.assertEqual(bob.wait_for("left"), ({"sid": ann_sid, "name": "ann"},))
        self.assert_who(bob, (bob, "bob"))
        kitchen.assert_no("message", within=0.3)
        kitchen.assert_no("joined", within=0)
        kitchen.assert_no("left", within=0)

    def test_backend_restart_loses_nothing(self):
        ann = self.chat_client("ann", room="kitchen")
        bob = self.chat_client("bob", room="kitchen")
        self.stop_backend()
        # Sidecast keeps the group's messages during its grace period; the restarted backend
        # learns bob's room from his resumed connect, and his name from its data.
        reply = bob.call_async("message", "while you were away")
        carol = Client(f"{self.sidecast.url}/?room=kitchen", auth={"token": "carol"})
        self.addCleanup(carol.close)
        carol_connected = threading.Thread(target=carol.connect)
        carol_connected.start()
        self.start_backend()
        self.assertEqual(reply.result(TIMEOUT), ({"ok": True},))
        self.assertEqual(ann.wait_for("message"),
                         ({"from": bob.sid(), "name": "bob", "text": "while you were away"},))
        carol_connected.join(TIMEOUT)
        self.assertEqual(carol.wait_for("joined"), ({"sid": carol.sid(), "name": "carol"},))
        self.assert_who(ann, (ann, "ann"), (bob, "bob"), (carol, "carol"))

    def test_attaches_again_when_sidecast_restarts(self):
        self.sidecast.stop()
        wait_until(lambda: any("sidecast closed the connection" in line
                               for line in self.backend_process.log_lines),
                   message=f"the {self.language} backend to notice that sidecast stopped")
        self.sidecast = start_sidecast(self)
        os.unlink(self.link)
        os.symlink(self.sidecast.socket_path, self.link)
        self.wait_attached(2)

        self.assert_rejected(None)
        ann = self.chat_client("ann")
        self.assertEqual(ann.call("message", "back again"), ({"ok": True},))
        self.assertEqual(ann.wait_for("message"), ({"from": ann.sid(), "name": "ann", "text": "back again"},))
        self.assert_who(ann, (ann, "ann"))


class PythonChatTests(ChatSession, unittest.TestCase):
    language = "python"

    def command(self, path):
        return [sys.executable, os.path.join(EXAMPLES, "python", "chat.py"), path]


class NodeChatTests(ChatSession, unittest.TestCase):
    language = "node"
    tools = ("node",)

    def command(self, path):
        return ["node", os.path.join(EXAMPLES, "node", "chat.js"), path]


class GoChatTests(ChatSession, unittest.TestCase):
    """Built once with `go build`, so that compiling does not count against the attach wait."""

    language = "go"
    tools = ("go",)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        build = tempfile.TemporaryDirectory(prefix="sidecast-chat-go-")
        cls.addClassCleanup(build.cleanup)
        cls.binary = os.path.join(build.name, "chat")
        env = dict(os.environ, GOPROXY="off")  # the module has no requires: nothing to download
        if not (env.get("GOCACHE") or env.get("XDG_CACHE_HOME") or env.get("HOME")):
            env["GOCACHE"] = os.path.join(build.name, "cache")
        result = subprocess.run(["go", "build", "-o", cls.binary, "."], cwd=os.path.join(EXAMPLES, "go"),
                                env=env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"go build failed:\n{result.stdout}{result.stderr}")

    def command(self, path):
        return [self.binary, path]


class ShellChatTests(ChatSession, unittest.TestCase):
    language = "shell"
    tools = ("bash", "socat", "jq")

    def command(self, path):
        return ["bash", os.path.join(EXAMPLES, "shell", "chat.sh"), path]


if __name__ == "__main__":
    unittest.main()
