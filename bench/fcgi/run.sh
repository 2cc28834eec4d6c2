#!/usr/bin/env bash
# bench/fcgi/run.sh - the FastCGI client alone, against the libfcgi responder (spawn-fcgi,
# unix socket, 512 threads so that it is not the bottleneck):
#   c-epoll            bench/fcgi/fcgi_client.c, the hand-written floor
#   heisen-fcgi        build/bin/heisen-fcgi -q -n N -c C [-k] --no-probe
#   fastcgi-client-rs  bench/fcgi-client-rs (crates.io fastcgi-client on tokio, one thread)
#   cgi-fcgi           a loop of cgi-fcgi processes (libfcgi-bin), no keep-alive
# Cases: concurrency 1 and 32, with and without keep-alive. Interleaved rounds; CPU per
# request is measured the same way for all (bench/lib/cpurun: wait4 rusage, user+sys).
# Standalone: prints a report of its own.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib/common.sh"
SUITE=fcgi
suite_begin $SUITE

if quick; then
    ROUNDS="${BENCH_ROUNDS:-1}"; N_KA=8000; N_NEW=3000; N_CGI=100
else
    ROUNDS="${BENCH_ROUNDS:-3}"; N_KA=30000; N_NEW=10000; N_CGI=300
fi
CONCS="1 32"
W="$BENCH_TMP/fcgi"
mkdir -p "$W"

build_helpers || note $SUITE "bench/lib helpers failed to build"
make -s -C "$HERE" OUT="$BENCH_BIN" >&2 || note $SUITE "build of bench/fcgi failed"
if [ ! -x "$BENCH_BIN/responder" ] || ! have spawn-fcgi; then
    note $SUITE "libfcgi-dev or spawn-fcgi missing (scripts/install-deps.sh --bench): FastCGI client suite skipped"
    exit 0
fi

CLIENTS=(c-epoll)
if heisen_bin heisen-fcgi; then CLIENTS+=(heisen-fcgi); else note $SUITE "heisen-fcgi not built ($HEISEN_BIN_DIR/heisen-fcgi): skipped"; fi
RS="$BENCH_DIR/results/tmp/cargo-target/release/fcgi-client-rs"
if have cargo; then
    if ! (cd "$BENCH_DIR/fcgi-client-rs" && CARGO_TARGET_DIR="$BENCH_DIR/results/tmp/cargo-target" cargo build --release --quiet) \
        >"$W/cargo.log" 2>&1; then
        note $SUITE "fcgi-client-rs (crates.io fastcgi-client) failed to build, see $W/cargo.log: skipped"
    fi
fi
if [ -x "$RS" ]; then CLIENTS+=(fastcgi-client-rs); else note $SUITE "fastcgi-client-rs not available (cargo missing or build failed): skipped"; fi
CGI=$(command -v cgi-fcgi || true)
if [ -n "$CGI" ]; then CLIENTS+=(cgi-fcgi); else note $SUITE "cgi-fcgi missing (Debian package libfcgi-bin): skipped"; fi

SOCK="$W/responder.sock"
RPID=$("$HERE/start-responder.sh" "$SOCK" 512) || { note $SUITE "responder failed to start"; exit 0; }
trap 'stop_pid "$RPID"; rm -f "$SOCK"' EXIT
SCRIPT=/bench/hello

# run_client CLIENT C KA N -> metrics JSON on stdout (empty on failure)
run_client() {
    local client=$1 c=$2 ka=$3 n=$4 out="$W/out.$$" cr="$W/cpurun.$$"
    local kflag=(); [ "$ka" = 1 ] && kflag=(-k)
    rm -f "$out" "$cr"
    case $client in
        c-epoll) "$BENCH_BIN/cpurun" -o "$cr" -- "$BENCH_BIN/fcgi_client" -s "$SOCK" -f "$SCRIPT" -n "$n" -c "$c" "${kflag[@]}" >"$out" 2>>"$W/err.log" ;;
        heisen-fcgi) "$BENCH_BIN/cpurun" -o "$cr" -- "$HEISEN_BIN_DIR/heisen-fcgi" -q -n "$n" -c "$c" "${kflag[@]}" --no-probe "unix:$SOCK" "$SCRIPT" >"$out" 2>>"$W/err.log" ;;
        fastcgi-client-rs) "$BENCH_BIN/cpurun" -o "$cr" -- "$RS" -s "$SOCK" -f "$SCRIPT" -n "$n" -c "$c" "${kflag[@]}" >"$out" 2>>"$W/err.log" ;;
        cgi-fcgi) "$BENCH_BIN/cpurun" -o "$cr" -- "$BENCH_BIN/cgi_loop" -b "$CGI" -s "$SOCK" -f "$SCRIPT" -n "$n" -c "$c" >"$out" 2>>"$W/err.log" ;;
    esac
    python3 - "$client" "$out" "$cr" "$n" <<'EOF'
import json, re, sys
client, out, cr, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
try:
    text = open(out).read()
    cpu = json.loads(open(cr).read().strip().splitlines()[-1])
except (OSError, ValueError, IndexError):
    sys.exit(0)
m = {}
if client == "heisen-fcgi":
    g = lambda rx: re.search(rx, text)
    t, rps, lat, outc = g(r"time:\s+([\d.]+) s"), g(r"req/s:\s+([\d.]+)"), g(r"p50 ([\d.]+) ms\s+p90 ([\d.]+) ms\s+p99 ([\d.]+) ms\s+max ([\d.]+) ms"), g(r"complete (\d+)")
    if not (t and rps and lat and outc):
        sys.exit(0)
    ok = int(outc.group(1))
    m = {"seconds": float(t.group(1)), "rps": ok / float(t.group(1)) if float(t.group(1)) else 0,
         "p50_us": float(lat.group(1)) * 1000, "p90_us": float(lat.group(2)) * 1000,
         "p99_us": float(lat.group(3)) * 1000, "max_us": float(lat.group(4)) * 1000, "ok": ok, "errors": n - ok}
else:
    lines = [l for l in text.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(0)
    j = json.loads(lines[-1])
    m = {k: j[k] for k in ("seconds", "rps", "p50_us", "p90_us", "p99_us", "max_us", "ok", "errors") if k in j}
ok = m.get("ok") or 0
m["cpu_us"] = cpu["cpu_us"]
m["user_us"] = cpu["user_us"]
m["cpu_us_per_req"] = cpu["cpu_us"] / ok if ok else None
m["user_us_per_req"] = cpu["user_us"] / ok if ok else None
m["maxrss_kb"] = cpu["maxrss_kb"]
print(json.dumps({k: v for k, v in m.items() if v is not None}))
EOF
    rm -f "$out" "$cr"
}

log "fcgi: ${CLIENTS[*]}; $ROUNDS round(s); keep-alive n=$N_KA, new connection n=$N_NEW, cgi-fcgi n=$N_CGI"
# warm-up: the responder's threads, the page cache of the binaries
"$BENCH_BIN/fcgi_client" -s "$SOCK" -f "$SCRIPT" -n 2000 -c 32 -k >/dev/null 2>&1
for ((r = 1; r <= ROUNDS; r++)); do
    for ka in 1 0; do
        for c in $CONCS; do
            while read -r client; do
                n=$N_KA; [ "$ka" = 0 ] && n=$N_NEW
                if [ "$client" = cgi-fcgi ]; then
                    [ "$ka" = 1 ] && continue
                    n=$N_CGI
                fi
                m=$(run_client "$client" "$c" "$ka" "$n")
                if [ -z "$m" ]; then
                    echo "fcgi: $client c=$c ka=$ka produced no result" >> "$W/err.log"
                    continue
                fi
                sample $SUITE client "{\"c\":$c,\"keepalive\":$ka}" "$client" "$r" "$m"
            done < <(rotate $((r - 1)) "${CLIENTS[@]}")
        done
    done
done
# user-space instructions per request (callgrind): the difference between two runs of
# different lengths, so start-up and connection set-up cancel out; deterministic enough to
# track between commits. heisen-fcgi's profile is kept for the report.
if have valgrind; then
    if quick; then CG_CASES="32:1"; CG_N1=1000; CG_N2=3000; else CG_CASES="32:1 1:0"; CG_N1=1000; CG_N2=3000; fi
    log "fcgi: callgrind instructions per request ($CG_CASES)"
    for cc in $CG_CASES; do
        c=${cc%%:*}; ka=${cc#*:}
        kflag=(); [ "$ka" = 1 ] && kflag=(-k)
        for client in "${CLIENTS[@]}"; do
            case $client in cgi-fcgi) continue ;; esac
            quick && [ "$client" = fastcgi-client-rs ] && continue
            # the crate costs ~300k instructions per request: a quarter of the requests
            div=1; [ "$client" = fastcgi-client-rs ] && div=4
            irs=()
            for n in $((CG_N1 / div)) $((CG_N2 / div)); do
                f="$W/cg.$client.$c.$ka.$n"
                rm -f "$f"
                case $client in
                    c-epoll) cmd=("$BENCH_BIN/fcgi_client" -s "$SOCK" -f "$SCRIPT" -n "$n" -c "$c" "${kflag[@]}") ;;
                    heisen-fcgi) cmd=("$HEISEN_BIN_DIR/heisen-fcgi" -q -n "$n" -c "$c" "${kflag[@]}" --no-probe "unix:$SOCK" "$SCRIPT") ;;
                    fastcgi-client-rs) cmd=("$RS" -s "$SOCK" -f "$SCRIPT" -n "$n" -c "$c" "${kflag[@]}") ;;
                esac
                valgrind --tool=callgrind --callgrind-out-file="$f" "${cmd[@]}" >/dev/null 2>>"$W/valgrind.log"
                irs+=("$(awk '/^totals:/ {print $2}' "$f" 2>/dev/null)")
                if [ "$client" = heisen-fcgi ] && [ "$n" = "$((CG_N2 / div))" ] && have callgrind_annotate; then
                    callgrind_annotate --threshold=95 "$f" 2>/dev/null | sed -n '/^Ir /,$p' |
                        grep -v -e '^-' -e '^ *$' | sed -n '1,24p' > "$BENCH_TMP/profile.heisen-fcgi.c$c.ka$ka.txt" || true
                fi
                rm -f "$f"
            done
            if [ -n "${irs[0]}" ] && [ -n "${irs[1]}" ]; then
                sample $SUITE callgrind "{\"c\":$c,\"keepalive\":$ka}" "$client" 1 \
                    "{\"ir_per_request\":$(( (irs[1] - irs[0]) * div / (CG_N2 - CG_N1) )),\"ir_n1\":${irs[0]},\"ir_n2\":${irs[1]}}"
            fi
        done
    done
fi

if [ -s "$W/err.log" ]; then
    note $SUITE "some client runs reported errors; see $W/err.log"
fi

if [ -z "${BENCH_ORCHESTRATED:-}" ]; then
    python3 "$BENCH_DIR/lib/report.py" --suite $SUITE
fi
