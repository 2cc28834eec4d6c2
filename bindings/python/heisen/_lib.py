"""Loading ``libheisen`` and the one table of C prototypes.

Nothing here is public API: the rest of the package calls :func:`lib` to get the loaded
library with ``argtypes``/``restype`` declared for every function of ``include/heisen.h``.

Where the library is looked for, in this order (the first one that loads *and* reports the
ABI version this package was written for wins):

1. ``$HEISEN_LIBRARY`` when set and not empty; then it is the only candidate.
2. A copy shipped next to the package (``heisen/libheisen.so.1`` or ``heisen/libheisen.so``).
3. The repository's build output, ``../../target/release/libheisen.so`` relative to the package
   source directory (``bindings/python``), for running from a checkout.
4. The system loader: ``libheisen.so.1`` (``LD_LIBRARY_PATH``, ``ldconfig`` cache, ...).
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

#: The ABI this package was written for (``HEISEN_ABI_VERSION``, the SONAME major).
ABI_VERSION = 1

# ---------------------------------------------------------------------------------------------
# status values (append-only, fixed by docs/DESIGN.md)
STATUS_OK = 0
STATUS_NULL_ARGUMENT = 1
STATUS_INVALID_ARGUMENT = 2
STATUS_PANIC = 3
STATUS_REENTRANT = 4
STATUS_CLOSED = 5
STATUS_IO = 6
STATUS_TIMEOUT = 7
STATUS_BAD_GATEWAY = 8
STATUS_OVERLOADED = 9
STATUS_FORKED = 10
STATUS_NO_MEMORY = 11
STATUS_TRUNCATED = 12
STATUS_ABORTED = 13
STATUS_CANT_MPX_CONN = 14
STATUS_UNKNOWN_ROLE = 15
STATUS_BUSY = 16
STATUS_UNSUPPORTED = 17

RUN_DEFAULT = 0
RUN_ONCE = 1
RUN_NOWAIT = 2

COUNTER_EVENTS = 0
COUNTER_DISPATCHES = 1
COUNTER_READ_WITH_HUP = 2
COUNTER_BYTES_AFTER_HUP = 3
COUNTER_ITERATIONS = 4
COUNTER_TIMERS_FIRED = 5
COUNTER_POSTS_RUN = 6
COUNTER_HUPS_HELD = 7

#: ``HEISEN_COUNTER_*`` in numeric order; the names are the lower-cased suffixes.
COUNTER_NAMES = (
    "events",
    "dispatches",
    "read_with_hup",
    "bytes_after_hup",
    "iterations",
    "timers_fired",
    "posts_run",
    "hups_held",
)

EV_READ = 1
EV_WRITE = 2
EV_HUP = 4
EV_ERROR = 8
IO_DONE = 0
IO_AGAIN = 1

FCGI_OPT_CONNECT_TIMEOUT_MS = 0
FCGI_OPT_SEND_TIMEOUT_MS = 1
FCGI_OPT_READ_TIMEOUT_MS = 2
FCGI_OPT_REQUEST_TIMEOUT_MS = 3
FCGI_OPT_KEEP_ALIVE = 4
FCGI_OPT_MAX_CONNS = 5
FCGI_OPT_MAX_IDLE = 6
FCGI_OPT_IDLE_TIMEOUT_MS = 7
FCGI_OPT_MAX_REQUESTS_PER_CONN = 8
FCGI_OPT_BALANCE = 9
FCGI_OPT_MAX_TRIES = 10
FCGI_OPT_QUEUE_LIMIT = 11
FCGI_OPT_MAX_HEADER_BYTES = 12
FCGI_OPT_MULTIPLEX = 13
FCGI_OPT_PROBE_VALUES = 14
FCGI_OPT_STDOUT_HIGH_WATER = 15

#: ``HEISEN_FCGI_STAT_*`` in numeric order; the names are the lower-cased suffixes.
FCGI_STAT_NAMES = (
    "requests",
    "complete",
    "truncated",
    "bad_gateway",
    "timeout",
    "overloaded",
    "aborted",
    "cant_mpx_conn",
    "unknown_role",
    "retries",
    "conns_opened",
    "conns_reused",
    "peak_conns",
    "queue_length",
    "queue_wait_us_total",
    "queue_wait_us_max",
    "in_flight",
    "conns_open",
    "failovers",
    "idle_closed_by_peer",
)

STREAM_CONNECTED = 0
STREAM_END = 1
STREAM_ERROR = 2
STREAM_DRAIN = 3

LISTEN_REUSEPORT = 1

FCGI_ROLE_RESPONDER = 1
FCGI_ROLE_AUTHORIZER = 2
FCGI_ROLE_FILTER = 3


# ---------------------------------------------------------------------------------------------
# opaque handle types: distinct POINTER types so that passing a watch where a reactor is
# expected is a ctypes ArgumentError, not memory corruption.
class Reactor_(Structure):
    """``heisen_reactor`` (opaque)."""


class Watch_(Structure):
    """``heisen_watch`` (opaque)."""


class Timer_(Structure):
    """``heisen_timer`` (opaque)."""


class Waker_(Structure):
    """``heisen_waker`` (opaque)."""


class Stream_(Structure):
    """``heisen_stream`` (opaque)."""


class Listener_(Structure):
    """``heisen_listener`` (opaque)."""


class FcgiConfig_(Structure):
    """``heisen_fcgi_config`` (opaque)."""


class FcgiClient_(Structure):
    """``heisen_fcgi_client`` (opaque)."""


class FcgiRequest_(Structure):
    """``heisen_fcgi_request`` (opaque)."""


class FcgiResponse_(Structure):
    """``heisen_fcgi_response`` (opaque)."""


ReactorP = POINTER(Reactor_)
WatchP = POINTER(Watch_)
TimerP = POINTER(Timer_)
WakerP = POINTER(Waker_)
StreamP = POINTER(Stream_)
ListenerP = POINTER(Listener_)
FcgiConfigP = POINTER(FcgiConfig_)
FcgiClientP = POINTER(FcgiClient_)
FcgiRequestP = POINTER(FcgiRequest_)
FcgiResponseP = POINTER(FcgiResponse_)

status_t = c_int32
bytes_p = c_void_p  # const uint8_t *: passed as bytes / c_char_p buffer / None
bytes_pp = POINTER(c_void_p)  # const uint8_t **

# callback types. Handle arguments of callbacks are declared c_void_p (plain ints in Python):
# the bindings find their state through user_data, never through the handle.
FREE_FN = CFUNCTYPE(None, c_void_p)
TRACE_CB = CFUNCTYPE(None, c_char_p, c_void_p)
IO_CB = CFUNCTYPE(c_int32, c_void_p, c_int, c_uint32, c_void_p)
TIMER_CB = CFUNCTYPE(None, c_void_p, c_void_p)
WAKE_CB = CFUNCTYPE(None, c_void_p, c_void_p)
POST_CB = CFUNCTYPE(None, c_void_p)
STREAM_DATA_CB = CFUNCTYPE(None, c_void_p, c_void_p, c_size_t, c_void_p)
STREAM_EVENT_CB = CFUNCTYPE(None, c_void_p, c_int32, c_int32, c_void_p)
ACCEPT_CB = CFUNCTYPE(None, c_void_p, c_int, c_void_p)
FCGI_HEADERS_CB = CFUNCTYPE(c_int32, c_void_p, c_int32, c_void_p)
FCGI_DATA_CB = CFUNCTYPE(c_int32, c_void_p, c_void_p, c_size_t, c_void_p)
FCGI_END_CB = CFUNCTYPE(None, c_void_p, c_int32, c_void_p)
FCGI_DRAIN_CB = CFUNCTYPE(None, c_void_p, c_void_p)
FCGI_VALUES_CB = CFUNCTYPE(None, c_int32, c_char_p, c_void_p)

# ---------------------------------------------------------------------------------------------
# THE prototype table: every function of include/heisen.h, {name: (restype, [argtypes])}.
# tests/test_header_sync.py checks it against the header in both directions (and the arity).
PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    # library
    "heisen_strerror": (c_char_p, [c_int32]),
    "heisen_version": (c_uint32, []),
    "heisen_version_string": (c_char_p, []),
    "heisen_abi_version": (c_uint32, []),
    "heisen_last_errno": (c_int, []),
    # reactor
    "heisen_reactor_new": (status_t, [POINTER(ReactorP)]),
    "heisen_reactor_free": (None, [ReactorP]),
    "heisen_reactor_run": (status_t, [ReactorP, c_int32]),
    "heisen_reactor_stop": (status_t, [ReactorP]),
    "heisen_reactor_backend_fd": (status_t, [ReactorP, POINTER(c_int)]),
    "heisen_reactor_backend_timeout": (status_t, [ReactorP, POINTER(c_int32)]),
    "heisen_reactor_now_ms": (status_t, [ReactorP, POINTER(c_uint64)]),
    "heisen_reactor_counter": (status_t, [ReactorP, c_int32, POINTER(c_uint64)]),
    "heisen_reactor_set_trace": (status_t, [ReactorP, TRACE_CB, c_void_p, FREE_FN]),
    # fd watchers
    "heisen_watch_new": (
        status_t,
        [ReactorP, c_int, c_uint32, IO_CB, c_void_p, FREE_FN, POINTER(WatchP)],
    ),
    "heisen_watch_set_interest": (status_t, [WatchP, c_uint32]),
    "heisen_watch_free": (None, [WatchP]),
    # timers
    "heisen_timer_new": (status_t, [ReactorP, TIMER_CB, c_void_p, FREE_FN, POINTER(TimerP)]),
    "heisen_timer_start": (status_t, [TimerP, c_uint64, c_uint64]),
    "heisen_timer_stop": (status_t, [TimerP]),
    "heisen_timer_free": (None, [TimerP]),
    # cross-thread
    "heisen_waker_new": (status_t, [ReactorP, WAKE_CB, c_void_p, FREE_FN, POINTER(WakerP)]),
    "heisen_waker_wake": (status_t, [WakerP]),
    "heisen_waker_post": (status_t, [WakerP, POST_CB, c_void_p, FREE_FN]),
    "heisen_waker_free": (None, [WakerP]),
    # streams
    "heisen_stream_connect": (
        status_t,
        [ReactorP, c_char_p, c_uint32, STREAM_DATA_CB, STREAM_EVENT_CB, c_void_p, FREE_FN,
         POINTER(StreamP)],
    ),
    "heisen_stream_open_fd": (
        status_t,
        [ReactorP, c_int, STREAM_DATA_CB, STREAM_EVENT_CB, c_void_p, FREE_FN, POINTER(StreamP)],
    ),
    "heisen_stream_write": (status_t, [StreamP, bytes_p, c_size_t]),
    "heisen_stream_set_high_water": (status_t, [StreamP, c_size_t]),
    "heisen_stream_queued": (status_t, [StreamP, POINTER(c_size_t)]),
    "heisen_stream_pause_read": (status_t, [StreamP]),
    "heisen_stream_resume_read": (status_t, [StreamP]),
    "heisen_stream_shutdown": (status_t, [StreamP]),
    "heisen_stream_fd": (status_t, [StreamP, POINTER(c_int)]),
    "heisen_stream_free": (None, [StreamP]),
    # listeners
    "heisen_listener_new": (
        status_t,
        [ReactorP, c_char_p, c_int32, c_uint32, ACCEPT_CB, c_void_p, FREE_FN,
         POINTER(ListenerP)],
    ),
    "heisen_listener_open_fd": (
        status_t,
        [ReactorP, c_int, ACCEPT_CB, c_void_p, FREE_FN, POINTER(ListenerP)],
    ),
    "heisen_listener_port": (status_t, [ListenerP, POINTER(c_uint16)]),
    "heisen_listener_fd": (status_t, [ListenerP, POINTER(c_int)]),
    "heisen_listener_free": (None, [ListenerP]),
    # FastCGI configuration and client
    "heisen_fcgi_config_new": (status_t, [POINTER(FcgiConfigP)]),
    "heisen_fcgi_config_add_backend": (status_t, [FcgiConfigP, c_char_p]),
    "heisen_fcgi_config_set": (status_t, [FcgiConfigP, c_int32, c_int64]),
    "heisen_fcgi_config_free": (None, [FcgiConfigP]),
    "heisen_fcgi_client_new": (status_t, [ReactorP, FcgiConfigP, POINTER(FcgiClientP)]),
    "heisen_fcgi_client_free": (None, [FcgiClientP]),
    "heisen_fcgi_client_stat": (status_t, [FcgiClientP, c_int32, POINTER(c_uint64)]),
    # request builder
    "heisen_fcgi_request_new": (status_t, [POINTER(FcgiRequestP)]),
    "heisen_fcgi_request_add_param": (
        status_t, [FcgiRequestP, bytes_p, c_size_t, bytes_p, c_size_t]),
    "heisen_fcgi_request_add_params_block": (status_t, [FcgiRequestP, bytes_p, c_size_t]),
    "heisen_fcgi_request_set_cgi": (
        status_t, [FcgiRequestP, c_char_p, c_char_p, c_char_p, c_char_p, c_char_p, c_char_p]),
    "heisen_fcgi_request_set_peer": (
        status_t, [FcgiRequestP, c_char_p, c_uint16, c_char_p, c_uint16, c_char_p]),
    "heisen_fcgi_request_add_http_header": (
        status_t, [FcgiRequestP, bytes_p, c_size_t, bytes_p, c_size_t]),
    "heisen_fcgi_request_set_role": (status_t, [FcgiRequestP, c_int32]),
    "heisen_fcgi_request_set_body": (status_t, [FcgiRequestP, bytes_p, c_size_t]),
    "heisen_fcgi_request_set_data": (status_t, [FcgiRequestP, bytes_p, c_size_t]),
    "heisen_fcgi_request_set_streaming_body": (status_t, [FcgiRequestP, c_int32]),
    "heisen_fcgi_request_set_raw": (status_t, [FcgiRequestP, c_int32]),
    "heisen_fcgi_request_set_timeout": (status_t, [FcgiRequestP, c_uint32]),
    "heisen_fcgi_request_set_callbacks": (
        status_t,
        [FcgiRequestP, FCGI_HEADERS_CB, FCGI_DATA_CB, FCGI_DATA_CB, FCGI_END_CB, FCGI_DRAIN_CB,
         c_void_p, FREE_FN],
    ),
    "heisen_fcgi_request_header_count": (status_t, [FcgiRequestP, POINTER(c_size_t)]),
    "heisen_fcgi_request_header": (
        status_t,
        [FcgiRequestP, c_size_t, bytes_pp, POINTER(c_size_t), bytes_pp, POINTER(c_size_t)],
    ),
    "heisen_fcgi_request_app_status": (status_t, [FcgiRequestP, POINTER(c_uint32)]),
    "heisen_fcgi_request_protocol_status": (status_t, [FcgiRequestP, POINTER(c_int32)]),
    "heisen_fcgi_request_reason": (c_char_p, [FcgiRequestP]),
    "heisen_fcgi_request_send": (status_t, [FcgiClientP, FcgiRequestP]),
    "heisen_fcgi_request_write": (status_t, [FcgiRequestP, bytes_p, c_size_t]),
    "heisen_fcgi_request_finish": (status_t, [FcgiRequestP]),
    "heisen_fcgi_request_resume": (status_t, [FcgiRequestP]),
    "heisen_fcgi_request_abort": (status_t, [FcgiRequestP]),
    "heisen_fcgi_request_free": (None, [FcgiRequestP]),
    # synchronous convenience and its response
    "heisen_fcgi_client_fetch": (
        status_t, [FcgiClientP, FcgiRequestP, POINTER(FcgiResponseP)]),
    "heisen_fcgi_response_outcome": (status_t, [FcgiResponseP, POINTER(c_int32)]),
    "heisen_fcgi_response_status": (status_t, [FcgiResponseP, POINTER(c_int32)]),
    "heisen_fcgi_response_app_status": (status_t, [FcgiResponseP, POINTER(c_uint32)]),
    "heisen_fcgi_response_header_count": (status_t, [FcgiResponseP, POINTER(c_size_t)]),
    "heisen_fcgi_response_header": (
        status_t,
        [FcgiResponseP, c_size_t, bytes_pp, POINTER(c_size_t), bytes_pp, POINTER(c_size_t)],
    ),
    "heisen_fcgi_response_body": (status_t, [FcgiResponseP, bytes_pp, POINTER(c_size_t)]),
    "heisen_fcgi_response_stderr": (status_t, [FcgiResponseP, bytes_pp, POINTER(c_size_t)]),
    "heisen_fcgi_response_reason": (c_char_p, [FcgiResponseP]),
    "heisen_fcgi_response_free": (None, [FcgiResponseP]),
    # management
    "heisen_fcgi_client_get_values": (
        status_t, [FcgiClientP, c_size_t, FCGI_VALUES_CB, c_void_p, FREE_FN]),
}

# keep the header's byte-pointer element type importable for callers that want it
UINT8_P = POINTER(c_uint8)


def package_dir() -> Path:
    """The directory of the installed/imported ``heisen`` package."""
    return Path(__file__).resolve().parent


def candidates() -> list[tuple[str, str]]:
    """The places looked at, in order, as ``(description, path-or-soname)`` pairs."""
    env = os.environ.get("HEISEN_LIBRARY", "")
    if env:
        return [("$HEISEN_LIBRARY", env)]
    here = package_dir()
    repo_build = here.parent.parent.parent / "target" / "release" / "libheisen.so"
    return [
        ("copy next to the package", str(here / "libheisen.so.1")),
        ("copy next to the package", str(here / "libheisen.so")),
        ("repository build output", str(repo_build)),
        ("system loader", "libheisen.so.1"),
    ]


class _Missing:
    """Stands in for a function the loaded library does not export (an older or partial build)."""

    def __init__(self, name: str, path: str) -> None:
        self.__name__ = name
        self._path = path

    def __call__(self, *args: Any) -> Any:
        from ._errors import Unsupported

        raise Unsupported(
            f"{self.__name__} is not exported by {self._path} (a library older than these "
            f"bindings?)",
            STATUS_UNSUPPORTED,
        )


class Library(SimpleNamespace):
    """The loaded library: one attribute per C function, plus ``path``, ``cdll``, ``missing``."""

    path: str
    cdll: ctypes.CDLL
    missing: list[str]


_lock = threading.Lock()
_loaded: Library | None = None


def _try_load(path: str) -> tuple[Library | None, str]:
    is_file_path = os.sep in path
    if is_file_path and not os.path.exists(path):
        return None, "not found"
    try:
        cdll = ctypes.CDLL(path, use_errno=True)
    except OSError as e:
        return None, f"cannot load: {e}"
    try:
        abi_fn = cdll.heisen_abi_version
    except AttributeError:
        return None, "loaded, but has no heisen_abi_version(): not libheisen"
    abi_fn.restype = c_uint32
    abi_fn.argtypes = []
    abi = int(abi_fn())
    if abi != ABI_VERSION:
        return None, f"loaded, but its ABI version is {abi}; these bindings need {ABI_VERSION}"
    real = os.path.realpath(path) if is_file_path else (_dl_path() or path)
    lib = Library(path=real, cdll=cdll, missing=[])
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            lib.missing.append(name)
            setattr(lib, name, _Missing(name, real))
            continue
        fn.restype = restype
        fn.argtypes = argtypes
        setattr(lib, name, fn)
    return lib, "ok"


def _dl_path() -> str | None:
    """Find the file a soname-loaded library came from, via /proc/self/maps."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                if "libheisen" in line:
                    parts = line.split(None, 5)
                    if len(parts) == 6:
                        return parts[5].strip()
    except OSError:
        return None
    return None


def lib() -> Library:
    """Return the loaded library, loading it on first use (thread-safe)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        tried: list[str] = []
        for what, path in candidates():
            loaded, why = _try_load(path)
            if loaded is not None:
                _loaded = loaded
                return loaded
            tried.append(f"  {what}: {path}: {why}")
        from ._errors import LibraryError

        raise LibraryError(
            f"cannot find a usable libheisen (ABI version {ABI_VERSION}); looked at:\n"
            + "\n".join(tried)
            + "\nBuild it with `cargo build --release`, or point HEISEN_LIBRARY at libheisen.so."
        )


def is_loaded() -> bool:
    """True once :func:`lib` has succeeded."""
    return _loaded is not None


def string_at(ptr: int | None, size: int) -> bytes:
    """Copy ``size`` bytes from a C pointer (``b""`` for NULL or zero length)."""
    if not ptr or size == 0:
        return b""
    return ctypes.string_at(ptr, size)


def decode_c(text: bytes | None) -> str:
    """A C string from the library as ``str`` (never fails; NULL gives ``""``)."""
    if text is None:
        return ""
    return text.decode("utf-8", "replace")


CallableAny = Callable[..., Any]
