"""Tests of the buildpacks' version-file readers: python's runtime.txt / .python-version
(buildpacks/python/lib/runtime_version.py) and the node engines range check
(buildpacks/nodejs/lib/semver-range.js, run with the stack's node; skipped without node).

Run: python3 -m unittest buildpacks/test/test_versions.py  (any user; no network)
"""
import importlib.util
import json
import os
import shutil
import subprocess
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "runtime_version", os.path.join(HERE, "..", "python", "lib", "runtime_version.py"))
runtime_version = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runtime_version)
SEMVER = os.path.join(HERE, "..", "nodejs", "lib", "semver-range.js")


class PythonVersionFiles(unittest.TestCase):
    def test_requested_skips_comments_and_blank_lines(self):
        self.assertEqual(runtime_version.requested("# pinned\n\n  python-3.11.4  \n3.9\n"),
                         "python-3.11.4")
        self.assertIsNone(runtime_version.requested("# nothing\n\n"))

    def test_parse(self):
        self.assertEqual(runtime_version.parse("python-3.11.4"), (3, 11, 4))
        self.assertEqual(runtime_version.parse("3.11"), (3, 11, None))
        self.assertIsNone(runtime_version.parse("pypy3.9-7.3"))

    def test_check(self):
        check = runtime_version.check
        self.assertEqual(check("runtime.txt", "python-3.11.7\n", "3.11.7"), (True, ""))
        self.assertEqual(check(".python-version", "# c\n3.11\n", "3.11.2"), (True, ""))
        self.assertEqual(check(".python-version", "system\n", "3.11.2"), (True, ""))
        ok, msg = check("runtime.txt", "python-3.11.4", "3.11.7")
        self.assertTrue(ok)
        self.assertIn("same 3.11 line", msg)
        ok, msg = check("runtime.txt", "python-3.12.1", "3.11.7")
        self.assertFalse(ok)
        for part in ("runtime.txt asks for python 3.12.1", "the stack has python 3.11.7",
                     "change runtime.txt to python-3.11"):
            self.assertIn(part, msg)
        ok, msg = check(".python-version", "# c\n3.9\n", "3.11.7")
        self.assertFalse(ok)
        self.assertIn(".python-version asks for python 3.9", msg)
        ok, msg = check(".python-version", "pypy3.9\n", "3.11.7")
        self.assertFalse(ok)
        self.assertIn("not a python version", msg)


@unittest.skipIf(shutil.which("node") is None, "node is not installed")
class NodeEnginesRange(unittest.TestCase):
    CASES = [
        ("v20.11.1", ">=18", True), ("v20.11.1", ">= 18 < 21", True),
        ("v20.11.1", "^20", True), ("v20.11.1", "^20.12.0", False),
        ("v20.11.1", "^18.0.0", False), ("v20.11.1", "~20.11", True),
        ("v20.11.1", "~20.10.0", False), ("v20.11.1", "20.x", True),
        ("v20.11.1", "20.11.1", True), ("v20.11.1", "20.11.2", False),
        ("v20.11.1", "18.x || 20.x", True), ("v20.11.1", "16 || 18", False),
        ("v20.11.1", "18 - 20", True), ("v20.11.1", "14 - 18", False),
        ("v20.11.1", "*", True), ("v20.11.1", ">=22", False), ("v20.11.1", "<20", False),
        ("v20.11.1", "<=20", True), ("v20.11.1", ">20", False), ("v20.11.1", ">19", True),
        ("v0.2.5", "^0.2.3", True), ("v0.3.0", "^0.2.3", False),
        ("v20.11.1", "lts/*", None), ("v20.11.1", "1.2.3-beta", None),
    ]

    def test_ranges(self):
        script = ("const {satisfies} = require(%s);\n"
                  "console.log(JSON.stringify(%s.map(([v, r]) => satisfies(v, r))));"
                  % (json.dumps(SEMVER), json.dumps([[v, r] for v, r, _ in self.CASES])))
        out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
        got = json.loads(out.stdout)
        for (v, r, want), g in zip(self.CASES, got):
            self.assertEqual(g, want, f"{v} {r!r}")
