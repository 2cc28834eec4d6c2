#!/usr/bin/env bash
# bindings/python/run_tests.sh -- the Python bindings' tests (unittest, standard library only).
#
#   HEISEN_LIBRARY=$PWD/target/release/libheisen.so bindings/python/run_tests.sh [-v] [-k PAT] [MODULE...]
#
# * The library: $HEISEN_LIBRARY when set (the top-level `make test` passes the freshly built
#   one), else the package's own search order (this checkout's target/release/libheisen.so).
# * php-fpm: the tests start a private one with scripts/php-fpm.sh in a temporary directory
#   (needs php-fpm installed: scripts/install-deps.sh) and stop it at the end.
# * Interpreter: $PYTHON (default python3) runs everything; when Debian's /usr/bin/python3 is
#   another interpreter, it also runs the load, header-sync, reactor, stream and API tests.
# Ends with the line "python bindings: N passed, N failed, N skipped"; exit 0 only if none failed.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

rc=0
echo "== python bindings: $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
"$py" "$here/tests/run.py" "$@" || rc=1

debian=/usr/bin/python3
if [ $# -eq 0 ] && [ -x "$debian" ] && \
   [ "$("$debian" -c 'import sys; print(sys.executable)')" != "$("$py" -c 'import sys; print(sys.executable)')" ]; then
    echo "== python bindings: $debian $("$debian" -c 'import sys; print(sys.version.split()[0])') (load, header sync, reactor, streams, API)"
    "$debian" "$here/tests/run.py" test_load test_header_sync test_reactor test_stream test_api || rc=1
fi
exit $rc
