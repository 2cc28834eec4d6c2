"""hostile_peer.py -- a FastCGI backend that misbehaves on purpose (issue 7 §4).

Built on tests/harness/fcgi_peer.py (request reading, record encoding). The behaviour of each
request is chosen by its QUERY_STRING, "mode=NAME" (so one backend, one heisen FastCGI client,
serves hostile and well-behaved requests side by side); without one it answers like
fcgi_peer's "story" mode (200, "hello\\n"). Python 3 standard library only.

Modes (HEAD = what is sent on STDOUT before the blank line):
  ok            200 "hello\\n", STDOUT + END_REQUEST, then close
  hdr-cr        "X-A: a\\rInjected: 1"            a bare CR inside a header value
  hdr-nul       "X-A: a\\0Injected: 1"            a NUL inside a header value
  hdr-ctl       "X-A: a\\x1b[31mred"              an escape byte inside a header value
  hdr-name      "X A: 1"                         a space inside a header name
  hdr-fold      "X-A: a" + "\\r\\n Injected: 1"    obs-fold
  status-cr     "Status: 200 OK\\rInjected: 1"    a CR in the Status line
  location-cr   "Location: /x\\rSet-Cookie: a=1"  a CR in Location
  hdr-lf        "X-A: a\\nX-B: b\\n\\n"             bare LF line ends (valid CGI): 200 with 2 headers
  stderr-ctl    STDERR "\\x1b[2J\\r\\nFAKE-LOG-LINE 200\\x00\\x07 end\\n", then the ok answer
  bighead       a header block of 100 KiB (100 lines of 1 KiB): over any sane limit
  flood         fcgi_peer's flood: headers, then 64 KiB STDOUT records forever (no END)
  zero-storm    headers and "partial", then zero-length records of an undefined type (42)
                forever, 64 KiB of them per send (no END)
  zero-head     the same storm before any STDOUT
  mgmt-storm    zero-length GET_VALUES_RESULT records (id 0) forever, before any STDOUT
Every endless mode stops when a send fails (the client closed the connection); the peer counts
those in stats["aborted_by_client"].
"""

import os
import socket
import sys
import threading
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
import fcgi_peer  # noqa: E402
from fcgi_peer import END_REQUEST, STDERR, STDOUT, record  # noqa: E402,F401

OK_HEAD = b"Status: 200 OK\r\nContent-Type: text/plain\r\n"
PAYLOAD = fcgi_peer.PAYLOAD

HEADS = {
    "hdr-cr": OK_HEAD + b"X-A: a\rInjected: 1\r\n\r\nbody\n",
    "hdr-nul": OK_HEAD + b"X-A: a\x00Injected: 1\r\n\r\nbody\n",
    "hdr-ctl": OK_HEAD + b"X-A: a\x1b[31mred\r\n\r\nbody\n",
    "hdr-name": OK_HEAD + b"X A: 1\r\n\r\nbody\n",
    "hdr-fold": OK_HEAD + b"X-A: a\r\n Injected: 1\r\n\r\nbody\n",
    "status-cr": b"Status: 200 OK\rInjected: 1\r\nContent-Type: text/plain\r\n\r\nbody\n",
    "location-cr": b"Location: /x\rSet-Cookie: a=1\r\n\r\n",
    "hdr-lf": b"Status: 200 OK\nContent-Type: text/plain\nX-A: a\nX-B: b\n\nbody\n",
}
STDERR_EVIL = b"\x1b[2J\r\nFAKE-LOG-LINE 200\x00\x07 end\n"
MODES = ["ok", "stderr-ctl", "bighead", "flood", "zero-storm", "zero-head", "mgmt-storm"] + list(HEADS)


class Handler(fcgi_peer.Handler):
    def answer(self, conn, req, mode_unused):
        qs = (req.param(b"QUERY_STRING") or b"").decode("latin-1")
        mode = urllib.parse.parse_qs(qs).get("mode", ["ok"])[0]
        srv = self.server
        srv.count_mode(mode)
        rid = req.rid
        pad = srv.pad

        def out(data):
            return fcgi_peer.record(STDOUT, rid, data, pad)

        end = fcgi_peer.end_request(rid, pad=pad)
        try:
            if mode in HEADS:
                conn.send(out(HEADS[mode]) + out(b"") + end)
            elif mode == "stderr-ctl":
                conn.send(fcgi_peer.record(STDERR, rid, STDERR_EVIL, pad) + out(PAYLOAD) + out(b"") + end)
            elif mode == "bighead":
                block = OK_HEAD + b"".join(b"X-Big-%03d: %s\r\n" % (i, b"v" * 1000) for i in range(100)) + b"\r\nbody\n"
                data = b"".join(out(block[i:i + 65528]) for i in range(0, len(block), 65528))
                conn.send(data + out(b"") + end)
            elif mode == "flood":
                conn.send(out(fcgi_peer.FLOOD_HEAD))
                chunk = out(fcgi_peer.PATTERN * 1023 + fcgi_peer.PATTERN[:56])
                while True:
                    conn.send(chunk)
            elif mode in ("zero-storm", "zero-head", "mgmt-storm"):
                if mode == "zero-storm":
                    conn.send(out(OK_HEAD + b"\r\npartial\n"))
                if mode == "mgmt-storm":
                    storm = fcgi_peer.record(fcgi_peer.GET_VALUES_RESULT, 0, b"", pad) * 8192
                else:
                    storm = fcgi_peer.record(42, rid, b"", pad) * 8192
                while True:
                    conn.send(storm)
            else:
                conn.send(out(PAYLOAD) + out(b"") + end)
        except OSError:
            srv.count_mode("aborted_by_client")
        return False


class _Srv:
    def count_mode(self, mode):
        with self.lock:
            self.stats[mode] = self.stats.get(mode, 0) + 1


class UnixServer(_Srv, fcgi_peer.UnixServer):
    pass


class Peer:
    """A hostile backend on a unix socket, serving in a thread. .address, .stats, stop()."""

    def __init__(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.path = path
        self.server = UnixServer(path, Handler)
        os.chmod(path, 0o666)
        self.server.setup_peer("story")
        self.server.unix_path = path
        self.address = "unix:" + path
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def stats(self):
        with self.server.lock:
            return dict(self.server.stats)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
