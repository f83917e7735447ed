"""The flood half of bench/flood.sh: abuse a running paasd's router and measure what a normal
user sees meanwhile. Talks only to loopback addresses. Every phase is bounded in count and
time and closes what it opened.

Phases: idle figures; N idle connections (never sending a byte) spread over source
addresses 127.0.0.2.. (so a per-address cap does not refuse them all); `paas apps` latency,
normal requests and the edge's RSS/fds under them (the edge: the router's process, `--pid`);
closing them and timing that RSS back
under 2x idle; S slowloris connections (request head one byte at a time) with normal
requests alongside. Prints a table and one JSON line.
"""
import argparse
import json
import multiprocessing
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time



def read_all(s):
    """Reads a socket to EOF and closes it."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data

def rss_kb(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def paas_apps(paas, runs):
    """`paas apps --json` spawn to exit, in ms; failures (non-zero exit or over 10 s) counted."""
    ts, failed = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        try:
            r = subprocess.run(paas + ["apps", "--json"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10)
            ok = r.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        ms = (time.perf_counter() - t) * 1000
        if ok:
            ts.append(ms)
        else:
            failed += 1
    return ts, failed


def normal_requests(router, host, n, pause=0.0):
    """n `GET /` on fresh connections from 127.0.0.1, in ms; non-200 and errors counted."""
    req = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    ts, failed, errors = [], 0, {}
    for _ in range(n):
        t = time.perf_counter()
        try:
            s = socket.create_connection(router, timeout=5)
            s.sendall(req)
            data = read_all(s)
            status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/") else b"none"
            if status == b"200":
                ts.append((time.perf_counter() - t) * 1000)
            else:
                failed += 1
                errors[status.decode()] = errors.get(status.decode(), 0) + 1
        except OSError as e:
            failed += 1
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
        if pause:
            time.sleep(pause)
    return ts, failed, errors


def open_idle(router, n, per_source, first=0):
    """n connections, never sending a byte; returns (sockets, connected, failed)."""
    sel = selectors.DefaultSelector()
    socks, pending = [], 0
    for i in range(first, first + n):
        src = f"127.0.0.{2 + i // per_source}"
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((src, 0))
        err = s.connect_ex(router)
        socks.append(s)
        if err in (0,):
            continue
        sel.register(s, selectors.EVENT_WRITE)
        pending += 1
        # Keep the SYN queue moderate: wait for some completions every 500 starts.
        if pending >= 500:
            for key, _ in sel.select(timeout=2):
                sel.unregister(key.fileobj)
                pending -= 1
    deadline = time.time() + 30
    while pending and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            sel.unregister(key.fileobj)
            pending -= 1
    sel.close()
    connected = sum(1 for s in socks if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
    return socks, connected, n - connected


def closed_by_server(socks):
    """How many of `socks` the server has closed (EOF, reset or an answer such as a 503)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        try:
            sel.register(s, selectors.EVENT_READ)
        except (ValueError, OSError):
            pass
    n = len(sel.select(timeout=0.2))
    sel.close()
    return n


def holder(pipe, router, first, n, per_source):
    """A child process holding n idle connections: one process may hold fewer sockets than
    the flood needs (RLIMIT_NOFILE's hard limit cannot be raised without CAP_SYS_RESOURCE)."""
    socks, connected, failed = open_idle(router, n, per_source, first)
    pipe.send((connected, failed))
    pipe.recv()
    pipe.send(closed_by_server(socks))
    pipe.recv()
    for s in socks:
        s.close()
    pipe.send("closed")


class Flood:
    CHUNK = 8000

    def __init__(self, router, n, per_source):
        self.kids = []
        for first in range(0, n, self.CHUNK):
            ours, theirs = multiprocessing.Pipe()
            k = multiprocessing.Process(target=holder, args=(
                theirs, router, first, min(self.CHUNK, n - first), per_source))
            k.start()
            self.kids.append((k, ours))
        res = [p.recv() for _, p in self.kids]
        self.connected = sum(c for c, _ in res)
        self.failed = sum(f for _, f in res)

    def closed_by_server(self):
        for _, p in self.kids:
            p.send("check")
        return sum(p.recv() for _, p in self.kids)

    def close(self):
        for _, p in self.kids:
            p.send("close")
        for k, p in self.kids:
            p.recv()
            k.join()


def counters(sock):
    """The router's connection counters from GET /health (None for a paasd without them)."""
    if not sock:
        return None
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"GET /api/v1/health HTTP/1.0\r\n\r\n")
        data = read_all(s)
        return json.loads(data.split(b"\r\n\r\n", 1)[1]).get("connections")
    except (OSError, ValueError, IndexError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--paas", required=True, help="the paas command line, space separated")
    ap.add_argument("--app", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--idle", type=int, default=20000)
    ap.add_argument("--per-source", type=int, default=200)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--slow-secs", type=int, default=15)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--socket", help="paasd's API socket, for the router's connection counters")
    a = ap.parse_args()
    h, p = a.router.rsplit(":", 1)
    router = (h, int(p))
    paas = a.paas.split()
    # Each holder process keeps up to Flood.CHUNK sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out = {"idle_conns": a.idle, "slow_conns": a.slow,
           "paasd_nofile": open(f"/proc/{a.pid}/limits").read().split("Max open files")[1].split()[:2]}

    def ps():
        r = subprocess.run(paas + ["--json", "ps", a.app], capture_output=True, timeout=30)
        try:
            inst = json.loads(r.stdout)["instances"]
            return [(i.get("name"), i.get("started_at"), i.get("restarts"), i.get("state")) for i in inst]
        except (ValueError, KeyError):
            return None

    before = ps()
    time.sleep(1)
    idle_rss = rss_kb(a.pid)
    out["rss_idle_mb"] = idle_rss / 1024
    out["fds_idle"] = fds(a.pid)
    t, f = paas_apps(paas, a.runs)
    out["apps_idle_ms"] = (statistics.median(t) if t else None, max(t) if t else None, f)
    t, f, e = normal_requests(router, a.host, 200)
    out["req_idle_ms"] = (pct(t, 0.5), pct(t, 0.95), f, e)

    # --- idle flood ---
    t0 = time.time()
    flood = Flood(router, a.idle, a.per_source)
    connected, failed = flood.connected, flood.failed
    out["flood_connected"], out["flood_connect_failed"] = connected, failed
    out["flood_open_secs"] = round(time.time() - t0, 1)
    time.sleep(2)
    out["fds_flood"] = fds(a.pid)
    out["rss_flood_mb"] = rss_kb(a.pid) / 1024
    t, f = paas_apps(paas, a.runs)
    out["apps_flood_ms"] = (statistics.median(t) if t else None, max(t) if t else None, f)
    t, f, e = normal_requests(router, a.host, 200)
    out["req_flood_ms"] = (pct(t, 0.5), pct(t, 0.95), f, e)
    out["flood_closed_by_server"] = flood.closed_by_server()
    out["counters_flood"] = counters(a.socket)
    out["rss_peak_mb"] = rss_kb(a.pid, "VmHWM") / 1024
    flood.close()
    t0 = time.time()
    fell = None
    while time.time() - t0 < 60:
        if rss_kb(a.pid) < 2 * idle_rss:
            fell = round(time.time() - t0, 1)
            break
        time.sleep(0.5)
    out["rss_after_mb"] = rss_kb(a.pid) / 1024
    out["rss_under_2x_idle_after_s"] = fell
    # Where it settles: 30 s after closing.
    time.sleep(max(0.0, 30 - (time.time() - t0)))
    out["rss_30s_after_mb"] = rss_kb(a.pid) / 1024
    after = ps()
    out["instances_unchanged"] = before == after
    out["ps_before"], out["ps_after"] = before, after

    # --- slowloris ---
    head = f"GET / HTTP/1.1\r\nHost: {a.host}\r\nUser-Agent: slowloris\r\nX-Pad: ".encode()
    slow = []
    for i in range(a.slow):
        try:
            s = socket.create_connection(router, timeout=5, source_address=("127.0.0.250", 0))
            s.setblocking(False)
            slow.append(s)
        except OSError:
            pass
    out["slow_connected"] = len(slow)
    lat, lat_failed, errs = [], 0, {}
    t0 = time.time()
    i = 0
    closed_at = {}
    while time.time() - t0 < a.slow_secs:
        b = head[i:i + 1] if i < len(head) else b"a"
        i += 1
        for k, s in enumerate(slow):
            if k in closed_at:
                continue
            try:
                s.send(b)
            except OSError:
                closed_at[k] = time.time() - t0
        t, f, e = normal_requests(router, a.host, 10, pause=0.02)
        lat += t
        lat_failed += f
        for k, v in e.items():
            errs[k] = errs.get(k, 0) + v
    # Anything the server closed without our send noticing yet.
    closed = len(closed_at) + closed_by_server([s for k, s in enumerate(slow) if k not in closed_at])
    for s in slow:
        s.close()
    out["slow_closed_by_server"] = closed
    out["slow_first_close_s"] = round(min(closed_at.values()), 1) if closed_at else None
    out["req_slowloris_ms"] = (pct(lat, 0.5), pct(lat, 0.95), lat_failed, errs, len(lat))
    out["fds_end"] = fds(a.pid)
    out["counters_end"] = counters(a.socket)

    print(json.dumps(out))
    print(f"""
edge RLIMIT_NOFILE (soft hard): {out['paasd_nofile']}
edge RSS idle {out['rss_idle_mb']:.1f} MB, with {connected} idle conns {out['rss_flood_mb']:.1f} MB, peak {out['rss_peak_mb']:.1f} MB, 
  after closing {out['rss_after_mb']:.1f} MB (under 2x idle after {fell} s), 30 s after closing {out['rss_30s_after_mb']:.1f} MB
edge fds idle {out['fds_idle']}, flood {out['fds_flood']}; idle conns connected {connected}, failed {failed}, closed by server {out['flood_closed_by_server']}
paas apps --json (median, max ms, failed): idle {out['apps_idle_ms']}, flood {out['apps_flood_ms']}
normal GET / (p50, p95 ms, failed, errors): idle {out['req_idle_ms']}, flood {out['req_flood_ms']}
  with {len(slow)} slowloris conns: {out['req_slowloris_ms']}; slow conns closed by server {closed} (first after {out['slow_first_close_s']} s)
instances unchanged: {out['instances_unchanged']} {before} -> {after}
router connection counters under the flood: {out['counters_flood']}
  at the end: {out['counters_end']}
""")


if __name__ == "__main__":
    sys.exit(main())
