"""The heisen reactor from Python: fd watches, timers, posts from other threads."""

from __future__ import annotations

import enum
import math
import os
import signal
import threading
from contextlib import contextmanager
from ctypes import byref, c_int, c_int32, c_uint64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Union

from . import _callbacks as cb
from . import _lib
from ._errors import ClosedError, ReentrantError, ThreadError, check, make_error

if TYPE_CHECKING:  # pragma: no cover
    from ._stream import Listener, Stream


class Events(enum.IntFlag):
    """What a watch callback is told. Exactly one bit per call, in the order READ, WRITE, HUP,
    ERROR: readable data is always delivered before the hang-up or error that came with it."""

    READ = _lib.EV_READ
    WRITE = _lib.EV_WRITE
    HUP = _lib.EV_HUP
    ERROR = _lib.EV_ERROR


#: Watch callback return value: "I did not drain, call me again" (``HEISEN_IO_AGAIN``).
AGAIN = _lib.IO_AGAIN
#: Watch callback return value: "I drained (or want nothing more)" (``HEISEN_IO_DONE``).
#: Returning ``None`` means the same.
DONE = _lib.IO_DONE


class HasFileno(Protocol):
    """Anything with a ``fileno()`` method (sockets, files, pipes)."""

    def fileno(self) -> int: ...


FileLike = Union[int, HasFileno]
WatchCallback = Callable[["Watch", Events], Any]


@dataclass(frozen=True)
class Counters:
    """The reactor's counters (``HEISEN_COUNTER_*``), all since the reactor was created."""

    #: epoll events received
    events: int
    #: callbacks invoked for fd events
    dispatches: int
    #: events where readable data arrived together with a hang-up or error
    read_with_hup: int
    #: bytes drained by streams after a hang-up/error was seen
    bytes_after_hup: int
    #: reactor iterations
    iterations: int
    #: timer callbacks run
    timers_fired: int
    #: posted callbacks run
    posts_run: int
    #: hang-ups held back because a read callback left bytes in the socket
    hups_held: int = 0


def _ms(seconds: float) -> int:
    """Seconds (float) to whole milliseconds, rounding up so a timer never fires early."""
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"a delay must be >= 0 seconds, not {seconds!r}")
    return int(math.ceil(seconds * 1000.0))


class Reactor:
    """An epoll reactor (``heisen_reactor``).

    A reactor and everything on it are used by one thread at a time: the thread that runs it.
    Calling its methods from another thread while it runs raises :class:`heisen.ThreadError`
    (nothing is corrupted); the ways in from other threads are :meth:`post` and :meth:`stop`,
    which need ``threadsafe=True``.

    Args:
        threadsafe: create the reactor's waker so that :meth:`post` and :meth:`stop` work from any
            thread. Like libuv's ``uv_async_t``, a live waker keeps :meth:`run` going until
            :meth:`stop` is called; without it :meth:`run` returns when nothing is left to watch.

    Exceptions raised by callbacks stop the reactor and are re-raised by :meth:`run` /
    :meth:`run_once`. Use it as a context manager, or call :meth:`close`, to release it.
    """

    def __init__(self, *, threadsafe: bool = False) -> None:
        L = _lib.lib()
        out = _lib.ReactorP()
        check(L.heisen_reactor_new(byref(out)), "heisen_reactor_new")
        self._ptr: Any = out
        self._lock = threading.RLock()
        self._handles: set[_Handle] = set()
        self._exc: BaseException | None = None
        self._depth = 0
        self._waker: Waker | None = None
        self._trace: _Trace | None = None
        self._sigpipe: tuple[int, int] | None = None
        self._sigwatch: Watch | None = None
        if threadsafe:
            self._waker = Waker(self, None)

    # ---- plumbing --------------------------------------------------------------------------
    @contextmanager
    def _use(self) -> Iterator[Any]:
        if not self._lock.acquire(blocking=False):
            raise ThreadError(
                "this reactor is in use by another thread (it is running there); from other "
                "threads use post() or stop() on a Reactor(threadsafe=True)"
            )
        try:
            if self._ptr is None:
                raise ClosedError("the reactor is closed", _lib.STATUS_CLOSED)
            yield self._ptr
        finally:
            self._lock.release()

    def _interrupted(self, exc: BaseException) -> None:
        """An exception no callback could take (e.g. Ctrl-C at a trampoline's entry)."""
        self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """A callback raised: keep the first exception for run() and stop the reactor."""
        if self._exc is None:
            self._exc = exc
        elif exc is not self._exc:
            try:
                self._exc.add_note(f"heisen: another callback also raised {exc!r}")
            except Exception:
                pass
        if self._ptr is not None:
            _lib.lib().heisen_reactor_stop(self._ptr)

    # ---- life cycle ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._ptr is None

    def close(self) -> None:
        """Free the reactor and everything on it (watches, timers, wakers). Idempotent.

        May be called from inside one of its own callbacks: :meth:`run` then returns after the
        callback. Handles on the reactor become closed; using them raises
        :class:`heisen.ClosedError`.
        """
        if self._ptr is None:
            return
        with self._use() as ptr:
            for h in list(self._handles):
                h._free_c()
            self._handles.clear()
            self._sigwatch = None
            self._ptr = None
            _lib.lib().heisen_reactor_free(ptr)
            if self._sigpipe is not None:
                for fd in self._sigpipe:
                    os.close(fd)
                self._sigpipe = None

    def __enter__(self) -> "Reactor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_ptr", None) is not None and not self._handles:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"{len(self._handles)} handles"
        return f"<heisen.Reactor {state}>"

    # ---- running ---------------------------------------------------------------------------
    def _run(self, mode: int) -> None:
        with self._use() as ptr:
            self._depth += 1
            undo = self._watch_signals() if self._depth == 1 and mode != _lib.RUN_NOWAIT else None
            try:
                with cb.running(self):
                    status = _lib.lib().heisen_reactor_run(ptr, mode)  # GIL released meanwhile
            finally:
                self._depth -= 1
                if undo is not None:
                    undo()
            if self._depth == 0:
                exc, self._exc = self._exc, None
                if exc is not None:
                    raise exc
            if status == _lib.STATUS_REENTRANT:
                raise ReentrantError(
                    "Reactor.run() called from inside one of its own callbacks",
                    status,
                )
            check(status, "heisen_reactor_run")

    def run(self) -> None:
        """Run until :meth:`stop` or until nothing is left to watch.

        Re-raises the first exception raised by a callback (the reactor stops at that point and
        can be run again). The GIL is released while the reactor waits.
        """
        self._run(_lib.RUN_DEFAULT)

    def run_once(self, block: bool = True) -> None:
        """Run one iteration; with ``block`` wait until something happens (``HEISEN_RUN_ONCE``),
        otherwise only handle what is ready now (``HEISEN_RUN_NOWAIT``)."""
        self._run(_lib.RUN_ONCE if block else _lib.RUN_NOWAIT)

    def stop(self) -> None:
        """Make :meth:`run` return after the current iteration.

        From the thread that runs the reactor (or from a callback) this stops directly; from
        another thread it is posted, which needs ``threadsafe=True``.
        """
        if self._lock.acquire(blocking=False):
            try:
                if self._ptr is None:
                    raise ClosedError("the reactor is closed", _lib.STATUS_CLOSED)
                check(_lib.lib().heisen_reactor_stop(self._ptr), "heisen_reactor_stop")
                return
            finally:
                self._lock.release()
        if self._waker is None:
            raise ThreadError(
                "stop() from another thread needs a Reactor(threadsafe=True)")
        self._waker.post(self._stop_here)

    def _stop_here(self) -> None:
        if self._ptr is not None:
            _lib.lib().heisen_reactor_stop(self._ptr)

    # ---- Ctrl-C while the reactor waits ----------------------------------------------------
    def _watch_signals(self) -> Callable[[], None] | None:
        """While run() blocks in epoll on the main thread, Python's signal handlers cannot run
        (the wait is restarted after EINTR). Route signals through ``signal.set_wakeup_fd`` to
        a watched pipe, so that a callback runs, the handler runs with it and a
        ``KeyboardInterrupt`` stops the reactor. Only when the reactor has handles of its own
        (the pipe must not keep an otherwise idle reactor running) and when nobody else (e.g.
        asyncio) uses the wakeup fd."""
        if not self._live_handles() or threading.current_thread() is not threading.main_thread():
            return None
        if self._sigpipe is None:
            rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._sigpipe = (rfd, wfd)
        rfd, wfd = self._sigpipe
        try:
            previous = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        except ValueError:
            return None
        if previous != -1:
            signal.set_wakeup_fd(previous)
            return None
        try:
            self._sigwatch = Watch(self, rfd, self._drain_signals, _lib.EV_READ)
        except BaseException:
            signal.set_wakeup_fd(-1)
            raise

        def undo() -> None:
            signal.set_wakeup_fd(-1)
            w, self._sigwatch = self._sigwatch, None
            if w is not None and self._ptr is not None:
                w.close()

        return undo

    def _drain_signals(self, watch: "Watch", events: Events) -> None:
        # Python runs the pending signal handler around this call (a KeyboardInterrupt from it
        # reaches _fail, through Watch._fire or the unraisable hook)
        assert self._sigpipe is not None
        try:
            while os.read(self._sigpipe[0], 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _live_handles(self) -> set["_Handle"]:
        """Handles that keep run() going (a FastCGI client alone does not)."""
        return {h for h in self._handles if h._keeps_alive}

    def _handle_gone(self, handle: "_Handle") -> None:
        """A handle was closed or released: keep the signal pipe only while others remain."""
        self._handles.discard(handle)
        w = self._sigwatch
        if (w is not None and handle is not w and self._ptr is not None and not w.closed
                and self._live_handles() == {w} and self._lock.acquire(blocking=False)):
            try:  # only on the thread that runs the reactor (a waker may go on another)
                self._sigwatch = None
                w.close()
            finally:
                self._lock.release()

    # ---- handles ---------------------------------------------------------------------------
    def watch(
        self,
        fd: FileLike,
        callback: WatchCallback,
        read: bool = True,
        write: bool = False,
    ) -> "Watch":
        """Watch a file descriptor (an ``int`` or anything with ``fileno()``).

        ``callback(watch, events)`` is called with exactly one :class:`Events` bit per call.
        Hang-up and error are always watched (and delivered once, after the readable data).
        Return :data:`heisen.AGAIN` (or ``True``) if you did not drain the fd and want to be
        called again; ``None``/:data:`heisen.DONE` otherwise. The fd is not closed by heisen;
        close the watch before closing the fd.
        """
        return Watch(self, fd, callback, _interest(read, write))

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> "Timer":
        """Call ``callback(*args)`` once, ``delay`` seconds from now (rounded up to a ms)."""
        return Timer(self, callback, args, _ms(delay), 0)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> "Timer":
        """Call ``callback(*args)`` on the next iteration (a zero-delay timer)."""
        return Timer(self, callback, args, 0, 0)

    def call_every(
        self,
        interval: float,
        callback: Callable[..., Any],
        *args: Any,
        first: float | None = None,
    ) -> "Timer":
        """Call ``callback(*args)`` every ``interval`` seconds (first after ``first`` seconds,
        default ``interval``) until the returned timer is cancelled."""
        repeat = _ms(interval)
        if repeat == 0:
            raise ValueError("call_every() needs an interval of at least 1 ms")
        return Timer(self, callback, args, _ms(interval if first is None else first), repeat)

    def connect(self, address: str, **callbacks: Any) -> "Stream":
        """A :class:`heisen.Stream` connecting to ``address``; see :func:`heisen.connect`."""
        from ._stream import connect

        return connect(self, address, **callbacks)

    def open_stream(self, sock: Any, **callbacks: Any) -> "Stream":
        """A :class:`heisen.Stream` of a connected socket (taken over); see
        :func:`heisen.open_stream`."""
        from ._stream import open_stream

        return open_stream(self, sock, **callbacks)

    def listen(self, address: str, on_accept: Callable[..., Any], **options: Any) -> "Listener":
        """A :class:`heisen.Listener` on ``address``; see :func:`heisen.listen`."""
        from ._stream import listen

        return listen(self, address, on_accept, **options)

    def waker(self, callback: Callable[[], Any] | None = None) -> "Waker":
        """A new :class:`Waker`: ``wake()``/``post()`` from any thread. ``callback()`` runs on the
        reactor thread after wakes (several wakes may coalesce into one call). A live waker keeps
        :meth:`run` going."""
        return Waker(self, callback)

    def post(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the reactor thread, from any thread (one run per post, in
        order). Needs ``Reactor(threadsafe=True)``. Raises :class:`heisen.ClosedError` if the
        reactor is gone."""
        if self._waker is None:
            raise ThreadError(
                "post() needs a Reactor(threadsafe=True); on the reactor's own thread "
                "call_soon() does the same")
        self._waker.post(callback, *args)

    # ---- introspection ---------------------------------------------------------------------
    def counters(self) -> Counters:
        """The reactor's counters (see :class:`Counters`)."""
        with self._use() as ptr:
            L = _lib.lib()
            values = []
            v = c_uint64()
            for which in range(len(_lib.COUNTER_NAMES)):
                status = L.heisen_reactor_counter(ptr, which, byref(v))
                if status == _lib.STATUS_INVALID_ARGUMENT and which >= 7:
                    values.append(0)  # an older library without this counter
                    continue
                check(status, "heisen_reactor_counter")
                values.append(int(v.value))
            return Counters(*values)

    def now_ms(self) -> int:
        """The reactor's monotonic clock in milliseconds (cached per iteration)."""
        with self._use() as ptr:
            v = c_uint64()
            check(_lib.lib().heisen_reactor_now_ms(ptr, byref(v)), "heisen_reactor_now_ms")
            return int(v.value)

    def backend_fd(self) -> int:
        """The epoll fd, for embedding the reactor in another loop (poll it for readability)."""
        with self._use() as ptr:
            v = c_int()
            check(_lib.lib().heisen_reactor_backend_fd(ptr, byref(v)), "heisen_reactor_backend_fd")
            return int(v.value)

    def backend_timeout(self) -> float | None:
        """Seconds until the reactor needs to run again: ``None`` = no timer, ``0`` = now."""
        with self._use() as ptr:
            v = c_int32()
            check(_lib.lib().heisen_reactor_backend_timeout(ptr, byref(v)),
                  "heisen_reactor_backend_timeout")
            return None if v.value < 0 else v.value / 1000.0

    def set_trace(self, callback: Callable[[str], Any] | None) -> None:
        """Receive the reactor's trace lines (``callback(line)``), or stop with ``None``.
        (``HEISEN_TRACE=1`` in the environment traces every reactor to stderr instead.)"""
        with self._use() as ptr:
            L = _lib.lib()
            if callback is None:
                check(L.heisen_reactor_set_trace(ptr, _lib.TRACE_CB(), None, _lib.FREE_FN()),
                      "heisen_reactor_set_trace")
                return
            entry = _Trace(self, callback)
            key = cb.register(entry)
            status = L.heisen_reactor_set_trace(ptr, cb.trace_trampoline, key, cb.free_hook)
            if status != _lib.STATUS_OK:
                cb.release(key)
                check(status, "heisen_reactor_set_trace")


def _interest(read: bool, write: bool) -> int:
    return (_lib.EV_READ if read else 0) | (_lib.EV_WRITE if write else 0)


class _Trace:
    def __init__(self, reactor: Reactor, callback: Callable[[str], Any]) -> None:
        self._reactor = reactor
        self._callback = callback

    def _fire(self, line: str) -> None:
        try:
            self._callback(line)
        except BaseException as e:
            self._reactor._fail(e)


class _Handle:
    """Common state of watches, timers and wakers: the C pointer (``None`` once closed) and the
    registry key through which C finds this object."""

    _free_fn_name = ""
    _keeps_alive = True
    _callback: Any
    _args: tuple[Any, ...] = ()

    def __init__(self, reactor: Reactor) -> None:
        self._reactor = reactor
        self._ptr: Any = None
        self._key: int | None = None

    @property
    def closed(self) -> bool:
        """True once closed (by :meth:`close`, by its reactor's close, or after a one-shot
        timer fired)."""
        return self._ptr is None

    @property
    def reactor(self) -> Reactor:
        """The reactor this handle belongs to."""
        return self._reactor

    def _released(self) -> None:
        # C is done with our user_data: no further callbacks are possible. Drop the user's
        # callable (and its arguments) so that they can be collected even if this handle
        # object lives on.
        self._ptr = None
        self._callback = None
        self._args = ()
        self._reactor._handle_gone(self)

    def _free_c(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            getattr(_lib.lib(), self._free_fn_name)(ptr)

    def close(self) -> None:
        """Free the handle. Idempotent; allowed inside its own callback (no further callbacks
        come, even in the same round)."""
        if self._ptr is None:
            return
        r = self._reactor
        if r._ptr is None:  # the reactor's close() already freed everything
            self._ptr = None
            return
        with r._use():
            self._free_c()
            r._handle_gone(self)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> Any:
        if self._ptr is None:
            raise ClosedError(f"this {type(self).__name__.lower()} is closed", _lib.STATUS_CLOSED)
        return self._ptr


class Watch(_Handle):
    """A file descriptor watched by a reactor (``heisen_watch``). Made by :meth:`Reactor.watch`."""

    _free_fn_name = "heisen_watch_free"

    def __init__(self, reactor: Reactor, fd: FileLike, callback: WatchCallback,
                 interest: int) -> None:
        super().__init__(reactor)
        self._file = fd  # keep a file object alive while it is watched
        self._fd = fd if isinstance(fd, int) else int(fd.fileno())
        self._callback = callback
        self._interest = interest
        with reactor._use() as rptr:
            key = cb.register(self)
            out = _lib.WatchP()
            status = _lib.lib().heisen_watch_new(
                rptr, self._fd, interest, cb.io_trampoline, key, cb.free_hook, byref(out))
            if status != _lib.STATUS_OK:
                cb.release(key)  # the library released it too: this is only a safety net
                raise make_error(status, context=f"heisen_watch_new(fd={self._fd})")
            self._key = key
            self._ptr = out
            reactor._handles.add(self)

    @property
    def fd(self) -> int:
        """The watched file descriptor."""
        return self._fd

    @property
    def interest(self) -> Events:
        """The current interest (READ/WRITE bits; hang-up and error are always watched)."""
        return Events(self._interest)

    def set_interest(self, read: bool = True, write: bool = False) -> None:
        """Change what to watch for."""
        interest = _interest(read, write)
        with self._reactor._use():
            ptr = self._check_open()
            check(_lib.lib().heisen_watch_set_interest(ptr, interest), "heisen_watch_set_interest")
            self._interest = interest

    def _fire(self, fd: int, events: int) -> int:
        if self._ptr is None:
            return _lib.IO_DONE
        try:
            ret = self._callback(self, Events(events))
        except BaseException as e:
            self._reactor._fail(e)
            return _lib.IO_DONE
        if ret is True or (type(ret) is int and ret == _lib.IO_AGAIN):
            return _lib.IO_AGAIN
        return _lib.IO_DONE

    def __repr__(self) -> str:
        return f"<heisen.Watch fd={self._fd} {'closed' if self.closed else repr(self.interest)}>"


class Timer(_Handle):
    """A timer (``heisen_timer``). Made by :meth:`Reactor.call_later` / :meth:`~Reactor.call_every`.
    A one-shot timer closes itself after its callback ran."""

    _free_fn_name = "heisen_timer_free"

    def __init__(self, reactor: Reactor, callback: Callable[..., Any], args: tuple[Any, ...],
                 after_ms: int, repeat_ms: int) -> None:
        super().__init__(reactor)
        self._callback = callback
        self._args = args
        self._repeat_ms = repeat_ms
        L = _lib.lib()
        with reactor._use() as rptr:
            key = cb.register(self)
            out = _lib.TimerP()
            status = L.heisen_timer_new(rptr, cb.timer_trampoline, key, cb.free_hook, byref(out))
            if status != _lib.STATUS_OK:
                cb.release(key)
                raise make_error(status, context="heisen_timer_new")
            self._key = key
            self._ptr = out
            reactor._handles.add(self)
            status = L.heisen_timer_start(out, after_ms, repeat_ms)
            if status != _lib.STATUS_OK:
                self.close()
                raise make_error(status, context="heisen_timer_start")

    def cancel(self) -> None:
        """Stop and free the timer (same as :meth:`close`)."""
        self.close()

    @property
    def active(self) -> bool:
        """True until the timer is cancelled (or, for a one-shot timer, has fired)."""
        return self._ptr is not None

    def _fire(self) -> None:
        if self._ptr is None:
            return
        try:
            self._callback(*self._args)
        except BaseException as e:
            self._reactor._fail(e)
        if self._repeat_ms == 0 and self._ptr is not None:
            try:
                self.close()
            except Exception as e:  # pragma: no cover - defensive
                self._reactor._fail(e)

    def __repr__(self) -> str:
        return f"<heisen.Timer {'active' if self.active else 'closed'}>"


class _Post:
    __slots__ = ("_reactor", "_callback", "_args")

    def __init__(self, reactor: Reactor, callback: Callable[..., Any],
                 args: tuple[Any, ...]) -> None:
        self._reactor = reactor
        self._callback = callback
        self._args = args

    def _fire(self) -> None:
        try:
            self._callback(*self._args)
        except BaseException as e:
            self._reactor._fail(e)


class Waker(_Handle):
    """The thread-safe handle of a reactor (``heisen_waker``): :meth:`wake`, :meth:`post` and
    :meth:`close` may be called from any thread. Made by :meth:`Reactor.waker`."""

    _free_fn_name = "heisen_waker_free"

    def __init__(self, reactor: Reactor, callback: Callable[[], Any] | None) -> None:
        super().__init__(reactor)
        self._callback = callback
        self._wlock = threading.Lock()  # no free while another thread is inside wake/post
        with reactor._use() as rptr:
            key = cb.register(self)
            out = _lib.WakerP()
            status = _lib.lib().heisen_waker_new(
                rptr, cb.wake_trampoline, key, cb.free_hook, byref(out))
            if status != _lib.STATUS_OK:
                cb.release(key)
                raise make_error(status, context="heisen_waker_new")
            self._key = key
            self._ptr = out
            reactor._handles.add(self)

    def _fire(self) -> None:
        if self._callback is None or self._ptr is None:
            return
        try:
            self._callback()
        except BaseException as e:
            self._reactor._fail(e)

    def _free_c(self) -> None:
        with self._wlock:
            super()._free_c()

    def close(self) -> None:
        """Free the waker; any thread. Idempotent."""
        with self._wlock:
            ptr, self._ptr = self._ptr, None
            if ptr is None:
                return
            _lib.lib().heisen_waker_free(ptr)
        self._reactor._handles.discard(self)

    def wake(self) -> None:
        """Make the reactor thread call this waker's callback (wakes coalesce). Any thread."""
        with self._wlock:
            ptr = self._check_open()
            check(_lib.lib().heisen_waker_wake(ptr), "heisen_waker_wake")

    def post(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the reactor thread; one run per post, in order. Any thread.
        Raises :class:`heisen.ClosedError` when the reactor is gone."""
        entry = _Post(self._reactor, callback, args)
        with self._wlock:
            ptr = self._check_open()
            key = cb.register(entry)
            status = _lib.lib().heisen_waker_post(ptr, cb.post_trampoline, key, cb.free_hook)
        if status != _lib.STATUS_OK:
            cb.release(key)
            raise make_error(status, context="heisen_waker_post")

    def __repr__(self) -> str:
        return f"<heisen.Waker {'closed' if self.closed else 'open'}>"

