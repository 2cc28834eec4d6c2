#!/usr/bin/env bash
# bench/run.sh - heisen's benchmarks in one command (what `make bench` runs).
#
#   bench/run.sh [reactor] [fcgi] [http] [mem]      (default: all four, in this order)
#
# Writes bench/results/latest.md and bench/results/latest.json (BENCH_QUICK=1 writes
# bench/results/tmp/quick.md and quick.json instead, so a smoke run never replaces the
# reference tables). Scratch files, logs and callgrind profiles: bench/results/tmp/run/.
#
# Suites (each also runs alone: bench/<suite>/run.sh):
#   reactor  libevent's bench.c method: raw epoll, libev, libevent, libuv, heisen (C API)
#   fcgi     FastCGI client alone: C epoll client, heisen-fcgi, fastcgi-client crate, cgi-fcgi
#   http     heisen-httpd vs nginx (keep-alive and not) on libfcgi and php-fpm, wrk
#   mem      idle keep-alive RSS, heap per in-flight request, allocations per request
#
# Environment: BENCH_QUICK=1 (smoke run, 1-2 minutes), BENCH_ROUNDS=N, BENCH_INSTALL=0 (do not call
# scripts/install-deps.sh --bench), BENCH_BUILD=0 (do not build heisen when it is missing).
# Missing contenders or heisen pieces are skipped with a note in the report; the run only
# fails when nothing could be measured at all. Under 15 minutes on 2 cores.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export BENCH_TMP="${BENCH_TMP:-$HERE/results/tmp/run}"
rm -rf "$BENCH_TMP"
mkdir -p "$BENCH_TMP"
. "$HERE/lib/common.sh"
export BENCH_ORCHESTRATED=1

SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(reactor fcgi http mem)
for s in "${SUITES[@]}"; do
    [ -x "$HERE/$s/run.sh" ] || { echo "bench/run.sh: unknown suite $s (reactor fcgi http mem)" >&2; exit 1; }
done
T0=$(date +%s)
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# ---- dependencies ----
if [ "${BENCH_INSTALL:-1}" = 1 ] && [ -x "$ROOT/scripts/install-deps.sh" ]; then
    if ! "$ROOT/scripts/install-deps.sh" --bench --check >/dev/null 2>&1; then
        log "installing benchmark dependencies (scripts/install-deps.sh --bench)"
        "$ROOT/scripts/install-deps.sh" --bench >&2 || note setup "scripts/install-deps.sh --bench failed; missing contenders are skipped"
    fi
fi
if [ "${BENCH_INSTALL:-1}" = 1 ] && ! have cgi-fcgi && [ "$(id -u)" = 0 ] && have apt-get; then
    # cgi-fcgi (Debian: libfcgi-bin) is not in install-deps.sh --bench (yet)
    apt-get install -y -q --no-install-recommends libfcgi-bin >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends libfcgi-bin >/dev/null 2>&1; } || true
fi

# ---- heisen itself: build when missing ----
if [ "${BENCH_BUILD:-1}" = 1 ]; then
    if ! heisen_lib || ! heisen_bin heisen-httpd || ! heisen_bin heisen-fcgi; then
        if [ -f "$ROOT/Makefile" ]; then
            log "building heisen (make -C $ROOT)"
            make -C "$ROOT" >"$BENCH_TMP/build.log" 2>&1 || note setup "make failed (see $BENCH_TMP/build.log)"
        elif [ -f "$ROOT/Cargo.toml" ] && have cargo; then
            log "building libheisen (cargo build --release)"
            (cd "$ROOT" && cargo build --release) >"$BENCH_TMP/build.log" 2>&1 || note setup "cargo build --release failed (see $BENCH_TMP/build.log)"
        fi
    fi
fi
heisen_lib || note setup "libheisen.so or heisen.h missing: heisen contenders skipped"

# ---- suites ----
declare -A SECS
for s in "${SUITES[@]}"; do
    t=$(date +%s)
    log "=== $s ==="
    "$HERE/$s/run.sh" || note "$s" "bench/$s/run.sh exited with status $?"
    SECS[$s]=$(( $(date +%s) - t ))
    log "=== $s: ${SECS[$s]} s ==="
done

# ---- report ----
T1=$(date +%s)
ver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
python3 - "$BENCH_TMP/meta.json" <<EOF
import json, os, platform, subprocess, sys
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""
cpu = sh("awk -F': ' '/model name/ {print \$2; exit}' /proc/cpuinfo") or platform.processor()
commit = sh("git -C '$ROOT' rev-parse --short HEAD")
if sh("git -C '$ROOT' status --porcelain -- src include examples bench"):
    commit += " (with uncommitted changes)"
meta = {
    "started": "$STARTED", "finished": sh("date -u +%Y-%m-%dT%H:%M:%SZ"), "seconds": $((T1 - T0)),
    "commit": commit, "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
    "mode": "quick smoke run (BENCH_QUICK=1)" if "$BENCH_QUICK" == "1" else "full run",
    "rounds_note": "rounds: reactor ${BENCH_ROUNDS:-$([ "$BENCH_QUICK" = 1 ] && echo 1 || echo 4)}, others ${BENCH_ROUNDS:-$([ "$BENCH_QUICK" = 1 ] && echo 1 || echo 3)} (memory 1-2)",
    "suite_seconds": {$(for s in "${SUITES[@]}"; do printf '"%s": %s, ' "$s" "${SECS[$s]}"; done)},
    "versions": "nginx $(ver nginx), php-fpm $(ver php8.2-fpm), libev $(ver libev-dev), libevent $(ver libevent-dev), "
                "libuv $(ver libuv1-dev), libfcgi $(ver libfcgi-dev), wrk $(ver wrk), valgrind $(ver valgrind), "
                + sh("rustc --version"),
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
if quick; then
    MD="$HERE/results/tmp/quick.md"; JS="$HERE/results/tmp/quick.json"
else
    MD="$HERE/results/latest.md"; JS="$HERE/results/latest.json"
fi
python3 "$HERE/lib/report.py" --md "$MD" --json "$JS" || exit 1
log "wrote $MD and $JS ($((T1 - T0)) s)"
[ -s "$BENCH_SAMPLES" ] || { echo "bench/run.sh: nothing was measured" >&2; exit 1; }
exit 0
