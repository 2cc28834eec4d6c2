#!/usr/bin/env python3
"""heisen-httpd at its limits (issue 7 §2). Behind it: fcgi_peer.py --mode story on route .story.

* RLIMIT_NOFILE = 64 while 150 connections pour in: accept pauses (the rest wait in the
  backlog), answered requests are 200 or a clear 502/503 (no descriptor for the backend), nothing
  crashes, and as connections close every waiting one is accepted and answered; afterwards
  service is normal and the descriptors are back to the baseline.
* HARDENING_IDLE_CONNS (default 10,000) idle connections held at once, then a request served
  on a sample of them and on a new one; memory per idle connection reported; all released.
(A backend flooding a slow reader is in test_hostile_fcgi.py.)
"""

import os
import resource
import select
import socket
import time
import unittest

from hhelp import common, fds, rss_kb

GET = b"GET /x.story HTTP/1.1\r\nHost: limits\r\n\r\n"


def status_of(buf):
    if not buf.startswith(b"HTTP/1.1 "):
        return None
    return int(buf[9:12])


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return True
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(hard, n)))
        return True
    except (ValueError, OSError):
        return False


class Limits(unittest.TestCase):
    def start(self, extra, nofile):
        self.dir = common.tmpdir("heisen-limits.")
        # story: the backend closes after each answer, so no pooled FastCGI connection stays
        self.peer = common.fcgi_peer.start("unix:%s/story.sock" % self.dir, "story")
        open(os.path.join(self.dir, "x.story"), "w").close()
        self.httpd = common.Httpd(["-sandbox", self.dir, "-fastcgi", ".story", self.peer.address,
                                   "-accesslog", "off"] + extra,
                                  wrapper=["prlimit", "--nofile=%d:%d" % (nofile, nofile), "--"])

    def tearDown(self):
        if getattr(self, "httpd", None):
            rc = self.httpd.stop()
            self.peer.stop()
            self.assertEqual(rc, 0, "heisen-httpd exit status")

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(common.HTTPD):
            raise unittest.SkipTest("build/bin/heisen-httpd is not built (make)")
        if not any(os.access(os.path.join(p, "prlimit"), os.X_OK) for p in os.environ.get("PATH", "").split(":")):
            raise unittest.SkipTest("prlimit (util-linux) is not installed")

    def test_low_nofile_accept_pauses_and_resumes(self):
        self.start([], 64)
        pid = self.httpd.proc.pid
        with common.Conn(self.httpd.port) as c:
            self.assertEqual(c.request("GET", "/x.story").status, 200)
        time.sleep(0.3)
        fds0 = fds(pid)
        n = 150
        conns = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.httpd.port))
            conns.append(s)
        time.sleep(0.2)
        for s in conns:
            s.setblocking(True)
            s.sendall(GET)
            s.setblocking(False)
        bufs = {s: b"" for s in conns}
        answered = {}
        rounds = 0
        deadline = time.monotonic() + 15
        while len(answered) < n and time.monotonic() < deadline:
            pending = [s for s in conns if s not in answered]
            r, _, _ = select.select(pending, [], [], 1.0)
            for s in r:
                try:
                    d = s.recv(65536)
                except OSError:
                    d = b""
                bufs[s] += d
                if not d or b"\r\n\r\n" in bufs[s]:
                    answered[s] = status_of(bufs[s])
            if not r:
                # nothing moving: free descriptors by closing what was answered
                rounds += 1
                for s in list(answered):
                    if s.fileno() >= 0:
                        s.close()
            self.assertIsNone(self.httpd.proc.poll(), "heisen-httpd died")
        for s in conns:
            s.close()
        statuses = list(answered.values())
        self.assertEqual(len(answered), n, "%d of %d connections never answered" % (n - len(answered), n))
        self.assertTrue(set(statuses) <= {200, 502, 503}, "statuses %s" % sorted(set(map(str, statuses))))
        self.assertGreater(statuses.count(200), 0)
        self.assertGreater(rounds, 0, "the limit was never reached (test has no teeth)")
        # service is back, descriptors released
        time.sleep(0.5)
        for _ in range(20):
            with common.Conn(self.httpd.port) as c:
                self.assertEqual(c.request("GET", "/x.story").status, 200)
        deadline = time.monotonic() + 5
        while fds(pid) > fds0 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertLessEqual(fds(pid), fds0)
        print("\n  RLIMIT_NOFILE 64, %d connections: %s, accept resumed after %d waits" % (
            n, " ".join("%s=%d" % (k, statuses.count(k)) for k in sorted(set(statuses))), rounds))

    def test_many_idle_connections(self):
        n = int(os.environ.get("HARDENING_IDLE_CONNS", "10000"))
        if not raise_nofile(n + 1000):
            self.skipTest("cannot raise RLIMIT_NOFILE to %d" % (n + 1000))
        self.start(["-header-timeout", "120000", "-keepalive-timeout", "120000"], n + 1000)
        pid = self.httpd.proc.pid
        time.sleep(0.3)
        fds0, rss0 = fds(pid), rss_kb(pid)
        conns = []
        t = time.monotonic()
        try:
            while len(conns) < n:
                for _ in range(min(500, n - len(conns))):
                    conns.append(socket.create_connection(("127.0.0.1", self.httpd.port), timeout=10))
                # let the server accept what is queued
                deadline = time.monotonic() + 10
                while fds(pid) < fds0 + len(conns) and time.monotonic() < deadline:
                    time.sleep(0.01)
            took = time.monotonic() - t
            deadline = time.monotonic() + 10
            while fds(pid) < fds0 + n and time.monotonic() < deadline:
                time.sleep(0.05)
            held = fds(pid) - fds0
            rss1 = rss_kb(pid)
            self.assertGreaterEqual(held, n, "only %d of %d connections held" % (held, n))
            # every 100th idle connection asks something, and a new one too
            sample = conns[::100]
            for s in sample:
                s.sendall(GET)
            for s in sample:
                buf = b""
                while b"\r\n\r\n" not in buf:
                    d = s.recv(4096)
                    if not d:
                        break
                    buf += d
                self.assertEqual(status_of(buf), 200)
            with common.Conn(self.httpd.port) as c:
                self.assertEqual(c.request("GET", "/x.story").status, 200)
            self.assertIsNone(self.httpd.proc.poll())
        finally:
            for s in conns:
                s.close()
        deadline = time.monotonic() + 10
        while fds(pid) > fds0 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertLessEqual(fds(pid), fds0, "descriptors not released")
        print("\n  %d idle connections opened in %.1f s, held; RSS %d -> %d KiB (%.0f bytes per connection)" % (
            n, took, rss0, rss1, (rss1 - rss0) * 1024.0 / n))


if __name__ == "__main__":
    unittest.main()
