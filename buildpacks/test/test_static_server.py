"""Tests of the static buildpack's server (buildpacks/static/lib/static-server.py).

Run: python3 -m unittest buildpacks/test/test_static_server.py  (any user; no network)
"""
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "static", "lib",
                      "static-server.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StaticServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        app = cls.app = cls.tmp.name
        site = os.path.join(app, "site")
        os.makedirs(os.path.join(site, "sub"))
        os.makedirs(os.path.join(site, "empty"))
        os.makedirs(os.path.join(site, ".well-known"))
        os.makedirs(os.path.join(app, "outside"))
        files = {
            "site/index.html": "<h1>home</h1>",
            "site/style.css": "body{}",
            "site/app.js": "let x = 1;",
            "site/data.json": "{}",
            "site/logo.svg": "<svg/>",
            "site/blob.bin": "\x00\x01",
            "site/about.html": "about page",
            "site/sub/index.html": "sub index",
            "site/404.html": "custom not found",
            "site/.env": "SECRET=1",
            "site/.well-known/security.txt": "contact",
            "site/caf\u00e9.txt": "unicode name",
            "secret.txt": "top secret",
            "outside/file.txt": "outside",
            "static.json": '{"root": "site", "clean_urls": true, "error_page": "404.html"}',
        }
        for name, text in files.items():
            with open(os.path.join(app, name), "w", encoding="utf-8") as f:
                f.write(text)
        os.symlink("../secret.txt", os.path.join(site, "leak.txt"))
        os.symlink(os.path.join(app, "outside"), os.path.join(site, "outdir"))
        os.symlink("about.html", os.path.join(site, "alias.html"))
        cls.port = free_port()
        env = dict(os.environ, PORT=str(cls.port))
        cls.log = tempfile.TemporaryFile()
        cls.proc = subprocess.Popen([sys.executable, SERVER], cwd=app, env=env,
                                    stdout=cls.log, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", cls.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.kill()
            cls.proc.wait()
        cls.log.close()
        cls.tmp.cleanup()

    def request(self, path, method="GET", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp, body

    def test_index_and_types(self):
        resp, body = self.request("/")
        self.assertEqual(resp.status, 200)
        self.assertEqual(body, b"<h1>home</h1>")
        self.assertEqual(resp.getheader("Content-Type"), "text/html; charset=utf-8")
        expected = {
            "/style.css": "text/css; charset=utf-8",
            "/app.js": "text/javascript; charset=utf-8",
            "/data.json": "application/json; charset=utf-8",
            "/logo.svg": "image/svg+xml; charset=utf-8",
            "/blob.bin": "application/octet-stream",
        }
        for path, ctype in expected.items():
            resp, _ = self.request(path)
            self.assertEqual((resp.status, resp.getheader("Content-Type")), (200, ctype), path)

    def test_directories(self):
        resp, _ = self.request("/sub?x=1")
        self.assertEqual(resp.status, 301)
        self.assertEqual(resp.getheader("Location"), "/sub/?x=1")
        resp, body = self.request("/sub/")
        self.assertEqual((resp.status, body), (200, b"sub index"))
        resp, body = self.request("/empty/")
        self.assertEqual((resp.status, body), (404, b"custom not found"))

    def test_missing_is_404_with_error_page(self):
        resp, body = self.request("/nope.html")
        self.assertEqual((resp.status, body), (404, b"custom not found"))
        self.assertEqual(resp.getheader("Content-Type"), "text/html; charset=utf-8")

    def test_clean_urls(self):
        resp, body = self.request("/about")
        self.assertEqual((resp.status, body), (200, b"about page"))

    def test_traversal(self):
        for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/../../secret.txt",
                     "/sub/%2E%2E/%2e%2e/secret.txt", "/..%2fsecret.txt", "//secret.txt",
                     "/static.json", "/../static.json", "/%2e%2e%2fstatic.json"]:
            resp, body = self.request(path)
            self.assertEqual(resp.status, 404, path)
            self.assertNotIn(b"top secret", body)

    def test_symlinks(self):
        resp, body = self.request("/leak.txt")
        self.assertEqual(resp.status, 404)
        self.assertNotIn(b"top secret", body)
        resp, _ = self.request("/outdir/file.txt")
        self.assertEqual(resp.status, 404)
        resp, _ = self.request("/outdir/")
        self.assertEqual(resp.status, 404)
        resp, body = self.request("/alias.html")  # a link inside the root is fine
        self.assertEqual((resp.status, body), (200, b"about page"))

    def test_hidden_files(self):
        resp, body = self.request("/.env")
        self.assertEqual(resp.status, 404)
        self.assertNotIn(b"SECRET", body)
        resp, body = self.request("/.well-known/security.txt")
        self.assertEqual((resp.status, body), (200, b"contact"))

    def test_percent_encoded_names(self):
        resp, body = self.request("/caf%C3%A9.txt")
        self.assertEqual((resp.status, body), (200, b"unicode name"))
        resp, _ = self.request("/bad%00.txt")
        self.assertEqual(resp.status, 400)
        resp, _ = self.request("/bad%ff.txt")
        self.assertEqual(resp.status, 404)

    def test_head_methods_and_conditional(self):
        resp, body = self.request("/style.css", method="HEAD")
        self.assertEqual((resp.status, body), (200, b""))
        self.assertEqual(resp.getheader("Content-Length"), "6")
        resp, _ = self.request("/style.css", method="POST")
        self.assertEqual(resp.status, 405)
        self.assertEqual(resp.getheader("Allow"), "GET, HEAD")
        resp, _ = self.request("/style.css", method="DELETE")
        self.assertEqual(resp.status, 405)
        resp, _ = self.request("/style.css")
        resp, body = self.request("/style.css",
                                  headers={"If-Modified-Since": resp.getheader("Last-Modified")})
        self.assertEqual((resp.status, body), (304, b""))

    def test_health(self):
        resp, body = self.request("/health")
        self.assertEqual((resp.status, body), (200, b"ok\n"))

    def test_zz_logs_and_sigterm(self):
        self.request("/style.css")
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=5), 0)
        self.log.seek(0)
        log = self.log.read().decode()
        self.assertIn('"GET /style.css" 200 6', log)
        self.assertIn("serving site/ on 0.0.0.0:", log)
        request_lines = [line for line in log.splitlines() if '"' in line]
        self.assertGreaterEqual(len(request_lines), 20)


if __name__ == "__main__":
    unittest.main()


class DotStaticTest(unittest.TestCase):
    """dokku's `.static`: the app's root is the site (hidden files stay hidden), or
    $NGINX_ROOT; a root outside the app is refused."""

    def serve(self, app, extra_env):
        port = free_port()
        env = dict(os.environ, PORT=str(port), **extra_env)
        if "NGINX_ROOT" not in extra_env:
            env.pop("NGINX_ROOT", None)
        proc = subprocess.Popen([sys.executable, SERVER], cwd=app, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait()))
        for _ in range(100):
            if proc.poll() is not None:
                return proc, None
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proc, port
            except OSError:
                time.sleep(0.05)
        return proc, None

    def get(self, port, path):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, body

    def test_root_nginx_root_and_escape(self):
        with tempfile.TemporaryDirectory() as app:
            for name, text in {".static": "", "index.html": "root page", ".env": "S=1",
                               "_site/index.html": "built page"}.items():
                os.makedirs(os.path.dirname(os.path.join(app, name)), exist_ok=True)
                with open(os.path.join(app, name), "w", encoding="utf-8") as f:
                    f.write(text)
            _, port = self.serve(app, {})
            self.assertEqual(self.get(port, "/"), (200, b"root page"))
            self.assertEqual(self.get(port, "/.env")[0], 404)
            self.assertEqual(self.get(port, "/.static")[0], 404)
            _, port = self.serve(app, {"NGINX_ROOT": "_site"})
            self.assertEqual(self.get(port, "/"), (200, b"built page"))
            proc, port = self.serve(app, {"NGINX_ROOT": "../"})
            self.assertIsNone(port)
            self.assertIn(b"must stay inside the app", proc.stderr.read())
