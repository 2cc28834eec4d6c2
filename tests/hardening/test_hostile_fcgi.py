#!/usr/bin/env python3
"""heisen-httpd behind a hostile FastCGI backend (issue 7 §4): tests/hardening/hostile_peer.py
on route .h, one heisen FastCGI client for hostile and well-behaved requests alike.

* CR, NUL or control bytes in response headers, bad names, folded lines, CR in Status or
  Location: 502, nothing of the header reaches the client, the connection stays usable;
* bare-LF CGI headers come out as CRLF lines;
* STDERR with control bytes is logged escaped, on one line;
* a 100 KiB header block: 502; zero-length record storms: 504 (or the response cut) within the
  FastCGI timeout; an endless STDOUT is stopped when the client leaves, and memory stays bounded
  for a slow reader -- while well-behaved requests on the same client go on succeeding.
"""

import os
import re
import threading
import time
import unittest

from hhelp import common, fds, hostile_peer, rss_kb

TIMEOUT_MS = 1500


class HostileBackend(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(common.HTTPD):
            raise unittest.SkipTest("build/bin/heisen-httpd is not built (make)")
        cls.dir = common.tmpdir("heisen-hard.")
        cls.peer = hostile_peer.Peer(os.path.join(cls.dir, "hostile.sock"))
        open(os.path.join(cls.dir, "x.h"), "w").close()
        cls.httpd = common.Httpd(["-sandbox", cls.dir, "-fastcgi", ".h", cls.peer.address,
                                  "-fastcgi-timeout", str(TIMEOUT_MS)],
                                 logfile=os.path.join(cls.dir, "access.log"))

    @classmethod
    def tearDownClass(cls):
        rc = cls.httpd.stop()
        cls.peer.stop()
        assert rc == 0, "heisen-httpd exit status %r" % rc

    def get(self, mode, conn=None):
        c = conn or common.Conn(self.httpd.port, timeout=TIMEOUT_MS / 1000.0 + 10)
        try:
            return c.request("GET", "/x.h?mode=" + mode)
        finally:
            if conn is None:
                c.close()

    def assert_clean_head(self, raw_head):
        for line in raw_head.split(b"\r\n"):
            self.assertNotIn(b"\r", line, raw_head)
            self.assertNotIn(b"\n", line, raw_head)
            self.assertNotIn(b"\0", line, raw_head)
            self.assertFalse(line.lower().startswith((b"injected", b"set-cookie")), raw_head)

    def good_requests_meanwhile(self, n=20):
        """Starts n well-behaved requests in a thread; returns a function giving their statuses."""
        statuses = []

        def run():
            with common.Conn(self.httpd.port, timeout=10) as c:
                for _ in range(n):
                    r = c.request("GET", "/x.h?mode=ok")
                    statuses.append(r.status if r else None)
                    time.sleep(0.02)

        t = threading.Thread(target=run)
        t.start()

        def result():
            t.join(30)
            return statuses
        return result

    def test_header_injection_is_502(self):
        with common.Conn(self.httpd.port, timeout=10) as c:
            for mode in sorted(hostile_peer.HEADS):
                if mode == "hdr-lf":
                    continue
                r = self.get(mode, c)
                self.assertIsNotNone(r, mode)
                self.assertEqual(r.status, 502, (mode, r))
                self.assert_clean_head(r.raw_head)
                self.assertNotIn(b"Injected", r.body)
            r = c.request("GET", "/x.h?mode=ok")  # same connection, still usable
            self.assertEqual((r.status, r.body), (200, b"hello\n"))

    def test_bare_lf_headers_become_crlf(self):
        r = self.get("hdr-lf")
        self.assertEqual(r.status, 200)
        self.assert_clean_head(r.raw_head)
        self.assertEqual((r.header("X-A"), r.header("X-B")), ("a", "b"))
        self.assertEqual(r.body, b"body\n")

    def test_stderr_is_escaped(self):
        n = len(self.httpd.err_lines)
        r = self.get("stderr-ctl")
        self.assertEqual((r.status, r.body), (200, b"hello\n"))
        time.sleep(0.3)
        new = "".join(self.httpd.err_lines[n:])
        self.assertIn("FAKE-LOG-LINE", new)
        for bad in ("\x1b", "\x00", "\x07", "\r"):
            self.assertNotIn(bad, new)
        for line in new.splitlines():
            self.assertFalse(line.startswith("FAKE-LOG-LINE"), "a backend forged a log line: %r" % line)

    def test_oversized_header_block_is_502_others_go_on(self):
        others = self.good_requests_meanwhile()
        t = time.monotonic()
        r = self.get("bighead")
        self.assertEqual(r.status, 502)
        self.assertLess(time.monotonic() - t, 5)
        self.assertEqual(others(), [200] * 20)

    def test_record_storms_end_within_the_timeout(self):
        for mode, expect in (("zero-head", (502, 504)), ("mgmt-storm", (502, 504)), ("zero-storm", None)):
            before = self.peer.stats.get("aborted_by_client", 0)
            others = self.good_requests_meanwhile()
            t = time.monotonic()
            r = self.get(mode)
            took = time.monotonic() - t
            self.assertLess(took, TIMEOUT_MS / 1000.0 + 3, mode)
            if expect:
                self.assertIn(r.status, expect, (mode, r))
            else:
                # headers were sent: the response is cut and the connection closed
                self.assertEqual(r.status, 200)
                self.assertFalse(r.complete, "a storm after the head must not look complete")
            self.assertEqual(others(), [200] * 20, mode)
            deadline = time.monotonic() + 5
            while self.peer.stats.get("aborted_by_client", 0) <= before and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertGreater(self.peer.stats.get("aborted_by_client", 0), before,
                               "%s: the backend connection was not closed" % mode)

    def test_endless_stdout_stops_when_the_client_leaves(self):
        pid = self.httpd.proc.pid
        time.sleep(0.3)
        fds0 = fds(pid)
        before = self.peer.stats.get("aborted_by_client", 0)
        others = self.good_requests_meanwhile()
        c = common.Conn(self.httpd.port, timeout=10)
        c.send(b"GET /x.h?mode=flood HTTP/1.1\r\nHost: h\r\n\r\n")
        got = 0
        while got < 4 << 20:
            d = c.sock.recv(1 << 16)
            if not d:
                break
            got += len(d)
        c.close()
        self.assertGreaterEqual(got, 4 << 20)
        self.assertEqual(others(), [200] * 20)
        deadline = time.monotonic() + 5
        while self.peer.stats.get("aborted_by_client", 0) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreater(self.peer.stats.get("aborted_by_client", 0), before, "the flood was not stopped")
        deadline = time.monotonic() + 5
        while fds(pid) > fds0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertLessEqual(fds(pid), fds0, "descriptors not released")

    def test_flood_to_a_slow_reader_keeps_memory_bounded(self):
        pid = self.httpd.proc.pid
        rss0 = rss_kb(pid)
        c = common.Conn(self.httpd.port, timeout=10)
        c.send(b"GET /x.h?mode=flood HTTP/1.1\r\nHost: h\r\n\r\n")
        c.sock.setsockopt(common.socket.SOL_SOCKET, common.socket.SO_RCVBUF, 16384)
        peak = rss0
        end = time.monotonic() + 3
        got = 0
        while time.monotonic() < end:
            d = c.sock.recv(16384)   # about 800 KB/s, the backend sends as fast as it can
            if not d:
                break
            got += len(d)
            peak = max(peak, rss_kb(pid))
            time.sleep(0.02)
        c.close()
        self.assertGreater(got, 0)
        self.assertLess(peak - rss0, 16 * 1024,
                        "RSS grew from %d to %d KiB for one slow reader of a flood" % (rss0, peak))


if __name__ == "__main__":
    unittest.main()
