#!/usr/bin/env bash
# scripts/soak.sh -- heisen-httpd in front of php-fpm under load, with backend faults (`make soak`).
#
#   scripts/soak.sh                    about 3 minutes
#   SOAK_SECONDS=1800 scripts/soak.sh  longer
#   SOAK_SHORT=1 scripts/soak.sh       about 30 s (the test command's version)
#
# Load: SOAK_CONNECTIONS (default 16) keep-alive connections; chaos: SIGKILL a php-fpm worker,
# SIGUSR2 reload, restart the master (1 s down), rename the socket away for 0.5 s; one fault
# every SOAK_QUIET seconds (default 3). heisen-httpd runs with -fastcgi-timeout SOAK_TIMEOUT_MS
# (default 3000) and -cpu SOAK_CPU (default 1). What is asserted and reported:
# tests/hardening/soak.py. The report is also written as JSON to SOAK_JSON (default
# build/soak.json). Needs the build (`make`) and php-fpm (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${SOAK_SECONDS:-180}"
[ "${SOAK_SHORT:-0}" = 1 ] && secs="${SOAK_SECONDS:-30}"
mkdir -p build
exec "${PYTHON:-python3}" tests/hardening/soak.py --seconds "$secs" \
    --connections "${SOAK_CONNECTIONS:-16}" --quiet "${SOAK_QUIET:-3}" \
    --timeout-ms "${SOAK_TIMEOUT_MS:-3000}" --cpu "${SOAK_CPU:-1}" \
    --json "${SOAK_JSON:-build/soak.json}"
