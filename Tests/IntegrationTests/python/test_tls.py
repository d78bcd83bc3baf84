"""TLS on the client listener (--tls-cert, --tls-key, --tls-ca): python-socketio over https
(polling) and wss (WebSocket) trusting the test's own CA, `handshake.secure` as backends see it,
a certificate swap on SIGHUP that keeps open connections, a bad reload that keeps the old
certificate, start errors for unusable files, client certificates, and headless Chromium.

Every key and certificate is made at run time with the openssl command line, in a temporary
directory; none is committed."""

import asyncio
import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

import aiohttp
import requests
import socketio
import websocket

from harness import SIDECAST_BIN, TIMEOUT, Inbox, start_sidecast
from browser import CLIENT_BUNDLE, IN_CI, ChromiumTestCase


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class TestPKI:
    """A CA, two server certificates for 127.0.0.1 with distinct serials, a client certificate
    from the CA and one from a CA the server does not know; EC P-256 keys, which are quick."""

    def __init__(self):
        if shutil.which("openssl") is None:
            if IN_CI:
                raise AssertionError("openssl is not installed, but CI=true: scripts/common.sh installs it")
            raise unittest.SkipTest("openssl is not installed")
        self._dir = tempfile.TemporaryDirectory(prefix="sidecast-tls-")
        self.dir = self._dir.name
        self.ca = self._authority("ca", "Sidecast Test CA")
        self.other_ca = self._authority("other-ca", "Unknown Test CA")
        san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
        self.server = self._leaf("server", "sidecast-one", "ca", serial="1001", extension=san)
        self.server_two = self._leaf("server-two", "sidecast-two", "ca", serial="2002", extension=san)
        self.client = self._leaf("client", "client-ok", "ca", serial="3003", extension="extendedKeyUsage=clientAuth")
        self.stranger = self._leaf("stranger", "client-unknown", "other-ca", serial="4004",
                                   extension="extendedKeyUsage=clientAuth")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key(self, name):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key",
                cwd=self.dir)

    def _authority(self, name, subject):
        self._key(name)
        openssl("req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/CN={subject}", "-days", "2",
                "-out", f"{name}.pem", cwd=self.dir)
        return self.path(f"{name}.pem")

    def _leaf(self, name, subject, issuer, serial, extension):
        self._key(name)
        openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={subject}", "-out", f"{name}.csr", cwd=self.dir)
        with open(self.path(f"{name}.ext"), "w") as file:
            file.write(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
                "-set_serial", serial, "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=self.dir)
        return (self.path(f"{name}.pem"), self.path(f"{name}.key"))

    def spki_hash(self, certificate):
        """base64(SHA-256(SubjectPublicKeyInfo)), as Chromium's --ignore-certificate-errors-spki-list takes it."""
        public = subprocess.run(["openssl", "x509", "-in", certificate, "-noout", "-pubkey"],
                                check=True, capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=public,
                             check=True, capture_output=True).stdout
        return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")

    def cleanup(self):
        self._dir.cleanup()


def tls_flags(pki, certificate=None, client_ca=None):
    cert, key = certificate or pki.server
    flags = ["--tls-cert", cert, "--tls-key", key]
    if client_ca:
        flags += ["--tls-ca", client_ca]
    return flags


def session(pki, client_certificate=None):
    """A requests.Session that trusts only the test CA and, optionally, presents a certificate."""
    http = requests.Session()
    http.verify = pki.ca
    # Otherwise REQUESTS_CA_BUNDLE, when set, wins over `verify`.
    http.trust_env = False
    if client_certificate:
        http.cert = client_certificate
    return http


class TLSClient:
    """python-socketio's asyncio client (over aiohttp), run on a loop thread of its own, with the
    few calls of harness.Client these tests use.

    Not the threaded `socketio.Client` of the other modules: python-engineio closes a WebSocket
    while its reader thread may still be inside the socket's read, and over TLS (CPython's ssl)
    that thread goes on reading the descriptor number it started with. When the test's next
    connection reuses the number, the stale reader takes its bytes and the new connection dies
    with "transport error", about once in 50 TLS connections here, at every --threads. The same
    clients over plain TCP, a single-threaded websocket-client over TLS (4,000 connections), and
    this asyncio client over TLS (720) never lose one."""

    def __init__(self, url, pki, transports, client_certificate=None):
        self.url = url
        self.transports = transports
        self.inbox = Inbox("client event")
        context = ssl.create_default_context(cafile=pki.ca)
        if client_certificate:
            context.load_cert_chain(*client_certificate)
        self._context = context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tls-client")
        self._thread.start()
        self._http = None
        self.sio = None

    def _run(self, coroutine, timeout=TIMEOUT * 2):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    async def _connect(self):
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._context))
        self.sio = socketio.AsyncClient(reconnection=False, http_session=self._http)
        inbox = self.inbox

        async def on_any(event, *args):
            inbox.put(("/", event, args))

        async def on_disconnect(*reason):
            inbox.put(("/", "disconnect", reason))

        self.sio.on("*", on_any)
        self.sio.on("disconnect", on_disconnect)
        await self.sio.connect(self.url, transports=self.transports, wait_timeout=TIMEOUT)

    def connect(self):
        self._run(self._connect())

    def sid(self):
        return self.sio.get_sid()

    def transport(self):
        return self.sio.transport()

    def emit(self, event, data):
        self._run(self.sio.emit(event, data))

    def wait_for(self, event, timeout=TIMEOUT):
        _, _, args = self.inbox.take(lambda item: item[1] == event, timeout, repr(event))
        return args

    async def _close(self):
        if self.sio is not None:
            # As harness.Client.close: python-engineio's polling writer stops as soon as
            # disconnect() changes its state, so what is queued behind a POST in flight (the
            # CLOSE among it) would never be sent, and the close would wait for the next ping.
            eio, loop = self.sio.eio, asyncio.get_running_loop()
            deadline = loop.time() + 1
            while (eio.state == "connected" and getattr(eio, "queue", None) is not None
                   and eio.queue._unfinished_tasks and loop.time() < deadline):
                await asyncio.sleep(0.01)
            await self.sio.disconnect()
        if self._http is not None:
            await self._http.close()

    def close(self):
        if self._loop.is_closed():
            return
        try:
            self._run(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(TIMEOUT)
            self._loop.close()


def served_certificate(port, pki):
    """The serial (as openssl's -set_serial took it) and subject of the certificate a new
    connection gets, verified against the CA."""
    context = ssl.create_default_context(cafile=pki.ca)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            certificate = tls.getpeercert()
    subject = dict(item[0] for item in certificate["subject"])
    return int(certificate["serialNumber"], 16), subject["commonName"]


class TLSTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = TestPKI()
        cls.addClassCleanup(cls.pki.cleanup)

    def start(self, *flags, **kwargs):
        sidecast = start_sidecast(self, *flags, **kwargs)
        sidecast.https_url = f"https://127.0.0.1:{sidecast.port}"
        return sidecast

    def tls_client(self, sidecast, transports, client_certificate=None):
        client = TLSClient(sidecast.https_url, self.pki, transports, client_certificate)
        self.addCleanup(client.close)
        client.connect()
        return client

    def assert_round_trip(self, client, backend):
        """Client → backend event with an ack, and backend → client emit."""
        sid = client.sid()
        client.emit("ping-me", {"n": 1})
        event = backend.expect_event("ping-me", sid=sid)
        self.assertEqual(event["args"], [{"n": 1}])
        backend.emit("pong-you", "over tls", to=[sid])
        self.assertEqual(client.wait_for("pong-you"), ("over tls",))

    def test_polling_and_websocket_over_tls_report_secure(self):
        sidecast = self.start(*tls_flags(self.pki))
        backend = sidecast.backend(self)
        for transports in (["polling"], ["websocket"], ["polling", "websocket"]):
            with self.subTest(transports=transports):
                client = self.tls_client(sidecast, transports)
                connect = backend.expect_connect(sid=client.sid())
                self.assertIs(connect["handshake"]["secure"], True)
                self.assertTrue(connect["handshake"]["url"].startswith("/socket.io/?"))
                if len(transports) == 1:
                    self.assertEqual(client.transport(), transports[0])
                self.assert_round_trip(client, backend)
                client.close()
        # The listener speaks only TLS: a plain HTTP request gets no HTTP answer.
        with self.assertRaises(requests.exceptions.ConnectionError):
            requests.get(f"{sidecast.url}/socket.io/?EIO=4&transport=polling", timeout=TIMEOUT)
        self.assertIn(f"clients=https://127.0.0.1:{sidecast.port}", sidecast.log)
        # The admin listener stays plain HTTP.
        admin = re.search(r"admin=(http://127\.0\.0\.1:\d+)", sidecast.log).group(1)
        self.assertEqual(requests.get(admin + "/healthz", timeout=TIMEOUT).status_code, 200)

    def test_room_broadcasts_and_heartbeats_pass_tls(self):
        # A broadcast to more than one client, and every heartbeat ping, are frames encoded in
        # advance, which sidecast writes past NIO's frame encoder: through the TLS handler here.
        sidecast = self.start(*tls_flags(self.pki), "--ping-interval", "200", "--ping-timeout", "2000")
        backend = sidecast.backend(self)
        clients = [self.tls_client(sidecast, ["websocket"]) for _ in range(3)]
        for client in clients:
            backend.expect_connect(sid=client.sid())
            backend.join(client.sid(), "room")
        for n in range(3):
            backend.emit("tick", n, to=["room"])
            for client in clients:
                self.assertEqual(client.wait_for("tick"), (n,))
        # Five heartbeats, each of which the clients must read and answer to stay connected.
        backend.assert_no("disconnect", within=1.0)
        backend.emit("still-here", to=["room"])
        for client in clients:
            self.assertEqual(client.wait_for("still-here"), ())

    def test_a_close_without_close_notify_is_a_transport_close(self):
        # Many clients drop the TCP connection without TLS's close_notify; without TLS that is
        # "transport close", and so it is with it. Python's ssl sends close_notify only on unwrap().
        sidecast = self.start(*tls_flags(self.pki))
        backend = sidecast.backend(self)
        ws = websocket.create_connection(f"wss://127.0.0.1:{sidecast.port}/socket.io/?EIO=4&transport=websocket",
                                         timeout=TIMEOUT, sslopt={"ca_certs": self.pki.ca})
        self.assertTrue(ws.recv().startswith("0{"))
        ws.send("40")
        self.assertTrue(ws.recv().startswith("40{"))
        sid = backend.expect_connect()["sid"]
        ws.sock.close()
        self.assertEqual(backend.expect("disconnect", sid=sid)["reason"], "transport close")
        self.assertNotIn("uncleanShutdown", sidecast.log)

    def test_plain_listener_reports_not_secure(self):
        sidecast = self.start()
        backend = sidecast.backend(self)
        client = sidecast.client(self)
        self.assertIs(backend.expect_connect(sid=client.sid())["handshake"]["secure"], False)

    def test_sighup_swaps_the_certificate_and_keeps_connections(self):
        # Files of their own, overwritten in place as a certificate renewal does.
        directory = tempfile.TemporaryDirectory(prefix="sidecast-tls-live-")
        self.addCleanup(directory.cleanup)
        cert, key = os.path.join(directory.name, "live.pem"), os.path.join(directory.name, "live.key")
        shutil.copy(self.pki.server[0], cert)
        shutil.copy(self.pki.server[1], key)
        sidecast = self.start(*tls_flags(self.pki, (cert, key)))
        backend = sidecast.backend(self)
        self.assertEqual(served_certificate(sidecast.port, self.pki), (1001, "sidecast-one"))
        old_ws = self.tls_client(sidecast, ["websocket"])
        old_polling = self.tls_client(sidecast, ["polling"])
        for client in (old_ws, old_polling):
            backend.expect_connect(sid=client.sid())

        shutil.copy(self.pki.server_two[0], cert)
        shutil.copy(self.pki.server_two[1], key)
        sidecast.proc.send_signal(signal.SIGHUP)
        sidecast.wait_for_log("TLS certificate reloaded")
        self.assertIn("serial 07d2", sidecast.log)  # 2002
        self.assertEqual(served_certificate(sidecast.port, self.pki), (2002, "sidecast-two"))
        new = self.tls_client(sidecast, ["websocket"])
        backend.expect_connect(sid=new.sid())
        # The connections made before the swap are still the same sessions and still work.
        for client in (old_ws, old_polling, new):
            self.assert_round_trip(client, backend)
        backend.assert_no("disconnect", within=0.3)

        # A reload whose files do not load leaves the certificate in use as it was.
        with open(cert, "w") as file:
            file.write("not a certificate\n")
        sidecast.proc.send_signal(signal.SIGHUP)
        sidecast.wait_for_log("TLS certificate not reloaded")
        self.assertIn(f"cannot load the TLS certificate {cert} (--tls-cert)", sidecast.log)
        self.assertEqual(served_certificate(sidecast.port, self.pki), (2002, "sidecast-two"))
        self.assert_round_trip(self.tls_client(sidecast, ["websocket"]), backend)
        self.assertIsNone(sidecast.proc.poll())

    def test_unusable_files_stop_the_start_with_one_line(self):
        if not SIDECAST_BIN:
            raise unittest.SkipTest("SIDECAST_BIN is not set: run scripts/test.sh")
        missing = os.path.join(self.pki.dir, "missing.pem")
        cert, key = self.pki.server
        cases = [
            (["--tls-cert", missing, "--tls-key", key], f"cannot read {missing} (--tls-cert): No such file or directory"),
            (["--tls-cert", cert, "--tls-key", missing], f"cannot read {missing} (--tls-key): No such file or directory"),
            (["--tls-cert", key, "--tls-key", key], f"cannot load the TLS certificate {key} (--tls-cert): no PEM certificate"),
            (["--tls-cert", cert, "--tls-key", cert], f"cannot load the TLS key {cert} (--tls-key)"),
            (["--tls-cert", cert, "--tls-key", self.pki.server_two[1]], "cannot use the TLS key"),
            (["--tls-cert", cert, "--tls-key", key, "--tls-ca", missing], f"cannot read {missing} (--tls-ca)"),
            (["--tls-cert", cert], "--tls-cert needs tls-key"),
            (["--tls-key", key], "--tls-key needs tls-cert"),
            (["--tls-ca", self.pki.ca], "--tls-ca needs tls-cert and tls-key"),
        ]
        for flags, message in cases:
            with self.subTest(flags=flags):
                with tempfile.TemporaryDirectory(prefix="sidecast-tls-start-") as directory:
                    result = subprocess.run(
                        [SIDECAST_BIN, "--host", "127.0.0.1", "--port", "0", "--admin-port", "0",
                         "--socket", os.path.join(directory, "s.sock"), *flags],
                        capture_output=True, text=True, timeout=TIMEOUT * 2)
                self.assertEqual(result.returncode, 1, result.stderr)
                lines = result.stderr.strip().splitlines()
                self.assertEqual(len(lines), 1, result.stderr)
                self.assertIn(message, lines[0])

    def test_client_certificates_with_tls_ca(self):
        sidecast = self.start(*tls_flags(self.pki, client_ca=self.pki.ca))
        backend = sidecast.backend(self)
        for transports in (["polling"], ["websocket"]):
            with self.subTest(transports=transports):
                client = self.tls_client(sidecast, transports, client_certificate=self.pki.client)
                self.assertIs(backend.expect_connect(sid=client.sid())["handshake"]["secure"], True)
                self.assert_round_trip(client, backend)
                client.close()
        # Without a certificate, or with one from a CA the server was not given, the TLS
        # handshake fails and no session starts.
        for certificate in (None, self.pki.stranger):
            with self.subTest(certificate=certificate):
                with self.assertRaises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                    session(self.pki, certificate).get(
                        f"{sidecast.https_url}/socket.io/?EIO=4&transport=polling", timeout=TIMEOUT)
                client = TLSClient(sidecast.https_url, self.pki, ["websocket"], certificate)
                self.addCleanup(client.close)
                with self.assertRaises(Exception):
                    client.connect()
        backend.assert_no("connect", within=0.3)
        self.assertIsNone(sidecast.proc.poll())


class TLSBrowserTests(ChromiumTestCase):
    """Headless Chromium, trusting the server certificate through its key's SPKI hash (Chromium
    reads no CA file without NSS tools, and matches the hashes against the chain the server
    sends, which holds no CA), loads the official client into a page served over https by
    sidecast itself and connects over polling (https) and WebSocket (wss)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = TestPKI()
        cls.addClassCleanup(cls.pki.cleanup)

    def test_chromium_connects_over_https_and_wss(self):
        sidecast = start_sidecast(self, *tls_flags(self.pki))
        backend = sidecast.backend(self)
        driver = self.start_chromium(f"--ignore-certificate-errors-spki-list={self.pki.spki_hash(self.pki.server[0])}")
        driver.set_script_timeout(TIMEOUT * 3)

        origin = f"https://127.0.0.1:{sidecast.port}"
        # A page of sidecast's own over https: the Engine.IO open packet, shown as text.
        driver.get(f"{origin}/socket.io/?EIO=4&transport=polling")
        self.assertIn('"sid"', driver.find_element("tag name", "body").text)
        with open(CLIENT_BUNDLE) as file:
            driver.execute_script(file.read())
        for transports in (["polling"], ["websocket"]):
            with self.subTest(transports=transports):
                opened = driver.execute_async_script("""
                    const [url, transports, done] = arguments;
                    const socket = io(url, { transports, reconnection: false });
                    window.replies = window.replies || {};
                    socket.on("connect_error", (error) => done({ error: String(error) }));
                    socket.on("reply", (text) => { window.replies[socket.id] = text; });
                    socket.on("connect", () => {
                        socket.emit("hello", "from chromium");
                        done({ id: socket.id, transport: socket.io.engine.transport.name });
                    });
                """, origin, transports)
                self.assertNotIn("error", opened)
                self.assertEqual(opened["transport"], transports[0])
                sid = opened["id"]
                self.assertIs(backend.expect_connect(sid=sid)["handshake"]["secure"], True)
                self.assertEqual(backend.expect_event("hello", sid=sid)["args"], ["from chromium"])
                backend.emit("reply", "over tls", to=[sid])
                reply = driver.execute_async_script("""
                    const [sid, done] = arguments;
                    const check = () => sid in window.replies ? done(window.replies[sid]) : setTimeout(check, 20);
                    check();
                """, sid)
                self.assertEqual(reply, "over tls")

if __name__ == "__main__":
    unittest.main()
