#!/usr/bin/env python3
"""A small, blocking, standard-library-only FastCGI client for smoke checks and tests.

It is the harness's *independent* reference client (it shares no code with heisen), used to
check php-fpm and the scripted peer (fcgi_peer.py) without heisen in the path, and by
scripts/php-fpm.sh to wait until php-fpm answers.

Command line (exit codes follow docs/DESIGN.md: 0 complete, 1 usage, 2 bad gateway incl.
cannot connect / CANT_MPX_CONN / UNKNOWN_ROLE, 3 truncated, 4 overloaded, 124 timeout):

    fcgi_client.py [options] ADDRESS SCRIPT [QUERY]
    fcgi_client.py --ping ADDRESS            # php-fpm ping.path (/ping): prints "pong"
    fcgi_client.py --status ADDRESS          # php-fpm pm.status_path (/status)
    fcgi_client.py --get-values ADDRESS      # FCGI_GET_VALUES, prints NAME=VALUE lines

    ADDRESS   unix:/path | tcp:HOST:PORT | /path | HOST:PORT
    SCRIPT    the script's absolute path (SCRIPT_FILENAME); SCRIPT_NAME is "/" + its basename
    -X METHOD            request method (default GET, POST when a body is given)
    -d @FILE | -d - | -d DATA   request body (CONTENT_LENGTH set; CONTENT_TYPE
                         application/octet-stream unless -H 'Content-Type: ...')
    -p NAME=VALUE        extra FastCGI parameter (repeatable)
    -H 'Name: value'     HTTP header, sent as HTTP_NAME (repeatable)
    -t SECONDS           timeout for the whole exchange (default 30)
    -i                   print "Status: NNN", the headers and a blank line before the body
    --raw                print the backend's STDOUT unparsed (like cgi-fcgi)
    -k                   set FCGI_KEEP_CONN (the connection is closed by us afterwards anyway)
    -n N                 send the request N times (one connection each), print only a summary

Library use (tests): ``sys.path.insert(0, "tests/harness"); import fcgi_client``::

    r = fcgi_client.request("unix:/tmp/x/php-fpm.sock",
                            fcgi_client.cgi_params("/tmp/x/www/echo.php", query="a=1",
                                                   method="POST", body=b"abc"),
                            body=b"abc", timeout=10)
    r.status, r.headers, r.body, r.stderr, r.app_status, r.protocol_status

    with fcgi_client.Connection("tcp:127.0.0.1:9000") as c:   # keep-alive: several requests
        r1 = c.request(params1); r2 = c.request(params2)

``request`` raises ``ConnectFailed``/``BadGateway`` (502-ish), ``Timeout``, ``Overloaded``,
``Truncated`` (``.response`` holds what arrived) -- all subclasses of ``FastCGIError``.
"""

import os
import socket
import struct
import sys
import time

VERSION = 1
BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, DATA, \
    GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = range(1, 12)
RESPONDER, AUTHORIZER, FILTER = 1, 2, 3
KEEP_CONN = 1
REQUEST_COMPLETE, CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE = 0, 1, 2, 3
PROTOCOL_STATUS_NAMES = {0: "REQUEST_COMPLETE", 1: "CANT_MPX_CONN", 2: "OVERLOADED",
                         3: "UNKNOWN_ROLE"}

EXIT_OK, EXIT_USAGE, EXIT_BAD_GATEWAY, EXIT_TRUNCATED, EXIT_OVERLOADED, EXIT_OTHER, \
    EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5, 124


class FastCGIError(Exception):
    exit_code = EXIT_OTHER

    def __init__(self, message, response=None):
        super().__init__(message)
        self.response = response


class ConnectFailed(FastCGIError):
    exit_code = EXIT_BAD_GATEWAY


class BadGateway(FastCGIError):
    exit_code = EXIT_BAD_GATEWAY


class Truncated(FastCGIError):
    exit_code = EXIT_TRUNCATED


class Overloaded(FastCGIError):
    exit_code = EXIT_OVERLOADED


class Timeout(FastCGIError):
    exit_code = EXIT_TIMEOUT


# ----------------------------------------------------------------------------------------
# encoding

def record(rtype, request_id, content=b"", pad=True):
    """One FastCGI record; padded to a multiple of 8 bytes when pad is true."""
    if len(content) > 65535:
        raise ValueError("record content longer than 65535")
    padding = (-len(content)) % 8 if pad else 0
    return struct.pack(">BBHHBx", VERSION, rtype, request_id, len(content), padding) + \
        content + b"\0" * padding


def stream_records(rtype, request_id, data, chunk=65528):
    """data split into records of the stream rtype, followed by the empty closing record."""
    out = []
    for i in range(0, len(data), chunk):
        out.append(record(rtype, request_id, data[i:i + chunk]))
    out.append(record(rtype, request_id, b""))
    return b"".join(out)


def _nv_len(n):
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def encode_pairs(pairs):
    """Name-value pairs (iterable of (name, value), str or bytes) to FastCGI encoding."""
    out = []
    for name, value in pairs:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        out.append(_nv_len(len(name)) + _nv_len(len(value)) + name + value)
    return b"".join(out)


def decode_pairs(data):
    """FastCGI name-value encoding to a list of (bytes, bytes)."""
    pairs, i = [], 0

    def length():
        nonlocal i
        if data[i] < 128:
            n = data[i]
            i += 1
        else:
            n = struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF
            i += 4
        return n
    while i < len(data):
        nl = length()
        vl = length()
        pairs.append((bytes(data[i:i + nl]), bytes(data[i + nl:i + nl + vl])))
        i += nl + vl
    return pairs


def params_records(request_id, params, limit=65528):
    """The PARAMS stream: whole name-value pairs packed into records of at most `limit`
    bytes, then the empty closing record. php-fpm parses every PARAMS record on its own and
    rejects (closes the connection on) a pair that crosses a record boundary, so a pair is
    only ever split when it is longer than one record can hold -- which php-fpm cannot take
    at all (name + value + length bytes > 65535)."""
    out, cur = [], b""
    for name, value in params:
        pair = encode_pairs([(name, value)])
        if cur and len(cur) + len(pair) > limit:
            out.append(record(PARAMS, request_id, cur))
            cur = b""
        cur += pair
        while len(cur) > limit:
            out.append(record(PARAMS, request_id, cur[:limit]))
            cur = cur[limit:]
    if cur:
        out.append(record(PARAMS, request_id, cur))
    out.append(record(PARAMS, request_id, b""))
    return b"".join(out)


def build_request(params, body=b"", request_id=1, keep_conn=False, role=RESPONDER, data=None):
    """The bytes of a whole request: BEGIN_REQUEST, PARAMS stream, STDIN stream (, DATA)."""
    if isinstance(params, dict):
        params = list(params.items())
    out = [record(BEGIN_REQUEST, request_id,
                  struct.pack(">HB5x", role, KEEP_CONN if keep_conn else 0))]
    out.append(params_records(request_id, params))
    out.append(stream_records(STDIN, request_id, body))
    if data is not None:
        out.append(stream_records(DATA, request_id, data))
    return b"".join(out)


def cgi_params(script_filename, query="", method="GET", body=b"", content_type=None,
               headers=(), extra=(), script_name=None, document_root=None):
    """A list of the usual CGI parameters for a request of script_filename (what nginx's
    fastcgi_params gives): SCRIPT_FILENAME, SCRIPT_NAME, REQUEST_URI, DOCUMENT_URI,
    DOCUMENT_ROOT, QUERY_STRING, REQUEST_METHOD, CONTENT_LENGTH/CONTENT_TYPE (when there is
    a body), SERVER_*, REMOTE_*, GATEWAY_INTERFACE, REDIRECT_STATUS, HTTP_* for headers
    (iterable of (name, value)), then extra (iterable of (name, value))."""
    if script_name is None:
        script_name = "/" + os.path.basename(script_filename)
    if document_root is None:
        document_root = os.path.dirname(script_filename) or "/"
    uri = script_name + ("?" + query if query else "")
    p = [("GATEWAY_INTERFACE", "CGI/1.1"), ("SERVER_SOFTWARE", "heisen-harness"),
         ("SERVER_PROTOCOL", "HTTP/1.1"), ("SERVER_NAME", "localhost"),
         ("SERVER_ADDR", "127.0.0.1"), ("SERVER_PORT", "80"),
         ("REMOTE_ADDR", "127.0.0.1"), ("REMOTE_PORT", "40000"),
         ("REQUEST_METHOD", method), ("REQUEST_URI", uri), ("DOCUMENT_URI", script_name),
         ("SCRIPT_NAME", script_name), ("SCRIPT_FILENAME", script_filename),
         ("DOCUMENT_ROOT", document_root), ("QUERY_STRING", query), ("REDIRECT_STATUS", "200")]
    has_ct = False
    for name, value in headers:
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            p.append(("CONTENT_TYPE", value))
            has_ct = True
        elif key == "CONTENT_LENGTH" or key == "PROXY":
            continue
        else:
            p.append(("HTTP_" + key, value))
    if body or method in ("POST", "PUT", "PATCH"):
        p.append(("CONTENT_LENGTH", str(len(body))))
        if not has_ct:
            p.append(("CONTENT_TYPE", content_type or "application/octet-stream"))
    elif content_type and not has_ct:
        p.append(("CONTENT_TYPE", content_type))
    p.extend(extra)
    return p


# ----------------------------------------------------------------------------------------
# transport

def parse_address(address):
    """'unix:/p', '/p', 'tcp:h:p', 'tcp:[::1]:p', 'h:p' -> (family, sockaddr)."""
    a = address
    if a.startswith("unix:"):
        return socket.AF_UNIX, a[5:]
    if a.startswith("/") or a.startswith("./"):
        return socket.AF_UNIX, a
    if a.startswith("tcp:"):
        a = a[4:]
    if a.startswith("["):
        host, _, port = a[1:].partition("]:")
        return socket.AF_INET6, (host, int(port))
    host, _, port = a.rpartition(":")
    if not host or not port:
        raise ValueError("bad address %r" % address)
    return socket.AF_INET, (host, int(port))


def connect(address, timeout=10.0):
    family, addr = parse_address(address)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
    except socket.timeout:
        s.close()
        raise Timeout("connect to %s timed out" % address)
    except OSError as e:
        s.close()
        raise ConnectFailed("cannot connect to %s: %s" % (address, e.strerror or e))
    return s


class Response:
    """What came back for one request."""

    def __init__(self):
        self.stdout = b""          # raw STDOUT stream (CGI headers + body)
        self.stderr = b""          # raw STDERR stream
        self.app_status = None     # END_REQUEST appStatus (None if it never came)
        self.protocol_status = None
        self.complete = False      # END_REQUEST received
        self.records = []          # (type, request_id, content) of every record, in order
        self._parsed = None

    def _parse(self):
        if self._parsed is None:
            self._parsed = parse_cgi(self.stdout)
        return self._parsed

    @property
    def status(self):
        return self._parse()[0]

    @property
    def headers(self):
        """list of (name, value) str pairs, in order, 'Status' excluded."""
        return self._parse()[1]

    def header(self, name):
        """The first value of header name (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def body(self):
        return self._parse()[2]

    def __repr__(self):
        return "<Response status=%s complete=%s app_status=%s body=%d bytes stderr=%d bytes>" % (
            self.status, self.complete, self.app_status, len(self.body), len(self.stderr))


def parse_cgi(stdout):
    """CGI response (STDOUT stream) -> (status, [(name, value)], body). Status defaults to
    200, or 302 when there is a Location header. Raises BadGateway when there is no end of
    headers."""
    i_crlf = stdout.find(b"\r\n\r\n")
    i_lf = stdout.find(b"\n\n")
    if i_crlf < 0 and i_lf < 0:
        raise BadGateway("no end of CGI headers in %d bytes" % len(stdout))
    if i_crlf >= 0 and (i_lf < 0 or i_crlf <= i_lf):
        head, body = stdout[:i_crlf], stdout[i_crlf + 4:]
    else:
        head, body = stdout[:i_lf], stdout[i_lf + 2:]
    status, headers = None, []
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().decode("latin-1")
        value = value.strip().decode("latin-1")
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name, value))
    if status is None:
        status = 302 if any(k.lower() == "location" for k, _ in headers) else 200
    return status, headers, body


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return buf
        buf += chunk
    return buf


def read_response(sock, request_id=1, deadline=None):
    """Read records until END_REQUEST for request_id. Raises Truncated/BadGateway on EOF,
    Timeout past deadline (time.monotonic()), Overloaded/BadGateway on protocol statuses."""
    resp = Response()
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("timed out waiting for the response", resp)
            sock.settimeout(left)
        try:
            head = _recv_exact(sock, 8)
            if len(head) == 8:
                version, rtype, rid, clen, plen = struct.unpack(">BBHHBx", head)
                content = _recv_exact(sock, clen + plen)
            else:
                content = b""
        except socket.timeout:
            raise Timeout("timed out waiting for the response", resp)
        except ConnectionResetError:
            head, content = b"", b""
        if len(head) < 8 or len(content) < clen + plen:
            if resp.stdout:
                raise Truncated("connection closed after %d bytes of STDOUT, before END_REQUEST"
                                % len(resp.stdout), resp)
            raise BadGateway("connection closed before a response (%d stray bytes)"
                             % (len(head) + len(content)), resp)
        if version != VERSION:
            raise BadGateway("bad record version %d" % version, resp)
        content = content[:clen]
        resp.records.append((rtype, rid, content))
        if rid != request_id:
            continue
        if rtype == STDOUT:
            resp.stdout += content
        elif rtype == STDERR:
            resp.stderr += content
        elif rtype == END_REQUEST:
            resp.app_status, resp.protocol_status = struct.unpack(">IB3x", content[:8])
            resp.complete = True
            if resp.protocol_status == OVERLOADED:
                raise Overloaded("backend overloaded (FCGI_OVERLOADED)", resp)
            if resp.protocol_status in (CANT_MPX_CONN, UNKNOWN_ROLE):
                raise BadGateway("END_REQUEST protocol status %s"
                                 % PROTOCOL_STATUS_NAMES[resp.protocol_status], resp)
            return resp


class Connection:
    """One FastCGI connection that may carry several requests in turn (FCGI_KEEP_CONN)."""

    def __init__(self, address, timeout=30.0):
        self.address = address
        self.timeout = timeout
        self.sock = connect(address, timeout)
        self.next_id = 1

    def request(self, params, body=b"", keep_conn=True, role=RESPONDER, timeout=None):
        rid = self.next_id
        self.next_id = self.next_id % 65535 + 1
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            self.sock.sendall(build_request(params, body, rid, keep_conn, role))
        except socket.timeout:
            raise Timeout("timed out sending the request")
        except OSError as e:
            raise BadGateway("send failed: %s" % (e.strerror or e))
        return read_response(self.sock, rid, deadline)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request(address, params, body=b"", timeout=30.0, keep_conn=False, role=RESPONDER):
    """One request on a connection of its own. Returns a Response or raises FastCGIError."""
    c = Connection(address, timeout)
    try:
        return c.request(params, body, keep_conn=keep_conn, role=role)
    finally:
        c.close()


def get_values(address, names=("FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"),
               timeout=10.0):
    """FCGI_GET_VALUES on a connection of its own -> dict str->str."""
    s = connect(address, timeout)
    try:
        s.sendall(record(GET_VALUES, 0, encode_pairs((n, "") for n in names)))
        head = _recv_exact(s, 8)
        if len(head) < 8:
            raise BadGateway("no GET_VALUES_RESULT")
        _, rtype, _, clen, plen = struct.unpack(">BBHHBx", head)
        content = _recv_exact(s, clen + plen)[:clen]
        if rtype != GET_VALUES_RESULT:
            raise BadGateway("expected GET_VALUES_RESULT, got record type %d" % rtype)
        return {k.decode(): v.decode() for k, v in decode_pairs(content)}
    except socket.timeout:
        raise Timeout("GET_VALUES timed out")
    finally:
        s.close()


def ping(address, path="/ping", timeout=5.0):
    """True when php-fpm's ping path answers (any complete response with status 200)."""
    try:
        r = request(address, [("SCRIPT_NAME", path), ("SCRIPT_FILENAME", path),
                              ("REQUEST_URI", path), ("REQUEST_METHOD", "GET"),
                              ("QUERY_STRING", "")], timeout=timeout)
        return r.status == 200
    except (FastCGIError, OSError):
        return False


# ----------------------------------------------------------------------------------------
# command line

def _usage(msg):
    sys.stderr.write("fcgi_client.py: %s\n(see the top of %s for usage)\n" % (msg, __file__))
    return EXIT_USAGE


def main(argv):
    method, body, extra, headers = None, None, [], []
    timeout, show_headers, raw, keep, count = 30.0, False, False, False, 1
    mode = "request"
    pos = []
    i = 0
    try:
        while i < len(argv):
            a = argv[i]
            if a in ("-X", "-d", "-p", "-H", "-t", "-n"):
                if i + 1 >= len(argv):
                    return _usage("%s needs a value" % a)
                v = argv[i + 1]
                i += 2
                if a == "-X":
                    method = v
                elif a == "-d":
                    if v == "-":
                        body = sys.stdin.buffer.read()
                    elif v.startswith("@"):
                        with open(v[1:], "rb") as f:
                            body = f.read()
                    else:
                        body = v.encode()
                elif a == "-p":
                    if "=" not in v:
                        return _usage("-p wants NAME=VALUE")
                    extra.append(tuple(v.split("=", 1)))
                elif a == "-H":
                    if ":" not in v:
                        return _usage("-H wants 'Name: value'")
                    n, _, val = v.partition(":")
                    headers.append((n.strip(), val.strip()))
                elif a == "-t":
                    timeout = float(v)
                elif a == "-n":
                    count = int(v)
                continue
            if a == "-i":
                show_headers = True
            elif a == "--raw":
                raw = True
            elif a == "-k":
                keep = True
            elif a in ("--ping", "--status", "--get-values"):
                mode = a[2:]
            elif a in ("-h", "--help"):
                print(__doc__)
                return 0
            elif a.startswith("-") and a != "-":
                return _usage("unknown option %s" % a)
            else:
                pos.append(a)
            i += 1
    except (ValueError, OSError) as e:
        return _usage(str(e))

    if mode in ("ping", "status", "get-values"):
        if len(pos) != 1:
            return _usage("--%s wants exactly ADDRESS" % mode)
        address = pos[0]
    else:
        if len(pos) not in (2, 3):
            return _usage("wants ADDRESS SCRIPT [QUERY]")
        address = pos[0]

    try:
        if mode == "get-values":
            for k, v in get_values(address, timeout=timeout).items():
                print("%s=%s" % (k, v))
            return 0
        if mode in ("ping", "status"):
            path = "/" + mode
            query = pos[1] if len(pos) > 1 else ""
            params = [("SCRIPT_NAME", path), ("SCRIPT_FILENAME", path), ("REQUEST_URI", path),
                      ("REQUEST_METHOD", "GET"), ("QUERY_STRING", query)]
        else:
            query = pos[2] if len(pos) == 3 else ""
            if method is None:
                method = "POST" if body is not None else "GET"
            params = cgi_params(pos[1], query=query, method=method, body=body or b"",
                                headers=headers, extra=extra)
        if count > 1:
            t0 = time.monotonic()
            outcomes = {}
            for _ in range(count):
                try:
                    r = request(address, params, body or b"", timeout, keep)
                    k = "status %d" % r.status
                except FastCGIError as e:
                    k = type(e).__name__
                outcomes[k] = outcomes.get(k, 0) + 1
            dt = time.monotonic() - t0
            print("%d requests in %.2fs (%.0f/s): %s" % (
                count, dt, count / dt, ", ".join("%s: %d" % kv for kv in sorted(outcomes.items()))))
            return 0 if set(outcomes) == {"status 200"} else EXIT_OTHER
        r = request(address, params, body or b"", timeout, keep)
    except FastCGIError as e:
        if e.response is not None:
            sys.stdout.buffer.write(e.response.stdout if raw else b"")
            sys.stderr.buffer.write(e.response.stderr)
        sys.stderr.write("fcgi_client.py: %s\n" % e)
        return e.exit_code
    out = sys.stdout.buffer
    if raw:
        out.write(r.stdout)
    else:
        try:
            status, hdrs, rbody = r.status, r.headers, r.body
        except BadGateway as e:
            sys.stderr.write("fcgi_client.py: %s\n" % e)
            return EXIT_BAD_GATEWAY
        if show_headers:
            out.write(("Status: %d\r\n" % status).encode())
            for k, v in hdrs:
                out.write(("%s: %s\r\n" % (k, v)).encode("latin-1"))
            out.write(b"\r\n")
        out.write(rbody)
    out.flush()
    if r.stderr:
        sys.stderr.buffer.write(r.stderr)
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
