#!/usr/bin/env bash
# C tests: each tests/c/test_*.c is compiled against include/heisen.h and linked to the freshly
# built libheisen.so (test_reactor also to libheisen.a), run, then run again under valgrind
# (zero errors, zero leaks). Then the shared-library hygiene checks and the install/pkg-config
# check. Called by scripts/test.sh after `make`.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIB=$PWD/target/release
OUT=$PWD/build/tests/c
mkdir -p "$OUT"
CFLAGS=(-std=c99 -Wall -Wextra -Werror -pedantic -g -O1 -Iinclude -Itests/harness -pthread)
VG=(valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --track-fds=no)
fail=0

for src in tests/c/test_*.c; do
    name=$(basename "$src" .c)
    cc "${CFLAGS[@]}" -o "$OUT/$name" "$src" -L"$LIB" -lheisen -Wl,-rpath,"$LIB"
    echo "== $name"
    "$OUT/$name" || { echo "FAIL: $name"; fail=1; }
    echo "== $name (valgrind)"
    "${VG[@]}" "$OUT/$name" >/dev/null || { echo "FAIL: $name under valgrind"; fail=1; }
done

echo "== test_reactor linked to libheisen.a"
cc "${CFLAGS[@]}" -o "$OUT/test_reactor_static" tests/c/test_reactor.c "$LIB/libheisen.a" -lpthread -ldl -lm
"$OUT/test_reactor_static" || { echo "FAIL: static"; fail=1; }

echo "== ABI 1 program built against the ABI-1 header, run on the fresh library"
# tests/c/abi/ holds the header as released for ABI 1 and a program that uses its functions.
# The program is compiled against that old header, never against the current one: if the
# current libheisen.so.1 dropped or changed anything it uses, this fails to link or to run.
cc -std=c99 -Wall -Wextra -Werror -Itests/c/abi -o "$OUT/abi_v1" tests/c/abi/abi_v1.c -L"$LIB" -lheisen -Wl,-rpath,"$LIB"
"$OUT/abi_v1" || { echo "FAIL: abi_v1"; fail=1; }

echo "== shared library hygiene"
soname=$(readelf -d "$LIB/libheisen.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libheisen.so.1" ]; then echo "FAIL: SONAME is '$soname', want libheisen.so.1"; fail=1; fi
others=$(nm -D --defined-only "$LIB/libheisen.so" | awk '{print $NF}' | grep -v '^heisen_' || true)
if [ -n "$others" ]; then echo "FAIL: exported symbols without the heisen_ prefix:"; echo "$others" | head; fail=1; fi
nsyms=$(nm -D --defined-only "$LIB/libheisen.so" | grep -c ' heisen_')
echo "exports: $nsyms heisen_* symbols, SONAME $soname"
# every function the header declares is exported, and every export is declared
hdr=$(grep -o 'heisen_[a-z0-9_]*(' include/heisen.h | tr -d '(' | sort -u)
exp=$(nm -D --defined-only "$LIB/libheisen.so" | awk '{print $NF}' | sort -u)
if [ "$hdr" != "$exp" ]; then echo "FAIL: header declarations and exports differ:"; diff <(echo "$hdr") <(echo "$exp") || true; fail=1; fi

echo "== make install + pkg-config"
prefix=$(mktemp -d)
make -s install PREFIX="$prefix" >/dev/null
ls "$prefix/lib" | grep -q '^libheisen.so.1.[0-9]*.[0-9]*$' || { echo "FAIL: no libheisen.so.1.MINOR.PATCH"; fail=1; }
[ "$(readlink "$prefix/lib/libheisen.so")" = libheisen.so.1 ] || { echo "FAIL: libheisen.so link"; fail=1; }
cat > "$prefix/app.c" <<'C'
#include <heisen.h>
#include <stdio.h>
int main(void) { printf("%s %u\n", heisen_version_string(), heisen_abi_version()); return heisen_abi_version() == HEISEN_ABI_VERSION ? 0 : 1; }
C
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" sh -c "cc '$prefix/app.c' -o '$prefix/app' \$(pkg-config --cflags --libs heisen) -Wl,-rpath,'$prefix/lib'"
"$prefix/app" || { echo "FAIL: pkg-config app"; fail=1; }
rm -rf "$prefix"

[ $fail -eq 0 ] && echo "C tests: ok" || { echo "C tests: FAILED"; exit 1; }
