"""A private php-fpm for Python tests (wraps scripts/php-fpm.sh). Standard library only.

    sys.path.insert(0, "tests/harness")
    import phpfpm

    if not phpfpm.available():
        raise unittest.SkipTest("php-fpm not installed (scripts/install-deps.sh)")
    with phpfpm.PhpFpm(workers=2) as fpm:         # own temp dir, stopped and removed at exit
        fpm.address                                 # "unix:/tmp/heisen-fpm.XXXX/php-fpm.sock"
        fpm.script("echo.php")                      # "/tmp/heisen-fpm.XXXX/www/echo.php"
        fpm.www                                     # the docroot (a copy of tests/php/)
        fpm.reload()                                # SIGUSR2, waits until it answers again
        fpm.worker_pids()                           # for chaos tests

Options: PhpFpm(workers=4, tcp=False (True: 127.0.0.1 on a free port), max_requests=0,
settings=("pm = dynamic", ...), dir=None (a new temp dir, removed at stop)).
"""

import os
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "php-fpm.sh")


def available():
    """True when a php-fpm binary can be found (the same search as scripts/php-fpm.sh)."""
    if os.environ.get("PHP_FPM"):
        return os.access(os.environ["PHP_FPM"], os.X_OK)
    if os.path.isdir("/usr/sbin") and any(f.startswith("php-fpm") for f in os.listdir("/usr/sbin")):
        return True
    return shutil.which("php-fpm") is not None


class PhpFpm:
    def __init__(self, workers=4, tcp=False, max_requests=0, settings=(), dir=None):
        self._own_dir = dir is None
        self.dir = dir or tempfile.mkdtemp(prefix="heisen-fpm.")
        os.chmod(self.dir, 0o755)
        args = ["bash", SCRIPT, "start", self.dir, "--workers", str(workers), "--quiet"]
        if tcp:
            args += ["--tcp", "0"]
        if max_requests:
            args += ["--max-requests", str(max_requests)]
        for line in settings:
            args += ["--set", line]
        out = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if out.returncode != 0:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError("scripts/php-fpm.sh start failed (%d): %s"
                               % (out.returncode, out.stderr.decode(errors="replace").strip()))
        self.address = out.stdout.decode().strip()
        self.www = os.path.join(self.dir, "www")
        self.log = os.path.join(self.dir, "php-fpm.log")
        self.running = True

    def script(self, name):
        return os.path.join(self.www, name)

    def reload(self):
        subprocess.run(["bash", SCRIPT, "reload", self.dir], check=True, stderr=subprocess.PIPE)

    def worker_pids(self):
        out = subprocess.run(["bash", SCRIPT, "workers", self.dir], stdout=subprocess.PIPE)
        return [int(x) for x in out.stdout.split()]

    def master_pid(self):
        with open(os.path.join(self.dir, "php-fpm.pid")) as f:
            return int(f.read().strip())

    def stop(self):
        if self.running:
            subprocess.run(["bash", SCRIPT, "stop", self.dir], stderr=subprocess.DEVNULL)
            self.running = False
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
