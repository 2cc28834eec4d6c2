"""heisen.ReactorFastCGIClient: the asynchronous FastCGI client on a Reactor of the caller's."""

from __future__ import annotations

import gc
import hashlib
import os
import unittest

from _support import big_body, nowhere, peer, php_fpm

import heisen
from heisen import _callbacks


def echo_get(query: str) -> bytes:
    return (f"method=GET\nquery={query}\ncontent_type=\ncontent_length=\nlength=0\n"
            f"sha256={hashlib.sha256(b'').hexdigest()}\n").encode()


class OnReactor(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.address, www = php_fpm()
        cls.www = str(www)

    def setUp(self) -> None:
        gc.collect()
        self.baseline = _callbacks.live_count()
        self.r = heisen.Reactor()
        # fewer connections than php-fpm has workers: a kept connection pins a worker
        self.client = heisen.ReactorFastCGIClient(self.r, self.address, timeout=30,
                                                  max_connections=4)

    def tearDown(self) -> None:
        self.r.close()
        self.assertTrue(self.client.closed)
        gc.collect()
        self.assertEqual(_callbacks.live_count(), self.baseline)

    def script(self, name: str) -> str:
        return os.path.join(self.www, name)

    def test_concurrent_requests_all_exact(self) -> None:
        done: dict[str, heisen.Response] = {}
        n = 20

        def on_end(req: heisen.PendingRequest, resp: heisen.Response) -> None:
            done[req.query] = resp  # type: ignore[attr-defined]
            if len(done) == n:
                self.r.stop()

        for i in range(n):
            q = f"i={i}"
            p = self.client.send(script=self.script("echo.php"), query=q, on_end=on_end)
            p.query = q  # type: ignore[attr-defined]
        self.r.run()
        self.assertEqual(len(done), n)
        for q, resp in done.items():
            self.assertEqual((resp.status, resp.body, resp.outcome), (200, echo_get(q), 0))
        st = self.client.stats()
        self.assertEqual((st.requests, st.complete), (n, n))

    def test_streamed_body_with_pause_and_resume(self) -> None:
        n = 1_500_000
        got = bytearray()
        seen: list[object] = []

        def on_headers(req: heisen.PendingRequest, status: int | None,
                       headers: heisen.Headers) -> None:
            seen.append((status, headers["content-type"]))

        def on_body(req: heisen.PendingRequest, chunk: bytes) -> bool:
            got.extend(chunk)
            self.r.call_soon(req.resume)
            return True  # pause until the timer resumes

        def on_end(req: heisen.PendingRequest, resp: heisen.Response) -> None:
            seen.append((resp.outcome, resp.body, resp.app_status))
            self.r.stop()

        self.client.send(script=self.script("big.php"), query=f"n={n}&flush=1",
                         on_headers=on_headers, on_body=on_body, on_end=on_end)
        self.r.run()
        self.assertEqual(bytes(got), big_body(n))
        self.assertEqual(seen, [(200, "application/octet-stream"), (0, b"", 0)])

    def test_abort_and_close_end_with_aborted(self) -> None:
        ends: list[int] = []

        def on_body(req: heisen.PendingRequest, chunk: bytes) -> None:
            req.abort()
            req.abort()

        self.client.send(script=self.script("big.php"), query="n=50000000&flush=1",
                         on_body=on_body, on_end=lambda req, resp: (ends.append(resp.outcome),
                                                                    self.r.stop()))
        self.r.run()
        self.assertEqual(ends, [heisen.STATUS_ABORTED])
        # in flight when the client closes: on_end runs inside close()
        self.client.send(script=self.script("sleep.php"), query="s=5",
                         on_end=lambda req, resp: ends.append(resp.outcome))
        self.r.run_once(block=False)
        self.client.close()
        self.client.close()
        self.assertEqual(ends, [heisen.STATUS_ABORTED, heisen.STATUS_ABORTED])
        with self.assertRaises(heisen.ClosedError):
            self.client.send(script=self.script("hello.php"))

    def test_exception_in_on_end_reaches_run(self) -> None:
        def on_end(req: heisen.PendingRequest, resp: heisen.Response) -> None:
            resp.raise_for_outcome()

        other = heisen.ReactorFastCGIClient(self.r, nowhere(), timeout=5)
        other.send({"SCRIPT_FILENAME": "/x.php"}, on_end=on_end)
        with self.assertRaises(heisen.BadGateway):
            self.r.run()

    def test_truncated_from_peer(self) -> None:
        p = peer("truncated")
        self.addCleanup(p.stop)
        client = heisen.ReactorFastCGIClient(self.r, p.address, timeout=5)
        out: list[heisen.Response] = []
        client.send({"SCRIPT_FILENAME": "/x.php"}, on_end=lambda req, resp: out.append(resp))
        while not out:
            self.r.run_once()
        self.assertEqual((out[0].outcome, out[0].body, out[0].status, out[0].app_status),
                         (heisen.STATUS_TRUNCATED, b"partial\n", 200, None))
        with self.assertRaises(heisen.Truncated):
            out[0].raise_for_outcome()


if __name__ == "__main__":
    unittest.main()
