#!/usr/bin/env python3
r"""fcgi_peer.py -- a scripted FastCGI application (the "backend") for wire behaviours that
php-fpm cannot produce on demand. Python 3 standard library only.

    fcgi_peer.py --listen unix:/path | tcp:127.0.0.1:PORT | tcp:[::1]:PORT --mode MODE
                 [--no-pad] [--delay-ms MS] [--max-requests-per-conn N] [--idle-close-ms MS]
                 [--max-conns N] [--ready-file PATH] [--quiet]

Prints "ready" (one line, flushed) on stdout once it listens; with tcp port 0 it picks a
port and prints "ready tcp:127.0.0.1:PORT" instead. --ready-file PATH also writes the address
to PATH (atomically) once listening. Runs until SIGTERM/SIGINT (exit 0, unlinks the unix
socket), then prints a summary line to stderr unless --quiet:
"fcgi_peer: C connections, R requests, by mode: story=R1 ...".
One thread per connection; listen backlog 1024; a unix socket gets mode 0666. Accepted TCP sockets get TCP_NODELAY, so
"two writes" really are two segments.

Every connection: the peer reads records until it has a whole request -- BEGIN_REQUEST,
PARAMS up to the empty PARAMS record, STDIN up to the empty STDIN record (and, for the FILTER
role, DATA up to the empty DATA record) -- and only then answers according to the mode. On
the way:
  * FCGI_GET_VALUES (request id 0) is answered at once with GET_VALUES_RESULT for the names
    it knows: FCGI_MAX_CONNS=--max-conns (default 100), FCGI_MAX_REQS=same,
    FCGI_MPXS_CONNS=0; the connection then goes on as before.
  * another management record type gets FCGI_UNKNOWN_TYPE (type 11) back.
  * a BEGIN_REQUEST for a second request id while one is being read gets END_REQUEST with
    protocol status FCGI_CANT_MPX_CONN for that id (we do not multiplex).
  * FCGI_ABORT_REQUEST is ignored (counted).
  * EOF before the request is whole: the connection is closed silently.

Records we send are padded to a multiple of 8 bytes with zero bytes (as libfcgi and php-fpm
do) unless --no-pad. RID = the request id of the BEGIN_REQUEST being answered, as 2 bytes
big-endian (usually 00 01). PAYLOAD below means these 50 bytes:

    b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n"

MODES (exact bytes sent, with padding; "send" = one sendall() call):

story        The story: two sends, then close() at once (whatever FCGI_KEEP_CONN says).
             send 1 (72 bytes): STDOUT record with PAYLOAD, then the empty STDOUT record:
               01 06 RID 00 32 06 00 | PAYLOAD | 00 00 00 00 00 00
               01 06 RID 00 00 00 00
             send 2 (16 bytes): END_REQUEST, appStatus 0, FCGI_REQUEST_COMPLETE:
               01 03 RID 00 08 00 00 | 00 00 00 00 00 00 00 00
             With --no-pad send 1 is 66 bytes (01 06 RID 00 32 00 00 | PAYLOAD | 01 06 RID
             00 00 00 00).
             A correct client gets status 200, body "hello\n", app status 0.
ok           Same two sends as story, but honours FCGI_KEEP_CONN: with the flag set the
             connection stays open for the next request (until --max-requests-per-conn
             requests were served, or --idle-close-ms of idleness, or the client closes);
             without it, close() after send 2.
echo         Honours FCGI_KEEP_CONN like ok. Sends (send 1) one STDOUT record per 65528 bytes
             of "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY, then the empty
             STDOUT record, and (send 2) END_REQUEST as in story. BODY is lines ending "\n":
                 request_id=<id>
                 role=<role>
                 keep_conn=<0|1>
                 params=<count>
                 <NAME>=<value length>:<sha256 hex of value>     one per param, in order
                 stdin=<length>:<sha256 hex>
                 data=<length>:<sha256 hex>                      only for the FILTER role
             (names decoded as latin-1). For testing parameter/body encoding of any size,
             e.g. a 70 KiB value that php-fpm cannot take.
close        close() without sending anything.
garbage      send the 32 bytes b"garbage: this is not FastCGI\r\n\r\n" (first byte 0x67,
             not version 1), then close().
short        half a record, then close(): the 8-byte STDOUT header announcing PAYLOAD
             (01 06 RID 00 32 06 00) followed by the first 25 bytes of PAYLOAD only
             (33 bytes in all).
truncated    a response that starts but never ends: one send of the STDOUT record with
             b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial\n" (52 bytes;
             header 01 06 RID 00 34 04 00, 4 bytes padding), no empty STDOUT record, no
             END_REQUEST, then close(). A correct client reports TRUNCATED, not complete.
overloaded   END_REQUEST only: 01 03 RID 00 08 00 00 | 00 00 00 00 02 00 00 00, then close().
cantmpx      the same with protocol status 1 (FCGI_CANT_MPX_CONN), then close().
unknownrole  the same with protocol status 3 (FCGI_UNKNOWN_ROLE), then close().
silent       never answers; keeps the connection open until the client closes it.
flood        send the STDOUT record with b"Status: 200 OK\r\nContent-Type:
             application/octet-stream\r\n\r\n" (58 bytes), then STDOUT records of 65528 bytes
             each (the big.php pattern, P[i % 64], P = 0-9a-zA-Z+/) forever, until a send
             fails (client gone); never END_REQUEST.
drip         the story's bytes (send 1 then send 2), but one byte per send with --delay-ms
             (default 1) between bytes, then close(). Exercises every split point.
unknowntype  first a record of type 99 with 8 content bytes 00..07
             (01 63 RID 00 08 00 00 | 00 01 02 03 04 05 06 07) in its own send, then
             exactly story. A correct client ignores the unknown record.
stderr       first a STDERR record with b"peer stderr line\n" (17 bytes, 7 padding) and the
             empty STDERR record in one send, then exactly story.
param        per request: the mode named by the request's HEISEN_PEER_MODE parameter (any
             of the modes above; story when absent or unknown). One peer, every behaviour,
             e.g. faults interleaved with good requests on one client.

--delay-ms MS (modes other than drip): wait MS before answering (after reading the request).

Use from Python tests in-process::

    sys.path.insert(0, "tests/harness"); import fcgi_peer
    peer = fcgi_peer.start("unix:/tmp/t/peer.sock", "story")   # serving in a thread
    peer.address   # "unix:/tmp/t/peer.sock" (or "tcp:127.0.0.1:PORT" for tcp port 0)
    peer.stats     # {"connections": n, "requests": n, "modes": {...}, "aborts": n}
    peer.stop()

From C or shell: run it as a child process, wait for the "ready" line, kill it with SIGTERM.
"""

import argparse
import hashlib
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

VERSION = 1
BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, DATA, \
    GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = range(1, 12)
FILTER = 3
KEEP_CONN = 1
REQUEST_COMPLETE, CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE = 0, 1, 2, 3

PAYLOAD = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello\n"
TRUNCATED_PAYLOAD = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial\n"
GARBAGE = b"garbage: this is not FastCGI\r\n\r\n"
FLOOD_HEAD = b"Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
STDERR_LINE = b"peer stderr line\n"
PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
ECHO_HEAD = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"

MODES = ("story", "ok", "echo", "close", "garbage", "short", "truncated", "overloaded",
         "cantmpx", "unknownrole", "silent", "flood", "drip", "unknowntype", "stderr", "param")

assert len(PAYLOAD) == 50 and len(TRUNCATED_PAYLOAD) == 52 and len(GARBAGE) == 32


def record(rtype, rid, content=b"", pad=True):
    padding = (-len(content)) % 8 if pad else 0
    return struct.pack(">BBHHBx", VERSION, rtype, rid, len(content), padding) + content + \
        b"\0" * padding


def end_request(rid, protocol_status=REQUEST_COMPLETE, app_status=0, pad=True):
    return record(END_REQUEST, rid, struct.pack(">IB3x", app_status, protocol_status), pad)


def story_sends(rid, pad=True):
    """The story's two sends (list of bytes)."""
    return [record(STDOUT, rid, PAYLOAD, pad) + record(STDOUT, rid, b"", pad),
            end_request(rid, pad=pad)]


def _nv_len(data, i):
    if data[i] < 128:
        return data[i], i + 1
    return struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF, i + 4


def decode_pairs(data):
    pairs, i = [], 0
    while i < len(data):
        nl, i = _nv_len(data, i)
        vl, i = _nv_len(data, i)
        pairs.append((bytes(data[i:i + nl]), bytes(data[i + nl:i + nl + vl])))
        i += nl + vl
    return pairs


def encode_pairs(pairs):
    out = []
    for n, v in pairs:
        out.append((bytes([len(n)]) if len(n) < 128 else struct.pack(">I", len(n) | 0x80000000)) +
                   (bytes([len(v)]) if len(v) < 128 else struct.pack(">I", len(v) | 0x80000000)) +
                   n + v)
    return b"".join(out)


class Request:
    def __init__(self, rid, role, flags):
        self.rid, self.role, self.flags = rid, role, flags
        self.params_raw = bytearray()
        self.stdin = bytearray()
        self.data = bytearray()
        self.params_done = self.stdin_done = False
        self.data_done = role != FILTER

    @property
    def keep_conn(self):
        return bool(self.flags & KEEP_CONN)

    @property
    def complete(self):
        return self.params_done and self.stdin_done and self.data_done

    def params(self):
        return decode_pairs(bytes(self.params_raw))

    def param(self, name):
        for n, v in self.params():
            if n == name:
                return v
        return None


class Conn:
    """Reads records from one accepted socket."""

    def __init__(self, sock, server):
        self.sock, self.server = sock, server
        self.buf = bytearray()

    def recv_record(self, timeout=None):
        """(type, rid, content) or None on EOF/reset/timeout."""
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 8:
                _, rtype, rid, clen, plen = struct.unpack(">BBHHBx", self.buf[:8])
                if len(self.buf) >= 8 + clen + plen:
                    content = bytes(self.buf[8:8 + clen])
                    del self.buf[:8 + clen + plen]
                    return rtype, rid, content
            try:
                chunk = self.sock.recv(262144)
            except (socket.timeout, OSError):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def send(self, data):
        self.sock.sendall(data)

    def read_request(self, idle_timeout=None):
        """The next whole request, or None when the connection ended first."""
        req = None
        first = True
        while True:
            rec = self.recv_record(idle_timeout if (first and req is None) else None)
            if rec is None:
                return None
            first = False
            rtype, rid, content = rec
            if rid == 0:
                if rtype == GET_VALUES:
                    self.send(record(GET_VALUES_RESULT, 0, self.server.values_result(content),
                                     self.server.pad))
                else:
                    self.send(record(UNKNOWN_TYPE, 0, bytes([rtype]) + b"\0" * 7, self.server.pad))
                continue
            if rtype == BEGIN_REQUEST:
                role, flags = struct.unpack(">HB5x", content[:8])
                if req is not None and rid != req.rid:
                    self.send(end_request(rid, CANT_MPX_CONN, pad=self.server.pad))
                    continue
                req = Request(rid, role, flags)
                continue
            if rtype == ABORT_REQUEST:
                self.server.count("aborts")
                continue
            if req is None or rid != req.rid:
                continue  # records of an unknown request: ignored
            if rtype == PARAMS:
                if content:
                    req.params_raw += content
                else:
                    req.params_done = True
            elif rtype == STDIN:
                if content:
                    req.stdin += content
                else:
                    req.stdin_done = True
            elif rtype == DATA:
                if content:
                    req.data += content
                else:
                    req.data_done = True
            if req.complete:
                return req


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server
        sock = self.request
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        srv.count("connections")
        conn = Conn(sock, srv)
        served = 0
        try:
            while True:
                idle = srv.idle_close_ms / 1000.0 if (served and srv.idle_close_ms) else None
                req = conn.read_request(idle)
                if req is None:
                    return
                mode = srv.mode
                if mode == "param":
                    m = (req.param(b"HEISEN_PEER_MODE") or b"story").decode("latin-1")
                    mode = m if m in MODES and m != "param" else "story"
                srv.count("requests", mode)
                served += 1
                if srv.delay_ms and mode != "drip":
                    time.sleep(srv.delay_ms / 1000.0)
                keep = self.answer(conn, req, mode)
                if not keep:
                    return
                if srv.max_requests_per_conn and served >= srv.max_requests_per_conn:
                    return
        except OSError:
            return  # client went away (EPIPE, ECONNRESET): nothing to do
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def answer(self, conn, req, mode):
        """Send the reply of mode; True when the connection is to be kept for another one."""
        pad = self.server.pad
        rid = req.rid
        if mode == "story":
            for s in story_sends(rid, pad):
                conn.send(s)
            return False
        if mode == "ok":
            for s in story_sends(rid, pad):
                conn.send(s)
            return req.keep_conn
        if mode == "echo":
            lines = ["request_id=%d" % rid, "role=%d" % req.role,
                     "keep_conn=%d" % (1 if req.keep_conn else 0)]
            params = req.params()
            lines.append("params=%d" % len(params))
            for n, v in params:
                lines.append("%s=%d:%s" % (n.decode("latin-1"), len(v), hashlib.sha256(v).hexdigest()))
            lines.append("stdin=%d:%s" % (len(req.stdin), hashlib.sha256(req.stdin).hexdigest()))
            if req.role == FILTER:
                lines.append("data=%d:%s" % (len(req.data), hashlib.sha256(req.data).hexdigest()))
            out = ECHO_HEAD + ("\n".join(lines) + "\n").encode("latin-1")
            recs = [record(STDOUT, rid, out[i:i + 65528], pad) for i in range(0, len(out), 65528)]
            conn.send(b"".join(recs) + record(STDOUT, rid, b"", pad))
            conn.send(end_request(rid, pad=pad))
            return req.keep_conn
        if mode == "close":
            return False
        if mode == "garbage":
            conn.send(GARBAGE)
            return False
        if mode == "short":
            conn.send(record(STDOUT, rid, PAYLOAD, pad)[:8 + 25])
            return False
        if mode == "truncated":
            conn.send(record(STDOUT, rid, TRUNCATED_PAYLOAD, pad))
            return False
        if mode in ("overloaded", "cantmpx", "unknownrole"):
            ps = {"overloaded": OVERLOADED, "cantmpx": CANT_MPX_CONN,
                  "unknownrole": UNKNOWN_ROLE}[mode]
            conn.send(end_request(rid, ps, pad=pad))
            return False
        if mode == "silent":
            conn.sock.settimeout(None)
            while True:
                try:
                    if not conn.sock.recv(65536):
                        return False
                except OSError:
                    return False
        if mode == "flood":
            conn.send(record(STDOUT, rid, FLOOD_HEAD, pad))
            block = record(STDOUT, rid, (PATTERN * 1024)[:65528], pad)
            while True:
                conn.send(block)
        if mode == "drip":
            delay = (self.server.delay_ms or 1) / 1000.0
            for b in b"".join(story_sends(rid, pad)):
                conn.send(bytes([b]))
                time.sleep(delay)
            return False
        if mode == "unknowntype":
            conn.send(record(99, rid, bytes(range(8)), pad))
            return self.answer(conn, req, "story")
        if mode == "stderr":
            conn.send(record(STDERR, rid, STDERR_LINE, pad) + record(STDERR, rid, b"", pad))
            return self.answer(conn, req, "story")
        raise ValueError("unknown mode %s" % mode)


class _Base:
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def setup_peer(self, mode, pad=True, delay_ms=0, max_requests_per_conn=0, idle_close_ms=0,
                   max_conns=100):
        if mode not in MODES:
            raise ValueError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
        self.mode, self.pad, self.delay_ms = mode, pad, delay_ms
        self.max_requests_per_conn, self.idle_close_ms = max_requests_per_conn, idle_close_ms
        self.max_conns = max_conns
        self.stats = {"connections": 0, "requests": 0, "aborts": 0, "modes": {}}
        self.lock = threading.Lock()

    def count(self, what, mode=None):
        with self.lock:
            self.stats[what] += 1
            if mode is not None:
                self.stats["modes"][mode] = self.stats["modes"].get(mode, 0) + 1

    def values_result(self, content):
        known = {b"FCGI_MAX_CONNS": str(self.max_conns).encode(),
                 b"FCGI_MAX_REQS": str(self.max_conns).encode(), b"FCGI_MPXS_CONNS": b"0"}
        return encode_pairs([(n, known[n]) for n, _ in decode_pairs(content) if n in known])

    def handle_error(self, request, client_address):
        pass  # a vanished client is normal here


class UnixServer(_Base, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    pass


class TCPServer(_Base, socketserver.ThreadingMixIn, socketserver.TCPServer):
    pass


class TCP6Server(TCPServer):
    address_family = socket.AF_INET6


def make_server(listen, mode, **opts):
    """Bind (not yet serving). Returns (server, address string)."""
    if listen.startswith("unix:") or listen.startswith("/"):
        path = listen[5:] if listen.startswith("unix:") else listen
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        srv = UnixServer(path, Handler)
        os.chmod(path, 0o666)  # like php-fpm's listen.mode: servers running as another user connect too
        address = "unix:" + path
        srv.unix_path = path
    else:
        a = listen[4:] if listen.startswith("tcp:") else listen
        if a.startswith("["):
            host, _, port = a[1:].partition("]:")
            srv = TCP6Server((host, int(port)), Handler)
            address = "tcp:[%s]:%d" % (host, srv.server_address[1])
        else:
            host, _, port = a.rpartition(":")
            srv = TCPServer((host, int(port)), Handler)
            address = "tcp:%s:%d" % (host, srv.server_address[1])
        srv.unix_path = None
    srv.setup_peer(mode, **opts)
    return srv, address


class Peer:
    """A peer serving in a background thread (for in-process Python tests)."""

    def __init__(self, listen, mode, **opts):
        self.server, self.address = make_server(listen, mode, **opts)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def stats(self):
        with self.server.lock:
            return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.server.stats.items()}

    def set_mode(self, mode):
        if mode not in MODES:
            raise ValueError(mode)
        self.server.mode = mode

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        if self.server.unix_path:
            try:
                os.unlink(self.server.unix_path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start(listen, mode, **opts):
    """Start a Peer in a thread; see Peer."""
    return Peer(listen, mode, **opts)


def main():
    ap = argparse.ArgumentParser(description="scripted FastCGI peer (see the module docstring)")
    ap.add_argument("--listen", required=True)
    ap.add_argument("--mode", required=True, choices=MODES)
    ap.add_argument("--no-pad", action="store_true")
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--max-requests-per-conn", type=int, default=0)
    ap.add_argument("--idle-close-ms", type=int, default=0)
    ap.add_argument("--max-conns", type=int, default=100)
    ap.add_argument("--ready-file")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    threading.stack_size(256 * 1024)  # thousands of idle connections (silent mode) stay cheap
    try:
        srv, address = make_server(a.listen, a.mode, pad=not a.no_pad, delay_ms=a.delay_ms,
                                   max_requests_per_conn=a.max_requests_per_conn,
                                   idle_close_ms=a.idle_close_ms, max_conns=a.max_conns)
    except OSError as e:
        sys.stderr.write("fcgi_peer: cannot listen on %s: %s\n" % (a.listen, e))
        return 1

    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(address + "\n")
        os.rename(tmp, a.ready_file)
    port0 = a.listen.endswith(":0")
    sys.stdout.write(("ready %s\n" % address) if port0 else "ready\n")
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
        if srv.unix_path:
            try:
                os.unlink(srv.unix_path)
            except FileNotFoundError:
                pass
        if not a.quiet:
            s = srv.stats
            sys.stderr.write("fcgi_peer: %d connections, %d requests, by mode: %s\n" % (
                s["connections"], s["requests"],
                " ".join("%s=%d" % kv for kv in sorted(s["modes"].items())) or "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
