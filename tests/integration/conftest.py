"""Shared fixtures for weft integration tests: real processes on loopback.

Every test gets its own temporary directory and free ports (asked from the
kernel), and every process it starts is stopped at teardown.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

BUILD = os.environ.get("WEFT_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))

# WEFT_TEST_STORAGE=postgresql runs the sm of the tests on PostgreSQL: one
# throw-away server per test process (tests/pg_server.py, started at the
# first use), one database per test directory. Unset or "sqlite": the file
# <dir>/weft.db as before.
STORAGE = os.environ.get("WEFT_TEST_STORAGE", "sqlite")
_pg = None
_pg_dbs = {}


def sm_storage_url(directory):
    """The storage URL the sm of a test in directory uses (stable for the
    directory, so an sm restarted there finds its data)."""
    if STORAGE != "postgresql":
        return f"sqlite:{directory}/weft.db"
    global _pg
    key = str(directory)
    if key not in _pg_dbs:
        if _pg is None:
            import atexit
            import sys
            sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
            from pg_server import PgServer
            _pg = PgServer().start()
            atexit.register(_pg.stop)
        name = f"t{len(_pg_dbs) + 1}"
        _pg._run("createdb", "-h", _pg.dir, "-p", str(_pg.port), "-U", "weft", name)
        _pg_dbs[key] = _pg.url(name)
    return _pg_dbs[key]


def sm_storage_xml(directory):
    """The sm.xml element naming that storage."""
    if STORAGE != "postgresql":
        return f"<database>{directory}/weft.db</database>"
    return f"<storage>{sm_storage_url(directory).replace('&', '&amp;')}</storage>"


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ports import free_port  # noqa: E402,F401  (tests/ports.py; tests import it from here)


def wait_port(port, timeout=None):
    # WEFT_START_TIMEOUT: the valgrind run sets it, since a process under
    # valgrind starts 20-50x slower (s2s's load of the system trust store is
    # ~470,000 allocations) and a loaded machine makes that 10 s or more.
    if timeout is None:
        timeout = float(os.environ.get("WEFT_START_TIMEOUT", "10"))
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening")


def wait_for(pred, timeout=10.0, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def router_control(ctl, command="stats"):
    """The router's answer to one command on its control socket at path ctl
    (docs/component-protocol.md, 14)."""
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(ctl))
        s.sendall(command.encode() + b"\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data.decode()
            data += chunk
    finally:
        s.close()


def router_unacked(ctl, component):
    """Deliveries the router has written to component's link and not had
    acknowledged (None while it has no link)."""
    m = re.search(rf"component={component} [^\n]* unacked=(\d+)", router_control(ctl))
    return int(m.group(1)) if m else None


def selfsigned_cert(crt, key, domain):
    """Writes a self-signed certificate for domain (and *.domain) to crt and
    its key to key unless crt exists. weft creates one by itself only at its
    default path (tls.self-signed), so a config naming paths needs them made.
    The certificate can be pinned as a trust anchor (cafile=crt)."""
    crt, key = str(crt), str(key)
    if os.path.exists(crt):
        return crt, key
    for p in (crt, key):
        os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt + ".tmp", "-days", "3", "-subj", f"/CN={domain}",
                    "-addext", f"subjectAltName=DNS:{domain},DNS:*.{domain}"],
                   check=True, capture_output=True)
    os.replace(crt + ".tmp", crt)
    return crt, key


ROUTER_XML = """<router>
  <name>router</name>
  <listen>127.0.0.1:{port}</listen>
  <control>{dir}/router.ctl</control>
  <log><level>{log_level}</level></log>
  <hold><seconds>{hold}</seconds></hold>
  {extra}
  <component name="a" secret="secret-a"><bind>a.test</bind></component>
  <component name="b" secret="secret-b"><bind>b.test</bind><bind>c.test</bind><bind>p.test</bind></component>
  <component name="b2" secret="secret-b2"><bind>p.test</bind></component>
  <component name="legacy.test" secret="legacy-secret" protocol="xep0114"/>
  <partition>p.test</partition>
</router>
"""


class Proc:
    def __init__(self, args, log_path):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)

    def kill9(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()

    def stop(self, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode

    def report(self, timeout=60):
        """Asks a testcomp for its JSON report (SIGTERM) and returns it."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        out, _ = self.p.communicate(timeout=timeout)
        self.log.close()
        lines = [l for l in out.decode().splitlines() if l.startswith("{")]
        assert lines, f"no report from {self.args}"
        return json.loads(lines[-1])

    def wait_report(self, timeout=60):
        """Waits for a testcomp to exit by itself (--expect) and parses its report."""
        out, _ = self.p.communicate(timeout=timeout)
        self.log.close()
        lines = [l for l in out.decode().splitlines() if l.startswith("{")]
        assert lines, f"no report from {self.args}"
        return json.loads(lines[-1])


class Env:
    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.procs = []
        self.router_port = free_port()
        self.router = None

    def write_router_config(self, hold=30, extra="", log_level="info"):
        path = self.dir / "router.xml"
        path.write_text(ROUTER_XML.format(port=self.router_port, dir=self.dir, hold=hold,
                                          extra=extra, log_level=log_level))
        return path

    def start_router(self, **kw):
        cfg = self.dir / "router.xml"
        if kw or not cfg.exists():
            cfg = self.write_router_config(**kw)
        self.router = Proc([os.path.join(BUILD, "router", "weft-router"), "-c", str(cfg)],
                           self.dir / "router.log")
        self.procs.append(self.router)
        wait_port(self.router_port)
        return self.router

    def comp(self, name, secret, *args, ready=True):
        ready_file = self.dir / f"ready-{name}-{len(self.procs)}"
        p = Proc([os.path.join(BUILD, "tests", "integration", "testcomp"),
                  "--router", f"127.0.0.1:{self.router_port}", "--name", name, "--secret", secret,
                  "--ready-file", str(ready_file), *[str(a) for a in args]],
                 self.dir / f"comp-{name}.log")
        self.procs.append(p)
        if ready:
            assert wait_for(ready_file.exists, 15), f"component {name} never became ready; see {p.log_path}"
        p.ready_file = ready_file
        return p

    def stats(self):
        return router_control(self.dir / "router.ctl")

    def router_log(self):
        return (self.dir / "router.log").read_text(errors="replace")

    def close(self):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:
                pass


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.close()


# A failure in CI is often seen once and its temporary directory is gone by
# the time anyone looks (pytest keeps the last three). So a failed test's
# report carries the end of every process log in its directory; a test whose
# processes live in a module fixture's directory (the federation tests'
# fed.py worlds) has no tmp_path of its own, and gets the logs under the
# session's base directory that were written while it ran.
LOG_TAIL_LINES = int(os.environ.get("WEFT_TEST_LOG_TAIL", "60"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed or LOG_TAIL_LINES <= 0:
        return
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    since = 0
    if tmp is None:
        try:
            tmp = item.config._tmp_path_factory.getbasetemp()
        except (AttributeError, OSError):
            return
        since = call.start - 1
    if not os.path.isdir(str(tmp)):
        return
    logs = []
    for root, _dirs, files in os.walk(str(tmp)):
        for f in sorted(files):
            path = os.path.join(root, f)
            try:
                if f.endswith(".log") and os.path.getmtime(path) >= since:
                    logs.append(path)
            except OSError:
                continue
    for path in sorted(logs)[:12]:
        try:
            with open(path, errors="replace") as fh:
                lines = fh.readlines()[-LOG_TAIL_LINES:]
        except OSError:
            continue
        rep.sections.append((f"log tail {os.path.relpath(path, str(tmp))}", "".join(lines)))
