"""Shared test fixtures: the package under test, the library, php-fpm and the scripted peer.

* ``import heisen`` always imports the package from this source tree.
* The library comes from ``$HEISEN_LIBRARY`` (set by ``run_tests.sh`` and the lead's
  ``make test``) or the package's own search order.
* :func:`php_fpm` starts one private php-fpm for the whole test run with
  ``scripts/php-fpm.sh start DIR`` and stops it at exit.
* :func:`peer` starts ``tests/harness/fcgi_peer.py`` in-process in a given mode.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
PKG_ROOT = HERE.parent  # bindings/python
REPO = PKG_ROOT.parent.parent
HARNESS = REPO / "tests" / "harness"
PHP_FPM_SH = REPO / "scripts" / "php-fpm.sh"
HEADER = REPO / "include" / "heisen.h"

if str(PKG_ROOT) not in sys.path:
    sys.path.insert(0, str(PKG_ROOT))
if str(HARNESS) not in sys.path:
    sys.path.append(str(HARNESS))

import heisen  # noqa: E402

# How many php-fpm workers: more than the threads of the concurrency tests, because every
# thread's keep-alive connection holds a worker (see heisen/_fcgi.py).
PHP_WORKERS = 12

_lock = threading.Lock()
_php: tuple[str, Path] | None = None
_tmp_root: Path | None = None


def tmp_root() -> Path:
    """A temporary directory for this test run (short path: unix sockets live there)."""
    global _tmp_root
    with _lock:
        if _tmp_root is None:
            _tmp_root = Path(tempfile.mkdtemp(prefix="heisen-py-", dir="/tmp"))
            atexit.register(shutil.rmtree, str(_tmp_root), True)
        return _tmp_root


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child ``python -m heisen``: this source tree first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_ROOT) + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def php_fpm() -> tuple[str, Path]:
    """``(address, docroot)`` of the private php-fpm (started on first use)."""
    global _php
    with _lock:
        if _php is not None:
            return _php
    directory = tmp_root() / "fpm"
    if not PHP_FPM_SH.exists():
        raise RuntimeError(f"{PHP_FPM_SH} is missing: cannot start php-fpm")
    proc = subprocess.run(
        ["bash", str(PHP_FPM_SH), "start", str(directory), "--workers", str(PHP_WORKERS),
         "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(
            f"scripts/php-fpm.sh start failed (exit {proc.returncode}): {proc.stderr.strip()}")
    address = proc.stdout.strip().splitlines()[-1]
    atexit.register(_stop_php, directory)
    with _lock:
        _php = (address, directory / "www")
        return _php


def _stop_php(directory: Path) -> None:
    subprocess.run(["bash", str(PHP_FPM_SH), "stop", str(directory)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


_peer_ids = iter(range(1, 1_000_000))


def peer(mode: str, **opts: object):  # -> fcgi_peer.Peer
    """Start ``fcgi_peer.py`` in-process on a fresh unix socket; call ``.stop()`` after."""
    import fcgi_peer  # tests/harness/fcgi_peer.py

    path = tmp_root() / f"peer{next(_peer_ids)}.sock"
    return fcgi_peer.start(f"unix:{path}", mode, **opts)


def nowhere() -> str:
    """An address where nothing listens (a unix socket path that does not exist)."""
    return f"unix:{tmp_root() / 'nobody-listens-here.sock'}"


PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"


def big_body(n: int) -> bytes:
    """What ``big.php?n=N`` sends."""
    return (PATTERN * (n // 64 + 1))[:n]
