# tests/harness/lib.sh -- helpers for shell tests. Source it:  . tests/harness/lib.sh
#
#   h_tmpdir                       a new temporary directory (echoed; d=$(h_tmpdir) is fine), removed
#                                  by h_cleanup (all live under $H_BASE, made when lib.sh is sourced)
#   h_fpm_start DIR [ARGS...]      scripts/php-fpm.sh start DIR ARGS; sets H_FPM (address) and
#                                  H_WWW (DIR/www); stopped by h_cleanup; returns non-zero on failure
#   h_peer_start MODE LISTEN [ARGS...]   tests/harness/fcgi_peer.py in the background, waits for
#                                  "ready"; sets H_PEER (address) and H_PEER_PID; killed by h_cleanup
#   h_fcgi ARGS...                 python3 tests/harness/fcgi_client.py ARGS (reference client)
#   h_free_port                    a free TCP port on 127.0.0.1
#   h_wait_port PORT [SECONDS]     until 127.0.0.1:PORT accepts (default 10 s)
#   h_track PID                    kill PID (SIGTERM) in h_cleanup
#   h_cleanup                      stop everything above (install it: trap h_cleanup EXIT)
#   h_fail MESSAGE / h_ok MESSAGE  print "FAIL: ..." (and count) / "ok: ..."
#   h_expect_eq WHAT EXPECTED ACTUAL
#
# Everything it starts is tracked by pid and stopped by h_cleanup; nothing is killed by name.

H_ROOT="${HEISEN_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
H_PY="${PYTHON:-python3}"
H_PIDS=()
H_FPM_DIRS=()
H_FAILS=0
# every h_tmpdir lives under one base directory, so that d=$(h_tmpdir) (a subshell) is cleaned too
H_BASE=$(mktemp -d /tmp/heisen-test.XXXXXX) && chmod 755 "$H_BASE"

h_tmpdir() { local d; d=$(mktemp -d "$H_BASE/t.XXXXXX") && chmod 755 "$d" && echo "$d"; }

h_track() { H_PIDS+=("$1"); }

h_fpm_start() {
    local dir="$1"; shift
    H_FPM=$("$H_ROOT/scripts/php-fpm.sh" start "$dir" --quiet "$@") || return $?
    H_FPM_DIRS+=("$dir")
    H_WWW="$dir/www"
}

h_peer_start() {
    local mode="$1" listen="$2"; shift 2
    local out; out=$(mktemp /tmp/heisen-peer.XXXXXX)
    "$H_PY" "$H_ROOT/tests/harness/fcgi_peer.py" --listen "$listen" --mode "$mode" --quiet "$@" >"$out" &
    H_PEER_PID=$!
    H_PIDS+=("$H_PEER_PID")
    local i
    for ((i = 0; i < 100; i++)); do
        if [ -s "$out" ]; then
            local line; line=$(head -n1 "$out"); rm -f "$out"
            case "$line" in
                "ready "*) H_PEER="${line#ready }" ;;
                ready) H_PEER="$listen"; case "$H_PEER" in /*) H_PEER="unix:$H_PEER" ;; esac ;;
                *) echo "h_peer_start: unexpected output: $line" >&2; return 1 ;;
            esac
            return 0
        fi
        kill -0 "$H_PEER_PID" 2>/dev/null || break
        sleep 0.1
    done
    rm -f "$out"
    echo "h_peer_start: fcgi_peer.py --mode $mode --listen $listen did not become ready" >&2
    return 1
}

h_fcgi() { "$H_PY" "$H_ROOT/tests/harness/fcgi_client.py" "$@"; }

h_free_port() { "$H_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

h_wait_port() {
    local i n=$(( ${2:-10} * 10 ))
    for ((i = 0; i < n; i++)); do
        "$H_PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

h_cleanup() {
    local p d
    for p in "${H_PIDS[@]+"${H_PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${H_PIDS[@]+"${H_PIDS[@]}"}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null
    done
    H_PIDS=()
    for d in "${H_FPM_DIRS[@]+"${H_FPM_DIRS[@]}"}"; do "$H_ROOT/scripts/php-fpm.sh" stop "$d" >/dev/null 2>&1; done
    H_FPM_DIRS=()
    [ -n "${H_BASE:-}" ] && rm -rf "$H_BASE"
}

h_fail() { echo "FAIL: $*"; H_FAILS=$((H_FAILS + 1)); }
h_ok() { echo "ok: $*"; }
h_expect_eq() {
    if [ "$2" == "$3" ]; then h_ok "$1"; else h_fail "$1: expected [$2], got [$3]"; fi
}
