#!/usr/bin/env python3
"""Check the backend protocol's examples against its JSON Schemas.

Usage:
  check_examples.py                      validate every example line of PROTOCOL.md
  check_examples.py backend FILE...      validate NDJSON files of backend -> sidecast lines
  check_examples.py sidecast FILE...     validate NDJSON files of sidecast -> backend lines

In PROTOCOL.md, lines inside fenced code blocks starting with "B: " (written by a backend) or
"S: " (written by sidecast) must be valid; lines starting with "B! " must be invalid (not JSON,
or rejected by the schema). Exit status 0 when everything checks, 1 otherwise.

Also importable: `line_errors(direction, line)` returns a list of problems (empty = valid),
with direction "backend" or "sidecast" (who wrote the line).

Needs Python 3.9+ and the `jsonschema` package (pip install jsonschema).
"""

import json
import pathlib
import sys

from jsonschema import Draft202012Validator

HERE = pathlib.Path(__file__).resolve().parent
SCHEMAS = {
    "backend": HERE / "schema" / "backend-to-sidecast.schema.json",
    "sidecast": HERE / "schema" / "sidecast-to-backend.schema.json",
}
MAX_LINE = 16 * 1024 * 1024

_validators = {}


def validator(direction):
    """The schema validator for lines written by `direction` ("backend" or "sidecast")."""
    if direction not in _validators:
        schema = json.loads(SCHEMAS[direction].read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        _validators[direction] = Draft202012Validator(schema)
    return _validators[direction]


def line_errors(direction, line):
    """Problems with one NDJSON line (without its newline); an empty list means valid."""
    if len(line.encode("utf-8")) > MAX_LINE:
        return ["line longer than 16 MiB"]
    try:
        message = json.loads(line)
    except ValueError as error:
        return [f"not JSON: {error}"]
    if not isinstance(message, dict):
        return ["not a JSON object"]
    v = validator(direction)
    errors = list(v.iter_errors(message))
    if not errors:
        return []
    # The top-level oneOf hides the useful error: report the branch matching the `type` field.
    definition = v.schema["$defs"].get(message.get("type")) if isinstance(message.get("type"), str) else None
    if definition is None:
        return [f"unknown type {message.get('type')!r}"]
    branch = v.evolve(schema={**definition, "$defs": v.schema["$defs"]})
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in branch.iter_errors(message)] or [errors[0].message]


def document_examples(path):
    """(line number, marker, text) for every example line in fenced blocks of `path`."""
    in_fence = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if raw.startswith("```"):
            in_fence = not in_fence
        elif in_fence and raw[:3] in ("B: ", "S: ", "B! "):
            yield number, raw[:2], raw[3:]


def check_document(path):
    failures = checked = 0
    for number, marker, text in document_examples(path):
        checked += 1
        if marker == "B!":
            if not line_errors("backend", text):
                failures += 1
                print(f"{path.name}:{number}: expected invalid, but it validates: {text[:80]}")
            continue
        direction = "backend" if marker == "B:" else "sidecast"
        for problem in line_errors(direction, text):
            failures += 1
            print(f"{path.name}:{number}: {problem}")
    print(f"{checked} example lines checked, {failures} problems")
    return failures == 0 and checked > 0


def check_files(direction, names):
    ok = True
    for name in names:
        with open(name, encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                for problem in line_errors(direction, line):
                    ok = False
                    print(f"{name}:{number}: {problem}")
    return ok


def main(argv):
    if not argv:
        return 0 if check_document(HERE / "PROTOCOL.md") else 1
    if argv[0] in SCHEMAS and len(argv) > 1:
        return 0 if check_files(argv[0], argv[1:]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
