"""c2s: stream negotiation, SASL, binding, routing, XEP-0198 and limits.

Tests marked c2s-only run with the router alone (no sm); the others need the
sm for accounts and sessions.
"""
import os
import re
import socket
import ssl
import stat
import subprocess
import time

import pytest

import server
from conftest import BUILD, wait_for
from server import RawClient, Server


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


# ---------------------------------------------------------------- c2s only

def test_header_and_starttls_required(srv):
    srv.start(sm=False)
    c = RawClient(srv)
    f = c.open()
    assert re.search(r"<stream:stream [^>]*from='localhost'", f)
    assert "id='" in f and "version='1.0'" in f and "xml:lang='en'" in f
    assert "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>" in f
    assert "<mechanisms" not in f
    # SASL before TLS is refused.
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
    out = c.read_closed()
    assert "<policy-violation" in out and "</stream:stream>" in out


def test_features_after_tls(srv):
    srv.start(sm=False)
    c = RawClient(srv)
    c.open()
    f = c.starttls()
    for m in ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        assert f"<mechanism>{m}</mechanism>" in f, f
    assert "<register xmlns='http://jabber.org/features/iq-register'/>" in f
    assert "tls-exporter" in f and "tls-server-end-point" in f
    # Stream ids are unique per stream.
    ids = re.findall(r"<stream:stream [^>]*id='([0-9a-f]+)'", f)
    assert len(ids) == 1


def test_wrong_to_is_host_unknown(srv):
    srv.start(sm=False)
    c = RawClient(srv)
    c.send(c.header(to="example.org"))
    out = c.read_closed()
    assert "<stream:stream" in out and "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out


def test_bad_namespace_and_version(srv):
    srv.start(sm=False)
    c = RawClient(srv)
    c.send(c.header(ns="jabber:server"))
    assert "<invalid-namespace" in c.read_closed()
    c = RawClient(srv)
    c.send(c.header(version="2.0"))
    assert "<unsupported-version" in c.read_closed()


def test_stanza_before_auth_not_authorized(srv):
    srv.start(sm=False)
    c = RawClient(srv)
    c.open()
    c.starttls()
    c.send("<message to='a@localhost'><body>x</body></message>")
    assert "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in c.read_closed()


def test_malformed_xml_closes_only_that_stream(srv):
    srv.start(sm=False)
    good = RawClient(srv)
    good.open()
    bad = RawClient(srv)
    bad.open()
    bad.send("<message><body>x</bo></message>")
    assert "<not-well-formed" in bad.read_closed()
    bad2 = RawClient(srv)
    bad2.open()
    bad2.send("<!DOCTYPE foo>")
    out = bad2.read_closed()
    assert "<restricted-xml" in out or "<not-well-formed" in out
    # The other stream still works (whitespace keepalive, then STARTTLS).
    good.send(" ")
    good.starttls()


def test_oversized_stanza_policy_violation(srv):
    srv.start(sm=False, c2s_extra="<limits><stanza-bytes>8192</stanza-bytes></limits>")
    c = RawClient(srv)
    c.open()
    c.send("<message><body>" + "x" * 20000 + "</body></message>")
    assert "<policy-violation" in c.read_closed()


def test_negotiation_timeout(srv):
    srv.start(sm=False, c2s_extra="<timeouts><negotiation>1</negotiation></timeouts>")
    c = RawClient(srv)
    c.open()
    assert "<connection-timeout" in c.read_closed(timeout=5)


def test_direct_tls_and_ipv6(srv):
    srv.start(sm=False)
    c = RawClient(srv, direct_tls=True)
    f = c.open()
    assert "<starttls" not in f and "<mechanism>PLAIN</mechanism>" in f
    # The default config listens on [::1] too; a machine without IPv6
    # loopback fails this test rather than skipping the IPv6 listener.
    c6 = RawClient(srv, family=socket.AF_INET6, host="::1")
    assert "<starttls" in c6.open()


def test_plain_refused_without_tls(srv):
    srv.start(sm=False, c2s_extra="<tls><required>false</required></tls>".replace("<tls>", "<tls>"))
    c = RawClient(srv)
    f = c.open()
    assert "<mechanism>PLAIN</mechanism>" not in f and "<mechanism>SCRAM-SHA-256</mechanism>" in f
    assert not c.auth("alice", "pw", "PLAIN")
    assert "<encryption-required/>" in c.last_failure


def test_sasl_abort_and_bad_base64(srv):
    srv.start(sm=False)
    c = RawClient(srv)
    c.open()
    c.starttls()
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'/>")
    c.read_until(r"<challenge[^>]*/>")
    c.send("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    assert "<aborted/>" in c.read_until(r"</failure>")
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>!!!</auth>")
    assert "<incorrect-encoding/>" in c.read_until(r"</failure>")
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'>AA==</auth>")
    assert "<invalid-mechanism/>" in c.read_until(r"</failure>")


def test_auth_without_sm_is_temporary_failure(srv):
    srv.start(sm=False, c2s_extra="<timeouts><sm>1</sm></timeouts>")
    c = RawClient(srv)
    c.open()
    c.starttls()
    assert not c.auth("alice", "pw")
    assert "<temporary-auth-failure/>" in c.last_failure


# ---------------------------------------------------------------- with the sm

def test_register_and_every_mechanism(srv):
    srv.start()
    srv.register("alice", "secret")
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "PLAIN"):
        c = srv.login("alice", "secret", resource=mech.lower(), mech=mech)
        assert c.jid == f"alice@localhost/{mech.lower()}"
        c.close()
    c = srv.login("alice", "secret", resource="direct", direct_tls=True)
    c.close()


def test_wrong_password_not_authorized_and_logged(srv):
    srv.start()
    srv.register("bob", "right")
    c = RawClient(srv)
    c.open()
    c.starttls()
    assert not c.auth("bob", "wrong")
    assert "<not-authorized/>" in c.last_failure
    assert not c.auth("nobody", "x")
    assert "<not-authorized/>" in c.last_failure
    assert not c.auth("bob", "right", authzid="carol@localhost")
    assert "<invalid-authzid/>" in c.last_failure or "<not-authorized/>" in c.last_failure
    log = srv.log("c2s")
    assert re.search(r"event=auth-failed peer=127\.0\.0\.1:\d+ ip=127\.0\.0\.1 user=bob", log), log


def test_register_conflict(srv):
    srv.start()
    srv.register("dave", "pw")
    c = RawClient(srv)
    c.open()
    c.starttls()
    c.send("<iq type='set' id='r2'><query xmlns='jabber:iq:register'><username>dave</username>"
           "<password>x</password></query></iq>")
    assert "<conflict" in c.read_until(r"</iq>")


def test_bind_generated_resource_and_bad_resource(srv):
    srv.start()
    srv.register("erin", "pw")
    c = srv.login("erin", "pw", bind=False)
    c.send("<iq type='set' id='b0'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bad\u200eres</resource></bind></iq>")
    assert "<bad-request" in c.read_until(r"</iq>")
    c.bind(None)
    assert c.jid.startswith("erin@localhost/")
    c.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
    assert re.search(r"<iq [^>]*type='result'", c.read_until(r"<iq[^>]*s1[^>]*/>"))


def test_message_between_sessions_and_invalid_from(srv):
    srv.start()
    srv.register("f1", "pw")
    srv.register("f2", "pw")
    a = srv.login("f1", "pw", resource="a")
    b = srv.login("f2", "pw", resource="b")
    a.send("<message to='f2@localhost/b' id='m1' type='chat'><body>hello</body></message>")
    got = b.read_until(r"</message>")
    assert "from='f1@localhost/a'" in got and "hello" in got
    a.send("<message to='bad@@jid' id='m2'><body>x</body></message>")
    assert "<jid-malformed" in a.read_until(r"</message>")
    a.send("<message from='f2@localhost/b' to='f2@localhost/b'><body>spoof</body></message>")
    assert "<invalid-from" in a.read_closed()


def test_element_in_xml_namespace_closes_only_that_stream(srv):
    """expat accepts <xml:x/>, but nothing can serialize it again: the stanza
    must never get past c2s, where it would break the link to the router."""
    srv.start()
    for u in ("x1", "x2", "x3"):
        srv.register(u, "pw")
    a = srv.login("x1", "pw", resource="a")
    b = srv.login("x2", "pw", resource="b")
    bad = srv.login("x3", "pw", resource="c")
    bad.send("<message to='x2@localhost/b'><body>x</body><xml:x/></message>")
    assert "<not-well-formed" in bad.read_closed()
    bad = srv.login("x3", "pw", resource="c")
    bad.send("<xml:message to='x2@localhost/b'/>")
    assert "<not-well-formed" in bad.read_closed()
    a.send("<message to='x2@localhost/b' type='chat'><body>still here</body></message>")
    assert "still here" in b.read_until(r"</message>")


def test_bind_conflict_ends_older_session(srv):
    srv.start()
    srv.register("gina", "pw")
    first = srv.login("gina", "pw", resource="same")
    second = srv.login("gina", "pw", resource="same")
    out = first.read_closed()
    assert "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert second.jid == "gina@localhost/same"


def test_bind_conflict_refused_when_configured(srv):
    srv.start(sm_extra="<sessions><conflict-refuse>true</conflict-refuse></sessions>")
    srv.register("gus", "pw")
    first = srv.login("gus", "pw", resource="same")
    second = srv.login("gus", "pw", resource="same", bind=False)
    # The harness's bind asserts success; this one is done by hand.
    second.send("<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                "<resource>same</resource></bind></iq>")
    out = second.read_until(r"<iq[^>]*b2[\s\S]*?</iq>")
    assert "type='error'" in out and "<conflict " in out
    # The first session is untouched and still answers.
    first.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "type='result'" in first.read_until(r"<iq[^>]*p1[^>]*>")


def test_stream_management_resume(srv):
    srv.start()
    srv.register("hank", "pw")
    srv.register("ivy", "pw")
    h = srv.login("hank", "pw", resource="phone")
    h.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    enabled = h.read_until(r"<enabled[^>]*/>")
    previd = re.search(r"id='([^']+)'", enabled).group(1)
    i = srv.login("ivy", "pw", resource="pc")
    i.send("<message to='hank@localhost/phone' id='x1' type='chat'><body>one</body></message>")
    h.read_until(r"one</body>")
    h.send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
    time.sleep(0.2)
    h.drop()
    assert wait_for(lambda: "event=detached" in srv.log("c2s"), 5)
    for n in ("two", "three"):
        i.send(f"<message to='hank@localhost/phone' type='chat'><body>{n}</body></message>")
    time.sleep(0.5)
    h2 = srv.login("hank", "pw", bind=False)
    h2.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='1'/>")
    r = h2.read_until(r"three</body>")
    assert "<resumed" in r and "<body>two</body>" in r and "<body>one</body>" not in r
    assert r.count("<body>") == 2
    # The session is the same one: the sm still delivers to it.
    i.send("<message to='hank@localhost/phone' type='chat'><body>four</body></message>")
    h2.read_until(r"four</body>")


def test_stream_management_counts_what_c2s_answers_itself(srv):
    """Psi 1.5 enables stream management, then sends the RFC 3921 session
    iq: c2s answers it itself, and that answer is a stanza the client counts
    (XEP-0198 4). An ack covering it must not end the stream, and a stanza
    error c2s makes (a malformed to) counts the same way."""
    srv.start()
    srv.register("lena", "pw")
    c = srv.login("lena", "pw", resource="psi")
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    c.read_until(r"<enabled[^>]*/>")
    c.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
    assert "type='result'" in c.read_until(r"<iq[^>]*s1[^>]*>")
    c.send("<message to='a@b@c' id='m1'><body>x</body></message>")
    assert "jid-malformed" in c.read_until(r"</message>")
    c.send("<a xmlns='urn:xmpp:sm:3' h='2'/>")
    c.send("<r xmlns='urn:xmpp:sm:3'/>")
    out = c.read_until(r"<a [^>]*/>")
    assert "stream:error" not in out and "h='2'" in out, out  # the two stanzas it got
    c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "type='result'" in c.read_until(r"<iq[^>]*p1[^>]*>")
    assert "condition=undefined-condition" not in srv.log("c2s")


def test_stream_management_not_resumed_goes_back_to_sm(srv):
    srv.start(c2s_extra="<stream-management><resume-timeout>1</resume-timeout></stream-management>")
    srv.register("jack", "pw")
    srv.register("kim", "pw")
    j = srv.login("jack", "pw", resource="phone")
    j.send("<presence/>")
    j.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    j.read_until(r"<enabled[^>]*/>")
    k = srv.login("kim", "pw", resource="pc")
    k.send("<message to='jack@localhost' type='chat'><body>lost?</body></message>")
    j.read_until(r"lost\?</body>")
    j.drop()
    assert wait_for(lambda: "event=unacked-returned" in srv.log("c2s"), 10), srv.log("c2s")
    assert wait_for(lambda: "event=session-end" in srv.log("c2s"), 5)
    # It went offline at the sm: the next login gets it.
    j2 = srv.login("jack", "pw", resource="again")
    j2.send("<presence/>")
    assert "lost?" in j2.read_until(r"lost\?</body>")


def test_slixmpp_client_connects(srv):
    srv.start()
    srv.register("lena", "pw")
    import asyncio
    import slixmpp
    # A fresh loop: another test in the same process may have closed the old one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    result = {}
    x = slixmpp.ClientXMPP("lena@localhost/slix", "pw")
    x.ssl_context.check_hostname = False
    x.ssl_context.verify_mode = ssl.CERT_NONE
    # PLAIN over TLS (the default SCRAM -PLUS path is the next test).
    x['feature_mechanisms'].use_mech = 'PLAIN'

    def on_start(event):
        result["jid"] = str(x.boundjid)
        x.disconnect()

    x.add_event_handler("session_start", on_start)
    x.connect(("127.0.0.1", srv.port))
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.wait_for(x.disconnected, 20))
    assert result.get("jid") == "lena@localhost/slix"


def test_connections_per_ip_limit(srv):
    srv.start(sm=False, c2s_extra="<limits><connections-per-ip>2</connections-per-ip></limits>")
    time.sleep(0.5)  # the harness's own port probe must have been let go
    a, b = RawClient(srv), RawClient(srv)
    a.open()
    b.open()
    c = RawClient(srv)
    c.send(c.header())
    assert "<stream:features>" not in c.read_closed()
    assert "reason=connections-per-ip" in srv.log("c2s")


def test_password_change_and_remove(srv):
    srv.start()
    srv.register("mia", "old")
    c = srv.login("mia", "old")
    c.send("<iq type='set' id='p1'><query xmlns='jabber:iq:register'><username>mia</username>"
           "<password>new</password></query></iq>")
    assert "type='result'" in c.read_until(r"<iq[^>]*p1[^>]*(/>|>[\s\S]*?</iq>)")
    c.close()
    bad = RawClient(srv)
    bad.open()
    bad.starttls()
    assert not bad.auth("mia", "old")
    c = srv.login("mia", "new", resource="x")
    c.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
    out = c.read_closed()
    assert "id='rm'" in out and "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    again = RawClient(srv)
    again.open()
    again.starttls()
    assert not again.auth("mia", "new")


def test_sessions_resync_after_sm_restart(srv):
    srv.start()
    srv.register("nat", "pw")
    srv.register("ola", "pw")
    n = srv.login("nat", "pw", resource="n")
    o = srv.login("ola", "pw", resource="o")
    srv.sm.stop()
    assert wait_for(lambda: "event=sm-down" in srv.log("c2s"), 10)
    srv.start_sm()
    assert wait_for(lambda: "event=resync reason=sm-back" in srv.log("c2s"), 15), srv.log("c2s")
    time.sleep(0.5)
    o.send("<message to='nat@localhost/n' type='chat'><body>after restart</body></message>")
    assert "after restart" in n.read_until(r"after restart</body>")


def test_slixmpp_default_mechanism_with_tls_unique_channel_binding(srv):
    """An unmodified slixmpp picks a SCRAM -PLUS mechanism with tls-unique
    channel binding; the server accepts that binding type (XEP-0440 lists it)."""
    srv.start()
    srv.register("mona", "pw")
    import asyncio
    import slixmpp
    # A fresh loop: another test in the same process may have closed the old one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    result = {}
    x = slixmpp.ClientXMPP("mona@localhost/slix", "pw")
    x.ssl_context.check_hostname = False
    x.ssl_context.verify_mode = ssl.CERT_NONE

    def on_start(event):
        result["jid"] = str(x.boundjid)
        x.disconnect()

    x.add_event_handler("session_start", on_start)
    x.connect(("127.0.0.1", srv.port))
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.wait_for(x.disconnected, 20))
    assert result.get("jid") == "mona@localhost/slix"
    log = srv.log("c2s")
    line = [l for l in log.splitlines() if "event=authenticated" in l and "mona@localhost" in l][0]
    assert "mechanism=SCRAM-SHA-" in line and "-PLUS" in line, line


# ---------------------------------------------------------------- XEP-0078 (auth.legacy)

IQAUTH_FEATURE = "<auth xmlns='http://jabber.org/features/iq-auth'/>"


def iq_auth_set(c, iq_id, user=None, password=None, resource=None, digest=None):
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in (("username", user), ("password", password),
                                                     ("digest", digest), ("resource", resource)) if v is not None)
    c.send(f"<iq type='set' id='{iq_id}'><query xmlns='jabber:iq:auth'>{fields}</query></iq>")
    return c.read_until(rf"<iq[^>]*id='{iq_id}'[^>]*(/>|>[\s\S]*?</iq>)")


def test_legacy_auth_off_by_default(srv):
    srv.start()
    srv.register("leg0", "pw")
    c = RawClient(srv)
    c.open()
    f = c.starttls()
    assert IQAUTH_FEATURE not in f
    c.send("<iq type='get' id='a1'><query xmlns='jabber:iq:auth'><username>leg0</username></query></iq>")
    r = c.read_until(r"<iq[^>]*id='a1'[\s\S]*?</iq>")
    assert "type='error'" in r and "<service-unavailable" in r, r
    r = iq_auth_set(c, "a2", "leg0", "pw", "old")
    assert "<service-unavailable" in r, r
    # Nothing was authenticated: a stanza is still refused.
    c.send("<message to='leg0@localhost'><body>x</body></message>")
    assert "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in c.read_closed()


def test_legacy_auth_login_and_errors(srv):
    srv.start(c2s_extra="<auth><legacy>true</legacy></auth>")
    srv.register("leg1", "secret")
    srv.register("leg2", "pw")
    other = srv.login("leg2", "pw", resource="modern")
    c = RawClient(srv)
    f = c.open()
    assert IQAUTH_FEATURE not in f          # not before TLS
    f = c.starttls()
    assert IQAUTH_FEATURE in f and "<mechanism>SCRAM-SHA-256</mechanism>" in f
    c.send("<iq type='get' id='g1' to='localhost'><query xmlns='jabber:iq:auth'><username>leg1</username>"
           "</query></iq>")
    r = c.read_until(r"<iq[^>]*id='g1'[\s\S]*?</iq>")
    assert "type='result'" in r and "<username>leg1</username>" in r and "<password/>" in r
    assert "<resource/>" in r and "<digest" not in r, r
    # Missing fields, and the digest method we cannot check: not-acceptable.
    r = iq_auth_set(c, "s1", "leg1", "secret")
    assert "code='406'" in r and "<not-acceptable" in r, r
    r = iq_auth_set(c, "s2", "leg1", resource="old", digest="48fc78be9ec8f86d8ce1c39c320c97c21d62334d")
    assert "<not-acceptable" in r, r
    # A wrong password: not-authorized, logged like a SASL failure.
    r = iq_auth_set(c, "s3", "leg1", "wrong", "old")
    assert "type='error'" in r and "code='401'" in r and "<not-authorized" in r, r
    assert re.search(r"event=auth-failed peer=127\.0\.0\.1:\d+ ip=127\.0\.0\.1 user=leg1 mechanism=iq-auth "
                     r"condition=not-authorized", srv.log("c2s")), srv.log("c2s")
    r = iq_auth_set(c, "s4", "nobody", "x", "old")
    assert "<not-authorized" in r, r
    # The right one: an empty result, and the session is bound without a restart.
    r = iq_auth_set(c, "s5", "Leg1", "secret", "old")
    assert re.search(r"<iq [^>]*type='result'[^>]*/>", r) and "<stream:stream" not in r, r
    c.send("<message to='leg2@localhost/modern' type='chat' id='m1'><body>from the past</body></message>")
    got = other.read_until(r"from the past</body>")
    assert "from='leg1@localhost/old'" in got, got
    other.send("<message to='leg1@localhost/old' type='chat'><body>hello back</body></message>")
    assert "hello back" in c.read_until(r"hello back</body>")
    # Authenticated: another iq:auth is not ours any more, and SASL is refused.
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
    assert "<policy-violation" in c.read_closed()
    log = srv.log("c2s")
    assert re.search(r"event=authenticated peer=\S+ user=leg1@localhost mechanism=iq-auth tls=1", log), log
    assert "secret" not in log
    assert "runtime error" not in log and "AddressSanitizer" not in log


def test_legacy_auth_refused_without_tls(srv):
    srv.start(c2s_extra="<auth><legacy>true</legacy></auth><tls><required>false</required></tls>")
    srv.register("leg3", "pw")
    c = RawClient(srv)
    f = c.open()
    assert IQAUTH_FEATURE not in f and "<mechanism>SCRAM-SHA-256</mechanism>" in f
    r = iq_auth_set(c, "t1", "leg3", "pw", "clear")
    assert "type='error'" in r and "<policy-violation" in r, r
    assert "reason=iq-auth-without-tls" in srv.log("c2s")
    # The stream is still unauthenticated, and STARTTLS then iq:auth works.
    c.starttls()
    r = iq_auth_set(c, "t2", "leg3", "pw", "secured")
    assert re.search(r"<iq [^>]*type='result'", r), r


def test_legacy_auth_same_resource_replaces_older_session(srv):
    srv.start(c2s_extra="<auth><legacy>true</legacy></auth>")
    srv.register("leg4", "pw")
    first = srv.login("leg4", "pw", resource="desk")
    c = RawClient(srv)
    c.open()
    c.starttls()
    r = iq_auth_set(c, "u1", "leg4", "pw", "desk")
    assert re.search(r"<iq [^>]*type='result'", r), r
    assert "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in first.read_closed()


# ---------------------------------------------------------------- weftctl sessions (sm admin socket)

def weftctl(*args):
    return subprocess.run([os.path.join(BUILD, "tools", "weftctl"), *args], capture_output=True, text=True,
                          timeout=10)


def sessions(path):
    r = weftctl("-S", path, "sessions")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and lines[-1].startswith("count="), r.stdout
    rows = {}
    for line in lines[:-1]:
        kv = dict(f.split("=", 1) for f in line.split())
        rows[kv["jid"]] = kv
    assert int(lines[-1][6:]) == len(rows), r.stdout
    return rows


def test_weftctl_sessions(srv, monkeypatch):
    monkeypatch.setattr(server, "SM", server.SM.replace("<domain>", "<control>{dir}/sm.ctl</control>\n  <domain>"))
    srv.start()
    ctl = str(srv.dir / "sm.ctl")
    assert wait_for(lambda: os.path.exists(ctl), 10)
    assert stat.S_IMODE(os.stat(ctl).st_mode) == 0o600
    assert sessions(ctl) == {}
    srv.register("ses1", "pw")
    srv.register("ses2", "pw")
    a = srv.login("ses1", "pw", resource="phone")
    b = srv.login("ses2", "pw", resource="desk")
    a.send("<presence><priority>5</priority></presence>")
    assert wait_for(lambda: sessions(ctl).get("ses1@localhost/phone", {}).get("available") == "1", 5)
    rows = sessions(ctl)
    assert set(rows) == {"ses1@localhost/phone", "ses2@localhost/desk"}, rows
    pa, pb = rows["ses1@localhost/phone"], rows["ses2@localhost/desk"]
    assert pa["c2s"] == "c2s.localhost" and pa["priority"] == "5" and pa["sid"].isdigit()
    assert pb["available"] == "0" and pb["priority"] == "0" and pb["sid"] != pa["sid"]
    b.close()
    assert wait_for(lambda: set(sessions(ctl)) == {"ses1@localhost/phone"}, 5), sessions(ctl)
    # Unknown commands are refused on the socket; weftctl fails without a socket.
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(ctl)
        s.sendall(b"shutdown\n")
        assert s.recv(100) == b"error unknown-command\n"
    r = weftctl("-S", str(srv.dir / "nothing.ctl"), "sessions")
    assert r.returncode == 1 and "cannot reach the sm" in r.stderr
    assert "runtime error" not in srv.log("sm") and "AddressSanitizer" not in srv.log("sm")


# ---------------------------------------------------------------- TLS record takeover

def wait_takeovers(srv, n):
    assert wait_for(lambda: len(re.findall(r"event=tls-takeover [^\n]*result=done", srv.log("c2s"))) >= n, 10), \
        srv.log("c2s")


@pytest.mark.parametrize("direct", [False, True])
def test_tls_takeover_carries_the_stream(srv, direct):
    """Bound sessions leave OpenSSL (tls.record-takeover, on by default) and
    the stream goes on both ways: small stanzas, one stanza over several TLS
    records, whitespace keepalives, the closing handshake."""
    srv.start()
    srv.register("tk1", "pw")
    srv.register("tk2", "pw")
    a = srv.login("tk1", "pw", resource="a", direct_tls=direct)
    b = srv.login("tk2", "pw", resource="b", direct_tls=direct)
    wait_takeovers(srv, 2)
    for i in range(3):
        a.send(f"<message to='tk2@localhost/b' id='m{i}' type='chat'><body>hello {i}</body></message>")
        assert f"hello {i}</body>" in b.read_until(rf"hello {i}</body>")
        b.send(" ")
        b.send(f"<message to='tk1@localhost/a' type='chat'><body>back {i}</body></message>")
        assert f"back {i}" in a.read_until(rf"back {i}</body>")
    big = "".join(chr(ord("a") + i % 26) for i in range(100000))
    a.send(f"<message to='tk2@localhost/b' type='chat'><body>{big}</body></message>")
    got = b.read_until(r"</body>", timeout=20)
    assert big in got
    b.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "type='result'" in b.read_until(r"<iq[^>]*p1[^>]*>")
    a.send("</stream:stream>")
    assert "</stream:stream>" in a.read_closed()
    assert wait_for(lambda: "event=session-end" in srv.log("c2s") and "jid=tk1@localhost/a" in srv.log("c2s"), 5)
    assert "event=tls-failed" not in srv.log("c2s")


def test_tls_takeover_close_notify_and_resume(srv):
    """A TLS close_notify after the takeover is the end of the connection; a
    XEP-0198 session then resumes on a new connection, which is taken over
    in turn."""
    srv.start()
    srv.register("tk3", "pw")
    srv.register("tk4", "pw")
    h = srv.login("tk3", "pw", resource="phone")
    h.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    previd = re.search(r"id='([^']+)'", h.read_until(r"<enabled[^>]*/>")).group(1)
    i = srv.login("tk4", "pw", resource="pc")
    wait_takeovers(srv, 2)
    i.send("<message to='tk3@localhost/phone' type='chat'><body>one</body></message>")
    h.read_until(r"one</body>")
    h.send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
    time.sleep(0.2)
    h.sock.unwrap()   # close_notify, TCP stays up
    assert wait_for(lambda: "event=detached" in srv.log("c2s"), 5), srv.log("c2s")
    i.send("<message to='tk3@localhost/phone' type='chat'><body>two</body></message>")
    h2 = srv.login("tk3", "pw", bind=False)
    h2.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='1'/>")
    assert "<body>two</body>" in h2.read_until(r"two</body>")
    wait_takeovers(srv, 3)
    i.send("<message to='tk3@localhost/phone' type='chat'><body>three</body></message>")
    h2.read_until(r"three</body>")


def test_tls_takeover_kept_for_tls12_and_when_off(srv):
    srv.start()
    srv.register("tk5", "pw")
    srv.register("tk6", "pw")
    c = RawClient(srv)
    c.open()
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    c.read_until(r"<proceed[^>]*/>")
    c.buf = ""
    ctx = ssl.create_default_context(cafile=srv.cert)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c.sock = ctx.wrap_socket(c.sock, server_hostname="localhost")
    c.open()
    assert c.auth("tk5", "pw")
    c.bind("old")
    assert wait_for(lambda: 'result=kept reason="not TLS 1.3"' in srv.log("c2s"), 5), srv.log("c2s")
    d = srv.login("tk6", "pw", resource="new")
    wait_takeovers(srv, 1)
    d.send("<message to='tk5@localhost/old' type='chat'><body>to 1.2</body></message>")
    c.read_until(r"to 1.2</body>")
    c.send("<message to='tk6@localhost/new' type='chat'><body>from 1.2</body></message>")
    d.read_until(r"from 1.2</body>")


def test_tls_takeover_off(tmp_path):
    s = Server(tmp_path)
    try:
        s.start(c2s_extra="<tls><record-takeover>false</record-takeover></tls>")
        s.register("tk7", "pw")
        c = s.login("tk7", "pw")
        time.sleep(2.5)
        c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert "type='result'" in c.read_until(r"<iq[^>]*p1[^>]*>")
        assert "event=tls-takeover" not in s.log("c2s")
    finally:
        s.close()
