"""The FastCGI client from Python: :class:`FastCGIClient`, :class:`Response`, streaming.

Threads
-------
A :class:`FastCGIClient` may be used from any number of threads at once. Each thread that uses
it gets a reactor and a C FastCGI client of its own, created on first use (*per-thread pools*),
so threads never wait for each other, and the GIL is released while a request is in flight
(ctypes releases it around every C call). Consequences worth knowing:

* Connection limits (``max_connections``, ``max_idle``) apply per thread. A thread doing
  synchronous requests holds at most one connection (plus one per unfinished
  :meth:`FastCGIClient.stream`). With ``keep_alive`` each thread keeps its connection open, so
  give php-fpm at least as many workers (``pm.max_children``) as threads using the client, or
  use ``keep_alive=False``: a kept connection ties a php-fpm worker to it.
* :meth:`FastCGIClient.stats` adds up the per-thread pools (``peak_conns`` and
  ``queue_wait_us_max`` are the maximum over them, not a sum).
* Every per-thread reactor is only ever touched under its own lock, so :meth:`close` from any
  thread is safe: pools that are busy are freed by their thread when its request returns.
* After ``fork()`` the child gets fresh pools (the parent's are left alone, never freed).
"""

from __future__ import annotations

import collections
import ctypes
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from ctypes import byref, c_int32, c_size_t, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

from . import _callbacks as cb
from . import _lib
from ._errors import ClosedError, Error, InvalidArgument, check, make_error

StrOrBytes = Union[str, bytes]
ParamsArg = Union[Mapping[StrOrBytes, StrOrBytes], Iterable[tuple[StrOrBytes, StrOrBytes]], None]
HeadersArg = Union[Mapping[str, str], Iterable[tuple[str, str]], Iterable[str], None]


def _b(value: str | bytes | bytearray | memoryview | int) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, int):
        return str(value).encode()
    return str(value).encode("utf-8", "surrogateescape")


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")


class Headers(Mapping[str, str]):
    """Response headers: a case-insensitive mapping that keeps the list of pairs as received.

    ``headers["content-type"]`` gives the value (repeated headers joined with ``", "``);
    :meth:`get_all` gives each value of a repeated header (use it for ``Set-Cookie``);
    :attr:`pairs` is the list of ``(name, value)`` in the order the backend sent them.
    Names and values are decoded as Latin-1, which maps every byte one to one.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.pairs: list[tuple[str, str]] = list(pairs)
        self._index: dict[str, list[str]] = {}
        self._names: dict[str, str] = {}
        for name, value in self.pairs:
            key = name.lower()
            self._index.setdefault(key, []).append(value)
            self._names.setdefault(key, name)

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._index[name.lower()])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._index)

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (any case), in order; ``[]`` if absent."""
        return list(self._index.get(name.lower(), []))

    def __repr__(self) -> str:
        return f"Headers({self.pairs!r})"


@dataclass
class Response:
    """A FastCGI response.

    ``outcome`` is the C ``heisen_status`` of the exchange (0 = complete); :meth:`FastCGIClient.
    request` raises for any other outcome unless ``check=False``, with this object (holding
    whatever was received) as the exception's ``response``.
    """

    #: HTTP status from the CGI headers (``Status:``, 302 for a bare ``Location:``, else 200);
    #: ``None`` when no headers were received or in raw mode.
    status: int | None
    #: Headers as ``(name, value)`` pairs, in order, repeated headers kept.
    header_list: list[tuple[str, str]]
    #: The body (STDOUT after the headers; in raw mode all of STDOUT). For a truncated response,
    #: every byte that arrived.
    body: bytes
    #: What the backend wrote to FCGI_STDERR (never part of the body).
    stderr: bytes
    #: END_REQUEST's application status (``None`` when the outcome says END_REQUEST did not
    #: arrive: truncated, bad gateway, timeout, aborted).
    app_status: int | None
    #: ``heisen_status`` of the exchange: 0 complete, else TIMEOUT, BAD_GATEWAY, TRUNCATED, ...
    outcome: int
    #: Human-readable text for the outcome.
    reason: str
    headers: Headers = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.headers = Headers(self.header_list)

    @property
    def complete(self) -> bool:
        """True when END_REQUEST arrived and nothing went wrong (outcome 0)."""
        return self.outcome == _lib.STATUS_OK

    def raise_for_outcome(self) -> "Response":
        """Raise the exception of the outcome (:class:`heisen.Truncated`, ...) unless complete."""
        if self.outcome != _lib.STATUS_OK:
            raise make_error(self.outcome, self.reason or None, self)
        return self

    def text(self, encoding: str = "utf-8", errors: str = "replace") -> str:
        """The body decoded."""
        return self.body.decode(encoding, errors)


@dataclass(frozen=True)
class Stats:
    """Client statistics (``HEISEN_FCGI_STAT_*``), added up over the per-thread pools, including
    the pools of threads that have ended (but for the current-value fields)."""

    requests: int = 0
    complete: int = 0
    truncated: int = 0
    bad_gateway: int = 0
    timeout: int = 0
    overloaded: int = 0
    aborted: int = 0
    cant_mpx_conn: int = 0
    unknown_role: int = 0
    retries: int = 0
    conns_opened: int = 0
    conns_reused: int = 0
    peak_conns: int = 0
    queue_length: int = 0
    queue_wait_us_total: int = 0
    queue_wait_us_max: int = 0
    in_flight: int = 0
    conns_open: int = 0
    failovers: int = 0
    idle_closed_by_peer: int = 0
    #: how many per-thread pools are alive now
    pools: int = 0

    def as_dict(self) -> dict[str, int]:
        """The statistics as a plain dict."""
        return dict(self.__dict__)


_MAX_FIELDS = frozenset({"peak_conns", "queue_wait_us_max"})
# how stale stats() may show a pool that is busy in another thread (seconds)
_SNAPSHOT_INTERVAL = 0.05
# current values: a freed pool has none
_GAUGES = frozenset({"queue_length", "in_flight", "conns_open"})


def cgi_script_parts(script: str, document_root: str | None) -> tuple[str, str]:
    """Split a script into ``(document_root, script_name)`` the way the request builder does.

    ``script`` is a file-system path (``/srv/www/index.php``): without ``document_root`` its
    directory becomes the document root. With ``document_root``, a script under it gives the
    path below it, and a relative script is taken relative to it.
    """
    if document_root is None:
        if not script.startswith("/"):
            raise ValueError(
                f"script {script!r} is relative: give document_root, or an absolute path")
        root, _, name = script.rpartition("/")
        return (root or "/"), "/" + name
    root = document_root.rstrip("/") or "/"
    if root != "/" and script.startswith(root + "/"):
        return root, script[len(root):]
    if script.startswith("/") and root == "/":
        return root, script
    return root, "/" + script.lstrip("/")


class _Slot:
    """One thread's reactor + C client, and the lock that serialises all use of them.

    The waker (the C library's one thread-safe handle) lets :meth:`FastCGIClient.close` on
    another thread end the requests this pool is running right now: it posts a callback that
    frees the C client on the pool's own thread, inside its run, so they end ABORTED."""

    def __init__(self, reactor: Any, client: Any, waker: Any) -> None:
        self.reactor = reactor
        self.client = client
        self.waker = waker
        self.waker_lock = threading.Lock()  # no post while the waker is being freed
        self.lock = threading.RLock()
        self.pid = os.getpid()
        self.closed = False
        self.client_freed = False
        self.doomed = False  # close() asked while busy: the user frees it when done
        self.snapshot: dict[str, int] = {}
        self.snapshot_time = -1e9

    @property
    def dead(self) -> bool:
        """True once the pool cannot take requests (freed, or its C client freed by close)."""
        return self.closed or self.client_freed

    def free(self) -> None:
        """Free the C client, waker and reactor (caller holds ``lock``). Idempotent."""
        if self.closed:
            return
        self.closed = True
        with self.waker_lock:
            waker, self.waker = self.waker, None
        L = _lib.lib()
        if os.getpid() != self.pid:
            return  # a forked child: leave the parent's objects alone
        pump = _Pump()
        if not self.client_freed:
            self.snapshot = self.read_stats()
            self.client_freed = True
            with cb.running(pump):  # the aborted requests' on_end run in here
                L.heisen_fcgi_client_free(self.client)
        with cb.running(pump):
            L.heisen_reactor_run(self.reactor, _lib.RUN_NOWAIT)
        L.heisen_waker_free(waker)
        L.heisen_reactor_free(self.reactor)
        if pump.exc is not None:
            raise pump.exc

    def abort_from_elsewhere(self) -> None:
        """Any thread: make the pool's thread free the C client at its next reactor step."""
        with self.waker_lock:
            if self.waker is None:
                return
            key = cb.register(_AbortPool(self))
            status = _lib.lib().heisen_waker_post(self.waker, cb.post_trampoline, key,
                                                  cb.free_hook)
        if status != _lib.STATUS_OK:
            cb.release(key)

    def read_stats(self) -> dict[str, int]:
        """Read the C statistics (caller holds ``lock``)."""
        if self.client_freed:
            return dict(self.snapshot)
        L = _lib.lib()
        out: dict[str, int] = {}
        v = c_uint64()
        for which, name in enumerate(_lib.FCGI_STAT_NAMES):
            if L.heisen_fcgi_client_stat(self.client, which, byref(v)) == _lib.STATUS_OK:
                out[name] = int(v.value)
        return out


class _AbortPool:
    """Posted to a busy pool by close(): runs on the pool's thread, inside its run."""

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot

    def _fire(self) -> None:
        slot = self.slot
        if not slot.client_freed and not slot.closed:
            slot.snapshot = slot.read_stats()
            slot.client_freed = True
            _lib.lib().heisen_fcgi_client_free(slot.client)


class _Pump:
    """Runs a pool's reactor for one step; takes exceptions no callback could (Ctrl-C)."""

    def __init__(self) -> None:
        self.exc: BaseException | None = None

    def _interrupted(self, exc: BaseException) -> None:
        if self.exc is None:
            self.exc = exc


def _run_slot(client: "FastCGIClient", slot: _Slot, mode: int) -> int:
    """``heisen_reactor_run`` on a pool (caller holds ``slot.lock``). If an exception arrived
    that no callback could take (Ctrl-C at a callback's entry: that callback's data or end may
    be lost), the pool is given up (its requests end ABORTED) and the exception re-raised."""
    pump = _Pump()
    with cb.running(pump):
        status = int(_lib.lib().heisen_reactor_run(slot.reactor, mode))
    if pump.exc is not None:
        slot.free()
        client._forget(slot)
        raise pump.exc
    return status


class _ThreadSlotHolder:
    """Lives in the thread-local of a client: when the thread ends, its pool is freed."""

    def __init__(self, client: "FastCGIClient", slot: _Slot) -> None:
        self.slot = slot
        self._client = weakref.ref(client)

    def __del__(self) -> None:
        try:
            client = self._client()
            if client is not None:
                client._retire(self.slot)
        except Exception:
            pass


def _make_config(
    backends: str | Iterable[str],
    *,
    timeout: float | None = None,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    send_timeout: float | None = None,
    keep_alive: bool = True,
    max_connections: int | None = None,
    max_idle: int | None = None,
    idle_timeout: float | None = None,
    max_tries: int | None = None,
    queue_limit: int | None = None,
    max_header_bytes: int | None = None,
    balance: str | None = None,
    options: Mapping[int, int] | None = None,
) -> tuple[Any, list[str]]:
    """A C configuration (the caller frees it) and the list of backend addresses."""
    L = _lib.lib()
    if isinstance(backends, (str, bytes)):
        backends = [backends if isinstance(backends, str) else backends.decode()]
    names: list[str] = list(backends)
    if not names:
        raise InvalidArgument("a FastCGI client needs at least one backend",
                              _lib.STATUS_INVALID_ARGUMENT)
    cfg = _lib.FcgiConfigP()
    check(L.heisen_fcgi_config_new(byref(cfg)), "heisen_fcgi_config_new")
    try:
        for address in names:
            status = L.heisen_fcgi_config_add_backend(cfg, _b(address))
            if status != _lib.STATUS_OK:
                raise make_error(status, context=f"backend {address!r}")
        settings: list[tuple[int, int]] = []

        def ms(opt: int, seconds: float | None) -> None:
            if seconds is not None:
                if seconds < 0:
                    raise ValueError(f"timeouts must be >= 0 seconds, not {seconds!r}")
                settings.append((opt, max(1, int(round(seconds * 1000))) if seconds else 0))

        ms(_lib.FCGI_OPT_REQUEST_TIMEOUT_MS, timeout)
        ms(_lib.FCGI_OPT_CONNECT_TIMEOUT_MS, connect_timeout)
        ms(_lib.FCGI_OPT_READ_TIMEOUT_MS, read_timeout)
        ms(_lib.FCGI_OPT_SEND_TIMEOUT_MS, send_timeout)
        ms(_lib.FCGI_OPT_IDLE_TIMEOUT_MS, idle_timeout)
        settings.append((_lib.FCGI_OPT_KEEP_ALIVE, 1 if keep_alive else 0))
        for opt, value in ((_lib.FCGI_OPT_MAX_CONNS, max_connections),
                           (_lib.FCGI_OPT_MAX_IDLE, max_idle),
                           (_lib.FCGI_OPT_MAX_TRIES, max_tries),
                           (_lib.FCGI_OPT_QUEUE_LIMIT, queue_limit),
                           (_lib.FCGI_OPT_MAX_HEADER_BYTES, max_header_bytes)):
            if value is not None:
                settings.append((opt, int(value)))
        if balance is not None:
            modes = {"round-robin": 0, "least-connections": 1}
            if balance not in modes:
                raise ValueError(f"balance must be one of {sorted(modes)}, not {balance!r}")
            settings.append((_lib.FCGI_OPT_BALANCE, modes[balance]))
        for opt, value in (options or {}).items():
            settings.append((int(opt), int(value)))
        for opt, value in settings:
            status = L.heisen_fcgi_config_set(cfg, opt, value)
            if status != _lib.STATUS_OK:
                raise make_error(status, context=f"option {opt} = {value}")
    except BaseException:
        L.heisen_fcgi_config_free(cfg)
        raise
    return cfg, names


class FastCGIClient:
    """A pooled FastCGI client (php-fpm and any other FastCGI application).

    Args:
        backends: one address or a list: ``unix:/path``, ``/path``, ``tcp:host:port``,
            ``host:port``, ``tcp:[::1]:port``. Several backends are balanced, with failover.
        timeout: whole-request timeout in seconds (incl. queue wait); ``None`` = no limit.
        connect_timeout: seconds (library default 5).
        read_timeout: seconds of silence while waiting for response bytes (default 60).
        send_timeout: seconds of no progress while sending (default 30).
        keep_alive: keep connections open between requests (``FCGI_KEEP_CONN``).
        max_connections: per backend and per thread (default 16).
        max_idle: idle connections kept per backend and per thread.
        idle_timeout: seconds an idle connection is kept.
        max_tries: backends tried when connecting fails (default 3).
        queue_limit: waiting requests before :class:`heisen.Overloaded` (default 4096).
        max_header_bytes: limit of the CGI header block (default 65536).
        balance: ``"round-robin"`` (default) or ``"least-connections"``.
        options: extra ``{HEISEN_FCGI_OPT_*: int}`` settings, applied last.

    Thread-safe; see the module documentation for how threads share it. Use it as a context
    manager or call :meth:`close`.
    """

    def __init__(
        self,
        backends: str | Iterable[str],
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        send_timeout: float | None = None,
        keep_alive: bool = True,
        max_connections: int | None = None,
        max_idle: int | None = None,
        idle_timeout: float | None = None,
        max_tries: int | None = None,
        queue_limit: int | None = None,
        max_header_bytes: int | None = None,
        balance: str | None = None,
        options: Mapping[int, int] | None = None,
    ) -> None:
        self._closed = True
        self._config: Any = None
        self._lock = threading.RLock()
        self._local = threading.local()
        self._slots: list[_Slot] = []
        self._retired: dict[str, int] = {}
        self._pid = os.getpid()
        self._config, self.backends = _make_config(
            backends, timeout=timeout, connect_timeout=connect_timeout,
            read_timeout=read_timeout, send_timeout=send_timeout, keep_alive=keep_alive,
            max_connections=max_connections, max_idle=max_idle, idle_timeout=idle_timeout,
            max_tries=max_tries, queue_limit=queue_limit, max_header_bytes=max_header_bytes,
            balance=balance, options=options)
        self._closed = False

    # ---- per-thread pools ------------------------------------------------------------------
    def _slot(self) -> _Slot:
        if self._closed:
            raise ClosedError("the FastCGI client is closed", _lib.STATUS_CLOSED)
        pid = os.getpid()
        if pid != self._pid:
            with self._lock:  # a forked child: forget the parent's pools
                if pid != self._pid:
                    self._pid = pid
                    self._slots = []
                    self._retired = {}
                    self._local = threading.local()
        holder: _ThreadSlotHolder | None = getattr(self._local, "holder", None)
        if holder is not None and not holder.slot.dead:
            return holder.slot
        L = _lib.lib()
        with self._lock:
            if self._closed:
                raise ClosedError("the FastCGI client is closed", _lib.STATUS_CLOSED)
            reactor = _lib.ReactorP()
            check(L.heisen_reactor_new(byref(reactor)), "heisen_reactor_new")
            client = _lib.FcgiClientP()
            status = L.heisen_fcgi_client_new(reactor, self._config, byref(client))
            if status != _lib.STATUS_OK:
                L.heisen_reactor_free(reactor)
                raise make_error(status, context="heisen_fcgi_client_new")
            waker = _lib.WakerP()
            status = L.heisen_waker_new(reactor, _lib.WAKE_CB(), None, _lib.FREE_FN(),
                                        byref(waker))
            if status != _lib.STATUS_OK:
                L.heisen_fcgi_client_free(client)
                L.heisen_reactor_free(reactor)
                raise make_error(status, context="heisen_waker_new")
            slot = _Slot(reactor, client, waker)
            self._slots.append(slot)
        self._local.holder = _ThreadSlotHolder(self, slot)
        return slot

    def _retire(self, slot: _Slot) -> None:
        """A thread ended: free its pool (now, or when the request it runs returns); its
        counters go on counting in :meth:`stats`."""
        slot.doomed = True
        if slot.lock.acquire(blocking=False):
            try:
                slot.free()
            finally:
                slot.lock.release()
            self._forget(slot)

    def _forget(self, slot: _Slot) -> None:
        """Move a freed pool's final counters into the retired totals."""
        with self._lock:
            if slot not in self._slots:
                return
            self._slots.remove(slot)
            for name, value in slot.snapshot.items():
                if name in _GAUGES:
                    continue
                if name in _MAX_FIELDS:
                    self._retired[name] = max(self._retired.get(name, 0), value)
                else:
                    self._retired[name] = self._retired.get(name, 0) + value

    def _done_with(self, slot: _Slot) -> None:
        """After each use (caller holds ``slot.lock``): snapshot stats, honour a pending close."""
        if slot.closed:
            return
        if slot.doomed:
            slot.free()
            self._forget(slot)
            return
        now = time.monotonic()
        if now - slot.snapshot_time >= _SNAPSHOT_INTERVAL:  # 20 C calls: not every request
            slot.snapshot = slot.read_stats()
            slot.snapshot_time = now

    # ---- requests --------------------------------------------------------------------------
    @staticmethod
    def _build(
        params: ParamsArg,
        body: bytes | bytearray | memoryview | None,
        script: str | None,
        method: str | None,
        query: str | None,
        uri: str | None,
        headers: HeadersArg,
        document_root: str | None,
        path_info: str | None,
        timeout: float | None,
        raw: bool,
        role: int | None,
        data: bytes | None,
    ) -> Any:
        L = _lib.lib()
        req = _lib.FcgiRequestP()
        check(L.heisen_fcgi_request_new(byref(req)), "heisen_fcgi_request_new")
        try:
            body_b = _b(body) if body else b""
            if method is None:
                method = "POST" if body_b else "GET"
            if script is not None:
                root, script_name = cgi_script_parts(script, document_root)
                request_uri = uri
                if request_uri is None:
                    request_uri = script_name + (path_info or "")
                    if query:
                        request_uri += "?" + query
                check(L.heisen_fcgi_request_set_cgi(
                    req, _b(method), _b(request_uri), b"HTTP/1.1", _b(root), _b(script_name),
                    _b(path_info) if path_info else None), "heisen_fcgi_request_set_cgi")
                if query is not None and uri is not None:
                    _add_param(req, b"QUERY_STRING", _b(query))
            else:
                _add_param(req, b"REQUEST_METHOD", _b(method))
                if query is not None:
                    _add_param(req, b"QUERY_STRING", _b(query))
                if uri is not None:
                    _add_param(req, b"REQUEST_URI", _b(uri))
            for name, value in _header_pairs(headers):
                n, v = _b(name), _b(value)
                check(L.heisen_fcgi_request_add_http_header(req, n, len(n), v, len(v)),
                      f"header {name!r}")
            if params is not None:
                items = params.items() if isinstance(params, Mapping) else params
                for pname, pvalue in items:
                    _add_param(req, _b(pname), _b(pvalue))
            if body_b:
                check(L.heisen_fcgi_request_set_body(req, body_b, len(body_b)),
                      "heisen_fcgi_request_set_body")
            if data:
                d = _b(data)
                check(L.heisen_fcgi_request_set_data(req, d, len(d)),
                      "heisen_fcgi_request_set_data")
            if role is not None:
                check(L.heisen_fcgi_request_set_role(req, int(role)),
                      "heisen_fcgi_request_set_role")
            if raw:
                check(L.heisen_fcgi_request_set_raw(req, 1), "heisen_fcgi_request_set_raw")
            if timeout is not None:
                check(L.heisen_fcgi_request_set_timeout(req, max(1, int(round(timeout * 1000)))),
                      "heisen_fcgi_request_set_timeout")
        except BaseException:
            L.heisen_fcgi_request_free(req)
            raise
        return req

    def request(
        self,
        params: ParamsArg = None,
        body: bytes | bytearray | memoryview | None = b"",
        *,
        script: str | None = None,
        method: str | None = None,
        query: str | None = None,
        uri: str | None = None,
        headers: HeadersArg = None,
        document_root: str | None = None,
        path_info: str | None = None,
        timeout: float | None = None,
        raw: bool = False,
        role: int | None = None,
        data: bytes | None = None,
        check: bool = True,
    ) -> Response:
        """Send one request and wait for the whole response (the GIL is released meanwhile).

        With ``script`` (a file-system path such as ``/srv/www/index.php``) the standard CGI
        parameters are built the way nginx's ``fastcgi_params`` does (``SCRIPT_FILENAME``,
        ``SCRIPT_NAME``, ``REQUEST_URI``, ``QUERY_STRING``, ``DOCUMENT_ROOT``, ...);
        ``headers`` become ``HTTP_*`` (and ``CONTENT_TYPE``); ``params`` are added last and
        can override anything. ``method`` defaults to POST with a body, else GET; ``body``
        sets ``CONTENT_LENGTH``.

        Raises the outcome's exception (:class:`heisen.BadGateway`, :class:`heisen.GatewayTimeout`,
        :class:`heisen.Overloaded`, :class:`heisen.Truncated`, :class:`heisen.Aborted`) unless
        ``check`` is false; the exception's ``response`` holds what was received.
        """
        req = self._build(params, body, script, method, query, uri, headers, document_root,
                          path_info, timeout, raw, role, data)
        L = _lib.lib()
        try:
            slot = self._slot()
        except BaseException:
            L.heisen_fcgi_request_free(req)
            raise
        out = _lib.FcgiResponseP()
        with slot.lock:
            if slot.dead:
                L.heisen_fcgi_request_free(req)
                self._done_with(slot)  # frees a pool that close() left to this thread
                raise ClosedError("the FastCGI client is closed", _lib.STATUS_CLOSED)
            status = L.heisen_fcgi_client_fetch(slot.client, req, byref(out))  # takes req
            try:
                if status != _lib.STATUS_OK:
                    raise make_error(status, context="heisen_fcgi_client_fetch")
                try:
                    response = _read_response(out)
                finally:
                    L.heisen_fcgi_response_free(out)
            finally:
                self._done_with(slot)
        if check and response.outcome != _lib.STATUS_OK:
            raise make_error(response.outcome, response.reason or None, response)
        return response

    def get(self, script: str, query: str | None = None, **kwargs: Any) -> Response:
        """``request(script=script, method="GET", query=query, ...)``."""
        return self.request(script=script, method="GET", query=query, **kwargs)

    def post(self, script: str, body: bytes, content_type: str | None =
             "application/x-www-form-urlencoded", **kwargs: Any) -> Response:
        """``request(script=script, method="POST", body=body, ...)`` with a Content-Type."""
        headers = list(_header_pairs(kwargs.pop("headers", None)))
        if content_type and not any(n.lower() == "content-type" for n, _ in headers):
            headers.append(("Content-Type", content_type))
        return self.request(script=script, method="POST", body=body, headers=headers, **kwargs)

    def stream(
        self,
        params: ParamsArg = None,
        body: bytes | bytearray | memoryview | None = b"",
        *,
        script: str | None = None,
        method: str | None = None,
        query: str | None = None,
        uri: str | None = None,
        headers: HeadersArg = None,
        document_root: str | None = None,
        path_info: str | None = None,
        timeout: float | None = None,
        raw: bool = False,
        role: int | None = None,
        data: bytes | None = None,
        check: bool = True,
        buffer_bytes: int = 256 * 1024,
    ) -> "StreamingResponse":
        """Like :meth:`request`, but returns once the headers arrived; iterate over the result to
        get the body in chunks as they arrive.

        At most ``buffer_bytes`` of body are buffered ahead of the reader: beyond that heisen
        stops reading from the backend (back-pressure) until the reader catches up. An outcome
        other than complete raises from the iteration, after the chunks received were yielded
        (before the headers: from this call). Close it (or use ``with``) to abort early.
        """
        req = self._build(params, body, script, method, query, uri, headers, document_root,
                          path_info, timeout, raw, role, data)
        try:
            slot = self._slot()
        except BaseException:
            _lib.lib().heisen_fcgi_request_free(req)
            raise
        return StreamingResponse(self, slot, req, raw, check, buffer_bytes)

    def get_values(self, backend: int = 0,
                   names: Iterable[str] = ()) -> dict[str, str]:
        """Ask backend #``backend`` (config order) for its FCGI_GET_VALUES answer, on a connection
        of its own: ``{"FCGI_MAX_CONNS": "10", ...}`` (whatever it answered). ``names`` is
        ignored (the library asks for the standard three)."""
        slot = self._slot()
        entry = _ValuesEntry()
        L = _lib.lib()
        with slot.lock:
            if slot.dead:
                self._done_with(slot)
                raise ClosedError("the FastCGI client is closed", _lib.STATUS_CLOSED)
            key = cb.register(entry)
            status = L.heisen_fcgi_client_get_values(
                slot.client, backend, cb.fcgi_values_trampoline, key, cb.free_hook)
            if status != _lib.STATUS_OK:
                cb.release(key)
                raise make_error(status, context="heisen_fcgi_client_get_values")
            try:
                while not entry.done and not entry.released and not slot.closed:
                    check(_run_slot(self, slot, _lib.RUN_ONCE), "heisen_reactor_run")
            finally:
                self._done_with(slot)
        if not entry.done:
            raise make_error(_lib.STATUS_ABORTED, "GET_VALUES never answered")
        if entry.status != _lib.STATUS_OK:
            raise make_error(entry.status, context="GET_VALUES")
        values: dict[str, str] = {}
        for line in entry.values.splitlines():
            name, sep, value = line.partition("=")
            if sep:
                values[name] = value
        return values

    # ---- statistics and life cycle ---------------------------------------------------------
    def stats(self) -> Stats:
        """Statistics added up over every thread's pool: live for the pools idle right now, and
        as of the end of a recent request (at most ~50 ms old) for pools busy in other threads;
        the pools of ended threads count with their final values."""
        if self._closed:
            raise ClosedError("the FastCGI client is closed", _lib.STATUS_CLOSED)
        with self._lock:
            slots = list(self._slots)
            total: dict[str, int] = dict(self._retired)
        pools = 0
        for slot in slots:
            values: dict[str, int] | None = None
            if slot.lock.acquire(blocking=False):
                try:
                    if not slot.closed and slot.pid == os.getpid():
                        values = slot.read_stats()
                        slot.snapshot = values
                finally:
                    slot.lock.release()
            if values is None:
                values = slot.snapshot
            pools += 1
            for name, value in values.items():
                if name in _MAX_FIELDS:
                    total[name] = max(total.get(name, 0), value)
                else:
                    total[name] = total.get(name, 0) + value
        return Stats(pools=pools, **total)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def close(self) -> None:
        """Close every pool: requests still running end with :class:`heisen.Aborted`.
        Idempotent, any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            slots, self._slots = self._slots, []
            config, self._config = self._config, None
        for slot in slots:
            slot.doomed = True  # from here on, a thread finishing with it frees it
            if not slot.lock.acquire(blocking=False):
                slot.abort_from_elsewhere()  # busy: end its requests from its own thread
                if not slot.lock.acquire(blocking=False):
                    continue
            try:
                slot.free()
            finally:
                slot.lock.release()
        if config is not None and os.getpid() == self._pid:
            _lib.lib().heisen_fcgi_config_free(config)

    def __enter__(self) -> "FastCGIClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._slots)} pools"
        return f"<heisen.FastCGIClient {self.backends!r} {state}>"


def _add_param(req: Any, name: bytes, value: bytes) -> None:
    check(_lib.lib().heisen_fcgi_request_add_param(req, name, len(name), value, len(value)),
          f"parameter {name!r}")


def _header_pairs(headers: HeadersArg) -> Iterator[tuple[str, str]]:
    if headers is None:
        return
    if isinstance(headers, Mapping):
        yield from headers.items()
        return
    for item in headers:
        if isinstance(item, str):
            name, sep, value = item.partition(":")
            if not sep:
                raise ValueError(f"header {item!r} is not 'Name: value'")
            yield name.strip(), value.strip()
        else:
            name, value = item
            yield name, value


def _read_bytes(fn: Any, handle: Any) -> bytes:
    ptr = c_void_p()
    size = c_size_t()
    check(fn(handle, byref(ptr), byref(size)), fn.__name__)
    return _lib.string_at(ptr.value, size.value)


def _read_headers(count_fn: Any, header_fn: Any, handle: Any) -> list[tuple[str, str]]:
    count = c_size_t()
    check(count_fn(handle, byref(count)), count_fn.__name__)
    pairs = []
    name, value = c_void_p(), c_void_p()
    nlen, vlen = c_size_t(), c_size_t()
    for i in range(count.value):
        check(header_fn(handle, i, byref(name), byref(nlen), byref(value), byref(vlen)),
              header_fn.__name__)
        pairs.append((_latin1(_lib.string_at(name.value, nlen.value)),
                      _latin1(_lib.string_at(value.value, vlen.value))))
    return pairs


# outcomes that mean no END_REQUEST arrived (the C accessor then gives 0; we give None)
_NO_END_REQUEST = frozenset({_lib.STATUS_TRUNCATED, _lib.STATUS_BAD_GATEWAY,
                             _lib.STATUS_TIMEOUT, _lib.STATUS_ABORTED})


def _read_response(r: Any) -> Response:
    L = _lib.lib()
    outcome = c_int32()
    check(L.heisen_fcgi_response_outcome(r, byref(outcome)), "heisen_fcgi_response_outcome")
    status = c_int32()
    http_status: int | None = None
    if L.heisen_fcgi_response_status(r, byref(status)) == _lib.STATUS_OK and status.value > 0:
        http_status = int(status.value)
    app = c_uint32()
    app_status: int | None = None
    if (outcome.value not in _NO_END_REQUEST
            and L.heisen_fcgi_response_app_status(r, byref(app)) == _lib.STATUS_OK):
        app_status = int(app.value)
    headers = _read_headers(L.heisen_fcgi_response_header_count, L.heisen_fcgi_response_header, r)
    body = _read_bytes(L.heisen_fcgi_response_body, r)
    err = _read_bytes(L.heisen_fcgi_response_stderr, r)
    reason = _lib.decode_c(L.heisen_fcgi_response_reason(r))
    return Response(http_status, headers, body, err, app_status, int(outcome.value), reason)


class _ValuesEntry:
    def __init__(self) -> None:
        self.done = False
        self.released = False
        self.status = _lib.STATUS_ABORTED
        self.values = ""

    def _fire(self, status: int, values: str) -> None:
        self.done = True
        self.status = status
        self.values = values

    def _released(self) -> None:
        self.released = True


class _StreamState:
    """The part of a streaming response that C calls into (registered as its user_data).

    Kept apart from :class:`StreamingResponse` so that a response object the caller drops is
    garbage-collected (and its request aborted) even while the library still holds this."""

    def __init__(self, high: int, raw: bool) -> None:
        self.high = high
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.req: Any = None  # valid between send and on_end
        self.ended = False
        self.received = 0
        self.status: int | None = None
        self.header_list: list[tuple[str, str]] = []
        self.headers_seen = raw
        self.stderr: list[bytes] = []
        self.app_status: int | None = None
        self.protocol_status: int | None = None
        self.outcome: int | None = None
        self.reason = ""

    def _on_headers(self, req: int | None, http_status: int) -> int:
        L = _lib.lib()
        rp = ctypes.cast(req or 0, _lib.FcgiRequestP)
        self.status = int(http_status) if http_status > 0 else None
        try:
            self.header_list = _read_headers(L.heisen_fcgi_request_header_count,
                                             L.heisen_fcgi_request_header, rp)
        except Error:
            self.header_list = []
        self.headers_seen = True
        return 0

    def _on_body(self, req: int | None, data: bytes) -> int:
        if data:
            self.chunks.append(data)
            self.buffered += len(data)
            self.received += len(data)
        if self.buffered >= self.high:
            self.paused = True
            return 1
        return 0

    def _on_stderr(self, req: int | None, data: bytes) -> int:
        self.stderr.append(data)
        return 0

    def _on_end(self, req: int | None, outcome: int) -> None:
        L = _lib.lib()
        rp = ctypes.cast(req or 0, _lib.FcgiRequestP)
        app = c_uint32()
        if L.heisen_fcgi_request_app_status(rp, byref(app)) == _lib.STATUS_OK:
            self.app_status = int(app.value)
        proto = c_int32()
        if L.heisen_fcgi_request_protocol_status(rp, byref(proto)) == _lib.STATUS_OK:
            self.protocol_status = int(proto.value) if proto.value >= 0 else None
        if self.protocol_status is None:
            self.app_status = None  # no END_REQUEST arrived
        self.reason = _lib.decode_c(L.heisen_fcgi_request_reason(rp))
        self.outcome = int(outcome)
        self.ended = True
        self.req = None

    def _on_drain(self, req: int | None) -> None:
        pass

    def _released(self) -> None:
        if not self.ended:
            self.ended = True
            self.req = None
            if self.outcome is None:
                self.outcome = _lib.STATUS_ABORTED
                self.reason = self.reason or "the request was released without an end"


class StreamingResponse:
    """A response being received: ``status`` and ``headers`` are there from the start; iterate
    for body chunks (``bytes``). After the iteration: ``stderr``, ``app_status``, ``outcome``,
    ``reason``. Made by :meth:`FastCGIClient.stream`.

    Iterate it on the thread that made it (another thread works, but waits for that thread's
    requests). :meth:`close` (or leaving a ``with`` block, or dropping the object) aborts a
    response not read to the end.
    """

    def __init__(self, client: FastCGIClient, slot: _Slot, req: Any, raw: bool, check_: bool,
                 buffer_bytes: int) -> None:
        self._client = client
        self._slot = slot
        self._check = check_
        self._raised = False
        s = self._s = _StreamState(max(1, int(buffer_bytes)), raw)
        L = _lib.lib()
        key = cb.register(s)
        status = L.heisen_fcgi_request_set_callbacks(
            req, cb.fcgi_headers_trampoline, cb.fcgi_body_trampoline, cb.fcgi_stderr_trampoline,
            cb.fcgi_end_trampoline, _lib.FCGI_DRAIN_CB(), key, cb.free_hook)
        if status != _lib.STATUS_OK:
            cb.release(key)
            L.heisen_fcgi_request_free(req)
            raise make_error(status, context="heisen_fcgi_request_set_callbacks")
        with slot.lock:
            if slot.dead:
                # the library owns user_data now: freeing the request releases it
                L.heisen_fcgi_request_free(req)
                cb.release(key)
                client._done_with(slot)
                raise ClosedError("the FastCGI client is closed", _lib.STATUS_CLOSED)
            s.req = req
            status = L.heisen_fcgi_request_send(slot.client, req)  # takes req on every path
            if status != _lib.STATUS_OK:
                s.req = None
                s.ended = True
                cb.release(key)
                raise make_error(status, context="heisen_fcgi_request_send")
        # wait for the headers (or the end)
        try:
            while not s.headers_seen and not s.ended:
                self._pump()
        except BaseException:
            self.close()  # e.g. Ctrl-C: do not leave the request running unread
            raise
        if s.ended and s.outcome != _lib.STATUS_OK and check_ and not s.chunks:
            self._raised = True
            raise make_error(s.outcome or _lib.STATUS_ABORTED, s.reason or None,
                             self._as_response())

    # ---- what is known -----------------------------------------------------------------------
    @property
    def status(self) -> int | None:
        """HTTP status from the CGI headers (``None`` in raw mode or before any header)."""
        return self._s.status

    @property
    def header_list(self) -> list[tuple[str, str]]:
        """Headers as received, ``(name, value)`` pairs."""
        return self._s.header_list

    @property
    def headers(self) -> Headers:
        """Headers, case-insensitive."""
        return Headers(self._s.header_list)

    @property
    def stderr(self) -> bytes:
        """What the backend wrote to FCGI_STDERR so far."""
        return b"".join(self._s.stderr)

    @property
    def app_status(self) -> int | None:
        """END_REQUEST's application status, once ended (``None`` without END_REQUEST)."""
        return self._s.app_status

    @property
    def protocol_status(self) -> int | None:
        """END_REQUEST's protocol status once ended (0 complete, 1 cannot multiplex,
        2 overloaded, 3 unknown role), ``None`` when no END_REQUEST arrived."""
        return self._s.protocol_status

    @property
    def outcome(self) -> int | None:
        """``heisen_status`` of the exchange once ended (0 complete), ``None`` before."""
        return self._s.outcome

    @property
    def reason(self) -> str:
        """Text for the outcome, once ended."""
        return self._s.reason

    @property
    def ended(self) -> bool:
        """True once the exchange is over (``outcome`` is set)."""
        return self._s.ended

    @property
    def received(self) -> int:
        """Body bytes received so far."""
        return self._s.received

    # ---- driving -----------------------------------------------------------------------------
    def _pump(self) -> None:
        slot = self._slot
        s = self._s
        with slot.lock:
            if slot.closed:
                s._released()
                return
            status = _run_slot(self._client, slot, _lib.RUN_ONCE)
            if status != _lib.STATUS_OK:
                self._client._done_with(slot)
                raise make_error(status, context="heisen_reactor_run")
            if s.ended:
                self._client._done_with(slot)

    def _resume(self) -> None:
        slot = self._slot
        s = self._s
        with slot.lock:
            if s.paused and s.req is not None and not slot.closed:
                s.paused = False
                check(_lib.lib().heisen_fcgi_request_resume(s.req),
                      "heisen_fcgi_request_resume")

    def __iter__(self) -> "StreamingResponse":
        return self

    def __next__(self) -> bytes:
        s = self._s
        while True:
            if s.chunks:
                chunk = s.chunks.popleft()
                s.buffered -= len(chunk)
                if s.paused and s.buffered <= s.high // 2:
                    self._resume()
                return chunk
            if s.ended:
                if (self._check and not self._raised and s.outcome is not None
                        and s.outcome != _lib.STATUS_OK):
                    self._raised = True
                    raise make_error(s.outcome, s.reason or None, self._as_response())
                raise StopIteration
            if s.paused:
                self._resume()
            self._pump()

    def read(self) -> bytes:
        """The rest of the body, all at once."""
        return b"".join(self)

    def _as_response(self) -> Response:
        s = self._s
        return Response(s.status, list(s.header_list), b"".join(s.chunks), self.stderr,
                        s.app_status, s.outcome if s.outcome is not None else _lib.STATUS_ABORTED,
                        s.reason)

    def close(self) -> None:
        """Abort the exchange if it is still running (it ends with ABORTED), and drop the body
        not yet read. Idempotent."""
        s = self._s
        if not s.ended:
            slot = self._slot
            with slot.lock:
                if s.req is not None and not slot.closed:
                    _lib.lib().heisen_fcgi_request_abort(s.req)
            deadline = time.monotonic() + 10.0
            while not s.ended:
                if time.monotonic() > deadline:  # the end never came: give the pool up
                    with slot.lock:
                        slot.free()
                    self._client._forget(slot)
                    s._released()
                    break
                self._pump()
        s.chunks.clear()
        s.buffered = 0

    def __enter__(self) -> "StreamingResponse":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            s = self._s
            if not s.ended and s.req is not None:
                slot = self._slot
                if slot.lock.acquire(blocking=False):
                    try:
                        if s.req is not None and not slot.closed:
                            _lib.lib().heisen_fcgi_request_abort(s.req)
                            s.chunks.clear()
                    finally:
                        slot.lock.release()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"<heisen.StreamingResponse status={self.status} received={self.received}"
                f"{' ended' if self.ended else ''}>")


# ---------------------------------------------------------------------------------------------
# the asynchronous client, on a Reactor of the caller's
from ._reactor import Reactor, _Handle  # noqa: E402  (no import cycle: _reactor needs nothing here)

HeadersCallback = Callable[["PendingRequest", Optional[int], Headers], Any]
DataCallback = Callable[["PendingRequest", bytes], Any]
EndCallback = Callable[["PendingRequest", Response], Any]


class PendingRequest:
    """A request sent with :meth:`ReactorFastCGIClient.send`. Its callbacks run on the reactor's
    thread, inside :meth:`Reactor.run`."""

    def __init__(self, client: "ReactorFastCGIClient", on_headers: HeadersCallback | None,
                 on_body: DataCallback | None, on_stderr: DataCallback | None,
                 on_end: EndCallback | None) -> None:
        self._client = client
        self._reactor = client.reactor
        self._cb_headers = on_headers
        self._cb_body = on_body
        self._cb_stderr = on_stderr
        self._cb_end = on_end
        self._req: Any = None  # valid between send and on_end
        self._ended = False
        self._aborted = False
        self.status: int | None = None
        self.header_list: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._stderr: list[bytes] = []
        #: The final response, once ended (its body is empty when ``on_body`` took it).
        self.response: Response | None = None

    @property
    def ended(self) -> bool:
        """True once the exchange is over (``on_end`` was called)."""
        return self._ended

    def _call(self, fn: Callable[..., Any] | None, *args: Any) -> int:
        if fn is None:
            return 0
        try:
            return 1 if fn(self, *args) is True else 0
        except BaseException as e:
            self._reactor._fail(e)
            return 0

    # C callbacks
    def _on_headers(self, req: int | None, http_status: int) -> int:
        rp = ctypes.cast(req or 0, _lib.FcgiRequestP)
        L = _lib.lib()
        self.status = int(http_status) if http_status > 0 else None
        try:
            self.header_list = _read_headers(L.heisen_fcgi_request_header_count,
                                             L.heisen_fcgi_request_header, rp)
        except Error:
            self.header_list = []
        return self._call(self._cb_headers, self.status, Headers(self.header_list))

    def _on_body(self, req: int | None, data: bytes) -> int:
        if self._cb_body is None:
            self._body.append(data)
            return 0
        return self._call(self._cb_body, data)

    def _on_stderr(self, req: int | None, data: bytes) -> int:
        self._stderr.append(data)
        return self._call(self._cb_stderr, data)

    def _on_end(self, req: int | None, outcome: int) -> None:
        rp = ctypes.cast(req or 0, _lib.FcgiRequestP)
        L = _lib.lib()
        app_status: int | None = None
        proto = c_int32()
        if (L.heisen_fcgi_request_protocol_status(rp, byref(proto)) == _lib.STATUS_OK
                and proto.value >= 0):
            app = c_uint32()
            if L.heisen_fcgi_request_app_status(rp, byref(app)) == _lib.STATUS_OK:
                app_status = int(app.value)
        reason = _lib.decode_c(L.heisen_fcgi_request_reason(rp))
        self._req = None
        self._ended = True
        self.response = Response(self.status, list(self.header_list), b"".join(self._body),
                                 b"".join(self._stderr), app_status, int(outcome), reason)
        self._body = []
        self._call(self._cb_end, self.response)

    def _on_drain(self, req: int | None) -> None:
        pass

    def _released(self) -> None:
        if not self._ended:  # released without an end: only when the library goes away
            self._ended = True
            self._req = None
        self._cb_headers = self._cb_body = self._cb_stderr = self._cb_end = None

    def resume(self) -> None:
        """Resume delivery after ``on_body``/``on_headers`` returned ``True`` (pause)."""
        with self._reactor._use():
            if self._req is not None and not self._client.closed:
                check(_lib.lib().heisen_fcgi_request_resume(self._req),
                      "heisen_fcgi_request_resume")

    def abort(self) -> None:
        """Abort the exchange: ``on_end`` comes later with outcome ABORTED. No-op once ended
        or aborted."""
        with self._reactor._use():
            if self._req is not None and not self._client.closed and not self._aborted:
                self._aborted = True
                status = _lib.lib().heisen_fcgi_request_abort(self._req)
                if status != _lib.STATUS_CLOSED:  # CLOSED: it is ending already
                    check(status, "heisen_fcgi_request_abort")

    def __repr__(self) -> str:
        return f"<heisen.PendingRequest status={self.status}{' ended' if self._ended else ''}>"


class ReactorFastCGIClient(_Handle):
    """A FastCGI client on a :class:`heisen.Reactor` of yours: :meth:`send` returns at once and
    the callbacks run inside ``reactor.run()``, on the reactor's thread (the asynchronous C API).
    Same options as :class:`FastCGIClient`. Exceptions raised by the callbacks stop the reactor
    and are re-raised by ``run()``. Closing it (or the reactor) ends running requests with
    ABORTED (their ``on_end`` runs inside ``close()``)."""

    _free_fn_name = "heisen_fcgi_client_free"
    _keeps_alive = False  # an idle client does not keep run() going (requests do, in C)

    def __init__(self, reactor: Reactor, backends: str | Iterable[str], **options: Any) -> None:
        super().__init__(reactor)
        L = _lib.lib()
        cfg, self.backends = _make_config(backends, **options)
        try:
            with reactor._use() as rptr:
                out = _lib.FcgiClientP()
                check(L.heisen_fcgi_client_new(rptr, cfg, byref(out)), "heisen_fcgi_client_new")
                self._ptr = out
                reactor._handles.add(self)
        finally:
            L.heisen_fcgi_config_free(cfg)

    def send(
        self,
        params: ParamsArg = None,
        body: bytes | bytearray | memoryview | None = b"",
        *,
        on_headers: HeadersCallback | None = None,
        on_body: DataCallback | None = None,
        on_stderr: DataCallback | None = None,
        on_end: EndCallback | None = None,
        script: str | None = None,
        method: str | None = None,
        query: str | None = None,
        uri: str | None = None,
        headers: HeadersArg = None,
        document_root: str | None = None,
        path_info: str | None = None,
        timeout: float | None = None,
        raw: bool = False,
        role: int | None = None,
        data: bytes | None = None,
    ) -> PendingRequest:
        """Send a request (arguments as :meth:`FastCGIClient.request`); returns at once.

        Callbacks, all optional, each called with the :class:`PendingRequest` first:
        ``on_headers(req, status, headers)``, ``on_body(req, chunk)``,
        ``on_stderr(req, chunk)`` and, exactly once, ``on_end(req, response)`` with a
        :class:`Response` (``response.outcome``; its ``body`` holds the body when there is no
        ``on_body``). ``on_headers``/``on_body`` returning ``True`` pause delivery until
        :meth:`PendingRequest.resume`.
        """
        req = FastCGIClient._build(params, body, script, method, query, uri, headers,
                                   document_root, path_info, timeout, raw, role, data)
        L = _lib.lib()
        pending = PendingRequest(self, on_headers, on_body, on_stderr, on_end)
        try:
            with self._reactor._use():
                ptr = self._check_open()
                key = cb.register(pending)
                status = L.heisen_fcgi_request_set_callbacks(
                    req, cb.fcgi_headers_trampoline, cb.fcgi_body_trampoline,
                    cb.fcgi_stderr_trampoline, cb.fcgi_end_trampoline, _lib.FCGI_DRAIN_CB(),
                    key, cb.free_hook)
                if status != _lib.STATUS_OK:
                    cb.release(key)
                    raise make_error(status, context="heisen_fcgi_request_set_callbacks")
                pending._req = req
                status = L.heisen_fcgi_request_send(ptr, req)  # takes req on every path
                req = None
                if status != _lib.STATUS_OK:
                    pending._req = None
                    cb.release(key)
                    raise make_error(status, context="heisen_fcgi_request_send")
        finally:
            if req is not None:
                L.heisen_fcgi_request_free(req)
        return pending

    def stats(self) -> Stats:
        """The client's statistics (``pools`` is 1)."""
        with self._reactor._use():
            ptr = self._check_open()
            values: dict[str, int] = {}
            v = c_uint64()
            for which, name in enumerate(_lib.FCGI_STAT_NAMES):
                if _lib.lib().heisen_fcgi_client_stat(ptr, which, byref(v)) == _lib.STATUS_OK:
                    values[name] = int(v.value)
            return Stats(pools=1, **values)

    def __repr__(self) -> str:
        return f"<heisen.ReactorFastCGIClient {self.backends!r}{' closed' if self.closed else ''}>"
