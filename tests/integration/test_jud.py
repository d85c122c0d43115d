"""The user directory (sm/mod_jud.c, XEP-0055 jabber:iq:search): off by
default; users opt in with urn:xmpp:weft:jud:1; searches match their vCards
by the legacy fields and by XEP-0004 forms. Raw XML through the fake c2s of
test_sm_raw.py, and end to end with slixmpp's xep_0055 plugin.
"""
import asyncio
import xml.etree.ElementTree as ET

import pytest

from test_sm_modules import PLAIN_SM, ModWorld, features, iq
from test_sm_raw import FakeC2S, error_cond, tag

S = "jabber:iq:search"
X = "jabber:x:data"
JUD = "urn:xmpp:weft:jud:1"
ON = "<module name='jud'/>"


def vcard(given, family, nick, email):
    return (f"<vCard xmlns='vcard-temp'><N><GIVEN>{given}</GIVEN><FAMILY>{family}</FAMILY></N>"
            f"<NICKNAME>{nick}</NICKNAME><EMAIL><INTERNET/><USERID>{email}</USERID></EMAIL></vCard>")


def people(env, extra=ON):
    """alice and bob listed, carol with a vCard but not listed."""
    w = ModWorld(env, extra, binary=PLAIN_SM)
    c = w.c2s
    sids = {}
    for n, card in (("alice", vcard("Alice", "Liddell", "ally", "alice@wonder.land")),
                    ("bob", vcard("Robert", "Liddell", "bobby", "bob@example.org")),
                    ("carol", vcard("Carol", "Liddell", "caz", "carol@example.org"))):
        c.register(f"{n}@localhost")
        sids[n] = c.start(f"{n}@localhost/pc")
        assert iq(c, sids[n], card, f"v-{n}", type_="set").get("type") == "result"
    for n in ("alice", "bob"):
        st = iq(c, sids[n], f"<listing xmlns='{JUD}' listed='true'/>", f"l-{n}", type_="set")
        assert st.get("type") == "result", ET.tostring(st)
    return w, c, sids


def legacy_items(st):
    q = st.find(tag(S, "query"))
    return sorted((i.get("jid"), i.findtext(tag(S, "nick"))) for i in q.findall(tag(S, "item")))


def test_off_by_default(env):
    w = ModWorld(env, binary=PLAIN_SM)
    w.c2s.register("alice@localhost")
    a = w.c2s.start("alice@localhost/pc")
    assert S not in features(iq(w.c2s, a, "<query xmlns='http://jabber.org/protocol/disco#info'/>", "d",
                                to="localhost"))
    assert error_cond(iq(w.c2s, a, f"<query xmlns='{S}'/>", "s", to="localhost")) == "service-unavailable"


def test_fields_form_and_disco(env):
    w, c, s = people(env)
    a = s["alice"]
    assert S in features(iq(c, a, "<query xmlns='http://jabber.org/protocol/disco#info'/>", "d",
                            to="localhost"))
    st = iq(c, a, f"<query xmlns='{S}'/>", "f1", to="localhost")
    q = st.find(tag(S, "query"))
    for f in ("instructions", "first", "last", "nick", "email"):
        assert q.find(tag(S, f)) is not None, f
    form = q.find(tag(X, "x"))
    assert form.get("type") == "form"
    vars_ = [f.get("var") for f in form.findall(tag(X, "field"))]
    assert vars_ == ["FORM_TYPE", "first", "last", "nick", "email"]


def test_legacy_search_finds_only_listed_users(env):
    w, c, s = people(env)
    a = s["alice"]
    st = iq(c, a, f"<query xmlns='{S}'><last>liddell</last></query>", "q1", to="localhost", type_="set")
    assert legacy_items(st) == [("alice@localhost", "ally"), ("bob@localhost", "bobby")]   # not carol
    st = iq(c, a, f"<query xmlns='{S}'><nick>BOB</nick><email>example</email></query>", "q2",
            to="localhost", type_="set")
    assert legacy_items(st) == [("bob@localhost", "bobby")]
    item = st.find(tag(S, "query")).find(tag(S, "item"))
    assert item.findtext(tag(S, "first")) == "Robert" and item.findtext(tag(S, "email")) == "bob@example.org"
    st = iq(c, a, f"<query xmlns='{S}'><first>nobody</first></query>", "q3", to="localhost", type_="set")
    assert legacy_items(st) == []
    # the vCard is read at search time: a changed nick is found at once
    assert iq(c, s["bob"], vcard("Robert", "Liddell", "rob", "bob@example.org"), "v2", type_="set") \
        .get("type") == "result"
    st = iq(c, a, f"<query xmlns='{S}'><nick>rob</nick></query>", "q4", to="localhost", type_="set")
    assert legacy_items(st) == [("bob@localhost", "rob")]
    # opting out removes bob
    st = iq(c, s["bob"], f"<listing xmlns='{JUD}' listed='false'/>", "l2", type_="set")
    assert st.get("type") == "result"
    st = iq(c, s["bob"], f"<listing xmlns='{JUD}'/>", "l3")
    assert st.find(tag(JUD, "listing")).get("listed") == "false"
    st = iq(c, a, f"<query xmlns='{S}'><last>Liddell</last></query>", "q5", to="localhost", type_="set")
    assert legacy_items(st) == [("alice@localhost", "ally")]


def test_form_search(env):
    w, c, s = people(env)
    sub = (f"<query xmlns='{S}'><x xmlns='{X}' type='submit'>"
           f"<field var='FORM_TYPE' type='hidden'><value>{S}</value></field>"
           f"<field var='first'><value>ali</value></field></x></query>")
    st = iq(c, s["carol"], sub, "x1", to="localhost", type_="set")
    x = st.find(tag(S, "query")).find(tag(X, "x"))
    assert x.get("type") == "result"
    assert [f.get("var") for f in x.find(tag(X, "reported")).findall(tag(X, "field"))] == \
        ["jid", "first", "last", "nick", "email"]
    items = x.findall(tag(X, "item"))
    assert len(items) == 1
    vals = {f.get("var"): f.findtext(tag(X, "value")) for f in items[0].findall(tag(X, "field"))}
    assert vals == {"jid": "alice@localhost", "first": "Alice", "last": "Liddell", "nick": "ally",
                    "email": "alice@wonder.land"}


def test_listing_is_the_owners_and_limits_apply(env):
    w, c, s = people(env, "<module name='jud'><max-results>1</max-results></module>")
    st = iq(c, s["carol"], f"<listing xmlns='{JUD}' listed='true'/>", "e1", to="alice@localhost", type_="set")
    assert error_cond(st) == "forbidden"
    st = iq(c, s["carol"], f"<listing xmlns='{JUD}' listed='perhaps'/>", "e2", type_="set")
    assert error_cond(st) == "bad-request"
    st = iq(c, s["carol"], f"<query xmlns='{S}'><last>Liddell</last></query>", "m1", to="localhost",
            type_="set")
    assert len(legacy_items(st)) == 1                 # max-results


def test_slixmpp_xep_0055(tmp_path):
    """A client built on slixmpp's XEP-0055 and XEP-0004 stanza classes."""
    pytest.importorskip("slixmpp")
    from server import Server
    from test_sm_iq import PW, close, connect, make_certs
    make_certs(tmp_path)
    srv = Server(tmp_path).start(sm_extra=ON)
    try:
        for u in ("alice", "bob"):
            srv.register(u, PW)

        async def main():
            a = await connect(srv, "alice@localhost/pc")
            b = await connect(srv, "bob@localhost/pc")
            a.register_plugin("xep_0004")
            a.register_plugin("xep_0055", {"provide_search": False})
            for xml in (vcard("Robert", "Builder", "bob", "bob@example.org"),
                        f"<listing xmlns='{JUD}' listed='true'/>"):
                q = b.Iq()
                q["type"] = "set"
                q.xml.append(ET.fromstring(xml))
                await q.send(timeout=10)
            q = a.Iq()
            q["type"] = "get"
            q["to"] = "localhost"
            q.enable("search")
            res = await q.send(timeout=10)
            assert {"first", "last", "nick", "email"} <= set(res["search"]["form"].get_fields())
            q = a.Iq()
            q["type"] = "set"
            q["to"] = "localhost"
            form = a["xep_0004"].make_form(ftype="submit")
            form.add_field(var="FORM_TYPE", ftype="hidden", value=S)
            form.add_field(var="last", value="builder")
            q["search"].append(form)
            res = await q.send(timeout=10)
            items = res["search"]["form"]["items"]
            assert [str(i["jid"]) for i in items] == ["bob@localhost"], items
            assert items[0]["nick"] == "bob"
            await close(a, b)

        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        srv.close()


@pytest.mark.parametrize("allow", [False, True])
def test_remote_searchers_need_allow_remote(env, allow):
    extra = "<module name='jud'><allow-remote>true</allow-remote></module>" if allow else ON
    w, c, s = people(env, extra)
    s2s = FakeC2S(env.router_port, name="s2s", secret="weft-s2s-secret")
    s2s.link.send("<w:bind default='true'/>")              # the default route, as s2s binds it
    s2s.wait(lambda el: el.tag.endswith("}bound"))
    s2s.link.send(f"<iq xmlns='jabber:component:accept' type='set' id='r1' from='eve@remote.example/x' "
                  f"to='localhost'><query xmlns='{S}'><last>Liddell</last></query></iq>")
    st = s2s.wait(lambda el: el.tag.endswith("}iq") and el.get("id") == "r1")
    assert st.get("to") == "eve@remote.example/x"
    if allow:
        assert st.get("type") == "result"
        q = st.find(tag(S, "query"))
        assert sorted(i.get("jid") for i in q.findall(tag(S, "item"))) == ["alice@localhost", "bob@localhost"]
    else:
        err = st.find("{jabber:component:accept}error")
        assert st.get("type") == "error" and err is not None, ET.tostring(st)
        assert err.find("{urn:ietf:params:xml:ns:xmpp-stanzas}forbidden") is not None, ET.tostring(st)
    s2s.close()
