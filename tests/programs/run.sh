#!/usr/bin/env bash
# tests/programs/run.sh -- the tests of the C programs (called by `make test`).
#
#   tests/programs/run.sh [--no-valgrind] [unittest args...]
#
# 1. build/bin/heisen-http-parse-test   the HTTP parser's unit test
# 2. test_fcgi_tool.py, test_httpd.py   heisen-fcgi, heisen-story and heisen-httpd over real
#                                       sockets, with php-fpm (scripts/php-fpm.sh) and the
#                                       scripted peers (tests/harness/fcgi_peer.py)
# 3. tests/programs/valgrind.sh: one short session of each program under valgrind (about a
#    minute; skipped with --no-valgrind or HEISEN_VALGRIND=0)
#
# Missing binaries are a failure (build them with `make`), unless HEISEN_PROGRAMS_ALLOW_MISSING=1.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT" || exit 1
PY="${PYTHON:-python3}"
BIN="${HEISEN_BIN:-$ROOT/build/bin}"

want_valgrind="${HEISEN_VALGRIND:-1}"
if [ "${1:-}" = "--no-valgrind" ]; then want_valgrind=0; shift; fi
if [ "${1:-}" = "--valgrind" ]; then want_valgrind=1; shift; fi

missing=0
for b in heisen-httpd heisen-fcgi heisen-story heisen-http-parse-test; do
    if [ ! -x "$BIN/$b" ]; then
        echo "tests/programs: $BIN/$b is not built (make)" >&2
        missing=1
    fi
done
if [ "$missing" = 1 ] && [ "${HEISEN_PROGRAMS_ALLOW_MISSING:-0}" != 1 ]; then
    exit 1
fi

rc=0
if [ -x "$BIN/heisen-http-parse-test" ]; then
    "$BIN/heisen-http-parse-test" || rc=1
fi
# a short fuzz run of the HTTP parser under ASan/UBSan (HEISEN_FUZZ_SECONDS, default 5; 0 = skip)
fuzz_s="${HEISEN_FUZZ_SECONDS:-5}"
if [ "$fuzz_s" != 0 ]; then
    if [ ! -x "$BIN/heisen-http-parse-fuzz" ]; then
        make -s build/bin/heisen-http-parse-fuzz >/dev/null 2>&1 || \
            ${CC:-cc} -std=c99 -DSTANDALONE -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -Iexamples/c -o "$BIN/heisen-http-parse-fuzz" tests/programs/http_parse_fuzz.c examples/c/http_parse.c \
                2>/dev/null
    fi
    if [ -x "$BIN/heisen-http-parse-fuzz" ]; then
        "$BIN/heisen-http-parse-fuzz" "$fuzz_s" || rc=1
    else
        echo "tests/programs: no sanitizer-capable compiler, HTTP parser fuzz run skipped" >&2
    fi
fi
(cd "$HERE" && "$PY" -m unittest -v "$@" test_fcgi_tool test_httpd) || rc=1
if [ "$want_valgrind" = 1 ]; then
    "$HERE/valgrind.sh" || rc=1
fi
exit $rc
