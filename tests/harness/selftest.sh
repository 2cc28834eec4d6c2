#!/usr/bin/env bash
# Self-test of tests/harness/lib.sh (and through it php-fpm.sh, fcgi_peer.py, fcgi_client.py).
set -u
. "$(dirname "$0")/lib.sh"
trap h_cleanup EXIT

d=$(h_tmpdir)
h_peer_start story "unix:$d/peer.sock" || exit 1
h_expect_eq "peer address" "unix:$d/peer.sock" "$H_PEER"
h_expect_eq "story body" "hello" "$(h_fcgi "$H_PEER" /x.php)"
h_peer_start truncated tcp:127.0.0.1:0 || exit 1
h_fcgi "$H_PEER" /x.php >/dev/null 2>&1
h_expect_eq "truncated exit code" 3 "$?"
h_peer_start overloaded tcp:127.0.0.1:0 || exit 1
h_fcgi "$H_PEER" /x.php >/dev/null 2>&1
h_expect_eq "overloaded exit code" 4 "$?"
if ls /usr/sbin/php-fpm* >/dev/null 2>&1 || command -v php-fpm >/dev/null 2>&1; then
    h_fpm_start "$d/fpm" --workers 2 || exit 1
    h_expect_eq "php-fpm hello" "Hello, world!" "$(h_fcgi "$H_FPM" "$H_WWW/hello.php")"
    h_expect_eq "php-fpm echo" "method=GET" "$(h_fcgi "$H_FPM" "$H_WWW/echo.php" | head -n1)"
else
    echo "skip: php-fpm not installed"
fi
[ "$H_FAILS" = 0 ] && echo "selftest.sh: ok" || { echo "selftest.sh: $H_FAILS failed"; exit 1; }
