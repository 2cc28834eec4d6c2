#!/usr/bin/env bash
# scripts/install-deps.sh -- install what heisen's build, tests and demo need on Debian 12/13.
#
#   scripts/install-deps.sh [--bench] [--fuzz] [--check] [--list]
#
#   (no option)  php-fpm, php-cli, valgrind, gcc, libc6-dev, make, pkg-config, python3,
#                python3-venv, python3-pip, binutils (nm, readelf), curl
#   --bench      also wrk, nginx, libev-dev, libevent-dev, libuv1-dev, libfcgi-dev, spawn-fcgi, libfcgi-bin
#   --fuzz       also clang
#   --check      only check: print what is missing and exit 1 if anything is (never installs)
#   --list       print the Debian package names that are missing (one line, space separated)
#
# Idempotent and quiet when everything is present (exit 0, no output). Otherwise, as root,
# runs `apt-get update` once and `apt-get install -y --no-install-recommends` for exactly what
# is missing. Not root and something missing: exits 1 naming the packages to install.
# Each need is checked by what the project uses (a command, a header, a module), not by
# package name, so a python3 or gcc installed outside dpkg counts as present.
set -u

want_bench=0 want_fuzz=0 check_only=0 list_only=0
for a in "$@"; do
    case "$a" in
        --bench) want_bench=1 ;;
        --fuzz) want_fuzz=1 ;;
        --check) check_only=1 ;;
        --list) list_only=1 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install-deps.sh: unknown option $a" >&2; exit 1 ;;
    esac
done

have() { command -v "$1" >/dev/null 2>&1; }
have_fpm() {
    [ -n "${PHP_FPM:-}" ] && [ -x "${PHP_FPM}" ] && return 0
    ls /usr/sbin/php-fpm* >/dev/null 2>&1 || have php-fpm || compgen -c php-fpm8. >/dev/null 2>&1
}
have_header() { [ -e "/usr/include/$1" ] || [ -e "/usr/local/include/$1" ] || ls /usr/include/*/"$1" >/dev/null 2>&1; }
py_mod() { have python3 && python3 -c "import $1" >/dev/null 2>&1; }
missing=()
need() { # PACKAGE CHECK...
    local pkg="$1"; shift
    "$@" || missing+=("$pkg")
}

need php-fpm     have_fpm
need php-cli     have php
need valgrind    have valgrind
need gcc         have cc
need libc6-dev   have_header stdio.h
need make        have make
need pkg-config  have pkg-config
need python3     have python3
need python3-venv py_mod ensurepip
need python3-pip  eval 'have python3 && python3 -m pip --version >/dev/null 2>&1'
need binutils    eval 'have nm && have readelf'
need curl        have curl
if [ "$want_bench" = 1 ]; then
    need wrk          have wrk
    need nginx        eval 'have nginx || [ -x /usr/sbin/nginx ]'
    need libev-dev    have_header ev.h
    need libevent-dev have_header event2/event.h
    need libuv1-dev   have_header uv.h
    need libfcgi-dev  have_header fcgiapp.h
    need spawn-fcgi   have spawn-fcgi
    need libfcgi-bin  have cgi-fcgi
fi
if [ "$want_fuzz" = 1 ]; then
    need clang        have clang
    # Debian's clang only recommends the libFuzzer runtime, and we install without recommends
    need libclang-rt-dev eval '[ -e "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null)" ]'
    need g++          have c++
fi

# de-duplicate, keep order
pkgs=()
for p in "${missing[@]+"${missing[@]}"}"; do
    case " ${pkgs[*]+"${pkgs[*]}"} " in *" $p "*) ;; *) pkgs+=("$p") ;; esac
done

if [ "$list_only" = 1 ]; then
    [ ${#pkgs[@]} -gt 0 ] && echo "${pkgs[*]}"
    exit 0
fi
[ ${#pkgs[@]} -eq 0 ] && exit 0

if [ "$check_only" = 1 ]; then
    echo "install-deps.sh: missing: ${pkgs[*]}" >&2
    echo "install them with: apt-get update && apt-get install -y ${pkgs[*]}" >&2
    exit 1
fi

if [ "$(id -u)" != 0 ]; then
    echo "install-deps.sh: missing: ${pkgs[*]}" >&2
    echo "run as root: apt-get update && apt-get install -y --no-install-recommends ${pkgs[*]}" >&2
    echo "(or: sudo scripts/install-deps.sh $*)" >&2
    exit 1
fi
if ! have apt-get; then
    echo "install-deps.sh: missing: ${pkgs[*]}, and this is not a Debian system (no apt-get): install them by hand" >&2
    exit 1
fi

echo "install-deps.sh: installing ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! apt-get update -q >"$log" 2>&1; then
    echo "install-deps.sh: apt-get update failed:" >&2; tail -n 20 "$log" >&2; rm -f "$log"; exit 1
fi
if ! apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1; then
    echo "install-deps.sh: apt-get install ${pkgs[*]} failed:" >&2; tail -n 30 "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"

# check again: a package that installed but does not provide what we test for is an error
again=$("$0" --list "$@" 2>/dev/null | tr -d '\n')
if [ -n "$again" ]; then
    echo "install-deps.sh: still missing after apt-get install: $again" >&2
    exit 1
fi
# the Debian php-fpm package may start its own system service; ours never use it
echo "install-deps.sh: done" >&2
exit 0
