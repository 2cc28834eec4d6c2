"""``python -m heisen``: output and exit codes (docs/DESIGN.md), against php-fpm and peers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import unittest

from _support import nowhere, peer, php_fpm, subprocess_env, tmp_root

HELLO = b"Hello, world!\n"


def heisen_cli(*args: str, stdin: bytes | None = None, timeout: float = 60,
               cwd: str | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "heisen", *args], input=stdin,
                          capture_output=True, env=subprocess_env(), timeout=timeout, cwd=cwd)


class AgainstPhp(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        address, www = php_fpm()
        cls.address, cls.www = address, str(www)

    def script(self, name: str) -> str:
        return os.path.join(self.www, name)

    def test_body_only(self) -> None:
        p = heisen_cli(self.address, self.script("hello.php"))
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, HELLO, b""))

    def test_include_headers(self) -> None:
        p = heisen_cli("-i", self.address, self.script("hello.php"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith(b"Status: 200\r\n"), p.stdout)
        self.assertIn(b"\r\nContent-type: text/plain;charset=UTF-8\r\n", p.stdout)
        self.assertTrue(p.stdout.endswith(b"\r\n\r\n" + HELLO), p.stdout)

    def test_not_found_is_complete(self) -> None:
        p = heisen_cli("-i", self.address, self.script("notfound.php"))
        self.assertEqual(p.returncode, 0)
        self.assertTrue(p.stdout.startswith(b"Status: 404\r\n"), p.stdout)
        self.assertTrue(p.stdout.endswith(b"\r\n\r\nnot found\n"))

    def test_query_method_params_headers(self) -> None:
        p = heisen_cli("-X", "DELETE", "-H", "X-Test: abc", "-p", "EXTRA=1", self.address,
                       self.script("echo.php"), "a=1&b=2")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(b"\n")[:2], [b"method=DELETE", b"query=a=1&b=2"])
        p = heisen_cli("-H", "X-Test: abc", self.address, self.script("param.php"),
                       "name=HTTP_X_TEST")
        self.assertIn(b"present=1\nlength=3\n", p.stdout)
        p = heisen_cli("-p", "MY_PARAM=hello", self.address, self.script("param.php"),
                       "name=MY_PARAM")
        self.assertIn(b"present=1\nlength=5\n", p.stdout)

    def test_body_from_file_and_stdin(self) -> None:
        data = os.urandom(200_000)
        path = tmp_root() / "body.bin"
        path.write_bytes(data)
        expect = (b"method=POST\nquery=\ncontent_type=application/octet-stream\n"
                  b"content_length=200000\nlength=200000\nsha256="
                  + hashlib.sha256(data).hexdigest().encode() + b"\n")
        p = heisen_cli("-d", f"@{path}", self.address, self.script("echo.php"))
        self.assertEqual((p.returncode, p.stdout), (0, expect), p.stderr)
        p = heisen_cli("-d", "-", self.address, self.script("echo.php"), stdin=data)
        self.assertEqual((p.returncode, p.stdout), (0, expect), p.stderr)
        p = heisen_cli("-d", "hello", "-H", "Content-Type: text/x-test", self.address,
                       self.script("echo.php"))
        self.assertIn(b"content_type=text/x-test\ncontent_length=5\n", p.stdout)

    def test_script_paths_like_heisen_fcgi(self) -> None:
        # relative SCRIPT: relative to the current directory
        p = heisen_cli(self.address, "hello.php", cwd=self.www)
        self.assertEqual((p.returncode, p.stdout), (0, HELLO), p.stderr)
        # --docroot DIR: SCRIPT relative to it, with or without a leading slash
        for script in ("/param.php", "param.php"):
            p = heisen_cli("--docroot", self.www + "/", self.address, script,
                           "name=SCRIPT_FILENAME")
            self.assertEqual(p.returncode, 0, p.stderr)
            want = (self.www + "/param.php").encode()
            self.assertIn(b"present=1\nlength=%d\nsha256=%s\n" % (
                len(want), hashlib.sha256(want).hexdigest().encode()), p.stdout)

    def test_quiet_and_several_backends(self) -> None:
        p = heisen_cli("-q", self.address, self.script("hello.php"))
        self.assertEqual((p.returncode, p.stdout), (0, b""))
        p = heisen_cli("-m", "2", f"{nowhere()},{self.address}", self.script("hello.php"))
        self.assertEqual((p.returncode, p.stdout), (0, HELLO), p.stderr)  # failover

    def test_raw(self) -> None:
        p = heisen_cli("--raw", self.address, self.script("hello.php"))
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"Content-type: text/plain;charset=UTF-8\r\n", p.stdout)
        self.assertTrue(p.stdout.endswith(b"\r\n\r\n" + HELLO), p.stdout)

    def test_backend_stderr_goes_to_stderr(self) -> None:
        p = heisen_cli(self.address, self.script("stderr.php"))
        self.assertEqual((p.returncode, p.stdout), (0, b"stderr sent\n"))
        self.assertIn(b"PHP message: heisen stderr test", p.stderr)

    def test_timeout_exit_124(self) -> None:
        p = heisen_cli("-t", "0.3", self.address, self.script("sleep.php"), "s=3")
        self.assertEqual(p.returncode, 124, p.stderr)
        self.assertEqual(p.stdout, b"")
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertTrue(p.stderr.startswith(b"heisen: "), p.stderr)

    def test_status_health_check(self) -> None:
        p = heisen_cli("--status", self.address)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith(b"ok: pool heisen, pm static, accepted "), p.stdout)
        p = heisen_cli("--status", "--status-path", "/nope", self.address)
        self.assertEqual(p.returncode, 2)

    def test_ping(self) -> None:
        p = heisen_cli("--ping", self.address)
        self.assertEqual((p.returncode, p.stdout), (0, b"pong\n"))

    def test_load_mode(self) -> None:
        p = heisen_cli("-n", "60", "-c", "3", "-k", self.address, self.script("hello.php"))
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode()
        self.assertIn("60 requests, concurrency 3", out)
        self.assertIn("outcomes: complete 60", out)
        self.assertIn("p50", out)


class Failures(unittest.TestCase):
    def with_peer(self, mode: str):  # -> fcgi_peer.Peer
        p = peer(mode)
        self.addCleanup(p.stop)
        return p

    def assert_one_line_reason(self, p: subprocess.CompletedProcess[bytes]) -> None:
        lines = p.stderr.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith("heisen: "), p.stderr)

    def test_bad_gateway_exit_2(self) -> None:
        p = heisen_cli(nowhere(), "/srv/x.php")
        self.assertEqual((p.returncode, p.stdout), (2, b""))
        self.assert_one_line_reason(p)

    def test_truncated_exit_3_prints_what_came(self) -> None:
        p = heisen_cli(self.with_peer("truncated").address, "/srv/x.php")
        self.assertEqual((p.returncode, p.stdout), (3, b"partial\n"))
        self.assert_one_line_reason(p)

    def test_load_mode_exit_code_of_first_failure(self) -> None:
        p = heisen_cli("-n", "5", "-c", "2", self.with_peer("truncated").address, "/srv/x.php")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn(b"outcomes: truncated 5", p.stdout)

    def test_overloaded_exit_4(self) -> None:
        p = heisen_cli(self.with_peer("overloaded").address, "/srv/x.php")
        self.assertEqual(p.returncode, 4)
        self.assert_one_line_reason(p)

    def test_cant_mpx_and_unknown_role_exit_2(self) -> None:
        for mode in ("cantmpx", "unknownrole"):
            p = heisen_cli(self.with_peer(mode).address, "/srv/x.php")
            self.assertEqual(p.returncode, 2, mode)

    def test_silent_backend_exit_124(self) -> None:
        p = heisen_cli("-t", "0.3", self.with_peer("silent").address, "/srv/x.php")
        self.assertEqual(p.returncode, 124)
        self.assert_one_line_reason(p)

    def test_story_peer_complete(self) -> None:
        p = heisen_cli("-i", self.with_peer("story").address, "/srv/x.php")
        self.assertEqual(p.returncode, 0)
        self.assertEqual(p.stdout, b"Status: 200\r\nContent-Type: text/plain\r\n\r\nhello\n")

    def test_status_exit_codes(self) -> None:
        self.assertEqual(heisen_cli("--status", nowhere()).returncode, 2)
        self.assertEqual(heisen_cli("--status", self.with_peer("story").address).returncode, 2)
        self.assertEqual(heisen_cli("--status", "-t", "0.3",
                                    self.with_peer("silent").address).returncode, 124)

    def test_usage_errors_exit_1(self) -> None:
        for args in ([], ["unix:/x"], ["-p", "novalue", "unix:/x", "/a.php"],
                     ["-H", "nocolon", "unix:/x", "/a.php"], ["-t", "-1", "unix:/x", "/a.php"],
                     ["--bogus", "unix:/x", "/a.php"], ["-m", "0", "unix:/x", "/a.php"],
                     ["unix:", "/a.php"], ["-d", "@/nonexistent/file", "unix:/x",
                                                        "/a.php"]):
            p = heisen_cli(*args)
            self.assertEqual(p.returncode, 1, (args, p.stderr))
            self.assertIn(b"usage:", p.stderr)

    def test_library_line(self) -> None:
        p = heisen_cli("--library")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith(b"libheisen "), p.stdout)


if __name__ == "__main__":
    unittest.main()
