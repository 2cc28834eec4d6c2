"""Build hook: ship the built libheisen inside the package.

``pip install ./bindings/python`` after ``cargo build --release`` (or ``make``) copies
``$HEISEN_LIBRARY`` or else ``../../target/release/libheisen.so`` into the package as
``heisen/libheisen.so.1``, the second place the package looks (after ``$HEISEN_LIBRARY``), so
the installed package works without the checkout. Without a built library the package is
installed alone and finds the library at run time (``$HEISEN_LIBRARY``, ``libheisen.so.1`` via
the system loader after ``make install``). Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


def built_library() -> Path | None:
    env = os.environ.get("HEISEN_LIBRARY")
    for candidate in ([Path(env)] if env else []) + [
            HERE.parent.parent / "target" / "release" / "libheisen.so"]:
        if candidate.is_file():
            return candidate.resolve()
    return None


class BuildPyWithLibrary(build_py):
    def run(self) -> None:
        super().run()
        lib = built_library()
        if lib is not None and not self.dry_run:
            dest = Path(self.build_lib) / "heisen" / "libheisen.so.1"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(lib, dest)
            os.chmod(dest, 0o755)
            print(f"heisen: shipping {lib} as {dest}")
        elif lib is None:
            print("heisen: no built libheisen found; the package will look for it at run time")


class BinaryDistribution(Distribution):
    """A wheel that carries libheisen.so.1 is platform-specific."""

    def has_ext_modules(self) -> bool:
        return built_library() is not None


cmdclass: dict[str, type] = {"build_py": BuildPyWithLibrary}
try:  # the library does not depend on the Python version: tag the wheel py3-none-PLATFORM
    try:
        from setuptools.command.bdist_wheel import bdist_wheel  # setuptools >= 70.1
    except ImportError:
        from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

    class BdistWheel(bdist_wheel):  # type: ignore[misc,valid-type]
        def get_tag(self) -> tuple[str, str, str]:
            python, abi, plat = super().get_tag()
            if built_library() is not None:
                return "py3", "none", plat
            return python, abi, plat

    cmdclass["bdist_wheel"] = BdistWheel
except ImportError:
    pass

setup(cmdclass=cmdclass, distclass=BinaryDistribution)
