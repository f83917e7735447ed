"""python-hello: example Python app for paas (python buildpack; Procfile `web: python app.py`).

Uses only http.server from the standard library, plus `six` from PyPI to have one real
dependency to install. Change VERSION and deploy again to see a new release.
"""
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import six

NAME = "python-hello"
VERSION = "v1"


class Handler(BaseHTTPRequestHandler):
    def _answer(self, with_body):
        path = self.path.split("?", 1)[0]
        if path == "/":
            status, body = 200, f"Hello from {NAME} {VERSION} (six {six.__version__})\n"
        elif path == "/health":
            status, body = 200, "ok\n"
        else:
            status, body = 404, "not found\n"
        data = six.ensure_binary(body)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


def main():
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True

    def stop(signum, _frame):
        print(f"{signal.Signals(signum).name} received, exiting", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{NAME} {VERSION} listening on 0.0.0.0:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
