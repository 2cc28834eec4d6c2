#!/usr/bin/env python3
"""http_load.py -- a small HTTP/1.1 load generator (Python 3 standard library only).

    scripts/http_load.py [-n REQUESTS] [-c CONNECTIONS] [-p PROCESSES] [--no-keepalive]
                         [-X METHOD] [-d @FILE|DATA] [-H 'Name: value'] [-t SECONDS]
                         [--expect STATUS]... [--expect-body-sha256 HEX] [--json] [-q]
                         URL [URL...]

Sends REQUESTS (default 1000) requests over CONNECTIONS (default 8) concurrent keep-alive
connections (http.client, one thread per connection, spread over PROCESSES processes,
default min(2, CPUs), since one Python process tops out at a few thousand requests per
second). URLs are used round-robin. Each response body is read completely; a body cut short
(connection closed before Content-Length / last chunk) counts as the error "incomplete".
A connection the server closes is reopened for the next request.

Prints a summary:

    http_load: 3000 requests in 1.42 s = 2113 req/s, 8 connections, keep-alive
      status 200: 3000
      errors: none
      latency ms: p50 3.1  p90 5.2  p99 9.8  max 21.0
      connections opened: 8

With --json the last line is one JSON object: {"requests", "seconds", "rps", "statuses":
{"200": n}, "errors": {"kind": n}, "latency_ms": {"p50","p90","p99","max"}, "connections"}.
Error kinds: refused, reset, closed (closed before a status line), incomplete (body cut
short), timeout, bad_body (--expect-body-sha256 mismatch), other.

Exit status: 0 when there were no errors and (with --expect, repeatable) every status was
one of those expected; 1 otherwise; 2 usage.
"""

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import socket
import sys
import threading
import time
import urllib.parse


def classify(exc):
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, http.client.HTTPException):
        return "other"
    return "other"


def run_share(args, count, threads, out_q):
    """Runs in one process: count requests over `threads` connections."""
    urls = [urllib.parse.urlsplit(u) for u in args.urls]
    body = args.body
    lock = threading.Lock()
    state = {"left": count, "i": 0}
    statuses, errors, lat = {}, {}, []
    opened = [0]

    def take():
        with lock:
            if state["left"] <= 0:
                return None
            state["left"] -= 1
            state["i"] += 1
            return urls[state["i"] % len(urls)]

    def worker():
        conn = None
        cur = None
        while True:
            u = take()
            if u is None:
                break
            host = (u.hostname, u.port or 80)
            if conn is None or cur != host or not args.keepalive:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(host[0], host[1], timeout=args.timeout)
                cur = host
                with lock:
                    opened[0] += 1
            path = (u.path or "/") + ("?" + u.query if u.query else "")
            headers = dict(args.headers)
            if not args.keepalive:
                headers["Connection"] = "close"
            t0 = time.monotonic()
            try:
                conn.request(args.method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                dt = time.monotonic() - t0
                kind = None
                if args.expect_body_sha256 and hashlib.sha256(data).hexdigest() != args.expect_body_sha256:
                    kind = "bad_body"
                with lock:
                    lat.append(dt)
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    if kind:
                        errors[kind] = errors.get(kind, 0) + 1
                if resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 -- every failure is counted, none is fatal
                kind = classify(e)
                with lock:
                    errors[kind] = errors.get(kind, 0) + 1
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out_q.put({"statuses": statuses, "errors": errors, "lat": lat, "opened": opened[0]})


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def main():
    ap = argparse.ArgumentParser(description="HTTP/1.1 load generator (see the docstring)")
    ap.add_argument("urls", nargs="+", metavar="URL")
    ap.add_argument("-n", type=int, default=1000, dest="requests")
    ap.add_argument("-c", type=int, default=8, dest="connections")
    ap.add_argument("-p", type=int, default=min(2, os.cpu_count() or 1), dest="processes")
    ap.add_argument("--no-keepalive", action="store_false", dest="keepalive")
    ap.add_argument("-X", default=None, dest="method")
    ap.add_argument("-d", default=None, dest="data")
    ap.add_argument("-H", action="append", default=[], dest="header")
    ap.add_argument("-t", type=float, default=30.0, dest="timeout")
    ap.add_argument("--expect", action="append", type=int, default=[])
    ap.add_argument("--expect-body-sha256", default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-q", action="store_true", dest="quiet")
    args = ap.parse_args()
    if args.requests < 1 or args.connections < 1 or args.processes < 1:
        ap.error("-n, -c and -p must be positive")
    for u in args.urls:
        if urllib.parse.urlsplit(u).scheme != "http":
            ap.error("only http:// URLs: %s" % u)
    args.body = None
    if args.data is not None:
        if args.data.startswith("@"):
            with open(args.data[1:], "rb") as f:
                args.body = f.read()
        else:
            args.body = args.data.encode()
    if args.method is None:
        args.method = "POST" if args.body is not None else "GET"
    args.headers = []
    for h in args.header:
        n, _, v = h.partition(":")
        args.headers.append((n.strip(), v.strip()))

    procs = max(1, min(args.processes, args.connections))
    shares = []
    for i in range(procs):
        n = args.requests // procs + (1 if i < args.requests % procs else 0)
        c = args.connections // procs + (1 if i < args.connections % procs else 0)
        shares.append((n, c))
    t0 = time.monotonic()
    results = []
    if procs == 1:
        q = _ListQueue()
        run_share(args, shares[0][0], shares[0][1], q)
        results = q.items
    else:
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        ps = [ctx.Process(target=run_share, args=(args, n, c, q)) for n, c in shares]
        for p in ps:
            p.start()
        for _ in ps:
            results.append(q.get())
        for p in ps:
            p.join()
    secs = time.monotonic() - t0

    statuses, errors, lat, opened = {}, {}, [], 0
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
        lat.extend(r["lat"])
        opened += r["opened"]
    lat.sort()
    total = sum(statuses.values()) + sum(v for k, v in errors.items() if k != "bad_body")
    latency = {k: round(pct(lat, p) * 1000, 2) for k, p in (("p50", 50), ("p90", 90), ("p99", 99))}
    latency["max"] = round(lat[-1] * 1000, 2) if lat else 0.0
    summary = {"requests": total, "seconds": round(secs, 3), "rps": round(total / secs, 1) if secs else 0,
               "statuses": {str(k): v for k, v in sorted(statuses.items())},
               "errors": dict(sorted(errors.items())), "latency_ms": latency,
               "connections": opened, "keepalive": args.keepalive}
    if not args.quiet:
        print("http_load: %d requests in %.2f s = %.0f req/s, %d connections, %s" % (
            total, secs, summary["rps"], args.connections,
            "keep-alive" if args.keepalive else "no keep-alive"))
        for k, v in sorted(statuses.items()):
            print("  status %d: %d" % (k, v))
        print("  errors: %s" % (", ".join("%s %d" % kv for kv in sorted(errors.items())) or "none"))
        print("  latency ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f" % (
            latency["p50"], latency["p90"], latency["p99"], latency["max"]))
        print("  connections opened: %d" % opened)
    if args.json:
        print(json.dumps(summary))
    bad = bool(errors) or (args.expect and any(s not in args.expect for s in statuses))
    return 1 if bad else 0


class _ListQueue:
    def __init__(self):
        self.items = []

    def put(self, x):
        self.items.append(x)


if __name__ == "__main__":
    sys.exit(main())
