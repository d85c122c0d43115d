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


@pytest.mark.parametrize("kind", ["directory", "garbage", "loop"])
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
        # a path that cannot be opened even by root (tests run as root in CI)
        bad.symlink_to(bad)
        reason = "Too many levels of symbolic links"
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


def comp(env, name, secret, router, *args):
    """A testcomp linked to the router at `router` (host:port or unix:path)."""
    from conftest import Proc, wait_for
    ready = env.dir / f"ready-{name}-{len(env.procs)}"
    p = Proc([os.path.join(BUILD, "tests", "integration", "testcomp"), "--router", router, "--name", name,
              "--secret", secret, "--ready-file", str(ready), *[str(a) for a in args]],
             env.dir / f"comp-{name}-{len(env.procs)}.log")
    env.procs.append(p)
    assert wait_for(ready.exists, 15), f"{name} never became ready via {router}; see {p.log_path}"
    return p


def test_router_listens_on_several_addresses(env):
    """listen and listen-unix take lists (as c2s and s2s listen): components
    reach one router through 127.0.0.1, 127.0.0.2 and two UNIX sockets."""
    import re
    import socket
    from conftest import wait_for
    p2 = free_port()
    s1, s2 = env.dir / "r1.sock", env.dir / "r2.sock"
    cfg = env.write_router_config()
    cfg.write_text(cfg.read_text().replace(f"<listen>127.0.0.1:{env.router_port}</listen>",
                                           f"<listen>127.0.0.1:{env.router_port} 127.0.0.2:{p2}</listen>"
                                           f"<listen-unix>{s1} {s2}</listen-unix>"))
    env.start_router()
    for a in (f"127.0.0.1:{env.router_port}", f"127.0.0.2:{p2}", f"unix:{s1}", f"unix:{s2}"):
        assert wait_for(lambda: f"event=listening address={a} " in env.router_log(), 10), env.router_log()
    assert os.stat(s1).st_mode & 0o777 == 0o660 and os.stat(s2).st_mode & 0o777 == 0o660
    b = comp(env, "b", "secret-b", f"127.0.0.2:{p2}", "--bind", "b.test")
    # p2 is bound on 127.0.0.2 alone: b came in through the second address.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p2), timeout=5)
    for n, via in enumerate((f"127.0.0.1:{env.router_port}", f"unix:{s1}", f"unix:{s2}"), 1):
        a = comp(env, "a", "secret-a", via, "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                 "--count", 100, "--rate", 500)
        peer = "unix" if via.startswith("unix:") else "127.0.0.1:"
        assert re.search(rf"component=a protocol=internal peer={peer}", env.stats()), (via, env.stats())
        assert wait_for(lambda: f"stanzas_out={100 * n} " in [l for l in env.stats().splitlines()
                                                               if "component=b " in l][0], 20), env.stats()
        ra = a.report()
        assert ra["sent"] == 100 and ra["errors"] == 0, ra
    # Each sender numbers its messages from 0: three rounds, 100 numbers.
    rb = b.report()
    assert rb["received"] == 300 and rb["unique"] == 100 and rb["errors"] == 0, rb


def test_router_listen_address_that_cannot_bind_stops_it(tmp_path):
    """Every address of the list must bind, as s2s's must."""
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = f"127.0.0.1:{busy.getsockname()[1]}"
    cfg = tmp_path / "router.xml"
    cfg.write_text(ROUTER.format(port=f"{free_port()} {taken}", tls=""))
    r = subprocess.run([os.path.join(BUILD, "router", "weft-router"), "-c", str(cfg)], capture_output=True,
                       text=True, timeout=15)
    busy.close()
    assert r.returncode == 1, r.stderr
    assert f"event=start reason=listen address={taken} " in r.stderr, r.stderr


@pytest.mark.parametrize("log,says", [("<target>file:{dir}/no/such/dir/c2s.log</target>", "no/such/dir/c2s.log"),
                                      ("<level>verbose</level>", "value=verbose")])
def test_log_settings_that_cannot_apply_stop_the_process(tmp_path, log, says):
    """A log file that cannot be opened (or an unknown level) left the process
    running and logging to stderr, where nobody looked."""
    crt, key = selfsigned_cert(tmp_path / "c.crt", tmp_path / "c.key", "localhost")
    rc, err, p, _ = run(tmp_path, "c2s", f"<tls><certificate>{crt}</certificate><key>{key}</key></tls>"
                                         f"<log>{log.format(dir=tmp_path)}</log>")
    stop(p)
    assert rc == 1, err
    assert says in err and "event=start reason=log-settings" in err, err


@pytest.mark.parametrize("proc,extra,rc", [
    ("router", "<component name='extra' secret='s'/><component name='bot' secret='t' protocol='xep0114'/>"
               "<partition>example.org</partition>", 0),
    ("router", "<component name='sm' secret='t'/>", 1),
    ("s2s", "<peer domain='b.example' address='127.0.0.1:5269' direct-tls='false'/>", 0)])
def test_config_check_frees_sections(proc, extra, rc):
    """`weft-X -t` (what weftctl check runs) on a config with sections: under
    the sanitizer build a leak of a section's data (the router's component ACLs,
    s2s's peers) made the check fail with LeakSanitizer's exit status."""
    src = os.path.join(os.environ.get("WEFT_SOURCE", "."), "etc", f"{proc}.xml")
    text = open(src).read()
    close = f"</{proc}>"
    text = text.replace(close, extra + close)
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(text)
        f.flush()
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
        r = subprocess.run([os.path.join(BUILD, proc, f"weft-{proc}"), "-t", "-c", f.name], capture_output=True,
                           text=True, timeout=15, env=env)
    assert "LeakSanitizer" not in r.stderr, r.stderr[-2000:]
    assert r.returncode == rc, r.stderr
