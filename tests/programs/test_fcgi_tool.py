#!/usr/bin/env python3
"""heisen-fcgi (one-shot output, options, exit codes, load generator) and heisen-story,
against php-fpm and the scripted peers of tests/harness/fcgi_peer.py."""

import hashlib
import os
import re
import unittest

import common
from common import FCGI, STORY, run


class FcgiToolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(FCGI):
            raise unittest.SkipTest("build/bin/heisen-fcgi is not built")
        cls.dir = common.tmpdir()
        cls.fpm = common.PhpFpm(os.path.join(cls.dir, "fpm"))
        cls.www = cls.fpm.www
        cls.peers = {}
        for mode in ("story", "truncated", "overloaded", "silent", "garbage", "cantmpx",
                     "unknownrole", "close", "stderr", "echo"):
            cls.peers[mode] = common.fcgi_peer.start("unix:%s/%s.sock" % (cls.dir, mode), mode)

    @classmethod
    def tearDownClass(cls):
        for p in getattr(cls, "peers", {}).values():
            p.stop()
        if hasattr(cls, "fpm"):
            cls.fpm.stop()
        common.rmtree(cls.dir)

    def script(self, name):
        return os.path.join(self.www, name)

    def peer(self, mode):
        return self.peers[mode].address

    # ---- one-shot ---------------------------------------------------------------------------

    def test_hello(self):
        rc, out, err = run([FCGI, self.fpm.address, self.script("hello.php")])
        self.assertEqual((rc, out), (0, b"Hello, world!\n"), err)

    def test_show_headers(self):
        rc, out, err = run([FCGI, "-i", self.fpm.address, self.script("headers.php")])
        self.assertEqual(rc, 0, err)
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"Status: 200")
        self.assertIn(b"X-Heisen-Multi: a", lines)
        self.assertIn(b"X-Heisen-Multi: b", lines)
        self.assertIn(b"Set-Cookie: b=2; path=/", lines)
        self.assertEqual(body, b"headers\n")

    def test_status_404_is_still_complete(self):
        rc, out, err = run([FCGI, "-i", self.fpm.address, self.script("notfound.php")])
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith(b"Status: 404\r\n"))
        self.assertTrue(out.endswith(b"\r\n\r\nnot found\n"))

    def test_raw_matches_reference_client(self):
        rc, out, err = run([FCGI, "--raw", self.fpm.address, self.script("hello.php")])
        self.assertEqual(rc, 0, err)
        rc2, ref, err2 = run(["python3", os.path.join(common.ROOT, "tests/harness/fcgi_client.py"), "--raw",
                              self.fpm.address, self.script("hello.php")])
        self.assertEqual(rc2, 0, err2)
        self.assertEqual(out, ref)
        self.assertIn(b"\r\n\r\nHello, world!\n", out)
        self.assertTrue(out.lower().startswith(b"x-powered-by") or out.lower().startswith(b"content-type"))

    def test_query(self):
        rc, out, err = run([FCGI, self.fpm.address, self.script("echo.php"), "a=1&b=2"])
        self.assertEqual(rc, 0, err)
        self.assertIn(b"query=a=1&b=2\n", out)
        self.assertIn(b"method=GET\n", out)

    def test_body_from_file_stdin_and_literal(self):
        data = os.urandom(300000)
        path = os.path.join(self.dir, "body.bin")
        with open(path, "wb") as f:
            f.write(data)
        digest = hashlib.sha256(data).hexdigest().encode()
        rc, out, err = run([FCGI, "-d", "@" + path, self.fpm.address, self.script("echo.php")])
        self.assertEqual(rc, 0, err)
        self.assertIn(b"method=POST\n", out)
        self.assertIn(b"content_length=300000\n", out)
        self.assertIn(b"content_type=application/octet-stream\n", out)
        self.assertIn(b"sha256=" + digest, out)
        rc, out, err = run([FCGI, "-X", "PUT", "-d", "-", "-H", "Content-Type: text/x-test",
                            self.fpm.address, self.script("echo.php")], input=data)
        self.assertEqual(rc, 0, err)
        self.assertIn(b"method=PUT\n", out)
        self.assertIn(b"content_type=text/x-test\n", out)
        self.assertIn(b"sha256=" + digest, out)
        rc, out, err = run([FCGI, "-d", "abc", self.fpm.address, self.script("echo.php")])
        self.assertIn(b"length=3\n", out)

    def test_params_and_headers(self):
        rc, out, err = run([FCGI, "-p", "HEISEN_BIG=xyz", self.fpm.address, self.script("param.php")])
        self.assertEqual(rc, 0, err)
        self.assertIn(b"present=1\n", out)
        self.assertIn(b"sha256=" + hashlib.sha256(b"xyz").hexdigest().encode(), out)
        rc, out, err = run([FCGI, "-H", "X-Thing: v v", self.fpm.address, self.script("param.php"),
                            "name=HTTP_X_THING"])
        self.assertIn(b"sha256=" + hashlib.sha256(b"v v").hexdigest().encode(), out)
        rc, out, err = run([FCGI, "-H", "Proxy: http://evil/", self.fpm.address, self.script("param.php"),
                            "name=HTTP_PROXY"])
        self.assertIn(b"present=0\n", out)

    def test_keepalive_one_shot(self):
        rc, out, err = run([FCGI, "-k", self.fpm.address, self.script("hello.php")])
        self.assertEqual((rc, out), (0, b"Hello, world!\n"), err)

    def test_stderr_passed_through(self):
        rc, out, err = run([FCGI, self.fpm.address, self.script("stderr.php")])
        self.assertEqual(rc, 0)
        self.assertEqual(out, b"stderr sent\n")
        self.assertIn("heisen stderr test", err)
        rc, out, err = run([FCGI, self.peer("stderr"), "/x.php"])
        self.assertEqual((rc, out), (0, b"hello\n"))
        self.assertIn("peer stderr line", err)

    def test_story_peer(self):
        rc, out, err = run([FCGI, self.peer("story"), "/story.php"])
        self.assertEqual((rc, out), (0, b"hello\n"), err)

    # ---- exit codes -------------------------------------------------------------------------

    def expect_exit(self, args, code, reason_re=None, timeout=30):
        rc, out, err = run([FCGI] + args, timeout=timeout)
        self.assertEqual(rc, code, "args %r: stderr %r" % (args, err))
        if code not in (0, 1):
            lines = [ln for ln in err.splitlines() if ln.startswith("heisen-fcgi:")]
            self.assertEqual(len(lines), 1, err)
            if reason_re:
                self.assertRegex(lines[0], reason_re)
        return out, err

    def test_exit_bad_gateway(self):
        self.expect_exit(["unix:%s/nobody.sock" % self.dir, "/x.php"], 2, "bad gateway")
        self.expect_exit([self.peer("garbage"), "/x.php"], 2)
        self.expect_exit([self.peer("close"), "/x.php"], 2)
        self.expect_exit([self.peer("cantmpx"), "/x.php"], 2)
        self.expect_exit([self.peer("unknownrole"), "/x.php"], 2)
        self.expect_exit(["tcp:127.0.0.1:1", "/x.php"], 2)

    def test_exit_truncated(self):
        out, _ = self.expect_exit([self.peer("truncated"), "/x.php"], 3, "truncated")
        self.assertEqual(out, b"partial\n")

    def test_exit_overloaded(self):
        self.expect_exit([self.peer("overloaded"), "/x.php"], 4, "overloaded")

    def test_exit_timeout(self):
        import time
        t0 = time.time()
        self.expect_exit(["-t", "1", self.peer("silent"), "/x.php"], 124, "timeout")
        self.assertLess(time.time() - t0, 5)
        self.expect_exit(["-t", "0.5", self.fpm.address, self.script("sleep.php"), "s=3"], 124)

    def test_exit_usage(self):
        self.expect_exit([], 1)
        self.expect_exit(["--bogus", "a", "b"], 1)
        self.expect_exit(["-p", "novalue", self.fpm.address, "/x"], 1)
        self.expect_exit(["-d", "@/nonexistent/file", self.fpm.address, "/x"], 1)
        self.expect_exit(["-t", "abc", self.fpm.address, "/x"], 1)
        rc, out, _ = run([FCGI, "--help"])
        self.assertEqual(rc, 0)
        self.assertIn(b"usage:", out)

    def test_status(self):
        out, _ = self.expect_exit(["--status", self.fpm.address], 0)
        self.assertIn(b"FCGI_MPXS_CONNS=", out)     # php-fpm 8.2 reports only this one
        self.expect_exit(["--status", "unix:%s/nobody.sock" % self.dir], 2)

    # ---- load generator ---------------------------------------------------------------------

    def parse_bench(self, out):
        text = out.decode()
        self.assertNotIn("\r", text)                    # no progress line when not on a tty
        for key in ("req/s:", "p50", "p90", "p99", "max", "complete", "opened", "reused"):
            self.assertIn(key, text)
        m = re.search(r"complete (\d+)\s+bad gateway (\d+)", text)
        return text, int(m.group(1)), int(m.group(2))

    def test_bench_keepalive(self):
        rc, out, err = run([FCGI, "-n", "400", "-c", "8", "-k", self.fpm.address, self.script("oneline.php")])
        self.assertEqual(rc, 0, err)
        text, complete, bad = self.parse_bench(out)
        self.assertEqual((complete, bad), (400, 0))
        m = re.search(r"opened (\d+)\s+reused (\d+)", text)
        opened, reused = int(m.group(1)), int(m.group(2))
        self.assertLessEqual(opened, 8)
        self.assertGreaterEqual(reused, 392)
        self.assertRegex(text, r"2xx 400")

    def test_bench_no_keepalive(self):
        rc, out, err = run([FCGI, "-n", "200", "-c", "4", self.fpm.address, self.script("oneline.php")])
        self.assertEqual(rc, 0, err)
        text, complete, _ = self.parse_bench(out)
        self.assertEqual(complete, 200)
        self.assertRegex(text, r"opened 200\s+reused 0")

    def test_bench_story_peer(self):
        rc, out, err = run([FCGI, "-n", "500", "-c", "16", self.peer("story"), "/story.php"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.parse_bench(out)[1:], (500, 0))

    def test_bench_failures_counted(self):
        rc, out, err = run([FCGI, "-n", "50", "-c", "5", "unix:%s/nobody.sock" % self.dir, "/x.php"])
        self.assertEqual(rc, 2)
        text, complete, bad = self.parse_bench(out)
        self.assertEqual((complete, bad), (0, 50))

    # ---- heisen-story -----------------------------------------------------------------------

    def check_story(self, args):
        if not os.path.exists(STORY):
            self.skipTest("build/bin/heisen-story is not built")
        rc, out, err = run([STORY] + args, timeout=120)
        text = out.decode()
        self.assertEqual(rc, 0, text + err)
        vals = dict(re.findall(r"^([a-z0-9+ ]+): (\d+)", text, re.M))
        self.assertEqual(vals["502s"], "0")
        self.assertEqual(vals["complete"], vals["requests"])
        self.assertIn("read+hup events", vals)
        return vals

    def test_story_builtin_peer(self):
        vals = self.check_story(["-n", "2000"])
        self.assertEqual(vals["requests"], "2000")

    def test_story_external_peer(self):
        vals = self.check_story(["-n", "500", self.peer("story")])
        self.assertEqual(vals["requests"], "500")


if __name__ == "__main__":
    unittest.main(verbosity=2)
