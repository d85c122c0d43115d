"""Configuration traps a new operator falls into.

Certificates: a path the config names must be usable. Missing, unreadable,
a directory, not PEM, or a key that is missing: the process stops at start
(exit status 1) with one error line naming the path, for every process that
loads one (c2s, s2s, the router's STARTTLS certificate, and the CA file a
component verifies the router with). tls.self-signed creates a certificate
only at the default path, i.e. for a config that names none."""
import os
import subprocess
import time

import pytest

from conftest import BUILD, free_port, selfsigned_cert, wait_port

C2S = """<c2s>
  <router><address>127.0.0.1:{router_port}</address></router>
  <name>c2s</name><secret>x</secret><domain>localhost</domain>
  <listen><starttls>127.0.0.1:{port}</starttls><tls></tls></listen>
  {tls}
</c2s>
"""

S2S = """<s2s>
  <router><address>127.0.0.1:{router_port}</address></router>
  <name>s2s</name><secret>x</secret><domains>a.test</domains>
  <listen><starttls>127.0.0.1:{port}</starttls><tls></tls></listen>
  {tls}
</s2s>
"""

ROUTER = """<router>
  <listen>127.0.0.1:{port}</listen>
  {tls}
  <component name="sm" secret="x"><bind>localhost</bind></component>
</router>
"""

SM = """<sm>
  <router><address>127.0.0.1:{router_port}</address>{tls}</router>
  <name>sm</name><secret>x</secret><domain>localhost</domain>
  <database>{dir}/weft.db</database>
</sm>
"""

TEMPLATES = {"c2s": C2S, "s2s": S2S, "router": ROUTER, "sm": SM}


def run(tmp_path, proc, tls, cwd=None, timeout=15):
    """Starts weft-PROC with the config; returns (exit status or None if it
    is still running after the port opened, its stderr, the Popen)."""
    port = free_port()
    cfg = tmp_path / f"{proc}.xml"
    cfg.write_text(TEMPLATES[proc].format(port=port, router_port=free_port(), tls=tls, dir=tmp_path))
    err = tmp_path / f"{proc}.err"
    with open(err, "wb") as e:
        p = subprocess.Popen([os.path.join(BUILD, proc, f"weft-{proc}"), "-c", str(cfg)], stdout=subprocess.DEVNULL,
                             stderr=e, cwd=cwd)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None
    return rc, err.read_text(errors="replace"), p, port


def stop(p):
    if p.poll() is None:
        p.terminate()
        p.wait(10)


def assert_refused(rc, err, path, reason):
    assert rc == 1, (rc, err)
    lines = [l for l in err.splitlines() if path in l]
    assert len(lines) == 1, err
    assert " ERROR " in lines[0] and ("event=start" in lines[0] or "event=tls" in lines[0]), lines[0]
    assert reason in lines[0], lines[0]


@pytest.mark.parametrize("proc", ["c2s", "s2s"])
def test_named_certificate_missing_stops_the_process_and_creates_nothing(tmp_path, proc):
    crt, key = tmp_path / "etc" / "example.org.crt", tmp_path / "etc" / "example.org.key"
    rc, err, p, _ = run(tmp_path, proc, f"<tls><certificate>{crt}</certificate><key>{key}</key></tls>")
    stop(p)
    assert_refused(rc, err, str(crt), "No such file or directory")
    assert "self-signed" in err   # says why no certificate was made
    assert not crt.exists() and not key.exists()


@pytest.mark.parametrize("proc", ["c2s", "s2s"])
def test_named_key_missing_stops_the_process(tmp_path, proc):
    crt, key = selfsigned_cert(tmp_path / "c.crt", tmp_path / "c.key", "localhost")
    missing = tmp_path / "nope.key"
    rc, err, p, _ = run(tmp_path, proc, f"<tls><certificate>{crt}</certificate><key>{missing}</key></tls>")
    stop(p)
    assert_refused(rc, err, str(missing), "No such file or directory")


@pytest.mark.parametrize("kind", ["directory", "garbage", "unreadable"])
def test_named_certificate_unusable_stops_c2s(tmp_path, kind):
    crt, key = selfsigned_cert(tmp_path / "c.crt", tmp_path / "c.key", "localhost")
    bad = tmp_path / "bad.crt"
    if kind == "directory":
        bad.mkdir()
        reason = "Is a directory"
    elif kind == "garbage":
        bad.write_text("not a certificate\n")
        reason = "cannot load certificate"
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads files whatever their mode")
        bad.write_text(open(crt).read())
        bad.chmod(0)
        reason = "Permission denied"
    rc, err, p, _ = run(tmp_path, "c2s", f"<tls><certificate>{bad}</certificate><key>{key}</key></tls>")
    stop(p)
    assert_refused(rc, err, str(bad), reason)


def test_self_signed_is_made_only_for_a_config_that_names_none(tmp_path):
    """No <certificate>: the default var/certs/localhost.crt (relative to the
    working directory) is created and c2s serves TLS with it."""
    rc, err, p, port = run(tmp_path, "c2s", "", cwd=str(tmp_path), timeout=3)
    try:
        assert rc is None, err
        wait_port(port)
        assert (tmp_path / "var" / "certs" / "localhost.crt").exists()
        assert (tmp_path / "var" / "certs" / "localhost.key").exists()
    finally:
        stop(p)
    # The same path named explicitly is still the default one.
    (tmp_path / "var").rename(tmp_path / "old")
    rc, err, p, port = run(tmp_path, "c2s", "<tls><certificate>var/certs/localhost.crt</certificate></tls>",
                           cwd=str(tmp_path), timeout=3)
    stop(p)
    assert rc is None, err
    assert (tmp_path / "var" / "certs" / "localhost.crt").exists()


def test_router_certificate_missing_stops_the_router(tmp_path):
    crt = tmp_path / "router.crt"
    rc, err, p, _ = run(tmp_path, "router", f"<tls><certificate>{crt}</certificate></tls>")
    stop(p)
    assert_refused(rc, err, str(crt), "No such file or directory")


@pytest.mark.parametrize("proc", ["sm", "c2s"])
def test_router_ca_missing_stops_a_component(tmp_path, proc):
    ca = tmp_path / "router-ca.crt"
    if proc == "sm":
        tls = f"<tls-ca>{ca}</tls-ca>"
        rc, err, p, _ = run(tmp_path, proc, tls)
    else:
        crt, key = selfsigned_cert(tmp_path / "c.crt", tmp_path / "c.key", "localhost")
        port = free_port()
        cfg = tmp_path / "c2s.xml"
        cfg.write_text(C2S.format(port=port, router_port=free_port(),
                                  tls=f"<tls><certificate>{crt}</certificate><key>{key}</key></tls>")
                       .replace("</router>", f"<tls-ca>{ca}</tls-ca></router>"))
        err_path = tmp_path / "c2s.err"
        with open(err_path, "wb") as e:
            p = subprocess.Popen([os.path.join(BUILD, "c2s", "weft-c2s"), "-c", str(cfg)],
                                 stdout=subprocess.DEVNULL, stderr=e)
        try:
            rc = p.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
        err = err_path.read_text(errors="replace")
    stop(p)
    assert_refused(rc, err, str(ca), "No such file or directory")


def test_weftctl_stats_prints_link_states_as_words(env):
    """weftctl stats printed state=3; it prints what the link is doing."""
    import re
    import socket
    env.start_router()
    b = env.comp("b", "secret-b", "--bind", "b.test")
    idle = socket.create_connection(("127.0.0.1", env.router_port))   # no header yet
    half = socket.create_connection(("127.0.0.1", env.router_port))   # header, not authenticated
    half.sendall(b"<stream:stream xmlns='jabber:component:accept' "
                 b"xmlns:stream='http://etherx.jabber.org/streams' to='router' version='1.0'>")
    half.recv(4096)
    out = ""
    for _ in range(50):
        out = subprocess.run([os.path.join(BUILD, "tools", "weftctl"), "-s", str(env.dir / "router.ctl"), "stats"],
                             capture_output=True, text=True, check=True).stdout
        if out.count("link id=") == 3:
            break
        time.sleep(0.1)
    states = dict(re.findall(r"component=(\S+) .*? state=(\S+)", out))
    assert states.get("b") == "routing", out
    assert sorted(re.findall(r"component=- .*? state=(\S+)", out)) == ["auth", "header"], out
    assert not re.search(r"\bstate=\d", out), out
    idle.close()
    half.close()
    b.report()
