"""include/heisen.h and the Python prototype table must agree, in both directions.

* every ``heisen_*`` function declared in the header has a prototype in ``heisen._lib``, and
  every prototype names a function of the header;
* the number of arguments and void/non-void return agree;
* every numeric ``HEISEN_*`` constant of the header (``#define`` or enumerator) has the same
  value in ``heisen._lib``, and every constant of ``heisen._lib`` is in the header;
* the loaded library exports every prototype.
"""

from __future__ import annotations

import re
import unittest

from _support import HEADER

from heisen import _lib

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_DECL = re.compile(
    r"(?P<ret>[A-Za-z_][\w \t*]*?)\b(?P<name>heisen_[a-z0-9_]+)\s*\((?P<args>[^()]*)\)\s*;")
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(HEISEN_[A-Z0-9_]+)[ \t]+\(?[ \t]*"
                     r"(-?(?:0[xX][0-9a-fA-F]+|\d+))[uUlL]*[ \t]*\)?[ \t]*$", re.M)
_ENUMERATOR = re.compile(r"\b(HEISEN_[A-Z0-9_]+)\s*=\s*\(?\s*(-?(?:0[xX][0-9a-fA-F]+|\d+))"
                         r"[uUlL]*\s*\)?\s*[,}]")

# checked when the header has them (the draft in docs/DESIGN.md does not define it)
_OPTIONAL_IN_HEADER = {"HEISEN_ABI_VERSION"}

# header macros that are not values the bindings need
_IGNORED_CONSTANTS = re.compile(r"^HEISEN_(VERSION_(MAJOR|MINOR|PATCH)|.*_H)$")


def header_text() -> str:
    if not HEADER.exists():
        raise AssertionError(f"{HEADER} does not exist (build the library first)")
    return _COMMENTS.sub(" ", HEADER.read_text())


def header_functions(text: str) -> dict[str, tuple[str, int]]:
    """``{name: (return type, argument count)}`` of every function declaration."""
    out: dict[str, tuple[str, int]] = {}
    flat = re.sub(r"\s+", " ", re.sub(r"^[ \t]*#.*$", " ", text, flags=re.M))
    for m in _DECL.finditer(flat):
        ret = m.group("ret").strip()
        if ret.endswith("(*") or "typedef" in ret.split():
            continue  # a function pointer typedef, not a function
        # drop attribute macros such as HEISEN_MUST_USE / extern
        ret = " ".join(w for w in ret.split() if not w.isupper() and w != "extern")
        args = m.group("args").strip()
        count = 0 if args in ("", "void") else args.count(",") + 1
        out[m.group("name")] = (ret, count)
    return out


def header_constants(text: str) -> dict[str, int]:
    consts: dict[str, int] = {}
    for regex in (_DEFINE, _ENUMERATOR):
        for name, value in regex.findall(text):
            if not _IGNORED_CONSTANTS.match(name):
                consts[name] = int(value, 0)
    return consts


def python_constants() -> dict[str, int]:
    consts: dict[str, int] = {}
    for name, value in vars(_lib).items():
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool):
            consts["HEISEN_" + name] = value
    for index, name in enumerate(_lib.FCGI_STAT_NAMES):
        consts["HEISEN_FCGI_STAT_" + name.upper()] = index
    return consts


class HeaderSync(unittest.TestCase):
    def test_every_header_function_has_a_prototype(self) -> None:
        declared = header_functions(header_text())
        self.assertGreater(len(declared), 20, "the header parser found almost nothing")
        missing = sorted(set(declared) - set(_lib.PROTOTYPES))
        self.assertEqual(missing, [], "functions of include/heisen.h with no Python prototype")

    def test_every_prototype_is_in_the_header(self) -> None:
        declared = header_functions(header_text())
        extra = sorted(set(_lib.PROTOTYPES) - set(declared))
        self.assertEqual(extra, [], "Python prototypes of functions not in include/heisen.h")

    def test_arity_and_return_agree(self) -> None:
        declared = header_functions(header_text())
        wrong = []
        for name, (ret, count) in sorted(declared.items()):
            if name not in _lib.PROTOTYPES:
                continue
            restype, argtypes = _lib.PROTOTYPES[name]
            if len(argtypes) != count:
                wrong.append(f"{name}: header has {count} arguments, Python {len(argtypes)}")
            if (ret == "void") != (restype is None):
                wrong.append(f"{name}: header returns {ret!r}, Python restype {restype!r}")
        self.assertEqual(wrong, [])

    def test_constants_agree(self) -> None:
        header = header_constants(header_text())
        python = python_constants()
        self.assertIn("HEISEN_STATUS_OK", header, "the header parser found no status values")
        problems = []
        for name, value in sorted(header.items()):
            if name not in python:
                problems.append(f"{name} = {value} is in the header, not in heisen._lib")
            elif python[name] != value:
                problems.append(f"{name}: header {value}, heisen._lib {python[name]}")
        for name in sorted(set(python) - set(header) - _OPTIONAL_IN_HEADER):
            problems.append(f"{name} = {python[name]} is in heisen._lib, not in the header")
        self.assertEqual(problems, [])

    def test_library_exports_every_prototype(self) -> None:
        lib = _lib.lib()
        self.assertEqual(lib.missing, [], f"{lib.path} lacks these functions")

    def test_parser_on_a_known_snippet(self) -> None:
        # guards the regexes themselves, independent of the real header
        text = _COMMENTS.sub(" ", """
            typedef void (*heisen_free_fn)(void *user_data);   /* not a function */
            #define HEISEN_EV_READ 1u
            typedef enum heisen_status { HEISEN_STATUS_OK = 0, HEISEN_STATUS_BUSY = 16 } x;
            HEISEN_MUST_USE heisen_status heisen_reactor_run(heisen_reactor *reactor,
                                                             int32_t mode);
            void heisen_reactor_free(heisen_reactor *reactor); /* see heisen_x() */
            uint32_t heisen_version(void);
        """)
        self.assertEqual(header_functions(text), {
            "heisen_reactor_run": ("heisen_status", 2),
            "heisen_reactor_free": ("void", 1),
            "heisen_version": ("uint32_t", 0),
        })
        self.assertEqual(header_constants(text), {
            "HEISEN_EV_READ": 1, "HEISEN_STATUS_OK": 0, "HEISEN_STATUS_BUSY": 16})


if __name__ == "__main__":
    unittest.main()
