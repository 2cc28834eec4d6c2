"""Shared helpers for the tests of the C programs (heisen-httpd, heisen-fcgi, heisen-story).

Python 3 standard library only. Real processes, real sockets:
  * php-fpm via scripts/php-fpm.sh (skipped with a message when php-fpm is not installed),
  * scripted FastCGI peers via tests/harness/fcgi_peer.py (in-process threads),
  * heisen-httpd started on 127.0.0.1:0; the port is read from its "listening on" line,
  * a small HTTP/1.1 client that reads responses byte-exactly (chunked, Content-Length,
    close-delimited), so that keep-alive, pipelining and truncation can be checked.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("HEISEN_BIN", os.path.join(ROOT, "build", "bin"))
HTTPD = os.path.join(BIN, "heisen-httpd")
FCGI = os.path.join(BIN, "heisen-fcgi")
STORY = os.path.join(BIN, "heisen-story")
PHP_FPM_SH = os.path.join(ROOT, "scripts", "php-fpm.sh")

sys.path.insert(0, os.path.join(ROOT, "tests", "harness"))
import fcgi_peer  # noqa: E402  (tests/harness)
import fcgi_client  # noqa: E402


def env():
    e = dict(os.environ)
    lib = os.path.join(ROOT, "target", "release")
    e["LD_LIBRARY_PATH"] = lib + (":" + e["LD_LIBRARY_PATH"] if e.get("LD_LIBRARY_PATH") else "")
    return e


def need_binary(test, path):
    if not os.path.exists(path):
        test.skipTest("%s is not built (make)" % os.path.relpath(path, ROOT))


def tmpdir(prefix="heisen-prog."):
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


class PhpFpm:
    """A private php-fpm (scripts/php-fpm.sh). .address, .www; stop() when done."""

    def __init__(self, directory, workers=4):
        self.dir = directory
        r = subprocess.run([PHP_FPM_SH, "start", directory, "--workers", str(workers), "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode == 2:
            raise unittest_skip("php-fpm is not installed (scripts/install-deps.sh)")
        if r.returncode != 0:
            raise RuntimeError("php-fpm.sh start failed (%d): %s" % (r.returncode, r.stderr))
        self.address = r.stdout.strip().splitlines()[-1]
        self.www = os.path.join(directory, "www")

    def stop(self):
        subprocess.run([PHP_FPM_SH, "stop", self.dir], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)


def unittest_skip(msg):
    import unittest
    return unittest.SkipTest(msg)


class Httpd:
    """heisen-httpd on 127.0.0.1:0 in the foreground; .port, .stderr_text(), stop() -> exit code."""

    def __init__(self, args, wrapper=None, logfile=None, ready_timeout=20):
        self.logfile = logfile
        cmd = (wrapper or []) + [HTTPD, "-bind", "127.0.0.1:0", "-foreground"] + list(args)
        if logfile:
            cmd += ["-accesslog", logfile]
        self.err_lines = []
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env())
        self.out_chunks = []
        self._ready = threading.Event()
        self.port = None
        self._t_err = threading.Thread(target=self._read_err, daemon=True)
        self._t_out = threading.Thread(target=self._read_out, daemon=True)
        self._t_err.start()
        self._t_out.start()
        if not self._ready.wait(ready_timeout) or self.port is None:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("heisen-httpd did not start: %s" % self.stderr_text())

    def _read_err(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace")
            self.err_lines.append(line)
            m = re.search(r"listening on \S+:(\d+)", line)
            if m and self.port is None:
                self.port = int(m.group(1))
                self._ready.set()
        self._ready.set()

    def _read_out(self):
        for raw in self.proc.stdout:
            self.out_chunks.append(raw)

    def stderr_text(self):
        return "".join(self.err_lines)

    def stdout_text(self):
        return b"".join(self.out_chunks).decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            rc = "hung (killed)"
        self._t_err.join(5)
        self._t_out.join(5)
        return rc


# ---- a small, exact HTTP/1.1 client --------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body, complete, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers          # list of (name, value), as received
        self.body = body
        self.complete = complete        # False: the connection ended before the framing did
        self.raw_head = raw_head

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "<Response %s %r, %d body bytes%s>" % (self.status, self.headers, len(self.body),
                                                      "" if self.complete else ", INCOMPLETE")


class Conn:
    """One TCP connection; send raw bytes, read responses one at a time."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._pos = 0
        self.eof = False

    @property
    def buf(self):
        return bytes(self._buf[self._pos:])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _avail(self):
        return len(self._buf) - self._pos

    def _take(self, n):
        data = bytes(self._buf[self._pos:self._pos + n])
        self._pos += len(data)
        if self._pos > (1 << 20):
            del self._buf[:self._pos]
            self._pos = 0
        return data

    def _fill(self):
        if self.eof:
            return False
        try:
            d = self.sock.recv(1 << 20)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self._buf += d
        return True

    def _find(self, needle):
        i = self._buf.find(needle, self._pos)
        return -1 if i < 0 else i - self._pos

    def _read_line(self):
        while self._find(b"\r\n") < 0:
            if not self._fill():
                return None
        line = self._take(self._find(b"\r\n"))
        self._take(2)
        return line

    def _read_exact(self, n):
        while self._avail() < n:
            if not self._fill():
                return self._take(self._avail()), False
        return self._take(n), True

    def read_response(self, head=False):
        """Reads one response (a 100 Continue is returned as such).
        Returns None if the connection closed before a status line."""
        while self._find(b"\r\n\r\n") < 0:
            if not self._fill():
                if self._avail():
                    rest = self._take(self._avail())
                    return Response(0, "", [], rest, False, rest)
                return None
        raw_head = self._take(self._find(b"\r\n\r\n"))
        self._take(4)
        lines = raw_head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append((k, v.strip()))
        r = Response(status, reason, headers, b"", True, raw_head)
        if head or status in (204, 304) or 100 <= status < 200:
            return r
        te = r.header("Transfer-Encoding")
        cl = r.header("Content-Length")
        if te is not None:
            assert te.lower() == "chunked", te
            parts = []
            while True:
                size_line = self._read_line()
                if size_line is None:
                    r.complete = False
                    break
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while True:             # trailers
                        t = self._read_line()
                        if t is None:
                            r.complete = False
                            break
                        if t == b"":
                            break
                    break
                data, ok = self._read_exact(size + 2)
                parts.append(data[:size])
                if not ok:
                    r.complete = False
                    break
            r.body = b"".join(parts)
        elif cl is not None:
            r.body, r.complete = self._read_exact(int(cl))
        else:
            while self._fill():
                pass
            r.body = self._take(self._avail())
        return r

    def request(self, method, path, headers=None, body=None, version="HTTP/1.1"):
        hs = [("Host", "127.0.0.1")] if version == "HTTP/1.1" else []
        hs += list(headers or [])
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hs):
            hs.append(("Content-Length", str(len(body))))
        req = "%s %s %s\r\n" % (method, path, version) + "".join("%s: %s\r\n" % kv for kv in hs) + "\r\n"
        self.send(req.encode("latin-1") + (body or b""))
        return self.read_response(head=(method == "HEAD"))

    def closed_by_peer(self, timeout=5.0):
        """True if the server closes the connection (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                self._buf += d
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def get(port, path, **kw):
    with Conn(port) as c:
        return c.request(kw.pop("method", "GET"), path, **kw)


def big_pattern(n):
    p = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
    return (p * (n // 64 + 1))[:n]


def run(cmd, input=None, timeout=60):
    """Runs a program; returns (exit code, stdout bytes, stderr text)."""
    r = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env(), timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


def rmtree(d):
    shutil.rmtree(d, ignore_errors=True)
