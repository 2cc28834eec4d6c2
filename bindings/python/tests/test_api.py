"""The public API is documented and annotated: every name in ``heisen.__all__``, and every
public method and property of the public classes, has a docstring and type annotations."""

from __future__ import annotations

import inspect
import unittest
from pathlib import Path

import _support  # noqa: F401

import heisen


def public_members(cls: type) -> list[tuple[str, object]]:
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if inspect.isfunction(member) or isinstance(member, (property, staticmethod,
                                                             classmethod)):
            out.append((name, member))
    return out


class PublicApi(unittest.TestCase):
    def test_py_typed_marker_ships(self) -> None:
        self.assertTrue((Path(heisen.__file__).parent / "py.typed").exists())

    def test_every_public_name_has_a_docstring(self) -> None:
        missing = []
        for name in heisen.__all__:
            obj = getattr(heisen, name)
            if isinstance(obj, int):
                continue  # constants
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(name)
            if inspect.isclass(obj):
                for mname, member in public_members(obj):
                    target = member.fget if isinstance(member, property) else member
                    if isinstance(target, (staticmethod, classmethod)):
                        target = target.__func__
                    if not (inspect.getdoc(target) or "").strip():
                        missing.append(f"{name}.{mname}")
        self.assertEqual(missing, [])

    def test_every_public_callable_is_annotated(self) -> None:
        missing = []

        def check(label: str, fn: object) -> None:
            sig = inspect.signature(fn)  # type: ignore[arg-type]
            for pname, p in sig.parameters.items():
                if pname in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) \
                        and p.annotation is not p.empty:
                    continue
                if p.annotation is p.empty:
                    missing.append(f"{label}({pname})")
            if sig.return_annotation is sig.empty:
                missing.append(f"{label} -> ?")

        for name in heisen.__all__:
            obj = getattr(heisen, name)
            if inspect.isfunction(obj):
                check(name, obj)
            elif inspect.isclass(obj) and not issubclass(obj, BaseException):
                for mname, member in public_members(obj):
                    if inspect.isfunction(member):
                        check(f"{name}.{mname}", member)
                    elif isinstance(member, property) and member.fget is not None:
                        check(f"{name}.{mname}", member.fget)
        self.assertEqual(missing, [])


if __name__ == "__main__":
    unittest.main()
