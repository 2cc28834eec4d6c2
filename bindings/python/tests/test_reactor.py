"""heisen.Reactor: watches, timers, posts from threads, exceptions, misuse, lifetimes."""

from __future__ import annotations

import gc
import os
import signal
import socket
import threading
import time
import unittest
import weakref

import _support  # noqa: F401  (puts the package on sys.path)

import heisen
from heisen import _callbacks


def drain(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


class Base(unittest.TestCase):
    def setUp(self) -> None:
        gc.collect()
        self.baseline = _callbacks.live_count()
        self.r = heisen.Reactor()

    def tearDown(self) -> None:
        self.r.close()
        gc.collect()
        self.assertEqual(_callbacks.live_count(), self.baseline,
                         "callbacks still registered after the reactor was closed")

    def pair(self) -> tuple[socket.socket, socket.socket]:
        a, b = socket.socketpair()
        a.setblocking(False)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        return a, b


class Watches(Base):
    def test_data_then_hangup_in_one_event(self) -> None:
        # the story in miniature: bytes and the close are both pending before the first wait;
        # every byte must be delivered, then HUP, exactly once each.
        a, b = self.pair()
        b.sendall(b"hello, reactor")
        b.close()
        got: list[tuple[heisen.Events, bytes]] = []

        def on_event(w: heisen.Watch, ev: heisen.Events) -> None:
            if ev == heisen.Events.READ:
                got.append((ev, drain(a)))
            else:
                got.append((ev, b""))
                w.close()

        w = self.r.watch(a, on_event)
        self.r.run()  # returns: nothing left to watch once the watch closed itself
        self.assertEqual(got, [(heisen.Events.READ, b"hello, reactor"),
                               (heisen.Events.HUP, b"")])
        self.assertTrue(w.closed)
        c = self.r.counters()
        self.assertEqual(c.read_with_hup, 1)
        self.assertGreaterEqual(c.events, 1)
        self.assertEqual(c.dispatches, 2)

    def test_again_is_called_until_drained(self) -> None:
        a, b = self.pair()
        b.sendall(b"abcde")
        got = []

        def one_byte(w: heisen.Watch, ev: heisen.Events) -> object:
            if ev != heisen.Events.READ:
                return None
            try:
                chunk = a.recv(1)
            except BlockingIOError:
                return heisen.DONE
            got.append(chunk)
            if b"".join(got) == b"abcde":
                self.r.stop()
            return heisen.AGAIN

        self.r.watch(a, one_byte)
        self.r.run()
        self.assertEqual(b"".join(got), b"abcde")

    def test_write_interest_and_set_interest(self) -> None:
        a, b = self.pair()
        events = []

        def cb(w: heisen.Watch, ev: heisen.Events) -> None:
            events.append(ev)
            if ev == heisen.Events.WRITE:
                a.send(b"x")
                w.set_interest(read=True, write=False)
                self.assertEqual(w.interest, heisen.Events.READ)
                self.r.stop()

        w = self.r.watch(a.fileno(), cb, read=False, write=True)
        self.assertEqual(w.fd, a.fileno())
        self.assertEqual(w.interest, heisen.Events.WRITE)
        self.r.run()
        self.assertEqual(events, [heisen.Events.WRITE])
        self.assertEqual(b.recv(1), b"x")

    def test_closing_own_watch_stops_further_callbacks(self) -> None:
        a, b = self.pair()
        b.sendall(b"data")
        b.close()
        events = []

        def cb(w: heisen.Watch, ev: heisen.Events) -> None:
            events.append(ev)
            w.close()
            w.close()  # twice, inside its own callback

        self.r.watch(a, cb)
        self.r.run()
        self.assertEqual(events, [heisen.Events.READ])  # no HUP after the close

    def test_bad_fd_raises_not_crashes(self) -> None:
        with self.assertRaises(heisen.Error):
            self.r.watch(-1, lambda w, ev: None)
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        with self.assertRaises(heisen.Error):
            self.r.watch(r, lambda w, ev: None)

    def test_callback_released_after_close(self) -> None:
        a, _ = self.pair()

        class Callback:
            def __call__(self, w: heisen.Watch, ev: heisen.Events) -> None:
                pass

        cb = Callback()
        ref = weakref.ref(cb)
        w = self.r.watch(a, cb)
        self.assertEqual(_callbacks.live_count(), self.baseline + 1)
        del cb
        gc.collect()
        self.assertIsNotNone(ref(), "the library may still call it: it must stay alive")
        w.close()
        gc.collect()
        self.assertIsNone(ref(), "closed watch: the callback must be released")
        self.assertEqual(_callbacks.live_count(), self.baseline)


class Timers(Base):
    def test_order_and_one_shot_close(self) -> None:
        order = []
        t1 = self.r.call_later(0.03, order.append, "late")
        t2 = self.r.call_later(0.01, order.append, "early")
        t3 = self.r.call_soon(order.append, "soon")
        t0 = time.monotonic()
        self.r.run()
        elapsed = time.monotonic() - t0
        self.assertEqual(order, ["soon", "early", "late"])
        self.assertGreaterEqual(elapsed, 0.029)
        self.assertTrue(t1.closed and t2.closed and t3.closed)
        self.assertEqual(self.r.counters().timers_fired, 3)

    def test_call_every_until_cancelled(self) -> None:
        ticks = []

        def tick() -> None:
            ticks.append(time.monotonic())
            if len(ticks) == 4:
                timer.cancel()

        timer = self.r.call_every(0.01, tick)
        self.assertTrue(timer.active)
        self.r.run()
        self.assertEqual(len(ticks), 4)
        self.assertFalse(timer.active)
        self.assertGreaterEqual(ticks[-1] - ticks[0], 0.029)

    def test_cancel_before_firing(self) -> None:
        fired = []
        t = self.r.call_later(0.01, fired.append, 1)
        t.cancel()
        t.cancel()
        self.r.run()
        self.assertEqual(fired, [])
        self.assertEqual(self.r.counters().timers_fired, 0)

    def test_negative_delay_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            self.r.call_later(-1, print)
        with self.assertRaises(ValueError):
            self.r.call_every(0, print)

    def test_run_once_and_backend(self) -> None:
        fired = []
        t0 = time.monotonic()
        before = self.r.now_ms()
        self.r.call_later(0.02, fired.append, 1)
        timeout = self.r.backend_timeout()
        self.assertIsNotNone(timeout)
        assert timeout is not None
        self.assertLessEqual(timeout, 0.02)
        self.assertGreaterEqual(self.r.backend_fd(), 0)
        while not fired:
            self.r.run_once()
        self.assertGreaterEqual(time.monotonic() - t0, 0.019)  # never early
        self.assertGreaterEqual(self.r.now_ms(), before)  # monotonic
        self.r.run_once(block=False)  # nothing to do, must not block
        self.assertIsNone(self.r.backend_timeout())


class Posts(Base):
    def setUp(self) -> None:
        gc.collect()
        self.baseline = _callbacks.live_count()
        self.r = heisen.Reactor(threadsafe=True)

    def test_posts_from_threads_run_in_order(self) -> None:
        n_threads, per_thread = 4, 250
        got: list[tuple[int, int]] = []
        reactor_thread: list[int] = []

        def record(t: int, i: int) -> None:
            reactor_thread.append(threading.get_ident())
            got.append((t, i))
            if len(got) == n_threads * per_thread:
                self.r.stop()

        def producer(t: int) -> None:
            for i in range(per_thread):
                self.r.post(record, t, i)

        threads = [threading.Thread(target=producer, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        self.r.run()
        for th in threads:
            th.join()
        self.assertEqual(len(got), n_threads * per_thread)
        for t in range(n_threads):
            self.assertEqual([i for (tt, i) in got if tt == t], list(range(per_thread)))
        self.assertEqual(set(reactor_thread), {threading.get_ident()})
        self.assertEqual(self.r.counters().posts_run, n_threads * per_thread)

    def test_stop_from_another_thread(self) -> None:
        threading.Timer(0.05, self.r.stop).start()
        t0 = time.monotonic()
        self.r.run()  # the waker keeps it alive until stopped
        self.assertLess(time.monotonic() - t0, 5)

    def test_run_in_a_thread_other_threads_get_thread_error(self) -> None:
        started = threading.Event()
        self.r.call_soon(started.set)
        th = threading.Thread(target=self.r.run)
        th.start()
        self.assertTrue(started.wait(5))
        with self.assertRaises(heisen.ThreadError):
            self.r.call_later(1, print)
        with self.assertRaises(heisen.ThreadError):
            self.r.close()
        self.r.stop()  # posted
        th.join(5)
        self.assertFalse(th.is_alive())

    def test_waker_wakes_coalesce(self) -> None:
        calls = []
        waker = self.r.waker(lambda: calls.append(1))
        for _ in range(5):
            waker.wake()
        self.r.call_later(0.05, self.r.stop)
        self.r.run()
        self.assertGreaterEqual(len(calls), 1)
        self.assertLessEqual(len(calls), 5)
        waker.close()
        waker.close()
        with self.assertRaises(heisen.ClosedError):
            waker.wake()

    def test_post_after_close(self) -> None:
        self.r.close()
        with self.assertRaises(heisen.ClosedError):
            self.r.post(print)


class Exceptions(Base):
    def test_exception_in_timer_is_reraised_from_run(self) -> None:
        later = []

        def boom() -> None:
            raise ValueError("boom")

        self.r.call_soon(boom)
        self.r.call_later(0.05, later.append, 1)
        with self.assertRaises(ValueError) as cm:
            self.r.run()
        self.assertEqual(str(cm.exception), "boom")
        self.assertEqual(later, [])  # the reactor stopped at the exception
        self.r.run()  # and can go on
        self.assertEqual(later, [1])

    def test_exception_in_watch_callback(self) -> None:
        a, b = self.pair()
        b.sendall(b"x")

        def cb(w: heisen.Watch, ev: heisen.Events) -> None:
            drain(a)
            raise KeyError("in watch")

        w = self.r.watch(a, cb)
        with self.assertRaises(KeyError):
            self.r.run()
        w.close()

    def test_exception_in_post(self) -> None:
        r = heisen.Reactor(threadsafe=True)
        try:
            r.post(lambda: 1 / 0)
            with self.assertRaises(ZeroDivisionError):
                r.run()
        finally:
            r.close()

    def test_two_exceptions_keep_the_first(self) -> None:
        def boom(msg: str) -> None:
            raise RuntimeError(msg)

        self.r.call_soon(boom, "first")
        self.r.call_soon(boom, "second")
        with self.assertRaises(RuntimeError) as cm:
            self.r.run()
        self.assertEqual(str(cm.exception), "first")
        try:
            self.r.run()
        except RuntimeError as e:  # the second may or may not have run before the stop
            self.assertEqual(str(e), "second")


class Misuse(Base):
    def test_double_close_and_use_after_close(self) -> None:
        a, _ = self.pair()
        w = self.r.watch(a, lambda w, ev: None)
        t = self.r.call_later(10, print)
        self.r.close()
        self.r.close()
        self.assertTrue(self.r.closed)
        self.assertTrue(w.closed and t.closed)
        w.close()
        t.cancel()
        for call in (lambda: self.r.run(), lambda: self.r.run_once(),
                     lambda: self.r.call_later(1, print), lambda: self.r.watch(a, print),
                     lambda: self.r.counters(), lambda: self.r.stop(),
                     lambda: w.set_interest(True, True)):
            with self.assertRaises(heisen.ClosedError):
                call()

    def test_close_reactor_inside_callback(self) -> None:
        a, b = self.pair()
        b.sendall(b"x")
        later = []
        t = self.r.call_later(5, later.append, 1)

        def cb(w: heisen.Watch, ev: heisen.Events) -> None:
            self.r.close()
            w.close()  # already closed by the reactor's close: a no-op

        w = self.r.watch(a, cb)
        self.r.run()  # returns right after the callback
        self.assertTrue(self.r.closed and w.closed and t.closed)
        self.assertEqual(later, [])

    def test_run_inside_callback_is_reentrant_error(self) -> None:
        self.r.call_soon(self.r.run)
        with self.assertRaises(heisen.ReentrantError):
            self.r.run()

    def test_post_needs_threadsafe(self) -> None:
        with self.assertRaises(heisen.ThreadError):
            self.r.post(print)

    def test_closed_after_del_releases_everything(self) -> None:
        r = heisen.Reactor()
        fired = []
        r.call_later(10, fired.append, 1)
        r.close()
        del r
        gc.collect()
        self.assertEqual(_callbacks.live_count(), self.baseline)

    def test_forked_child_gets_forked_error(self) -> None:
        self.r.call_later(10, print)
        pid = os.fork()
        if pid == 0:  # child: the parent's reactor must refuse, a new one must work
            code = 1
            try:
                try:
                    self.r.run()
                except heisen.ForkedError:
                    fired = []
                    with heisen.Reactor() as r2:
                        r2.call_soon(fired.append, 1)
                        r2.run()
                    code = 0 if fired == [1] else 3
                else:
                    code = 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)

    def test_context_manager(self) -> None:
        with heisen.Reactor() as r:
            r.call_soon(lambda: None)
            r.run()
        self.assertTrue(r.closed)


class Interrupts(Base):
    """Ctrl-C (SIGINT) while run() waits in epoll on the main thread."""

    def interrupt_soon(self) -> None:
        timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        self.addCleanup(timer.cancel)

    def test_ctrl_c_with_timers_running(self) -> None:
        self.r.call_every(0.01, lambda: None)
        self.interrupt_soon()
        with self.assertRaises(KeyboardInterrupt):
            self.r.run()
        self.assertEqual(signal.set_wakeup_fd(-1), -1, "the wakeup fd must be restored")

    def test_ctrl_c_while_idle_on_a_watch(self) -> None:
        a, _ = self.pair()
        self.r.watch(a, lambda w, ev: None)
        self.interrupt_soon()
        t0 = time.monotonic()
        with self.assertRaises(KeyboardInterrupt):
            self.r.run()
        self.assertLess(time.monotonic() - t0, 5)

    def test_signal_pipe_does_not_keep_run_going(self) -> None:
        t0 = time.monotonic()
        self.r.call_later(0.02, lambda: None)
        self.r.run()  # returns once the timer fired: the internal pipe watch is not counted
        self.assertLess(time.monotonic() - t0, 2)
        self.assertEqual(signal.set_wakeup_fd(-1), -1)


class EchoExample(Base):
    """examples/echo_server.py: many clients that send and hang up at once get every byte."""

    def test_echo_server_example(self) -> None:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "echo_server", _support.PKG_ROOT / "examples" / "echo_server.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        port = listener.getsockname()[1]
        results: dict[int, bytes] = {}

        def client(i: int) -> None:
            payload = (b"%d:" % i) * 5000
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)  # data and hang-up back to back
                got = b""
                while chunk := s.recv(65536):
                    got += chunk
            results[i] = got if got == payload else b"MISMATCH %d" % len(got)
            if len(results) == 20:
                self.r.post(self.r.stop)

        self.r.close()
        self.r = heisen.Reactor(threadsafe=True)  # post(stop) from the client threads
        mod.serve(self.r, listener)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
        for th in threads:
            th.start()
        self.r.run()
        for th in threads:
            th.join()
        self.assertEqual(sorted(results), list(range(20)))
        self.assertTrue(all(not v.startswith(b"MISMATCH") for v in results.values()),
                        {k: v[:20] for k, v in results.items() if v.startswith(b"MISMATCH")})


class Trace(Base):
    def test_set_and_clear_trace(self) -> None:
        lines: list[str] = []
        a, b = self.pair()
        self.r.set_trace(lines.append)
        b.sendall(b"x")
        w = self.r.watch(a, lambda w, ev: (drain(a), self.r.stop()) and None)
        self.r.run()
        w.close()
        self.r.set_trace(None)
        self.assertTrue(all(isinstance(line, str) for line in lines))
        self.assertGreaterEqual(len(lines), 1, "one trace line per epoll event")


if __name__ == "__main__":
    unittest.main()
