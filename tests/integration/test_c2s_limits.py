"""c2s limits under load and abuse: read rate, idle timeout, per-IP
authentication failures, per-IP registrations, and SIGTERM.

Raw sockets (server.py's RawClient) so the tests see exactly what c2s wrote.
Limits are set low in each test's c2s config; every test starts its own
router, sm and c2s.
"""
import re
import subprocess
import threading
import time

import pytest

import server
from conftest import wait_for
from server import RawClient, Server, binary


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def ping(c, n):
    """One iq round trip through the sm: the stream is alive and served."""
    c.send(f"<iq type='get' id='ping{n}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    return c.read_until(rf"<iq[^>]*id='ping{n}'[^>]*(/>|>[\s\S]*?</iq>)")


def no_sanitizer_reports(srv):
    for name in ("c2s", "sm", "router"):
        log = srv.log(name)
        assert "runtime error" not in log and "AddressSanitizer" not in log, log[-4000:]


# ---------------------------------------------------------------- read rate

def test_flood_is_throttled_while_others_keep_chatting(srv):
    rate, burst = 2048, 4096
    srv.start(c2s_extra=f"<limits><rate>{rate}</rate><burst>{burst}</burst></limits>")
    for u in ("flood", "sink", "alice", "bob"):
        srv.register(u, "pw")
    sink = srv.login("sink", "pw", resource="s")
    flooder = srv.login("flood", "pw", resource="f")
    alice = srv.login("alice", "pw", resource="a")
    bob = srv.login("bob", "pw", resource="b")

    msg = "<message to='sink@localhost/s' type='chat'><body>" + "x" * 200 + "</body></message>"
    stop = threading.Event()
    sent = [0]

    def flood():
        flooder.sock.settimeout(0.2)
        chunk = (msg * 20).encode()
        while not stop.is_set():
            try:
                flooder.sock.sendall(chunk)
                sent[0] += len(chunk)
            except (TimeoutError, OSError):
                pass  # blocked: c2s stopped reading, the kernel buffers are full

    received = [0]

    def drain_sink():
        sink.sock.settimeout(0.2)
        while not stop.is_set():
            try:
                data = sink.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            if not data:
                return
            received[0] += data.count(b"</message>")

    threads = [threading.Thread(target=flood, daemon=True), threading.Thread(target=drain_sink, daemon=True)]
    for t in threads:
        t.start()
    start = time.time()
    # Meanwhile alice and bob chat: every message arrives, promptly.
    for i in range(15):
        t0 = time.time()
        alice.send(f"<message to='bob@localhost/b' type='chat' id='c{i}'><body>hello {i}</body></message>")
        got = bob.read_until(rf"hello {i}</body>", timeout=5)
        assert "from='alice@localhost/a'" in got
        assert time.time() - t0 < 2.5, "a quiet client was slowed down by the flood"
        time.sleep(0.2)
    elapsed = time.time() - start
    stop.set()
    for t in threads:
        t.join(2)

    # Far more was offered than the bucket lets through; what the sink got is
    # bounded by what c2s read: burst + rate * elapsed (TLS records and the
    # first token fill add a little).
    assert sent[0] > 4 * (burst + rate * elapsed), (sent[0], elapsed)
    bound = (burst + rate * (elapsed + 2)) / len(msg)
    assert received[0] <= bound, (received[0], bound, elapsed)
    assert received[0] > 0
    # Throttled, not cut: no stream error for the flooder.
    assert "condition=policy-violation" not in srv.log("c2s")
    no_sanitizer_reports(srv)


def test_rate_above_burst_is_refused_at_start(tmp_path):
    """libevent silently drops a token bucket whose rate exceeds its burst: a
    config asking for that must not start unlimited."""
    cfg = tmp_path / "c2s.xml"
    cfg.write_text(server.C2S.format(router_port=1, port=1, tls_port=2, dir=tmp_path, ibr="false",
                                     extra="<limits><rate>8192</rate><burst>4096</burst></limits>"))
    r = subprocess.run([binary("WEFT_C2S", "c2s", "weft-c2s"), "-c", str(cfg)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode != 0
    assert re.search(r"option=limits.rate .*limits.burst", r.stderr), r.stderr


# ---------------------------------------------------------------- idle timeout

def test_idle_client_disconnected_keepalive_client_stays(srv):
    srv.start(c2s_extra="<timeouts><idle>10</idle></timeouts>")
    srv.register("quiet", "pw")
    srv.register("chatty", "pw")
    quiet = srv.login("quiet", "pw", resource="q")
    chatty = srv.login("chatty", "pw", resource="c")
    start = time.time()
    stop = threading.Event()

    def keepalive():
        while not stop.wait(2):
            chatty.send(" ")

    t = threading.Thread(target=keepalive, daemon=True)
    t.start()
    try:
        out = quiet.read_closed(timeout=20)
        took = time.time() - start
        assert "<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out, out
        assert "</stream:stream>" in out
        assert 9 <= took <= 14, took
        # Past the idle timeout the keepalive client is still served.
        time.sleep(3)
    finally:
        stop.set()
        t.join(3)
    assert "<iq" in ping(chatty, 1)
    log = srv.log("c2s")
    assert re.search(r"event=stream-error .*user=quiet@localhost/q condition=connection-timeout", log), log
    assert not re.search(r"user=chatty@localhost/c condition=connection-timeout", log)
    # The timed-out session ended at the sm too.
    assert wait_for(lambda: re.search(r"event=session-end jid=quiet@localhost/q", srv.log("sm")), 5)
    no_sanitizer_reports(srv)


# ---------------------------------------------------------------- SASL failures per IP

def test_auth_failures_per_ip_refused_then_expire(srv):
    srv.start(c2s_extra="<limits><auth-failures>3</auth-failures><auth-failure-window>3</auth-failure-window>"
                        "</limits>")
    srv.register("target", "right")
    # Three failures, spread over two connections (the per-stream limit is 5).
    c = RawClient(srv)
    c.open()
    c.starttls()
    assert not c.auth("target", "guess1")
    assert not c.auth("target", "guess2", mech="PLAIN")
    c.close()
    d = RawClient(srv)
    d.open()
    d.starttls()
    assert not d.auth("nobody", "guess3")
    failed_at = time.time()
    # The next attempt, even with the right password, is refused.
    d.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'/>")
    out = d.read_closed()
    assert "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out, out
    e = RawClient(srv)
    e.open()
    e.starttls()
    with pytest.raises(EOFError):
        e.auth("target", "right")
    assert "<policy-violation" in e.buf
    log = srv.log("c2s")
    assert len(re.findall(r"event=auth-failed peer=127\.0\.0\.1:\d+ ip=127\.0\.0\.1 ", log)) == 3, log
    assert len(re.findall(r"event=auth-refused peer=127\.0\.0\.1:\d+ ip=127\.0\.0\.1 reason=too-many-failures",
                          log)) == 2, log
    # The window expires: the right password works again.
    time.sleep(max(0, failed_at + 3.5 - time.time()))
    ok = srv.login("target", "right", resource="back")
    assert ok.jid == "target@localhost/back"
    no_sanitizer_reports(srv)


# ---------------------------------------------------------------- registrations per IP

def register_raw(srv, user, n):
    c = RawClient(srv)
    c.open()
    c.starttls()
    c.send(f"<iq type='set' id='reg{n}'><query xmlns='jabber:iq:register'><username>{user}</username>"
           f"<password>pw</password></query></iq>")
    resp = c.read_until(rf"<iq[^>]*id='reg{n}'[^>]*(/>|>[\s\S]*?</iq>)")
    c.close()
    return resp


def test_registrations_per_ip_limited_then_expire(srv, monkeypatch):
    monkeypatch.setattr(server, "C2S", server.C2S.replace("<per-ip>50</per-ip>",
                                                          "<per-ip>2</per-ip><window>3</window>"))
    srv.start()
    first = time.time()
    assert "type='result'" in register_raw(srv, "r1", 1)
    assert "type='result'" in register_raw(srv, "r2", 2)
    refused = register_raw(srv, "r3", 3)
    assert "type='error'" in refused and "<resource-constraint" in refused, refused
    assert re.search(r"event=register-refused peer=127\.0\.0\.1:\d+ ip=127\.0\.0\.1 reason=rate-limit",
                     srv.log("c2s"))
    # The refused account was not created.
    c = RawClient(srv)
    c.open()
    c.starttls()
    assert not c.auth("r3", "pw")
    c.close()
    time.sleep(max(0, first + 3.5 - time.time()))
    assert "type='result'" in register_raw(srv, "r3", 4)
    srv.login("r3", "pw").close()
    no_sanitizer_reports(srv)


# ---------------------------------------------------------------- SIGTERM

def test_sigterm_sends_system_shutdown_to_every_client(srv):
    srv.start()
    srv.register("s1", "pw")
    a = srv.login("s1", "pw", resource="a")
    b = RawClient(srv)          # still negotiating
    b.open()
    c = RawClient(srv, direct_tls=True)
    c.open()
    srv.c2s.p.send_signal(15)
    for cl in (a, b, c):
        out = cl.read_closed(timeout=5)
        assert "<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out, out
        assert "</stream:stream>" in out
    assert srv.c2s.p.wait(10) == 0
    # The bound session was ended at the sm, not left behind.
    assert wait_for(lambda: re.search(r"event=session-end jid=s1@localhost/a", srv.log("sm")), 5), srv.log("sm")
    no_sanitizer_reports(srv)
