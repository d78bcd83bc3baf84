"""The sidecast command line: the README's flag table matches --help, settings come from flags,
the environment and a config file in that order, the backend socket's file mode, a stale socket
file, a clean exit on SIGTERM and SIGINT, and a failed start that says what to change in one line
and leaves nothing running (not even Redis links reconnecting on a stopped event loop)."""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import unittest

from cluster import start_redis
from harness import REPO, SIDECAST_BIN, TIMEOUT, Sidecast, polling_handshake, start_sidecast

# Flags of --help that configure nothing and so have no row in the README's table.
ACTIONS = {"help", "print-config", "version"}
CHAT_SH = os.path.join(REPO, "examples", "shell", "chat.sh")


def run_sidecast(*args, env=None):
    if not SIDECAST_BIN:
        raise unittest.SkipTest("SIDECAST_BIN is not set: run scripts/test.sh")
    return subprocess.run([SIDECAST_BIN, *args], capture_output=True, text=True, timeout=TIMEOUT * 2,
                          env={**os.environ, **(env or {})})


def help_flags():
    """{flag: default or None} from `sidecast --help`."""
    text = run_sidecast("--help").stdout
    flags = {}
    for block in re.split(r"\n(?=  -)", text.split("OPTIONS:", 1)[1]):
        names = re.findall(r"--([a-z][a-z0-9-]*)", block.split("  ", 2)[1] if block.startswith("  -") else "")
        if not names:
            continue
        default = re.search(r"\(default: (.*?)[;)]", " ".join(block.split()))
        flags[names[0]] = default.group(1) if default else None
    return flags


def readme_flags():
    """{flag: (environment variable, default)} from the README's table."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as readme:
        rows = re.findall(r"^\| `--([a-z0-9-]+)` \| `(SIDECAST_[A-Z0-9_]+)` \| ([^|]+) \|", readme.read(), re.M)
    return {flag: (variable, default.strip().strip("`")) for flag, variable, default in rows}


class CommandLineTests(unittest.TestCase):
    def test_readme_table_matches_help(self):
        documented = readme_flags()
        offered = help_flags()
        self.assertIn("port", offered, "could not read --help")
        self.assertEqual(set(documented), set(offered) - ACTIONS)
        for flag, (variable, default) in documented.items():
            self.assertEqual(variable, "SIDECAST_" + flag.upper().replace("-", "_"), flag)
            if offered[flag] is not None:
                self.assertEqual(default, offered[flag], f"default of --{flag}")

    def test_flag_beats_environment_beats_config_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as config:
            config.write('ping-interval = 2222\nping-timeout = 3333\nnamespace = ["/from-file"]\n')
        self.addCleanup(os.unlink, config.name)
        from_file = start_sidecast(self, "--config", config.name, namespaces=())
        opening = polling_handshake(from_file)
        self.assertEqual((opening["pingInterval"], opening["pingTimeout"]), (2222, 3333))
        from_env = start_sidecast(self, "--config", config.name, namespaces=(),
                                  env={"SIDECAST_PING_INTERVAL": "4444"})
        opening = polling_handshake(from_env)
        self.assertEqual((opening["pingInterval"], opening["pingTimeout"]), (4444, 3333))
        from_flag = start_sidecast(self, "--config", config.name, "--ping-interval", "5555", namespaces=(),
                                   env={"SIDECAST_PING_INTERVAL": "4444"})
        self.assertEqual(polling_handshake(from_flag)["pingInterval"], 5555)

    def test_repeatable_setting_from_the_environment(self):
        sidecast = start_sidecast(self, namespaces=(), env={"SIDECAST_NAMESPACE": "/a, /b"})
        for nsp in ("/a", "/b"):
            client = sidecast.client(self, namespaces=(nsp,))
            self.assertTrue(client.sid(nsp))

    def test_print_config_masks_the_redis_password(self):
        result = run_sidecast("--print-config", "--port", "4567", "--redis", "redis://u:hunter2@127.0.0.1:6379",
                              env={"SIDECAST_PING_TIMEOUT": "1234"})
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"(?m)^port = 4567\b")
        self.assertRegex(result.stdout, r"(?m)^ping-timeout = 1234\b")
        self.assertNotIn("hunter2", result.stdout)

    def test_invalid_settings_fail_before_starting(self):
        for args in (["--log-level", "loud"], ["--port", "70000"], ["--socket-mode", "rw"],
                     ["--namespace", "no-slash"], ["--no-such-flag"]):
            result = run_sidecast(*args, "--socket", os.path.join(tempfile.gettempdir(), "never.sock"))
            self.assertNotEqual(result.returncode, 0, args)
            self.assertIn("rror", result.stderr, args)

    def test_socket_mode(self):
        default = start_sidecast(self)
        self.assertEqual(stat.S_IMODE(os.stat(default.socket_path).st_mode), 0o660)
        private = start_sidecast(self, "--socket-mode", "0600")
        self.assertEqual(stat.S_IMODE(os.stat(private.socket_path).st_mode), 0o600)

    def test_stale_socket_is_replaced_and_a_live_one_is_not(self):
        directory = tempfile.TemporaryDirectory(prefix="sidecast-stale-")
        self.addCleanup(directory.cleanup)
        path = os.path.join(directory.name, "sidecast.sock")
        leftover = socket.socket(socket.AF_UNIX)
        leftover.bind(path)  # a socket file nobody listens on, as a crash leaves it
        leftover.close()
        live = start_sidecast(self, socket_path=path)
        live.backend(self)
        second = run_sidecast("--socket", path, "--port", "0", "--admin-port", "0")
        self.assertNotEqual(second.returncode, 0)
        self.assertIn(path, second.stderr)
        live.backend(self)  # the live instance still owns its socket

    def test_version(self):
        result = run_sidecast("--version")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout.strip(), r"^0\.\d+\.\d+$")

    def test_negative_numbers_reach_the_range_check(self):
        """ArgumentParser reads `-1` after an option as a flag unless told otherwise; the value
        must reach sidecast's own check, as `--ping-interval=-1` always did."""
        for args, message in ((["--ping-interval", "-1"], "--ping-interval must be positive, got -1"),
                              (["--ping-interval=-1"], "--ping-interval must be positive, got -1"),
                              (["--backend-grace", "-3"], "--backend-grace must be seconds, 0 or more, got -3"),
                              (["--max-connections", "-5"], "--max-connections must be 0"),
                              (["--port", "-2"], "--port must be 0...65535, got -2")):
            result = run_sidecast(*args, "--print-config")
            self.assertEqual(result.returncode, 1, args)
            self.assertIn(message, result.stderr, args)
            self.assertNotIn("Missing value", result.stderr, args)

    def test_print_config_shows_how_max_connections_is_derived(self):
        if not shutil.which("prlimit"):
            raise unittest.SkipTest("prlimit is not installed")
        result = subprocess.run(["prlimit", "--nofile=300:400", SIDECAST_BIN, "--print-config"],
                                capture_output=True, text=True, timeout=TIMEOUT * 2)
        self.assertEqual(result.returncode, 0, result.stderr)
        line = re.search(r"(?m)^max-connections = 0 .*$", result.stdout)
        self.assertIsNotNone(line, result.stdout)
        # The soft limit is raised to the hard one, then the reserve is kept from clients.
        self.assertIn("320 = open-file limit 400 (soft limit raised from 300) less 80 reserved", line.group(0))
        with_redis = subprocess.run(["prlimit", "--nofile=400:400", SIDECAST_BIN, "--print-config",
                                     "--redis", "redis://127.0.0.1:1"],
                                    capture_output=True, text=True, timeout=TIMEOUT * 2)
        self.assertIn("316 = open-file limit 400 less 84 reserved", with_redis.stdout)
        given = run_sidecast("--print-config", "--max-connections", "50")
        self.assertRegex(given.stdout, r"(?m)^max-connections = 50  # from --max-connections; set")

    def test_sigint_stops_cleanly(self):
        sidecast = Sidecast()
        sidecast.backend(self)
        sidecast.client(self)
        sidecast.proc.send_signal(signal.SIGINT)
        self.assertEqual(sidecast.proc.wait(timeout=10), 0)
        sidecast.stop()

    def test_sigterm_as_soon_as_it_accepts_stops_it(self):
        # A supervisor may stop a node the moment its port accepts. Dispatch used to be still
        # registering the signal source then, under load, and the ignored SIGTERM was dropped:
        # the node never stopped. `stop` sends SIGTERM and asserts exit 0 within 10 s.
        for _ in range(8):
            Sidecast().stop()


class FailedStartTests(unittest.TestCase):
    """A start that cannot listen exits 1 with one line naming the address and the flag to
    change; nothing else was started, so nothing is left running or scheduled."""

    def setUp(self):
        self.directory = tempfile.TemporaryDirectory(prefix="sidecast-start-")
        self.addCleanup(self.directory.cleanup)
        self.socket_path = os.path.join(self.directory.name, "sidecast.sock")

    def occupied_port(self):
        """A port something else listens on."""
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        self.addCleanup(holder.close)
        return holder.getsockname()[1]

    def failed_start(self, *args):
        """Runs sidecast expecting it to fail to start; returns its one line of output."""
        result = run_sidecast("--host", "127.0.0.1", "--socket", self.socket_path, *args)
        self.assertEqual(result.returncode, 1, result.stderr)
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, f"expected one line, got: {lines}")
        self.assertFalse(os.path.exists(self.socket_path), "the backend socket file was left behind")
        return lines[0]

    def test_busy_client_port(self):
        port = self.occupied_port()
        line = self.failed_start("--port", str(port), "--admin-port", "0")
        self.assertIn(f"127.0.0.1:{port}", line)
        self.assertIn("already in use", line)
        self.assertIn("--port", line)
        self.assertNotIn("errno", line)

    def test_busy_admin_port_with_redis_tears_down_in_order(self):
        redis = start_redis(self)
        port = self.occupied_port()
        started = time.monotonic()
        line = self.failed_start("--port", "0", "--admin-port", str(port), "--redis", redis.url)
        self.assertIn(f"127.0.0.1:{port}", line)
        self.assertIn("--admin-port", line)
        self.assertNotIn("Cannot schedule", line)
        self.assertLess(time.monotonic() - started, TIMEOUT)

    def test_host_that_is_not_an_address(self):
        line = self.failed_start("--host", "999.1.1.1", "--port", "0", "--admin-port", "0")
        self.assertIn("999.1.1.1", line)
        self.assertIn("--host", line)
        self.assertNotIn("SocketAddressError", line)

    def test_socket_in_a_missing_directory(self):
        self.socket_path = os.path.join(self.directory.name, "no-such-dir", "sidecast.sock")
        line = self.failed_start("--port", "0", "--admin-port", "0")
        self.assertIn(self.socket_path, line)
        self.assertIn("--socket", line)


class ShellBackendTests(unittest.TestCase):
    """examples/shell/chat.sh waits for a socket that is not there yet, and says what is wrong
    and exits when it may not use the one that is."""

    def start_chat(self, path, *prefix, script=CHAT_SH):
        if not (shutil.which("socat") and shutil.which("jq")):
            raise unittest.SkipTest("the shell example needs socat and jq")
        proc = subprocess.Popen([*prefix, "bash", script, path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(proc.stdout.close)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        return proc

    def test_permission_denied_is_an_error(self):
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            raise unittest.SkipTest("needs root and setpriv to run the backend as another user")
        directory = tempfile.mkdtemp(prefix="sidecast-perm-")
        self.addCleanup(shutil.rmtree, directory)
        os.chmod(directory, 0o755)
        # The other user runs its own copy: a checkout in a private directory (mktemp -d) is not
        # readable to it.
        script = shutil.copy(CHAT_SH, os.path.join(directory, "chat.sh"))
        sidecast = start_sidecast(self, "--socket-mode", "0600", socket_path=os.path.join(directory, "s.sock"))
        chat = self.start_chat(sidecast.socket_path, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               script=script)
        output, _ = chat.communicate(timeout=TIMEOUT * 2)
        self.assertEqual(chat.returncode, 1, output)
        self.assertIn(f"permission denied on {sidecast.socket_path}", output)
        self.assertNotIn("waiting for sidecast", output)

    def test_a_missing_socket_is_waited_for(self):
        directory = tempfile.TemporaryDirectory(prefix="sidecast-wait-")
        self.addCleanup(directory.cleanup)
        chat = self.start_chat(os.path.join(directory.name, "later.sock"))
        first = chat.stdout.readline()
        self.assertIn("waiting for sidecast", first)
        # Still waiting after a few of its one-second retries.
        with self.assertRaises(subprocess.TimeoutExpired):
            chat.wait(timeout=2.5)


if __name__ == "__main__":
    unittest.main()
