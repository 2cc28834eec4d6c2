"""Buffered streams and listeners on a heisen reactor (``heisen_stream``, ``heisen_listener``).

A :class:`Stream` reads until the socket is drained and delivers every byte through
``on_data`` *before* ``on_end`` / ``on_error``, even when the data and the hang-up arrive in
the same epoll event. Writes are queued; :meth:`Stream.write` says when the queue passed its
high-water mark (wait for ``on_drain``).
"""

from __future__ import annotations

import os
import socket
from ctypes import byref, c_int, c_size_t, c_uint16
from typing import Any, Callable, Union

from . import _callbacks as cb
from . import _lib
from ._errors import check, make_error
from ._reactor import Reactor, _Handle

DataCallback = Callable[["Stream", bytes], Any]
StreamCallback = Callable[["Stream"], Any]
ErrorCallback = Callable[["Stream", OSError], Any]
AcceptCallback = Callable[["Listener", int], Any]


class Stream(_Handle):
    """A byte stream on a reactor (TCP, unix socket or pipe). Made by :func:`connect` or
    :func:`open_stream`; its callbacks run inside ``reactor.run()``:

    * ``on_connect(stream)``: connected (only for :func:`connect`);
    * ``on_data(stream, data)``: bytes read, until the socket is drained;
    * ``on_end(stream)``: orderly end of the peer's data, after every byte was delivered; the
      stream can still be written (the peer only shut down its side);
    * ``on_error(stream, err)``: an :class:`OSError` (``ETIMEDOUT`` for a connect timeout,
      ``ECONNREFUSED``, ``ECONNRESET``...), after every byte was delivered;
    * ``on_drain(stream)``: the write queue emptied after :meth:`write` returned ``False``.

    ``on_end``/``on_error`` come once and last. Close the stream (it closes the fd) when done.
    """

    _free_fn_name = "heisen_stream_free"

    def __init__(self, reactor: Reactor, on_data: DataCallback | None,
                 on_connect: StreamCallback | None, on_end: StreamCallback | None,
                 on_error: ErrorCallback | None, on_drain: StreamCallback | None) -> None:
        super().__init__(reactor)
        self._cbs: dict[str, Any] = {"data": on_data, "connect": on_connect, "end": on_end,
                                     "error": on_error, "drain": on_drain}
        #: set once ``on_end`` or ``on_error`` came
        self.ended = False

    def _start(self, create: Callable[[int, Any], int]) -> None:
        with self._reactor._use():
            key = cb.register(self)
            out = _lib.StreamP()
            status = create(key, byref(out))
            if status != _lib.STATUS_OK:
                cb.release(key)
                raise make_error(status, context="heisen_stream")
            self._key = key
            self._ptr = out
            self._reactor._handles.add(self)

    def _call(self, name: str, *args: Any) -> None:
        fn = self._cbs.get(name)
        if fn is None:
            return
        try:
            fn(self, *args)
        except BaseException as e:
            self._reactor._fail(e)

    def _on_data(self, data: bytes) -> None:
        if self._ptr is not None:
            self._call("data", data)

    def _on_event(self, event: int, err: int) -> None:
        if self._ptr is None:
            return
        if event == _lib.STREAM_CONNECTED:
            self._call("connect")
        elif event == _lib.STREAM_END:
            self.ended = True
            self._call("end")
        elif event == _lib.STREAM_ERROR:
            self.ended = True
            self._call("error", OSError(err, os.strerror(err) if err else "stream error"))
        elif event == _lib.STREAM_DRAIN:
            self._call("drain")

    def _released(self) -> None:
        self._cbs = {}
        super()._released()

    def write(self, data: bytes | bytearray | memoryview) -> bool:
        """Queue ``data`` (always accepted while open). ``True``: below the high-water mark;
        ``False``: at or above it, stop writing until ``on_drain``. Raises
        :class:`heisen.ClosedError` after an error, a shutdown or close."""
        buf = bytes(data)
        with self._reactor._use():
            ptr = self._check_open()
            status = _lib.lib().heisen_stream_write(ptr, buf, len(buf))
            if status == _lib.STATUS_BUSY:
                return False
            check(status, "heisen_stream_write")
            return True

    def set_high_water(self, nbytes: int) -> None:
        """Set the write queue's high-water mark (default 64 KiB)."""
        with self._reactor._use():
            check(_lib.lib().heisen_stream_set_high_water(self._check_open(), nbytes),
                  "heisen_stream_set_high_water")

    @property
    def queued(self) -> int:
        """Bytes waiting in the write queue."""
        with self._reactor._use():
            v = c_size_t()
            check(_lib.lib().heisen_stream_queued(self._check_open(), byref(v)),
                  "heisen_stream_queued")
            return int(v.value)

    def pause_reading(self) -> None:
        """Stop reading (back-pressure); a hang-up meanwhile is held back until resumed."""
        with self._reactor._use():
            check(_lib.lib().heisen_stream_pause_read(self._check_open()),
                  "heisen_stream_pause_read")

    def resume_reading(self) -> None:
        """Resume reading after :meth:`pause_reading`."""
        with self._reactor._use():
            check(_lib.lib().heisen_stream_resume_read(self._check_open()),
                  "heisen_stream_resume_read")

    def shutdown(self) -> None:
        """Half-close: ``shutdown(SHUT_WR)`` once the queued data is written."""
        with self._reactor._use():
            check(_lib.lib().heisen_stream_shutdown(self._check_open()), "heisen_stream_shutdown")

    @property
    def fd(self) -> int:
        """The stream's descriptor (owned by the stream)."""
        with self._reactor._use():
            v = c_int()
            check(_lib.lib().heisen_stream_fd(self._check_open(), byref(v)), "heisen_stream_fd")
            return int(v.value)

    def __repr__(self) -> str:
        return f"<heisen.Stream {'closed' if self.closed else 'open'}>"


def connect(reactor: Reactor, address: str, *, timeout: float | None = None,
            on_data: DataCallback | None = None, on_connect: StreamCallback | None = None,
            on_end: StreamCallback | None = None, on_error: ErrorCallback | None = None,
            on_drain: StreamCallback | None = None) -> Stream:
    """Connect to ``address`` (``unix:/path``, ``tcp:host:port``, ``tcp:[::1]:port``, ``/path``,
    ``host:port``). Every outcome arrives as a callback (``on_connect`` or ``on_error``);
    writes before the connection is up are queued."""
    s = Stream(reactor, on_data, on_connect, on_end, on_error, on_drain)
    ms = 0 if timeout is None else max(1, int(round(timeout * 1000)))
    addr = address.encode()
    L = _lib.lib()
    s._start(lambda key, out: L.heisen_stream_connect(
        reactor._ptr, addr, ms, cb.stream_data_trampoline, cb.stream_event_trampoline, key,
        cb.free_hook, out))
    return s


def open_stream(reactor: Reactor, sock: Union[int, socket.socket], *,
                on_data: DataCallback | None = None, on_end: StreamCallback | None = None,
                on_error: ErrorCallback | None = None,
                on_drain: StreamCallback | None = None) -> Stream:
    """Make a :class:`Stream` of a connected socket or pipe. The stream takes the descriptor
    over (a :class:`socket.socket` is detached) and closes it when closed."""
    fd = sock.detach() if isinstance(sock, socket.socket) else int(sock)
    s = Stream(reactor, on_data, None, on_end, on_error, on_drain)
    L = _lib.lib()
    s._start(lambda key, out: L.heisen_stream_open_fd(
        reactor._ptr, fd, cb.stream_data_trampoline, cb.stream_event_trampoline, key,
        cb.free_hook, out))
    return s


class Listener(_Handle):
    """A listening socket on a reactor (``heisen_listener``). Made by :func:`listen`.
    ``on_accept(listener, fd)`` gets each new connection's descriptor (non-blocking,
    close-on-exec), which is then yours: :func:`open_stream` it, or close it."""

    _free_fn_name = "heisen_listener_free"

    def __init__(self, reactor: Reactor, on_accept: AcceptCallback) -> None:
        super().__init__(reactor)
        self._callback = on_accept

    def _on_accept(self, fd: int) -> None:
        if self._ptr is None or self._callback is None:
            os.close(fd)
            return
        try:
            self._callback(self, fd)
        except BaseException as e:
            self._reactor._fail(e)

    @property
    def port(self) -> int:
        """The bound TCP port (useful after listening on port 0)."""
        with self._reactor._use():
            v = c_uint16()
            check(_lib.lib().heisen_listener_port(self._check_open(), byref(v)),
                  "heisen_listener_port")
            return int(v.value)

    @property
    def fd(self) -> int:
        """The listening descriptor (owned by the listener)."""
        with self._reactor._use():
            v = c_int()
            check(_lib.lib().heisen_listener_fd(self._check_open(), byref(v)),
                  "heisen_listener_fd")
            return int(v.value)

    def __repr__(self) -> str:
        return f"<heisen.Listener {'closed' if self.closed else 'open'}>"


def listen(reactor: Reactor, address: str, on_accept: AcceptCallback, *, backlog: int = 0,
           reuseport: bool = False) -> Listener:
    """Listen on ``address`` (as :func:`connect`; ``tcp:127.0.0.1:0`` picks a free port, see
    :attr:`Listener.port`). A unix socket path must not exist yet (and is not removed on
    close)."""
    lst = Listener(reactor, on_accept)
    L = _lib.lib()
    addr = address.encode()
    with reactor._use() as rptr:
        key = cb.register(lst)
        out = _lib.ListenerP()
        status = L.heisen_listener_new(rptr, addr, backlog,
                                       _lib.LISTEN_REUSEPORT if reuseport else 0,
                                       cb.accept_trampoline, key, cb.free_hook, byref(out))
        if status != _lib.STATUS_OK:
            cb.release(key)
            raise make_error(status, context=f"heisen_listener_new({address!r})")
        lst._key = key
        lst._ptr = out
        reactor._handles.add(lst)
    return lst

