#!/usr/bin/env bash
# tests/hardening/asan.sh -- the Rust tests (unit and integration) under AddressSanitizer and
# LeakSanitizer, on the stable toolchain (RUSTC_BOOTSTRAP=1 unlocks -Zsanitizer=address).
#
#   tests/hardening/asan.sh [cargo test args...]
#
# Builds into target/asan (a full rebuild of the crate and its dev-dependencies with ASan: a few
# minutes). Deliberate leaks in test code are suppressed by tests/hardening/lsan.supp.
# tests/timers.rs a_million_timers is skipped: it bounds RSS per timer, and ASan's redzones and
# shadow memory inflate RSS (it measures memory use, not memory errors).
set -euo pipefail
cd "$(dirname "$0")/../.."
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers"
export RUSTDOCFLAGS="-Zsanitizer=address"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/asan}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export LSAN_OPTIONS="suppressions=$PWD/tests/hardening/lsan.supp:print_suppressions=0"
exec cargo test --release --target "$triple" --no-fail-fast --lib --tests "$@" -- --skip a_million_timers
