#!/usr/bin/env bash
# bench/http/run.sh - heisen-httpd vs nginx in front of FastCGI backends over unix sockets,
# loaded by wrk. Standalone: prints a report of its own.
#
# Fronts: heisen-httpd; nginx-ka (fastcgi_keep_conn on + upstream keepalive); nginx (a new
# FastCGI connection per request). Backends: the libfcgi responder (/hello.fcgi) and
# php-fpm's one-line script (/oneline.php), one instance of each per front.
# Placements ("cores"):
#   shared  everything floats on both cores, 1 then 2 front workers, wrk -t 2
#   pinned  wrk on cpu0 (-t 1), front (1 worker) and backends on cpu1 (taskset)
# Loads: wrk -c 32 and -c 256. Rounds interleave the fronts (order rotated each round).
# CPU per request from /proc/PID/stat (utime+stime) of the front's and backend's processes.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib/common.sh"
. "$HERE/lib.sh"
SUITE=http
suite_begin $SUITE

if quick; then
    ROUNDS="${BENCH_ROUNDS:-1}"; DUR=1; WARM=0; CONNS="32"
    PHASES="pinned:1"
else
    ROUNDS="${BENCH_ROUNDS:-3}"; DUR=2; WARM=1; CONNS="32 256"
    PHASES="shared:1 shared:2 pinned:1"
fi
CPUS=$(nproc 2>/dev/null || echo 1)

if ! have wrk; then note $SUITE "wrk missing (scripts/install-deps.sh --bench): HTTP suite skipped"; exit 0; fi
build_helpers || { note $SUITE "bench/lib helpers failed to build: HTTP suite skipped"; exit 0; }
make -s -C "$BENCH_DIR/fcgi" OUT="$BENCH_BIN" >&2
if [ ! -x "$BENCH_BIN/responder" ] || ! have spawn-fcgi; then
    note $SUITE "libfcgi-dev or spawn-fcgi missing: HTTP suite skipped"; exit 0
fi
FRONTS=()
if heisen_bin heisen-httpd; then FRONTS+=(heisen-httpd); else note $SUITE "heisen-httpd not built ($HEISEN_BIN_DIR/heisen-httpd): skipped"; fi
if have_nginx; then FRONTS+=(nginx-ka nginx); else note $SUITE "nginx missing: skipped"; fi
[ ${#FRONTS[@]} -gt 0 ] || exit 0
BACKENDS="libfcgi"
if have_php_fpm; then BACKENDS="libfcgi php-fpm"; else note $SUITE "php-fpm (or scripts/php-fpm.sh) missing: php-fpm cases skipped"; fi
if [ "$CPUS" -lt 2 ]; then PHASES="shared:1"; note $SUITE "fewer than 2 cores: pinned and 2-worker cases skipped"; fi
make_docroot

cleanup() {
    stop_heisen; stop_nginx
    for b in heisen nginxka nginx; do stop_backends $b; done
}
trap cleanup EXIT

front_pid() { case $1 in heisen-httpd) echo "$HEISEN_PID" ;; *) echo "$NGINX_PID" ;; esac; }
front_port() { case $1 in heisen-httpd) echo "$HEISEN_PORT" ;; nginx-ka) echo "$NGINX_KA_PORT" ;; nginx) echo "$NGINX_PORT" ;; esac; }
front_backend_name() { case $1 in heisen-httpd) echo heisen ;; nginx-ka) echo nginxka ;; nginx) echo nginx ;; esac; }
url_path() { [ "$1" = libfcgi ] && echo /hello.fcgi || echo /oneline.php; }

# one wrk run -> metrics JSON (empty on failure)
measure() { # FRONT BACKEND CONNS DURATION PINNED
    local front=$1 backend=$2 conns=$3 dur=$4 pinned=$5
    local port; port=$(front_port "$front")
    local bname; bname=$(front_backend_name "$front")
    local fp bp
    fp=$(descendants "$(front_pid "$front")" | tr '\n' ' ')
    bp=$(backend_pids "$bname" "$backend" | tr '\n' ' ')
    local f0 b0 f1 b1 out threads=2 pre=()
    [ "$pinned" = 1 ] && { threads=1; pre=(taskset -c 0); }
    f0=$(cpu_ticks $fp); b0=$(cpu_ticks $bp)
    local cr="$HTTP_W/wrk.cpu"
    rm -f "$cr"
    out=$("$BENCH_BIN/cpurun" -o "$cr" -- "${pre[@]}" wrk -t "$threads" -c "$conns" -d "${dur}s" --latency -s "$HERE/report.lua" \
        "http://127.0.0.1:$port$(url_path "$backend")" 2>>"$HTTP_W/wrk.err" | grep '^{' | tail -n1)
    f1=$(cpu_ticks $fp); b1=$(cpu_ticks $bp)
    [ -n "$out" ] || return 0
    python3 - "$out" "$((f1 - f0))" "$((b1 - b0))" "$CLK_TCK" "$cr" <<'EOF'
import json, sys
m = json.loads(sys.argv[1]); ft, bt, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
try:
    wrk_cpu = json.loads(open(sys.argv[5]).read().strip().splitlines()[-1])["cpu_us"]
except (OSError, ValueError, IndexError, KeyError):
    wrk_cpu = None
req = m["requests"]
if req:
    m["front_cpu_us_per_req"] = ft * 1e6 / hz / req
    m["backend_cpu_us_per_req"] = bt * 1e6 / hz / req
    if wrk_cpu is not None:
        m["wrk_cpu_us_per_req"] = wrk_cpu / req
m["front_cpu_s"] = ft / hz
print(json.dumps(m))
EOF
}

for phase in $PHASES; do
    place=${phase%%:*}; workers=${phase#*:}
    pinned=0; TASKSET=""
    if [ "$place" = pinned ]; then pinned=1; TASKSET="taskset -c 1"; fi
    log "http: $place, $workers worker(s): starting backends and fronts"
    for b in heisen nginxka nginx; do start_backends $b; done
    for b in heisen nginxka nginx; do
        v="R_PID_$b"; [ -n "${!v}" ] || note $SUITE "libfcgi responder for $b failed to start"
        v="P_SOCK_$b"; [ -n "${!v}" ] || { case " $BACKENDS " in *php-fpm*) note $SUITE "php-fpm for $b failed to start (see $HTTP_W/php-fpm.err)" ;; esac; }
    done
    ACTIVE=()
    for f in "${FRONTS[@]}"; do
        case $f in
            heisen-httpd) if start_heisen "$workers"; then ACTIVE+=("$f"); else note $SUITE "heisen-httpd failed to start (see $HTTP_W/heisen-httpd.log)"; fi ;;
            nginx-ka) if start_nginx "$workers"; then ACTIVE+=(nginx-ka nginx); else note $SUITE "nginx failed to start (see $HTTP_W/nginx/start.log)"; fi ;;
        esac
    done
    # warm-up: every front on every backend
    if [ "$WARM" -gt 0 ]; then
        for f in "${ACTIVE[@]}"; do
            for be in $BACKENDS; do measure "$f" "$be" 32 "$WARM" "$pinned" >/dev/null; done
        done
    fi
    log "http: $place, $workers worker(s): ${ACTIVE[*]} x {$BACKENDS} x conns {$CONNS}, $ROUNDS round(s) of ${DUR}s"
    for ((r = 1; r <= ROUNDS; r++)); do
        for be in $BACKENDS; do
            for conns in $CONNS; do
                while read -r f; do
                    m=$(measure "$f" "$be" "$conns" "$DUR" "$pinned")
                    if [ -z "$m" ]; then
                        note $SUITE "wrk gave no result for $f / $be / $conns conns ($place, $workers workers)"
                        continue
                    fi
                    bname=$(front_backend_name "$f"); v="P_SOCK_$bname"
                    if [ "$be" = php-fpm ] && [ -z "${!v}" ]; then continue; fi
                    sample $SUITE wrk "{\"pinned\":$pinned,\"workers\":$workers,\"backend\":\"$be\",\"conns\":$conns}" "$f" "$r" "$m"
                done < <(rotate $((r - 1)) "${ACTIVE[@]}")
            done
        done
    done
    cleanup
done

# ---- user-space instructions per request of the front (callgrind) ----
# Each front runs under callgrind (nginx as a single process); after a warm-up the counts are
# zeroed (callgrind_control -z), wrk runs with 8 connections against the libfcgi responder,
# and the front is stopped: its final dump (taken at exit, so the profile keeps its call
# context; shutdown adds well under 1%) divided by wrk's request count is the front's
# user-space Ir per request. heisen-httpd's profile (top entries) goes in the report.
if have valgrind && have callgrind_control && ! quick; then
    log "http: callgrind instructions per request of the fronts"
    NO_PHP=1; TASKSET=""
    for b in heisen nginxka; do start_backends $b; done
    for f in "${FRONTS[@]}"; do
        [ "$f" = nginx ] && continue
        cg="$HTTP_W/cg.$f"
        rm -f "$cg" "$cg".*
        FRONT_PREFIX="valgrind --tool=callgrind --callgrind-out-file=$cg"
        case $f in
            heisen-httpd) start_heisen 1 || { note $SUITE "heisen-httpd did not start under valgrind"; FRONT_PREFIX=""; continue; }; vp=$HEISEN_PID; port=$HEISEN_PORT ;;
            nginx-ka) start_nginx 1 || { note $SUITE "nginx did not start under valgrind"; FRONT_PREFIX=""; continue; }; vp=$NGINX_PID; port=$NGINX_KA_PORT ;;
        esac
        wrk -t 1 -c 8 -d 1s "http://127.0.0.1:$port/hello.fcgi" >/dev/null 2>&1
        callgrind_control -z "$vp" >/dev/null 2>&1
        out=$(wrk -t 1 -c 8 -d "$(quick && echo 1 || echo 2)s" -s "$HERE/report.lua" "http://127.0.0.1:$port/hello.fcgi" 2>/dev/null | grep '^{' | tail -n1)
        kill -TERM "$vp" 2>/dev/null
        for ((i = 0; i < 300; i++)); do kill -0 "$vp" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$vp" 2>/dev/null
        wait "$vp" 2>/dev/null
        HEISEN_PID=""; NGINX_PID=""; FRONT_PREFIX=""
        [ -s "$cg" ] || echo "http: $f under callgrind left no dump (see $HTTP_W/*.log)" >> "$HTTP_W/wrk.err"
        ir=$(awk '/^totals:/ {print $2}' "$cg" 2>/dev/null)
        req=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])' 2>/dev/null)
        if [ -n "$ir" ] && [ -n "$req" ] && [ "$req" -gt 0 ]; then
            sample $SUITE callgrind "{\"backend\":\"libfcgi\",\"conns\":8}" "$f" 1 \
                "{\"ir\":$ir,\"requests\":$req,\"ir_per_request\":$((ir / req))}"
            if [ "$f" = heisen-httpd ] && have callgrind_annotate; then
                # inclusive: after callgrind_control -z the self costs collapse onto the
                # thread's root, the inclusive ones stay right
                callgrind_annotate --auto=no --inclusive=yes --threshold=99 "$cg" 2>/dev/null | sed -n '/^Ir /,$p' |
                    grep -v -e '^-' -e '^ *$' | sed -n '1,40p' > "$BENCH_TMP/profile.heisen-httpd.txt" || true
            fi
        else
            note $SUITE "$f: no callgrind figures"
        fi
        rm -f "$cg" "$cg".*
    done
    for b in heisen nginxka; do stop_backends $b; done
fi

if [ -z "${BENCH_ORCHESTRATED:-}" ]; then
    python3 "$BENCH_DIR/lib/report.py" --suite $SUITE
fi
