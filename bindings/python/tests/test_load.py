"""Loading libheisen: the search order, the ABI check and its message, versions, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

from _support import PKG_ROOT, REPO

import heisen
from heisen import _lib

PROBE = "import heisen; print(heisen.library_path()); print(heisen.version())"


def run_python(code: str, *, cwd: str | None = None, pythonpath: str | None = None,
               env_update: dict[str, str] | None = None,
               unset: tuple[str, ...] = ("HEISEN_LIBRARY",)) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for name in unset:
        env.pop(name, None)
    env["PYTHONPATH"] = pythonpath if pythonpath is not None else str(PKG_ROOT)
    env.update(env_update or {})
    return subprocess.run([sys.executable, "-c", code], cwd=cwd or tempfile.gettempdir(),
                          env=env, capture_output=True, text=True, timeout=60)


def copy_package(dest: Path) -> Path:
    pkg = dest / "heisen"
    shutil.copytree(PKG_ROOT / "heisen", pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "libheisen.so*"))
    return pkg


class Versions(unittest.TestCase):
    def test_version_strings_agree(self) -> None:
        text = heisen.version()
        major, minor, patch = heisen.version_info()
        self.assertEqual(text.split("-")[0], f"{major}.{minor}.{patch}")
        self.assertEqual(heisen.abi_version(), heisen.ABI_VERSION)
        self.assertEqual(heisen.ABI_VERSION, 1)
        self.assertTrue(os.path.isabs(heisen.library_path()))

    def test_strerror_for_every_status(self) -> None:
        for status in range(18):
            self.assertTrue(heisen.strerror(status), status)
        self.assertTrue(heisen.strerror(9999))  # any int: "unknown status", never NULL

    def test_exception_classes(self) -> None:
        expect = {
            _lib.STATUS_TIMEOUT: heisen.GatewayTimeout,
            _lib.STATUS_BAD_GATEWAY: heisen.BadGateway,
            _lib.STATUS_OVERLOADED: heisen.Overloaded,
            _lib.STATUS_TRUNCATED: heisen.Truncated,
            _lib.STATUS_ABORTED: heisen.Aborted,
            _lib.STATUS_CANT_MPX_CONN: heisen.CantMultiplex,
            _lib.STATUS_UNKNOWN_ROLE: heisen.UnknownRole,
            _lib.STATUS_CLOSED: heisen.ClosedError,
            _lib.STATUS_REENTRANT: heisen.ReentrantError,
        }
        for status, cls in expect.items():
            self.assertIs(heisen.exception_class(status), cls)
            self.assertTrue(issubclass(cls, heisen.Error))
        self.assertTrue(issubclass(heisen.CantMultiplex, heisen.BadGateway))
        self.assertTrue(issubclass(heisen.GatewayTimeout, TimeoutError))
        self.assertEqual(heisen.BadGateway.http_status, 502)
        self.assertEqual(heisen.Overloaded.http_status, 503)
        self.assertEqual(heisen.GatewayTimeout.http_status, 504)


class SearchOrder(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="heisen-load-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.real = heisen.library_path()

    def test_env_variable_is_exclusive_and_listed(self) -> None:
        missing = str(self.tmp / "nope" / "libheisen.so")
        p = run_python(PROBE, unset=(), env_update={"HEISEN_LIBRARY": missing})
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("heisen._errors.LibraryError", p.stderr)
        self.assertIn(f"$HEISEN_LIBRARY: {missing}: not found", p.stderr)
        self.assertNotIn("system loader", p.stderr)

    def test_env_variable_used(self) -> None:
        copy = self.tmp / "libheisen-copy.so"
        shutil.copy(self.real, copy)
        p = run_python(PROBE, unset=(), env_update={"HEISEN_LIBRARY": str(copy)})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines()[0], str(copy))

    def test_not_a_heisen_library(self) -> None:
        libc = "/lib/x86_64-linux-gnu/libc.so.6"
        if not os.path.exists(libc):
            self.skipTest("no libc.so.6 at the Debian path")
        p = run_python(PROBE, unset=(), env_update={"HEISEN_LIBRARY": libc})
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no heisen_abi_version()", p.stderr)

    def test_abi_mismatch_is_refused_with_where_it_looked(self) -> None:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            self.skipTest("no C compiler to build a fake library")
        src = self.tmp / "fake.c"
        src.write_text("unsigned heisen_abi_version(void) { return 2; }\n")
        fake = self.tmp / "libheisen.so"
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(fake), str(src)], check=True)
        p = run_python(PROBE, unset=(), env_update={"HEISEN_LIBRARY": str(fake)})
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(f"$HEISEN_LIBRARY: {fake}: loaded, but its ABI version is 2; these "
                      "bindings need 1", p.stderr)
        self.assertIn("cannot find a usable libheisen (ABI version 1); looked at:", p.stderr)

    def test_copy_next_to_the_package_comes_first(self) -> None:
        pkg = copy_package(self.tmp)
        shutil.copy(self.real, pkg / "libheisen.so.1")
        p = run_python(PROBE, pythonpath=str(self.tmp))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines()[0], str(pkg / "libheisen.so.1"))

    def test_repository_build_output(self) -> None:
        built = REPO / "target" / "release" / "libheisen.so"
        if not built.exists():
            self.skipTest(f"{built} not built")
        p = run_python(PROBE)  # the source tree's package, nothing next to it
        if (PKG_ROOT / "heisen" / "libheisen.so.1").exists() or \
                (PKG_ROOT / "heisen" / "libheisen.so").exists():
            self.skipTest("a library copy sits next to the source package")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines()[0], os.path.realpath(built))

    def test_system_loader_last(self) -> None:
        pkg = copy_package(self.tmp / "site")  # no copy next to it, no repository around it
        libdir = self.tmp / "lib"
        libdir.mkdir()
        shutil.copy(self.real, libdir / "libheisen.so.1")
        p = run_python(PROBE, pythonpath=str(pkg.parent),
                       env_update={"LD_LIBRARY_PATH": str(libdir)})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines()[0], str(libdir / "libheisen.so.1"))

    def test_nothing_found_lists_every_place(self) -> None:
        pkg = copy_package(self.tmp / "site")
        p = run_python(PROBE, pythonpath=str(pkg.parent), env_update={"LD_LIBRARY_PATH": ""})
        if p.returncode == 0:
            self.skipTest(f"a system-wide libheisen.so.1 is installed: {p.stdout.strip()}")
        expected = textwrap.dedent(f"""\
            cannot find a usable libheisen (ABI version 1); looked at:
              copy next to the package: {pkg}/libheisen.so.1: not found
              copy next to the package: {pkg}/libheisen.so: not found
              repository build output: {pkg.resolve().parent.parent.parent}/target/release/libheisen.so: not found
              system loader: libheisen.so.1: cannot load: """)
        self.assertIn(expected, p.stderr)


if __name__ == "__main__":
    unittest.main()
