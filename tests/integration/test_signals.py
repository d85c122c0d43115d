"""Signals (docs/operations.md, "Signals"): SIGTERM stops a component
gracefully, SIGHUP reloads certificates and log settings without dropping
connections.

- SIGTERM c2s: every client gets system-shutdown, or see-other-host with the
  configured shutdown.see-other-host; the sm ends their sessions.
- SIGTERM sm: offline messages stored just before are there after a restart,
  each once; clients stay connected.
- SIGTERM router: components log that the router stopped and reconnect when
  it is back; clients stay connected and chat again.
- SIGHUP c2s with a replaced certificate: new connections (STARTTLS and direct
  TLS) see the new one, a connected client keeps chatting; a certificate that
  does not load leaves the running one in place.
- SIGHUP with a changed log.level: debug lines stop and come back, in the
  router, the sm and c2s; with a changed log.target the lines go to the new
  file, and a target that cannot be opened keeps the old one."""
import hashlib
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import wait_for
from server import RawClient, Server


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def chat(a, b, text):
    """a sends text to b's bare JID; b must receive it."""
    bare = b.jid.split("/")[0]
    a.send(f"<message to='{bare}' type='chat'><body>{text}</body></message>")
    b.read_until(re.escape(text) + r"</body>", timeout=15)


def exited(proc, timeout=15):
    try:
        return proc.p.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


# ---------------------------------------------------------------- SIGTERM


@pytest.mark.parametrize("other_host", ["", "[2001:db8::1]:5222"])
def test_sigterm_c2s_tells_every_client(srv, other_host):
    extra = f"<shutdown><see-other-host>{other_host}</see-other-host></shutdown>" if other_host else ""
    srv.start(c2s_extra=extra)
    srv.register("alice", "pw")
    a = srv.login("alice", "pw")
    a.send("<presence/>")
    fresh = RawClient(srv)          # a stream still negotiating
    fresh.open()
    time.sleep(0.3)
    srv.c2s.p.send_signal(signal.SIGTERM)
    for c in (a, fresh):
        out = c.read_closed()
        if other_host:
            assert (f"<see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>{other_host}"
                    "</see-other-host>") in out, out
        else:
            assert "<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out, out
        assert out.rstrip().endswith("</stream:stream>"), out
    assert exited(srv.c2s) == 0
    assert "event=stopped" in srv.log("c2s")
    # the sm ended alice's session (unavailable broadcast, offline from now on)
    assert wait_for(lambda: re.search(r"event=session-end jid=alice@localhost/r ", srv.log("sm")), 10), \
        srv.log("sm")[-2000:]


def test_see_other_host_is_checked(srv, tmp_path):
    srv.start()
    # a value that is not one host[:port] token is refused at start
    cfg = (tmp_path / "c2s.xml").read_text().replace(
        "</c2s>", "<shutdown><see-other-host>two words</see-other-host></shutdown></c2s>")
    (tmp_path / "bad.xml").write_text(cfg)
    r = subprocess.run([srv.c2s.args[0], "-c", str(tmp_path / "bad.xml")], capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b"option=shutdown.see-other-host" in r.stderr, r.stderr


def test_sigterm_sm_keeps_what_it_stored(srv):
    srv.start()
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    a = srv.login("alice", "pw")
    a.send("<presence/>")
    # the first ten are in the database when the signal comes (debug log),
    # the last ten are still on their way (the router holds what the sm
    # did not take and gives it to the next one)
    for k in range(10):
        a.send(f"<message to='bob@localhost' type='chat'><body>stored-{k}</body></message>")
    assert wait_for(lambda: "event=offline-stored user=bob@localhost count=10" in srv.log("sm"), 10)
    for k in range(10, 20):
        a.send(f"<message to='bob@localhost' type='chat'><body>stored-{k}</body></message>")
    srv.sm.p.send_signal(signal.SIGTERM)
    assert exited(srv.sm) == 0, srv.log("sm")[-2000:]
    assert "event=stopped" in srv.log("sm")
    srv.start_sm()
    assert wait_for(lambda: srv.log("c2s").count("event=resync") >= 1, 15), srv.log("c2s")[-2000:]
    b = srv.login("bob", "pw")
    b.send("<presence/>")
    out = b.read_until(r"stored-19</body>[\s\S]*?</message>", timeout=15)
    # the answer to a ping comes after everything the sm had for bob
    b.send("<iq type='get' id='drain1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    out += b.read_until(r"id=['\"]drain1['\"]")
    got = [int(k) for k in re.findall(r"stored-(\d+)</body>", out)]
    assert sorted(set(got)) == list(range(20)), got
    assert "urn:xmpp:delay" in out
    # alice stayed connected through the sm's stop
    chat(b, a, "still here")
    # a graceful stop acknowledges everything it stored before closing, so
    # the router gives the next sm nothing twice
    assert sorted(got) == list(range(20)), f"duplicates after a graceful sm stop: {sorted(got)}"


def test_sigterm_router_components_come_back(srv):
    srv.start()
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    a = srv.login("alice", "pw")
    b = srv.login("bob", "pw")
    a.send("<presence/>")
    b.send("<presence/>")
    chat(a, b, "before")
    srv.router.p.send_signal(signal.SIGTERM)
    assert exited(srv.router) == 0
    for comp in ("c2s", "sm"):
        assert wait_for(lambda: f"event=router-stream-error component={comp} condition=system-shutdown"
                        in srv.log(comp), 10), srv.log(comp)[-2000:]
    srv.router = srv._spawn(srv.router.args, "router.log")
    assert wait_for(lambda: srv.log("c2s").count("event=router-ready") >= 2, 20), srv.log("c2s")[-2000:]
    assert wait_for(lambda: srv.log("sm").count("event=ready") >= 2, 20), srv.log("sm")[-2000:]
    # the same connections chat again
    chat(a, b, "after")
    chat(b, a, "and back")


# ---------------------------------------------------------------- SIGHUP


def der_fp(der):
    return hashlib.sha256(der).hexdigest()


def file_fp(path):
    return der_fp(ssl.PEM_cert_to_DER_cert(open(path).read()))


def unverified():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def fp_direct(srv):
    with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=10) as s:
        with unverified().wrap_socket(s, server_hostname="localhost") as t:
            return der_fp(t.getpeercert(binary_form=True))


def fp_starttls(srv):
    c = RawClient(srv)
    c.open()
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    c.read_until(r"<proceed[^>]*/>")
    c.sock = unverified().wrap_socket(c.sock, server_hostname="localhost")
    fp = der_fp(c.sock.getpeercert(binary_form=True))
    c.sock.close()
    return fp


def new_cert(dirpath, name):
    key, crt = dirpath / f"{name}.key", dirpath / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "30", "-keyout", str(key), "-out", str(crt), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    return key, crt


def test_sighup_c2s_reloads_certificate(srv, tmp_path):
    srv.start()
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    certs = tmp_path / "certs"
    old_fp = file_fp(certs / "localhost.crt")
    assert fp_direct(srv) == old_fp and fp_starttls(srv) == old_fp
    a = srv.login("alice", "pw")
    b = srv.login("bob", "pw")
    a.send("<presence/>")
    b.send("<presence/>")
    chat(a, b, "old certificate")

    key, crt = new_cert(tmp_path, "second")
    (certs / "localhost.key").write_bytes(key.read_bytes())
    (certs / "localhost.crt").write_bytes(crt.read_bytes())
    new_fp = file_fp(crt)
    assert new_fp != old_fp
    srv.c2s.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=tls-reloaded" in srv.log("c2s"), 10), srv.log("c2s")[-2000:]
    assert fp_direct(srv) == new_fp
    assert fp_starttls(srv) == new_fp
    # a new client verifies the new certificate (RawClient checks it against
    # the file), the connected ones keep chatting on the old one
    a2 = srv.login("alice", "pw", resource="after")
    a2.send("<presence/>")
    assert a.sock.getpeercert(binary_form=True) and der_fp(a.sock.getpeercert(binary_form=True)) == old_fp
    chat(a, b, "still on the old one")
    chat(b, a2, "to the new connection")

    # a certificate that does not load keeps the running one
    (certs / "localhost.crt").write_text("not a certificate\n")
    srv.c2s.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=tls-reload result=failed" in srv.log("c2s"), 10), srv.log("c2s")[-2000:]
    assert fp_direct(srv) == new_fp
    assert srv.c2s.p.poll() is None
    chat(a2, b, "nothing dropped")


def set_level(srv, name, old, new):
    path = srv.dir / f"{name}.xml"
    text = path.read_text()
    assert f"<level>{old}</level>" in text
    path.write_text(text.replace(f"<level>{old}</level>", f"<level>{new}</level>"))


def test_sighup_log_level(srv):
    srv.start()
    srv.register("alice", "pw")
    procs = {"router": lambda: srv.router, "sm": lambda: srv.sm, "c2s": lambda: srv.c2s}

    def activity():
        # c2s: event=connected; sm: user-loaded / presence; router: accept
        c = srv.login("alice", "pw", resource=f"r{time.time()}")
        c.send("<presence/>")
        c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        c.read_until(r"id=['\"]p1['\"]")
        c.close()
        socket.create_connection(("127.0.0.1", srv.router_port)).close()
        time.sleep(0.5)

    def hup_all(old, new):
        marks = {}
        for name, proc in procs.items():
            set_level(srv, name, old, new)
            marks[name] = len(srv.log(name))
            proc().p.send_signal(signal.SIGHUP)
        for name in procs:
            assert wait_for(lambda: f"log.level={new}" in srv.log(name)[marks[name]:], 10), srv.log(name)[-1000:]
        return {name: len(srv.log(name)) for name in procs}

    marks = hup_all("debug", "info")
    activity()
    for name in procs:
        assert " DEBUG " not in srv.log(name)[marks[name]:], (name, srv.log(name)[marks[name]:][:2000])
    marks = hup_all("info", "debug")
    activity()
    for name in procs:
        assert " DEBUG " in srv.log(name)[marks[name]:], (name, srv.log(name)[marks[name]:][:2000])
    for name, proc in procs.items():
        assert proc().p.poll() is None, name


def test_sighup_log_target(srv, tmp_path):
    srv.start()
    cfg = tmp_path / "c2s.xml"
    base = cfg.read_text()
    logfile = tmp_path / "c2s-file.log"
    cfg.write_text(base.replace("<level>debug</level>", f"<level>debug</level><target>file:{logfile}</target>"))
    srv.c2s.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: logfile.exists() and "event=reload" in logfile.read_text(), 10), srv.log("c2s")[-1000:]
    mark = len(srv.log("c2s"))
    RawClient(srv).open()
    assert wait_for(lambda: "event=connected" in logfile.read_text(), 10)
    assert "event=connected" not in srv.log("c2s")[mark:]
    # a target that cannot be opened keeps the running one, which says why
    cfg.write_text(base.replace("<level>debug</level>",
                                f"<level>debug</level><target>file:{tmp_path}/no/such/dir.log</target>"))
    srv.c2s.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=log-open result=failed" in logfile.read_text(), 10), logfile.read_text()[-1000:]
    n = logfile.read_text().count("event=connected")
    RawClient(srv).open()
    assert wait_for(lambda: logfile.read_text().count("event=connected") > n, 10)
    # and back to stderr
    cfg.write_text(base)
    mark = len(srv.log("c2s"))
    srv.c2s.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=reload" in srv.log("c2s")[mark:], 10)
    assert srv.c2s.p.poll() is None
