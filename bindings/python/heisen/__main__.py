"""``python -m heisen``: a modern ``cgi-fcgi``, with the options and exit codes of ``heisen-fcgi``.

::

    python -m heisen [options] BACKEND SCRIPT [QUERY]
    python -m heisen -n REQUESTS -c CONCURRENCY [-k] [options] BACKEND SCRIPT [QUERY]
    python -m heisen --status [--status-path /status] BACKEND     # php-fpm health check
    python -m heisen --ping BACKEND                               # php-fpm ping.path
    python -m heisen --get-values BACKEND                         # FCGI_GET_VALUES

Exit status: 0 complete response; 1 usage error; 2 bad gateway (incl. cannot connect,
CANT_MPX_CONN, UNKNOWN_ROLE); 3 truncated; 4 overloaded; 5 aborted or other error;
124 timeout. With ``--status``: 0 healthy, 2 unreachable or bad answer, 124 timeout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, NoReturn, Sequence

from . import _lib
from ._errors import (
    Aborted,
    BadGateway,
    Error,
    GatewayTimeout,
    IOFailure,
    LibraryError,
    Overloaded,
    Truncated,
)

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_BAD_GATEWAY = 2
EXIT_TRUNCATED = 3
EXIT_OVERLOADED = 4
EXIT_OTHER = 5
EXIT_TIMEOUT = 124

PROG = "heisen"


def exit_code_for(error: BaseException) -> int:
    """The documented exit status for an exception (see the module docstring)."""
    if isinstance(error, GatewayTimeout):
        return EXIT_TIMEOUT
    if isinstance(error, (BadGateway, IOFailure)):  # incl. CantMultiplex, UnknownRole
        return EXIT_BAD_GATEWAY
    if isinstance(error, Truncated):
        return EXIT_TRUNCATED
    if isinstance(error, Overloaded):
        return EXIT_OVERLOADED
    if isinstance(error, Aborted):
        return EXIT_OTHER
    return EXIT_OTHER


def exit_code_for_outcome(outcome: int) -> int:
    """The exit status for a ``heisen_status`` outcome."""
    return {
        _lib.STATUS_OK: EXIT_OK,
        _lib.STATUS_TIMEOUT: EXIT_TIMEOUT,
        _lib.STATUS_BAD_GATEWAY: EXIT_BAD_GATEWAY,
        _lib.STATUS_CANT_MPX_CONN: EXIT_BAD_GATEWAY,
        _lib.STATUS_UNKNOWN_ROLE: EXIT_BAD_GATEWAY,
        _lib.STATUS_IO: EXIT_BAD_GATEWAY,
        _lib.STATUS_TRUNCATED: EXIT_TRUNCATED,
        _lib.STATUS_OVERLOADED: EXIT_OVERLOADED,
    }.get(outcome, EXIT_OTHER)


def outcome_name(outcome: int) -> str:
    """Short name of an outcome, as heisen-fcgi prints it."""
    return {
        _lib.STATUS_OK: "complete",
        _lib.STATUS_BAD_GATEWAY: "bad gateway",
        _lib.STATUS_CANT_MPX_CONN: "bad gateway (FCGI_CANT_MPX_CONN)",
        _lib.STATUS_UNKNOWN_ROLE: "bad gateway (FCGI_UNKNOWN_ROLE)",
        _lib.STATUS_TRUNCATED: "truncated",
        _lib.STATUS_OVERLOADED: "overloaded",
        _lib.STATUS_TIMEOUT: "timeout",
        _lib.STATUS_ABORTED: "aborted",
    }.get(outcome) or _lib.decode_c(_lib.lib().heisen_strerror(outcome))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # usage errors exit 1, not argparse's 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m heisen",
        description="Send one FastCGI request (php-fpm, ...) and print the response body.",
        epilog=("BACKEND: unix:/path, /path, tcp:host:port, host:port, tcp:[::1]:port; a,b,... "
                "balances. SCRIPT: the script's path on the backend (SCRIPT_FILENAME; relative: "
                "to the current directory); its directory is the DOCUMENT_ROOT unless --docroot, "
                "which makes SCRIPT relative to DIR. Exit status: 0 complete, 1 usage, "
                "2 bad gateway, 3 truncated, 4 overloaded, 5 aborted/other, 124 timeout; with "
                "-n, 0 when every request completed, else the code of the first failure."),
    )
    p.add_argument("backend", metavar="BACKEND", nargs="?")
    p.add_argument("script", metavar="SCRIPT", nargs="?")
    p.add_argument("query", metavar="QUERY", nargs="?", default=None)
    p.add_argument("-X", dest="method", metavar="METHOD",
                   help="request method (default GET, POST with -d)")
    p.add_argument("-d", dest="data", metavar="DATA|@FILE|-",
                   help="request body: literal, @FILE, or - for stdin (sets CONTENT_LENGTH, "
                        "and CONTENT_TYPE application/octet-stream unless -H gives one)")
    p.add_argument("-p", dest="params", metavar="NAME=VALUE", action="append", default=[],
                   help="extra FastCGI parameter (repeatable; overrides the CGI ones)")
    p.add_argument("-H", dest="headers", metavar="'Name: value'", action="append", default=[],
                   help="HTTP header, sent as HTTP_NAME (repeatable)")
    p.add_argument("-t", dest="timeout", metavar="SECONDS", type=float, default=30.0,
                   help="timeout for the whole exchange (default 30)")
    p.add_argument("-i", dest="include", action="store_true",
                   help='print "Status: NNN", the headers and a blank line before the body')
    p.add_argument("--raw", action="store_true",
                   help="print the backend's STDOUT unparsed (like cgi-fcgi)")
    p.add_argument("-k", dest="keep_alive", action="store_true",
                   help="keep connections open between requests (with -n)")
    p.add_argument("-n", dest="requests", metavar="REQUESTS", type=int, default=None,
                   help="load mode: send REQUESTS requests and print a summary")
    p.add_argument("-c", dest="concurrency", metavar="CONCURRENCY", type=int, default=1,
                   help="load mode: threads sending at once (default 1)")
    p.add_argument("--docroot", "--document-root", dest="docroot", metavar="DIR",
                   help="DOCUMENT_ROOT; SCRIPT is then relative to it (default: SCRIPT's "
                        "directory)")
    p.add_argument("-q", dest="quiet", action="store_true", help="do not print the body")
    p.add_argument("-m", dest="max_conns", metavar="CONNS", type=int, default=None,
                   help="connections: with -n -k, at most CONNS threads (each keeps one "
                        "connection); else connections per backend")
    p.add_argument("--no-probe", action="store_true",
                   help="with -n -k and no -m, run CONCURRENCY threads without asking the "
                        "backend's FCGI_MAX_CONNS (default: that value, else 4)")
    p.add_argument("--status", action="store_true",
                   help="health check: php-fpm's status page (pm.status_path)")
    p.add_argument("--status-path", metavar="PATH", default="/status",
                   help="php-fpm pm.status_path (default /status)")
    p.add_argument("--ping", action="store_true", help="php-fpm's ping page (ping.path /ping)")
    p.add_argument("--get-values", action="store_true",
                   help="ask FCGI_GET_VALUES and print NAME=VALUE lines")
    p.add_argument("--library", action="store_true",
                   help="print the version and path of libheisen and exit")
    return p


def _body(spec: str | None) -> bytes | None:
    if spec is None:
        return None
    if spec == "-":
        return sys.stdin.buffer.read()
    if spec.startswith("@"):
        with open(spec[1:], "rb") as f:
            return f.read()
    return spec.encode("utf-8", "surrogateescape")


def _say(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def _write_response(out: Any, response: Any, include: bool, raw: bool) -> None:
    if include and not raw:
        out.write(f"Status: {response.status if response.status else 0}\r\n".encode())
        for name, value in response.header_list:
            out.write(f"{name}: {value}\r\n".encode("latin-1", "replace"))
        out.write(b"\r\n")
    out.write(response.body)
    out.flush()


def _one(client: Any, args: argparse.Namespace, body: bytes | None,
         headers: list[tuple[str, str]], params: list[tuple[str, str]]) -> int:
    out = sys.stdout.buffer
    try:
        response = client.request(
            params, body or b"", script=args.script, method=args.method, query=args.query,
            headers=headers, document_root=args.docroot, raw=args.raw, check=False)
    except Error as e:
        _say(str(e))
        return exit_code_for(e)
    except ValueError as e:
        _parser().error(str(e))
    if not args.quiet:
        _write_response(out, response, args.include, args.raw)
    if response.stderr:
        sys.stderr.buffer.write(response.stderr)
        if not response.stderr.endswith(b"\n"):
            sys.stderr.buffer.write(b"\n")
        sys.stderr.flush()
    if response.outcome != _lib.STATUS_OK:
        _say(response.reason or _lib.decode_c(_lib.lib().heisen_strerror(response.outcome)))
    return exit_code_for_outcome(response.outcome)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, int(math.ceil(q * len(sorted_values))) - 1))
    return sorted_values[k]


def _load(client: Any, args: argparse.Namespace, body: bytes | None,
          headers: list[tuple[str, str]], params: list[tuple[str, str]]) -> int:
    total = args.requests
    conc = max(1, min(args.concurrency, total))
    if args.keep_alive:
        # every thread keeps its own connection, and php-fpm pins a worker to each kept
        # connection: never run more threads than the backend can serve at once
        limit = args.max_conns
        if limit is None and not args.no_probe:
            try:
                limit = int(client.get_values(0).get("FCGI_MAX_CONNS", "0")) or None
            except (Error, ValueError):
                limit = None
        if limit is None and not args.no_probe:
            limit = 4
        if limit is not None and conc > limit:
            _say(f"-k: {conc} threads would keep {conc} connections; using {limit} "
                 f"(the backend's FCGI_MAX_CONNS, else 4; set -m to match pm.max_children)")
            conc = limit
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    first_failure: list[int] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        mine: list[float] = []
        kinds: dict[str, int] = {}
        while True:
            with lock:
                if next(counter, None) is None:
                    break
            t0 = time.perf_counter()
            try:
                r = client.request(params, body or b"", script=args.script, method=args.method,
                                   query=args.query, headers=headers,
                                   document_root=args.docroot, raw=args.raw, check=False)
                kind = outcome_name(r.outcome)
                code = exit_code_for_outcome(r.outcome)
            except Error as e:
                kind = type(e).__name__
                code = exit_code_for(e)
            if code != EXIT_OK:
                with lock:
                    first_failure.append(code)
            mine.append(time.perf_counter() - t0)
            kinds[kind] = kinds.get(kind, 0) + 1
        with lock:
            latencies.extend(mine)
            for k, v in kinds.items():
                outcomes[k] = outcomes.get(k, 0) + v

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    stats = client.stats()
    ms = [1000 * _percentile(latencies, q) for q in (0.5, 0.9, 0.99, 1.0)]
    print(f"{total} requests, concurrency {conc}, {elapsed:.2f} s, "
          f"{total / elapsed if elapsed else 0:.0f} requests/s")
    print(f"latency ms: p50 {ms[0]:.2f}  p90 {ms[1]:.2f}  p99 {ms[2]:.2f}  max {ms[3]:.2f}")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print(f"connections: opened {stats.conns_opened}, reused {stats.conns_reused}")
    return first_failure[0] if first_failure else EXIT_OK


def _fpm_page(client: Any, path: str, query: str) -> Any:
    return client.request(
        [("SCRIPT_NAME", path), ("SCRIPT_FILENAME", path), ("REQUEST_URI", path),
         ("DOCUMENT_URI", path), ("GATEWAY_INTERFACE", "CGI/1.1"),
         ("SERVER_PROTOCOL", "HTTP/1.1")],
        method="GET", query=query)


def _status(client: Any, args: argparse.Namespace) -> int:
    try:
        r = _fpm_page(client, args.status_path, "json")
    except GatewayTimeout as e:
        _say(f"status: {e}")
        return EXIT_TIMEOUT
    except Error as e:
        _say(f"status: {e}")
        return EXIT_BAD_GATEWAY
    if args.include:
        _write_response(sys.stdout.buffer, r, True, False)
        sys.stdout.write("\n")
    if r.status != 200:
        _say(f"status: {args.status_path} answered HTTP {r.status}: is pm.status_path set?")
        return EXIT_BAD_GATEWAY
    try:
        info = json.loads(r.body.decode("utf-8", "replace"))
        if not isinstance(info, dict) or "pool" not in info:
            raise ValueError("no pool in the status")
    except ValueError as e:
        _say(f"status: {args.status_path} did not answer php-fpm's JSON status page ({e})")
        return EXIT_BAD_GATEWAY
    fields = [("pool", "pool"), ("process manager", "pm"), ("accepted conn", "accepted"),
              ("listen queue", "listen queue"), ("max listen queue", "max listen queue"),
              ("idle processes", "idle"), ("active processes", "active"),
              ("total processes", "total"), ("max children reached", "max children reached"),
              ("slow requests", "slow")]
    parts = [f"{short} {info[key]}" for key, short in fields if key in info]
    print("ok: " + ", ".join(parts))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if sys.platform != "win32":
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C while C waits: just stop
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        except (AttributeError, ValueError):
            pass
    modes = sum(bool(x) for x in (args.status, args.ping, args.get_values))
    if modes > 1:
        _parser().error("--status, --ping and --get-values exclude each other")
    if not args.library and args.backend is None:
        _parser().error("BACKEND is required")
    if modes == 0 and not args.library and args.script is None:
        _parser().error("SCRIPT is required (or --status / --ping / --get-values)")
    if args.timeout is not None and (args.timeout <= 0 or math.isnan(args.timeout)):
        _parser().error("-t wants a positive number of seconds")
    if args.requests is not None and args.requests < 1:
        _parser().error("-n wants a positive number")
    if args.concurrency < 1:
        _parser().error("-c wants a positive number")
    if modes == 0 and args.script is not None:
        # as heisen-fcgi: SCRIPT_FILENAME = DOCUMENT_ROOT + SCRIPT_NAME
        if args.docroot is not None:
            args.docroot = args.docroot.rstrip("/") or "/"
            name = args.script if args.script.startswith("/") else "/" + args.script
            args.script = (args.docroot if args.docroot != "/" else "") + name
        elif not args.script.startswith("/"):
            args.script = os.path.join(os.getcwd(), args.script)
    if args.max_conns is not None and args.max_conns < 1:
        _parser().error("-m wants a positive number")
    params: list[tuple[str, str]] = []
    for item in args.params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            _parser().error(f"-p wants NAME=VALUE, not {item!r}")
        params.append((name, value))
    headers: list[tuple[str, str]] = []
    for item in args.headers:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            _parser().error(f"-H wants 'Name: value', not {item!r}")
        headers.append((name.strip(), value.strip()))
    try:
        body = _body(args.data)
    except OSError as e:
        _parser().error(f"-d: {e}")
    if body is not None and not any(n.lower() == "content-type" for n, _ in headers):
        headers.append(("Content-Type", "application/octet-stream"))

    from ._fcgi import FastCGIClient

    try:
        if args.library:
            from . import library_path, version

            print(f"libheisen {version()} (ABI {_lib.ABI_VERSION}) from {library_path()}")
            return EXIT_OK
        client = FastCGIClient([b for b in str(args.backend).split(",") if b],
                               timeout=args.timeout, max_connections=args.max_conns,
                               keep_alive=bool(args.keep_alive))
    except LibraryError as e:
        _say(str(e))
        return EXIT_OTHER
    except Error as e:
        _parser().error(f"BACKEND {args.backend!r}: {e}")
    try:
        with client:
            if args.status:
                return _status(client, args)
            if args.ping:
                try:
                    r = _fpm_page(client, "/ping", "")
                except Error as e:
                    _say(f"ping: {e}")
                    return exit_code_for(e)
                _write_response(sys.stdout.buffer, r, args.include, False)
                if not r.body.endswith(b"\n"):
                    sys.stdout.write("\n")
                return EXIT_OK if r.status == 200 else EXIT_BAD_GATEWAY
            if args.get_values:
                try:
                    values = client.get_values(0)
                except Error as e:
                    _say(f"get-values: {e}")
                    return exit_code_for(e)
                for name, value in values.items():
                    print(f"{name}={value}")
                return EXIT_OK
            if args.requests is not None:
                return _load(client, args, body, headers, params)
            return _one(client, args, body, headers, params)
    except BrokenPipeError:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_OTHER


if __name__ == "__main__":
    sys.exit(main())
