#!/usr/bin/env python3
"""soak.py -- heisen-httpd in front of php-fpm under load while a chaos loop breaks the backend
(issue 7 §1). Run through scripts/soak.sh (`make soak`). Python 3 standard library only.

    soak.py [--seconds S] [--connections N] [--timeout-ms MS] [--cpu N] [--json FILE]

Load: N keep-alive HTTP/1.1 connections (one thread each) sending GET /hello.php (php-fpm),
GET /static.txt (a static file) and POST /echo.php with a small body, each with a client-side
deadline of the configured FastCGI timeout + 5 s.

Chaos (in a loop, each fault followed by a quiet period):
  kill     SIGKILL one php-fpm worker (the master forks a new one)
  reload   SIGUSR2 to the master (graceful reload, scripts/php-fpm.sh reload)
  restart  stop the master (scripts/php-fpm.sh stop), 1 s down, start it again
  unlink   rename the socket away for 0.5 s, then back (the master keeps listening)

Asserted (each failure is listed, exit status 1):
  * heisen-httpd never dies, and exits 0 on SIGTERM at the end;
  * every request ends: a status, or a response cut short / a closed connection (a truncated
    FastCGI response ends the HTTP connection); never a client-side deadline (a hang);
  * outside the fault windows (fault start .. backend back + 1 s) every request is 2xx; inside,
    only 2xx, 502, 503, 504 or a cut/closed connection;
  * service recovers within 1 s of the backend's return (first 2xx after it);
  * the server's descriptors come back to the baseline, and its resident memory to the
    baseline within max(25 %, 16 MiB), once the load has stopped;
  * the numbers add up: requests sent = responses by status + cut + closed (client side);
    access-log lines = requests that got a status line; with the FastCGI statistics of
    heisen-httpd (when it offers them), requests = sum of outcomes.
Prints a report (requests, outcomes by kind, faults injected, longest recovery, descriptors and
memory before/after) and, with --json, writes it as JSON too.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("HEISEN_BIN", os.path.join(ROOT, "build", "bin"))
HTTPD = os.path.join(BIN, "heisen-httpd")
FPM_SH = os.path.join(ROOT, "scripts", "php-fpm.sh")


def now():
    return time.monotonic()


def proc_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def proc_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


# ---------------------------------------------------------------------------------- HTTP client

class Cut(Exception):
    """The connection ended inside a response (or before its status line)."""

    def __init__(self, kind):
        Exception.__init__(self, kind)
        self.kind = kind


class Client:
    def __init__(self, port, timeout):
        self.port, self.timeout = port, timeout
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock, self.buf = None, b""

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise Cut("closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def request(self, method, path, body=b""):
        """Returns (status, keep_alive). Raises Cut, socket.timeout or OSError."""
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = "%s %s HTTP/1.1\r\nHost: soak\r\n" % (method, path)
        if body:
            head += "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n" % len(body)
        self.sock.sendall(head.encode() + b"\r\n" + body)
        got_status = False
        try:
            status_line = self._line()
            got_status = True
            status = int(status_line.split(b" ")[1])
            te = cl = None
            keep = True
            while True:
                h = self._line()
                if not h:
                    break
                k, _, v = h.partition(b":")
                k, v = k.strip().lower(), v.strip().lower()
                if k == b"transfer-encoding":
                    te = v
                elif k == b"content-length":
                    cl = int(v)
                elif k == b"connection" and v == b"close":
                    keep = False
            if method == "HEAD" or status in (204, 304):
                pass
            elif te == b"chunked":
                while True:
                    size = int(self._line().split(b";")[0], 16)
                    if size == 0:
                        while self._line():
                            pass
                        break
                    self._exact(size + 2)
            elif cl is not None:
                self._exact(cl)
            else:
                keep = False
                try:
                    while True:
                        self._fill()
                except Cut:
                    pass
            return status, keep
        except Cut:
            raise Cut("cut" if got_status else "closed")
        except ConnectionResetError:
            raise Cut("cut" if got_status else "closed")


# ---------------------------------------------------------------------------------- the soak

class Soak:
    def __init__(self, a):
        self.a = a
        self.dir = tempfile.mkdtemp(prefix="heisen-soak.", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.fpm_dir = os.path.join(self.dir, "fpm")
        self.lock = threading.Lock()
        self.results = []          # (t_start, t_end, outcome) outcome: int status or "cut"/"closed"/"hang"/"refused"
        self.stop_load = threading.Event()
        self.odd = []              # (t0, t1, outcome, method, path, body length) of cut/closed/hang
        self.faults = []           # dicts: kind, start, back (backend available again), end of window
        self.failures = []
        self.httpd = None
        self.err_lines = []

    # -- processes
    def fpm(self, *args, check=True):
        r = subprocess.run([FPM_SH] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError("php-fpm.sh %s: %d %s" % (" ".join(args), r.returncode, r.stderr.strip()))
        return r

    def fpm_start(self):
        r = self.fpm("start", self.fpm_dir, "--workers", str(self.a.workers), "--quiet", check=False)
        if r.returncode == 2:
            print("soak: php-fpm is not installed (scripts/install-deps.sh)", file=sys.stderr)
            sys.exit(2)
        if r.returncode != 0:
            raise RuntimeError("php-fpm.sh start: %s" % r.stderr)
        return r.stdout.strip().splitlines()[-1]

    def start_httpd(self, address):
        www = os.path.join(self.fpm_dir, "www")
        self.accesslog = os.path.join(self.dir, "access.log")
        cmd = [HTTPD, "-bind", "127.0.0.1:0", "-foreground", "-sandbox", www,
               "-fastcgi", ".php", address, "-fastcgi-timeout", str(self.a.timeout_ms),
               "-cpu", str(self.a.cpu), "-accesslog", self.accesslog]
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.path.join(ROOT, "target", "release")
        self.httpd = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, env=env)
        port = [None]
        ready = threading.Event()

        def read_err():
            for raw in self.httpd.stderr:
                line = raw.decode("utf-8", "replace")
                self.err_lines.append(line)
                m = re.search(r"listening on \S+:(\d+)", line)
                if m and port[0] is None:
                    port[0] = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read_err, daemon=True).start()
        if not ready.wait(20) or port[0] is None:
            raise RuntimeError("heisen-httpd did not start: %s" % "".join(self.err_lines))
        self.port = port[0]

    # -- load
    def loader(self, seed):
        rnd = random.Random(seed)
        c = Client(self.port, self.a.timeout_ms / 1000.0 + 5)
        while not self.stop_load.is_set():
            r = rnd.random()
            if r < 0.7:
                req = ("GET", "/hello.php", b"")
            elif r < 0.85:
                req = ("GET", "/static.txt", b"")
            else:
                req = ("POST", "/echo.php", b"x" * rnd.randint(1, 4000))
            t0 = now()
            try:
                status, keep = c.request(*req)
                outcome = status
                if not keep:
                    c.close()
            except Cut as e:
                outcome = e.kind
                c.close()
            except socket.timeout:
                outcome = "hang"
                c.close()
            except ConnectionRefusedError:
                outcome = "refused"
                c.close()
                time.sleep(0.05)
            except OSError:
                outcome = "closed"
                c.close()
            with self.lock:
                self.results.append((t0, now(), outcome))
                if outcome in ("cut", "closed", "hang"):
                    self.odd.append((t0, now(), outcome, req[0], req[1], len(req[2])))
        c.close()

    # -- chaos
    def sock_path(self):
        return os.path.join(self.fpm_dir, "php-fpm.sock")

    def fault(self, kind):
        f = {"kind": kind, "start": now()}
        if kind == "kill":
            pids = [int(p) for p in self.fpm("workers", self.fpm_dir).stdout.split()]
            if pids:
                os.kill(random.choice(pids), signal.SIGKILL)
            f["back"] = now()
        elif kind == "reload":
            self.fpm("reload", self.fpm_dir)
            f["back"] = now()
        elif kind == "restart":
            self.fpm("stop", self.fpm_dir)
            time.sleep(1.0)
            self.fpm_start()
            f["back"] = now()
        elif kind == "unlink":
            p = self.sock_path()
            os.rename(p, p + ".away")
            time.sleep(0.5)
            os.rename(p + ".away", p)
            f["back"] = now()
        f["window_end"] = f["back"] + 1.0
        self.faults.append(f)

    def chaos(self, until):
        kinds = ["kill", "reload", "restart", "unlink"]
        i = 0
        while now() < until - self.a.quiet - 3:
            self.fault(kinds[i % len(kinds)])
            i += 1
            t = now() + self.a.quiet
            while now() < t:
                if self.httpd.poll() is not None:
                    return
                time.sleep(0.05)

    # -- checks
    def in_window(self, t0, t1):
        for f in self.faults:
            if t1 >= f["start"] and t0 <= f["window_end"]:
                return True
        return False

    def fail(self, msg):
        self.failures.append(msg)

    def stats_from_httpd(self):
        """FastCGI statistics, if heisen-httpd offers them (SIGUSR1 dump, announced in -h)."""
        try:
            usage = subprocess.run([HTTPD, "-h"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=10, env=dict(os.environ, LD_LIBRARY_PATH=os.path.join(ROOT, "target", "release"))).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        if "SIGUSR1" not in usage:
            return None
        n = len(self.err_lines)
        self.httpd.send_signal(signal.SIGUSR1)
        deadline = now() + 3
        stats = {}
        while now() < deadline:
            for line in self.err_lines[n:]:
                for k, v in re.findall(r"\b([a-z_]+)=(\d+)\b", line):
                    if "stat" in line or "fastcgi" in line:
                        stats[k] = stats.get(k, 0) + int(v)
            if stats:
                break
            time.sleep(0.1)
        return stats or None

    def run(self):
        a = self.a
        report = {}
        try:
            address = self.fpm_start()
            self.start_httpd(address)
            pid = self.httpd.pid
            # warm-up: a short burst, then connections closed: the baseline
            warm = [threading.Thread(target=self.loader, args=(1000 + i,)) for i in range(a.connections)]
            for t in warm:
                t.start()
            time.sleep(1.5)
            self.stop_load.set()
            for t in warm:
                t.join(a.timeout_ms / 1000.0 + 10)
            self.results.clear()
            self.odd.clear()
            self.stop_load.clear()
            time.sleep(1.0)
            fds0, rss0 = proc_fds(pid), proc_rss_kb(pid)
            # load + chaos
            t_start = now()
            until = t_start + a.seconds
            loaders = [threading.Thread(target=self.loader, args=(i,)) for i in range(a.connections)]
            for t in loaders:
                t.start()
            time.sleep(min(2.0, a.seconds / 10))
            self.chaos(until)
            while now() < until and self.httpd.poll() is None:
                time.sleep(0.1)
            self.stop_load.set()
            for t in loaders:
                t.join(a.timeout_ms / 1000.0 + 10)
            t_end = now()
            alive = self.httpd.poll() is None
            if not alive:
                self.fail("heisen-httpd died during the soak (exit %s)" % self.httpd.returncode)
            # back to baseline?
            fds1 = rss1 = -1
            deadline = now() + 10
            while alive and now() < deadline:
                fds1, rss1 = proc_fds(pid), proc_rss_kb(pid)
                if fds1 <= fds0:
                    break
                time.sleep(0.2)
            if alive and fds1 != fds0:
                self.fail("descriptors: %d before, %d after the soak" % (fds0, fds1))
            if alive and rss1 > max(rss0 * 1.25, rss0 + 16 * 1024):
                self.fail("resident memory: %d KiB before, %d KiB after the soak" % (rss0, rss1))
            fstats = self.stats_from_httpd() if alive else None
            # -- requests
            outcomes = {}
            longest = 0.0
            bad_outside = bad_inside = 0
            for t0, t1, o in self.results:
                key = str(o)
                outcomes[key] = outcomes.get(key, 0) + 1
                longest = max(longest, t1 - t0)
                ok = isinstance(o, int) and 200 <= o < 300
                allowed = ok or o in (502, 503, 504, "cut", "closed", "refused")
                if o == "hang":
                    self.fail("a request hung past the client deadline (%.1f s)" % (t1 - t0))
                elif not ok:
                    if self.in_window(t0, t1):
                        if not allowed:
                            bad_inside += 1
                    else:
                        bad_outside += 1
            if bad_inside:
                self.fail("%d requests inside fault windows ended with a status other than 2xx/502/503/504" % bad_inside)
            if bad_outside:
                self.fail("%d requests outside fault windows did not succeed" % bad_outside)
            if longest > a.timeout_ms / 1000.0 + 2:
                self.fail("longest request %.2f s exceeds the FastCGI timeout %.1f s + 2 s" % (longest, a.timeout_ms / 1000.0))
            # -- recovery after each fault
            succ = sorted(t1 for t0, t1, o in self.results if isinstance(o, int) and 200 <= o < 300)
            recov = []
            import bisect
            for f in self.faults:
                i = bisect.bisect_left(succ, f["back"])
                r = (succ[i] - f["back"]) if i < len(succ) else float("inf")
                f["recovery_s"] = r
                f["errors"] = sum(1 for t0, t1, o in self.results
                                  if not (isinstance(o, int) and 200 <= o < 300)
                                  and t1 >= f["start"] and t0 <= f["window_end"])
                recov.append(r)
                if r > 1.0:
                    self.fail("%s: no successful request within 1 s of the backend's return (%.2f s)" % (f["kind"], r))
            # -- the numbers add up
            total = len(self.results)
            with_status = sum(1 for _, _, o in self.results if isinstance(o, int))
            if sum(outcomes.values()) != total:
                self.fail("client: outcomes do not add up")
            log_lines = 0
            if os.path.exists(self.accesslog):
                with open(self.accesslog, "rb") as f:
                    log_lines = sum(1 for _ in f)
            # the warm-up requests are in the log too
            if log_lines < with_status:
                self.fail("access log has %d lines for %d answered requests" % (log_lines, with_status))
            if fstats:
                req = fstats.get("requests")
                outs = sum(v for k, v in fstats.items() if k in ("complete", "truncated", "bad_gateway", "timeout",
                                                               "overloaded", "aborted", "cant_mpx_conn", "unknown_role"))
                if req is not None and req != outs:
                    self.fail("heisen-httpd FastCGI statistics: requests %d != outcomes %d (%s)" % (req, outs, fstats))
            # -- stop
            if alive:
                self.httpd.send_signal(signal.SIGTERM)
                try:
                    rc = self.httpd.wait(30)
                except subprocess.TimeoutExpired:
                    self.httpd.kill()
                    rc = "hung on SIGTERM"
                if rc != 0:
                    self.fail("heisen-httpd exit status on SIGTERM: %s" % rc)
            report = {
                "seconds": round(t_end - t_start, 1),
                "connections": a.connections,
                "requests": total,
                "rps": round(total / max(t_end - t_start, 0.001)),
                "outcomes": dict(sorted(outcomes.items())),
                "faults": {k: sum(1 for f in self.faults if f["kind"] == k) for k in ("kill", "reload", "restart", "unlink")},
                "longest_recovery_s": round(max(recov), 3) if recov else None,
                "recovery_s_by_fault": [(f["kind"], round(f["recovery_s"], 3)) for f in self.faults],
                "errors_by_fault": {k: sum(f["errors"] for f in self.faults if f["kind"] == k)
                                    for k in ("kill", "reload", "restart", "unlink")},
                "longest_request_s": round(longest, 3),
                "fds_before": fds0, "fds_after": fds1,
                "rss_kb_before": rss0, "rss_kb_after": rss1,
                "access_log_lines": log_lines,
                "fastcgi_stats": fstats,
                "cut_or_closed": [
                    {"outcome": o, "request": "%s %s (%d body bytes)" % (m, pth, bl),
                     "at_s": round(t0 - t_start, 3), "took_s": round(t1 - t0, 3),
                     "faults_near": ["%s@%.2f" % (f["kind"], f["start"] - t_start) for f in self.faults
                                     if f["start"] - 1 <= t1 and t0 <= f["window_end"]]}
                    for (t0, t1, o, m, pth, bl) in self.odd],
                "failures": self.failures,
            }
        finally:
            if self.httpd and self.httpd.poll() is None:
                self.httpd.kill()
                self.httpd.wait()
            self.fpm("stop", self.fpm_dir, check=False)
            if not self.failures and not os.environ.get("SOAK_KEEP"):
                shutil.rmtree(self.dir, ignore_errors=True)
        return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=4, help="php-fpm workers")
    ap.add_argument("--timeout-ms", type=int, default=3000, help="heisen-httpd -fastcgi-timeout")
    ap.add_argument("--quiet", type=float, default=3.0, help="seconds between faults")
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.path.exists(HTTPD):
        print("soak: %s is not built (make)" % HTTPD, file=sys.stderr)
        return 1
    s = Soak(a)
    rep = s.run()
    print("soak: %s s, %d connections: %d requests (%d/s)" % (rep.get("seconds"), a.connections,
                                                             rep.get("requests", 0), rep.get("rps", 0)))
    print("  outcomes: %s" % " ".join("%s=%d" % kv for kv in rep.get("outcomes", {}).items()))
    print("  faults: %s" % " ".join("%s=%d" % kv for kv in rep.get("faults", {}).items()))
    print("  non-2xx in the windows of: %s" % " ".join("%s=%d" % kv for kv in rep.get("errors_by_fault", {}).items()))
    print("  longest recovery after the backend's return: %s s; longest request: %s s" % (
        rep.get("longest_recovery_s"), rep.get("longest_request_s")))
    print("  heisen-httpd descriptors %s -> %s, RSS %s -> %s KiB; access log %s lines" % (
        rep.get("fds_before"), rep.get("fds_after"), rep.get("rss_kb_before"), rep.get("rss_kb_after"),
        rep.get("access_log_lines")))
    print("  FastCGI statistics: %s" % (rep.get("fastcgi_stats") or "not offered by heisen-httpd"))
    for c in rep.get("cut_or_closed", [])[:10]:
        print("  %s: %s at %.3f s (took %.3f s), faults near: %s" % (
            c["outcome"], c["request"], c["at_s"], c["took_s"], " ".join(c["faults_near"]) or "-"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1)
    if s.failures:
        for m in s.failures:
            print("  FAIL: %s" % m)
        print("soak: FAILED (files kept in %s)" % s.dir)
        return 1
    print("soak: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
