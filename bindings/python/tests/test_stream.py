"""heisen.Stream and heisen.Listener: every byte before the end, back-pressure, misuse."""

from __future__ import annotations

import errno
import gc
import os
import socket
import threading
import unittest

from _support import tmp_root

import heisen
from heisen import _callbacks


class Streams(unittest.TestCase):
    def setUp(self) -> None:
        gc.collect()
        self.baseline = _callbacks.live_count()
        self.r = heisen.Reactor()

    def tearDown(self) -> None:
        self.r.close()
        gc.collect()
        self.assertEqual(_callbacks.live_count(), self.baseline)

    def test_echo_over_tcp_every_byte_then_end(self) -> None:
        payload = os.urandom(1 << 20)
        received = bytearray()
        events: list[str] = []

        def on_accept(listener: heisen.Listener, fd: int) -> None:
            def echo(stream: heisen.Stream, data: bytes) -> None:
                stream.write(data)

            def end(stream: heisen.Stream) -> None:
                events.append("server end")
                stream.shutdown()  # after the queued echo is written

            self.r.open_stream(fd, on_data=echo, on_end=end)

        lst = self.r.listen("tcp:127.0.0.1:0", on_accept)
        self.assertGreater(lst.port, 0)

        def connected(stream: heisen.Stream) -> None:
            events.append("connected")
            stream.write(payload)
            stream.shutdown()

        def client_end(stream: heisen.Stream) -> None:
            events.append("client end")
            stream.close()
            lst.close()
            self.r.stop()

        self.r.connect(f"tcp:127.0.0.1:{lst.port}", on_connect=connected,
                       on_data=lambda s, d: received.extend(d), on_end=client_end,
                       on_error=lambda s, e: self.fail(f"client error {e}"))
        self.r.run()
        self.assertEqual(events, ["connected", "server end", "client end"])
        self.assertEqual(len(received), len(payload))
        self.assertEqual(bytes(received), payload)

    def test_data_and_close_together_over_unix(self) -> None:
        path = str(tmp_root() / "stream-test.sock")
        if os.path.exists(path):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen()
        self.addCleanup(srv.close)

        def peer() -> None:
            conn, _ = srv.accept()
            conn.sendall(b"x" * 100_000 + b"END")
            conn.close()  # at once: data and hang-up back to back

        th = threading.Thread(target=peer)
        th.start()
        got = bytearray()
        order: list[str] = []

        def on_end(s: heisen.Stream) -> None:
            order.append(f"end after {len(got)}")
            s.close()

        self.r.connect(f"unix:{path}", on_data=lambda s, d: got.extend(d), on_end=on_end)
        self.r.run()  # returns once the stream is closed
        th.join()
        self.assertEqual(bytes(got), b"x" * 100_000 + b"END")
        self.assertEqual(order, [f"end after {100_003}"])

    def test_connect_refused_is_an_error_event(self) -> None:
        errors: list[OSError] = []

        def on_error(s: heisen.Stream, e: OSError) -> None:
            errors.append(e)
            s.close()

        s = self.r.connect(f"unix:{tmp_root() / 'no-such.sock'}", on_error=on_error)
        self.r.run()
        self.assertEqual(len(errors), 1)
        self.assertIn(errors[0].errno, (errno.ENOENT, errno.ECONNREFUSED))
        self.assertTrue(s.closed and s.ended)
        with self.assertRaises(heisen.ClosedError):
            s.write(b"x")

    def test_back_pressure_and_drain(self) -> None:
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        drains: list[int] = []
        s = self.r.open_stream(a, on_drain=lambda st: (drains.append(1), self.r.stop()))
        s.set_high_water(1024)
        self.assertTrue(s.write(b"y" * 100))
        self.assertFalse(s.write(b"y" * 1_000_000))  # accepted, but above the mark
        self.assertGreater(s.queued, 0)
        total = 100 + 1_000_000
        seen = 0

        def reader() -> None:
            nonlocal seen
            while seen < total:
                chunk = b.recv(65536)
                if not chunk:
                    break
                seen += len(chunk)

        th = threading.Thread(target=reader)
        th.start()
        self.r.run()
        th.join(10)
        self.assertEqual(drains, [1])
        self.assertEqual(seen, total)
        self.assertEqual(s.queued, 0)
        s.close()
        s.close()

    def test_close_inside_own_data_callback(self) -> None:
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        b.sendall(b"first")
        calls: list[bytes] = []

        def on_data(s: heisen.Stream, d: bytes) -> None:
            calls.append(d)
            s.close()

        self.r.open_stream(a, on_data=on_data, on_end=lambda s: calls.append(b"END"))
        self.r.run()
        self.assertEqual(calls, [b"first"])  # nothing after the close

    def test_exception_in_stream_callback(self) -> None:
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        b.sendall(b"boom")

        def on_data(s: heisen.Stream, d: bytes) -> None:
            raise RuntimeError(d.decode())

        s = self.r.open_stream(a, on_data=on_data)
        with self.assertRaises(RuntimeError) as cm:
            self.r.run()
        self.assertEqual(str(cm.exception), "boom")
        s.close()

    def test_bad_addresses(self) -> None:
        with self.assertRaises(heisen.Error):
            self.r.connect("nonsense")
        with self.assertRaises(heisen.Error):
            self.r.listen("tcp:not-an-ip:x", lambda lst, fd: None)


if __name__ == "__main__":
    unittest.main()
