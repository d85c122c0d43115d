"""RFC 6120 8.2.3 / 8.3.3.1 at every entry point: an iq with no type, a type
other than get/set/result/error, a get or set with zero or two payload
children (or no id), and a presence of a type RFC 6121 does not define get
bad-request; results and errors are never answered. Checked for a client
(c2s answers, the stanza never reaches the sm), for a c2s that does not check
(the sm answers), for an XEP-0114 component and for a remote server over
s2s (the sm answers both)."""
import hashlib
import socket
import xml.etree.ElementTree as ET

import pytest

from server import Server
from stanza_client import Session, error_condition, tag

# (id suffix, iq attributes and body): each must get bad-request.
BAD_IQS = [
    ("fetch", "type='fetch'", "<ping xmlns='urn:xmpp:ping'/>"),
    ("notype", "", "<ping xmlns='urn:xmpp:ping'/>"),
    ("empty", "type='get'", ""),
    ("two", "type='get'", "<ping xmlns='urn:xmpp:ping'/><query xmlns='jabber:iq:version'/>"),
    ("settwo", "type='set'", "<query xmlns='jabber:iq:private'/><x xmlns='urn:example'/>"),
]


def bad_iqs(to, prefix, sender=None):
    """(id, stanza text) for every bad iq to 'to' (None: no to)."""
    to_attr = f" to='{to}'" if to else ""
    from_attr = f" from='{sender}'" if sender else ""
    return [(f"{prefix}-{suffix}", f"<iq id='{prefix}-{suffix}' {attrs}{to_attr}{from_attr}>{body}</iq>")
            for suffix, attrs, body in BAD_IQS]


def assert_bad_request(st, text):
    assert st.get("type") == "error" and error_condition(st) == "bad-request", \
        f"{text} -> {ET.tostring(st)}"


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path).start(router_extra="<component name='bot.localhost' secret='bot-secret' "
                                            "protocol='xep0114'/>")
    s.register("alice", "pw")
    s.register("bob", "pw")
    yield s
    s.close()


def test_client_bad_iq_and_presence_get_bad_request_from_c2s(srv):
    alice = Session(srv.login("alice", "pw", resource="r"))
    alice.presence()
    bob = Session(srv.login("bob", "pw", resource="r"))
    bob.presence()
    targets = [None, "localhost", "alice@localhost", "alice@localhost/r", "bob@localhost", "bob@localhost/r",
               "bob@localhost/gone", "nobody@localhost", "remote.example"]
    for i, to in enumerate(targets):
        for iq_id, text in bad_iqs(to, f"c{i}"):
            alice.send(text)
            st = alice.wait(lambda st: st.get("id") == iq_id)
            assert_bad_request(st, text)
    # a get or set without an id: bad-request too (the answer has no id to carry)
    alice.send("<iq type='get' to='bob@localhost/r'><ping xmlns='urn:xmpp:ping'/></iq>")
    st = alice.wait(lambda st: st.tag == tag("iq"))
    assert_bad_request(st, "iq without id")
    # a presence type RFC 6121 does not define
    for to in ("bob@localhost", None):
        to_attr = f" to='{to}'" if to else ""
        alice.send(f"<presence id='p-{to}' type='online'{to_attr}/>")
        assert_bad_request(alice.wait(lambda st: st.get("id") == f"p-{to}"), "presence type='online'")
    # results and errors, however malformed, are never answered
    alice.send("<iq id='r1' type='result' to='bob@localhost'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>")
    alice.send("<iq id='r2' type='error' to='localhost'/>")
    alice.send("<message id='r3' type='error' to='nobody@localhost'/>")
    # a message of unknown type is a normal message (RFC 6121 5.2.2)
    alice.send("<message id='m1' type='whisper' to='bob@localhost'><body>hi</body></message>")
    bob.wait(lambda st: st.get("id") == "m1")
    alice.sync()
    bob.sync()
    assert not [st for st in alice.take() if st.get("id") in ("r1", "r2", "r3")]
    leaked = [ET.tostring(st) for st in bob.take()]
    assert not leaked, leaked
    # none of it reached the sm: c2s answered
    assert "fetch" not in srv.log("sm")
    # the stream is still fine
    alice.send("<iq type='get' id='ok' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert alice.wait(lambda st: st.get("id") == "ok").get("type") == "result"


def component(port, name, secret):
    """An XEP-0114 component on a raw socket, wrapped as a Session."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' "
              f"to='{name}'>".encode())
    data = b""
    while b"id=" not in data or b">" not in data.split(b"id=", 1)[1]:
        data += s.recv(4096)
    sid = data.split(b"id=", 1)[1][1:].split(data.split(b"id=", 1)[1][:1])[0].decode()
    s.sendall(f"<handshake>{hashlib.sha1((sid + secret).encode()).hexdigest()}</handshake>".encode())
    data = b""
    while b"<handshake/>" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk

    class Raw:
        pass
    raw = Raw()
    raw.sock, raw.buf, raw.jid = s, data.split(b"<handshake/>", 1)[1].decode(), name
    raw.send = lambda x: s.sendall(x.encode())
    raw.close = s.close
    return Session(raw, ns="jabber:component:accept")


def test_component_bad_iq_gets_bad_request_from_the_sm(srv):
    alice = Session(srv.login("alice", "pw", resource="r"))
    alice.presence()
    bot = component(srv.router_port, "bot.localhost", "bot-secret")
    for i, to in enumerate(["localhost", "alice@localhost", "alice@localhost/r", "alice@localhost/gone",
                            "nobody@localhost"]):
        for iq_id, text in bad_iqs(to, f"b{i}", sender="bot.localhost"):
            bot.send(text)
            st = bot.wait(lambda st: st.get("id") == iq_id)
            assert_bad_request(st, text)
            assert st.get("to") == "bot.localhost" and st.get("from") == to, ET.tostring(st)
    bot.send("<presence from='bot.localhost' to='alice@localhost' id='bp' type='online'/>")
    assert_bad_request(bot.wait(lambda st: st.get("id") == "bp"), "presence type='online'")
    alice.sync()
    leaked = [ET.tostring(st) for st in alice.take()]
    assert not leaked, leaked
    bot.close()


def test_sm_checks_what_a_c2s_routes(env):
    """A c2s that does not check (an older one, or another implementation):
    the sm answers for the session."""
    from test_sm_raw import World, error_cond, is_
    w = World(env)
    c = w.c2s
    c.register("alice@localhost")
    sid = w.online(c, "alice@localhost/pc")
    for iq_id, text in bad_iqs("alice@localhost", "f") + bad_iqs(None, "g") + bad_iqs("localhost", "h"):
        c.send(sid, text)
        st = c.expect(sid, is_("iq", id=iq_id))
        assert st.get("type") == "error" and error_cond(st) == "bad-request", text
    w.c2s.close()


def test_remote_server_bad_iq_gets_bad_request_over_s2s(tmp_path, monkeypatch):
    import test_s2s_loopback as loop
    # a.test's router takes an XEP-0114 component trusted to send as anyone:
    # it injects, as alice, stanzas that a.test's c2s would have refused.
    monkeypatch.setattr(loop, "ROUTER", loop.ROUTER.replace(
        "</router>", "<component name='inject.{domain}' secret='inject-secret' protocol='xep0114' "
                     "trusted-from='true'/></router>"))
    a, b = loop.Deployment(tmp_path, "a.test"), loop.Deployment(tmp_path, "b.test")
    a.peers = [("b.test", b.s2s_port, False)]
    b.peers = [("a.test", a.s2s_port, False)]
    try:
        a.start_all()
        b.start_all()
        a.register("alice")
        b.register("bob")
        alice = Session(a.login("alice"))
        bob = Session(b.login("bob"))
        inject = component(a.router_port, "inject.a.test", "inject-secret")
        # a good ping first: federation is up
        inject.send("<iq type='get' id='up' from='alice@a.test/r' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert alice.wait(lambda st: st.get("id") == "up", timeout=20).get("type") == "result"
        for i, to in enumerate(["b.test", "bob@b.test", "bob@b.test/r", "nobody@b.test"]):
            for iq_id, text in bad_iqs(to, f"s{i}", sender="alice@a.test/r"):
                inject.send(text)
                st = alice.wait(lambda st: st.get("id") == iq_id, timeout=15)
                assert_bad_request(st, text)
                assert st.get("from") == to, ET.tostring(st)
        bob.sync()
        leaked = [ET.tostring(st) for st in bob.take()]
        assert not leaked, leaked
        inject.close()
    finally:
        a.close()
        b.close()
