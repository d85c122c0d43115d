"""The sm's IQ services and stanza modules (docs/sm-modules.md), driven by the
fake c2s of test_sm_raw.py: disco, version, time, ping, last activity, vCard,
private storage, blocking and carbons. These run without a real c2s; the same
services are checked end to end with slixmpp in test_sm_iq.py.
"""
import re
import time
import xml.etree.ElementTree as ET

import pytest

from test_sm_raw import C, World, error_cond, is_, subscribe_both, tag

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
VCARD = "vcard-temp"
PRIVATE = "jabber:iq:private"
BLOCKING = "urn:xmpp:blocking"
CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"


@pytest.fixture
def world(env):
    w = World(env)
    yield w
    w.c2s.close()


def iq(c, sid, body, id_, to=None, type_="get"):
    """Sends an iq and returns its answer (result or error)."""
    to_attr = f" to='{to}'" if to else ""
    c.send(sid, f"<iq type='{type_}' id='{id_}'{to_attr}>{body}</iq>")
    return c.expect(sid, lambda st: st.tag == tag(C, "iq") and st.get("id") == id_
                    and st.get("type") in ("result", "error"))


def two_users(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    return c


def features(st):
    q = st.find(tag(DISCO_INFO, "query"))
    return [f.get("var") for f in q.findall(tag(DISCO_INFO, "feature"))]


# --- disco ------------------------------------------------------------------------

def test_disco_server(world):
    c = two_users(world)
    a = c.start("alice@localhost/pc")
    st = iq(c, a, f"<query xmlns='{DISCO_INFO}'/>", "d1", to="localhost")
    assert st.get("type") == "result" and st.get("from") == "localhost"
    q = st.find(tag(DISCO_INFO, "query"))
    ident = q.find(tag(DISCO_INFO, "identity"))
    assert (ident.get("category"), ident.get("type"), ident.get("name")) == ("server", "im", "weft")
    f = features(st)
    assert len(f) == len(set(f)), f
    for want in (DISCO_INFO, DISCO_ITEMS, VCARD, PRIVATE, BLOCKING, CARBONS, "jabber:iq:version",
                 "urn:xmpp:time", "urn:xmpp:ping", "jabber:iq:last", "msgoffline"):
        assert want in f, (want, f)
    st = iq(c, a, f"<query xmlns='{DISCO_ITEMS}'/>", "d2", to="localhost")
    assert st.get("type") == "result"
    assert list(st.find(tag(DISCO_ITEMS, "query"))) == []
    st = iq(c, a, f"<query xmlns='{DISCO_INFO}' node='nope'/>", "d3", to="localhost")
    assert error_cond(st) == "item-not-found"
    st = iq(c, a, f"<query xmlns='{DISCO_INFO}'/>", "d4", to="localhost", type_="set")
    assert error_cond(st) == "not-allowed"


def test_disco_account_privacy(world):
    c = two_users(world)
    c.register("eve@localhost")
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    e = c.start("eve@localhost/pc")
    # Own account, with no 'to' and with the bare JID.
    for i, to in enumerate([None, "alice@localhost"]):
        st = iq(c, a, f"<query xmlns='{DISCO_INFO}'/>", f"o{i}", to=to)
        assert st.get("type") == "result", ET.tostring(st)
        ident = st.find(tag(DISCO_INFO, "query")).find(tag(DISCO_INFO, "identity"))
        assert (ident.get("category"), ident.get("type")) == ("account", "registered")
        assert DISCO_INFO in features(st) and VCARD in features(st)
    # A stranger learns nothing: same answer as for a missing account.
    st = iq(c, e, f"<query xmlns='{DISCO_INFO}'/>", "s1", to="alice@localhost")
    assert error_cond(st) == "service-unavailable"
    st = iq(c, e, f"<query xmlns='{DISCO_INFO}'/>", "s2", to="nobody@localhost")
    assert error_cond(st) == "service-unavailable"
    # A contact with a subscription gets the answer.
    subscribe_both(c, a, b)
    st = iq(c, b, f"<query xmlns='{DISCO_INFO}'/>", "c1", to="alice@localhost")
    assert st.get("type") == "result" and st.get("from") == "alice@localhost"
    st = iq(c, b, f"<query xmlns='{DISCO_ITEMS}'/>", "c2", to="alice@localhost")
    assert st.get("type") == "result" and list(st.find(tag(DISCO_ITEMS, "query"))) == []


# --- version, time, ping, last ------------------------------------------------------

def test_version_time_ping(world):
    c = two_users(world)
    c.register("eve@localhost")
    a = c.start("alice@localhost/pc")
    st = iq(c, a, "<query xmlns='jabber:iq:version'/>", "v1", to="localhost")
    q = st.find(tag("jabber:iq:version", "query"))
    assert q.findtext(tag("jabber:iq:version", "name")) == "weft"
    assert q.findtext(tag("jabber:iq:version", "version")) == "0.1.0"
    assert q.find(tag("jabber:iq:version", "os")) is None      # version.show-os is off by default
    st = iq(c, a, "<time xmlns='urn:xmpp:time'/>", "t1", to="localhost")
    t = st.find(tag("urn:xmpp:time", "time"))
    assert re.fullmatch(r"[+-]\d\d:\d\d", t.findtext(tag("urn:xmpp:time", "tzo")))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", t.findtext(tag("urn:xmpp:time", "utc")))
    for i, to in enumerate(["localhost", None, "alice@localhost"]):
        st = iq(c, a, "<ping xmlns='urn:xmpp:ping'/>", f"p{i}", to=to)
        assert st.get("type") == "result", ET.tostring(st)
    e = c.start("eve@localhost/pc")
    st = iq(c, e, "<ping xmlns='urn:xmpp:ping'/>", "p9", to="alice@localhost")
    assert error_cond(st) == "service-unavailable"
    st = iq(c, a, "<query xmlns='jabber:iq:version'/>", "v2", to="localhost", type_="set")
    assert error_cond(st) == "not-allowed"


def test_last_activity(world):
    c = two_users(world)
    c.register("eve@localhost")
    st = iq(c, c.start("eve@localhost/pc"), "<query xmlns='jabber:iq:last'/>", "l0", to="localhost")
    assert int(st.find(tag("jabber:iq:last", "query")).get("seconds")) >= 0
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    e = [s for s, j in c.sessions.items() if j.startswith("eve")][0]
    subscribe_both(c, a, b)
    st = iq(c, b, "<query xmlns='jabber:iq:last'/>", "l1", to="alice@localhost")
    assert st.find(tag("jabber:iq:last", "query")).get("seconds") == "0"
    st = iq(c, e, "<query xmlns='jabber:iq:last'/>", "l2", to="alice@localhost")
    assert error_cond(st) == "forbidden"
    c.end(a)
    c.expect(b, is_("presence", type="unavailable", from_="alice@localhost/pc"))
    time.sleep(1.1)
    st = iq(c, b, "<query xmlns='jabber:iq:last'/>", "l3", to="alice@localhost")
    assert st.get("type") == "result", ET.tostring(st)
    assert int(st.find(tag("jabber:iq:last", "query")).get("seconds")) >= 1


def test_last_activity_status(world):
    c = two_users(world)
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    subscribe_both(c, a, b)
    c.send(a, "<presence type='unavailable'><status>gone fishing</status></presence>")
    c.expect(b, is_("presence", type="unavailable", from_="alice@localhost/pc"))
    c.end(a)
    time.sleep(0.3)
    st = iq(c, b, "<query xmlns='jabber:iq:last'/>", "l4", to="alice@localhost")
    assert st.find(tag("jabber:iq:last", "query")).text == "gone fishing"


# --- vCard -----------------------------------------------------------------------------

def test_vcard(world):
    c = two_users(world)
    a = c.start("alice@localhost/pc")
    b = c.start("bob@localhost/pc")
    st = iq(c, a, f"<vCard xmlns='{VCARD}'/>", "g0")
    vc = st.find(tag(VCARD, "vCard"))
    assert st.get("type") == "result" and vc is not None and list(vc) == []
    st = iq(c, a, f"<vCard xmlns='{VCARD}'><FN>Alice</FN><NICKNAME>al</NICKNAME></vCard>", "s1", type_="set")
    assert st.get("type") == "result", ET.tostring(st)
    for i, (sid, to) in enumerate([(a, None), (a, "alice@localhost"), (b, "alice@localhost")]):
        st = iq(c, sid, f"<vCard xmlns='{VCARD}'/>", f"g{i + 1}", to=to)
        assert st.find(tag(VCARD, "vCard")).findtext(tag(VCARD, "FN")) == "Alice", ET.tostring(st)
    st = iq(c, b, f"<vCard xmlns='{VCARD}'><FN>Mallory</FN></vCard>", "s2", to="alice@localhost", type_="set")
    assert error_cond(st) == "forbidden"
    big = "x" * (70 * 1024)
    st = iq(c, a, f"<vCard xmlns='{VCARD}'><DESC>{big}</DESC></vCard>", "s3", type_="set")
    assert error_cond(st) == "not-acceptable"
    st = iq(c, a, f"<vCard xmlns='{VCARD}'/>", "s4", type_="set")     # empty: deletes
    assert st.get("type") == "result"
    st = iq(c, b, f"<vCard xmlns='{VCARD}'/>", "g9", to="alice@localhost")
    assert list(st.find(tag(VCARD, "vCard"))) == []


# --- private storage ---------------------------------------------------------------------

def test_private_storage(world):
    c = two_users(world)
    a = c.start("alice@localhost/pc")
    b = c.start("bob@localhost/pc")
    st = iq(c, a, f"<query xmlns='{PRIVATE}'><prefs xmlns='x:prefs'/></query>", "p0")
    q = st.find(tag(PRIVATE, "query"))
    assert st.get("type") == "result" and q.find(tag("x:prefs", "prefs")) is not None
    st = iq(c, a, f"<query xmlns='{PRIVATE}'><prefs xmlns='x:prefs'><nick>Al</nick></prefs>"
                  f"<storage xmlns='storage:bookmarks'><conference jid='r@muc'/></storage></query>",
            "p1", type_="set")
    assert st.get("type") == "result", ET.tostring(st)
    st = iq(c, a, f"<query xmlns='{PRIVATE}'><prefs xmlns='x:prefs'/></query>", "p2")
    assert st.find(tag(PRIVATE, "query")).find(tag("x:prefs", "prefs")).findtext(tag("x:prefs", "nick")) == "Al"
    st = iq(c, a, f"<query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'/></query>", "p3",
            to="alice@localhost")
    s = st.find(tag(PRIVATE, "query")).find(tag("storage:bookmarks", "storage"))
    assert s.find(tag("storage:bookmarks", "conference")).get("jid") == "r@muc"
    for i, ns in enumerate(["jabber:iq:roster", "jabber:client", "vcard-temp"]):
        st = iq(c, a, f"<query xmlns='{PRIVATE}'><x xmlns='{ns}'/></query>", f"r{i}", type_="set")
        assert error_cond(st) == "not-acceptable", ns
    st = iq(c, a, f"<query xmlns='{PRIVATE}'/>", "e1")
    assert error_cond(st) == "bad-request"
    st = iq(c, a, f"<query xmlns='{PRIVATE}'/>", "e2", type_="set")
    assert error_cond(st) == "not-acceptable"
    st = iq(c, b, f"<query xmlns='{PRIVATE}'><prefs xmlns='x:prefs'/></query>", "e3", to="alice@localhost")
    assert error_cond(st) == "forbidden"


# --- blocking ---------------------------------------------------------------------------

def blocklist(st):
    bl = st.find(tag(BLOCKING, "blocklist"))
    return sorted(i.get("jid") for i in bl.findall(tag(BLOCKING, "item")))


def test_blocking_list_and_pushes(world):
    c = two_users(world)
    a1 = c.start("alice@localhost/one")
    a2 = c.start("alice@localhost/two")
    a3 = c.start("alice@localhost/three")          # never asks: gets no push
    assert blocklist(iq(c, a1, f"<blocklist xmlns='{BLOCKING}'/>", "b0")) == []
    iq(c, a2, f"<blocklist xmlns='{BLOCKING}'/>", "b1")
    st = iq(c, a1, f"<block xmlns='{BLOCKING}'><item jid='bob@localhost'/>"
                   f"<item jid='spam.example'/></block>", "b2", type_="set")
    assert st.get("type") == "result"
    for sid in (a1, a2):
        push = c.expect(sid, lambda s: s.tag == tag(C, "iq") and s.get("type") == "set"
                        and s.find(tag(BLOCKING, "block")) is not None)
        items = [i.get("jid") for i in push.find(tag(BLOCKING, "block"))]
        assert sorted(items) == ["bob@localhost", "spam.example"]
    c.nothing(a3, lambda s: s.find(tag(BLOCKING, "block")) is not None, wait=0.3)
    assert blocklist(iq(c, a3, f"<blocklist xmlns='{BLOCKING}'/>", "b3")) == ["bob@localhost", "spam.example"]
    st = iq(c, a1, f"<block xmlns='{BLOCKING}'/>", "b4", type_="set")
    assert error_cond(st) == "bad-request"
    st = iq(c, a1, f"<block xmlns='{BLOCKING}'><item jid='@@bad'/></block>", "b5", type_="set")
    assert error_cond(st) == "jid-malformed"
    st = iq(c, a1, f"<unblock xmlns='{BLOCKING}'><item jid='spam.example'/></unblock>", "b6", type_="set")
    assert st.get("type") == "result"
    assert blocklist(iq(c, a1, f"<blocklist xmlns='{BLOCKING}'/>", "b7")) == ["bob@localhost"]
    st = iq(c, a1, f"<unblock xmlns='{BLOCKING}'/>", "b8", type_="set")
    assert st.get("type") == "result"
    push = c.expect(a2, lambda s: s.find(tag(BLOCKING, "unblock")) is not None and len(s.find(tag(BLOCKING, "unblock"))) == 0)
    assert blocklist(iq(c, a1, f"<blocklist xmlns='{BLOCKING}'/>", "b9")) == []


def test_blocking_enforcement(world):
    c = two_users(world)
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    subscribe_both(c, a, b)
    c.drain()
    iq(c, a, f"<block xmlns='{BLOCKING}'><item jid='bob@localhost'/></block>", "k1", type_="set")
    # Bob sees Alice go offline (XEP-0191 3.3).
    c.expect(b, is_("presence", type="unavailable", from_="alice@localhost/pc"))
    # Inbound: messages and iqs bounce with service-unavailable, presence vanishes.
    c.send(b, "<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>")
    st = c.expect(b, is_("message", id="m1"))
    assert st.get("type") == "error" and error_cond(st) == "service-unavailable"
    c.send(b, "<message to='alice@localhost/pc' type='chat' id='m2'><body>hi</body></message>")
    assert error_cond(c.expect(b, is_("message", id="m2"))) == "service-unavailable"
    st = iq(c, b, f"<vCard xmlns='{VCARD}'/>", "q1", to="alice@localhost")
    assert error_cond(st) == "service-unavailable"
    c.send(b, "<presence><status>back</status></presence>")
    c.nothing(a, lambda s: s.get("from", "").startswith("bob@"), wait=0.5)
    # Outbound: not-acceptable with the blocked condition.
    c.send(a, "<message to='bob@localhost' type='chat' id='m3'><body>yo</body></message>")
    st = c.expect(a, is_("message", id="m3"))
    err = st.find(tag(C, "error"))
    assert st.get("type") == "error" and error_cond(st) == "not-acceptable"
    assert err.find(tag("urn:xmpp:blocking:errors", "blocked")) is not None
    c.nothing(b, is_("message", id="m3"), wait=0.3)
    # Unblock: Bob gets Alice's presence again; messages flow.
    iq(c, a, f"<unblock xmlns='{BLOCKING}'><item jid='bob@localhost'/></unblock>", "k2", type_="set")
    c.expect(b, lambda s: s.tag == tag(C, "presence") and s.get("from") == "alice@localhost/pc"
             and s.get("type") is None)
    c.send(b, "<message to='alice@localhost' type='chat' id='m4'><body>again</body></message>")
    c.expect(a, is_("message", id="m4"))


def test_blocking_domain_item(world):
    c = two_users(world)
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    iq(c, a, f"<block xmlns='{BLOCKING}'><item jid='localhost'/></block>", "k1", type_="set")
    # The domain item blocks every user at it, never the server itself.
    c.send(b, "<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>")
    assert error_cond(c.expect(b, is_("message", id="m1"))) == "service-unavailable"
    st = iq(c, a, "<ping xmlns='urn:xmpp:ping'/>", "p1", to="localhost")
    assert st.get("type") == "result"


# --- carbons -----------------------------------------------------------------------------

def forwarded(st, direction):
    d = st.find(tag(CARBONS, direction))
    return None if d is None else d.find(tag(FORWARD, "forwarded")).find(tag(C, "message"))


def test_carbons(world):
    c = two_users(world)
    a1 = world.online(c, "alice@localhost/one", priority=1)
    a2 = world.online(c, "alice@localhost/two", priority=5)
    b = world.online(c, "bob@localhost/pc")
    st = iq(c, a1, f"<enable xmlns='{CARBONS}'/>", "c1", type_="set")
    assert st.get("type") == "result"
    assert iq(c, a1, f"<enable xmlns='{CARBONS}'/>", "c2", type_="set").get("type") == "result"
    c.drain()
    # Inbound to the other full JID.
    c.send(b, "<message to='alice@localhost/two' type='chat' id='m1'><body>to two</body></message>")
    c.expect(a2, is_("message", id="m1"))
    st = c.expect(a1, lambda s: s.tag == tag(C, "message") and s.find(tag(CARBONS, "received")) is not None)
    assert st.get("from") == "alice@localhost" and st.get("to") == "alice@localhost/one"
    assert forwarded(st, "received").get("id") == "m1"
    # Inbound to the bare JID: 'two' has the higher priority; 'one' gets a carbon.
    c.send(b, "<message to='alice@localhost' type='chat' id='m2'><body>bare</body></message>")
    c.expect(a2, is_("message", id="m2"))
    st = c.expect(a1, lambda s: s.find(tag(CARBONS, "received")) is not None)
    assert forwarded(st, "received").get("id") == "m2"
    # Outbound from 'two': 'one' gets a sent carbon; 'two' gets none.
    c.send(a2, "<message to='bob@localhost' type='chat' id='m3'><body>out</body></message>")
    c.expect(b, is_("message", id="m3"))
    st = c.expect(a1, lambda s: s.find(tag(CARBONS, "sent")) is not None)
    fw = forwarded(st, "sent")
    assert fw.get("id") == "m3" and fw.get("from") == "alice@localhost/two"
    c.nothing(a2, lambda s: s.find(tag(CARBONS, "sent")) is not None, wait=0.3)
    # Private, no-copy, headline: no carbons; <private/> is stripped for the recipient.
    c.send(b, f"<message to='alice@localhost/two' type='chat' id='m4'><body>p</body>"
              f"<private xmlns='{CARBONS}'/></message>")
    st = c.expect(a2, is_("message", id="m4"))
    assert st.find(tag(CARBONS, "private")) is None
    c.send(a2, "<message to='bob@localhost' type='chat' id='m5'><body>n</body>"
               "<no-copy xmlns='urn:xmpp:hints'/></message>")
    c.send(b, "<message to='alice@localhost/two' type='headline' id='m6'><body>h</body></message>")
    c.expect(a2, is_("message", id="m6"))
    c.nothing(a1, lambda s: s.find(tag(CARBONS, "received")) is not None
              or s.find(tag(CARBONS, "sent")) is not None, wait=0.5)
    # Disabled: no more carbons.
    assert iq(c, a1, f"<disable xmlns='{CARBONS}'/>", "c3", type_="set").get("type") == "result"
    c.send(b, "<message to='alice@localhost/two' type='chat' id='m7'><body>x</body></message>")
    c.expect(a2, is_("message", id="m7"))
    c.nothing(a1, lambda s: s.find(tag(CARBONS, "received")) is not None, wait=0.4)
