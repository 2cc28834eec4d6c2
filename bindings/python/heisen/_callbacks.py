"""Callback plumbing between C and Python.

The C library never sees a Python object. Each registration puts a Python object (an *entry*)
in :data:`registry` under a fresh integer, and that integer is the C ``user_data``. The
trampolines below are module-level ``CFUNCTYPE`` objects, so they live as long as the module;
each one looks its entry up and forwards the call. The C ``user_data_free`` hook
(:data:`free_hook`) removes the entry, which is what lets the entry (and the user's callable)
be garbage-collected: exactly when the library says it will make no further call.

An exception must never propagate into C: the trampolines catch everything. Entries decide
what an exception means (a reactor's entries stop the reactor and keep the exception for
``Reactor.run()`` to re-raise).

Asynchronous exceptions (``KeyboardInterrupt`` from Ctrl-C, or any exception raised by a signal
handler) can also be raised at the very entry of a trampoline, before its ``try``: ctypes then
reports them through :func:`sys.unraisablehook` and returns a default value to C. The hook
installed here hands such exceptions (and any the trampolines could not give to an entry) to
whatever is running the reactor on this thread (:func:`running`): ``Reactor.run()`` stops and
re-raises it; a FastCGI pump gives up its pool (the interrupted callback may have carried data
or the end of a request) and re-raises it.
"""

from __future__ import annotations

import itertools
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Protocol

from . import _lib

#: user_data integer -> entry object. Entries stay here until C calls the free hook.
registry: dict[int, Any] = {}
_ids = itertools.count(1)  # 0 would arrive in Python as None


def register(entry: Any) -> int:
    """Keep ``entry`` alive until the library releases it; returns the ``user_data`` value."""
    key = next(_ids)  # atomic under the GIL
    registry[key] = entry
    return key


def release(key: int | None) -> None:
    """What ``user_data_free`` does (also usable from Python when C never got the key)."""
    if key is None:
        return
    entry = registry.pop(key, None)
    if entry is not None:
        hook = getattr(entry, "_released", None)
        if hook is not None:
            hook()


class Interruptible(Protocol):
    """What runs a reactor on this thread and wants exceptions that no callback could take."""

    def _interrupted(self, exc: BaseException) -> None: ...


_running = threading.local()


@contextmanager
def running(owner: Interruptible) -> Iterator[None]:
    """Mark ``owner`` as running a reactor on this thread (nestable)."""
    stack = getattr(_running, "stack", None)
    if stack is None:
        stack = _running.stack = []
    stack.append(owner)
    try:
        yield
    finally:
        stack.pop()


def _deliver(exc: BaseException | None) -> bool:
    stack = getattr(_running, "stack", None)
    if exc is None or not stack:
        return False
    stack[-1]._interrupted(exc)
    return True


def _unraisable(where: str) -> None:
    """Last resort for exceptions that no entry could take: give them to whatever runs the
    reactor on this thread, else report them like ctypes would."""
    try:
        exc = sys.exc_info()[1]
        if _deliver(exc):
            return
        sys.unraisablehook(
            type("UnraisableHookArgs", (), {
                "exc_type": type(exc), "exc_value": exc,
                "exc_traceback": exc.__traceback__ if exc else None,
                "err_msg": f"Exception ignored in heisen {where} callback", "object": None,
            })()
        )
    except BaseException:
        pass


def _free_hook(user_data: int | None) -> None:
    try:
        release(user_data)
    except BaseException:
        _unraisable("user_data_free")


free_hook = _lib.FREE_FN(_free_hook)


def _io_trampoline(watch: int | None, fd: int, events: int, user_data: int | None) -> int:
    try:
        entry = registry.get(user_data or 0)
        if entry is None:
            return _lib.IO_DONE
        return int(entry._fire(fd, events))
    except BaseException:
        _unraisable("watch")
        return _lib.IO_DONE


io_trampoline = _lib.IO_CB(_io_trampoline)


def _timer_trampoline(timer: int | None, user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._fire()
    except BaseException:
        _unraisable("timer")


timer_trampoline = _lib.TIMER_CB(_timer_trampoline)


def _wake_trampoline(waker: int | None, user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._fire()
    except BaseException:
        _unraisable("waker")


wake_trampoline = _lib.WAKE_CB(_wake_trampoline)


def _post_trampoline(user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._fire()
    except BaseException:
        _unraisable("post")


post_trampoline = _lib.POST_CB(_post_trampoline)


def _trace_trampoline(line: bytes | None, user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._fire(_lib.decode_c(line))
    except BaseException:
        _unraisable("trace")


trace_trampoline = _lib.TRACE_CB(_trace_trampoline)


def _fcgi_headers_trampoline(req: int | None, http_status: int, user_data: int | None) -> int:
    try:
        entry = registry.get(user_data or 0)
        if entry is None:
            return 0
        return int(entry._on_headers(req, http_status))
    except BaseException:
        _unraisable("FastCGI headers")
        return 0


fcgi_headers_trampoline = _lib.FCGI_HEADERS_CB(_fcgi_headers_trampoline)


def _fcgi_body_trampoline(req: int | None, data: int | None, size: int,
                         user_data: int | None) -> int:
    try:
        entry = registry.get(user_data or 0)
        if entry is None:
            return 0
        return int(entry._on_body(req, _lib.string_at(data, size)))
    except BaseException:
        _unraisable("FastCGI body")
        return 0


fcgi_body_trampoline = _lib.FCGI_DATA_CB(_fcgi_body_trampoline)


def _fcgi_stderr_trampoline(req: int | None, data: int | None, size: int,
                           user_data: int | None) -> int:
    try:
        entry = registry.get(user_data or 0)
        if entry is None:
            return 0
        return int(entry._on_stderr(req, _lib.string_at(data, size)))
    except BaseException:
        _unraisable("FastCGI stderr")
        return 0


fcgi_stderr_trampoline = _lib.FCGI_DATA_CB(_fcgi_stderr_trampoline)


def _fcgi_end_trampoline(req: int | None, outcome: int, user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._on_end(req, outcome)
    except BaseException:
        _unraisable("FastCGI end")


fcgi_end_trampoline = _lib.FCGI_END_CB(_fcgi_end_trampoline)


def _fcgi_drain_trampoline(req: int | None, user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._on_drain(req)
    except BaseException:
        _unraisable("FastCGI drain")


fcgi_drain_trampoline = _lib.FCGI_DRAIN_CB(_fcgi_drain_trampoline)


def _fcgi_values_trampoline(status: int, values: bytes | None, user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._fire(status, _lib.decode_c(values))
    except BaseException:
        _unraisable("FastCGI values")


fcgi_values_trampoline = _lib.FCGI_VALUES_CB(_fcgi_values_trampoline)


def live_count() -> int:
    """How many entries the library still holds (for tests and leak hunting)."""
    return len(registry)


def _stream_data_trampoline(stream: int | None, data: int | None, size: int,
                             user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._on_data(_lib.string_at(data, size))
    except BaseException:
        _unraisable("stream data")


stream_data_trampoline = _lib.STREAM_DATA_CB(_stream_data_trampoline)


def _stream_event_trampoline(stream: int | None, event: int, err: int,
                              user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._on_event(event, err)
    except BaseException:
        _unraisable("stream event")


stream_event_trampoline = _lib.STREAM_EVENT_CB(_stream_event_trampoline)


def _accept_trampoline(listener: int | None, fd: int, user_data: int | None) -> None:
    try:
        entry = registry.get(user_data or 0)
        if entry is not None:
            entry._on_accept(fd)
            return
    except BaseException:
        _unraisable("accept")
    import os

    try:
        os.close(fd)  # nobody took it
    except OSError:
        pass


accept_trampoline = _lib.ACCEPT_CB(_accept_trampoline)


_TRAMPOLINE_FUNCTIONS = frozenset({
    _stream_data_trampoline, _stream_event_trampoline, _accept_trampoline,
    _free_hook, _io_trampoline, _timer_trampoline, _wake_trampoline, _post_trampoline,
    _trace_trampoline, _fcgi_headers_trampoline, _fcgi_body_trampoline,
    _fcgi_stderr_trampoline, _fcgi_end_trampoline, _fcgi_drain_trampoline,
    _fcgi_values_trampoline,
})
_previous_hook = sys.unraisablehook


def _unraisable_hook(unraisable: Any) -> None:
    """ctypes reports an exception raised at the entry of a trampoline (before its ``try``)."""
    try:
        if unraisable.object in _TRAMPOLINE_FUNCTIONS and _deliver(unraisable.exc_value):
            return
    except BaseException:
        pass
    _previous_hook(unraisable)


sys.unraisablehook = _unraisable_hook
