#!/usr/bin/env python3
"""static-server: the web server of paas's static buildpack (python3 standard library only).

Serves the site root (static.json's "root"; else, when the app has dokku's `.static` file,
$NGINX_ROOT or the app directory itself; else public/) of the app directory (the current
directory, /app at run time) on 0.0.0.0:$PORT:

- GET and HEAD; any other method gets 405.
- A directory is served by its index.html (no listings); /dir without the slash is
  redirected to /dir/ so relative links work.
- Content-Type from the file extension (text types with charset=utf-8);
  Last-Modified / If-Modified-Since (304).
- 404 for anything missing, for hidden files (a path segment starting with a dot, except
  .well-known), and for anything whose real path (symlinks resolved) is outside the root:
  nothing outside the root is ever served.
- /health answers 200 "ok" when the site has no file of that name.
- One log line per request on stdout; SIGTERM (or SIGINT) ends it with status 0.

static.json (all optional): {"root": "public", "clean_urls": false, "error_page": "404.html"}
clean_urls serves /about from about.html; error_page (relative to the root) is the body of
404 answers.
"""

import email.utils
import json
import mimetypes
import os
import posixpath
import signal
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TYPES = {
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".xml": "application/xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
}
TEXT_TYPES = ("application/json", "application/javascript", "application/xml",
              "application/manifest+json", "image/svg+xml")


def fatal(message):
    print(f"static-server: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def load_config(app_dir):
    config = {"root": "public", "clean_urls": False, "error_page": None}
    if os.path.isfile(os.path.join(app_dir, ".static")):
        # dokku's marker: the app's root is the site, or $NGINX_ROOT (relative to the app).
        config["root"] = os.environ.get("NGINX_ROOT") or "."
    path = os.path.join(app_dir, "static.json")
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            fatal(f"static.json is not valid JSON: {e}")
        if not isinstance(data, dict):
            fatal("static.json must hold a JSON object")
        config.update({k: v for k, v in data.items() if k in config})
    app = os.path.realpath(app_dir)
    root = os.path.realpath(os.path.join(app_dir, str(config["root"])))
    if os.path.isabs(str(config["root"])) or not (root == app or root.startswith(app + os.sep)):
        fatal(f"the site root {config['root']} must stay inside the app (a relative path)")
    if not os.path.isdir(root):
        fatal(f"the site root {config['root']} is not a directory")
    config["root"] = root
    return config


def content_type(path):
    ext = os.path.splitext(path)[1].lower()
    ctype = TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in TEXT_TYPES:
        ctype += "; charset=utf-8"
    return ctype


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "static-server"
    sys_version = ""
    timeout = 30  # idle keep-alive connections

    config = None  # set in main()

    def inside_root(self, path):
        """The real path of `path` if it exists inside the root, else None."""
        root = self.config["root"]
        real = os.path.realpath(path)
        if real == root or real.startswith(root + os.sep):
            return real
        return None

    def resolve(self, url_path):
        """(status, file or redirect location)."""
        path = urllib.parse.unquote(url_path, errors="strict")
        if "\0" in path:
            return 400, None
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            return 404, None
        if any(p.startswith(".") and p != ".well-known" for p in parts):
            return 404, None
        root = self.config["root"]
        candidate = os.path.join(root, *parts)
        real = self.inside_root(candidate)
        if real and os.path.isdir(real):
            if not path.endswith("/"):
                return 301, None
            index = self.inside_root(os.path.join(real, "index.html"))
            if index and os.path.isfile(index):
                return 200, index
            return 404, None
        if real and os.path.isfile(real):
            return 200, real
        if self.config["clean_urls"] and parts and not path.endswith("/"):
            html = self.inside_root(candidate + ".html")
            if html and os.path.isfile(html):
                return 200, html
        if path == "/health":
            return 200, "health"
        return 404, None

    def send(self, status, ctype, body, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.sent = len(body)

    def not_found(self):
        page = self.config["error_page"]
        if page:
            real = self.inside_root(os.path.join(self.config["root"], str(page)))
            if real and os.path.isfile(real):
                with open(real, "rb") as f:
                    self.send(404, content_type(real), f.read())
                return
        self.send(404, "text/plain; charset=utf-8", b"404 Not Found\n")

    def serve_file(self, path):
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            mtime = int(st.st_mtime)
            since = self.headers.get("If-Modified-Since")
            if since:
                try:
                    ts = email.utils.parsedate_to_datetime(since).timestamp()
                except (TypeError, ValueError, IndexError, OverflowError):
                    ts = None
                if ts is not None and mtime <= ts:
                    self.send_response(304)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.status = 304
                    return
            self.send_response(200)
            self.send_header("Content-Type", content_type(path))
            self.send_header("Content-Length", str(st.st_size))
            self.send_header("Last-Modified", email.utils.formatdate(mtime, usegmt=True))
            self.end_headers()
            if self.command == "HEAD":
                return
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                self.wfile.write(chunk)
                self.sent += len(chunk)

    def handle_request(self):
        self.status, self.sent = 0, 0
        if self.command not in ("GET", "HEAD"):
            self.status = 405
            self.send(405, "text/plain; charset=utf-8", b"405 Method Not Allowed\n",
                      [("Allow", "GET, HEAD")])
            return
        url_path, _, query = self.path.partition("?")
        url_path = url_path.split("#", 1)[0]
        if not url_path.startswith("/"):
            self.status = 400
            self.send(400, "text/plain; charset=utf-8", b"400 Bad Request\n")
            return
        try:
            status, target = self.resolve(url_path)
        except UnicodeDecodeError:
            status, target = 404, None
        self.status = status
        if status == 200 and target == "health":
            self.send(200, "text/plain; charset=utf-8", b"ok\n")
        elif status == 200:
            self.serve_file(target)
        elif status == 301:
            location = posixpath.normpath(url_path) + "/" + ("?" + query if query else "")
            location = "/" + location.lstrip("/")  # never //host: a redirect elsewhere
            self.send(301, "text/plain; charset=utf-8", b"", [("Location", location)])
        elif status == 400:
            self.send(400, "text/plain; charset=utf-8", b"400 Bad Request\n")
        else:
            self.not_found()

    def do_GET(self):
        self.timed(self.handle_request)

    def do_HEAD(self):
        self.timed(self.handle_request)

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.do_GET
        raise AttributeError(name)

    def timed(self, fn):
        start = time.monotonic()
        try:
            fn()
        finally:
            ms = (time.monotonic() - start) * 1000
            print(f'{self.client_address[0]} "{self.command} {self.path}" {self.status} '
                  f"{self.sent} {ms:.1f}ms", flush=True)

    def log_message(self, fmt, *args):
        pass  # one line per request from timed(); malformed requests are not logged


def main():
    app_dir = os.getcwd()
    config = load_config(app_dir)
    Handler.config = config
    port = int(os.environ.get("PORT") or 5000)
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True

    def stop(signum, _frame):
        print(f"static-server: {signal.Signals(signum).name} received, exiting", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"static-server: serving {os.path.relpath(config['root'], app_dir)}/ "
          f"on 0.0.0.0:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
