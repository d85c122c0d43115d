#!/usr/bin/env python3
"""A throw-away PostgreSQL server for tests.

Starts a server of its own (initdb and pg_ctl in a temporary directory, a free
loopback port, its UNIX socket in that directory, fsync off), never a system
service, and removes it afterwards. As root the server runs as an unprivileged
user (`postgres`, which Debian's package creates), through runuser.

    python3 tests/pg_server.py -- COMMAND ARGS...

runs COMMAND with WEFT_TEST_PGSQL set to a libpq URI of the server (database
`weft`, superuser `weft`, trust authentication) and exits with its status; 77
(meson's "skipped") when no PostgreSQL server binaries are installed. Python
tests use PgServer as a context manager.
"""
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_port  # noqa: E402


def find_bindir():
    try:
        d = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                           check=True).stdout.strip()
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None




class PgServer:
    def __init__(self, user=None):
        self.bindir = find_bindir()
        if not self.bindir:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb)")
        self.as_root = os.geteuid() == 0
        # initdb refuses to run as root: Debian's package creates `postgres`;
        # without it, `nobody` will do for a throw-away server.
        if user is None:
            try:
                pwd.getpwnam("postgres")
                user = "postgres"
            except KeyError:
                user = "nobody"
        self.user = user
        self.dir = None
        self.port = None

    def _run(self, *argv, **kw):
        cmd = [os.path.join(self.bindir, argv[0])] + list(argv[1:])
        if self.as_root:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        return subprocess.run(cmd, check=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, **kw)

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="weft-pg-")
        if self.as_root:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        data = os.path.join(self.dir, "data")
        self._run("initdb", "-D", data, "-U", "weft", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        self.port = free_port()
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        try:
            self._run("pg_ctl", "-D", data, "-l", os.path.join(self.dir, "log"), "-o", opts,
                      "-w", "-t", "60", "start")
        except subprocess.CalledProcessError:
            sys.stderr.write(open(os.path.join(self.dir, "log")).read())
            raise
        self._run("createdb", "-h", self.dir, "-p", str(self.port), "-U", "weft", "weft")
        return self

    def url(self, db="weft"):
        return f"postgresql:///{db}?host={self.dir}&port={self.port}&user=weft"

    def stop(self):
        if not self.dir:
            return
        try:
            self._run("pg_ctl", "-D", os.path.join(self.dir, "data"), "-m", "fast", "-w",
                      "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        sys.stderr.write("usage: pg_server.py -- COMMAND [ARGS...]\n")
        return 2
    cmd = argv[argv.index("--") + 1:]
    try:
        server = PgServer()
    except FileNotFoundError as e:
        print(f"pg_server: {e}: skipped", file=sys.stderr)
        return 77
    with server:
        env = dict(os.environ, WEFT_TEST_PGSQL=server.url())
        return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
