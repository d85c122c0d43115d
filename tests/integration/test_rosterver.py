"""Roster versioning (RFC 6121 2.6): c2s advertises the rosterver stream
feature after authentication, and a client that comes back with the version
it last saw gets an empty result and then pushes only; one with an older
version gets the whole roster. Raw XML for the exact answers, slixmpp as an
independent client that only uses versions when the feature is advertised."""
import asyncio
import ssl
import xml.etree.ElementTree as ET

import pytest

from server import RawClient, Server
from stanza_client import Session, tag

R = "jabber:iq:roster"


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path).start()
    s.register("alice", "pw")
    yield s
    s.close()


def roster_get(sess, iq_id, ver=None):
    v = f" ver='{ver}'" if ver is not None else ""
    sess.send(f"<iq type='get' id='{iq_id}'><query xmlns='{R}'{v}/></iq>")
    st = sess.wait(lambda st: st.get("id") == iq_id)
    assert st.get("type") == "result", ET.tostring(st)
    return st.find(tag("query", R))


def roster_set(sess, iq_id, jid):
    sess.send(f"<iq type='set' id='{iq_id}'><query xmlns='{R}'><item jid='{jid}'/></query></iq>")
    sess.wait(lambda st: st.get("id") == iq_id and st.get("type") == "result")
    push = sess.wait(lambda st: st.get("type") == "set" and st.find(tag("query", R)) is not None)
    return push.find(tag("query", R)).get("ver")


def test_feature_advertised_after_auth_only(srv):
    c = RawClient(srv)
    feats = c.open() + c.starttls()
    assert "rosterver" not in feats
    # PLAIN by hand (auth() would read the post-auth features itself)
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHB3</auth>")
    c.read_until(r"<success[^>]*(/>|>[^<]*</success>)")
    c.buf = ""
    c.send(c.header())
    feats = c.read_until(r"</stream:features>")
    assert "<ver xmlns='urn:xmpp:features:rosterver'/>" in feats.replace('"', "'"), feats
    c.close()


def test_reconnect_with_last_version_gets_empty_result_then_pushes(srv):
    a = Session(srv.login("alice", "pw", resource="phone"))
    q = roster_get(a, "g0", ver="")
    assert q is not None and q.get("ver") is not None
    ver = roster_set(a, "s1", "carol@example.org")
    a.close()
    # Back with the version it saw last: nothing changed, an empty result.
    a = Session(srv.login("alice", "pw", resource="phone"))
    assert roster_get(a, "g1", ver=ver) is None
    # Then only pushes: a change made from another session arrives as one.
    other = Session(srv.login("alice", "pw", resource="desk"))
    roster_get(other, "o1")
    newer = roster_set(other, "s2", "dave@example.org")
    push = a.wait(lambda st: st.get("type") == "set" and st.find(tag("query", R)) is not None)
    q = push.find(tag("query", R))
    assert q.get("ver") == newer and [i.get("jid") for i in q] == ["dave@example.org"]
    a.close()
    # Changed while it was away: a stale version gets the whole roster, with the new version.
    roster_set(other, "s3", "erin@example.org")
    a = Session(srv.login("alice", "pw", resource="phone"))
    q = roster_get(a, "g2", ver=ver)
    assert q is not None and q.get("ver") != ver
    assert sorted(i.get("jid") for i in q) == ["carol@example.org", "dave@example.org", "erin@example.org"]
    a.close()
    other.close()


def test_slixmpp_uses_versions_when_advertised(srv):
    import slixmpp
    asyncio.set_event_loop(asyncio.new_event_loop())
    loop = asyncio.get_event_loop()

    def run(saved_version):
        x = slixmpp.ClientXMPP("alice@localhost/slix", "pw")
        x.ssl_context.check_hostname = False
        x.ssl_context.verify_mode = ssl.CERT_NONE
        if saved_version is not None:
            x.client_roster.version = saved_version     # as a client with a stored roster
        out = {}

        def sent(stanza):
            q = stanza.xml.find("{%s}query" % R)
            if stanza.xml.tag.endswith("iq") and q is not None and stanza.xml.get("type") == "get":
                out["ver_sent"] = q.get("ver")
                out["get_id"] = stanza.xml.get("id")
            return stanza

        def received(stanza):
            # As it came off the wire: slixmpp's own handlers add an empty
            # <query/> when they look at it.
            if stanza.xml.get("id") == out.get("get_id"):
                out["query"] = stanza.xml.find("{%s}query" % R)
            return stanza

        async def on_start(event):
            out["features"] = set(x.features)
            await x.get_roster()
            out["version"] = x.client_roster.version
            x.disconnect()

        x.add_filter("out", sent)
        x.add_filter("in", received)
        x.add_event_handler("session_start", on_start)
        x.connect(("127.0.0.1", srv.port))
        loop.run_until_complete(asyncio.wait_for(x.disconnected, 20))
        return out

    first = run(None)
    assert "rosterver" in first["features"]
    assert first["ver_sent"] == "" and first["query"] is not None and first["version"]
    second = run(first["version"])
    assert second["ver_sent"] == first["version"]
    assert second["query"] is None                     # unchanged: an empty result


def test_large_roster_add_remove_rename_and_reload(srv):
    """A roster past the size where the sm indexes items by JID (16): 40
    contacts added, 12 removed, 2 of those added again, 5 renamed; the roster
    is exactly that set, with no item twice, before and after the sm restarts
    and loads it from storage; a rename after the reload changes that one
    item."""
    a = Session(srv.login("alice", "pw", resource="phone"))
    roster_get(a, "g0")
    for i in range(40):
        roster_set(a, f"a{i}", f"c{i}@example.org")
    for i in range(12):
        a.send(f"<iq type='set' id='r{i}'><query xmlns='{R}'>"
               f"<item jid='c{i}@example.org' subscription='remove'/></query></iq>")
        a.wait(lambda st, i=i: st.get("id") == f"r{i}" and st.get("type") == "result")
    for i in (3, 7):
        roster_set(a, f"b{i}", f"c{i}@example.org")
    for i in range(20, 25):
        a.send(f"<iq type='set' id='n{i}'><query xmlns='{R}'>"
               f"<item jid='c{i}@example.org' name='friend {i}'/></query></iq>")
        a.wait(lambda st, i=i: st.get("id") == f"n{i}" and st.get("type") == "result")
    want = {f"c{i}@example.org" for i in range(12, 40)} | {"c3@example.org", "c7@example.org"}

    def check(sess, iq_id, renamed):
        items = list(roster_get(sess, iq_id))
        jids = [i.get("jid") for i in items]
        assert sorted(jids) == sorted(want) and len(jids) == len(set(jids)), jids
        names = {i.get("jid"): i.get("name") for i in items}
        for i in range(20, 25):
            assert names[f"c{i}@example.org"] == renamed.get(i, f"friend {i}"), names

    check(a, "g1", {})
    a.close()
    srv.sm.stop()
    srv.start_sm()
    b = Session(srv.login("alice", "pw", resource="desk"))
    check(b, "g2", {})
    b.send(f"<iq type='set' id='n99'><query xmlns='{R}'>"
           f"<item jid='c22@example.org' name='renamed'/></query></iq>")
    b.wait(lambda st: st.get("id") == "n99" and st.get("type") == "result")
    check(b, "g3", {22: "renamed"})
    b.close()
