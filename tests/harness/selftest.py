#!/usr/bin/env python3
"""Self-test of the test harness (no heisen involved): the scripted peer's modes and exact
bytes, the reference client, scripts/php-fpm.sh and the documented bodies of tests/php/
against a real php-fpm (skipped when php-fpm is not installed), scripts/http_load.py.

    python3 tests/harness/selftest.py [-v]          (unittest; about 10 s)
"""

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import fcgi_client as fc  # noqa: E402
import fcgi_peer  # noqa: E402

P = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
PARAMS = fc.cgi_params("/srv/story.php")


def raw_exchange(address, data, timeout=5):
    s = fc.connect(address, timeout)
    s.sendall(data)
    out = b""
    while True:
        try:
            c = s.recv(65536)
        except socket.timeout:
            break
        if not c:
            break
        out += c
    s.close()
    return out


class PeerModes(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="heisen-selftest.")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def listens(self):
        return ["unix:" + os.path.join(self.tmp, "p.sock"), "tcp:127.0.0.1:0"]

    def test_story_exact_bytes(self):
        expected = bytes.fromhex(
            "0106000100320600" + fcgi_peer.PAYLOAD.hex() + "000000000000"
            "0106000100000000"
            "0103000100080000" "0000000000000000")
        self.assertEqual(len(expected), 88)
        for listen in self.listens():
            with fcgi_peer.start(listen, "story") as peer:
                self.assertEqual(raw_exchange(peer.address, fc.build_request(PARAMS, b"x" * 100000)),
                                 expected)
                r = fc.request(peer.address, PARAMS)
                self.assertEqual((r.status, r.body, r.app_status, r.protocol_status),
                                 (200, b"hello\n", 0, 0))
                self.assertEqual(peer.stats["requests"], 2)

    def test_story_no_pad(self):
        with fcgi_peer.start(self.listens()[0], "story", pad=False) as peer:
            out = raw_exchange(peer.address, fc.build_request(PARAMS))
            self.assertEqual(len(out), 66 + 16)
            self.assertEqual(out[:8], bytes.fromhex("0106000100320000"))

    def test_request_id_echoed(self):
        with fcgi_peer.start(self.listens()[0], "story") as peer:
            out = raw_exchange(peer.address, fc.build_request(PARAMS, request_id=0x1234))
            self.assertEqual(out[2:4], b"\x12\x34")
            self.assertEqual(out[-14:-12], b"\x12\x34")

    def test_fault_modes(self):
        cases = {
            "close": (fc.BadGateway, b""),
            "garbage": (fc.BadGateway, fcgi_peer.GARBAGE),
            "short": (fc.BadGateway, bytes.fromhex("0106000100320600") + fcgi_peer.PAYLOAD[:25]),
            "truncated": (fc.Truncated, fc.record(fc.STDOUT, 1, fcgi_peer.TRUNCATED_PAYLOAD)),
            "overloaded": (fc.Overloaded, bytes.fromhex("01030001000800000000000002000000")),
            "cantmpx": (fc.BadGateway, bytes.fromhex("01030001000800000000000001000000")),
            "unknownrole": (fc.BadGateway, bytes.fromhex("01030001000800000000000003000000")),
        }
        for listen in self.listens():
            for mode, (exc, raw) in cases.items():
                with self.subTest(mode=mode, listen=listen[:4]):
                    with fcgi_peer.start(listen, mode) as peer:
                        self.assertEqual(raw_exchange(peer.address, fc.build_request(PARAMS)), raw)
                        with self.assertRaises(exc):
                            fc.request(peer.address, PARAMS, timeout=3)

    def test_truncated_keeps_bytes(self):
        with fcgi_peer.start(self.listens()[0], "truncated") as peer:
            with self.assertRaises(fc.Truncated) as cm:
                fc.request(peer.address, PARAMS)
            self.assertEqual(cm.exception.response.stdout, fcgi_peer.TRUNCATED_PAYLOAD)

    def test_silent_and_flood_time_out(self):
        for mode in ("silent", "flood"):
            with fcgi_peer.start(self.listens()[1], mode) as peer:
                t0 = time.monotonic()
                with self.assertRaises(fc.Timeout):
                    fc.request(peer.address, PARAMS, timeout=0.5)
                self.assertLess(time.monotonic() - t0, 3)

    def test_flood_content(self):
        with fcgi_peer.start(self.listens()[0], "flood") as peer:
            s = fc.connect(peer.address)
            s.sendall(fc.build_request(PARAMS))
            resp = None
            try:
                fc.read_response(s, 1, time.monotonic() + 0.3)
            except fc.Timeout as e:
                resp = e.response
            s.close()
            self.assertTrue(resp.stdout.startswith(fcgi_peer.FLOOD_HEAD))
            body = resp.stdout[len(fcgi_peer.FLOOD_HEAD):]
            self.assertGreater(len(body), 65528)
            self.assertEqual(body[:65528], (P * 1024)[:65528])

    def test_good_variants(self):
        for mode, first in (("drip", None), ("unknowntype", 99), ("stderr", fc.STDERR)):
            with fcgi_peer.start(self.listens()[1], mode, delay_ms=0) as peer:
                r = fc.request(peer.address, PARAMS)
                self.assertEqual((r.status, r.body), (200, b"hello\n"))
                if first is not None:
                    self.assertEqual(r.records[0][0], first)
                if mode == "stderr":
                    self.assertEqual(r.stderr, b"peer stderr line\n")

    def test_param_mode(self):
        with fcgi_peer.start(self.listens()[0], "param") as peer:
            r = fc.request(peer.address, PARAMS)
            self.assertEqual(r.body, b"hello\n")
            with self.assertRaises(fc.Overloaded):
                fc.request(peer.address, PARAMS + [("HEISEN_PEER_MODE", "overloaded")])
            with self.assertRaises(fc.Truncated):
                fc.request(peer.address, PARAMS + [("HEISEN_PEER_MODE", "truncated")])
            self.assertEqual(peer.stats["modes"], {"story": 1, "overloaded": 1, "truncated": 1})

    def test_ok_keep_conn_and_limits(self):
        with fcgi_peer.start(self.listens()[1], "ok", max_requests_per_conn=3, idle_close_ms=200) as peer:
            with fc.Connection(peer.address, timeout=3) as c:
                for _ in range(3):
                    self.assertEqual(c.request(PARAMS).body, b"hello\n")
                with self.assertRaises(fc.BadGateway):
                    c.request(PARAMS)
            with fc.Connection(peer.address, timeout=3) as c:
                c.request(PARAMS)
                time.sleep(0.4)
                with self.assertRaises(fc.BadGateway):
                    c.request(PARAMS)
            with fc.Connection(peer.address, timeout=3) as c:   # no KEEP_CONN: closed after one
                c.request(PARAMS, keep_conn=False)
                with self.assertRaises(fc.BadGateway):
                    c.request(PARAMS)
            self.assertEqual(peer.stats["connections"], 3)

    def test_echo_big_param_and_body(self):
        with fcgi_peer.start(self.listens()[0], "echo") as peer:
            big = bytes(range(256)) * 280          # 71680 bytes: more than one record
            body = os.urandom(1 << 20)
            r = fc.request(peer.address, [("HEISEN_BIG", big), ("A", "b")], body=body, keep_conn=True)
            lines = r.body.decode().splitlines()
            self.assertEqual(lines[:4], ["request_id=1", "role=1", "keep_conn=1", "params=2"])
            self.assertEqual(lines[4], "HEISEN_BIG=71680:" + hashlib.sha256(big).hexdigest())
            self.assertEqual(lines[5], "A=1:" + hashlib.sha256(b"b").hexdigest())
            self.assertEqual(lines[6], "stdin=%d:%s" % (len(body), hashlib.sha256(body).hexdigest()))

    def test_get_values_and_mpx(self):
        with fcgi_peer.start(self.listens()[0], "story", max_conns=7) as peer:
            self.assertEqual(fc.get_values(peer.address),
                             {"FCGI_MAX_CONNS": "7", "FCGI_MAX_REQS": "7", "FCGI_MPXS_CONNS": "0"})
            begin = struct.pack(">HB5x", 1, 1)
            s = fc.connect(peer.address, 3)
            s.sendall(fc.record(fc.BEGIN_REQUEST, 1, begin) + fc.record(fc.BEGIN_REQUEST, 2, begin))
            self.assertEqual(s.recv(100), bytes.fromhex("01030002000800000000000001000000"))
            s.close()

    def test_many_concurrent(self):
        with fcgi_peer.start(self.listens()[0], "story") as peer:
            bad = []

            def w():
                for _ in range(50):
                    try:
                        if fc.request(peer.address, PARAMS).body != b"hello\n":
                            bad.append(1)
                    except fc.FastCGIError:
                        bad.append(1)
            ts = [threading.Thread(target=w) for _ in range(16)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertEqual(bad, [])
            self.assertEqual(peer.stats["requests"], 800)

    def test_cli_ready_and_sigterm(self):
        sock = os.path.join(self.tmp, "cli.sock")
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "fcgi_peer.py"), "--listen",
                              "unix:" + sock, "--mode", "story"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.assertEqual(p.stdout.readline(), b"ready\n")
        self.assertEqual(fc.request("unix:" + sock, PARAMS).body, b"hello\n")
        p.terminate()
        _, err = p.communicate(timeout=5)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"fcgi_peer: 1 connections, 1 requests, by mode: story=1", err)
        self.assertFalse(os.path.exists(sock))
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "fcgi_peer.py"), "--listen",
                              "tcp:127.0.0.1:0", "--mode", "ok", "--quiet"], stdout=subprocess.PIPE)
        line = p.stdout.readline().decode().split()
        self.assertEqual(line[0], "ready")
        self.assertEqual(fc.request(line[1], PARAMS).body, b"hello\n")
        p.terminate()
        p.wait(5)
        p.stdout.close()


def find_fpm():
    if os.environ.get("PHP_FPM"):
        return os.environ["PHP_FPM"]
    for c in ["/usr/sbin/php-fpm8.2"] + sorted(
            f for f in (os.listdir("/usr/sbin") if os.path.isdir("/usr/sbin") else [])
            if f.startswith("php-fpm")):
        c = c if c.startswith("/") else "/usr/sbin/" + c
        if os.access(c, os.X_OK):
            return c
    return shutil.which("php-fpm")


@unittest.skipUnless(find_fpm(), "php-fpm not installed (scripts/install-deps.sh)")
class PhpFpm(unittest.TestCase):
    """scripts/php-fpm.sh and the documented bodies of tests/php/ (see tests/php/README.md)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="heisen-selftest-fpm.")
        out = subprocess.run(["bash", os.path.join(ROOT, "scripts/php-fpm.sh"), "start", cls.dir,
                              "--workers", "3", "--quiet"], stdout=subprocess.PIPE, check=True)
        cls.addr = out.stdout.decode().strip()
        cls.www = os.path.join(cls.dir, "www")

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["bash", os.path.join(ROOT, "scripts/php-fpm.sh"), "stop", cls.dir])
        shutil.rmtree(cls.dir, ignore_errors=True)

    def req(self, script, query="", method="GET", body=b"", extra=(), keep=False):
        return fc.request(self.addr, fc.cgi_params(os.path.join(self.www, script), query=query,
                                                   method=method, body=body, extra=extra),
                          body=body, keep_conn=keep)

    def test_address_and_files(self):
        self.assertEqual(self.addr, "unix:" + os.path.join(self.dir, "php-fpm.sock"))
        with open(os.path.join(self.dir, "address")) as f:
            self.assertEqual(f.read().strip(), self.addr)
        for f in ("php-fpm.conf", "php-fpm.pid", "php-fpm.log", "www/hello.php"):
            self.assertTrue(os.path.exists(os.path.join(self.dir, f)), f)
        self.assertEqual(os.stat(self.addr[5:]).st_mode & 0o777, 0o666)

    def test_hello_oneline_index(self):
        r = self.req("hello.php")
        self.assertEqual((r.status, r.body), (200, b"Hello, world!\n"))
        self.assertEqual(r.header("content-type"), "text/plain;charset=UTF-8")
        self.assertEqual(self.req("oneline.php").body, b"ok\n")
        self.assertEqual(self.req("index.php").body, b"index\n")

    def test_echo(self):
        r = self.req("echo.php", "a=1", "POST", b"hello")
        self.assertEqual(r.body, b"method=POST\nquery=a=1\ncontent_type=application/octet-stream\n"
                         b"content_length=5\nlength=5\nsha256=" +
                         hashlib.sha256(b"hello").hexdigest().encode() + b"\n")
        body = os.urandom(1 << 20)
        r = self.req("echo.php", "", "POST", body)
        self.assertIn(b"length=1048576\nsha256=" + hashlib.sha256(body).hexdigest().encode(), r.body)
        r = self.req("echo.php", "x=%20y")
        self.assertEqual(r.body.splitlines()[:2], [b"method=GET", b"query=x=%20y"])
        self.assertIn(b"sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", r.body)

    def test_info_redirect_notfound_headers(self):
        self.assertIn(b"PHP Version", self.req("info.php").body)
        r = self.req("redirect.php")
        self.assertEqual((r.status, r.header("Location"), r.body), (302, "/elsewhere", b"redirecting\n"))
        r = self.req("notfound.php")
        self.assertEqual((r.status, r.body), (404, b"not found\n"))
        r = self.req("headers.php")
        self.assertEqual(r.headers, [("Content-Type", "text/plain; charset=utf-8"), ("X-Heisen-One", "1"),
                                     ("X-Heisen-Multi", "a"), ("X-Heisen-Multi", "b"),
                                     ("Set-Cookie", "a=1; path=/"), ("Set-Cookie", "b=2; path=/"),
                                     ("Cache-Control", "no-store")])
        self.assertEqual(r.body, b"headers\n")

    def test_stderr(self):
        r = self.req("stderr.php")
        self.assertEqual((r.status, r.body, r.stderr), (200, b"stderr sent\n", b"PHP message: heisen stderr test"))

    def test_param(self):
        v = b"v" * 65000
        r = self.req("param.php", extra=[("HEISEN_BIG", v)])
        self.assertEqual(r.body, b"name=HEISEN_BIG\npresent=1\nlength=65000\nsha256=" +
                         hashlib.sha256(v).hexdigest().encode() + b"\n")
        r = self.req("param.php", "name=NOPE")
        self.assertEqual(r.body, b"name=NOPE\npresent=0\nlength=0\nsha256=" +
                         hashlib.sha256(b"").hexdigest().encode() + b"\n")
        # documented php-fpm limit: a pair larger than one record cannot be delivered
        with self.assertRaises(fc.BadGateway):
            self.req("param.php", extra=[("HEISEN_BIG", b"v" * 71680)])

    def test_big(self):
        for n, q in ((100000, "n=100000"), (1048576, ""), (0, "n=0"), (70001, "n=70001&flush=1")):
            r = self.req("big.php", q)
            self.assertEqual(r.body, (P * (n // 64 + 1))[:n], q)
        r = self.req("big.php", "n=10&cl=1")
        self.assertEqual((r.header("Content-Length"), r.body), ("10", b"0123456789"))

    def test_sleep(self):
        t0 = time.monotonic()
        r = self.req("sleep.php", "s=0.3")
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(r.body, b"slept 0.3\n")
        s = fc.connect(self.addr)
        s.sendall(fc.build_request(fc.cgi_params(os.path.join(self.www, "sleep.php"), query="s=0.5&flush=1")))
        s.settimeout(0.4)
        first = s.recv(4096)           # the flushed part arrives before the sleep ends
        self.assertIn(b"sleeping\n", first)
        s.close()

    def test_keepalive_ping_status_values(self):
        with fc.Connection(self.addr) as c:
            for _ in range(5):
                self.assertEqual(c.request(fc.cgi_params(os.path.join(self.www, "oneline.php"))).body, b"ok\n")
        self.assertTrue(fc.ping(self.addr))
        r = fc.request(self.addr, [("SCRIPT_NAME", "/status"), ("SCRIPT_FILENAME", "/status"),
                                   ("REQUEST_METHOD", "GET"), ("QUERY_STRING", "")])
        self.assertIn(b"pool:                 heisen", r.body)
        self.assertIn("FCGI_MPXS_CONNS", fc.get_values(self.addr))

    def test_reload(self):
        out = subprocess.run(["bash", os.path.join(ROOT, "scripts/php-fpm.sh"), "reload", self.dir])
        self.assertEqual(out.returncode, 0)
        self.assertEqual(self.req("hello.php").body, b"Hello, world!\n")

    def test_cli(self):
        cli = [sys.executable, os.path.join(HERE, "fcgi_client.py")]
        out = subprocess.run(cli + ["-i", self.addr, os.path.join(self.www, "notfound.php")],
                             stdout=subprocess.PIPE)
        self.assertEqual(out.returncode, 0)
        self.assertTrue(out.stdout.startswith(b"Status: 404\r\n"))
        self.assertTrue(out.stdout.endswith(b"\r\n\r\nnot found\n"))
        out = subprocess.run(cli + ["unix:/nonexistent.sock", "/x.php"], stderr=subprocess.PIPE)
        self.assertEqual(out.returncode, 2)
        out = subprocess.run(cli + ["-t", "0.3", self.addr, os.path.join(self.www, "sleep.php"), "s=2"],
                             stderr=subprocess.PIPE)
        self.assertEqual(out.returncode, 124)


@unittest.skipUnless(find_fpm(), "php-fpm not installed (scripts/install-deps.sh)")
class PhpFpmModule(unittest.TestCase):
    def test_context_manager(self):
        import phpfpm
        self.assertTrue(phpfpm.available())
        with phpfpm.PhpFpm(workers=2, tcp=True, settings=("pm.max_requests = 50",)) as f:
            self.assertTrue(f.address.startswith("tcp:127.0.0.1:"))
            r = fc.request(f.address, fc.cgi_params(f.script("hello.php")))
            self.assertEqual(r.body, b"Hello, world!\n")
            self.assertEqual(len(f.worker_pids()), 2)
            with open(os.path.join(f.dir, "php-fpm.conf")) as conf:
                self.assertIn("pm.max_requests = 50", conf.read())
            f.reload()
            self.assertEqual(fc.request(f.address, fc.cgi_params(f.script("oneline.php"))).body, b"ok\n")
            d = f.dir
        self.assertFalse(os.path.exists(d))


@unittest.skipUnless(find_fpm() and shutil.which("nginx"), "needs php-fpm (and nginx, to drive HTTP)")
class HttpLoad(unittest.TestCase):
    def test_http_load_counts(self):
        d = tempfile.mkdtemp(prefix="heisen-selftest-http.")
        os.chmod(d, 0o755)
        try:
            addr = subprocess.run(["bash", os.path.join(ROOT, "scripts/php-fpm.sh"), "start", d, "--quiet",
                                   "--workers", "2"], stdout=subprocess.PIPE, check=True).stdout.decode().strip()
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write("""daemon off; worker_processes 1; pid %(d)s/nginx.pid; error_log %(d)s/nginx.err;
events { worker_connections 256; }
http { access_log off; client_body_temp_path %(d)s; fastcgi_temp_path %(d)s; proxy_temp_path %(d)s;
  uwsgi_temp_path %(d)s; scgi_temp_path %(d)s;
  server { listen 127.0.0.1:%(port)d; root %(d)s/www;
    location ~ \\.php$ { include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name; fastcgi_pass %(addr)s; } } }
""" % {"d": d, "port": port, "addr": addr})
            ng = subprocess.Popen(["nginx", "-c", conf], stderr=subprocess.DEVNULL)
            try:
                for _ in range(50):
                    try:
                        socket.create_connection(("127.0.0.1", port), 0.2).close()
                        break
                    except OSError:
                        time.sleep(0.1)
                base = "http://127.0.0.1:%d" % port
                out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/http_load.py"), "-n", "400",
                                      "-c", "4", "--json", "-q", base + "/oneline.php", base + "/notfound.php"],
                                     stdout=subprocess.PIPE)
                import json
                j = json.loads(out.stdout.decode().strip().splitlines()[-1])
                self.assertEqual(j["statuses"], {"200": 200, "404": 200})
                self.assertEqual(j["errors"], {})
                self.assertEqual(j["connections"], 4)
                self.assertEqual(out.returncode, 0)
                out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/http_load.py"), "-n", "10",
                                      "-q", "--expect", "200", base + "/notfound.php"])
                self.assertEqual(out.returncode, 1)
            finally:
                ng.terminate()
                ng.wait(5)
        finally:
            subprocess.run(["bash", os.path.join(ROOT, "scripts/php-fpm.sh"), "stop", d])
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
