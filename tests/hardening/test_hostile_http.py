#!/usr/bin/env python3
"""heisen-httpd under hostile HTTP clients (issue 7 §3). Behind it, on route .echo,
fcgi_peer.py --mode echo, which answers with the name, length and sha256 of every FastCGI
parameter it got, so what reaches the backend is visible.

* request smuggling shapes: 400 (501/505 for an unknown coding/version), the connection is
  closed, and a request smuggled behind the bad one in the same packet is never answered;
* `Proxy:` never becomes HTTP_PROXY (httpoxy); header names that would collide with CGI
  variables (underscores, Content_Length, Script-Filename, ...) never replace a CGI variable;
* slowloris: a head that trickles in is cut at the header timeout; an idle keep-alive
  connection is closed at the keep-alive timeout.
"""

import hashlib
import os
import time
import unittest

from hhelp import common

SMUGGLED = b"GET /x.echo?smuggled=1 HTTP/1.1\r\nHost: smuggled\r\n\r\n"

SHAPES = {
    "CL+TE": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "TE+CL": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
    "duplicate CL": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400),
    "duplicate equal CL": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", 400),
    "CL list": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 4\r\n\r\nabcd", 400),
    "signed CL": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd", 400),
    "negative CL": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nContent-Length: -4\r\n\r\n", 400),
    "hex CL": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0x4\r\n\r\nabcd", 400),
    "overflowing CL": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    "obs-fold": (b"GET /x.echo HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    "bare CR between headers": (b"GET /x.echo HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    "bare CR in a value": (b"GET /x.echo HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    "NUL in a value": (b"GET /x.echo HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    "space before colon": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\n\r\nabcd", 400),
    "TE xchunked": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501),
    "TE chunked, identity": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 501),
    "TE twice": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "TE in HTTP/1.0": (b"POST /x.echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "negative chunk size": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n\r\n", 400),
    "overflowing chunk size": (b"POST /x.echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n\r\n", 400),
    "over-long request line": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", (400, 414, 431)),
    "over-long header line": (b"GET /x.echo HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000 + b"\r\n\r\n", (400, 431)),
    "no Host in HTTP/1.1": (b"GET /x.echo HTTP/1.1\r\n\r\n", 400),
    "two Hosts": (b"GET /x.echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "HTTP/0.9": (b"GET /x.echo\r\n\r\n", 400),
    "HTTP/2.0 line": (b"GET /x.echo HTTP/2.0\r\nHost: a\r\n\r\n", 505),
}


def params_of(body):
    """{NAME: (length, sha256)} from the echo peer's body."""
    out = {}
    for line in body.decode("latin-1").splitlines():
        name, eq, rest = line.partition("=")
        if eq and ":" in rest and name.upper() == name:
            length, _, sha = rest.partition(":")
            if length.isdigit():
                out[name] = (int(length), sha)
    return out


def sha(s):
    return hashlib.sha256(s.encode("latin-1")).hexdigest()


class HostileClients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(common.HTTPD):
            raise unittest.SkipTest("build/bin/heisen-httpd is not built (make)")
        cls.dir = common.tmpdir("heisen-hard.")
        cls.peer = common.fcgi_peer.start("unix:%s/echo.sock" % cls.dir, "echo")
        open(os.path.join(cls.dir, "x.echo"), "w").close()
        cls.httpd = common.Httpd(["-sandbox", cls.dir, "-fastcgi", ".echo", cls.peer.address,
                                  "-header-timeout", "1000", "-keepalive-timeout", "1500"],
                                 logfile=os.path.join(cls.dir, "access.log"))

    @classmethod
    def tearDownClass(cls):
        rc = cls.httpd.stop()
        cls.peer.stop()
        assert rc == 0, "heisen-httpd exit status %r" % rc

    def test_smuggling_shapes_are_rejected_and_close(self):
        requests_before = self.peer.stats["requests"]
        for name, (raw, want) in SHAPES.items():
            with self.subTest(name):
                c = common.Conn(self.httpd.port, timeout=5)
                c.send(raw + SMUGGLED)
                r = c.read_response()
                self.assertIsNotNone(r, name)
                want = want if isinstance(want, tuple) else (want,)
                self.assertIn(r.status, want, (name, r))
                self.assertTrue(c.closed_by_peer(3), "%s: connection left open" % name)
                self.assertNotIn(b"HTTP/1.1", c.buf, "%s: the smuggled request was answered" % name)
                c.close()
        self.assertEqual(self.peer.stats["requests"], requests_before, "a rejected request reached the backend")

    def test_httpoxy_and_colliding_names(self):
        with common.Conn(self.httpd.port, timeout=10) as c:
            r = c.request("GET", "/x.echo?a=1", headers=[
                ("Proxy", "http://evil.example:8080/"),
                ("X_Forwarded_For", "6.6.6.6"),
                ("X-Forwarded-For", "1.2.3.4"),
                ("Content_Length", "999"),
                ("Script-Filename", "/etc/passwd"),
                ("Query-String", "evil=1"),
                ("Cookie", "a=1"), ("Cookie", "b=2"),
            ])
        self.assertEqual(r.status, 200, r)
        p = params_of(r.body)
        self.assertNotIn("HTTP_PROXY", p, "Proxy: became HTTP_PROXY (httpoxy)")
        self.assertEqual(p.get("HTTP_X_FORWARDED_FOR"), (7, sha("1.2.3.4")), "underscore header replaced the dash one")
        self.assertNotIn("HTTP_CONTENT_LENGTH", p)
        self.assertNotEqual(p.get("CONTENT_LENGTH", (0, ""))[1], sha("999"))
        self.assertNotEqual(p.get("SCRIPT_FILENAME"), (11, sha("/etc/passwd")))
        self.assertEqual(p.get("QUERY_STRING"), (3, sha("a=1")))
        self.assertEqual(p.get("HTTP_COOKIE"), (8, sha("a=1; b=2")))

    def test_slowloris_head_is_cut_at_the_header_timeout(self):
        c = common.Conn(self.httpd.port, timeout=10)
        t = time.monotonic()
        closed = False
        for b in b"GET /x.echo HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 200:
            try:
                c.send(bytes([b]))
            except OSError:
                closed = True
                break
            if c.closed_by_peer(0.1):
                closed = True
                break
            if time.monotonic() - t > 5:
                break
        took = time.monotonic() - t
        c.close()
        self.assertTrue(closed, "a trickling head was not cut")
        self.assertLess(took, 3.5, "cut only after %.1f s (header timeout 1 s)" % took)

    def test_idle_keepalive_connection_is_closed(self):
        c = common.Conn(self.httpd.port, timeout=10)
        r = c.request("GET", "/x.echo")
        self.assertEqual(r.status, 200)
        t = time.monotonic()
        self.assertTrue(c.closed_by_peer(6), "idle keep-alive connection kept")
        self.assertLess(time.monotonic() - t, 4)
        c.close()


if __name__ == "__main__":
    unittest.main()
