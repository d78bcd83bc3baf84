"""Several namespaces on one connection, backends per namespace, and unknown namespaces."""

import unittest

import socketio

from harness import Client, SidecastTestCase


class NamespaceTests(SidecastTestCase):
    namespaces = ("/", "/admin")
    backend_nsps = ("/", "/admin")

    def test_two_namespaces_on_one_connection(self):
        client = self.client(namespaces=("/", "/admin"))
        main = self.backend.expect_connect(nsp="/", sid=client.sid("/"))
        admin = self.backend.expect_connect(nsp="/admin", sid=client.sid("/admin"))
        self.assertNotEqual(main["sid"], admin["sid"])
        # One Engine.IO session: the same handshake.
        self.assertEqual(main["handshake"]["issued"], admin["handshake"]["issued"])
        self.assertEqual(main["handshake"]["url"], admin["handshake"]["url"])

        client.emit("where", "main", nsp="/")
        client.emit("where", "admin", nsp="/admin")
        self.assertEqual(self.backend.expect_event("where", nsp="/", sid=main["sid"])["args"], ["main"])
        self.assertEqual(self.backend.expect_event("where", nsp="/admin", sid=admin["sid"])["args"],
                         ["admin"])

        self.backend.emit("hi", "admins", nsp="/admin")
        self.assertEqual(client.wait_for("hi", nsp="/admin"), ("admins",))
        client.assert_no("hi", nsp="/", within=0.2)
        # A sid is a room only in its own namespace.
        self.backend.emit("hi", "wrong", nsp="/", to=[admin["sid"]])
        client.assert_no("hi", nsp="/", within=0.2)

    def test_rooms_are_per_namespace(self):
        client = self.client(namespaces=("/", "/admin"))
        self.backend.join(client.sid("/admin"), "ops", nsp="/admin")
        # The /admin sid is no socket of "/".
        wrong = self.backend.request({"type": "join", "sid": client.sid("/admin"), "nsp": "/",
                                      "rooms": ["ops"]})
        self.assertEqual(wrong["error"]["code"], "unknown_sid")
        self.assertEqual(self.backend.request({"type": "count", "nsp": "/admin", "in": ["ops"]})["count"], 1)
        self.assertEqual(self.backend.request({"type": "count", "nsp": "/", "in": ["ops"]})["count"], 0)

    def test_each_backend_sees_only_its_namespaces(self):
        main_only = self.sidecast.backend(self, nsps=["/"], group="main")
        admin_only = self.sidecast.backend(self, nsps=["/admin"], group="admin")
        client = self.client(namespaces=("/", "/admin"))
        main_only.expect_connect(nsp="/", sid=client.sid("/"))
        admin_only.expect_connect(nsp="/admin", sid=client.sid("/admin"))
        client.emit("e", 1, nsp="/admin")
        admin_only.expect_event("e", nsp="/admin")
        main_only.assert_no("connect", within=0.2, nsp="/admin")
        main_only.assert_no("event", within=0.05, nsp="/admin")
        admin_only.assert_no("connect", within=0.05, nsp="/")

    def test_unknown_namespace_is_refused(self):
        client = Client(self.sidecast.url, namespaces=("/nope",))
        self.addCleanup(client.close)
        with self.assertRaises(socketio.exceptions.ConnectionError):
            client.connect()
        self.assertEqual(client.wait_for("connect_error", nsp="/nope"), ({"message": "Invalid namespace"},))
        self.backend.assert_no("connect", within=0.2, nsp="/nope")

    def test_namespace_served_by_a_backend_exists_while_served(self):
        dynamic = self.sidecast.backend(self, nsps=["/dyn"], group="dyn")
        client = self.client(namespaces=("/dyn",))
        dynamic.expect_connect(nsp="/dyn", sid=client.sid("/dyn"))
        client.emit("e", "dyn", nsp="/dyn")
        self.assertEqual(dynamic.expect_event("e", nsp="/dyn")["args"], ["dyn"])

    def test_server_disconnect_with_close_ends_every_namespace(self):
        client = self.client(namespaces=("/", "/admin"))
        main = self.backend.expect_connect(nsp="/", sid=client.sid("/"))
        admin = self.backend.expect_connect(nsp="/admin", sid=client.sid("/admin"))
        self.backend.send({"type": "disconnect", "sid": admin["sid"], "nsp": "/admin", "close": True})
        self.assertEqual(self.backend.expect("disconnect", sid=admin["sid"])["reason"],
                         "server namespace disconnect")
        self.backend.expect("disconnect", sid=main["sid"])
        client.wait_for("disconnect", nsp="/admin")

    def test_server_disconnect_of_one_namespace_keeps_the_other(self):
        client = self.client(namespaces=("/", "/admin"))
        main = self.backend.expect_connect(nsp="/", sid=client.sid("/"))
        admin = self.backend.expect_connect(nsp="/admin", sid=client.sid("/admin"))
        self.backend.disconnect(admin["sid"], nsp="/admin")
        self.backend.expect("disconnect", sid=admin["sid"])
        client.wait_for("disconnect", nsp="/admin")
        client.emit("still", 1, nsp="/")
        self.backend.expect_event("still", nsp="/", sid=main["sid"])
        self.backend.assert_no("disconnect", within=0.2, sid=main["sid"])


if __name__ == "__main__":
    unittest.main()
