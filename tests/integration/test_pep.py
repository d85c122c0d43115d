"""PEP (XEP-0163 on XEP-0060) end to end: router, sm and c2s (server.py)
driven by slixmpp, an independent client whose caps (XEP-0115) announce its
+notify interests. Covers docs/pep.md: publish/items/retract, access models,
publish-options preconditions, configure, caps-filtered notifications to the
owner's resources and contacts, last-item delivery when a contact comes
online and when a subscription is approved, the end of a subscription
stopping notifications, the limits, persistence and account deletion.
"""
import asyncio
import base64
import hashlib
import time
import xml.etree.ElementTree as ET

import pytest

slixmpp = pytest.importorskip("slixmpp")
from slixmpp.exceptions import IqError  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

from server import Server  # noqa: E402

PW = "secret-pw"
PS = "http://jabber.org/protocol/pubsub"
PSO = PS + "#owner"
PSE = PS + "#event"
PSERR = PS + "#errors"
NODE = "urn:example:tune"
OTHER = "urn:example:mood"


def start(tmp_path, sm_extra="", users=("alice", "bob", "eve")):
    s = Server(tmp_path).start(sm_extra=sm_extra)
    for user in users:
        s.register(user, PW)
    return s


@pytest.fixture
def server(tmp_path):
    s = start(tmp_path)
    yield s
    s.close()


async def connect(server, jid, notify=(), presence=True):
    """A slixmpp session announcing +notify for the nodes in notify. Events
    (pubsub#event messages) land in x.events, an asyncio.Queue of
    (from, ElementTree event element)."""
    x = server.slixmpp_client(jid, PW)
    fm = x["feature_mechanisms"]
    creds = fm.sasl_callback
    fm.sasl_callback = lambda req, opt: {**creds(req, opt), "channel_binding": None}
    fm.use_mech = "SCRAM-SHA-256"
    for p in ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163"):
        x.register_plugin(p)
    x.events = asyncio.Queue()

    def on_event(msg):
        x.events.put_nowait((str(msg["from"]), str(msg["to"]), msg.xml.find(f"{{{PSE}}}event")))

    x.register_handler(Callback("pep-events", MatchXPath(f"{{jabber:client}}message/{{{PSE}}}event"), on_event))
    started = asyncio.get_running_loop().create_future()
    x.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    x.connect(("127.0.0.1", server.port))
    await asyncio.wait_for(started, 20)
    for n in notify:
        x["xep_0163"].add_interest(n)
    await x["xep_0115"].update_caps(broadcast=False)
    await x.get_roster()
    if presence:
        x.send_presence()
    await asyncio.sleep(0.3)
    return x


async def close(*clients):
    for x in clients:
        x.disconnect()
    await asyncio.sleep(0.3)


def run(coro, timeout=90):
    asyncio.run(asyncio.wait_for(coro, timeout))


async def iq(x, xml, to=None, type_="set"):
    q = x.Iq()
    q["type"] = type_
    if to:
        q["to"] = to
    q.xml.append(ET.fromstring(xml))
    return await q.send(timeout=10)


async def iq_error(x, xml, to=None, type_="set"):
    """The error an iq gets: (condition, pubsub#errors condition or None)."""
    with pytest.raises(IqError) as ei:
        await iq(x, xml, to, type_)
    err = ei.value.iq.xml.find("{jabber:client}error")
    app = [c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{PSERR}}}")]
    return ei.value.iq["error"]["condition"], (app[0] if app else None)


def form(ftype, **fields):
    xs = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in fields.items())
    return (f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{PS}#{ftype}</value></field>{xs}</x>")


def publish_xml(node, item_id, text, **options):
    opts = f"<publish-options>{form('publish-options', **options)}</publish-options>" if options else ""
    return (f"<pubsub xmlns='{PS}'><publish node='{node}'><item id='{item_id}'>"
            f"<tune xmlns='{NODE}'><title>{text}</title></tune></item></publish>{opts}</pubsub>")


async def publish(x, node, item_id, text, **options):
    return await iq(x, publish_xml(node, item_id, text, **options))


async def items(x, owner, node, extra="", inner=""):
    r = await iq(x, f"<pubsub xmlns='{PS}'><items node='{node}' {extra}>{inner}</items></pubsub>", to=owner,
                 type_="get")
    its = r.xml.find(f"{{{PS}}}pubsub/{{{PS}}}items")
    return [(i.get("id"), "".join(i.itertext())) for i in its.findall(f"{{{PS}}}item")]


async def befriend(a, b):
    """A mutual presence subscription (slixmpp approves and subscribes back)."""
    a.send_presence(pto=b.boundjid.bare, ptype="subscribe")
    for _ in range(100):
        ra = a.client_roster[b.boundjid.bare]["subscription"]
        rb = b.client_roster[a.boundjid.bare]["subscription"]
        if ra == "both" and rb == "both":
            await asyncio.sleep(0.3)
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"subscription not mutual: {ra} {rb}")


async def next_event(x, timeout=5):
    return await asyncio.wait_for(x.events.get(), timeout)


async def no_event(x, wait=1.0):
    await asyncio.sleep(wait)
    assert x.events.empty(), x.events.get_nowait()


def event_items(ev):
    its = ev.find(f"{{{PSE}}}items")
    return its.get("node"), [(i.get("id"), "".join(i.itertext())) for i in its.findall(f"{{{PSE}}}item")]


def test_publish_notifies_by_caps_interest(server):
    """One publish reaches the owner's resource and the contact's resource
    that announced +notify, not a resource without the interest, not a
    stranger with the interest; a retraction follows the same way."""
    async def main():
        a = await connect(server, "alice@localhost/pc", notify=[NODE])
        a2 = await connect(server, "alice@localhost/phone", notify=[OTHER])
        b = await connect(server, "bob@localhost/pc", notify=[NODE])
        e = await connect(server, "eve@localhost/pc", notify=[NODE])
        await befriend(a, b)
        b2 = await connect(server, "bob@localhost/tablet", notify=[OTHER])
        r = await publish(a, NODE, "t1", "Song one")
        assert r.xml.find(f"{{{PS}}}pubsub/{{{PS}}}publish/{{{PS}}}item").get("id") == "t1"
        for x in (a, b):
            frm, to, ev = await next_event(x)
            assert frm == "alice@localhost" and to == x.boundjid.full
            assert event_items(ev) == (NODE, [("t1", "Song one")])
        await no_event(a2, 0.5)
        await no_event(b2, 0.1)
        await no_event(e, 0.1)
        await iq(a, f"<pubsub xmlns='{PS}'><retract node='{NODE}' notify='true'><item id='t1'/></retract></pubsub>")
        _, _, ev = await next_event(b)
        assert ev.find(f"{{{PSE}}}items/{{{PSE}}}retract").get("id") == "t1"
        assert await items(b, "alice@localhost", NODE) == []
        await close(a, a2, b, b2, e)
    run(main())


def test_items_and_access_models(server):
    """items (all, by id, last N) and who may read under each access model;
    only the owner writes."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        e = await connect(server, "eve@localhost/pc")
        await befriend(a, b)
        for i in range(1, 5):
            await publish(a, NODE, f"i{i}", f"v{i}", max_items="10")
        assert await items(a, None, NODE) == [(f"i{i}", f"v{i}") for i in range(1, 5)]
        assert await items(b, "alice@localhost", NODE, "max_items='2'") == [("i3", "v3"), ("i4", "v4")]
        assert await items(b, "alice@localhost", NODE, inner="<item id='i2'/>") == [("i2", "v2")]
        # presence (the default): a stranger is refused, the contact reads
        assert await iq_error(e, f"<pubsub xmlns='{PS}'><items node='{NODE}'/></pubsub>", "alice@localhost",
                              "get") == ("not-authorized", "presence-subscription-required")
        # open: anyone reads
        await publish(a, "open-node", "x", "open data", access_model="open")
        assert await items(e, "alice@localhost", "open-node") == [("x", "open data")]
        # whitelist (XEP-0223 private data): only the owner
        await publish(a, "secret", "current", "mine", access_model="whitelist", persist_items="true")
        assert await iq_error(b, f"<pubsub xmlns='{PS}'><items node='secret'/></pubsub>", "alice@localhost",
                              "get") == ("not-allowed", "closed-node")
        assert await items(a, None, "secret") == [("current", "mine")]
        # roster: a contact in an allowed roster group reads, a stranger does not
        await a.update_roster("bob@localhost", groups=["Friends"])
        await publish(a, "roster-node", "r", "rr", access_model="roster", roster_groups_allowed="Friends")
        assert await items(b, "alice@localhost", "roster-node") == [("r", "rr")]
        assert (await iq_error(e, f"<pubsub xmlns='{PS}'><items node='roster-node'/></pubsub>",
                               "alice@localhost", "get"))[0] == "not-authorized"
        # no such node; writes by others
        assert (await iq_error(b, f"<pubsub xmlns='{PS}'><items node='nope'/></pubsub>", "alice@localhost",
                               "get"))[0] == "item-not-found"
        assert (await iq_error(b, publish_xml(NODE, "z", "z"), "alice@localhost"))[0] == "forbidden"
        assert (await iq_error(b, f"<pubsub xmlns='{PSO}'><delete node='{NODE}'/></pubsub>",
                               "alice@localhost"))[0] == "forbidden"
        await close(a, b, e)
    run(main())


def test_publish_options_and_configure(server):
    """publish-options create the node with those options; options that
    conflict with the node's configuration get conflict +
    precondition-not-met and publish nothing; configure changes it (and then
    the same options pass); max_items trims, 'max' means the server's limit;
    purge and delete."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        await publish(a, "bundle", "1", "b1", access_model="open", max_items="max")
        assert await iq_error(a, publish_xml("bundle", "2", "b2", access_model="presence")) == \
            ("conflict", "precondition-not-met")
        assert await items(a, None, "bundle") == [("1", "b1")]
        r = await iq(a, f"<pubsub xmlns='{PSO}'><configure node='bundle'/></pubsub>", type_="get")
        fields = {f.get("var"): f.findtext("{jabber:x:data}value")
                  for f in r.xml.iter("{jabber:x:data}field")}
        assert fields["pubsub#access_model"] == "open" and fields["pubsub#max_items"] == "max", fields
        await iq(a, f"<pubsub xmlns='{PSO}'><configure node='bundle'>"
                    f"{form('node_config', access_model='presence', max_items='2')}</configure></pubsub>")
        await publish(a, "bundle", "2", "b2", access_model="presence")
        await publish(a, "bundle", "3", "b3")
        assert await items(a, None, "bundle") == [("2", "b2"), ("3", "b3")]
        # republishing an id makes it the newest
        await publish(a, "bundle", "2", "b2-again")
        assert await items(a, None, "bundle") == [("3", "b3"), ("2", "b2-again")]
        # an unknown option or value is a precondition that cannot be met
        assert (await iq_error(a, publish_xml("bundle", "4", "b4", access_model="nonsense")))[1] == \
            "precondition-not-met"
        assert (await iq_error(a, publish_xml("fresh", "4", "b4", max_items="100000")))[1] == \
            "precondition-not-met"
        # create with configuration, then conflict
        await iq(a, f"<pubsub xmlns='{PS}'><create node='made'/><configure>"
                    f"{form('node_config', access_model='open')}</configure></pubsub>")
        assert (await iq_error(a, f"<pubsub xmlns='{PS}'><create node='made'/></pubsub>"))[0] == "conflict"
        await iq(a, f"<pubsub xmlns='{PSO}'><purge node='bundle'/></pubsub>")
        assert await items(a, None, "bundle") == []
        await iq(a, f"<pubsub xmlns='{PSO}'><delete node='bundle'/></pubsub>")
        assert (await iq_error(a, f"<pubsub xmlns='{PS}'><items node='bundle'/></pubsub>",
                               type_="get"))[0] == "item-not-found"
        info = await a["xep_0030"].get_info(jid="alice@localhost")
        assert ("pubsub", "pep", None, None) in info["disco_info"]["identities"]
        assert PS + "#publish-options" in info["disco_info"]["features"]
        await close(a)
    run(main())


def test_last_item_on_coming_online_and_on_approval(server):
    """A contact's resource that comes online with +notify gets the last
    item of the node at once; a contact whose subscription the owner
    approves gets it then; a contact whose subscription ended gets no more
    notifications."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc", notify=[NODE])
        await befriend(a, b)
        await close(b)
        await publish(a, NODE, "old", "first")
        await publish(a, NODE, "new", "second")
        b = await connect(server, "bob@localhost/pc", notify=[NODE])
        _, _, ev = await next_event(b)
        assert event_items(ev) == (NODE, [("new", "second")])
        await no_event(b, 0.5)
        # eve: her presence reaches alice (alice subscribes to her first), then
        # alice approves eve's subscription: the last item goes to eve
        e = await connect(server, "eve@localhost/pc", notify=[NODE])
        e.auto_subscribe = False
        a.auto_subscribe = False
        a.auto_authorize = None       # neither approve nor refuse: the test approves
        a.send_presence(pto="eve@localhost", ptype="subscribe")
        await asyncio.sleep(1.0)
        await no_event(e, 0.1)
        e.send_presence(pto="alice@localhost", ptype="subscribe")
        await asyncio.sleep(0.5)
        a.send_presence(pto="eve@localhost", ptype="subscribed")
        _, _, ev = await next_event(e)
        assert event_items(ev) == (NODE, [("new", "second")])
        # bob's subscription ends: he gets nothing more, eve still does
        a.send_presence(pto="bob@localhost", ptype="unsubscribed")
        await asyncio.sleep(0.5)
        await publish(a, NODE, "third", "3")
        _, _, ev = await next_event(e)
        assert event_items(ev)[1] == [("third", "3")]
        await no_event(b, 1.0)
        await close(a, b, e)
    run(main())


def test_limits(tmp_path):
    """Item size, nodes per account, items per node and the notification
    rate are options; past them the request gets an error and the server
    keeps serving."""
    s = start(tmp_path, sm_extra="<module name='pep'><max-nodes>2</max-nodes><max-items>3</max-items>"
                                 "<max-item-size>1K</max-item-size><notify-rate>2</notify-rate></module>")

    async def main():
        a = await connect(s, "alice@localhost/pc", notify=["n1"])
        big = "x" * 2000
        assert await iq_error(a, publish_xml("n1", "1", big)) == ("not-acceptable", "payload-too-big")
        await publish(a, "n1", "1", "ok", max_items="max")
        await publish(a, "n2", "1", "ok")
        assert await iq_error(a, publish_xml("n3", "1", "ok")) == ("not-allowed", "max-nodes-exceeded")
        assert (await iq_error(a, f"<pubsub xmlns='{PS}'><create node='n4'/></pubsub>"))[1] == \
            "max-nodes-exceeded"
        # notify-rate 2/s: the burst passes, then resource-constraint, then again after a while
        refused = 0
        for i in range(2, 8):
            try:
                await publish(a, "n1", str(i), "v")
            except IqError as ex:
                assert ex.iq["error"]["condition"] == "resource-constraint"
                refused += 1
        assert refused >= 2, refused
        await asyncio.sleep(2.0)
        await publish(a, "n1", "later", "v")
        got = await items(a, None, "n1")
        assert len(got) == 3 and got[-1] == ("later", "v"), got
        await close(a)
    try:
        run(main())
    finally:
        s.close()


def test_persistence_and_account_deletion(tmp_path):
    """Nodes and items survive an sm restart; deleting the account removes
    them (a new account of that name starts empty)."""
    s = start(tmp_path)

    async def first():
        a = await connect(s, "alice@localhost/pc")
        await publish(a, NODE, "keep", "kept", max_items="5")
        await publish(a, NODE, "keep2", "kept2")
        await publish(a, "volatile", "v", "gone", persist_items="false")
        await close(a)

    async def second():
        a = await connect(s, "alice@localhost/pc")
        assert await items(a, None, NODE) == [("keep", "kept"), ("keep2", "kept2")]
        assert await items(a, None, "volatile") == []
        r = await iq(a, f"<pubsub xmlns='{PSO}'><configure node='{NODE}'/></pubsub>", type_="get")
        assert any(f.get("var") == "pubsub#max_items" and f.findtext("{jabber:x:data}value") == "5"
                   for f in r.xml.iter("{jabber:x:data}field"))
        await iq(a, "<query xmlns='jabber:iq:register'><remove/></query>")
        await asyncio.sleep(0.5)
        a.disconnect()

    async def third():
        a = await connect(s, "alice@localhost/pc")
        assert (await iq_error(a, f"<pubsub xmlns='{PS}'><items node='{NODE}'/></pubsub>",
                               type_="get"))[0] == "item-not-found"
        await close(a)
    try:
        run(first())
        s.sm.stop()
        s.start_sm()
        time.sleep(1.5)
        run(second())
        time.sleep(0.5)
        s.register("alice", PW)
        run(third())
    finally:
        s.close()


def test_last_item_when_the_presence_loads_the_owner(tmp_path):
    """The presence that brings the owner's PEP state into memory (after an
    sm restart, the owner offline) still delivers the last item: on
    PostgreSQL the nodes are read after the presence was handled, and the
    delivery waits for them. The caps hash is known beforehand (eve's
    resource announced the same interests), so nothing else sends it."""
    s = start(tmp_path)

    async def first():
        a = await connect(s, "alice@localhost/pc")
        b = await connect(s, "bob@localhost/pc", notify=[NODE])
        await befriend(a, b)
        await publish(a, NODE, "last", "the last one")
        await close(a, b)

    async def second():
        e = await connect(s, "eve@localhost/pc", notify=[NODE])      # caches the caps hash
        await asyncio.sleep(0.5)
        b = await connect(s, "bob@localhost/pc", notify=[NODE])      # loads alice
        _, _, ev = await next_event(b)
        assert event_items(ev) == (NODE, [("last", "the last one")])
        await no_event(b, 0.5)
        await close(b, e)
    try:
        run(first())
        s.sm.stop()
        s.start_sm()
        time.sleep(1.5)
        run(second())
    finally:
        s.close()


BM2 = "urn:xmpp:bookmarks:1"
BM = "storage:bookmarks"


async def private_bookmarks(x):
    r = await iq(x, f"<query xmlns='jabber:iq:private'><storage xmlns='{BM}'/></query>", type_="get")
    st = r.xml.find(f"{{jabber:iq:private}}query/{{{BM}}}storage")
    return sorted((c.get("jid"), c.get("name"), c.get("autojoin"), c.findtext(f"{{{BM}}}nick"))
                  for c in st.findall(f"{{{BM}}}conference"))


async def bookmarks2(x):
    r = await iq(x, f"<pubsub xmlns='{PS}'><items node='{BM2}'/></pubsub>", type_="get")
    its = r.xml.find(f"{{{PS}}}pubsub/{{{PS}}}items")
    out = []
    for i in its.findall(f"{{{PS}}}item"):
        c = i.find(f"{{{BM2}}}conference")
        out.append((i.get("id"), c.get("name"), c.get("autojoin"), c.findtext(f"{{{BM2}}}nick")))
    return sorted(out)


async def legacy_pep(x):
    r = await iq(x, f"<pubsub xmlns='{PS}'><items node='{BM}'/></pubsub>", type_="get")
    st = r.xml.find(f"{{{PS}}}pubsub/{{{PS}}}items/{{{PS}}}item/{{{BM}}}storage")
    return sorted(c.get("jid") for c in st.findall(f"{{{BM}}}conference"))


def test_bookmarks_compat_both_ways(server):
    """XEP-0402 bookmarks and the XEP-0048 forms (private storage and the
    legacy PEP node) stay in step whichever a client writes; a client
    following urn:xmpp:bookmarks:1 hears of a change made through private
    storage."""
    async def main():
        old = await connect(server, "alice@localhost/old-client")
        new = await connect(server, "alice@localhost/new-client", notify=[BM2])
        info = await new["xep_0030"].get_info(jid="alice@localhost")
        assert BM2 + "#compat" in info["disco_info"]["features"]
        # a XEP-0402 client publishes: the old forms see it
        await iq(new, f"<pubsub xmlns='{PS}'><publish node='{BM2}'><item id='room@muc.example'>"
                      f"<conference xmlns='{BM2}' name='The Room' autojoin='true'><nick>ally</nick></conference>"
                      f"</item></publish>{'<publish-options>' + form('publish-options', persist_items='true', access_model='whitelist', max_items='max') + '</publish-options>'}</pubsub>")
        _, _, ev = await next_event(new)
        assert await private_bookmarks(old) == [("room@muc.example", "The Room", "true", "ally")]
        assert await legacy_pep(old) == ["room@muc.example"]
        # a XEP-0048 client writes private storage: the XEP-0402 items follow,
        # the dropped room is retracted, the new client is notified
        await iq(old, f"<query xmlns='jabber:iq:private'><storage xmlns='{BM}'>"
                      f"<conference jid='a@muc.example' name='A' autojoin='1'><nick>al</nick></conference>"
                      f"<conference jid='b@muc.example' name='B'/></storage></query>")
        assert await bookmarks2(new) == [("a@muc.example", "A", "true", "al"), ("b@muc.example", "B", "false", None)]
        assert await legacy_pep(new) == ["a@muc.example", "b@muc.example"]
        got = set()
        for _ in range(3):
            _, _, ev = await next_event(new)
            its = ev.find(f"{{{PSE}}}items")
            got.update(("item", i.get("id")) for i in its.findall(f"{{{PSE}}}item"))
            got.update(("retract", i.get("id")) for i in its.findall(f"{{{PSE}}}retract"))
        assert got == {("item", "a@muc.example"), ("item", "b@muc.example"), ("retract", "room@muc.example")}
        # the legacy PEP node written by a client: private storage and XEP-0402 follow
        await iq(old, f"<pubsub xmlns='{PS}'><publish node='{BM}'><item id='current'><storage xmlns='{BM}'>"
                      f"<conference jid='c@muc.example' name='C' autojoin='true'/></storage></item></publish>"
                      f"</pubsub>")
        assert await private_bookmarks(new) == [("c@muc.example", "C", "true", None)]
        assert await bookmarks2(new) == [("c@muc.example", "C", "true", None)]
        # nobody else reads them (whitelist)
        b = await connect(server, "bob@localhost/pc")
        await befriend(old, b)
        assert (await iq_error(b, f"<pubsub xmlns='{PS}'><items node='{BM2}'/></pubsub>", "alice@localhost",
                               "get")) == ("not-allowed", "closed-node")
        await close(old, new, b)
    run(main())


META = "urn:xmpp:avatar:metadata"
DATA = "urn:xmpp:avatar:data"
IMG1 = bytes(range(256)) * 4          # stands for an image: the server never decodes it as one
IMG2 = b"\x89PNG\r\n\x1a\n" + bytes(200)


async def vcard_photo(x, jid):
    r = await iq(x, "<vCard xmlns='vcard-temp'/>", to=jid, type_="get")
    ph = r.xml.find("{vcard-temp}vCard/{vcard-temp}PHOTO")
    if ph is None:
        return None
    return ph.findtext("{vcard-temp}TYPE"), base64.b64decode("".join(ph.findtext("{vcard-temp}BINVAL").split()))


def photo_hash(pres):
    ph = pres.xml.find("{vcard-temp:x:update}x/{vcard-temp:x:update}photo")
    return None if ph is None else (ph.text or "")


def test_avatars_pep_and_vcard_both_ways(server):
    """XEP-0084 avatar published by a client becomes the vCard PHOTO
    (XEP-0398); a vCard PHOTO set by an older client is published as
    XEP-0084 data and metadata (contacts following metadata are notified);
    the user's presence carries the current hash (XEP-0153)."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc", notify=[META])
        await befriend(a, b)
        pres = asyncio.Queue()
        b.add_event_handler("presence_available",
                            lambda p: pres.put_nowait(p) if p["from"].bare == "alice@localhost" else None)
        h1 = hashlib.sha1(IMG1).hexdigest()
        await iq(a, f"<pubsub xmlns='{PS}'><publish node='{DATA}'><item id='{h1}'><data xmlns='{DATA}'>"
                    f"{base64.b64encode(IMG1).decode()}</data></item></publish></pubsub>")
        await iq(a, f"<pubsub xmlns='{PS}'><publish node='{META}'><item id='{h1}'><metadata xmlns='{META}'>"
                    f"<info id='{h1}' bytes='{len(IMG1)}' type='image/webp'/></metadata></item></publish>"
                    f"{'<publish-options>' + form('publish-options', access_model='open') + '</publish-options>'}"
                    f"</pubsub>")
        _, _, ev = await next_event(b)
        assert event_items(ev)[0] == META
        await asyncio.sleep(0.3)
        assert await vcard_photo(b, "alice@localhost") == ("image/webp", IMG1)
        a.send_presence(pstatus="new avatar")
        p = await asyncio.wait_for(pres.get(), 5)
        while p["status"] != "new avatar":
            p = await asyncio.wait_for(pres.get(), 5)
        assert photo_hash(p) == h1
        # an older client sets a vCard with another PHOTO
        h2 = hashlib.sha1(IMG2).hexdigest()
        await iq(a, f"<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>"
                    f"{base64.b64encode(IMG2).decode()}</BINVAL></PHOTO></vCard>")
        _, _, ev = await next_event(b)
        node, its = event_items(ev)
        assert node == META and its[0][0] == h2
        info = ev.find(f"{{{PSE}}}items/{{{PSE}}}item/{{{META}}}metadata/{{{META}}}info")
        assert info.get("id") == h2 and info.get("bytes") == str(len(IMG2)) and info.get("type") == "image/png"
        got = await items(b, "alice@localhost", DATA, inner=f"<item id='{h2}'/>")
        assert base64.b64decode(got[0][1]) == IMG2
        a.send_presence(pstatus="vcard avatar")
        p = await asyncio.wait_for(pres.get(), 5)
        while p["status"] != "vcard avatar":
            p = await asyncio.wait_for(pres.get(), 5)
        assert photo_hash(p) == h2
        # removing the avatar (empty metadata) removes the PHOTO; the hash is empty
        await iq(a, f"<pubsub xmlns='{PS}'><publish node='{META}'><item id='none'><metadata xmlns='{META}'/>"
                    f"</item></publish></pubsub>")
        await asyncio.sleep(0.3)
        assert await vcard_photo(b, "alice@localhost") is None
        await close(a, b)
        # a later session of alice carries the hash of the vCard set by an earlier one
        a = await connect(server, "alice@localhost/again")
        b = await connect(server, "bob@localhost/pc2")
        pres2 = asyncio.Queue()
        b.add_event_handler("presence_available",
                            lambda p: pres2.put_nowait(p) if p["from"].bare == "alice@localhost" else None)
        await iq(a, f"<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>"
                    f"{base64.b64encode(IMG2).decode()}</BINVAL></PHOTO></vCard>")
        await close(a)
        await asyncio.sleep(0.5)
        a = await connect(server, "alice@localhost/third")
        p = await asyncio.wait_for(pres2.get(), 5)
        while str(p["from"]) != "alice@localhost/third":
            p = await asyncio.wait_for(pres2.get(), 5)
        assert photo_hash(p) == h2
        await close(a, b)
    run(main())


def test_avatar_hash_in_directed_presence(server):
    """A directed available presence (what a MUC join is) carries the
    avatar's hash too (XEP-0398 section 4): Gajim, seeing
    urn:xmpp:pep-vcard-conversion:0, puts no vcard-temp:x:update in its
    presence and leaves it to the server, so without it a Gajim user's
    avatar never shows in a room. Its directed unavailable presence is left
    alone."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        e = await connect(server, "eve@localhost/pc")       # not alice's contact
        pres = asyncio.Queue()
        e.add_event_handler("presence_available",
                            lambda p: pres.put_nowait(p) if p["from"].bare == "alice@localhost" else None)
        gone = asyncio.Queue()
        e.add_event_handler("presence_unavailable",
                            lambda p: gone.put_nowait(p) if p["from"].bare == "alice@localhost" else None)
        h = hashlib.sha1(IMG2).hexdigest()
        await iq(a, f"<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>"
                    f"{base64.b64encode(IMG2).decode()}</BINVAL></PHOTO></vCard>")
        a.send_presence(pto="eve@localhost/pc", pstatus="directed")
        p = await asyncio.wait_for(pres.get(), 5)
        assert p["status"] == "directed" and photo_hash(p) == h, p
        a.send_presence(pto="eve@localhost/pc", ptype="unavailable")
        p = await asyncio.wait_for(gone.get(), 5)
        assert photo_hash(p) is None, p
        await close(a, e)
    run(main())


def test_caps_hash_asked_once_and_verified(server):
    """Two resources announcing the same caps hash cost one disco#info
    (the answer verified and cached by hash); a hash whose answer does not
    verify (here: the client cannot answer for the made-up node) is not
    cached: the next resource with it is asked again."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b1 = await connect(server, "bob@localhost/one", notify=[NODE])
        await befriend(a, b1)
        b2 = await connect(server, "bob@localhost/two", notify=[NODE])
        await asyncio.sleep(0.5)
        sm = server.log("sm")
        vers = [line.split("ver=")[1].split()[0] for line in sm.splitlines()
                if "event=caps-query" in line and "bob@localhost" in line]
        assert len(vers) == 1, vers           # b2's identical caps: no second query
        assert "result=verified" in sm
        await publish(a, NODE, "1", "x")
        for x in (b1, b2):
            _, _, ev = await next_event(x)
            assert event_items(ev) == (NODE, [("1", "x")])
        # a presence with a made-up hash: asked, not verified, not cached
        fake = "bm90LWEtcmVhbC1oYXNoLXZhbHVlPQ=="
        for res in ("three", "four"):
            x = await connect(server, f"bob@localhost/{res}", notify=[OTHER], presence=False)
            x.send_presence(pstatus="fake")   # slixmpp adds its caps; replace them below
            await asyncio.sleep(0.2)
            p = x.Presence()
            p.xml.append(ET.fromstring(f"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                                       f"node='urn:fake' ver='{fake}'/>"))
            p.send()
            await asyncio.sleep(0.7)
            x.disconnect()
        sm = server.log("sm")
        assert sum(1 for line in sm.splitlines() if "event=caps-query" in line and f"ver={fake}" in line) == 2
        answers = [line for line in sm.splitlines() if "event=caps-answer" in line and f"ver={fake}" in line]
        assert len(answers) == 2 and not any("result=verified" in line for line in answers), answers
        await close(a, b1, b2)
    run(main())
