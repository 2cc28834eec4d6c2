# bench/lib/common.sh - sourced by bench/run.sh and by every suite's run.sh.
#
# Every suite appends one JSON object per measurement to $BENCH_SAMPLES:
#   {"suite":"reactor","table":"...","case":{...},"contender":"libev","round":2,"m":{"loop_us":123.4,...}}
# and one per skipped piece to $BENCH_NOTES:
#   {"suite":"http","note":"heisen-httpd not built (build/bin/heisen-httpd): skipped"}
# bench/lib/report.py turns them into bench/results/latest.md and latest.json.
#
# Environment (all optional):
#   BENCH_QUICK=1      smoke run (1-2 minutes): fewer rounds, shorter loads, fewer cases
#   BENCH_ROUNDS=N     interleaved rounds (default 5 reactor / 3 others; quick: 1)
#   BENCH_TMP=DIR      scratch directory (default bench/results/tmp/run)
#   HEISEN_LIB_DIR     where libheisen.so is (default target/release)
#   HEISEN_BIN_DIR     where heisen-httpd and heisen-fcgi are (default build/bin)

BENCH_DIR="${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
ROOT="${ROOT:-$(cd "$BENCH_DIR/.." && pwd)}"
BENCH_QUICK="${BENCH_QUICK:-0}"
BENCH_TMP="${BENCH_TMP:-$BENCH_DIR/results/tmp/run}"
BENCH_BIN="${BENCH_BIN:-$BENCH_DIR/results/tmp/bin}"
BENCH_SAMPLES="${BENCH_SAMPLES:-$BENCH_TMP/samples.jsonl}"
BENCH_NOTES="${BENCH_NOTES:-$BENCH_TMP/notes.jsonl}"
HEISEN_LIB_DIR="${HEISEN_LIB_DIR:-$ROOT/target/release}"
HEISEN_BIN_DIR="${HEISEN_BIN_DIR:-$ROOT/build/bin}"
HEISEN_INC_DIR="${HEISEN_INC_DIR:-$ROOT/include}"
export BENCH_DIR ROOT BENCH_QUICK BENCH_TMP BENCH_BIN BENCH_SAMPLES BENCH_NOTES
export HEISEN_LIB_DIR HEISEN_BIN_DIR HEISEN_INC_DIR
mkdir -p "$BENCH_TMP" "$BENCH_BIN"
touch "$BENCH_SAMPLES" "$BENCH_NOTES"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
quick() { [ "$BENCH_QUICK" = 1 ]; }

# json_str STRING -> a JSON string literal
json_str() {
    local s="$1"
    s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\t'/ }
    printf '"%s"' "$s"
}

# note SUITE TEXT: record a skipped or degraded piece (printed in the report)
note() {
    log "note ($1): $2"
    printf '{"suite":%s,"note":%s}\n' "$(json_str "$1")" "$(json_str "$2")" >> "$BENCH_NOTES"
}

# sample SUITE TABLE CASE_JSON CONTENDER ROUND METRICS_JSON
sample() {
    printf '{"suite":%s,"table":%s,"case":%s,"contender":%s,"round":%s,"m":%s}\n' \
        "$(json_str "$1")" "$(json_str "$2")" "$3" "$(json_str "$4")" "$5" "$6" >> "$BENCH_SAMPLES"
}

# rotate K WORDS...: print WORDS rotated left by K (interleaving order per round)
rotate() {
    local k=$1; shift
    local n=$# a=("$@") i
    for ((i = 0; i < n; i++)); do printf '%s\n' "${a[$(((i + k) % n))]}"; done
}

# descendants PID...: the pids and all their descendants (one per line)
descendants() {
    local p
    for p in "$@"; do
        [ -n "$p" ] || continue
        echo "$p"
        local kids
        kids=$(cat /proc/"$p"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' || true)
        [ -n "$kids" ] && descendants $kids
    done
}

# cpu_ticks PID...: user+system clock ticks of these processes (all threads), summed
cpu_ticks() {
    local p t=0 v
    for p in "$@"; do
        v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' /proc/"$p"/stat 2>/dev/null) || continue
        [ -n "$v" ] && t=$((t + v))
    done
    echo "$t"
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# rss_kb PID...: VmRSS and RssAnon in kB, summed: "RSS ANON"
rss_kb() {
    local p r=0 a=0 v w
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null)
        w=$(awk '/^RssAnon:/ {print $2}' /proc/"$p"/status 2>/dev/null)
        r=$((r + ${v:-0})); a=$((a + ${w:-0}))
    done
    echo "$r $a"
}

# wait_unix_socket PATH SECONDS
wait_unix_socket() {
    local i
    for ((i = 0; i < $2 * 20; i++)); do [ -S "$1" ] && return 0; sleep 0.05; done
    return 1
}

# wait_tcp_port PORT SECONDS: until something accepts on 127.0.0.1:PORT
wait_tcp_port() {
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# free_port: an unused TCP port on 127.0.0.1
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# stop_pid PID [SIGNAL]: signal, wait up to 5 s, then SIGKILL (only this pid)
stop_pid() {
    local p="$1" sig="${2:-TERM}" i
    [ -n "$p" ] || return 0
    kill -"$sig" "$p" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null
    return 0
}

# build the small C helpers shared by the suites (cpurun, malloc_count.so, holdconns)
build_helpers() {
    make -s -C "$BENCH_DIR/lib" OUT="$BENCH_BIN" >&2 || return 1
}

# heisen availability
heisen_lib() { [ -f "$HEISEN_INC_DIR/heisen.h" ] && [ -f "$HEISEN_LIB_DIR/libheisen.so" ]; }
heisen_bin() { [ -x "$HEISEN_BIN_DIR/$1" ]; }

# json_get FILE KEY: a numeric field from the last JSON line of FILE
json_get() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
v = None
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        try:
            v = json.loads(line).get(sys.argv[2])
        except ValueError:
            pass
print("" if v is None else v)
EOF
}

# suite_begin SUITE: forget the samples and notes a previous run of this suite left in
# $BENCH_TMP (standalone runs re-use it; bench/run.sh starts from an empty one)
suite_begin() {
    local f
    for f in "$BENCH_SAMPLES" "$BENCH_NOTES"; do
        [ -s "$f" ] || continue
        grep -v "^{\"suite\":\"$1\"" "$f" > "$f.tmp" || true
        mv "$f.tmp" "$f"
    done
}
