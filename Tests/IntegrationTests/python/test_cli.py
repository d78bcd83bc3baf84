"""The sidecast command line: the README's flag table matches --help, settings come from flags,
the environment and a config file in that order, the backend socket's file mode, a stale socket
file, and a clean exit on SIGTERM and SIGINT."""

import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import unittest

from harness import REPO, SIDECAST_BIN, TIMEOUT, Sidecast, polling_handshake, start_sidecast

# Flags of --help that configure nothing and so have no row in the README's table.
ACTIONS = {"help", "print-config"}


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
        names = re.findall(r"--([a-z][a-z-]*)", block.split("  ", 2)[1] if block.startswith("  -") else "")
        if not names:
            continue
        default = re.search(r"\(default: (.*?)[;)]", " ".join(block.split()))
        flags[names[0]] = default.group(1) if default else None
    return flags


def readme_flags():
    """{flag: (environment variable, default)} from the README's table."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as readme:
        rows = re.findall(r"^\| `--([a-z-]+)` \| `([A-Z_]+)` \| ([^|]+) \|", readme.read(), re.M)
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

    def test_sigint_stops_cleanly(self):
        sidecast = Sidecast()
        sidecast.backend(self)
        sidecast.client(self)
        sidecast.proc.send_signal(signal.SIGINT)
        self.assertEqual(sidecast.proc.wait(timeout=10), 0)
        sidecast.stop()


if __name__ == "__main__":
    unittest.main()
