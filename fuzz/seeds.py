#!/usr/bin/env python3
"""Writes the hand-made seed inputs under fuzz/corpus/<target>/seed-* (idempotent).

The rest of each corpus is what the fuzzers found, minimized with libFuzzer's -merge=1
(scripts/fuzz.sh with FUZZ_MERGE=1). Run: python3 fuzz/seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def rec(rtype, rid, content=b"", pad=None, version=1):
    if pad is None:
        pad = (8 - len(content) % 8) % 8
    return struct.pack(">BBHHBB", version, rtype, rid, len(content), pad, 0) + content + b"\0" * pad


def nv(name, value):
    out = b""
    for n in (len(name), len(value)):
        out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return out + name + value


STDOUT, STDERR, END, GVR, UNKNOWN = 6, 7, 3, 10, 11


def end(rid, app=0, proto=0):
    return rec(END, rid, struct.pack(">IB3x", app, proto))


def parser_seeds():
    one = b"\x01\x00\x01"  # one active id: 1
    two = b"\x02\x00\x01\x00\x02"
    body = b"Status: 200 OK\r\nContent-Type: text/html\r\n\r\nhello"
    yield "response", one + rec(STDOUT, 1, body) + rec(STDOUT, 1) + end(1)
    yield "stderr", one + rec(STDERR, 1, b"PHP Warning: x\n") + rec(STDOUT, 1, b"X: y\n\nbody") + rec(STDERR, 1) + rec(STDOUT, 1) + end(1, 255)
    yield "multiplexed", two + rec(STDOUT, 2, b"a") + rec(STDOUT, 1, b"b") + end(2) + rec(STDOUT, 1) + end(1, 0, 1)
    yield "odd-padding", one + rec(STDOUT, 1, b"abc", pad=200) + end(1, 7, 3)
    yield "management", b"\x00" + rec(GVR, 0, nv(b"FCGI_MAX_CONNS", b"4") + nv(b"FCGI_MPXS_CONNS", b"0")) + rec(UNKNOWN, 0, bytes([9]) + b"\0" * 7)
    yield "unknown-type", one + rec(42, 1, b"zz") + rec(STDOUT, 1, b"\n") + end(1)
    yield "bad-version", one + rec(STDOUT, 1, b"x", version=2)
    yield "unknown-id", one + rec(STDOUT, 9, b"x")
    yield "after-end", one + end(1) + rec(STDOUT, 1, b"x")
    yield "end-short", one + rec(END, 1, b"\0\0\0")


def nv_seeds():
    yield "short", b"\x03" + nv(b"SCRIPT_FILENAME", b"/srv/index.php") + nv(b"A", b"")
    yield "long", b"\x03" + nv(b"N" * 130, b"v" * 300)
    yield "noncanonical", b"\x03" + struct.pack(">II", 0x80000001, 0x80000002) + b"abc"
    yield "hostile-length", b"\x02" + struct.pack(">II", 0xFFFFFFFF, 0xFFFFFFFF) + b"x"
    yield "truncated", b"\x03" + nv(b"ABC", b"defgh")[:-2]


def cgi_seeds():
    yield "simple", b"\x03Content-Type: text/html\r\n\r\n<p>hi"
    yield "status", b"\x03Status: 404 Not Found\nX-Powered-By: PHP/8.2\n\nnope"
    yield "location", b"\x03Location: /elsewhere\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
    yield "split-attempt", b"\x03X: a\rInjected: 1\r\n\r\n"
    yield "nul", b"\x03X: a\x00b\r\n\r\n"
    yield "folded", b"\x03X: a\r\n b\r\n\r\n"
    yield "no-colon", b"\x02garbage\r\n\r\n"
    yield "too-large", b"\x01" + b"X-Long: " + b"v" * 40 + b"\r\n\r\n"
    yield "bad-status", b"\x03Status: 20x\r\n\r\n"


def params_seeds():
    yield "headers", b"Host:example.com\nUser-Agent:curl/8\nProxy:http://evil:8080\nCookie:a=1\nCookie:b=2\nX_Forwarded_For:1.2.3.4\nX-Forwarded-For:5.6.7.8\nContent-Length:5\ncontent-type:text/plain"
    yield "cgi", b"!GET /app/index.php/extra?x=1 /srv/www /app/index.php /extra\nAccept:*/*"
    yield "block", b"=SCRIPT_FILENAME=/srv/x.php\x01QUERY_STRING=a=b\x01\x01HTTP_PROXY=set-by-app"
    yield "oversized", b"*\x48:X-Big:0123456789abcdef\nHost:h"
    yield "bad-names", b"X A:1\nX\x00Y:2\n:3\nproxy:4\nPROXY:5"


def http_seeds():
    yield "get", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    yield "post-cl", b"POST /echo.php?x=1 HTTP/1.1\r\nHost: a:1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
    yield "chunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: x\r\n\r\n"
    yield "http10", b"GET http://h/p HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    yield "chunk-body", b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    yield "cl-te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    yield "dup-cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n"
    yield "signed-cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\n"
    yield "obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"
    yield "bare-cr", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"
    yield "proxy", b"GET /x.php HTTP/1.1\r\nHost: a\r\nProxy: http://evil/\r\n\r\n"
    yield "path", b"GET /%2e%2e/%00 HTTP/1.1\r\nHost: a\r\nX: \t v \r\n\r\n"
    yield "te-obfuscated", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"
    yield "space-colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"


def c_api_seeds():
    # ops: (code, a, b) triples, then the callback script (read from the back)
    def mk(ops, script=b""):
        data = bytes(b for op in ops for b in op)
        # the script is the second half: pad it to the same length as the ops
        script = script.ljust(len(data), b"\0")
        return data + bytes(reversed(script))
    yield "watch-story", mk([(1, 0, 0), (3, 0, 200), (5, 0, 1), (14, 3, 0)])
    yield "stream-story", mk([(2, 0, 0), (3, 0, 200), (4, 0, 100), (5, 0, 0), (14, 3, 0), (14, 3, 0)])
    yield "stream-write", mk([(2, 0, 0), (6, 0x80, 255), (17, 1, 0), (6, 0, 3), (8, 0, 0), (14, 3, 0)])
    yield "pause", mk([(2, 0, 0), (3, 0, 50), (7, 0, 0), (5, 0, 1), (14, 3, 0), (7, 0, 1), (14, 3, 0)])
    yield "timers", mk([(10, 0, 0), (10, 1, 1), (11, 0, 0), (14, 3, 0), (11, 1, 1)], b"\x0a\x01\x02")
    yield "wakers", mk([(12, 0, 0), (13, 0, 0), (13, 0, 1), (13, 0, 210), (14, 1, 0), (9, 0, 0)])
    yield "listener", mk([(18, 1, 0), (18, 2, 10), (18, 3, 0), (14, 3, 0), (14, 3, 0)], b"\x01")
    yield "free-in-cb", mk([(1, 1, 0), (3, 0, 9), (14, 0, 0)], b"\x00\x0a")
    yield "reactor-free", mk([(1, 1, 0), (10, 0, 0), (18, 0, 0x5A), (0, 0, 0), (2, 0, 0), (14, 0, 0)])
    yield "pipe", mk([(1, 5, 0), (2, 4, 0), (3, 0, 10), (3, 1, 10), (5, 0, 0), (5, 1, 0), (14, 3, 0)])


def main():
    for target, gen in [("fcgi_parser", parser_seeds), ("fcgi_nv", nv_seeds), ("cgi_head", cgi_seeds),
                        ("fcgi_params", params_seeds), ("http_parse", http_seeds), ("c_api", c_api_seeds)]:
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in gen():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
