#!/usr/bin/env python3
"""A short, varied session against a running heisen-httpd (used by valgrind.sh):
   drive_httpd.py PORT     exit 0 when every answer was as expected."""
import hashlib
import os
import sys
import time

import common
from common import Conn


def main():
    port = int(sys.argv[1])
    fails = []

    def expect(what, cond):
        if not cond:
            fails.append(what)

    with Conn(port, timeout=60) as c:
        r = c.request("GET", "/hello.php")
        expect("php", r and r.body == b"Hello, world!\n")
        r = c.request("GET", "/static.txt")
        expect("static", r and r.body == b"static file\n")
        r = c.request("HEAD", "/static.txt")
        expect("head", r and r.status == 200)
        body = os.urandom(100000)
        r = c.request("POST", "/echo.php", body=body)
        expect("post", r and ("sha256=" + hashlib.sha256(body).hexdigest()).encode() in r.body)
        r = c.request("GET", "/big.php?n=300000")
        expect("big", r and len(r.body) == 300000)
        r = c.request("GET", "/nope.txt")
        expect("404", r and r.status == 404)
        r = c.request("GET", "/x.down")
        expect("502", r and r.status == 502)
        r = c.request("GET", "/%2e%2e/etc/passwd")
        expect("403", r and r.status == 403)
    with Conn(port, timeout=60) as c:                  # pipelined, chunked body
        c.send(b"GET /hello.php HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST /echo.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
               b"GET /static.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rs = [c.read_response() for _ in range(3)]
        expect("pipelined", [r and r.status for r in rs] == [200, 200, 200])
    with Conn(port, timeout=60) as c:                  # hostile
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        r = c.read_response()
        expect("400", r and r.status == 400)
    with Conn(port, timeout=60) as c:                  # client gone in the middle of a response
        c.send(b"GET /big.php?n=5000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        c.sock.recv(1000)
    with Conn(port, timeout=60) as c:                  # client gone while php-fpm works
        c.send(b"GET /sleep.php?s=0.3 HTTP/1.1\r\nHost: x\r\n\r\n")
    with Conn(port, timeout=60) as c:                  # half a request, then gone
        c.send(b"GET /hello.php HTTP/1.1\r\nHo")
    time.sleep(1.0)
    with Conn(port, timeout=60) as c:                  # a keep-alive connection left open at shutdown
        r = c.request("GET", "/hello.php")
        expect("last", r and r.status == 200)
        if fails:
            print("drive_httpd: failed: %s" % ", ".join(fails), file=sys.stderr)
            return 1
        print("drive_httpd: ok")
        sys.stdout.flush()
        return 0


if __name__ == "__main__":
    sys.exit(main())
