"""Exception classes: one per ``heisen_status`` outcome, all under :class:`heisen.Error`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _lib

if TYPE_CHECKING:  # pragma: no cover
    from ._fcgi import Response


class Error(Exception):
    """Base class of every exception raised by heisen.

    Attributes:
        status: the C ``heisen_status`` value behind the error (``None`` for errors found on the
            Python side only, such as a library that cannot be loaded).
        message: human-readable text (the library's reason where there is one).
        response: for FastCGI outcomes, the :class:`heisen.Response` with whatever was received
            (status, headers, body bytes, stderr); ``None`` otherwise.
    """

    #: HTTP status a gateway would answer with for this outcome (``None`` if not applicable).
    http_status: int | None = None

    def __init__(
        self,
        message: str,
        status: int | None = None,
        response: "Response | None" = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.response = response

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.status, None))


class LibraryError(Error, OSError):
    """libheisen could not be found, loaded, or has the wrong ABI version."""


class ClosedError(Error, ValueError):
    """The object was closed (Python side), or the C handle is closed / its reactor is gone."""


class InvalidArgument(Error, ValueError):
    """The library refused an argument (``HEISEN_STATUS_INVALID_ARGUMENT`` / ``NULL_ARGUMENT``)."""


class ReentrantError(Error, RuntimeError):
    """A reactor was run from inside one of its own callbacks."""


class ThreadError(Error, RuntimeError):
    """A reactor (or something on it) was used from a thread while another thread uses it."""


class ForkedError(Error, RuntimeError):
    """The object was created before ``fork()``; create a new one in the child."""


class PanicError(Error, RuntimeError):
    """The library caught a panic (a bug in heisen: please report it)."""


class NoMemory(Error, MemoryError):
    """The library could not allocate memory."""


class Unsupported(Error, NotImplementedError):
    """The operation is not supported (or the loaded library lacks the function)."""


class IOFailure(Error, OSError):
    """A system call failed (``HEISEN_STATUS_IO``); ``errno`` is set from ``heisen_last_errno``."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        response: "Response | None" = None,
        errno: int | None = None,
    ) -> None:
        Error.__init__(self, message, status, response)
        self.errno = errno


class BadGateway(Error):
    """The backend refused, reset or closed before responding, or sent garbage (HTTP 502)."""

    http_status = 502


class CantMultiplex(BadGateway):
    """END_REQUEST said FCGI_CANT_MPX_CONN (mapped to 502 like a bad gateway)."""


class UnknownRole(BadGateway):
    """END_REQUEST said FCGI_UNKNOWN_ROLE (mapped to 502 like a bad gateway)."""


class GatewayTimeout(Error, TimeoutError):
    """A connect, send, read or whole-request timeout expired (HTTP 504)."""

    http_status = 504


class Overloaded(Error):
    """FCGI_OVERLOADED from the backend, or the client's queue is full (HTTP 503)."""

    http_status = 503


class Truncated(Error):
    """The response had started, then the backend failed before END_REQUEST.

    ``response`` keeps every byte received (``response.body``), and ``response.complete`` is
    False. A gateway must close the client connection rather than pretend it was complete.
    """


class Aborted(Error):
    """The request was aborted by the caller, or its client was closed while it was running."""


_BY_STATUS: dict[int, type[Error]] = {
    _lib.STATUS_NULL_ARGUMENT: InvalidArgument,
    _lib.STATUS_INVALID_ARGUMENT: InvalidArgument,
    _lib.STATUS_PANIC: PanicError,
    _lib.STATUS_REENTRANT: ReentrantError,
    _lib.STATUS_CLOSED: ClosedError,
    _lib.STATUS_IO: IOFailure,
    _lib.STATUS_TIMEOUT: GatewayTimeout,
    _lib.STATUS_BAD_GATEWAY: BadGateway,
    _lib.STATUS_OVERLOADED: Overloaded,
    _lib.STATUS_FORKED: ForkedError,
    _lib.STATUS_NO_MEMORY: NoMemory,
    _lib.STATUS_TRUNCATED: Truncated,
    _lib.STATUS_ABORTED: Aborted,
    _lib.STATUS_CANT_MPX_CONN: CantMultiplex,
    _lib.STATUS_UNKNOWN_ROLE: UnknownRole,
    _lib.STATUS_UNSUPPORTED: Unsupported,
}


def exception_class(status: int) -> type[Error]:
    """The exception class for a ``heisen_status`` value (:class:`Error` for unknown values)."""
    return _BY_STATUS.get(status, Error)


def strerror(status: int) -> str:
    """The library's text for a status value."""
    try:
        return _lib.decode_c(_lib.lib().heisen_strerror(status))
    except Exception:  # library unusable: still produce something readable
        return f"heisen status {status}"


def make_error(
    status: int,
    message: str | None = None,
    response: "Response | None" = None,
    context: str | None = None,
) -> Error:
    """Build (not raise) the exception for ``status``.

    ``context`` (for example the C function's name) is put in front of the message.
    """
    text = message or strerror(status)
    if context:
        text = f"{context}: {text}"
    cls = exception_class(status)
    if cls is IOFailure:
        err = _lib.lib().heisen_last_errno()
        import os

        if err:
            text = f"{text} ({os.strerror(err)})"
        return IOFailure(text, status, response, errno=err or None)
    return cls(text, status, response)


def check(status: int, context: str | None = None) -> int:
    """Raise the matching exception unless ``status`` is OK (or BUSY, which means accepted)."""
    if status == _lib.STATUS_OK or status == _lib.STATUS_BUSY:
        return status
    raise make_error(status, context=context)
