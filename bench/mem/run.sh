#!/usr/bin/env bash
# bench/mem/run.sh - memory. Standalone: prints a report of its own.
#
# 1. idle:     RSS of heisen-httpd and nginx (1 worker each, static page) before and while
#              bench/lib/holdconns holds IDLE_CONNS idle HTTP/1.1 keep-alive connections.
# 2. inflight: live heap per in-flight FastCGI request: the program runs under
#              LD_PRELOAD=malloc_count.so; C1 then C2 requests are held in flight against
#              the libfcgi responder (?sleep=MS); at the plateau the program is signalled to
#              report its live heap; (live(C2) - live(C1)) / (C2 - C1). For heisen-fcgi and
#              the C epoll client directly, for heisen-httpd and nginx over HTTP.
# 3. allocs:   allocation calls per request in steady state: the same counter, sampled
#              after a warm-up and after a measured load; difference / requests.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib/common.sh"
HTTP_W="$BENCH_TMP/mem"
FCGI_CONNS=400            # heisen-httpd: a FastCGI connection for every in-flight request, as nginx opens
PHP_FPM_SH=/nonexistent   # memory cases use the libfcgi responder only
. "$BENCH_DIR/http/lib.sh"
SUITE=mem
suite_begin $SUITE

if quick; then
    ROUNDS="${BENCH_ROUNDS:-1}"; IDLE_CONNS=500; C1=10; C2=50; N_ALLOC=4000; SLEEP_MS=1000; LOAD_S=1
else
    ROUNDS="${BENCH_ROUNDS:-2}"; IDLE_CONNS=10000; C1=50; C2=250; N_ALLOC=20000; SLEEP_MS=2000; LOAD_S=2
fi
SIG=RTMIN+4

build_helpers || { note $SUITE "bench/lib helpers failed to build: memory suite skipped"; exit 0; }
make -s -C "$BENCH_DIR/fcgi" OUT="$BENCH_BIN" >&2
if [ ! -x "$BENCH_BIN/responder" ] || ! have spawn-fcgi; then
    note $SUITE "libfcgi-dev or spawn-fcgi missing: memory suite skipped"; exit 0
fi
make_docroot
MC="$BENCH_BIN/malloc_count.so"
SERVERS=()
if heisen_bin heisen-httpd; then SERVERS+=(heisen-httpd); else note $SUITE "heisen-httpd not built: skipped"; fi
if have_nginx; then SERVERS+=(nginx); else note $SUITE "nginx missing: skipped"; fi

cleanup() {
    stop_heisen; stop_nginx
    for b in heisen nginxka nginx; do stop_backends $b; done
}
trap cleanup EXIT
for b in heisen nginxka; do start_backends $b; done   # nginx's cases use its keep-alive server

# start_server NAME [ENV...] -> SRV_PID, SRV_PORT, SRV_WORKERS (pids that serve requests)
start_server() {
    local name=$1; shift
    case $name in
        heisen-httpd)
            start_heisen 1 "$@" || return 1
            SRV_PID=$HEISEN_PID; SRV_PORT=$HEISEN_PORT; SRV_WORKERS=$HEISEN_PID ;;
        nginx)
            start_nginx 1 "$@" || return 1
            SRV_PID=$NGINX_PID; SRV_PORT=$NGINX_KA_PORT
            local i
            for ((i = 0; i < 40; i++)); do SRV_WORKERS=$(nginx_worker_pids | tr '\n' ' '); [ -n "$SRV_WORKERS" ] && break; sleep 0.05; done ;;
    esac
}
stop_server() { case $1 in heisen-httpd) stop_heisen ;; nginx) stop_nginx ;; esac; }

# mc_sum FILE TAG PIDS... -> "allocs live" summed over the last TAG line of each pid
mc_sum() {
    local f=$1 tag=$2; shift 2
    python3 - "$f" "$tag" "$@" <<'EOF'
import sys
f, tag, pids = sys.argv[1], sys.argv[2], set(sys.argv[3:])
last = {}
try:
    for line in open(f):
        kv = dict(x.split("=", 1) for x in line.split())
        if kv.get("tag") == tag and kv.get("pid") in pids:
            last[kv["pid"]] = kv
except OSError:
    pass
print(sum(int(v["allocs"]) for v in last.values()), sum(int(v["live"]) for v in last.values()), len(last))
EOF
}

# ---- 1. idle keep-alive connections ----
idle_round() { # SERVER ROUND
    local s=$1 r=$2 mcf="$HTTP_W/mc.idle.$1"
    rm -f "$mcf"
    # under the heap counter too (its own pages are in both RSS figures, so they cancel out)
    start_server "$s" LD_PRELOAD="$MC" MALLOC_COUNT_OUT="$mcf" || { note $SUITE "$s failed to start"; return; }
    "$BENCH_BIN/holdconns" -p "$SRV_PORT" -n 50 -u /index.html < /dev/null > /dev/null 2>&1   # warm-up, closed again
    sleep 0.3
    local pids before after fifo="$HTTP_W/hold.fifo" out="$HTTP_W/hold.out" h0 h1
    pids=$(descendants "$SRV_PID" | tr '\n' ' ')
    before=$(rss_kb $pids)
    kill -s "$SIG" $SRV_WORKERS 2>/dev/null; sleep 0.1
    h0=$(mc_sum "$mcf" signal $SRV_WORKERS)
    rm -f "$fifo" "$out"; mkfifo "$fifo"
    "$BENCH_BIN/holdconns" -p "$SRV_PORT" -n "$IDLE_CONNS" -u /index.html < "$fifo" > "$out" 2>&1 &
    local hp=$! i
    exec 7>"$fifo"
    for ((i = 0; i < 600; i++)); do grep -q '^ready' "$out" 2>/dev/null && break; kill -0 $hp 2>/dev/null || break; sleep 0.1; done
    sleep 0.5
    pids=$(descendants "$SRV_PID" | tr '\n' ' ')
    after=$(rss_kb $pids)
    kill -s "$SIG" $SRV_WORKERS 2>/dev/null; sleep 0.1
    h1=$(mc_sum "$mcf" signal $SRV_WORKERS)
    exec 7>&-
    wait $hp 2>/dev/null
    local held closed
    held=$(awk '/^ready/ {print $2}' "$out"); closed=$(awk '/^closed_by_peer/ {print $2}' "$out")
    rm -f "$fifo"
    stop_server "$s"
    if [ -z "$held" ]; then note $SUITE "$s: holdconns did not get $IDLE_CONNS connections up"; return; fi
    set -- $before; local rb=$1 ab=$2
    set -- $after; local ra=$1 aa=$2
    set -- $h0; local l0=$2
    set -- $h1; local l1=$2
    sample $SUITE idle "{\"conns\":$IDLE_CONNS}" "$s" "$r" \
        "{\"held\":$held,\"closed_by_peer\":${closed:-0},\"rss_before_kb\":$rb,\"rss_after_kb\":$ra,\"anon_before_kb\":$ab,\"anon_after_kb\":$aa,\"rss_per_conn_bytes\":$(( (ra - rb) * 1024 / held )),\"anon_per_conn_bytes\":$(( (aa - ab) * 1024 / held )),\"heap_per_conn_bytes\":$(( (l1 - l0) / held ))}"
    [ "${held:-0}" -lt "$IDLE_CONNS" ] && note $SUITE "$s: only $held of $IDLE_CONNS connections were held"
    return 0
}

log "mem: idle keep-alive RSS, $IDLE_CONNS connections, servers: ${SERVERS[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
    while read -r s; do idle_round "$s" "$r"; done < <(rotate $((r - 1)) "${SERVERS[@]}")
done

# ---- 2. heap per in-flight request ----
# server over HTTP
inflight_server() { # SERVER
    local s=$1 f="$HTTP_W/mc.$1" live1="" live2="" c
    rm -f "$f"
    start_server "$s" LD_PRELOAD="$MC" MALLOC_COUNT_OUT="$f" || { note $SUITE "$s failed to start under malloc_count"; return; }
    "$BENCH_BIN/holdconns" -p "$SRV_PORT" -n 100 -u /hello.fcgi < /dev/null > /dev/null 2>&1
    for c in $C1 $C2; do
        local out="$HTTP_W/inflight.out" i
        rm -f "$out"
        "$BENCH_BIN/holdconns" -i -p "$SRV_PORT" -n "$c" -u "/hello.fcgi?sleep=$SLEEP_MS" > "$out" 2>&1 &
        local hp=$!
        for ((i = 0; i < 100; i++)); do grep -q '^sent' "$out" 2>/dev/null && break; sleep 0.05; done
        sleep 0.4   # the requests reach the backend, which holds them SLEEP_MS
        kill -s "$SIG" $SRV_WORKERS 2>/dev/null
        sleep 0.1
        local v; v=$(mc_sum "$f" signal $SRV_WORKERS)
        wait $hp
        set -- $v
        if [ "$c" = "$C1" ]; then live1=$2; else live2=$2; fi
    done
    stop_server "$s"
    if [ -n "$live1" ] && [ -n "$live2" ] && [ "$live1" != 0 ]; then
        sample $SUITE inflight "{\"what\":\"HTTP request + FastCGI request\",\"c1\":$C1,\"c2\":$C2}" "$s" 1 \
            "{\"live_c1\":$live1,\"live_c2\":$live2,\"heap_per_request_bytes\":$(( (live2 - live1) / (C2 - C1) ))}"
    else
        note $SUITE "$s: no heap figures from malloc_count (LD_PRELOAD not effective?)"
    fi
}

# client directly against the responder
inflight_client() { # NAME
    local name=$1 f="$HTTP_W/mc.$1" live1="" live2="" c sock="$R_SOCK_heisen"
    for c in $C1 $C2; do
        rm -f "$f"
        case $name in
            heisen-fcgi) LD_PRELOAD="$MC" MALLOC_COUNT_OUT="$f" "$HEISEN_BIN_DIR/heisen-fcgi" -q -n "$c" -c "$c" -k --no-probe \
                "unix:$sock" /bench/hello "sleep=$SLEEP_MS" > /dev/null 2>&1 & ;;
            c-epoll) LD_PRELOAD="$MC" MALLOC_COUNT_OUT="$f" "$BENCH_BIN/fcgi_client" -s "$sock" -f /bench/hello -q "sleep=$SLEEP_MS" \
                -n "$c" -c "$c" -k > /dev/null 2>&1 & ;;
        esac
        local p=$!
        sleep 0.5   # connected and sent; the backend holds them SLEEP_MS
        kill -s "$SIG" $p 2>/dev/null
        sleep 0.1
        local v; v=$(mc_sum "$f" signal $p)
        wait $p
        set -- $v
        if [ "$c" = "$C1" ]; then live1=$2; else live2=$2; fi
    done
    if [ -n "$live1" ] && [ -n "$live2" ] && [ "$live1" != 0 ]; then
        sample $SUITE inflight "{\"what\":\"FastCGI request (client alone)\",\"c1\":$C1,\"c2\":$C2}" "$name" 1 \
            "{\"live_c1\":$live1,\"live_c2\":$live2,\"heap_per_request_bytes\":$(( (live2 - live1) / (C2 - C1) ))}"
    fi
}

log "mem: heap per in-flight request ($C1 -> $C2 in flight, backend sleeps ${SLEEP_MS} ms)"
for s in "${SERVERS[@]}"; do inflight_server "$s"; done
CLIENTS=(); quick || CLIENTS=(c-epoll)
heisen_bin heisen-fcgi && CLIENTS+=(heisen-fcgi)
for c in "${CLIENTS[@]}"; do inflight_client "$c"; done

# ---- 3. allocations per request in steady state ----
allocs_server() { # SERVER
    local s=$1 f="$HTTP_W/mc.alloc.$1"
    rm -f "$f"
    start_server "$s" LD_PRELOAD="$MC" MALLOC_COUNT_OUT="$f" || return
    local port=$SRV_PORT
    wrk -t 1 -c 32 -d 1s "http://127.0.0.1:$port/hello.fcgi" > /dev/null 2>&1        # warm-up: pools fill
    kill -s "$SIG" $SRV_WORKERS; sleep 0.1
    local a0; a0=$(mc_sum "$f" signal $SRV_WORKERS)
    local out; out=$(wrk -t 1 -c 32 -d "${LOAD_S}s" -s "$BENCH_DIR/http/report.lua" "http://127.0.0.1:$port/hello.fcgi" 2>/dev/null | grep '^{' | tail -n1)
    kill -s "$SIG" $SRV_WORKERS; sleep 0.1
    local a1; a1=$(mc_sum "$f" signal $SRV_WORKERS)
    stop_server "$s"
    local req; req=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])' 2>/dev/null)
    set -- $a0; local x0=$1
    set -- $a1; local x1=$1
    if [ -n "$req" ] && [ "$req" -gt 0 ] && [ "$x0" -gt 0 ]; then
        sample $SUITE allocs "{\"what\":\"HTTP keep-alive, FastCGI keep-alive, 32 conns\"}" "$s" 1 \
            "{\"requests\":$req,\"allocs\":$((x1 - x0)),\"allocs_per_request\":$(python3 -c "print(($x1 - $x0) / $req)")}"
    else
        note $SUITE "$s: no allocation figures"
    fi
}

allocs_client() { # NAME
    local name=$1 f="$HTTP_W/mc.alloc.$1" n1=$((N_ALLOC / 2)) n2=$N_ALLOC x=() n p
    local rs="$BENCH_DIR/results/tmp/cargo-target/release/fcgi-client-rs"
    for n in $n1 $n2; do
        rm -f "$f"
        case $name in
            heisen-fcgi) LD_PRELOAD="$MC" MALLOC_COUNT_OUT="$f" "$HEISEN_BIN_DIR/heisen-fcgi" -q -n "$n" -c 32 -k --no-probe "unix:$R_SOCK_heisen" /bench/hello > /dev/null 2>&1 & ;;
            c-epoll) LD_PRELOAD="$MC" MALLOC_COUNT_OUT="$f" "$BENCH_BIN/fcgi_client" -s "$R_SOCK_heisen" -f /bench/hello -n "$n" -c 32 -k > /dev/null 2>&1 & ;;
            fastcgi-client-rs) LD_PRELOAD="$MC" MALLOC_COUNT_OUT="$f" "$rs" -s "$R_SOCK_heisen" -f /bench/hello -n "$n" -c 32 -k > /dev/null 2>&1 & ;;
        esac
        p=$!
        wait $p
        local v; v=$(mc_sum "$f" exit $p)
        set -- $v
        x+=("$1")
    done
    if [ "${x[0]:-0}" -gt 0 ] && [ "${x[1]:-0}" -gt 0 ]; then
        sample $SUITE allocs "{\"what\":\"FastCGI keep-alive, c=32 (client alone)\"}" "$name" 1 \
            "{\"requests\":$((n2 - n1)),\"allocs\":$((x[1] - x[0])),\"allocs_per_request\":$(python3 -c "print((${x[1]} - ${x[0]}) / ($n2 - $n1))")}"
    fi
}

log "mem: allocations per request in steady state"
if have wrk; then for s in "${SERVERS[@]}"; do allocs_server "$s"; done; fi
CLIENTS=(c-epoll)
heisen_bin heisen-fcgi && CLIENTS+=(heisen-fcgi)
[ -x "$BENCH_DIR/results/tmp/cargo-target/release/fcgi-client-rs" ] && ! quick && CLIENTS+=(fastcgi-client-rs)
for c in "${CLIENTS[@]}"; do allocs_client "$c"; done

if [ -z "${BENCH_ORCHESTRATED:-}" ]; then
    python3 "$BENCH_DIR/lib/report.py" --suite $SUITE
fi
