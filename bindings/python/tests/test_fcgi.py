"""heisen.FastCGIClient against a real php-fpm (scripts/php-fpm.sh) and scripted peers
(tests/harness/fcgi_peer.py). Bodies are compared byte for byte (tests/php/README.md)."""

from __future__ import annotations

import gc
import hashlib
import os
import threading
import time
import unittest

import _support
from _support import big_body, nowhere, peer, php_fpm

import heisen
from heisen import _callbacks

HELLO = b"Hello, world!\n"
EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def echo_body(method: str, query: str, content_type: str, content_length: str,
              body: bytes) -> bytes:
    return (f"method={method}\nquery={query}\ncontent_type={content_type}\n"
            f"content_length={content_length}\nlength={len(body)}\n"
            f"sha256={hashlib.sha256(body).hexdigest()}\n").encode()


class PhpFpm(unittest.TestCase):
    address: str
    www: str

    @classmethod
    def setUpClass(cls) -> None:
        address, www = php_fpm()
        cls.address, cls.www = address, str(www)
        cls.client = heisen.FastCGIClient(address, timeout=30)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()

    def script(self, name: str) -> str:
        return os.path.join(self.www, name)

    def test_get_hello(self) -> None:
        r = self.client.request(script=self.script("hello.php"))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, HELLO)
        self.assertEqual(r.headers["content-type"], "text/plain;charset=UTF-8")
        self.assertEqual(r.headers["Content-Type"], "text/plain;charset=UTF-8")
        self.assertIn(("Content-type", "text/plain;charset=UTF-8"), r.header_list)
        self.assertEqual(r.stderr, b"")
        self.assertEqual(r.app_status, 0)
        self.assertEqual(r.outcome, heisen.STATUS_OK)
        self.assertTrue(r.complete)

    def test_get_with_query_and_cgi_params(self) -> None:
        r = self.client.get(self.script("echo.php"), query="a=1&b=%20x")
        self.assertEqual(r.body, echo_body("GET", "a=1&b=%20x", "", "", b""))

    def test_post_one_mebibyte(self) -> None:
        body = os.urandom(1 << 20)
        r = self.client.request(script=self.script("echo.php"), body=body, query="big=1",
                                headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, echo_body("POST", "big=1", "application/octet-stream",
                                           str(1 << 20), body))

    def test_post_helper_and_method(self) -> None:
        r = self.client.post(self.script("echo.php"), b"hello", query="a=1",
                             content_type="application/octet-stream")
        self.assertEqual(r.body, echo_body("POST", "a=1", "application/octet-stream", "5",
                                           b"hello"))
        r = self.client.request(script=self.script("echo.php"), method="PUT", body=b"x")
        self.assertTrue(r.body.startswith(b"method=PUT\n"), r.body)

    def test_not_found(self) -> None:
        r = self.client.request(script=self.script("notfound.php"))
        self.assertEqual((r.status, r.body), (404, b"not found\n"))
        self.assertTrue(r.complete)  # a 404 is a complete response, not an error

    def test_redirect(self) -> None:
        r = self.client.request(script=self.script("redirect.php"))
        self.assertEqual(r.status, 302)
        self.assertEqual(r.headers["location"], "/elsewhere")
        self.assertEqual(r.body, b"redirecting\n")

    def test_stderr_is_not_in_the_body(self) -> None:
        r = self.client.request(script=self.script("stderr.php"))
        self.assertEqual(r.body, b"stderr sent\n")
        self.assertTrue(r.stderr.startswith(b"PHP message: heisen stderr test"), r.stderr)

    def test_repeated_headers(self) -> None:
        r = self.client.request(script=self.script("headers.php"))
        self.assertEqual(r.body, b"headers\n")
        names = [n.lower() for n, _ in r.header_list]
        self.assertEqual([n for n in names if n.startswith(("x-heisen", "set-cookie"))],
                         ["x-heisen-one", "x-heisen-multi", "x-heisen-multi", "set-cookie",
                          "set-cookie"])
        self.assertEqual(r.headers.get_all("SET-COOKIE"), ["a=1; path=/", "b=2; path=/"])
        self.assertEqual(r.headers["x-heisen-multi"], "a, b")
        self.assertEqual(r.headers["cache-control"], "no-store")

    def test_http_headers_and_params(self) -> None:
        r = self.client.request(script=self.script("param.php"), query="name=HTTP_X_TEST",
                                headers=["X-Test: abc"])
        self.assertEqual(r.body, b"name=HTTP_X_TEST\npresent=1\nlength=3\nsha256="
                         + hashlib.sha256(b"abc").hexdigest().encode() + b"\n")
        value = "v" * 60000
        r = self.client.request({"HEISEN_BIG": value}, script=self.script("param.php"))
        self.assertEqual(r.body, b"name=HEISEN_BIG\npresent=1\nlength=60000\nsha256="
                         + hashlib.sha256(value.encode()).hexdigest().encode() + b"\n")

    def test_raw_params_only(self) -> None:
        path = self.script("hello.php")
        r = self.client.request([("SCRIPT_FILENAME", path), ("SCRIPT_NAME", "/hello.php")],
                                method="GET")
        self.assertEqual(r.body, HELLO)

    def test_raw_mode_gives_stdout_unparsed(self) -> None:
        r = self.client.request(script=self.script("hello.php"), raw=True)
        self.assertIsNone(r.status)
        self.assertEqual(r.header_list, [])
        self.assertTrue(r.body.endswith(b"\r\n\r\n" + HELLO), r.body)
        self.assertIn(b"Content-type: text/plain;charset=UTF-8\r\n", r.body)

    def test_stream_big_body_in_chunks(self) -> None:
        n = 3 * 1024 * 1024 + 17
        with self.client.stream(script=self.script("big.php"), query=f"n={n}&flush=1",
                                buffer_bytes=64 * 1024) as s:
            self.assertEqual(s.status, 200)
            self.assertEqual(s.headers["content-type"], "application/octet-stream")
            chunks = []
            for chunk in s:
                chunks.append(chunk)
                time.sleep(0.0005 if len(chunks) < 20 else 0)  # a slow reader: back-pressure
            self.assertTrue(s.ended)
            self.assertEqual(s.outcome, heisen.STATUS_OK)
            self.assertEqual((s.app_status, s.protocol_status), (0, 0))
        self.assertGreater(len(chunks), 1)
        self.assertEqual(b"".join(chunks), big_body(n))

    def test_stream_abort_then_reuse(self) -> None:
        s = self.client.stream(script=self.script("big.php"), query="n=50000000&flush=1")
        first = next(iter(s))
        self.assertEqual(first, big_body(len(first)))
        s.close()
        self.assertTrue(s.ended)
        self.assertEqual(s.outcome, heisen.STATUS_ABORTED)
        r = self.client.request(script=self.script("hello.php"))
        self.assertEqual(r.body, HELLO)

    def test_several_streams_and_requests_interleaved_in_one_thread(self) -> None:
        sizes = [200_000, 1_000_000, 3_000]
        streams = [self.client.stream(script=self.script("big.php"), query=f"n={n}&flush=1",
                                      buffer_bytes=32 * 1024) for n in sizes]
        bodies = [bytearray() for _ in sizes]
        iters = [iter(s) for s in streams]
        live = set(range(len(sizes)))
        rounds = 0
        while live:
            for k in sorted(live):
                try:
                    bodies[k] += next(iters[k])
                except StopIteration:
                    live.discard(k)
            rounds += 1
            if rounds % 5 == 0:  # a whole request in between, on the same thread's pool
                self.assertEqual(self.client.request(script=self.script("hello.php")).body,
                                 HELLO)
        for n, body, s in zip(sizes, bodies, streams):
            self.assertEqual(bytes(body), big_body(n))
            self.assertEqual(s.outcome, heisen.STATUS_OK)

    def test_dropped_stream_is_aborted_not_leaked(self) -> None:
        gc.collect()
        before = _callbacks.live_count()
        s = self.client.stream(script=self.script("big.php"), query="n=30000000&flush=1",
                               buffer_bytes=16 * 1024)
        next(iter(s))
        del s
        gc.collect()
        # the abort is processed by the next use of this thread's pool
        self.assertEqual(self.client.request(script=self.script("hello.php")).body, HELLO)
        for _ in range(50):
            if _callbacks.live_count() == before:
                break
            self.client.request(script=self.script("hello.php"))
        self.assertEqual(_callbacks.live_count(), before)

    def test_many_threads_all_exact(self) -> None:
        threads, per_thread = 8, 200
        failures: list[str] = []
        with heisen.FastCGIClient(self.address, timeout=30) as client:
            def work(t: int) -> None:
                for i in range(per_thread):
                    q = f"t={t}&i={i}"
                    try:
                        r = client.request(script=self.script("echo.php"), query=q)
                        if r.body != echo_body("GET", q, "", "", b""):
                            failures.append(f"{q}: {r.body!r}")
                    except heisen.Error as e:
                        failures.append(f"{q}: {e!r}")

            ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
            for th in ts:
                th.start()
            for th in ts:
                th.join()
            self.assertEqual(failures, [])
            st = client.stats()
            self.assertEqual(st.requests, threads * per_thread)
            self.assertEqual(st.complete, threads * per_thread)
            self.assertLessEqual(st.conns_opened, threads * 2)
            self.assertEqual(st.bad_gateway + st.truncated + st.timeout, 0)

    def test_ctrl_c_while_streaming_then_client_still_works(self) -> None:
        import signal

        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        self.addCleanup(timer.cancel)
        t0 = time.monotonic()
        with self.assertRaises(KeyboardInterrupt):
            with self.client.stream(script=self.script("sleep.php"), query="s=3&flush=1") as s:
                for _ in s:
                    pass
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertTrue(s.ended)  # the with block aborted it
        self.assertEqual(self.client.request(script=self.script("hello.php")).body, HELLO)

    def test_gil_is_released_while_waiting(self) -> None:
        done = threading.Event()

        def slow() -> None:
            try:
                self.client.request(script=self.script("sleep.php"), query="s=0.5")
            finally:
                done.set()

        th = threading.Thread(target=slow)
        th.start()
        time.sleep(0.05)
        spins = 0
        t0 = time.monotonic()
        while not done.is_set():
            spins += 1  # pure Python: runs only while the other thread is not holding the GIL
        elapsed = time.monotonic() - t0
        th.join()
        self.assertGreater(elapsed, 0.3)
        self.assertGreater(spins / elapsed, 100_000, "this thread starved during the request")

    def test_keep_alive_reuse_in_stats(self) -> None:
        with heisen.FastCGIClient(self.address) as client:
            for _ in range(5):
                self.assertEqual(client.request(script=self.script("hello.php")).body, HELLO)
            st = client.stats()
            self.assertEqual((st.requests, st.complete), (5, 5))
            self.assertEqual(st.conns_opened, 1)
            self.assertEqual(st.conns_reused, 4)
            self.assertEqual(st.pools, 1)
        with heisen.FastCGIClient(self.address, keep_alive=False) as client:
            for _ in range(3):
                client.request(script=self.script("hello.php"))
            st = client.stats()
            self.assertEqual((st.conns_opened, st.conns_reused), (3, 0))

    def test_timeout_from_php(self) -> None:
        with heisen.FastCGIClient(self.address, timeout=0.3) as client:
            t0 = time.monotonic()
            with self.assertRaises(heisen.GatewayTimeout) as cm:
                client.request(script=self.script("sleep.php"), query="s=3")
            self.assertLess(time.monotonic() - t0, 2.5)
            self.assertEqual(cm.exception.status, heisen.STATUS_TIMEOUT)
            self.assertEqual(client.request(script=self.script("hello.php")).body, HELLO)

    def test_get_values_and_status_page(self) -> None:
        r = self.client.request([("SCRIPT_NAME", "/status"), ("SCRIPT_FILENAME", "/status")],
                                query="json")
        self.assertEqual(r.status, 200)
        self.assertIn(b'"pool":"heisen"', r.body)


class Faults(unittest.TestCase):
    """Outcomes from scripted peers: each one exact, and the client usable afterwards."""

    def setUp(self) -> None:
        gc.collect()
        self.baseline = _callbacks.live_count()

    def tearDown(self) -> None:
        gc.collect()
        self.assertEqual(_callbacks.live_count(), self.baseline)

    def with_peer(self, mode: str, **opts: object):  # -> fcgi_peer.Peer
        p = peer(mode, **opts)
        self.addCleanup(p.stop)
        return p

    def test_bad_gateway_nothing_listening(self) -> None:
        with heisen.FastCGIClient(nowhere(), timeout=5) as client:
            with self.assertRaises(heisen.BadGateway) as cm:
                client.request({"SCRIPT_FILENAME": "/x.php"})
            self.assertEqual(cm.exception.status, heisen.STATUS_BAD_GATEWAY)
            self.assertTrue(str(cm.exception))
            self.assertEqual(client.stats().bad_gateway, 1)

    def test_bad_gateway_modes(self) -> None:
        for mode in ("close", "garbage", "short"):
            with self.subTest(mode=mode):
                p = self.with_peer(mode)
                with heisen.FastCGIClient(p.address, timeout=5) as client:
                    with self.assertRaises(heisen.BadGateway) as cm:
                        client.request({"SCRIPT_FILENAME": "/x.php"})
                    self.assertNotIsInstance(cm.exception, heisen.Truncated)

    def test_timeout_silent_backend(self) -> None:
        p = self.with_peer("silent")
        with heisen.FastCGIClient(p.address, timeout=0.3) as client:
            t0 = time.monotonic()
            with self.assertRaises(heisen.GatewayTimeout) as cm:
                client.request({"SCRIPT_FILENAME": "/x.php"})
            elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, 0.25)
            self.assertLess(elapsed, 3)
            self.assertIsNotNone(cm.exception.response)
            self.assertEqual(client.stats().timeout, 1)

    def test_truncated_keeps_the_bytes(self) -> None:
        p = self.with_peer("truncated")
        with heisen.FastCGIClient(p.address, timeout=5) as client:
            with self.assertRaises(heisen.Truncated) as cm:
                client.request({"SCRIPT_FILENAME": "/x.php"})
            resp = cm.exception.response
            assert resp is not None
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.body, b"partial\n")
            self.assertFalse(resp.complete)
            self.assertEqual(resp.outcome, heisen.STATUS_TRUNCATED)
            self.assertIsNone(resp.app_status)
            r = client.request({"SCRIPT_FILENAME": "/x.php"}, check=False)
            self.assertEqual((r.outcome, r.body), (heisen.STATUS_TRUNCATED, b"partial\n"))

    def test_truncated_while_streaming(self) -> None:
        p = self.with_peer("truncated")
        with heisen.FastCGIClient(p.address, timeout=5) as client:
            s = client.stream({"SCRIPT_FILENAME": "/x.php"})
            self.assertEqual(s.status, 200)
            got = []
            with self.assertRaises(heisen.Truncated):
                for chunk in s:
                    got.append(chunk)
            self.assertEqual(b"".join(got), b"partial\n")
            self.assertEqual((s.outcome, s.protocol_status, s.app_status),
                             (heisen.STATUS_TRUNCATED, None, None))

    def test_end_request_protocol_statuses(self) -> None:
        for mode, cls, status in (("overloaded", heisen.Overloaded, heisen.STATUS_OVERLOADED),
                                  ("cantmpx", heisen.CantMultiplex, heisen.STATUS_CANT_MPX_CONN),
                                  ("unknownrole", heisen.UnknownRole,
                                   heisen.STATUS_UNKNOWN_ROLE)):
            with self.subTest(mode=mode):
                p = self.with_peer(mode)
                with heisen.FastCGIClient(p.address, timeout=5) as client:
                    with self.assertRaises(cls) as cm:
                        client.request({"SCRIPT_FILENAME": "/x.php"})
                    self.assertEqual(cm.exception.status, status)

    def test_story_every_response_complete(self) -> None:
        p = self.with_peer("story")
        with heisen.FastCGIClient(p.address, timeout=5) as client:
            for _ in range(300):
                r = client.request({"SCRIPT_FILENAME": "/x.php"})
                self.assertEqual((r.status, r.body, r.app_status), (200, b"hello\n", 0))
            st = client.stats()
            self.assertEqual((st.requests, st.complete, st.bad_gateway), (300, 300, 0))

    def test_peer_stderr_channel(self) -> None:
        p = self.with_peer("stderr")
        with heisen.FastCGIClient(p.address, timeout=5) as client:
            r = client.request({"SCRIPT_FILENAME": "/x.php"})
            self.assertEqual((r.body, r.stderr), (b"hello\n", b"peer stderr line\n"))

    def test_faults_interleaved_with_good_requests_from_threads(self) -> None:
        p = self.with_peer("param")
        modes = {"story": None, "truncated": heisen.Truncated, "close": heisen.BadGateway,
                 "overloaded": heisen.Overloaded}
        wrong: list[str] = []
        with heisen.FastCGIClient(p.address, timeout=5) as client:
            def work(t: int) -> None:
                for i in range(60):
                    mode = list(modes)[(t + i) % len(modes)]
                    try:
                        r = client.request({"SCRIPT_FILENAME": "/x.php", "HEISEN_PEER_MODE": mode})
                        if modes[mode] is not None or r.body != b"hello\n":
                            wrong.append(f"{mode}: got {r.body!r}")
                    except heisen.Error as e:
                        if modes[mode] is None or not isinstance(e, modes[mode]):
                            wrong.append(f"{mode}: {e!r}")

            ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
            for th in ts:
                th.start()
            for th in ts:
                th.join()
        self.assertEqual(wrong, [])

    def test_get_values(self) -> None:
        p = self.with_peer("story", max_conns=7)
        with heisen.FastCGIClient(p.address, timeout=5) as client:
            values = client.get_values(0)
        self.assertEqual(values.get("FCGI_MAX_CONNS"), "7")
        self.assertEqual(values.get("FCGI_MPXS_CONNS"), "0")


class Lifecycle(unittest.TestCase):
    def test_close_and_use_after_close(self) -> None:
        p = peer("story")
        self.addCleanup(p.stop)
        client = heisen.FastCGIClient(p.address)
        self.assertEqual(client.request({"SCRIPT_FILENAME": "/x"}).body, b"hello\n")
        client.close()
        client.close()
        self.assertTrue(client.closed)
        with self.assertRaises(heisen.ClosedError):
            client.request({"SCRIPT_FILENAME": "/x"})
        with self.assertRaises(heisen.ClosedError):
            client.stream({"SCRIPT_FILENAME": "/x"})
        with self.assertRaises(heisen.ClosedError):
            client.stats()

    def test_bad_arguments(self) -> None:
        with self.assertRaises(heisen.InvalidArgument):
            heisen.FastCGIClient([])
        with self.assertRaises(heisen.Error):
            heisen.FastCGIClient("unix:")
        with self.assertRaises(ValueError):
            heisen.FastCGIClient(nowhere(), balance="random")
        with self.assertRaises(ValueError):
            heisen.cgi_script_parts("relative.php", None)
        self.assertEqual(heisen.cgi_script_parts("/srv/www/index.php", None),
                         ("/srv/www", "/index.php"))
        self.assertEqual(heisen.cgi_script_parts("/srv/www/a/b.php", "/srv/www/"),
                         ("/srv/www", "/a/b.php"))

    def test_close_from_another_thread_while_streaming(self) -> None:
        address, www = php_fpm()
        client = heisen.FastCGIClient(address, timeout=30)
        s = client.stream(script=os.path.join(str(www), "big.php"),
                          query="n=20000000&flush=1")
        next(iter(s))
        th = threading.Thread(target=client.close)
        th.start()
        th.join(10)
        self.assertTrue(client.closed)
        with self.assertRaises((heisen.Aborted, heisen.ClosedError)):
            for _ in s:
                pass
        self.assertTrue(s.ended)

    def test_close_aborts_a_request_running_in_another_thread(self) -> None:
        address, www = php_fpm()
        client = heisen.FastCGIClient(address, timeout=30)
        result: list[object] = []
        started = threading.Event()

        def slow() -> None:
            started.set()
            try:
                result.append(client.request(script=os.path.join(str(www), "sleep.php"),
                                             query="s=5"))
            except heisen.Error as e:
                result.append(e)

        th = threading.Thread(target=slow)
        th.start()
        self.assertTrue(started.wait(5))
        time.sleep(0.3)
        t0 = time.monotonic()
        client.close()
        th.join(10)
        self.assertLess(time.monotonic() - t0, 3, "close() must not wait for the 5 s script")
        self.assertEqual(len(result), 1)
        self.assertIsInstance(result[0], heisen.Aborted)
        with self.assertRaises(heisen.ClosedError):
            client.request(script=os.path.join(str(www), "hello.php"))

    def test_client_used_in_a_forked_child(self) -> None:
        p = peer("ok")
        self.addCleanup(p.stop)
        with heisen.FastCGIClient(p.address) as client:
            self.assertEqual(client.request({"SCRIPT_FILENAME": "/x"}).body, b"hello\n")
            pid = os.fork()
            if pid == 0:  # the child gets pools of its own; the parent's are left alone
                code = 1
                try:
                    r = client.request({"SCRIPT_FILENAME": "/x"})
                    code = 0 if r.body == b"hello\n" and client.stats().requests == 1 else 2
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
            self.assertEqual(client.request({"SCRIPT_FILENAME": "/x"}).body, b"hello\n")
            self.assertEqual(client.stats().requests, 2)

    def test_thread_exit_frees_its_pool(self) -> None:
        p = peer("ok")
        self.addCleanup(p.stop)
        with heisen.FastCGIClient(p.address) as client:
            def one() -> None:
                client.request({"SCRIPT_FILENAME": "/x"})

            for _ in range(5):
                th = threading.Thread(target=one)
                th.start()
                th.join()
            gc.collect()
            st = client.stats()
            self.assertEqual(st.pools, 0)  # every pool went with its thread
            self.assertEqual((st.requests, st.complete, st.conns_open), (5, 5, 0))
            one()
            st = client.stats()
            self.assertEqual((st.pools, st.requests), (1, 6))


if __name__ == "__main__":
    unittest.main()
