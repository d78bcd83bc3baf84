"""Settings from a TOML config file, the environment and flags, through the real binary:
precedence (flag > environment > file > default) as `--print-config` reports it, unknown keys and
bad values rejected at start, the Redis password masked, the example config of
examples/systemd, a server started from a file alone, and `--log-format json`."""

import json
import os
import re
import signal
import subprocess
import tempfile
import tomllib
import unittest

from harness import REPO, SIDECAST_BIN, Backend, Client, free_port, start_process, wait_until

EXAMPLE_CONFIG = os.path.join(REPO, "examples", "systemd", "sidecast.toml")


def clean_environment(**variables):
    """This process's environment without any SIDECAST_ setting, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAST_")}
    env.update(variables)
    return env


class ConfigTestCase(unittest.TestCase):
    def setUp(self):
        if not SIDECAST_BIN:
            raise unittest.SkipTest("SIDECAST_BIN is not set: run scripts/test.sh")
        directory = tempfile.TemporaryDirectory(prefix="sidecast-config-")
        self.addCleanup(directory.cleanup)
        self.dir = directory.name

    def write(self, text, name="sidecast.toml"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_sidecast(self, *args, env=None):
        return subprocess.run([SIDECAST_BIN, *map(str, args)], env=clean_environment(**(env or {})),
                              capture_output=True, text=True, timeout=20, cwd=self.dir)

    def print_config(self, *args, env=None):
        """The effective configuration, parsed; fails unless sidecast exits 0."""
        result = self.run_sidecast("--print-config", *args, env=env)
        self.assertEqual(result.returncode, 0, f"--print-config failed: {result.stderr}")
        return tomllib.loads(result.stdout)

    def assert_rejected(self, *args, env=None, mentions=()):
        """sidecast refuses to start, with an error naming every string of `mentions`."""
        result = self.run_sidecast(*args, env=env)
        self.assertNotEqual(result.returncode, 0, f"sidecast accepted {args} {env}: {result.stdout}")
        for text in mentions:
            self.assertIn(text, result.stderr)
        return result.stderr


class PrecedenceTests(ConfigTestCase):
    def test_flag_over_environment_over_file_over_default(self):
        path = self.write('port = 4001\nnamespace = ["/", "/admin"]\nbackend-grace = 2\n')
        env = {"SIDECAST_PORT": "4002", "SIDECAST_CONFIG": path}
        self.assertEqual(self.print_config("--port", 4003, env=env)["port"], 4003)
        self.assertEqual(self.print_config(env=env)["port"], 4002)
        config = self.print_config("--config", path)
        self.assertEqual(config["port"], 4001)
        self.assertEqual(config["namespace"], ["/", "/admin"])
        self.assertEqual(config["backend-grace"], 2.0)
        self.assertEqual(self.print_config()["port"], 3000)

    def test_flag_names_the_file_over_the_environment(self):
        used = self.write("port = 4011\n")
        ignored = self.write("port = 4012\n", name="other.toml")
        self.assertEqual(self.print_config("--config", used, env={"SIDECAST_CONFIG": ignored})["port"], 4011)

    def test_every_kind_of_value_follows_the_same_order(self):
        path = self.write('require-backend = true\ncors-origin = ["https://a.example"]\n'
                          'drain-delay = 0.5\nlog-format = "json"\n')
        config = self.print_config("--config", path)
        self.assertIs(config["require-backend"], True)
        self.assertEqual(config["cors-origin"], ["https://a.example"])
        self.assertEqual(config["drain-delay"], 0.5)
        self.assertEqual(config["log-format"], "json")

        env = {"SIDECAST_REQUIRE_BACKEND": "false",
               "SIDECAST_CORS_ORIGIN": "https://b.example, https://c.example",
               "SIDECAST_DRAIN_DELAY": "1.5"}
        config = self.print_config("--config", path, env=env)
        self.assertIs(config["require-backend"], False)
        self.assertEqual(config["cors-origin"], ["https://b.example", "https://c.example"])
        self.assertEqual(config["drain-delay"], 1.5)

        config = self.print_config("--config", path, "--require-backend", "--cors-origin", "*",
                                   "--drain-delay", 3, "--log-format", "text", env=env)
        self.assertIs(config["require-backend"], True)
        self.assertEqual(config["cors-origin"], ["*"])
        self.assertEqual(config["drain-delay"], 3.0)
        self.assertEqual(config["log-format"], "text")

    def test_print_config_lists_every_flag_and_reads_back(self):
        output = self.run_sidecast("--print-config", "--port", 4021).stdout
        keys = list(tomllib.loads(output))
        help_text = self.run_sidecast("--help").stdout
        for key in keys:
            self.assertRegex(help_text, rf"--(\[no-\])?{re.escape(key)}\b")
        self.assertIn("# from --port", output)
        again = self.print_config("--config", self.write(output))
        self.assertEqual(again, tomllib.loads(output))


class RejectionTests(ConfigTestCase):
    def test_unknown_key_is_named(self):
        path = self.write("port = 3000\nprot = 3001\n")
        self.assert_rejected("--config", path, mentions=("'prot'", path))
        self.assert_rejected("--print-config", "--config", path, mentions=("'prot'",))

    def test_snake_case_key_is_refused_with_the_flag_spelling(self):
        path = self.write("max_payload = 1000\n")
        self.assert_rejected("--config", path, mentions=("'max_payload'", "'max-payload'"))

    def test_table_is_refused(self):
        path = self.write("[redis]\nurl = \"redis://localhost\"\n")
        self.assert_rejected("--config", path, mentions=("redis in", path))

    def test_value_of_the_wrong_type_is_named(self):
        path = self.write('port = "x"\n')
        self.assert_rejected("--config", path, mentions=("port in " + path, "integer"))
        path = self.write('namespace = [1, 2]\n')
        self.assert_rejected("--config", path, mentions=("namespace in " + path,))

    def test_value_out_of_range_is_named_with_its_source(self):
        path = self.write("port = 70000\n")
        self.assert_rejected("--config", path, mentions=("port in " + path, "70000"))
        path = self.write('log-format = "xml"\n')
        self.assert_rejected("--config", path, mentions=("log-format in " + path, "xml"))
        path = self.write('redis-subscription-mode = "private"\n')
        self.assert_rejected("--config", path, mentions=("redis-subscription-mode in " + path, "private",
                                                          "static, dynamic or dynamic-private"))
        self.assert_rejected("--redis-subscription-mode", "static", mentions=("--redis-subscription-mode",
                                                                                "only with redis-sharded"))
        path = self.write('socket-mode = "0999"\n')
        self.assert_rejected("--config", path, mentions=("socket-mode in " + path,))
        self.assert_rejected(env={"SIDECAST_PORT": "x"}, mentions=("SIDECAST_PORT",))
        self.assert_rejected("--ping-interval", 0, mentions=("--ping-interval",))

    def test_threads_out_of_range_are_refused(self):
        self.assert_rejected("--threads", -1, mentions=("--threads", "must be 0 (one per CPU this process may run on) to 4096", "got -1"))
        self.assert_rejected(env={"SIDECAST_THREADS": "4097"}, mentions=("SIDECAST_THREADS", "got 4097"))
        path = self.write("threads = 5000\n")
        self.assert_rejected("--print-config", "--config", path, mentions=("threads in " + path, "got 5000"))
        self.assertEqual(self.print_config("--threads", 4)["threads"], 4)
        self.assertEqual(self.print_config("--config", self.write("threads = 1\n"))["threads"], 1)

    def test_threads_zero_counts_the_cpus_of_the_affinity_mask(self):
        """`--threads 0`, the default, stands for the CPUs this process may run on: its
        affinity mask (as `sched_getaffinity` reports it) or the cgroup's quota, the smaller."""
        pinned = subprocess.run(["taskset", "-c", str(min(os.sched_getaffinity(0))), SIDECAST_BIN, "--print-config"],
                                env=clean_environment(), capture_output=True, text=True, timeout=20)
        self.assertEqual(pinned.returncode, 0, pinned.stderr)
        line = next(line for line in pinned.stdout.splitlines() if line.startswith("threads ="))
        self.assertIn("threads = 0  # default; 1 CPU this process may run on (affinity mask 1,", line)
        cpus = len(os.sched_getaffinity(0))
        output = self.run_sidecast("--print-config", "--threads", 0).stdout
        line = next(line for line in output.splitlines() if line.startswith("threads ="))
        self.assertRegex(line, rf"threads = 0  # from --threads; \d+ CPUs? this process may run on \(affinity mask {cpus}, "
                               r"cgroup quota or CPUs \d+\)$")

    def test_unreadable_or_malformed_file(self):
        missing = os.path.join(self.dir, "missing.toml")
        self.assert_rejected("--config", missing, mentions=(missing,))
        path = self.write("port = \n")
        self.assert_rejected("--config", path, mentions=(path,))


class PrintConfigTests(ConfigTestCase):
    def test_redis_password_is_masked(self):
        path = self.write('redis = "redis://app:hunter2@127.0.0.1:6379/1"\n')
        result = self.run_sidecast("--print-config", "--config", path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("hunter2", result.stdout)
        self.assertEqual(tomllib.loads(result.stdout)["redis"], "redis://app:***@127.0.0.1:6379/1")

        result = self.run_sidecast("--print-config", "--redis", "redis://:hunter2@10.0.0.1")
        self.assertNotIn("hunter2", result.stdout)
        self.assertEqual(tomllib.loads(result.stdout)["redis"], "redis://:***@10.0.0.1")

        env = {"SIDECAST_REDIS": "unix:///run/redis.sock?db=2&password=hunter2"}
        result = self.run_sidecast("--print-config", env=env)
        self.assertNotIn("hunter2", result.stdout)
        self.assertEqual(tomllib.loads(result.stdout)["redis"], "unix:///run/redis.sock?db=2&password=***")

    def test_sentinel_password_is_masked_and_needs_sentinels(self):
        result = self.run_sidecast("--print-config", "--redis-sentinel", "10.0.0.5:26379", "--redis-master", "m",
                                   "--redis-sentinel-password", "hunter2", "--redis-sentinel-username", "watcher")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("hunter2", result.stdout)
        config = tomllib.loads(result.stdout)
        self.assertEqual((config["redis-sentinel-password"], config["redis-sentinel-username"]), ("***", "watcher"))
        self.assert_rejected("--redis", "redis://127.0.0.1", "--redis-sentinel-password", "hunter2",
                             mentions=("--redis-sentinel-password", "only with redis-sentinel"))
        self.assert_rejected("--redis-sentinel", "10.0.0.5:26379", "--redis-master", "m", "--redis-sentinel-username", "u",
                             mentions=("--redis-sentinel-username", "needs redis-sentinel-password"))

    def test_redis_streams_needs_one_redis_server_and_sane_bounds(self):
        config = self.print_config("--redis", "redis://127.0.0.1", "--redis-streams", "--redis-stream-name", "chat",
                                   "--redis-stream-max-len", 500, "--redis-stream-read-count", 10,
                                   "--redis-session-key-prefix", "chat:session:")
        self.assertEqual((config["redis-streams"], config["redis-stream-name"], config["redis-stream-max-len"],
                          config["redis-stream-read-count"], config["redis-session-key-prefix"]),
                         (True, "chat", 500, 10, "chat:session:"))
        self.assertEqual(self.print_config()["redis-session-key-prefix"], "sio:session:")
        self.assert_rejected("--redis", "redis://127.0.0.1", "--redis-session-key-prefix", "s:",
                             mentions=("--redis-session-key-prefix", "only with redis-streams"))
        self.assert_rejected("--redis-streams", mentions=("--redis-streams", "needs redis"))
        self.assert_rejected("--redis-cluster", "10.0.0.5:6379", "--redis-streams", mentions=("--redis-streams", "needs redis"))
        self.assert_rejected("--redis", "redis://127.0.0.1", "--redis-streams", "--redis-sharded",
                             mentions=("--redis-streams", "cannot be combined with redis-sharded"))
        self.assert_rejected("--redis", "redis://127.0.0.1", "--redis-stream-name", "chat",
                             mentions=("--redis-stream-name", "only with redis-streams"))
        self.assert_rejected("--redis", "redis://127.0.0.1", "--redis-streams", "--redis-stream-max-len", 0,
                             mentions=("--redis-stream-max-len", "must be positive"))
        self.assert_rejected(env={"SIDECAST_REDIS": "redis://127.0.0.1", "SIDECAST_REDIS_STREAMS": "true",
                                  "SIDECAST_REDIS_STREAM_READ_COUNT": "-1"},
                             mentions=("SIDECAST_REDIS_STREAM_READ_COUNT", "must be positive"))
        self.assert_rejected("--redis", "redis://127.0.0.1", "--redis-streams", "--redis-stream-name", "",
                             mentions=("--redis-stream-name",))

    def test_example_config_documents_every_key_and_is_valid(self):
        """examples/systemd/sidecast.toml stays in step with the flags: every key appears in
        it, set or commented out, and uncommenting all of them still gives a valid file."""
        keys = set(self.print_config())
        with open(EXAMPLE_CONFIG) as f:
            example = f.read()
        self.assertEqual(self.run_sidecast("--print-config", "--config", EXAMPLE_CONFIG).returncode, 0)
        uncommented = re.sub(r"(?m)^# ([a-z0-9-]+ = )", r"\1", example)
        documented = set(tomllib.loads(uncommented))
        self.assertEqual(documented, keys)
        config = self.print_config("--config", self.write(uncommented))
        self.assertEqual(config["socket"], "/run/sidecast/sidecast.sock")


class StartFromFileTests(ConfigTestCase):
    def test_server_runs_on_the_file_settings_and_logs_json(self):
        port = free_port()
        socket_path = os.path.join(self.dir, "backends.sock")
        path = self.write(f'host = "127.0.0.1"\nport = {port}\nsocket = "{socket_path}"\n'
                          'namespace = ["/", "/ops"]\nadmin-port = 0\ndrain-delay = 0\n'
                          'log-format = "json"\nlog-level = "debug"\n')
        proc = start_process([SIDECAST_BIN, "--config", path], "sidecast", env=clean_environment())
        self.addCleanup(lambda: proc.poll() is None and proc.kill())

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"sidecast exited early with status {proc.returncode}")
            return os.path.exists(socket_path)
        wait_until(ready, timeout=20, message="sidecast to create its backend socket")

        backend = Backend(socket_path)
        self.addCleanup(backend.close)
        backend.hello(nsps=["/ops"])
        client = Client(f"http://127.0.0.1:{port}", namespaces=("/ops",))
        self.addCleanup(client.close)
        client.connect()
        connect = backend.expect_connect(nsp="/ops", sid=client.sid("/ops"))
        client.emit("ping", 1, nsp="/ops")
        self.assertEqual(backend.expect_event("ping", nsp="/ops", sid=connect["sid"])["args"], [1])

        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=10), 0)
        wait_until(lambda: any("sidecast stopped" in line for line in proc.log_lines), timeout=5,
                   message="sidecast's 'stopped' log line")
        self.assertGreater(len(proc.log_lines), 2)
        records = []
        for line in proc.log_lines:
            record = json.loads(line)
            self.assertIsInstance(record, dict, line)
            self.assertLessEqual({"ts", "level", "label", "msg"}, set(record), line)
            self.assertRegex(record["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            records.append(record)
        self.assertTrue(any(r["level"] == "debug" for r in records), "log-level from the file applies")
        listening = [r for r in records if "listening" in r["msg"]]
        self.assertTrue(listening, "a listening record")
        self.assertIn(f":{port}/", json.dumps(listening))


if __name__ == "__main__":
    unittest.main()
