"""proto/PROTOCOL.md's example lines stay valid against proto/schema, as proto/check_examples.py
checks them: a change to the protocol that forgets its document or its schemas fails here."""

import os
import subprocess
import sys
import unittest

from harness import REPO

PROTO = os.path.join(REPO, "proto")
sys.path.insert(0, PROTO)

import check_examples  # noqa: E402  (found through PROTO)


class ProtocolDocumentTests(unittest.TestCase):
    def test_every_example_line_of_protocol_md_checks(self):
        run = subprocess.run([sys.executable, os.path.join(PROTO, "check_examples.py")],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertRegex(run.stdout, r"^[1-9][0-9]* example lines checked, 0 problems")

    def test_the_checker_refuses_what_the_schemas_refuse(self):
        self.assertEqual(check_examples.line_errors("backend", '{"type":"emit","nsp":"/","event":"e","args":[]}'), [])
        self.assertNotEqual(check_examples.line_errors("backend", '{"type":"emit","nsp":"/","args":[]}'), [])
        self.assertNotEqual(check_examples.line_errors("sidecast", '{"type":"connect","nsp":"/"}'), [])
        self.assertNotEqual(check_examples.line_errors("backend", "not json"), [])


if __name__ == "__main__":
    unittest.main()
