"""heisen: an epoll reactor whose dispatch never loses data, and a complete FastCGI client.

Python bindings over ``libheisen``'s C ABI, with nothing but the standard library's
:mod:`ctypes`. The library is found (on first use) through ``$HEISEN_LIBRARY``, a copy next to
this package, the repository's ``target/release/libheisen.so``, or the system loader
(``libheisen.so.1``); see :func:`library_path`.

FastCGI::

    import heisen
    with heisen.FastCGIClient("unix:/run/php/php8.2-fpm.sock", timeout=10) as php:
        r = php.request(script="/srv/www/index.php", query="x=1")
        print(r.status, r.headers["content-type"], r.body)

Reactor::

    r = heisen.Reactor()
    r.watch(sock, lambda watch, events: ...)
    r.call_later(0.5, r.stop)
    r.run()

Command line: ``python -m heisen BACKEND SCRIPT [QUERY]`` (see ``python -m heisen --help``).
"""

from __future__ import annotations

from . import _lib
from ._errors import (
    Aborted,
    BadGateway,
    CantMultiplex,
    ClosedError,
    Error,
    ForkedError,
    GatewayTimeout,
    InvalidArgument,
    IOFailure,
    LibraryError,
    NoMemory,
    Overloaded,
    PanicError,
    ReentrantError,
    ThreadError,
    Truncated,
    UnknownRole,
    Unsupported,
    exception_class,
)
from ._fcgi import (
    FastCGIClient,
    Headers,
    PendingRequest,
    ReactorFastCGIClient,
    Response,
    Stats,
    StreamingResponse,
    cgi_script_parts,
)
from ._reactor import AGAIN, DONE, Counters, Events, Reactor, Timer, Waker, Watch
from ._stream import Listener, Stream, connect, listen, open_stream

__version__ = "0.1.0"

#: The C ABI version these bindings were written for.
ABI_VERSION = _lib.ABI_VERSION

# heisen_status values, for comparing with ``Response.outcome`` / ``Error.status``
STATUS_OK = _lib.STATUS_OK
STATUS_NULL_ARGUMENT = _lib.STATUS_NULL_ARGUMENT
STATUS_INVALID_ARGUMENT = _lib.STATUS_INVALID_ARGUMENT
STATUS_PANIC = _lib.STATUS_PANIC
STATUS_REENTRANT = _lib.STATUS_REENTRANT
STATUS_CLOSED = _lib.STATUS_CLOSED
STATUS_IO = _lib.STATUS_IO
STATUS_TIMEOUT = _lib.STATUS_TIMEOUT
STATUS_BAD_GATEWAY = _lib.STATUS_BAD_GATEWAY
STATUS_OVERLOADED = _lib.STATUS_OVERLOADED
STATUS_FORKED = _lib.STATUS_FORKED
STATUS_NO_MEMORY = _lib.STATUS_NO_MEMORY
STATUS_TRUNCATED = _lib.STATUS_TRUNCATED
STATUS_ABORTED = _lib.STATUS_ABORTED
STATUS_CANT_MPX_CONN = _lib.STATUS_CANT_MPX_CONN
STATUS_UNKNOWN_ROLE = _lib.STATUS_UNKNOWN_ROLE
STATUS_BUSY = _lib.STATUS_BUSY
STATUS_UNSUPPORTED = _lib.STATUS_UNSUPPORTED

EV_READ = _lib.EV_READ
EV_WRITE = _lib.EV_WRITE
EV_HUP = _lib.EV_HUP
EV_ERROR = _lib.EV_ERROR

FCGI_ROLE_RESPONDER = _lib.FCGI_ROLE_RESPONDER
FCGI_ROLE_AUTHORIZER = _lib.FCGI_ROLE_AUTHORIZER
FCGI_ROLE_FILTER = _lib.FCGI_ROLE_FILTER

FCGI_OPT_CONNECT_TIMEOUT_MS = _lib.FCGI_OPT_CONNECT_TIMEOUT_MS
FCGI_OPT_SEND_TIMEOUT_MS = _lib.FCGI_OPT_SEND_TIMEOUT_MS
FCGI_OPT_READ_TIMEOUT_MS = _lib.FCGI_OPT_READ_TIMEOUT_MS
FCGI_OPT_REQUEST_TIMEOUT_MS = _lib.FCGI_OPT_REQUEST_TIMEOUT_MS
FCGI_OPT_KEEP_ALIVE = _lib.FCGI_OPT_KEEP_ALIVE
FCGI_OPT_MAX_CONNS = _lib.FCGI_OPT_MAX_CONNS
FCGI_OPT_MAX_IDLE = _lib.FCGI_OPT_MAX_IDLE
FCGI_OPT_IDLE_TIMEOUT_MS = _lib.FCGI_OPT_IDLE_TIMEOUT_MS
FCGI_OPT_MAX_REQUESTS_PER_CONN = _lib.FCGI_OPT_MAX_REQUESTS_PER_CONN
FCGI_OPT_BALANCE = _lib.FCGI_OPT_BALANCE
FCGI_OPT_MAX_TRIES = _lib.FCGI_OPT_MAX_TRIES
FCGI_OPT_QUEUE_LIMIT = _lib.FCGI_OPT_QUEUE_LIMIT
FCGI_OPT_MAX_HEADER_BYTES = _lib.FCGI_OPT_MAX_HEADER_BYTES
FCGI_OPT_MULTIPLEX = _lib.FCGI_OPT_MULTIPLEX
FCGI_OPT_PROBE_VALUES = _lib.FCGI_OPT_PROBE_VALUES
FCGI_OPT_STDOUT_HIGH_WATER = _lib.FCGI_OPT_STDOUT_HIGH_WATER


def _load() -> _lib.Library:
    return _lib.lib()


def version() -> str:
    """The loaded library's version string (``heisen_version_string()``, e.g. ``"0.1.0"``)."""
    return _lib.decode_c(_load().heisen_version_string())


def version_info() -> tuple[int, int, int]:
    """The loaded library's version as ``(major, minor, patch)`` (from ``heisen_version()``)."""
    v = int(_load().heisen_version())
    return (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF


def abi_version() -> int:
    """The loaded library's ABI version (checked to be :data:`ABI_VERSION` at load time)."""
    return int(_load().heisen_abi_version())


def library_path() -> str:
    """The file the library was loaded from (loading it if needed)."""
    return _load().path


def load() -> None:
    """Load the library now (it is otherwise loaded on first use); raises
    :class:`LibraryError` with the list of places looked at when there is none usable."""
    _load()


def strerror(status: int) -> str:
    """The library's text for a ``heisen_status`` value."""
    return _lib.decode_c(_load().heisen_strerror(status))


__all__ = [
    "ABI_VERSION",
    "AGAIN",
    "Aborted",
    "BadGateway",
    "CantMultiplex",
    "ClosedError",
    "Counters",
    "DONE",
    "Error",
    "Events",
    "FastCGIClient",
    "ForkedError",
    "GatewayTimeout",
    "Headers",
    "IOFailure",
    "InvalidArgument",
    "LibraryError",
    "Listener",
    "NoMemory",
    "Overloaded",
    "PanicError",
    "PendingRequest",
    "Reactor",
    "ReactorFastCGIClient",
    "ReentrantError",
    "Response",
    "Stats",
    "Stream",
    "StreamingResponse",
    "ThreadError",
    "Timer",
    "Truncated",
    "UnknownRole",
    "Unsupported",
    "Waker",
    "Watch",
    "abi_version",
    "cgi_script_parts",
    "connect",
    "exception_class",
    "library_path",
    "listen",
    "load",
    "open_stream",
    "strerror",
    "version",
    "version_info",
]
