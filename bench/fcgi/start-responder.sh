#!/usr/bin/env bash
# bench/fcgi/start-responder.sh SOCKET [THREADS] - start the libfcgi responder under
# spawn-fcgi on a unix socket; prints the responder's pid. Stop it with kill PID.
# Honors TASKSET="taskset -c 1" (prefix) to pin it.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib/common.sh"
sock="${1:?usage: start-responder.sh SOCKET [THREADS]}"
threads="${2:-512}"
[ -x "$BENCH_BIN/responder" ] || make -s -C "$HERE" OUT="$BENCH_BIN" >&2 || exit 2
have spawn-fcgi || { echo "spawn-fcgi missing" >&2; exit 2; }
rm -f "$sock" "$sock.pid"
RESPONDER_THREADS="$threads" ${TASKSET:-} spawn-fcgi -s "$sock" -M 0666 -P "$sock.pid" -- "$BENCH_BIN/responder" >/dev/null 2>&1 || exit 3
wait_unix_socket "$sock" 5 || exit 3
for _ in $(seq 50); do [ -s "$sock.pid" ] && break; sleep 0.05; done
cat "$sock.pid"
