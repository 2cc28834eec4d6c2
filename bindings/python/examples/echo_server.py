"""A TCP echo server on heisen's reactor, with nothing but sockets and ``Reactor.watch``.

    python examples/echo_server.py [PORT]      # then: printf 'hello' | nc -q1 127.0.0.1 PORT

Every byte a client sent before hanging up is echoed back: heisen delivers READ (until drained)
before HUP, even when the data and the hang-up arrive in the same epoll event.
"""

from __future__ import annotations

import socket
import sys

import heisen


def serve(reactor: heisen.Reactor, listener: socket.socket) -> None:
    """Accept connections on ``listener`` and echo them, on ``reactor``."""
    listener.setblocking(False)

    def on_client(conn: socket.socket) -> None:
        def on_event(watch: heisen.Watch, events: heisen.Events) -> None:
            if events == heisen.Events.READ:
                while True:
                    try:
                        data = conn.recv(65536)
                    except BlockingIOError:
                        return  # drained
                    if not data:
                        break  # orderly end: HUP follows
                    conn.setblocking(True)  # keep the example short: blocking echo
                    conn.sendall(data)
                    conn.setblocking(False)
            else:  # HUP or ERROR: after every byte was read
                watch.close()
                conn.close()

        reactor.watch(conn, on_event)

    def on_accept(watch: heisen.Watch, events: heisen.Events) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            on_client(conn)

    reactor.watch(listener, on_accept)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    listener = socket.create_server(("127.0.0.1", port))
    print(f"echo server on 127.0.0.1:{listener.getsockname()[1]} (Ctrl-C stops it)", flush=True)
    with heisen.Reactor() as reactor:
        serve(reactor, listener)
        try:
            reactor.run()
        except KeyboardInterrupt:
            pass
        print(reactor.counters())


if __name__ == "__main__":
    main()
