#!/usr/bin/env bash
# scripts/php-fpm.sh -- a private php-fpm for tests, benchmarks and the demo.
#
#   scripts/php-fpm.sh start  DIR [--workers N] [--tcp PORT] [--max-requests N]
#                                 [--set 'pool.key = value']... [--quiet]
#   scripts/php-fpm.sh stop   DIR
#   scripts/php-fpm.sh reload DIR        # SIGUSR2 (graceful reload), waits until it answers again
#   scripts/php-fpm.sh status DIR        # exit 0 and php-fpm's /status page if running, else 3
#   scripts/php-fpm.sh address DIR       # prints the FastCGI address of a started DIR
#   scripts/php-fpm.sh workers DIR       # prints the worker pids, one a line (for chaos tests)
#
# start:
#   * creates DIR (made go+rx, so that web server workers running as another user, e.g.
#     nginx's, reach the socket and docroot) and DIR/www, a copy of tests/php/: hello.php, echo.php, oneline.php, ...);
#   * writes DIR/php-fpm.conf: one pool "heisen", pm=static with N workers (default 4),
#     listening on DIR/php-fpm.sock (mode 0666) or, with --tcp PORT, on 127.0.0.1:PORT
#     (--tcp 0 picks a free port), pid DIR/php-fpm.pid, log DIR/php-fpm.log,
#     catch_workers_output=yes, clear_env=no, pm.status_path=/status, ping.path=/ping
#     (answers "pong"), request_terminate_timeout=30s, post_max_size=1G,
#     pm.max_requests=N with --max-requests (default 0 = never recycle); each --set line is
#     appended to the pool section as is (e.g. --set 'pm = dynamic' --set 'pm.start_servers = 2',
#     --set 'php_admin_value[memory_limit] = 64M'; a later line overrides an earlier key);
#     as root the pool runs as root (php-fpm -R);
#   * starts php-fpm (binary: $PHP_FPM, else /usr/sbin/php-fpm8.2, the newest
#     /usr/sbin/php-fpm8.*, php-fpm8.* or php-fpm on PATH) and waits (up to 10 s) until it
#     answers /ping;
#   * prints ONE line on stdout: the address, "unix:DIR/php-fpm.sock" or "tcp:127.0.0.1:PORT"
#     (also written to DIR/address). Everything else goes to stderr.
#   If DIR already has a running php-fpm it is stopped first.
#
# stop: SIGQUIT (graceful), after 5 s SIGTERM, after 2 s more SIGKILL; removes the socket.
#
# Example (shell test):
#   d=$(mktemp -d); addr=$(scripts/php-fpm.sh start "$d" --workers 2)
#   python3 tests/harness/fcgi_client.py "$addr" "$d/www/hello.php"   # Hello, world!
#   scripts/php-fpm.sh stop "$d"
#
# Exit status: 0 ok; 1 usage; 2 php-fpm not installed (run scripts/install-deps.sh);
# 3 not running (status/stop/reload); 4 php-fpm failed to start (tail of the log printed).
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
CLIENT="$ROOT/tests/harness/fcgi_client.py"
PY="${PYTHON:-python3}"

say() { echo "php-fpm.sh: $*" >&2; }
usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 1; }

find_fpm() {
    if [ -n "${PHP_FPM:-}" ]; then echo "$PHP_FPM"; return 0; fi
    if [ -x /usr/sbin/php-fpm8.2 ]; then echo /usr/sbin/php-fpm8.2; return 0; fi
    local c
    c=$(ls -1 /usr/sbin/php-fpm8.* 2>/dev/null | sort -V | tail -n1)
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
    c=$(compgen -c php-fpm8. 2>/dev/null | sort -V | tail -n1)
    if [ -n "$c" ]; then command -v "$c"; return 0; fi
    if command -v php-fpm >/dev/null 2>&1; then command -v php-fpm; return 0; fi
    if [ -x /usr/sbin/php-fpm ]; then echo /usr/sbin/php-fpm; return 0; fi
    return 1
}

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

pid_of() {   # prints the pid if php-fpm of DIR is alive
    local f="$1/php-fpm.pid" p
    [ -s "$f" ] || return 1
    p=$(cat "$f" 2>/dev/null) || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
    echo "$p"
}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_ready() {   # DIR ADDRESS SECONDS PID
    local i n=$(( $3 * 10 ))
    for ((i = 0; i < n; i++)); do
        if "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import fcgi_client as f; sys.exit(0 if f.ping(sys.argv[2], timeout=2) else 1)' \
            "$(dirname "$CLIENT")" "$2" 2>/dev/null; then
            return 0
        fi
        if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null && ! pid_of "$1" >/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

do_stop() {
    local dir="$1" p i
    if ! p=$(pid_of "$dir"); then
        rm -f "$dir/php-fpm.sock"
        return 3
    fi
    kill -QUIT "$p" 2>/dev/null
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
        say "php-fpm $p ignored SIGQUIT, sending SIGTERM"
        kill -TERM "$p" 2>/dev/null
        for ((i = 0; i < 20; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    fi
    if kill -0 "$p" 2>/dev/null; then
        say "php-fpm $p ignored SIGTERM, sending SIGKILL"
        kill -KILL "$p" 2>/dev/null
        pkill -KILL -P "$p" 2>/dev/null   # its workers (children of this pid only)
        sleep 0.2
    fi
    rm -f "$dir/php-fpm.sock" "$dir/php-fpm.pid"
    return 0
}

cmd_start() {
    local dir="" workers=4 tcp="" quiet=0 maxreq=0 extra=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --workers) workers="${2:?--workers N}"; shift 2 ;;
            --tcp) tcp="${2:?--tcp PORT}"; shift 2 ;;
            --max-requests) maxreq="${2:?--max-requests N}"; shift 2 ;;
            --set) extra+="${2:?--set 'key = value'}"$'\n'; shift 2 ;;
            --quiet) quiet=1; shift ;;
            -*) say "unknown option $1"; usage ;;
            *) [ -z "$dir" ] || usage; dir="$1"; shift ;;
        esac
    done
    [ -n "$dir" ] || usage
    case "$workers" in ''|*[!0-9]*|0) say "--workers wants a positive number"; exit 1 ;; esac

    local fpm
    if ! fpm=$(find_fpm); then
        say "php-fpm is not installed: run scripts/install-deps.sh as root (apt-get install php-fpm php-cli)"
        exit 2
    fi
    dir=$(abs_dir "$dir") || { say "cannot create $dir"; exit 1; }
    chmod go+rx "$dir" 2>/dev/null   # a web server running as another user must reach the socket
    if pid_of "$dir" >/dev/null; then
        say "a php-fpm is already running for $dir; stopping it first"
        do_stop "$dir"
    fi

    mkdir -p "$dir/www"
    cp -R "$ROOT/tests/php/." "$dir/www/"

    local listen address
    if [ -n "$tcp" ]; then
        [ "$tcp" = 0 ] && tcp=$(free_port)
        listen="127.0.0.1:$tcp"
        address="tcp:127.0.0.1:$tcp"
    else
        listen="$dir/php-fpm.sock"
        address="unix:$dir/php-fpm.sock"
        if [ ${#listen} -gt 100 ]; then
            say "socket path too long for a unix socket (${#listen} > 100): $listen"
            exit 1
        fi
    fi

    local user_lines="" root_flag=()
    if [ "$(id -u)" = 0 ]; then
        user_lines=$'user = root\ngroup = root'
        root_flag=(-R)
    fi

    cat > "$dir/php-fpm.conf" <<EOF
; written by scripts/php-fpm.sh -- a private php-fpm for heisen's tests and demo
[global]
pid = $dir/php-fpm.pid
error_log = $dir/php-fpm.log
log_level = notice
daemonize = yes
process_control_timeout = 5s

[heisen]
$user_lines
listen = $listen
listen.mode = 0666
listen.backlog = 1024
pm = static
pm.max_children = $workers
pm.max_requests = $maxreq
pm.status_path = /status
ping.path = /ping
ping.response = pong
catch_workers_output = yes
decorate_workers_output = no
clear_env = no
request_terminate_timeout = 30s
php_admin_value[post_max_size] = 1G
php_admin_value[upload_max_filesize] = 1G
php_admin_value[memory_limit] = 512M
php_admin_flag[log_errors] = on
php_admin_value[output_buffering] = 4096
$extra
EOF

    rm -f "$dir/php-fpm.sock" "$dir/php-fpm.pid"
    : >> "$dir/php-fpm.log"
    local logsize
    logsize=$(wc -c < "$dir/php-fpm.log")
    if ! "$fpm" -y "$dir/php-fpm.conf" "${root_flag[@]}" >>"$dir/php-fpm.log" 2>&1; then
        say "php-fpm ($fpm) failed to start; end of $dir/php-fpm.log:"
        tail -c +"$((logsize + 1))" "$dir/php-fpm.log" | tail -n 20 >&2
        exit 4
    fi
    local p=""
    for ((i = 0; i < 50; i++)); do p=$(pid_of "$dir") && break; sleep 0.1; done
    if ! wait_ready "$dir" "$address" 10 "$p"; then
        say "php-fpm ($fpm) did not answer /ping on $address within 10 s; end of $dir/php-fpm.log:"
        tail -c +"$((logsize + 1))" "$dir/php-fpm.log" | tail -n 20 >&2
        do_stop "$dir" >/dev/null 2>&1
        exit 4
    fi
    echo "$address" > "$dir/address"
    [ "$quiet" = 1 ] || say "php-fpm $(pid_of "$dir") ($fpm, $workers workers) on $address, docroot $dir/www"
    echo "$address"
}

[ $# -ge 2 ] || usage
cmd="$1"; shift
case "$cmd" in
    start) cmd_start "$@" ;;
    stop)
        dir=$(abs_dir "$1") || exit 1
        do_stop "$dir"; rc=$?
        [ $rc = 3 ] && say "no php-fpm running for $dir"
        exit $rc ;;
    reload)
        dir=$(abs_dir "$1") || exit 1
        p=$(pid_of "$dir") || { say "no php-fpm running for $dir"; exit 3; }
        addr=$(cat "$dir/address" 2>/dev/null) || { say "no $dir/address"; exit 3; }
        kill -USR2 "$p"
        sleep 0.2
        if ! wait_ready "$dir" "$addr" 10; then say "php-fpm did not come back after SIGUSR2"; exit 4; fi
        exit 0 ;;
    status)
        dir=$(abs_dir "$1") || exit 1
        p=$(pid_of "$dir") || { echo "php-fpm for $dir: not running"; exit 3; }
        addr=$(cat "$dir/address" 2>/dev/null)
        echo "php-fpm for $dir: running, pid $p, address $addr"
        [ -n "$addr" ] && "$PY" "$CLIENT" --status "$addr"
        exit 0 ;;
    workers)
        dir=$(abs_dir "$1") || exit 1
        p=$(pid_of "$dir") || { say "no php-fpm running for $dir"; exit 3; }
        pgrep -P "$p" || true
        exit 0 ;;
    address)
        dir=$(abs_dir "$1") || exit 1
        cat "$dir/address" 2>/dev/null || exit 3 ;;
    -h|--help|help) usage ;;
    *) say "unknown command $cmd"; usage ;;
esac
