"""weft-muc (XEP-0045 and around it) driven by independent clients: raw XMPP
streams through c2s whose exact bytes are matched (status codes, errors,
forms), and slixmpp's xep_0045 plugin for the ordinary use cases. Every
effect is checked at another occupant's client, not in the service's log.
"""
import asyncio
import re
import time

import pytest

from muc_env import SERVICE, MucServer, codes, join, room, stanza
from test_sm_iq import make_certs

MUC = "http://jabber.org/protocol/muc"
OWNER = MUC + "#owner"
ADMIN = MUC + "#admin"


@pytest.fixture
def srv(tmp_path):
    make_certs(tmp_path)
    s = MucServer(tmp_path).start(muc_extra="<limits><messages-per-second>50</messages-per-second></limits>")
    yield s
    s.close()


def instant(c, rm, nick, **cfg):
    """Creates rm as c (reserved room, then the form submitted with cfg)."""
    out = join(c, rm, nick)
    assert 201 in codes(out), out
    fields = "".join(f"<field var='muc#roomconfig_{k}'><value>{v}</value></field>" for k, v in cfg.items())
    c.send(f"<iq type='set' to='{room(rm)}' id='cfg-{rm}'><query xmlns='{OWNER}'>"
           f"<x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>")
    r = stanza(c, f"id='cfg-{rm}'")
    assert "type='result'" in r, r
    return out


def iq(c, to, body, type_="get", id_="q"):
    c.send(f"<iq type='{type_}' to='{to}' id='{id_}'>{body}</iq>")
    return stanza(c, f"<iq[^>]*id='{id_}'")


def error_of(st):
    m = re.search(r"<error[^>]*type='(\w+)'[^>]*><([a-z-]+)", st)
    return m and (m.group(2), m.group(1))


def test_create_join_chat_leave(srv):
    a, b = srv.user("alice"), srv.user("bob")
    out = join(a, "r", "Alice")
    self_p = re.search(r"<presence[^>]*/Alice'[\s\S]*?</presence>", out).group(0)
    assert codes(self_p) == [110, 170, 201]
    assert "affiliation='owner' role='moderator'" in self_p
    # A locked (reserved) room is not there for others until configured.
    b.send(f"<presence to='{room('r')}/Bob'><x xmlns='{MUC}'/></presence>")
    assert error_of(stanza(b, "type='error'")) == ("item-not-found", "cancel")
    a.send(f"<iq type='set' to='{room('r')}' id='i1'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>")
    assert "type='result'" in stanza(a, "id='i1'")
    out = join(b, "r", "Bob")
    assert "/Alice'" in out and "affiliation='owner' role='moderator'" in out
    assert codes(re.search(r"<presence[^>]*/Bob'[\s\S]*?</presence>", out).group(0)) == [110, 170]
    # Semi-anonymous by default: Bob does not see Alice's real JID, Alice (moderator) sees Bob's.
    assert "alice@localhost" not in out
    assert "jid='bob@localhost/r'" in stanza(a, "<presence[^>]*/Bob'")
    b.send(f"<message to='{room('r')}' type='groupchat' id='m1'><body>hi all</body></message>")
    for c in (a, b):
        m = stanza(c, "hi all")
        assert f"from='{room('r')}/Bob'" in m and "<stanza-id xmlns='urn:xmpp:sid:0'" in m
        assert "<occupant-id xmlns='urn:xmpp:occupant-id:0'" in m
    b.send(f"<presence to='{room('r')}/Bob' type='unavailable'><status>bye</status></presence>")
    gone = stanza(a, "type='unavailable'")
    assert "/Bob'" in gone and "<status>bye</status>" in gone and "role='none'" in gone
    assert codes(stanza(b, "type='unavailable'")) == [110]


def test_legacy_join_creates_instant_room(srv):
    """XEP-0045 7.2.1: a presence without the MUC extension (groupchat 1.0)
    enters, and creates an unlocked room at once."""
    a, b = srv.user("alice"), srv.user("bob")
    out = join(a, "old", "A", muc=False)
    assert 201 in codes(out)
    out = join(b, "old", "B", muc=False)
    assert "/A'" in out and 110 in codes(out)


def test_unconfigured_room_owner_talks_and_lock_times_out(tmp_path):
    """Dino 0.4 creates a room by joining it with the MUC extension and never
    sends the configuration form. Its owner may talk in it at once, and after
    lock-timeout the room opens to others with its default configuration."""
    make_certs(tmp_path)
    s = MucServer(tmp_path).start(muc_extra="<lock-timeout>1.5</lock-timeout>")
    try:
        a, b = s.user("alice"), s.user("bob")
        assert 201 in codes(join(a, "dino", "Alice"))
        a.send(f"<message to='{room('dino')}' type='groupchat' id='early'><body>before any config</body></message>")
        echo = stanza(a, "id='early'")
        assert "type='error'" not in echo and f"from='{room('dino')}/Alice'" in echo, echo
        # Still locked for others: not there.
        b.send(f"<presence to='{room('dino')}/Bob'><x xmlns='{MUC}'/></presence>")
        assert error_of(stanza(b, "type='error'")) == ("item-not-found", "cancel")
        b.send(f"<message to='{room('dino')}' type='groupchat' id='out'><body>x</body></message>")
        assert error_of(stanza(b, "id='out'")) == ("item-not-found", "cancel")
        time.sleep(1.7)
        out = join(b, "dino", "Bob")
        assert "/Alice'" in out and "before any config" in out, out   # in, with the history
        assert "/Bob'" in stanza(a, "<presence[^>]*/Bob'")
        b.send(f"<message to='{room('dino')}' type='groupchat' id='m2'><body>after the lock</body></message>")
        assert f"from='{room('dino')}/Bob'" in stanza(a, "after the lock")
        assert "event=room-unlocked room=dino@" in s.log("muc")
    finally:
        s.close()


def test_nick_conflict_and_change(srv):
    a, b = srv.user("alice"), srv.user("bob")
    instant(a, "n", "Alice")
    b.send(f"<presence to='{room('n')}/Alice'><x xmlns='{MUC}'/></presence>")
    e = stanza(b, "type='error'")
    assert error_of(e) == ("conflict", "cancel") and f"from='{room('n')}/Alice'" in e
    join(b, "n", "Bob")
    stanza(a, "<presence[^>]*/Bob'")
    b.send(f"<presence to='{room('n')}/Alice'/>")
    assert error_of(stanza(b, "type='error'")) == ("conflict", "cancel")
    b.send(f"<presence to='{room('n')}/Robert'/>")
    un = stanza(a, "type='unavailable'")
    assert "/Bob'" in un and "nick='Robert'" in un and codes(un) == [303]
    assert "/Robert'" in stanza(a, "<presence[^>]*/Robert'")
    un = stanza(b, "type='unavailable'")
    assert codes(un) == [110, 303]
    assert codes(stanza(b, "<presence[^>]*/Robert'")) == [110]


def test_history_on_join(srv):
    a, b = srv.user("alice"), srv.user("bob")
    instant(a, "h", "Alice")
    for i in range(5):
        a.send(f"<message to='{room('h')}' type='groupchat' id='h{i}'><body>msg {i}</body></message>")
        stanza(a, f"msg {i}")
    out = join(b, "h", "Bob", extra="<history maxstanzas='2'/>")
    got = re.findall(r"<body>(msg \d)</body>", out)
    assert got == ["msg 3", "msg 4"], out
    assert out.count("<delay xmlns='urn:xmpp:delay'") == 2
    out = join(srv.user("carol"), "h", "Carol", extra="<history maxstanzas='0'/>")
    assert "<body>" not in out
    out = join(srv.user("dave"), "h", "Dave", extra="<history seconds='3600'/>")
    assert re.findall(r"<body>(msg \d)</body>", out) == [f"msg {i}" for i in range(5)]
    out = join(srv.user("erin"), "h", "Erin", extra="<history since='2999-01-01T00:00:00Z'/>")
    assert "<body>" not in out
    out = join(srv.user("frank"), "h", "Frank", extra="<history maxchars='1'/>")
    assert "<body>" not in out


def test_subject_and_private_messages(srv):
    a, b = srv.user("alice"), srv.user("bob")
    instant(a, "s", "Alice")
    join(b, "s", "Bob")
    b.send(f"<message to='{room('s')}' type='groupchat' id='s1'><subject>mine</subject></message>")
    assert error_of(stanza(b, "type='error'")) == ("forbidden", "auth")
    a.send(f"<message to='{room('s')}' type='groupchat' id='s2'><subject>Today: tests</subject></message>")
    m = stanza(b, "Today: tests")
    assert f"from='{room('s')}/Alice'" in m
    out = join(srv.user("carol"), "s", "Carol")
    assert "<subject>Today: tests</subject>" in out
    b.send(f"<message to='{room('s')}/Alice' type='chat' id='p1'><body>psst</body></message>")
    pm = stanza(a, "psst")
    assert f"from='{room('s')}/Bob'" in pm and "http://jabber.org/protocol/muc#user" in pm
    b.send(f"<message to='{room('s')}/Nobody' type='chat' id='p2'><body>x</body></message>")
    assert error_of(stanza(b, "id='p2'")) == ("item-not-found", "cancel")
    # Not an occupant: no groupchat.
    e = srv.user("eve")
    e.send(f"<message to='{room('s')}' type='groupchat' id='e1'><body>spam</body></message>")
    assert error_of(stanza(e, "id='e1'")) == ("not-acceptable", "cancel")


def test_password_members_only_and_ban(srv):
    a, b, e = srv.user("alice"), srv.user("bob"), srv.user("eve")
    instant(a, "p", "Alice", passwordprotectedroom=1, roomsecret="s3cret")
    b.send(f"<presence to='{room('p')}/Bob'><x xmlns='{MUC}'/></presence>")
    assert error_of(stanza(b, "type='error'")) == ("not-authorized", "auth")
    out = join(b, "p", "Bob", extra="<password>s3cret</password>")
    assert 110 in codes(out)
    instant(a, "m", "Alice", membersonly=1)
    e.send(f"<presence to='{room('m')}/Eve'><x xmlns='{MUC}'/></presence>")
    assert error_of(stanza(e, "type='error'")) == ("registration-required", "auth")
    r = iq(a, room("m"), f"<query xmlns='{ADMIN}'><item affiliation='member' jid='eve@localhost'/></query>", "set")
    assert "type='result'" in r
    join(e, "m", "Eve")
    r = iq(a, room("m"), f"<query xmlns='{ADMIN}'><item affiliation='member'/></query>", id_="l1")
    assert "jid='eve@localhost'" in r
    # Ban: Eve is removed with 301, and cannot come back.
    r = iq(a, room("m"), f"<query xmlns='{ADMIN}'><item affiliation='outcast' jid='eve@localhost'>"
           f"<reason>spam</reason></item></query>", "set", "b1")
    assert "type='result'" in r
    un = stanza(e, "type='unavailable'")
    assert codes(un) == [110, 301] and "<reason>spam</reason>" in un and "affiliation='outcast'" in un
    e.send(f"<presence to='{room('m')}/Eve2'><x xmlns='{MUC}'/></presence>")
    assert error_of(stanza(e, "type='error'")) == ("forbidden", "auth")
    r = iq(a, room("m"), f"<query xmlns='{ADMIN}'><item affiliation='outcast'/></query>", id_="l2")
    assert "jid='eve@localhost'" in r and "<reason>spam</reason>" in r


def test_kick_voice_and_moderation(srv):
    a, b, c = srv.user("alice"), srv.user("bob"), srv.user("carol")
    instant(a, "k", "Alice", moderatedroom=1)
    out = join(b, "k", "Bob")
    assert "role='visitor'" in re.search(r"<presence[^>]*/Bob'[\s\S]*?</presence>", out).group(0)
    b.send(f"<message to='{room('k')}' type='groupchat' id='v1'><body>can I?</body></message>")
    assert error_of(stanza(b, "id='v1'")) == ("forbidden", "auth")
    # Voice request (8.6): the moderator gets the form, approves it.
    b.send(f"<message to='{room('k')}' id='vr'><x xmlns='jabber:x:data' type='submit'>"
           "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
           "<field var='muc#role'><value>participant</value></field></x></message>")
    form = stanza(a, "muc#request")
    assert "muc#roomnick" in form and "<value>Bob</value>" in form
    a.send(f"<message to='{room('k')}'><x xmlns='jabber:x:data' type='submit'>"
           "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
           "<field var='muc#roomnick'><value>Bob</value></field>"
           "<field var='muc#request_allow'><value>true</value></field></x></message>")
    assert "role='participant'" in stanza(b, "<presence[^>]*/Bob'")
    b.send(f"<message to='{room('k')}' type='groupchat' id='v2'><body>now I can</body></message>")
    stanza(a, "now I can")
    # Revoke voice by the admin IQ, then kick.
    r = iq(a, room("k"), f"<query xmlns='{ADMIN}'><item nick='Bob' role='visitor'/></query>", "set", "rv")
    assert "type='result'" in r and "role='visitor'" in stanza(b, "<presence[^>]*/Bob'")
    join(c, "k", "Carol")
    r = iq(c, room("k"), f"<query xmlns='{ADMIN}'><item nick='Bob' role='none'/></query>", "set", "ck")
    assert error_of(r) == ("forbidden", "auth")
    r = iq(b, room("k"), f"<query xmlns='{ADMIN}'><item nick='Alice' role='none'/></query>", "set", "bk")
    assert error_of(r) == ("forbidden", "auth")
    r = iq(a, room("k"), f"<query xmlns='{ADMIN}'><item nick='Bob' role='none'><reason>bye</reason></item></query>",
           "set", "ak")
    assert "type='result'" in r
    un = stanza(b, "type='unavailable'")
    assert codes(un) == [110, 307] and "<actor nick='Alice'/>" in un and "<reason>bye</reason>" in un
    seen = stanza(c, "type='unavailable'")
    assert codes(seen) == [307] and "/Bob'" in seen


def test_config_form_and_disco(srv):
    a, b = srv.user("alice"), srv.user("bob")
    join(a, "c", "Alice")
    form = iq(a, room("c"), f"<query xmlns='{OWNER}'/>", id_="f1")
    for var in ("FORM_TYPE", "muc#roomconfig_roomname", "muc#roomconfig_persistentroom",
                "muc#roomconfig_membersonly", "muc#roomconfig_moderatedroom", "muc#roomconfig_whois",
                "muc#roomconfig_roomsecret", "muc#roomconfig_roomowners", "muc#roomconfig_maxusers"):
        assert f"var='{var}'" in form, var
    r = iq(b, room("c"), f"<query xmlns='{OWNER}'/>", id_="f2")
    assert error_of(r) == ("item-not-found", "cancel")      # still locked: not there for Bob
    a.send(f"<iq type='set' to='{room('c')}' id='f3'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>"
           "<field var='muc#roomconfig_roomname'><value>Coffee</value></field>"
           "<field var='muc#roomconfig_roomdesc'><value>about coffee</value></field>"
           "<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
           "<field var='muc#roomconfig_whois'><value>anyone</value></field></x></query></iq>")
    assert "type='result'" in stanza(a, "id='f3'")
    r = iq(b, room("c"), f"<query xmlns='{OWNER}'/>", id_="f4")
    assert error_of(r) == ("forbidden", "auth")
    info = iq(b, room("c"), "<query xmlns='http://jabber.org/protocol/disco#info'/>", id_="d1")
    for f in ("muc_persistent", "muc_public", "muc_open", "muc_unmoderated", "muc_unsecured",
              "muc_nonanonymous", "urn:xmpp:mam:2", "urn:xmpp:occupant-id:0"):
        assert f"var='{f}'" in info, f
    assert "name='Coffee'" in info and "muc#roominfo" in info and "<value>about coffee</value>" in info
    assert re.search(r"var='muc#roominfo_occupants'><value>1</value>", info)
    items = iq(b, SERVICE, "<query xmlns='http://jabber.org/protocol/disco#items'/>", id_="d2")
    assert f"jid='{room('c')}'" in items and "name='Coffee'" in items
    sinfo = iq(b, SERVICE, "<query xmlns='http://jabber.org/protocol/disco#info'/>", id_="d3")
    assert "category='conference'" in sinfo and f"var='{MUC}'" in sinfo
    # Non-anonymous now: 100 on entering, real JIDs for everyone.
    out = join(b, "c", "Bob")
    assert "jid='alice@localhost/r'" in out and 100 in codes(re.search(r"<presence[^>]*/Bob'[\s\S]*?</presence>", out).group(0))
    # A later change tells the occupants (104, 173 semi-anonymous again).
    a.send(f"<iq type='set' to='{room('c')}' id='f5'><query xmlns='{OWNER}'><x xmlns='jabber:x:data' type='submit'>"
           "<field var='muc#roomconfig_whois'><value>moderators</value></field></x></query></iq>")
    m = stanza(b, "code='104'")
    assert codes(m) == [104, 173]


def test_destroy_with_alternate_venue(srv):
    a, b = srv.user("alice"), srv.user("bob")
    instant(a, "d", "Alice", persistentroom=1)
    join(b, "d", "Bob")
    r = iq(b, room("d"), f"<query xmlns='{OWNER}'><destroy/></query>", "set", "x1")
    assert error_of(r) == ("forbidden", "auth")
    r = iq(a, room("d"), f"<query xmlns='{OWNER}'><destroy jid='{room('new')}'><reason>moved</reason></destroy></query>",
           "set", "x2")
    assert "type='result'" in r
    un = stanza(b, "type='unavailable'")
    assert f"<destroy jid='{room('new')}'><reason>moved</reason></destroy>" in un
    r = iq(b, room("d"), "<query xmlns='http://jabber.org/protocol/disco#info'/>", id_="x3")
    assert error_of(r) == ("item-not-found", "cancel")


def test_affiliations_lists_and_last_owner(srv):
    a, b = srv.user("alice"), srv.user("bob")
    instant(a, "a", "Alice")
    join(b, "a", "Bob")
    r = iq(b, room("a"), f"<query xmlns='{ADMIN}'><item affiliation='admin' jid='bob@localhost'/></query>", "set", "a1")
    assert error_of(r) == ("forbidden", "auth")
    r = iq(a, room("a"), f"<query xmlns='{ADMIN}'><item affiliation='admin' jid='bob@localhost'/></query>", "set", "a2")
    assert "type='result'" in r
    p = stanza(b, "<presence[^>]*/Bob'")
    assert "affiliation='admin' role='moderator'" in p
    r = iq(b, room("a"), f"<query xmlns='{ADMIN}'><item affiliation='owner'/></query>", id_="a3")
    assert "jid='alice@localhost'" in r
    r = iq(a, room("a"), f"<query xmlns='{ADMIN}'><item affiliation='none' jid='alice@localhost'/></query>", "set", "a4")
    assert error_of(r) == ("conflict", "cancel")
    r = iq(b, room("a"), f"<query xmlns='{ADMIN}'><item nick='Alice' role='none'/></query>", "set", "a5")
    assert error_of(r) == ("not-allowed", "cancel")
    r = iq(b, room("a"), f"<query xmlns='{ADMIN}'><item role='moderator'/></query>", id_="a6")
    assert "nick='Alice'" in r and "nick='Bob'" in r


def test_invitations_registration_ping(srv):
    a, b, c = srv.user("alice"), srv.user("bob"), srv.user("carol")
    instant(a, "i", "Alice", membersonly=1, allowinvites=1)
    a.send(f"<message to='{room('i')}' id='inv'><x xmlns='http://jabber.org/protocol/muc#user'>"
           "<invite to='bob@localhost'><reason>join us</reason></invite></x></message>")
    m = stanza(b, "<invite")
    assert f"from='{room('i')}'" in m and "from='alice@localhost/r'" in m and "join us" in m
    out = join(b, "i", "Bob")                         # the invitation made Bob a member
    assert "affiliation='member'" in re.search(r"<presence[^>]*/Bob'[\s\S]*?</presence>", out).group(0)
    c.send(f"<message to='{room('i')}'><x xmlns='http://jabber.org/protocol/muc#user'>"
           "<decline to='alice@localhost/r'><reason>busy</reason></decline></x></message>")
    d = stanza(a, "<decline")
    assert "from='carol@localhost/r'" in d and "busy" in d
    # XEP-0249 direct invitation passes through the server untouched.
    a.send("<message to='carol@localhost'><x xmlns='jabber:x:conference' jid='%s'/></message>" % room("i"))
    assert "jabber:x:conference" in stanza(c, "jabber:x:conference")
    # Registered nickname (7.10).
    instant(a, "reg", "Alice")
    f = iq(b, room("reg"), "<query xmlns='jabber:iq:register'/>", id_="g1")
    assert "muc#register_roomnick" in f
    r = iq(b, room("reg"), "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
           "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>"
           "<field var='muc#register_roomnick'><value>Bobby</value></field></x></query>", "set", "g2")
    assert "type='result'" in r
    r = iq(b, room("reg"), "<query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/>", id_="g3")
    assert "name='Bobby'" in r
    c.send(f"<presence to='{room('reg')}/Bobby'><x xmlns='{MUC}'/></presence>")
    assert error_of(stanza(c, "type='error'")) == ("conflict", "cancel")
    # Self-ping (XEP-0410): ok for the occupant, not-acceptable for others.
    r = iq(a, f"{room('reg')}/Alice", "<ping xmlns='urn:xmpp:ping'/>", id_="pg1")
    assert "type='result'" in r
    r = iq(c, f"{room('reg')}/Alice", "<ping xmlns='urn:xmpp:ping'/>", id_="pg2")
    assert error_of(r) == ("not-acceptable", "cancel")


def test_mam_and_history_agree(srv):
    a, b = srv.user("alice"), srv.user("bob")
    instant(a, "mam", "Alice")
    ids = []
    for i in range(7):
        a.send(f"<message to='{room('mam')}' type='groupchat' id='x{i}'><body>arch {i}</body></message>")
        ids.append(re.search(r"stanza-id[^>]*id='([0-9a-f]+)'", stanza(a, f"arch {i}")).group(1))
    out = join(b, "mam", "Bob", extra="<history maxstanzas='3'/>")
    assert re.findall(r"stanza-id[^>]*id='([0-9a-f]+)'", out) == ids[4:]
    b.send(f"<iq type='set' to='{room('mam')}' id='mq'><query xmlns='urn:xmpp:mam:2' queryid='q1'>"
           "<set xmlns='http://jabber.org/protocol/rsm'><max>5</max></set></query></iq>")
    got = b.read_until(r"<iq[^>]*id='mq'[\s\S]*?</iq>")
    assert re.findall(r"<result xmlns='urn:xmpp:mam:2' queryid='q1' id='([0-9a-f]+)'", got) == ids[:5]
    assert "complete='true'" not in got and f"<last>{ids[4]}</last>" in got
    b.send(f"<iq type='set' to='{room('mam')}' id='mq2'><query xmlns='urn:xmpp:mam:2'>"
           f"<set xmlns='http://jabber.org/protocol/rsm'><after>{ids[4]}</after></set></query></iq>")
    got = b.read_until(r"<iq[^>]*id='mq2'[\s\S]*?</iq>")
    assert re.findall(r"<result xmlns='urn:xmpp:mam:2' id='([0-9a-f]+)'", got) == ids[5:]
    assert "complete='true'" in got and "<body>arch 6</body>" in got
    b.send(f"<iq type='set' to='{room('mam')}' id='mq3'><query xmlns='urn:xmpp:mam:2'>"
           "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set></query></iq>")
    got = b.read_until(r"<iq[^>]*id='mq3'[\s\S]*?</iq>")
    assert re.findall(r"<result xmlns='urn:xmpp:mam:2' id='([0-9a-f]+)'", got) == ids[5:]


def test_limits(tmp_path):
    make_certs(tmp_path)
    s = MucServer(tmp_path).start(muc_extra="<limits><rooms-per-user>1</rooms-per-user><occupants>2</occupants>"
                                            "<messages-per-second>2</messages-per-second>"
                                            "<stanza-bytes>2K</stanza-bytes></limits>")
    try:
        a, b, c = s.user("alice"), s.user("bob"), s.user("carol")
        instant(a, "one", "Alice")
        a.send(f"<presence to='{room('two')}/Alice'><x xmlns='{MUC}'/></presence>")
        assert error_of(stanza(a, "type='error'")) == ("resource-constraint", "wait")
        join(b, "one", "Bob")
        c.send(f"<presence to='{room('one')}/Carol'><x xmlns='{MUC}'/></presence>")
        assert error_of(stanza(c, "type='error'")) == ("service-unavailable", "wait")
        b.send(f"<message to='{room('one')}' type='groupchat' id='big'><body>{'x' * 3000}</body></message>")
        assert error_of(stanza(b, "id='big'")) == ("policy-violation", "modify")
        for i in range(8):
            b.send(f"<message to='{room('one')}' type='groupchat' id='f{i}'><body>flood {i}</body></message>")
        errs = 0
        for i in range(8):
            st = stanza(b, f"id='f{i}'")
            errs += "resource-constraint" in st
        assert 3 <= errs <= 5, errs                  # a burst of 4, then 2/s
        # The service keeps serving.
        time.sleep(1.1)
        b.send(f"<message to='{room('one')}' type='groupchat' id='ok'><body>calm</body></message>")
        assert "calm" in stanza(a, "calm")
    finally:
        s.close()


def test_slixmpp_xep0045(srv):
    """slixmpp's own XEP-0045 code joins, reads the roster of occupants,
    chats and changes the subject."""
    slixmpp = pytest.importorskip("slixmpp")
    from test_sm_iq import connect, close

    for u in ("alice", "bob"):
        srv.register(u, "secret-pw")

    async def go():
        x = await connect(srv, "alice@localhost")
        y = await connect(srv, "bob@localhost")
        for c in (x, y):
            c.register_plugin("xep_0045")
        got = []
        y.add_event_handler("groupchat_message", lambda m: got.append((str(m["from"]), m["body"])))
        subjects = []
        y.add_event_handler("groupchat_subject", lambda m: subjects.append(m["subject"]))
        await x["xep_0045"].join_muc_wait(room("sx"), "Alice", maxstanzas=0, timeout=10)
        form = await x["xep_0045"].get_room_config(room("sx"))
        await x["xep_0045"].set_room_config(room("sx"), form.__class__())
        await y["xep_0045"].join_muc_wait(room("sx"), "Bob", maxstanzas=0, timeout=10)
        assert set(y["xep_0045"].get_roster(room("sx"))) == {"Alice", "Bob"}
        x.send_message(mto=room("sx"), mbody="from slixmpp", mtype="groupchat")
        x["xep_0045"].set_subject(room("sx"), "sx subject")
        for _ in range(100):
            if got and subjects and subjects[-1] == "sx subject":
                break
            await asyncio.sleep(0.05)
        assert (f"{room('sx')}/Alice", "from slixmpp") in got
        assert subjects[-1] == "sx subject"
        await close(x, y)

    asyncio.run(asyncio.wait_for(go(), 60))


def test_partitioned_instances(tmp_path):
    """Two weft-muc instances share conference.localhost (a <partition> in
    router.xml): the router spreads rooms between them by room JID, users
    in rooms of both chat as usual, and killing one instance leaves the
    rooms of the other untouched."""
    make_certs(tmp_path)
    s = MucServer(tmp_path).start(instances=2)
    try:
        a, b = s.user("alice"), s.user("bob")
        names = [f"part{i}" for i in range(12)]
        for n in names:
            join(a, n, "Alice", muc=False)
            join(b, n, "Bob")
            stanza(a, "<presence[^>]*/Bob'")
        where = {n: [m for m in ("muc1", "muc2") if f"room-created room={room(n)} " in s.log(m)] for n in names}
        assert all(len(v) == 1 for v in where.values()), where
        on1 = [n for n in names if where[n] == ["muc1"]]
        on2 = [n for n in names if where[n] == ["muc2"]]
        assert on1 and on2, where
        for n in names:
            b.send(f"<message to='{room(n)}' type='groupchat'><body>in {n}</body></message>")
            assert f"from='{room(n)}/Bob'" in stanza(a, f"in {n}<")
        s.mucs["muc2"].kill9()
        for n in on1:
            b.send(f"<message to='{room(n)}' type='groupchat'><body>still {n}</body></message>")
            stanza(a, f"still {n}<")
        s.start_muc("muc2")
        for n in on2:
            a.send(f"<iq type='get' to='{room(n)}/Alice' id='p-{n}'><ping xmlns='urn:xmpp:ping'/></iq>")
            assert "type='result'" in stanza(a, f"id='p-{n}'")
    finally:
        s.close()


def test_iq_between_occupants(srv):
    """XEP-0045 7.2: an IQ to room/nick goes to that occupant from the
    asker's room JID and its answer comes back from the target's room JID
    under the asker's id; the asker's real JID is not shown."""
    a, b, e = srv.user("alice"), srv.user("bob"), srv.user("eve")
    instant(a, "q", "Alice")
    join(b, "q", "Bob")
    b.send(f"<iq type='get' to='{room('q')}/Alice' id='v1'><query xmlns='jabber:iq:version'/></iq>")
    req = stanza(a, "jabber:iq:version")
    assert f"from='{room('q')}/Bob'" in req and "bob@localhost" not in req
    rid = re.search(r"id='([^']+)'", req).group(1)
    assert rid != "v1"
    a.send(f"<iq type='result' to='{room('q')}/Bob' id='{rid}'><query xmlns='jabber:iq:version'>"
           "<name>raw</name><version>1</version></query></iq>")
    res = stanza(b, "id='v1'")
    assert "type='result'" in res and f"from='{room('q')}/Alice'" in res and "<name>raw</name>" in res
    # A ping to another occupant goes to it too (XEP-0410); a self-ping stays with the room.
    b.send(f"<iq type='get' to='{room('q')}/Alice' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    req = stanza(a, "urn:xmpp:ping")
    rid = re.search(r"id='([^']+)'", req).group(1)
    a.send(f"<iq type='error' to='{room('q')}/Bob' id='{rid}'><ping xmlns='urn:xmpp:ping'/>"
           "<error type='cancel'><feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    assert error_of(stanza(b, "id='p1'")) == ("feature-not-implemented", "cancel")
    r = iq(e, f"{room('q')}/Alice", "<query xmlns='jabber:iq:version'/>", id_="v2")
    assert error_of(r) == ("not-acceptable", "cancel")
    r = iq(b, f"{room('q')}/Nobody", "<query xmlns='jabber:iq:version'/>", id_="v3")
    assert error_of(r) == ("item-not-found", "cancel")


def drain(c, t=0.8):
    """Everything c receives within t seconds."""
    try:
        c.read_until(r"(?!x)x", timeout=t)
    except TimeoutError:
        pass
    out, c.buf = c.buf, ""
    return out


def occupants_count(c, rm):
    info = iq(c, room(rm), "<query xmlns='http://jabber.org/protocol/disco#info'/>", id_=f"oc-{time.time()}")
    return int(re.search(r"var='muc#roominfo_occupants'><value>(\d+)</value>", info).group(1))


def test_multi_session_nick(srv):
    """Two devices of one account under one nick are one occupant (XEP-0045
    7.2.4's multi-session nick): the second gets the room (presence, its own
    with 110, history), the others see the occupant's presence again, not a
    new one; groupchat and private messages reach both devices; one device
    leaving leaves the other in the room; a nick change, a kick apply to
    every device; another account still gets conflict."""
    a1, a2 = srv.user("alice", "phone"), srv.user("alice", "desk")
    b, c = srv.user("bob"), srv.user("carol")
    instant(a1, "ms", "Alice")
    join(b, "ms", "Bob")
    stanza(a1, "<presence[^>]*/Bob'")
    for i in range(2):
        a1.send(f"<message to='{room('ms')}' type='groupchat' id='h{i}'><body>before {i}</body></message>")
        stanza(a1, f"before {i}")
        stanza(b, f"before {i}")
    out = join(a2, "ms", "Alice")
    assert "type='error'" not in out, out
    assert "/Bob'" in out
    own = re.search(r"<presence[^>]*/Alice'[\s\S]*?</presence>", out).group(0)
    assert codes(own) == [110, 170] and "affiliation='owner' role='moderator'" in own
    assert re.findall(r"<body>(before \d)</body>", out) == ["before 0", "before 1"]
    # The phone sees its occupant with both real JIDs; Bob sees Alice, still one occupant.
    upd = stanza(a1, "<presence[^>]*/Alice'")
    assert "type='unavailable'" not in upd and 110 in codes(upd)
    assert "jid='alice@localhost/phone'" in upd and "jid='alice@localhost/desk'" in upd
    seen = stanza(b, "<presence[^>]*/Alice'")
    assert "type='unavailable'" not in seen and "alice@localhost" not in seen
    assert occupants_count(b, "ms") == 2
    # Groupchat from either side reaches every device; a PM to the nick too.
    b.send(f"<message to='{room('ms')}' type='groupchat' id='g1'><body>to both</body></message>")
    for x in (a1, a2, b):
        assert f"from='{room('ms')}/Bob'" in stanza(x, "to both")
    a2.send(f"<message to='{room('ms')}' type='groupchat' id='g2'><body>from desk</body></message>")
    for x in (a1, a2, b):
        assert f"from='{room('ms')}/Alice'" in stanza(x, "from desk")
    b.send(f"<message to='{room('ms')}/Alice' type='chat' id='pm'><body>private</body></message>")
    for x in (a1, a2):
        assert f"from='{room('ms')}/Bob'" in stanza(x, "private")
    # Another account with the nick: conflict as before.
    c.send(f"<presence to='{room('ms')}/Alice'><x xmlns='{MUC}'/></presence>")
    assert error_of(stanza(c, "type='error'")) == ("conflict", "cancel")
    # The desk leaves: it alone is told (110); Alice stays for Bob and the phone.
    a2.send(f"<presence to='{room('ms')}/Alice' type='unavailable'/>")
    un = stanza(a2, "type='unavailable'")
    assert codes(un) == [110]
    got = drain(b)
    assert f"from='{room('ms')}/Alice'" in got and "type='unavailable'" not in got, got
    assert occupants_count(b, "ms") == 1 + 1
    b.send(f"<message to='{room('ms')}' type='groupchat' id='g3'><body>after desk left</body></message>")
    stanza(a1, "after desk left")
    assert "after desk left" not in drain(a2)
    # Bob on two devices: a nick change from one renames both, a kick removes both.
    b2 = srv.user("bob", "tablet")
    join(b2, "ms", "Bob")
    stanza(a1, "<presence[^>]*/Bob'")
    drain(b)
    b.send(f"<presence to='{room('ms')}/Robert'/>")
    for x in (b, b2):
        un = stanza(x, "type='unavailable'")
        assert codes(un) == [110, 303] and "nick='Robert'" in un
        assert 110 in codes(stanza(x, "<presence[^>]*/Robert'"))
    r = iq(a1, room("ms"), f"<query xmlns='{ADMIN}'><item nick='Robert' role='none'/></query>", "set", "kick")
    assert "type='result'" in r
    for x in (b, b2):
        assert codes(stanza(x, "type='unavailable'")) == [110, 307]
    assert occupants_count(a1, "ms") == 1


def test_multi_session_limit_and_restart(tmp_path):
    """limits.sessions-per-nick 1 keeps the old rule (a second device gets
    conflict); with the default, both sessions of an occupant are stored and
    come back after a kill -9: both still get the room's messages, and one
    leaving after the restart leaves the other in."""
    make_certs(tmp_path)
    s = MucServer(tmp_path).start(muc_extra="<limits><sessions-per-nick>1</sessions-per-nick></limits>")
    try:
        a1, a2 = s.user("alice", "phone"), s.user("alice", "desk")
        instant(a1, "one", "Alice")
        a2.send(f"<presence to='{room('one')}/Alice'><x xmlns='{MUC}'/></presence>")
        assert error_of(stanza(a2, "type='error'")) == ("conflict", "cancel")
    finally:
        s.close()
    tmp2 = tmp_path / "second"
    tmp2.mkdir()
    make_certs(tmp2)
    s = MucServer(tmp2).start()
    try:
        a1, a2, b = s.user("alice", "phone"), s.user("alice", "desk"), s.user("bob")
        instant(a1, "keep", "Alice", persistentroom=1)
        join(a2, "keep", "Alice")
        join(b, "keep", "Bob")
        s.mucs["muc"].kill9()
        s.start_muc("muc")
        assert "occupants=2 sessions=3" in s.log("muc"), s.log("muc")[-2000:]
        for x, id_ in ((a1, "p1"), (a2, "p2")):
            x.send(f"<iq type='get' to='{room('keep')}/Alice' id='{id_}'><ping xmlns='urn:xmpp:ping'/></iq>")
            assert "type='result'" in stanza(x, f"id='{id_}'")
        b.send(f"<message to='{room('keep')}' type='groupchat' id='r1'><body>after restart</body></message>")
        for x in (a1, a2):
            stanza(x, "after restart")
        a1.send(f"<presence to='{room('keep')}/Alice' type='unavailable'/>")
        assert codes(stanza(a1, "type='unavailable'")) == [110]
        got = drain(b)
        assert "type='unavailable'" not in got, got
        b.send(f"<message to='{room('keep')}' type='groupchat' id='r2'><body>desk only</body></message>")
        stanza(a2, "desk only")
    finally:
        s.close()


def test_mam_with_occupant(srv):
    """XEP-0313 on a room: 'with' = room/nick returns that occupant's
    messages only, paged with RSM; the room's own JID filters nothing; a
    nick nobody used gives an empty, complete page."""
    a, b = srv.user("alice"), srv.user("bob")
    instant(a, "mw", "Alice")
    join(b, "mw", "Bob")
    ids = {"Alice": [], "Bob": []}
    for i in range(6):
        who, c = (("Alice", a), ("Bob", b))[i % 2]
        c.send(f"<message to='{room('mw')}' type='groupchat' id='w{i}'><body>w{i} {who}</body></message>")
        ids[who].append(re.search(r"stanza-id[^>]*id='([0-9a-f]+)'", stanza(c, f"w{i} {who}")).group(1))

    def query(with_, rsm="", id_="mq"):
        form = (f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                f"<value>urn:xmpp:mam:2</value></field><field var='with'><value>{with_}</value></field></x>")
        b.send(f"<iq type='set' to='{room('mw')}' id='{id_}'><query xmlns='urn:xmpp:mam:2'>{form}{rsm}</query></iq>")
        got = b.read_until(rf"<iq[^>]*id='{id_}'[\s\S]*?</iq>")
        assert "type='result'" in got, got
        return re.findall(r"<result xmlns='urn:xmpp:mam:2' id='([0-9a-f]+)'", got), got

    got, raw = query(f"{room('mw')}/Bob", id_="q1")
    assert got == ids["Bob"] and "complete='true'" in raw and "Alice</body>" not in raw
    got, raw = query(f"{room('mw')}/Alice", "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set>", "q2")
    assert got == ids["Alice"][:2] and "complete='true'" not in raw
    got, raw = query(f"{room('mw')}/Alice",
                     f"<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>{ids['Alice'][1]}</after></set>",
                     "q3")
    assert got == ids["Alice"][2:] and "complete='true'" in raw
    got, raw = query(f"{room('mw')}/Alice", "<set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set>",
                     "q4")
    assert got == ids["Alice"][2:]
    got, _ = query(room("mw"), id_="q5")
    assert len(got) == 6
    got, raw = query(f"{room('mw')}/Nobody", id_="q6")
    assert got == [] and "complete='true'" in raw


def test_muc_metrics(tmp_path):
    """weft-muc serves Prometheus metrics at metrics.listen: the exposition
    is valid (test_metrics' strict parser), and rooms, occupants, sessions, stanzas and MAM queries move
    as clients join (two devices under one nick) and chat."""
    from conftest import free_port
    from test_metrics import scrape, total, value

    make_certs(tmp_path)
    port = free_port()
    s = MucServer(tmp_path).start(muc_extra=f"<metrics><listen>127.0.0.1:{port}</listen></metrics>")
    try:
        m0 = scrape(port)
        assert value(m0, "weft_muc_router_link_up") == 1
        assert total(m0, "weft_muc_occupants") == 0 and total(m0, "weft_muc_sessions") == 0
        msg_in0 = value(m0, "weft_muc_stanzas_total", direction="in", kind="message")
        a1, a2, b = s.user("alice", "phone"), s.user("alice", "desk"), s.user("bob")
        instant(a1, "met", "Alice")
        join(a2, "met", "Alice")
        join(b, "met", "Bob")
        for i in range(3):
            b.send(f"<message to='{room('met')}' type='groupchat' id='m{i}'><body>metric {i}</body></message>")
            for x in (a1, a2, b):
                stanza(x, f"metric {i}")
        b.send(f"<iq type='set' to='{room('met')}' id='mq'><query xmlns='urn:xmpp:mam:2'/></iq>")
        b.read_until(r"<iq[^>]*id='mq'[\s\S]*?</iq>")
        m1 = scrape(port)
        assert value(m1, "weft_muc_rooms", kind="temporary") == 1
        assert value(m1, "weft_muc_occupants") == 2 and value(m1, "weft_muc_sessions") == 3
        assert value(m1, "weft_muc_stanzas_total", direction="in", kind="message") - msg_in0 >= 3
        assert value(m1, "weft_muc_stanzas_total", direction="out", kind="message") >= 9
        assert value(m1, "weft_muc_mam_queries_total") == 1
        b.send(f"<presence to='{room('met')}/Bob' type='unavailable'/>")
        stanza(b, "type='unavailable'")
        m2 = scrape(port)
        assert value(m2, "weft_muc_occupants") == 1 and value(m2, "weft_muc_sessions") == 2
    finally:
        s.close()



def test_slixmpp_two_devices_one_nick(srv):
    """slixmpp's XEP-0045 code on two resources of one account joins one
    nick twice (the second join succeeds instead of a conflict); the other
    user's roster of the room has one Alice; a message reaches both
    devices; a MAM query with 'with' through slixmpp's own form gets only
    that occupant's messages."""
    pytest.importorskip("slixmpp")
    from test_sm_iq import connect, close

    for u in ("alice", "bob"):
        srv.register(u, "secret-pw")

    async def go():
        phone = await connect(srv, "alice@localhost/phone")
        desk = await connect(srv, "alice@localhost/desk")
        bob = await connect(srv, "bob@localhost/pc")
        for c in (phone, desk, bob):
            c.register_plugin("xep_0045")
            c.register_plugin("xep_0313")
        got = {"phone": [], "desk": []}
        phone.add_event_handler("groupchat_message", lambda m: got["phone"].append(m["body"]))
        desk.add_event_handler("groupchat_message", lambda m: got["desk"].append(m["body"]))
        rm = room("sxm")
        await phone["xep_0045"].join_muc_wait(rm, "Alice", maxstanzas=0, timeout=10)
        form = await phone["xep_0045"].get_room_config(rm)
        await phone["xep_0045"].set_room_config(rm, form.__class__())
        await desk["xep_0045"].join_muc_wait(rm, "Alice", maxstanzas=0, timeout=10)
        await bob["xep_0045"].join_muc_wait(rm, "Bob", maxstanzas=0, timeout=10)
        assert sorted(bob["xep_0045"].get_roster(rm)) == ["Alice", "Bob"]
        bob.send_message(mto=rm, mbody="hello devices", mtype="groupchat")
        phone.send_message(mto=rm, mbody="from the phone", mtype="groupchat")
        for _ in range(100):
            if all("hello devices" in v and "from the phone" in v for v in got.values()):
                break
            await asyncio.sleep(0.05)
        assert all("hello devices" in v and "from the phone" in v for v in got.values()), got
        bodies = []
        async for page in bob["xep_0313"].iterate(jid=rm, with_jid=slixmpp_jid(f"{rm}/Bob"), total=10):
            bodies.append(page["mam_result"]["forwarded"]["stanza"]["body"])
        assert bodies == ["hello devices"], bodies
        await close(phone, desk, bob)

    asyncio.run(asyncio.wait_for(go(), 60))


def slixmpp_jid(s):
    from slixmpp import JID
    return JID(s)
