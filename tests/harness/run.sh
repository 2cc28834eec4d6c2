#!/usr/bin/env bash
# tests/harness/run.sh -- self-test of the whole test harness (Python, C and shell sides).
# No heisen involved: checks that the peer, the reference client, scripts/php-fpm.sh,
# scripts/http_load.py and tests/php/ behave as documented. About 15 s.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rc=0
python3 "$here/selftest.py" || rc=1
out=$(mktemp -d /tmp/heisen-harness-build.XXXXXX)
if cc -std=c99 -Wall -Wextra -Werror -D_GNU_SOURCE -DHARNESS_ROOT="\"$root\"" -o "$out/selftest_c" "$here/selftest_c.c"; then
    "$out/selftest_c" || rc=1
else
    echo "tests/harness/run.sh: selftest_c.c does not compile"; rc=1
fi
rm -rf "$out"
bash "$here/selftest.sh" || rc=1
[ $rc = 0 ] && echo "harness self-test: ok" || echo "harness self-test: FAILED"
exit $rc
