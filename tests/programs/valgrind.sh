#!/usr/bin/env bash
# tests/programs/valgrind.sh -- one short session of each C program under valgrind:
# zero errors, zero definite/indirect leaks (issue 5 §4, issue 7 §6).
#
#   tests/programs/valgrind.sh        exit 0 when every run was clean
#
# Each run: valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
# Logs are kept in a temporary directory and printed for a failed run.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT" || exit 1
PY="${PYTHON:-python3}"
BIN="${HEISEN_BIN:-$ROOT/build/bin}"
export LD_LIBRARY_PATH="$ROOT/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2
    exit 1
fi
for b in heisen-httpd heisen-fcgi heisen-story; do
    [ -x "$BIN/$b" ] || { echo "valgrind.sh: $BIN/$b is not built" >&2; exit 1; }
done

T=$(mktemp -d /tmp/heisen-valgrind.XXXXXX); chmod 755 "$T"
FPM_DIR="$T/fpm"
HPID=""
cleanup() {
    [ -n "$HPID" ] && kill -KILL "$HPID" 2>/dev/null
    "$ROOT/scripts/php-fpm.sh" stop "$FPM_DIR" >/dev/null 2>&1
    if [ "${KEEP:-0}" = 1 ]; then echo "valgrind.sh: logs kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

VG=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
    --show-leak-kinds=definite,indirect --track-fds=no --num-callers=30)
FAILED=0
N=0

check() {   # NAME EXPECTED_RC RC LOG
    local name="$1" want="$2" rc="$3" log="$4"
    N=$((N + 1))
    if [ "$rc" = 99 ] || [ "$rc" != "$want" ]; then
        echo "valgrind.sh: FAIL $name (exit $rc, expected $want)"
        sed -n '/ERROR SUMMARY\|definitely lost\|indirectly lost\|Invalid\|uninitialised\|at 0x\|by 0x/p' "$log" | head -80
        FAILED=1
    else
        echo "valgrind.sh: ok   $name ($(grep -o 'ERROR SUMMARY: [0-9]* errors' "$log" | tail -n1))"
    fi
}

FPM=$("$ROOT/scripts/php-fpm.sh" start "$FPM_DIR" --workers 2 --quiet) || { echo "valgrind.sh: php-fpm did not start" >&2; exit 1; }
WWW="$FPM_DIR/www"
printf 'static file\n' > "$WWW/static.txt"
: > "$WWW/x.down"

# --- heisen-story (built-in peer) ---
"${VG[@]}" --log-file="$T/story.vg" "$BIN/heisen-story" -n 300 -c 8 >"$T/story.out" 2>&1
check "heisen-story -n 300" 0 $? "$T/story.vg"

# --- heisen-fcgi one-shot and load ---
"${VG[@]}" --log-file="$T/fcgi1.vg" "$BIN/heisen-fcgi" -i "$FPM" "$WWW/headers.php" >"$T/fcgi1.out" 2>&1
check "heisen-fcgi -i headers.php" 0 $? "$T/fcgi1.vg"
head -c 100000 /dev/urandom > "$T/body.bin"
"${VG[@]}" --log-file="$T/fcgi2.vg" "$BIN/heisen-fcgi" -d "@$T/body.bin" -H 'X-A: b' -p 'HEISEN_X=1' "$FPM" "$WWW/echo.php" >"$T/fcgi2.out" 2>&1
check "heisen-fcgi -d @file echo.php" 0 $? "$T/fcgi2.vg"
"${VG[@]}" --log-file="$T/fcgi3.vg" "$BIN/heisen-fcgi" "unix:$T/nobody.sock" "/x.php" >"$T/fcgi3.out" 2>&1
check "heisen-fcgi (backend down: exit 2)" 2 $? "$T/fcgi3.vg"
"${VG[@]}" --log-file="$T/fcgi4.vg" "$BIN/heisen-fcgi" -n 200 -c 4 -k "$FPM" "$WWW/oneline.php" >"$T/fcgi4.out" 2>&1
check "heisen-fcgi -n 200 -c 4 -k" 0 $? "$T/fcgi4.vg"
"${VG[@]}" --log-file="$T/fcgi5.vg" "$BIN/heisen-fcgi" -t 0.5 "$FPM" "$WWW/sleep.php" "s=2" >"$T/fcgi5.out" 2>&1
check "heisen-fcgi -t 0.5 (timeout: exit 124)" 124 $? "$T/fcgi5.vg"
"${VG[@]}" --log-file="$T/fcgi6.vg" "$BIN/heisen-fcgi" --status "$FPM" >"$T/fcgi6.out" 2>&1
check "heisen-fcgi --status" 0 $? "$T/fcgi6.vg"

# --- heisen-httpd: a varied session, then SIGTERM (FastCGI keep-alive off, then on) ---
httpd_session() {   # NAME EXTRA_ARGS...
    local name="$1"; shift
    : > "$T/httpd.err"
    "${VG[@]}" --log-file="$T/httpd-$name.vg" "$BIN/heisen-httpd" -bind 127.0.0.1:0 -sandbox "$WWW" \
        -fastcgi .php "$FPM" -fastcgi .down "unix:$T/nobody.sock" -cpu 2 -foreground -accesslog "$T/access.log" \
        "$@" >"$T/httpd.out" 2>"$T/httpd.err" &
    HPID=$!
    local port="" rc
    for _ in $(seq 1 600); do
        port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\),.*/\1/p' "$T/httpd.err" | head -n1)
        [ -n "$port" ] && break
        kill -0 "$HPID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "valgrind.sh: FAIL heisen-httpd ($name) did not start under valgrind"; cat "$T/httpd.err"; FAILED=1
        return
    fi
    (cd "$HERE" && "$PY" drive_httpd.py "$port") || { echo "valgrind.sh: the HTTP session ($name) had wrong answers"; FAILED=1; }
    kill -TERM "$HPID"
    wait "$HPID"; rc=$?
    HPID=""
    check "heisen-httpd session + SIGTERM ($name)" 0 "$rc" "$T/httpd-$name.vg"
}
httpd_session "fastcgi keep-alive auto"
httpd_session "fastcgi keep-alive on" -fastcgi-keepalive 1 -fastcgi-conns 1

echo "valgrind.sh: $N runs, $([ $FAILED = 0 ] && echo 'all clean' || echo 'FAILURES')"
exit $FAILED
