#!/usr/bin/env python3
"""heisen-httpd over real TCP, with php-fpm and scripted FastCGI peers behind it (issue 5 §4,
issue 7 §3). One server for the whole class:

  -fastcgi .php    php-fpm (scripts/php-fpm.sh, 4 workers)
  -fastcgi .down   a unix socket nobody listens on          -> 502
  -fastcgi .silent fcgi_peer.py --mode silent                -> 504 (-fastcgi-timeout 1500)
  -fastcgi .trunc  fcgi_peer.py --mode truncated             -> response cut, connection closed
  -fastcgi .story  fcgi_peer.py --mode story                 -> 200 "hello\\n"
  -fastcgi .busy   fcgi_peer.py --mode overloaded            -> 503
"""

import hashlib
import os
import socket
import threading
import time
import unittest
from email.utils import formatdate

import common
from common import Conn, get


class HttpdTest(unittest.TestCase):
    EXTRA_ARGS = []         # FastCGI keep-alive: auto (off for php-fpm, which does not report FCGI_MAX_CONNS)

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(common.HTTPD):
            raise unittest.SkipTest("build/bin/heisen-httpd is not built")
        cls.dir = common.tmpdir()
        cls.fpm = common.PhpFpm(os.path.join(cls.dir, "fpm"))
        www = cls.www = cls.fpm.www
        # static files, a sub-directory with an index, things outside the sandbox, symlinks
        with open(os.path.join(www, "static.txt"), "w") as f:
            f.write("static file\n")
        with open(os.path.join(www, "page.html"), "w") as f:
            f.write("<p>hi</p>\n")
        with open(os.path.join(www, "blob.bin"), "wb") as f:
            f.write(common.big_pattern(3 * 1024 * 1024 + 17))
        os.mkdir(os.path.join(www, "sub"))
        with open(os.path.join(www, "sub", "index.html"), "w") as f:
            f.write("sub index\n")
        os.mkdir(os.path.join(www, "empty"))
        with open(os.path.join(cls.dir, "secret.txt"), "w") as f:
            f.write("secret\n")
        os.symlink(os.path.join(cls.dir, "secret.txt"), os.path.join(www, "secret_link.txt"))
        os.symlink("/etc", os.path.join(www, "etc_link"))
        os.symlink("static.txt", os.path.join(www, "inside_link.txt"))
        with open(os.path.join(cls.dir, "outside.php"), "w") as f:
            f.write("<?php echo 'outside';")
        os.symlink(os.path.join(cls.dir, "outside.php"), os.path.join(www, "outside_link.php"))
        for ext in ("down", "silent", "trunc", "story", "busy"):
            open(os.path.join(www, "x." + ext), "w").close()
        cls.peers = [
            common.fcgi_peer.start("unix:%s/silent.sock" % cls.dir, "silent"),
            common.fcgi_peer.start("unix:%s/trunc.sock" % cls.dir, "truncated"),
            common.fcgi_peer.start("unix:%s/story.sock" % cls.dir, "story"),
            common.fcgi_peer.start("unix:%s/busy.sock" % cls.dir, "overloaded"),
        ]
        cls.log = os.path.join(cls.dir, "access.log")
        cls.httpd = common.Httpd([
            "-sandbox", www,
            "-fastcgi", ".php", cls.fpm.address,
            "-fastcgi", ".down", "unix:%s/nobody.sock" % cls.dir,
            "-fastcgi", ".silent", "unix:%s/silent.sock" % cls.dir,
            "-fastcgi", ".trunc", "unix:%s/trunc.sock" % cls.dir,
            "-fastcgi", ".story", "unix:%s/story.sock" % cls.dir,
            "-fastcgi", ".busy", "unix:%s/busy.sock" % cls.dir,
            "-indexfiles", "index.php,index.html",
            "-cpu", "2",
            "-fastcgi-timeout", "1500",
            "-header-timeout", "1500",
            "-keepalive-timeout", "2000",
            "-max-body-bytes", "8000000",
            "-max-header-bytes", "16384",
        ] + cls.EXTRA_ARGS, logfile=cls.log)
        cls.port = cls.httpd.port

    @classmethod
    def tearDownClass(cls):
        rc = None
        if hasattr(cls, "httpd"):
            rc = cls.httpd.stop()
        for p in getattr(cls, "peers", []):
            p.stop()
        if hasattr(cls, "fpm"):
            cls.fpm.stop()
        common.rmtree(cls.dir)
        if rc is not None and rc != 0:
            raise AssertionError("heisen-httpd exited with %r on SIGTERM; stderr:\n%s"
                                 % (rc, cls.httpd.stderr_text()))

    def assertAlive(self):
        r = get(self.port, "/static.txt")
        self.assertEqual(r.status, 200, r)

    # ---- FastCGI (php-fpm) ------------------------------------------------------------------

    def test_get_php(self):
        r = get(self.port, "/hello.php")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"Hello, world!\n")
        self.assertTrue(r.complete)
        self.assertTrue(r.header("Content-Type").startswith("text/plain"))
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")   # php-fpm sends no length
        self.assertEqual(r.header("Server"), "heisen-httpd")
        self.assertIsNotNone(r.header("Date"))

    def test_head_php(self):
        with Conn(self.port) as c:
            r = c.request("HEAD", "/hello.php")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"")
            r2 = c.request("GET", "/hello.php")        # the connection is still in sync
            self.assertEqual(r2.body, b"Hello, world!\n")

    def test_query_and_method(self):
        r = get(self.port, "/echo.php?a=1&b=%20x")
        self.assertEqual(r.status, 200)
        lines = r.body.decode().splitlines()
        self.assertIn("method=GET", lines)
        self.assertIn("query=a=1&b=%20x", lines)
        self.assertIn("length=0", lines)

    def test_post_content_length(self):
        body = os.urandom(200000)
        r = get(self.port, "/echo.php?post", method="POST", body=body,
                headers=[("Content-Type", "application/octet-stream")])
        self.assertEqual(r.status, 200)
        lines = r.body.decode().splitlines()
        self.assertIn("method=POST", lines)
        self.assertIn("content_type=application/octet-stream", lines)
        self.assertIn("content_length=200000", lines)
        self.assertIn("length=200000", lines)
        self.assertIn("sha256=" + hashlib.sha256(body).hexdigest(), lines)

    def test_post_large_streamed(self):
        body = os.urandom(5 * 1024 * 1024)
        with Conn(self.port, timeout=30) as c:
            r = c.request("POST", "/echo.php", body=body, headers=[("Content-Type", "application/x-test")])
            self.assertEqual(r.status, 200)
            self.assertIn("sha256=" + hashlib.sha256(body).hexdigest(), r.body.decode().splitlines())
            r = c.request("GET", "/hello.php")         # keep-alive after a streamed body
            self.assertEqual(r.body, b"Hello, world!\n")

    def test_post_chunked(self):
        body = b"chunk-one|" * 1000 + b"tail"
        chunks = [body[i:i + 777] for i in range(0, len(body), 777)]
        enc = b"".join(b"%x\r\n%s\r\n" % (len(ch), ch) for ch in chunks) + b"0\r\n\r\n"
        with Conn(self.port) as c:
            c.send(b"POST /echo.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                   b"Content-Type: text/plain\r\n\r\n" + enc)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            lines = r.body.decode().splitlines()
            self.assertIn("content_length=%d" % len(body), lines)
            self.assertIn("sha256=" + hashlib.sha256(body).hexdigest(), lines)
            self.assertEqual(c.request("GET", "/hello.php").status, 200)

    def test_expect_100_continue(self):
        body = b"x" * 5000
        with Conn(self.port) as c:
            c.send(b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                   b"Expect: 100-continue\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 100)
            c.send(body)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertIn("length=5000", r.body.decode().splitlines())

    def test_big_response_chunked_and_length(self):
        n = 3 * 1024 * 1024 + 5
        with Conn(self.port, timeout=30) as c:
            r = c.request("GET", "/big.php?n=%d" % n)
            self.assertEqual(r.status, 200)
            self.assertTrue(r.complete)
            self.assertEqual(r.header("Transfer-Encoding"), "chunked")
            self.assertEqual(r.body, common.big_pattern(n))
            r = c.request("GET", "/big.php?n=%d&cl=1&flush=1" % n)
            self.assertEqual(r.header("Content-Length"), str(n))
            self.assertIsNone(r.header("Transfer-Encoding"))
            self.assertEqual(r.body, common.big_pattern(n))

    def test_slow_reader_gets_everything(self):
        n = 16 * 1024 * 1024                           # more than the socket buffers hold
        with Conn(self.port, timeout=30) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            c.send("GET /big.php?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
            time.sleep(2.0)                            # back-pressure all the way to php-fpm
            r = c.read_response()
            self.assertTrue(r.complete)
            self.assertEqual(len(r.body), n)
            self.assertEqual(r.body, common.big_pattern(n))
            self.assertEqual(c.request("GET", "/hello.php").body, b"Hello, world!\n")

    def test_backend_headers(self):
        r = get(self.port, "/headers.php")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.all("X-Heisen-Multi"), ["a", "b"])
        self.assertEqual(r.all("Set-Cookie"), ["a=1; path=/", "b=2; path=/"])
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertEqual(r.body, b"headers\n")

    def test_redirect_and_404_from_php(self):
        r = get(self.port, "/redirect.php")
        self.assertEqual(r.status, 302)
        self.assertEqual(r.header("Location"), "/elsewhere")
        r = get(self.port, "/notfound.php")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.body, b"not found\n")

    def test_missing_script_is_404(self):
        r = get(self.port, "/missing.php")
        self.assertEqual(r.status, 404)

    def test_path_info(self):
        r = get(self.port, "/param.php/extra/path?name=PATH_INFO")
        self.assertEqual(r.status, 200)
        self.assertIn(b"present=1", r.body)
        self.assertIn(b"sha256=" + hashlib.sha256(b"/extra/path").hexdigest().encode(), r.body)
        r = get(self.port, "/param.php?name=SCRIPT_FILENAME")
        self.assertIn(b"sha256=" + hashlib.sha256(os.path.join(os.path.realpath(self.www), "param.php")
                                                  .encode()).hexdigest().encode(), r.body)

    def test_cgi_params(self):
        def param(name, headers=None):
            r = get(self.port, "/param.php?name=" + name, headers=headers)
            self.assertEqual(r.status, 200)
            return dict(ln.split("=", 1) for ln in r.body.decode().splitlines())
        for name in ("REMOTE_ADDR", "REMOTE_PORT", "SERVER_ADDR", "SERVER_PORT", "SERVER_NAME",
                     "SERVER_PROTOCOL", "REQUEST_URI", "DOCUMENT_ROOT", "SCRIPT_NAME",
                     "GATEWAY_INTERFACE", "SERVER_SOFTWARE", "HTTP_HOST"):
            self.assertEqual(param(name)["present"], "1", name)
        p = param("HTTP_X_CUSTOM", headers=[("X-Custom", "v1")])
        self.assertEqual(p["sha256"], hashlib.sha256(b"v1").hexdigest())

    def test_httpoxy_and_colliding_names(self):
        r = get(self.port, "/param.php?name=HTTP_PROXY", headers=[("Proxy", "http://evil:1/")])
        self.assertIn(b"present=0", r.body)
        r = get(self.port, "/param.php?name=HTTP_X_FORWARDED_FOR", headers=[("X_Forwarded_For", "evil")])
        self.assertIn(b"present=0", r.body)
        r = get(self.port, "/param.php?name=CONTENT_TYPE", headers=[("Content_Type", "evil")])
        self.assertIn(b"present=0", r.body)

    def test_stderr_is_logged_escaped(self):
        r = get(self.port, "/stderr.php")
        self.assertEqual(r.body, b"stderr sent\n")
        deadline = time.time() + 5
        while time.time() < deadline and "heisen stderr test" not in self.httpd.stderr_text():
            time.sleep(0.05)
        self.assertIn("heisen stderr test", self.httpd.stderr_text())

    # ---- FastCGI failures -------------------------------------------------------------------

    def test_backend_down_502(self):
        r = get(self.port, "/x.down")
        self.assertEqual(r.status, 502)
        self.assertAlive()

    def test_backend_silent_504(self):
        t0 = time.time()
        r = get(self.port, "/x.silent")
        self.assertEqual(r.status, 504)
        self.assertLess(time.time() - t0, 10)
        self.assertAlive()

    def test_backend_overloaded_503(self):
        self.assertEqual(get(self.port, "/x.busy").status, 503)

    def test_truncated_ends_connection(self):
        with Conn(self.port) as c:
            r = c.request("GET", "/x.trunc")
            if r is not None and r.status != 502:
                self.assertFalse(r.complete, "a truncated backend response was passed on as complete: %r" % r)
            self.assertTrue(c.closed_by_peer(5))

    def test_story_backend(self):
        for _ in range(50):
            r = get(self.port, "/x.story")
            self.assertEqual((r.status, r.body), (200, b"hello\n"))

    # ---- static files and the sandbox -------------------------------------------------------

    def test_static(self):
        r = get(self.port, "/static.txt")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"static file\n")
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        self.assertEqual(r.header("Content-Length"), "12")
        st = os.stat(os.path.join(self.www, "static.txt"))
        self.assertEqual(r.header("Last-Modified"), formatdate(st.st_mtime, usegmt=True))
        self.assertEqual(get(self.port, "/page.html").header("Content-Type"), "text/html; charset=utf-8")
        self.assertEqual(get(self.port, "/blob.bin").header("Content-Type"), "application/octet-stream")

    def test_static_big(self):
        with Conn(self.port, timeout=30) as c:
            r = c.request("GET", "/blob.bin")
            self.assertEqual(r.body, common.big_pattern(3 * 1024 * 1024 + 17))
            self.assertEqual(c.request("GET", "/static.txt").body, b"static file\n")

    def test_head_static(self):
        r = get(self.port, "/static.txt", method="HEAD")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), "12")
        self.assertEqual(r.body, b"")

    def test_if_modified_since(self):
        lm = get(self.port, "/static.txt").header("Last-Modified")
        with Conn(self.port) as c:
            r = c.request("GET", "/static.txt", headers=[("If-Modified-Since", lm)])
            self.assertEqual(r.status, 304)
            self.assertEqual(r.body, b"")
            r = c.request("GET", "/static.txt", headers=[("If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")])
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"static file\n")

    def test_index_and_directory_redirect(self):
        r = get(self.port, "/")
        self.assertEqual((r.status, r.body), (200, b"index\n"))      # index.php through php-fpm
        r = get(self.port, "/sub?x=1")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("Location"), "/sub/?x=1")
        r = get(self.port, "/sub/")
        self.assertEqual((r.status, r.body), (200, b"sub index\n"))
        self.assertEqual(get(self.port, "/empty/").status, 403)        # no listings

    def test_404_and_405(self):
        self.assertEqual(get(self.port, "/nope.txt").status, 404)
        self.assertEqual(get(self.port, "/nope/deeper.txt").status, 404)
        r = get(self.port, "/static.txt", method="DELETE")
        self.assertEqual(r.status, 405)
        self.assertIn("GET", r.header("Allow"))

    def test_sandbox_escapes(self):
        cases = {
            "/../secret.txt": 403,
            "/sub/../../secret.txt": 403,
            "/%2e%2e/secret.txt": 403,
            "/%2E%2e/%2e%2E/etc/passwd": 403,
            "/sub/%2e%2e/%2e%2e/secret.txt": 403,
            "/.%2e/secret.txt": 403,
            "/secret_link.txt": 403,          # a symlink that leaves the sandbox
            "/etc_link/passwd": 403,
            "/outside_link.php": 403,
            "/static.txt%00.php": 400,        # NUL
            "/%00": 400,
            "/%zz": 400,
            "/%2": 400,
        }
        for path, want in cases.items():
            with Conn(self.port) as c:
                r = c.request("GET", path)
                self.assertEqual(r.status, want, path)
                self.assertNotIn(b"secret", r.body, path)
                self.assertNotIn(b"root:", r.body, path)
        r = get(self.port, "/inside_link.txt")           # a symlink inside is fine
        self.assertEqual((r.status, r.body), (200, b"static file\n"))
        r = get(self.port, "/sub/./index.html")
        self.assertEqual(r.status, 200)

    # ---- connection handling ----------------------------------------------------------------

    def test_keep_alive_and_close(self):
        with Conn(self.port) as c:
            for i in range(5):
                r = c.request("GET", "/hello.php" if i % 2 else "/static.txt")
                self.assertEqual(r.status, 200)
                self.assertIsNone(r.header("Connection"))
            r = c.request("GET", "/hello.php", headers=[("Connection", "close")])
            self.assertEqual(r.header("Connection"), "close")
            self.assertEqual(r.body, b"Hello, world!\n")
            self.assertTrue(c.closed_by_peer(5))

    def test_http10(self):
        with Conn(self.port) as c:
            r = c.request("GET", "/hello.php", version="HTTP/1.0")
            self.assertEqual((r.status, r.body), (200, b"Hello, world!\n"))
            self.assertTrue(c.closed_by_peer(5))
        with Conn(self.port) as c:
            r = c.request("GET", "/static.txt", version="HTTP/1.0", headers=[("Connection", "keep-alive")])
            self.assertEqual(r.header("Connection"), "keep-alive")
            r = c.request("GET", "/static.txt", version="HTTP/1.0")
            self.assertEqual(r.body, b"static file\n")

    def test_pipelining(self):
        reqs = (b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /static.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo.php?p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                b"HEAD /static.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /x.story HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /hello.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with Conn(self.port) as c:
            c.send(reqs)
            rs = [c.read_response(), c.read_response(), c.read_response(), c.read_response(head=True),
                  c.read_response(), c.read_response(), c.read_response()]
            self.assertEqual([r.status for r in rs], [200, 200, 200, 200, 200, 404, 200])
            self.assertEqual(rs[0].body, b"Hello, world!\n")
            self.assertEqual(rs[1].body, b"static file\n")
            self.assertIn(b"query=p\n", rs[2].body)
            self.assertIn(b"length=3\n", rs[2].body)
            self.assertEqual(rs[4].body, b"hello\n")
            self.assertEqual(rs[6].body, b"Hello, world!\n")
            self.assertTrue(c.closed_by_peer(5))

    def test_pipelining_byte_by_byte(self):
        reqs = b"GET /static.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n"
        with Conn(self.port) as c:
            for i in range(len(reqs)):
                c.send(reqs[i:i + 1])
            self.assertEqual(c.read_response().body, b"static file\n")
            self.assertEqual(c.read_response().body, b"Hello, world!\n")

    def test_half_close_client_still_answered(self):
        with Conn(self.port) as c:
            c.send(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n")
            c.sock.shutdown(socket.SHUT_WR)
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"Hello, world!\n"))
            self.assertTrue(c.closed_by_peer(5))

    def test_concurrent_clients(self):
        errors = []

        def client(k):
            try:
                with Conn(self.port, timeout=30) as c:
                    for i in range(25):
                        path = ["/hello.php", "/static.txt", "/echo.php?k=%d" % k, "/x.story"][(i + k) % 4]
                        r = c.request("GET", path)
                        if r.status != 200 or not r.complete:
                            errors.append((path, r))
            except Exception as e:      # noqa: BLE001
                errors.append(("exception", repr(e)))
        ts = [threading.Thread(target=client, args=(k,)) for k in range(24)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(errors, [])

    def test_idle_and_header_timeouts(self):
        with Conn(self.port) as c:                       # slowloris: a head that never ends
            c.send(b"GET /static.txt HTTP/1.1\r\nHost: x\r\n")
            t0 = time.time()
            for _ in range(3):
                time.sleep(0.3)
                try:
                    c.send(b"X-Slow: 1\r\n")
                except OSError:
                    break
            self.assertTrue(c.closed_by_peer(5))
            self.assertLess(time.time() - t0, 5)
        with Conn(self.port) as c:                       # idle keep-alive connection
            self.assertEqual(c.request("GET", "/static.txt").status, 200)
            t0 = time.time()
            self.assertTrue(c.closed_by_peer(6))
            self.assertGreater(time.time() - t0, 1.0)

    # ---- hostile input (issue 7 §3) -----------------------------------------------------------

    def test_hostile_requests_400(self):
        long_line = b"X-Long: " + b"a" * 9000
        cases = [
            (b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            (b"POST /echo.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 400),
            (b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
            (b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
            (b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", 400),
            (b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n", 400),
            (b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 3 \r\n abc\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
            (b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + long_line + b"\r\n\r\n", 400),
            (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: \x00\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),                              # no Host
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
            (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            (b"POST /echo.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"POST /echo.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(200)) + b"\r\n", 431),
        ]
        for raw, want in cases:
            with Conn(self.port) as c:
                c.send(raw)
                r = c.read_response()
                self.assertIsNotNone(r, raw[:60])
                self.assertEqual(r.status, want, raw[:80])
                self.assertEqual(r.header("Connection"), "close", raw[:60])
                self.assertTrue(c.closed_by_peer(5), raw[:60])
        self.assertAlive()

    def test_smuggling_does_not_reach_second_request(self):
        # if CL+TE were accepted, "GET /x.down" would be answered as a second response
        with Conn(self.port) as c:
            c.send(b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"0\r\n\r\nGET /x.down HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 400)
            self.assertTrue(c.closed_by_peer(5))
            self.assertIsNone(c.read_response())

    def test_body_too_large_413(self):
        with Conn(self.port) as c:
            c.send(b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 413)

    def test_access_log(self):
        get(self.port, "/static.txt?logged=1")
        deadline = time.time() + 5
        text = ""
        while time.time() < deadline:
            with open(self.log) as f:
                text = f.read()
            if "/static.txt?logged=1" in text:
                break
            time.sleep(0.05)
        line = [ln for ln in text.splitlines() if "/static.txt?logged=1" in ln][0]
        self.assertIn('"GET /static.txt?logged=1 HTTP/1.1" 200 12', line)
        self.assertTrue(line.startswith("127.0.0.1 "))


class HttpdKeepAliveTest(HttpdTest):
    """The same with kept FastCGI connections: 2 workers x 2 connections = php-fpm's 4 workers."""
    EXTRA_ARGS = ["-fastcgi-keepalive", "1", "-fastcgi-conns", "2"]

    def test_keepalive_is_on(self):
        self.assertIn("*.php: FastCGI keep-alive, 2 connections", self.httpd.stderr_text())


class HttpdShutdownTest(unittest.TestCase):
    """SIGTERM and SIGINT: a request in flight finishes, then exit 0."""

    def setUp(self):
        if not os.path.exists(common.HTTPD):
            self.skipTest("build/bin/heisen-httpd is not built")
        self.dir = common.tmpdir()
        self.fpm = common.PhpFpm(os.path.join(self.dir, "fpm"), workers=2)

    def tearDown(self):
        self.fpm.stop()
        common.rmtree(self.dir)

    def _run(self, sig):
        import signal as _s
        h = common.Httpd(["-sandbox", self.fpm.www, "-fastcgi", ".php", self.fpm.address, "-cpu", "2",
                          "-accesslog", "off"])
        try:
            with Conn(h.port) as idle, Conn(h.port) as busy:
                self.assertEqual(idle.request("GET", "/hello.php").status, 200)
                busy.send(b"GET /sleep.php?s=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.2)
                h.proc.send_signal(sig)
                r = busy.read_response()
                self.assertEqual((r.status, r.body), (200, b"slept 0.5\n"))
                self.assertEqual(r.header("Connection"), "close")
                self.assertTrue(idle.closed_by_peer(5))
        finally:
            rc = h.stop(sig)
        self.assertEqual(rc, 0, h.stderr_text())
        self.assertIn("shutting down", h.stderr_text())
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", h.port), timeout=2).close()

    def test_sigterm(self):
        import signal as _s
        self._run(_s.SIGTERM)

    def test_sigint(self):
        import signal as _s
        self._run(_s.SIGINT)


if __name__ == "__main__":
    unittest.main(verbosity=2)
