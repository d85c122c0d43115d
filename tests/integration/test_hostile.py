"""Hostile input to the router: each offending stream gets the right stream error
and is closed, while components already linked keep exchanging stanzas."""
import socket
import time

import pytest

from conftest import wait_for
from weftproto import HEADER, Link, NS_SASL

LAUGHS = ("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
          + "".join(f"<!ENTITY lol{i} '{('&lol' + (str(i - 1) if i > 1 else '') + ';') * 10}'>" for i in range(1, 10))
          + "]>")

HOSTILE = {
    "billion-laughs": (LAUGHS + HEADER.format(to="router") + "&lol9;", "restricted-xml"),
    "external-entity": ("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
                        + HEADER.format(to="router") + "<a>&xxe;</a>", "restricted-xml"),
    "comment": (HEADER.format(to="router") + "<!-- hello -->", "restricted-xml"),
    "processing-instruction": (HEADER.format(to="router") + "<?evil x?>", "restricted-xml"),
    "undefined-entity": (HEADER.format(to="router") + "<message>&foo;</message>", None),
    "invalid-utf8": (HEADER.format(to="router").encode() + b"<message><body>\xff\xfe\xc0\xaf</body></message>",
                     "not-well-formed"),
    "deep-nesting": (HEADER.format(to="router") + "<a>" * 2000, "policy-violation"),
    "many-attributes": (HEADER.format(to="router") + "<a " + " ".join(f"x{i}='1'" for i in range(5000)) + "/>",
                        "policy-violation"),
    "huge-stanza": (HEADER.format(to="router") + "<message><body>" + "x" * 400000 + "</body></message>",
                    "policy-violation"),
    "wrong-namespace": ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                        "to='router' version='1.0'>", "invalid-namespace"),
    "not-a-stream": ("<html><body>hi</body></html>", "invalid-namespace"),
    "unauthenticated-stanza": (HEADER.format(to="router") + "<message to='u@b.test'><body>x</body></message>",
                               "not-authorized"),
}


def send_and_read_error(port, payload):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if isinstance(payload, str):
        payload = payload.encode()
    try:
        s.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    try:
        while b"</stream:stream>" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return data.decode(errors="replace")


@pytest.fixture
def busy_router(env):
    """A router with a live a->b exchange running the whole time."""
    env.start_router()
    return env


def test_hostile_streams_get_stream_errors_and_others_keep_working(busy_router):
    env = busy_router
    n = 3000
    b = env.comp("b", "secret-b", "--bind", "b.test", "--expect", n)
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                 "--count", n, "--rate", 1000)
    for name, (payload, cond) in HOSTILE.items():
        reply = send_and_read_error(env.router_port, payload)
        assert "<stream:error>" in reply, (name, reply[:300])
        if cond:
            assert f"<{cond} " in reply, (name, reply[:500])
    rb = b.wait_report(timeout=60)
    assert rb["unique"] == n and rb["dups"] == 0
    assert a.report()["errors"] == 0
    assert env.router.p.poll() is None, "router died"


def test_authenticated_component_sending_garbage_is_cut_off_alone(busy_router):
    env = busy_router
    b = env.comp("b", "secret-b", "--bind", "b.test", "--expect", 100)
    link = Link(env.router_port)
    link.open()
    res = link.authenticate("a", "secret-a")
    assert res.tag == "{%s}success" % NS_SASL
    link.session()
    link.send("<w:bind name='a.test'/>")
    # Raw (forwarded) path: an oversized stanza is cut off with policy-violation.
    link.send("<message to='u@b.test' from='a.test'><body>" + "y" * 300000 + "</body></message>")
    data = b""
    link.sock.settimeout(10)
    try:
        while b"</stream:stream>" not in data:
            chunk = link.sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    assert b"policy-violation" in data
    link.close()
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                 "--count", 100, "--rate", 500)
    assert b.wait_report(timeout=30)["unique"] == 100
    a.report()


@pytest.mark.parametrize("ack,cond", [("<w:a h='3x'/>", "bad-format"), ("<w:a/>", "bad-format"),
                                      ("<w:a h='4'/>", "undefined-condition")])
def test_bad_acknowledgement_is_a_stream_error(busy_router, ack, cond):
    """The router reads <w:a/> on its raw path: a bad h, a missing one, or an
    ack of more than it sent ends that link with the stream error, and others
    keep working."""
    env = busy_router
    link = Link(env.router_port)
    link.open()
    assert link.authenticate("b", "secret-b").tag == "{%s}success" % NS_SASL
    link.session()
    link.send("<w:bind name='b.test'/>")
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                 "--count", 3, "--rate", 100)
    got = 0
    while got < 3:
        if link.next_el().tag.endswith("}message"):
            got += 1
    link.send(ack)
    try:
        while True:
            link.next(timeout=10)
    except (EOFError, OSError):
        pass
    assert f"<{cond} ".encode() in link.raw, link.raw[-500:]
    link.close()
    a.report()
    # the name is free again and another b gets what a sends
    b = env.comp("b", "secret-b", "--bind", "b.test", "--expect", 20)
    a2 = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                  "--count", 20, "--rate", 200)
    assert b.wait_report(timeout=30)["unique"] >= 20
    a2.report()


def test_forged_from_from_legacy_component_is_invalid_from(busy_router):
    import hashlib
    env = busy_router
    s = socket.create_connection(("127.0.0.1", env.router_port), timeout=10)
    s.sendall(b"<stream:stream xmlns='jabber:component:accept' "
              b"xmlns:stream='http://etherx.jabber.org/streams' to='legacy.test'>")
    data = b""
    while b"id='" not in data:
        data += s.recv(4096)
    sid = data.split(b"id='")[1].split(b"'")[0].decode()
    s.sendall(f"<handshake>{hashlib.sha1((sid + 'legacy-secret').encode()).hexdigest()}</handshake>".encode())
    s.sendall(b"<message from='admin@a.test' to='u@b.test'><body>spoof</body></message>")
    while b"</stream:stream>" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert b"invalid-from" in data
    s.close()


def test_wrong_scram_secret_gets_failure_then_stream_error(busy_router):
    env = busy_router
    link = Link(env.router_port)
    link.open()
    res = link.authenticate("a", "not-the-secret")
    assert res.tag == "{%s}failure" % NS_SASL
    assert wait_for(lambda: "event=auth-failed peer=127.0.0.1" in env.router_log(), 5)
    link.close()


def test_legacy_component_cannot_speak_the_internal_protocols(busy_router):
    """A third-party component must not reach the account/session protocols."""
    import hashlib
    env = busy_router
    s = socket.create_connection(("127.0.0.1", env.router_port), timeout=10)
    s.sendall(b"<stream:stream xmlns='jabber:component:accept' "
              b"xmlns:stream='http://etherx.jabber.org/streams' to='legacy.test'>")
    data = b""
    while b"id='" not in data:
        data += s.recv(4096)
    sid = data.split(b"id='")[1].split(b"'")[0].decode()
    s.sendall(f"<handshake>{hashlib.sha1((sid + 'legacy-secret').encode()).hexdigest()}</handshake>".encode())
    s.sendall(b"<authreg xmlns='urn:xmpp:weft:authreg:1' type='get' id='1' to='b.test' "
              b"from='legacy.test' user='alice@b.test'/>")
    while b"</stream:stream>" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert b"unsupported-stanza-type" in data
    s.close()
