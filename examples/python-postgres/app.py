"""python-postgres: example Python app for paas with a PostgreSQL add-on (DATABASE_URL).

Standard library http.server plus the pure-Python driver pg8000. One connection per request:
simple, and nothing to reset when the database restarts. Tables come from migrate.py
(Procfile `release: python migrate.py`).

  GET /        -> "python-postgres ok"
  GET /health  -> "ok" when SELECT 1 works, 503 otherwise
  POST /notes  -> body is the note; 201 {"id": N, "body": "..."}
  GET /notes   -> [{"id": N, "body": "..."}, ...] ordered by id
"""
import json
import os
import signal
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import db

NAME = "python-postgres"


def query(sql, params=(), fetch=True):
    conn = db.connect()
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        rows = cur.fetchall() if fetch else None
        conn.commit()
        return rows
    finally:
        try:
            conn.close()
        except Exception:
            pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _send(self, status, body, content_type="text/plain; charset=utf-8"):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status, value):
        self._send(status, json.dumps(value) + "\n", "application/json")

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode("utf-8") if length > 0 else ""

    def _handle(self):
        path = self.path.split("?", 1)[0]
        try:
            if path == "/" and self.command in ("GET", "HEAD"):
                self._send(200, f"{NAME} ok\n")
            elif path == "/health" and self.command in ("GET", "HEAD"):
                try:
                    query("SELECT 1")
                except Exception as e:
                    self._send(503, f"database unavailable: {db.describe(e)}\n")
                else:
                    self._send(200, "ok\n")
            elif path == "/notes" and self.command == "POST":
                body = self._body()
                rows = query("INSERT INTO notes (body) VALUES (%s) RETURNING id, body", (body,))
                self._json(201, {"id": rows[0][0], "body": rows[0][1]})
            elif path == "/notes" and self.command in ("GET", "HEAD"):
                rows = query("SELECT id, body FROM notes ORDER BY id")
                self._json(200, [{"id": r[0], "body": r[1]} for r in rows])
            elif path in ("/", "/health", "/notes"):
                self._send(405, "method not allowed\n")
            else:
                self._send(404, "not found\n")
        except Exception as e:
            traceback.print_exc()
            try:
                self._send(500, f"error: {db.describe(e)}\n")
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
    if not os.environ.get("DATABASE_URL"):
        print("warning: DATABASE_URL is not set; /notes and /health will fail", flush=True)
    print(f"{NAME} listening on 0.0.0.0:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
