#!/usr/bin/env bash
# scripts/fuzz.sh -- build the fuzz targets and run each one for SECONDS (`make fuzz`).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      default 30 s each, every target
#
# Targets (fuzz/fuzz_targets/*.rs, libFuzzer through cargo-fuzz's libfuzzer-sys, AddressSanitizer):
#   fcgi_parser  FastCGI record parser: every split gives the same frames, no spinning
#   fcgi_nv      name-value pairs: decoder on any bytes, every split, encode/decode round trip
#   cgi_head     CGI response headers from a backend: nothing that could split an HTTP header
#   fcgi_params  CGI variables from hostile HTTP headers (httpoxy) and the PARAMS writer
#   c_api        the C API driven by a byte string of calls; data-loss, lifetime and fd oracles
#   http_parse   heisen-httpd's HTTP request parser (examples/c/http_parse.c), clang
#                -fsanitize=fuzzer,address,undefined on tests/programs/http_parse_fuzz.c
#
# Needs: the stable Rust toolchain (its AddressSanitizer runtime ships with rust-std; the -Z
# flags are enabled with RUSTC_BOOTSTRAP=1, no nightly needed), a C++ compiler (libFuzzer is
# built by libfuzzer-sys), clang with libFuzzer for http_parse (scripts/install-deps.sh --fuzz;
# without it http_parse is skipped with a message, or fails with FUZZ_REQUIRE_ALL=1).
# cargo-fuzz is NOT needed: the same flags are passed to cargo here. With cargo-fuzz installed,
# `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run c_api` works as well.
#
# Environment:
#   FUZZ_JOBS=N        targets run in parallel (default 2, or 1 on a one-core machine)
#   FUZZ_OUT=DIR       logs, working corpora, crash artifacts, summary (default fuzz/out)
#   FUZZ_MERGE=1       afterwards, minimize each working corpus into fuzz/corpus/<target>
#   FUZZ_LAX=LIST      c_api: skip the checks of these findings (passed on as HEISEN_FUZZ_LAX:
#                      all, or error,close,f6,free,write -- see SECURITY.md), to look past one
#   FUZZ_REQUIRE_ALL=1 a target that cannot be built is an error, not a skip
#
# First every committed regression input (fuzz/regressions/<target>/*) is replayed: they must
# pass. Then each target starts from
# its committed corpus (fuzz/corpus/<target>, read-only) plus a working corpus in FUZZ_OUT.
# Exit status: 0 when no target crashed, 1 otherwise (the crashing input is in
# FUZZ_OUT/artifacts/<target>/ and its log in FUZZ_OUT/<target>.log).
#
# The long run (issue 7: at least 10 minutes per target):
#   FUZZ_JOBS=2 FUZZ_MERGE=1 scripts/fuzz.sh 600
# writes FUZZ_OUT/summary.md with executions, coverage (libFuzzer's cov: edges and ft: features)
# and crashes per target; the figures of the last long run are in SECURITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECS="${1:-${FUZZ_SECONDS:-30}}"
shift || true
ALL=(fcgi_parser fcgi_nv cgi_head fcgi_params c_api http_parse)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi
OUT="${FUZZ_OUT:-$ROOT/fuzz/out}"
JOBS="${FUZZ_JOBS:-$( [ "$(nproc)" -ge 2 ] && echo 2 || echo 1 )}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export HEISEN_FUZZ_LAX="${FUZZ_LAX:-}"

log() { printf 'fuzz: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

TRIPLE=x86_64-unknown-linux-gnu
case "$(uname -m)" in
    x86_64) ;;
    aarch64) TRIPLE=aarch64-unknown-linux-gnu ;;
    *) die "unsupported machine $(uname -m)" ;;
esac
BIN="$ROOT/fuzz/target/$TRIPLE/release"

want() { local t; for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }
rust_targets=()
for t in "${TARGETS[@]}"; do
    case " ${ALL[*]} " in *" $t "*) ;; *) die "unknown target $t (targets: ${ALL[*]})" ;; esac
    [ "$t" != http_parse ] && rust_targets+=("$t")
done

# ---------------------------------------------------------------- build
if [ ${#rust_targets[@]} -gt 0 ]; then
    command -v cargo >/dev/null || die "cargo not found"
    sysroot=$(rustc --print sysroot)
    ls "$sysroot"/lib/rustlib/$TRIPLE/lib/librustc-*_rt.asan.a >/dev/null 2>&1 ||
        die "this Rust toolchain has no AddressSanitizer runtime for $TRIPLE"
    # The flags cargo-fuzz uses for `cargo fuzz build -O`, plus debug assertions and overflow
    # checks (an overflow in a parser is a finding too).
    flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
    flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
    flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth"
    flags+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0 --cfg fuzzing -Zsanitizer=address"
    flags+=" -Cdebug-assertions -Coverflow-checks -Ccodegen-units=1 -Cforce-frame-pointers"
    log "building ${rust_targets[*]} (AddressSanitizer, coverage)"
    bins=()
    for t in "${rust_targets[@]}"; do bins+=(--bin "$t"); done
    if ! RUSTC_BOOTSTRAP=1 RUSTFLAGS="$flags" cargo build --quiet --release --target "$TRIPLE" \
            --manifest-path fuzz/Cargo.toml "${bins[@]}" >"$OUT/build.log" 2>&1; then
        tail -n 40 "$OUT/build.log" >&2
        die "build failed (full log: $OUT/build.log)"
    fi
fi
if want http_parse; then
    cc_fuzz=${FUZZ_CC:-clang}
    if command -v "$cc_fuzz" >/dev/null &&
        "$cc_fuzz" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
            -Iexamples/c tests/programs/http_parse_fuzz.c examples/c/http_parse.c \
            -o "$OUT/http_parse" >"$OUT/build-http_parse.log" 2>&1; then
        :
    else
        msg="http_parse needs clang with libFuzzer (scripts/install-deps.sh --fuzz); skipped"
        [ "${FUZZ_REQUIRE_ALL:-0}" = 1 ] && die "$msg"
        log "$msg"
        TARGETS=("${TARGETS[@]/http_parse}")
    fi
fi
exe() { if [ "$1" = http_parse ]; then echo "$OUT/http_parse"; else echo "$BIN/$1"; fi; }

# ---------------------------------------------------------------- regressions
rc=0
for t in "${TARGETS[@]}"; do
    [ -n "$t" ] || continue
    d="fuzz/regressions/$t"
    [ -d "$d" ] || continue
    files=("$d"/*)
    [ -e "${files[0]}" ] || continue
    if ! "$(exe "$t")" -runs=1 "${files[@]}" >"$OUT/$t.regressions.log" 2>&1; then
        log "$t: a committed regression input fails (log: $OUT/$t.regressions.log)"
        grep -m3 -A2 'panicked\|ERROR:' "$OUT/$t.regressions.log" >&2 || true
        rc=1
    fi
done

# ---------------------------------------------------------------- fuzz
run_one() {
    local t=$1 work="$OUT/corpus/$t" art="$OUT/artifacts/$t/"
    mkdir -p "$work" "$art" "fuzz/corpus/$t"
    local extra=()
    [ "$t" = c_api ] && extra+=(-timeout=20)
    set +e
    "$(exe "$t")" -max_total_time="$SECS" -print_final_stats=1 -rss_limit_mb=3072 -timeout=10 \
        -artifact_prefix="$art" "${extra[@]}" "$work" "fuzz/corpus/$t" >"$OUT/$t.log" 2>&1
    echo $? >"$OUT/$t.rc"
    set -e
}

log "running ${TARGETS[*]} for ${SECS}s each, $JOBS at a time (logs in $OUT)"
running=0
for t in "${TARGETS[@]}"; do
    [ -n "$t" ] || continue
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait

# ---------------------------------------------------------------- summary
{
    echo "| target | seconds | executions | exec/s | cov (edges) | ft (features) | corpus | crashes |"
    echo "|---|---|---|---|---|---|---|---|"
} >"$OUT/summary.md"
for t in "${TARGETS[@]}"; do
    [ -n "$t" ] || continue
    l="$OUT/$t.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$l" | tail -n1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$l" | tail -n1)
    last=$(grep -E '^#[0-9]+' "$l" | tail -n1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    crashes=$(find "$OUT/artifacts/$t" -type f 2>/dev/null | wc -l)
    r=$(cat "$OUT/$t.rc" 2>/dev/null || echo 1)
    echo "| $t | $SECS | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $crashes |" >>"$OUT/summary.md"
    if [ "$r" != 0 ] || [ "$crashes" -gt 0 ]; then
        rc=1
        log "$t: CRASH (exit $r) -- input in $OUT/artifacts/$t/, log $l:"
        grep -m1 -A3 'panicked\|ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|ERROR: libFuzzer\|runtime error' "$l" >&2 || tail -n 20 "$l" >&2
    fi
    if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$r" = 0 ]; then
        tmp=$(mktemp -d)
        "$(exe "$t")" -merge=1 "$tmp" "fuzz/corpus/$t" "$OUT/corpus/$t" >"$OUT/$t.merge.log" 2>&1 || true
        # keep the hand-made seeds, replace the rest by the minimized finds
        find "fuzz/corpus/$t" -type f ! -name 'seed-*' -delete
        seeds=$(for f in "fuzz/corpus/$t"/seed-*; do [ -e "$f" ] && sha1sum <"$f" | cut -d' ' -f1; done)
        for f in "$tmp"/*; do
            [ -e "$f" ] || continue
            h=$(sha1sum <"$f" | cut -d' ' -f1)
            grep -qx "$h" <<<"$seeds" || cp "$f" "fuzz/corpus/$t/$h"
        done
        rm -rf "$tmp"
    fi
done
cat "$OUT/summary.md"
if [ "$rc" = 0 ]; then
    n=0; for t in "${TARGETS[@]}"; do [ -n "$t" ] && n=$((n + 1)); done
    echo "fuzz: $n targets, ${SECS}s each: no crash"
else
    echo "fuzz: FAILED (see above)"
fi
exit "$rc"
