#!/usr/bin/env bash
# bench/reactor/run.sh - libevent's test/bench.c method (and libev's timer variant) for raw
# epoll, libev, libevent, libuv and heisen (C API). Standalone: prints a report of its own.
#
#   1. time:      interleaved rounds (contender order rotated every round), each process
#                 doing a warm-up run and RUNS measured runs; the sample is their median.
#   2. callgrind: user-space instructions (Ir) per event, loop only and set-up + loop, one
#                 run under valgrind --tool=callgrind (deterministic: 1 round is enough);
#                 heisen's loop profile (callgrind_annotate) kept in $BENCH_TMP/profile.*.
#   3. syscalls:  epoll_ctl in set-up / loop / teardown and epoll_wait in the loop, counted
#                 by symbol interposition (bench_X.sc), one run.
# Cases: N in {100, 1000, 10000} socketpairs x A in {1, 100} active writers, W writes per
# run, without and with timers (-t). N=10000 needs 20,024 fds; when RLIMIT_NOFILE's hard
# limit is lower (and cannot be raised), the largest N that fits is used and noted.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib/common.sh"
SUITE=reactor
suite_begin $SUITE

if quick; then
    ROUNDS="${BENCH_ROUNDS:-1}"; RUNS=2; WRITES=2000
    NS="1000"; AS="1 100"; TIMERS="0 1"
    CG_CASES="1000:100:0"
else
    ROUNDS="${BENCH_ROUNDS:-4}"; RUNS=4; WRITES=10000
    NS="100 1000 10000"; AS="1 100"; TIMERS="0 1"
    CG_CASES=""   # all
fi

# ---- build ----
if ! make -s -C "$HERE" OUT="$BENCH_BIN" HEISEN_INC="$HEISEN_INC_DIR" HEISEN_LIB="$HEISEN_LIB_DIR" >&2; then
    note $SUITE "build of bench/reactor failed"
fi
CONTENDERS=()
for c in epoll libev libevent libuv heisen; do
    if [ -x "$BENCH_BIN/bench_$c" ]; then
        CONTENDERS+=("$c")
    else
        case $c in
            heisen) note $SUITE "heisen not built (needs $HEISEN_INC_DIR/heisen.h and $HEISEN_LIB_DIR/libheisen.so): skipped" ;;
            *) note $SUITE "$c: headers or library missing (scripts/install-deps.sh --bench): skipped" ;;
        esac
    fi
done
# heisen's callback patterns (see bench_heisen.c): 'short' is the contender, the others are
# timed too so the report shows why it was chosen.
VARIANTS=()
for c in "${CONTENDERS[@]}"; do
    if [ "$c" = heisen ]; then
        VARIANTS+=("heisen:short" "heisen:drain" "heisen:again")
    else
        VARIANTS+=("$c:")
    fi
done
# heisen's other patterns are diagnostic: timed and counted at N=1000 only
variant_here() { case $1 in heisen:drain|heisen:again) ! quick && [ "$2" = 1000 ] ;; *) return 0 ;; esac; }
vname() { local c=${1%%:*} p=${1#*:}; if [ -n "$p" ] && [ "$p" != short ]; then echo "$c-$p"; else echo "$c"; fi; }

# ---- N=10000 needs 2N+24 fds ----
HARD=$(ulimit -Hn)
case "$HARD" in unlimited) HARD=1048576 ;; esac
NMAX=$(( (HARD - 100) / 2 ))
NLIST=""
for n in $NS; do
    if [ "$n" -gt "$NMAX" ]; then
        note $SUITE "N=$n needs $((2 * n + 24)) fds but the hard RLIMIT_NOFILE is $HARD (not raisable without CAP_SYS_RESOURCE): ran N=$NMAX instead"
        n=$NMAX
    fi
    NLIST="$NLIST $n"
done

run_one() { # BIN ARGS... -> prints the JSON line, or nothing on failure
    local out
    if out=$("$@" 2>>"$BENCH_TMP/reactor.err"); then
        printf '%s\n' "$out" | grep '^{' | tail -n1
    else
        echo "reactor: $* failed (exit $?)" >> "$BENCH_TMP/reactor.err"
    fi
}

# ---- 1. time ----
log "reactor: timing, $ROUNDS round(s), N in$NLIST, A in {$AS}, W=$WRITES, timers {$TIMERS}, ${#VARIANTS[@]} contenders"
for ((r = 1; r <= ROUNDS; r++)); do
    for t in $TIMERS; do
        for n in $NLIST; do
            for a in $AS; do
                while read -r v; do
                    variant_here "$v" "$n" || continue
                    c=${v%%:*}; p=${v#*:}
                    targs=(); [ "$t" = 1 ] && targs=(-t)
                    pargs=(); [ -n "$p" ] && pargs=(-p "$p")
                    j=$(run_one "$BENCH_BIN/bench_$c" -n "$n" -a "$a" -w "$WRITES" -r "$RUNS" "${targs[@]}" "${pargs[@]}")
                    [ -n "$j" ] || continue
                    sample $SUITE time "{\"n\":$n,\"a\":$a,\"timers\":$t,\"w\":$WRITES}" "$(vname "$v")" "$r" "$j"
                done < <(rotate $((r - 1)) "${VARIANTS[@]}")
            done
        done
    done
done

# ---- 2. callgrind ----
if have valgrind; then
    log "reactor: callgrind instruction counts"
    for t in $TIMERS; do
        for n in $NLIST; do
            for a in $AS; do
                if [ -n "$CG_CASES" ]; then
                    case " $CG_CASES " in *" $n:$a:$t "*) ;; *) continue ;; esac
                fi
                for v in "${VARIANTS[@]}"; do
                    variant_here "$v" "$n" || continue
                    c=${v%%:*}; p=${v#*:}
                    targs=(); [ "$t" = 1 ] && targs=(-t)
                    pargs=(); [ -n "$p" ] && pargs=(-p "$p")
                    f="$BENCH_TMP/cg.$c.$p.$n.$a.$t"
                    rm -f "$f" "$f".*
                    # one run under callgrind; the driver dumps set-up (part 1) and loop (part 2)
                    j=$(LD_BIND_NOW=1 run_one valgrind --tool=callgrind --collect-atstart=no \
                        --callgrind-out-file="$f" "$BENCH_BIN/bench_$c" -n "$n" -a "$a" -w "$WRITES" -r 1 \
                        -C both "${targs[@]}" "${pargs[@]}")
                    ir_setup=$(awk '/^totals:/ {print $2}' "$f.1" 2>/dev/null)
                    ir_loop=$(awk '/^totals:/ {print $2}' "$f.2" 2>/dev/null)
                    ev=$(printf '%s' "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])' 2>/dev/null)
                    if [ -n "$ir_setup" ] && [ -n "$ir_loop" ] && [ -n "$ev" ] && [ "$ev" -gt 0 ]; then
                        sample $SUITE callgrind "{\"n\":$n,\"a\":$a,\"timers\":$t,\"w\":$WRITES}" "$(vname "$v")" 1 \
                            "$(python3 -c "s,l,e=$ir_setup,$ir_loop,$ev; import json; print(json.dumps({'ir_setup':s,'ir_loop':l,'ir_total':s+l,'ir_loop_per_event':round(l/e,1),'ir_total_per_event':round((s+l)/e,1),'events':e}))")"
                    else
                        echo "reactor: no callgrind figures for $v n=$n a=$a t=$t" >> "$BENCH_TMP/reactor.err"
                    fi
                    rm -f "$f" "$f".*
                    # heisen's loop profile at N=1000 (the dumped parts lose the call
                    # context, so a run collecting the loop alone): top entries in the report
                    if [ "$v" = "heisen:short" ] && [ "$n" = 1000 ] && have callgrind_annotate; then
                        LD_BIND_NOW=1 valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$f.prof" \
                            "$BENCH_BIN/bench_$c" -n "$n" -a "$a" -w "$WRITES" -r 1 -C loop "${targs[@]}" "${pargs[@]}" >/dev/null 2>&1
                        callgrind_annotate --threshold=95 "$f.prof" 2>/dev/null | sed -n '/^Ir /,$p' |
                            grep -v -e '^-' -e '^ *$' | sed -n '1,24p' > "$BENCH_TMP/profile.heisen.n$n.a$a.t$t.txt" || true
                        rm -f "$f.prof"
                    fi
                done
            done
        done
    done
else
    note $SUITE "valgrind missing: no instruction counts"
fi

# ---- 3. syscalls ----
log "reactor: epoll_ctl/epoll_wait counts"
for t in $TIMERS; do
    for n in $NLIST; do
        for a in $AS; do
            for v in "${VARIANTS[@]}"; do
                variant_here "$v" "$n" || continue
                c=${v%%:*}; p=${v#*:}
                [ -x "$BENCH_BIN/bench_$c.sc" ] || continue
                targs=(); [ "$t" = 1 ] && targs=(-t)
                pargs=(); [ -n "$p" ] && pargs=(-p "$p")
                j=$(run_one "$BENCH_BIN/bench_$c.sc" -n "$n" -a "$a" -w "$WRITES" -r 1 "${targs[@]}" "${pargs[@]}")
                [ -n "$j" ] && sample $SUITE syscalls "{\"n\":$n,\"a\":$a,\"timers\":$t,\"w\":$WRITES}" "$(vname "$v")" 1 "$j"
            done
        done
    done
done

if [ -z "${BENCH_ORCHESTRATED:-}" ]; then
    python3 "$BENCH_DIR/lib/report.py" --suite $SUITE
fi
