#!/usr/bin/env bash
# The whole test suite (`make test` runs `make` first, then this). Every part must pass:
# Rust unit and integration tests, C tests (also under valgrind), the shared-library checks,
# the harness self-test, the Python bindings, the C programs, and short fuzz and soak runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export HEISEN_LIBRARY="$PWD/target/release/libheisen.so"
start=$(date +%s)
step() { printf '\n===== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

step "Rust: unit, integration, header drift"
cargo test --release

step "C: tests/c (also under valgrind), ABI and install checks"
tests/c/run.sh

step "Harness self-test"
tests/harness/run.sh

step "Python bindings"
bindings/python/run_tests.sh

step "C programs: heisen-httpd, heisen-fcgi, heisen-story (also under valgrind)"
tests/programs/run.sh --valgrind

step "Hardening: C API findings, hostile HTTP and FastCGI input, limits"
tests/hardening/run.sh

step "Soak, short: heisen-httpd + php-fpm under load while the backend is killed and reloaded"
SOAK_SHORT=1 scripts/soak.sh

step "Fuzzing, smoke: every target ${HEISEN_FUZZ_SECONDS:-30} s (regression inputs replayed first)"
scripts/fuzz.sh "${HEISEN_FUZZ_SECONDS:-30}"

step "done in $(( $(date +%s) - start ))s"
echo "ALL TESTS PASSED"
