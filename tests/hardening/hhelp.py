"""Helpers shared by the hardening tests: the C programs' test helpers (tests/programs/common.py:
Httpd, Conn, PhpFpm) plus process readings."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "programs"))
sys.path.insert(0, HERE)
import common  # noqa: E402,F401  (tests/programs/common.py)
import hostile_peer  # noqa: E402,F401


def fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def need_httpd(test_cls):
    import unittest
    if not os.path.exists(common.HTTPD):
        raise unittest.SkipTest("%s is not built (make)" % os.path.relpath(common.HTTPD, ROOT))


def known_finding(name):
    """Marks a test of an open finding (SECURITY.md "Findings") as an expected failure, unless
    HARDENING_STRICT=1. When it passes, unittest reports an "unexpected success": the finding is
    fixed, remove the mark."""
    import unittest

    def deco(f):
        if os.environ.get("HARDENING_STRICT") == "1":
            return f
        f = unittest.expectedFailure(f)
        f.__doc__ = "[open finding %s] %s" % (name, f.__doc__ or "")
        return f
    return deco
