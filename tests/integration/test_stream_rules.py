"""RFC 6120 section 11.6 at every entry point: a stream in any encoding but
UTF-8 ends with <unsupported-encoding/>, whether its XML declaration names
another encoding (the parsers are told UTF-8 and would otherwise read it
wrongly) or it starts as UTF-16. Driven over raw sockets: c2s (before and
after STARTTLS), s2s, and the router's component listener. A malformed
declaration is not-well-formed; the same declaration naming UTF-8 is fine.
Each server keeps serving other streams afterwards."""
import socket
import time

import pytest

from conftest import wait_for, wait_port
from server import RawClient, Server
from test_s2s_loopback import Deployment

STREAM_NS = "xmlns:stream='http://etherx.jabber.org/streams'"
LATIN1 = "<?xml version='1.0' encoding='ISO-8859-1'?>"


def c2s_header(decl):
    return f"{decl}<stream:stream xmlns='jabber:client' {STREAM_NS} to='localhost' version='1.0'>"


def exchange(port, payload, timeout=10):
    """Sends payload on a fresh connection and reads until the peer closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(payload if isinstance(payload, bytes) else payload.encode("latin-1"))
    data = b""
    end = time.time() + timeout
    try:
        while time.time() < end:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return data.decode(errors="replace")


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


@pytest.mark.parametrize("decl", [LATIN1, "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
                                  "<?xml version='1.0' encoding='us-ascii' standalone='yes'?>",
                                  "\ufeff<?xml version='1.0' encoding='windows-1252'?>"])
def test_c2s_declared_encoding_other_than_utf8_is_unsupported_encoding(srv, decl):
    srv.start(sm=False)
    payload = c2s_header(decl).encode("utf-8") + "<message><body>caf\xe9</body></message>".encode("latin-1")
    out = exchange(srv.port, payload)
    # The server's own header first (it had not sent one), then the error.
    assert "<stream:stream" in out and "<stream:features" not in out, out
    assert "<unsupported-encoding xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out, out
    assert out.rstrip().endswith("</stream:stream>"), out
    assert "condition=unsupported-encoding" in srv.log("c2s")
    # Others are served as before, UTF-8 declared in any case.
    for ok in ("<?xml version='1.0' encoding='UTF-8'?>", "<?xml version='1.0' encoding='utf-8'?>", ""):
        c = RawClient(srv)
        c.send(c2s_header(ok))
        assert "<starttls" in c.read_until(r"</stream:features>")
        c.close()


def test_c2s_utf16_stream_is_unsupported_encoding(srv):
    srv.start(sm=False)
    out = exchange(srv.port, c2s_header("<?xml version='1.0' encoding='UTF-16'?>").encode("utf-16"))
    assert "<unsupported-encoding " in out, out


def test_c2s_stream_after_starttls_is_checked_too(srv):
    srv.start(sm=False)
    c = RawClient(srv)
    c.open()
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    c.read_until(r"<proceed[^>]*/>")
    c.buf = ""
    c._wrap()
    c.send(c2s_header(LATIN1))
    out = c.read_closed()
    assert "<unsupported-encoding " in out, out
    assert "<stream:features" not in out, out


@pytest.mark.parametrize("decl,cond", [("<?xml version='1.x' encoding='UTF-8'?>", "not-well-formed"),
                                       ("<?xml version='1.0' encoding='ISO-8859-1' standalone='maybe'?>",
                                        "not-well-formed"),
                                       ("<?xml version='1.0' standalone='yes'?>", None)])
def test_c2s_other_declarations(srv, decl, cond):
    srv.start(sm=False)
    if cond is None:
        c = RawClient(srv)
        c.send(c2s_header(decl))
        assert "<starttls" in c.read_until(r"</stream:features>")
        c.close()
        return
    out = exchange(srv.port, c2s_header(decl))
    assert f"<{cond} " in out and "<stream:features" not in out, out


@pytest.fixture
def s2s_only(tmp_path):
    """A router and an s2s for a.test (no sm or c2s: streams are refused
    before anything would be routed)."""
    d = Deployment(tmp_path, "a.test")
    d.start("router")
    wait_port(d.router_port)
    d.start("s2s")
    wait_port(d.s2s_port)
    yield d
    d.close()


def s2s_header(decl):
    return (f"{decl}<stream:stream xmlns='jabber:server' {STREAM_NS} xmlns:db='jabber:server:dialback' "
            f"from='x.test' to='a.test' version='1.0'>")


def test_s2s_declared_encoding_other_than_utf8_is_unsupported_encoding(s2s_only):
    d = s2s_only
    out = exchange(d.s2s_port, s2s_header(LATIN1))
    assert "<unsupported-encoding " in out and "<stream:features" not in out, out
    assert "<unsupported-encoding " in exchange(d.s2s_port, s2s_header("").encode("utf-16")), "utf-16"
    out = exchange(d.s2s_port, s2s_header("<?xml version='1.0' encoding='UTF-8'?>") + "</stream:stream>")
    assert "<stream:features" in out, out


def router_header(decl):
    return f"{decl}<stream:stream xmlns='jabber:component:accept' {STREAM_NS} to='router' version='1.0'>"


def test_router_declared_encoding_other_than_utf8_is_unsupported_encoding(env):
    env.start_router()
    b = env.comp("b", "secret-b", "--bind", "b.test", "--expect", 200)
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                 "--count", 200, "--rate", 200)
    for decl in (LATIN1, "<?xml version='1.0' encoding='UTF-16' standalone='no'?>"):
        out = exchange(env.router_port, router_header(decl))
        assert "<unsupported-encoding " in out and "<stream:features" not in out, (decl, out)
    out = exchange(env.router_port, router_header("").encode("utf-16"))
    assert "<unsupported-encoding " in out, out
    out = exchange(env.router_port, router_header("<?xml version='1.0' encoding='utf-8'?>") + "</stream:stream>")
    assert "<stream:features" in out, out
    assert b.wait_report(timeout=60)["unique"] == 200
    a.report()
    assert "condition=unsupported-encoding" in env.router_log()
