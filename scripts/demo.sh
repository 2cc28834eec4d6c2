#!/usr/bin/env bash
# scripts/demo.sh -- heisen's demo (`make demo`). Issue 5 §3.
#
#   scripts/demo.sh            build, then run everything (well under a minute after the build)
#
# Environment knobs:
#   DEMO_SKIP_BUILD=1   do not run `make` (the Makefile's demo target may build first)
#   DEMO_KEEP=1         keep the temporary directory (logs, php-fpm.conf) and say where it is
#   DEMO_FCGI_N=5000    requests sent straight to php-fpm with heisen-fcgi (-c DEMO_FCGI_C=32)
#   DEMO_HTTP_N=3000    requests sent over HTTP to heisen-httpd (-c DEMO_HTTP_C=16)
#   DEMO_STORY_N=5000   requests in the story replay
#   HEISEN_FCGI, HEISEN_HTTPD, HEISEN_STORY   other paths for the binaries below
# Exit status: 0 when every step that ran succeeded (and the story had no 502), 1 otherwise.
#
# ---------------------------------------------------------------------------------------
# BINARIES THIS SCRIPT EXPECTS (built by `make`); each missing one is reported and its step
# skipped, the rest of the demo still runs:
#   target/release/libheisen.so   the library (cargo build --release)
#   build/bin/heisen-fcgi         FastCGI one-shot client and load generator (issue 5 §2):
#                                   heisen-fcgi [-i] BACKEND SCRIPT [QUERY]
#                                   heisen-fcgi -n N -c C [-k] BACKEND SCRIPT
#   build/bin/heisen-httpd        HTTP/1.1 front (issue 5 §1):
#                                   heisen-httpd -bind PORT -sandbox DIR -fastcgi .php BACKEND
#                                                -indexfiles index.php -cpu 1 -foreground
#   build/bin/heisen-story        the story replay on the C API (examples/c/heisen-story.c);
#                                 fallback target/release/examples/story. Called as
#                                   heisen-story -n N BACKEND    (usage: [-n N] [-c C] [BACKEND])
#                                 and expected to print, among anything else, the lines
#                                   502s: <count of requests that ended BAD_GATEWAY>
#                                   read+hup events: <HEISEN_COUNTER_READ_WITH_HUP>
#                                 (exit 0 when every request completed).
# Also used: scripts/php-fpm.sh, scripts/http_load.py, tests/harness/fcgi_peer.py,
# tests/harness/fcgi_client.py, python3, php-fpm (scripts/install-deps.sh installs it).
# ---------------------------------------------------------------------------------------
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
PY="${PYTHON:-python3}"
LIB="$ROOT/target/release/libheisen.so"
FCGI="${HEISEN_FCGI:-$ROOT/build/bin/heisen-fcgi}"
HTTPD="${HEISEN_HTTPD:-$ROOT/build/bin/heisen-httpd}"
STORY="${HEISEN_STORY:-$ROOT/build/bin/heisen-story}"
[ -x "$STORY" ] || { [ -x "$ROOT/target/release/examples/story" ] && STORY="$ROOT/target/release/examples/story"; }
FAILED=0
export LD_LIBRARY_PATH="$ROOT/target/release${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

FCGI_N="${DEMO_FCGI_N:-5000}";  FCGI_C="${DEMO_FCGI_C:-32}"
HTTP_N="${DEMO_HTTP_N:-3000}";  HTTP_C="${DEMO_HTTP_C:-16}"
STORY_N="${DEMO_STORY_N:-5000}"

if [ -t 1 ]; then B=$'\e[1m'; G=$'\e[32m'; Y=$'\e[33m'; R=$'\e[31m'; N=$'\e[0m'; else B= G= Y= R= N=; fi
step() { echo; echo "${B}== $*${N}"; }
note() { echo "   $*"; }
warn() { echo "   ${Y}$*${N}"; }
fail() { echo "   ${R}$*${N}"; FAILED=1; }
indent() { sed 's/^/   | /'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

TMP=""
PIDS=()
FPM_DIR=""
cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    PIDS=()
    [ -n "$FPM_DIR" ] && scripts/php-fpm.sh stop "$FPM_DIR" >/dev/null 2>&1
    FPM_DIR=""
    if [ -n "$TMP" ] && [ "${DEMO_KEEP:-0}" != 1 ]; then rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_tcp() { # PORT PID: up to 10 s
    local i
    for ((i = 0; i < 100; i++)); do
        "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}
wait_line() { # FILE PID: until FILE has a line (the peer's "ready")
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------
step_deps() {
    step "0. dependencies (scripts/install-deps.sh)"
    if ! scripts/install-deps.sh; then
        fail "missing dependencies (see above); the demo needs at least php-fpm and python3"
        exit 1
    fi
    note "all present"
}

step_build() {
    step "1. build"
    if [ "${DEMO_SKIP_BUILD:-0}" = 1 ]; then
        note "skipped (DEMO_SKIP_BUILD=1)"
    else
        local t0; t0=$(now)
        local cmd=(make)
        [ -f Makefile ] || cmd=(cargo build --release)
        note "running: ${cmd[*]}  (log: $TMP/build.log)"
        if ! "${cmd[@]}" >"$TMP/build.log" 2>&1; then
            fail "build failed; last lines of $TMP/build.log:"
            tail -n 25 "$TMP/build.log" | indent
            DEMO_KEEP=1
            exit 1
        fi
        note "built in $(since "$t0") s"
    fi
    local f
    for f in "$LIB" "$FCGI" "$HTTPD" "$STORY"; do
        if [ -e "$f" ]; then note "found   ${f#$ROOT/}"; else warn "missing ${f#$ROOT/} (its step is skipped)"; fi
    done
}

step_phpfpm() {
    step "2. a php-fpm of our own (scripts/php-fpm.sh)"
    FPM_DIR="$TMP/fpm"
    if ! FPM=$(scripts/php-fpm.sh start "$FPM_DIR" --workers 4 --quiet); then
        fail "php-fpm did not start (see above)"
        FPM_DIR=""
        exit 1
    fi
    WWW="$FPM_DIR/www"
    note "php-fpm on $FPM, 4 workers, scripts in $WWW"
    note "oneline.php is the story's one-line script:  $(cat "$WWW/oneline.php")"
}

step_fcgi() {
    step "3. FastCGI straight to php-fpm with heisen-fcgi (no web server)"
    if [ ! -x "$FCGI" ]; then
        warn "build/bin/heisen-fcgi is not built: showing php-fpm with the harness's reference client instead"
        "$PY" tests/harness/fcgi_client.py -i "$FPM" "$WWW/oneline.php" | indent
        "$PY" tests/harness/fcgi_client.py -n 500 "$FPM" "$WWW/oneline.php" | indent
        return 0
    fi
    note "\$ heisen-fcgi -i $FPM $WWW/oneline.php"
    "$FCGI" -i "$FPM" "$WWW/oneline.php" 2>&1 | indent
    note "\$ heisen-fcgi $FPM $WWW/info.php | grep -m1 'PHP Version'    # phpinfo()"
    "$FCGI" "$FPM" "$WWW/info.php" 2>&1 | grep -m1 -o 'PHP Version[^<]*<[^>]*>[^<]*' | sed 's/<[^>]*>/ /g' | indent
    note "\$ heisen-fcgi -n $FCGI_N -c $FCGI_C -k $FPM $WWW/oneline.php"
    local t0; t0=$(now)
    "$FCGI" -n "$FCGI_N" -c "$FCGI_C" -k "$FPM" "$WWW/oneline.php" 2>&1 | tr '\r' '\n' | grep -v '^$' | indent
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || fail "heisen-fcgi exited with $rc"
    note "($(since "$t0") s)"
}

step_http() {
    step "4. HTTP: heisen-httpd in front of php-fpm"
    if [ ! -x "$HTTPD" ]; then
        warn "build/bin/heisen-httpd is not built: HTTP step skipped"
        return 0
    fi
    HTTP_PORT=$(free_port)
    note "\$ heisen-httpd -bind $HTTP_PORT -sandbox $WWW -fastcgi .php $FPM -indexfiles index.php -cpu 1 -foreground"
    "$HTTPD" -bind "$HTTP_PORT" -sandbox "$WWW" -fastcgi .php "$FPM" -indexfiles index.php -cpu 1 -foreground \
        >"$TMP/httpd.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    if ! wait_tcp "$HTTP_PORT" "$pid"; then
        fail "heisen-httpd did not start listening on port $HTTP_PORT; its log:"
        tail -n 20 "$TMP/httpd.log" | indent
        return 0
    fi
    local base="http://127.0.0.1:$HTTP_PORT"
    if command -v curl >/dev/null 2>&1; then
        note "\$ curl -si $base/oneline.php"
        curl -si --max-time 5 "$base/oneline.php" 2>&1 | tr -d '\r' | indent
        note "\$ curl -s $base/info.php | grep -m1 'PHP Version'"
        curl -s --max-time 5 "$base/info.php" | grep -m1 -o 'PHP Version[^<]*<[^>]*>[^<]*' | sed 's/<[^>]*>/ /g' | indent
    fi
    note "\$ scripts/http_load.py -n $HTTP_N -c $HTTP_C --expect 200 $base/oneline.php $base/static.txt"
    "$PY" scripts/http_load.py -n "$HTTP_N" -c "$HTTP_C" --expect 200 "$base/oneline.php" "$base/static.txt" 2>&1 | indent
    [ "${PIPESTATUS[0]}" = 0 ] || fail "some HTTP requests failed (see above; log: $TMP/httpd.log)"
}

# ---------------------------------------------------------------------------------------
# THE STORY: a FastCGI backend that replies in two writes and closes at once
# (tests/harness/fcgi_peer.py --mode story). A reactor that handles hang-up before reading
# loses the reply and answers 502; heisen must show 0 502s, and the reactor's counter shows
# how many of those events really arrived with readable data and hang-up together.
# ---------------------------------------------------------------------------------------
story_replay() {
    step "5. the story: a backend that replies in two writes and closes at once, $STORY_N requests"
    local sock="$TMP/story.sock"
    "$PY" tests/harness/fcgi_peer.py --listen "unix:$sock" --mode story >"$TMP/peer.ready" 2>"$TMP/peer.log" &
    local ppid=$!
    PIDS+=("$ppid")
    if ! wait_line "$TMP/peer.ready" "$ppid"; then
        fail "the scripted peer did not start:"; indent <"$TMP/peer.log"; return 0
    fi
    note "backend: tests/harness/fcgi_peer.py --mode story on unix:$sock"
    note "(each reply: STDOUT then END_REQUEST in two send() calls, then close())"
    local ran=0 out n502="" nhup="" h502=""

    if [ -x "$STORY" ]; then
        ran=1
        note "\$ ${STORY#$ROOT/} -n $STORY_N unix:$sock"
        local t0; t0=$(now)
        out=$("$STORY" -n "$STORY_N" "unix:$sock" 2>&1); local rc=$?
        echo "$out" | indent
        note "($(since "$t0") s, exit $rc)"
        n502=$(echo "$out" | sed -n 's/^[[:space:]]*502s:[[:space:]]*\([0-9]*\).*/\1/p' | tail -n1)
        nhup=$(echo "$out" | sed -n 's/^[[:space:]]*read+hup events:[[:space:]]*\([0-9]*\).*/\1/p' | tail -n1)
    else
        warn "build/bin/heisen-story (or target/release/examples/story) is not built"
    fi

    if [ -x "$HTTPD" ]; then
        ran=1
        local port; port=$(free_port)
        "$HTTPD" -bind "$port" -sandbox "$WWW" -fastcgi .php "unix:$sock" -indexfiles index.php -cpu 1 -foreground \
            >"$TMP/httpd-story.log" 2>&1 &
        local hpid=$!
        PIDS+=("$hpid")
        if wait_tcp "$port" "$hpid"; then
            note "the same through heisen-httpd (.php -> the story backend), over HTTP:"
            note "\$ scripts/http_load.py -n $STORY_N -c 16 --json http://127.0.0.1:$port/oneline.php"
            local js
            js=$("$PY" scripts/http_load.py -n "$STORY_N" -c 16 --json "http://127.0.0.1:$port/oneline.php" 2>&1)
            echo "$js" | sed '$d' | indent
            h502=$(echo "$js" | tail -n1 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["statuses"].get("502", 0))' 2>/dev/null)
        else
            warn "heisen-httpd did not start for the story backend"; tail -n 5 "$TMP/httpd-story.log" | indent
        fi
    fi

    if [ "$ran" = 0 ] && [ -x "$FCGI" ]; then
        ran=1
        note "\$ heisen-fcgi -n $STORY_N -c 32 unix:$sock $WWW/oneline.php"
        "$FCGI" -n "$STORY_N" -c 32 "unix:$sock" "$WWW/oneline.php" 2>&1 | tr '\r' '\n' | grep -v '^$' | indent
    fi
    if [ "$ran" = 0 ]; then
        warn "no heisen binary to replay the story with; the backend itself, with the reference client:"
        "$PY" tests/harness/fcgi_client.py -i "unix:$sock" /story.php | indent
    fi

    echo
    local line="" bad=0
    if [ -n "$n502" ]; then
        line="502s: $n502   events with readable data and hang-up together: ${nhup:-(not reported)}"
        [ "$n502" = 0 ] || bad=1
    fi
    if [ -n "$h502" ]; then
        line="${line:+$line   }HTTP 502s through heisen-httpd: $h502"
        [ "$h502" = 0 ] || bad=1
    fi
    if [ -z "$line" ]; then
        warn "story: no 502 count available (see above)"
    elif [ "$bad" = 0 ]; then
        echo "   ${G}${B}story: $line${N}"
    else
        FAILED=1
        echo "   ${R}${B}story: $line${N}"
    fi
}

finish() {
    step "where to look next"
    note "README.md                  the two commands and the API overview"
    note "docs/DESIGN.md             the C ABI contract (include/heisen.h is generated from src/ffi/)"
    note "examples/, build/bin/      heisen-httpd, heisen-fcgi: C programs on the C API"
    note "tests/php/README.md        the PHP test scripts and what php-fpm really sends"
    note "tests/harness/fcgi_peer.py a scripted FastCGI backend: story, close, garbage, truncated, silent, ..."
    note "scripts/php-fpm.sh         start a private php-fpm:  scripts/php-fpm.sh start /tmp/fpm"
    note "make test                  the full test run"
    if [ "${DEMO_KEEP:-0}" = 1 ]; then note "logs and configs of this run: $TMP"; fi
}

# ---------------------------------------------------------------------------------------
T0=$(now)
TMP=$(mktemp -d /tmp/heisen-demo.XXXXXX) || exit 1
chmod 755 "$TMP"   # reachable by servers whose workers run as another user
echo "${B}heisen demo${N}  (temporary files in $TMP)"
step_deps
step_build
T1=$(now)
step_phpfpm
step_fcgi
step_http
story_replay
cleanup_msg="stopped php-fpm"; [ ${#PIDS[@]} -gt 0 ] && cleanup_msg="$cleanup_msg and ${#PIDS[@]} more process(es) this demo started"
keep="${DEMO_KEEP:-0}"
cleanup
DEMO_KEEP="$keep"
step "done"
note "$cleanup_msg"
note "demo ran in $(since "$T1") s after the build ($(since "$T0") s in all)"
finish
if [ "$FAILED" != 0 ]; then echo; echo "${R}${B}demo: something failed (see above)${N}"; exit 1; fi
exit 0
