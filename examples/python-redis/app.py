"""python-redis: example Python app for paas with a Redis add-on (REDIS_URL).

Standard library http.server plus redis-py; the URL (redis://:password@host:port or
redis://default:password@host:port) goes straight to redis.from_url.

  GET /            -> "python-redis ok"
  GET /health      -> "ok" when PING works, 503 otherwise
  PUT /keys/<k>    -> body is the value; 204
  GET /keys/<k>    -> 200 the value, 404 when the key does not exist
  POST /counter    -> INCR hits; the new number as text
"""
import os
import signal
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import redis

NAME = "python-redis"
_client = None


def client():
    # redis-py's client owns a connection pool and reconnects on its own after a restart.
    global _client
    if _client is None:
        url = os.environ.get("REDIS_URL")
        if not url:
            raise RuntimeError("REDIS_URL is not set (attach one: paas addons create APP redis)")
        _client = redis.from_url(url, socket_connect_timeout=5, socket_timeout=5,
                                 health_check_interval=30)
    return _client


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _send(self, status, body=b""):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self):
        path = self.path.split("?", 1)[0]
        try:
            if path == "/" and self.command in ("GET", "HEAD"):
                self._send(200, f"{NAME} ok\n")
            elif path == "/health" and self.command in ("GET", "HEAD"):
                try:
                    client().ping()
                except Exception as e:
                    self._send(503, f"redis unavailable: {e}\n")
                else:
                    self._send(200, "ok\n")
            elif path.startswith("/keys/") and len(path) > len("/keys/"):
                key = unquote(path[len("/keys/"):])
                if self.command == "PUT":
                    client().set(key, self._body())
                    self._send(204)
                elif self.command in ("GET", "HEAD"):
                    value = client().get(key)
                    if value is None:
                        self._send(404, "not found\n")
                    else:
                        self._send(200, value)
                else:
                    self._send(405, "method not allowed\n")
            elif path == "/counter":
                if self.command == "POST":
                    self._send(200, f"{client().incr('hits')}\n")
                else:
                    self._send(405, "method not allowed\n")
            else:
                self._send(404, "not found\n")
        except Exception as e:
            traceback.print_exc()
            try:
                self._send(500, f"error: {e}\n")
            except Exception:
                pass

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

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
    if not os.environ.get("REDIS_URL"):
        print("warning: REDIS_URL is not set; /keys and /counter will fail", flush=True)
    print(f"{NAME} listening on 0.0.0.0:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
