"""procfile-hello: example app for paas's procfile buildpack: just a Procfile
(`web: python3 server.py`) and this script, run with the stack's python3 (standard library
only, nothing to build). Change VERSION and deploy again to see a new release.
"""
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = "procfile-hello"
VERSION = "v1"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            status, body = 200, f"Hello from {NAME} {VERSION}\n"
        elif path == "/health":
            status, body = 200, "ok\n"
        else:
            status, body = 404, "not found\n"
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        print(f"{self.address_string()} {fmt % args}", flush=True)


def stop(signum, _frame):
    print(f"{signal.Signals(signum).name} received, exiting", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{NAME} {VERSION} listening on 0.0.0.0:{port}", flush=True)
    server.serve_forever()
