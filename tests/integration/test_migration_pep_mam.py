"""PEP nodes and message archives through `weftctl import` / `weftctl export`
(XEP-0227 1.1: <pubsub xmlns='...pubsub#owner'> with the node configurations,
<pubsub xmlns='...pubsub'> with the items, <archive xmlns='urn:xmpp:pie:0#mam'>
with the messages).

- Prosody 0.12 (Debian) on loopback with mod_pep and mod_mam: slixmpp clients
  publish an avatar (XEP-0084), XEP-0402 bookmarks and an OMEMO device list,
  and chat; Prosody's own prosody-migrator writes the XEP-0227 files (its
  "pep" and "archive" stores); weftctl imports them; slixmpp on weft then gets
  the items Prosody served and MAM finds the messages Prosody's MAM found.
- weft to weft: export, import into an empty storage, and the same slixmpp
  queries (items as the owner and as a contact sees them, configurations, MAM
  pages, filters, metadata) get the same answers.
- On both: a whitelist node with a member and an outcast, and a contact's
  explicit subscriptions (XEP-0060 affiliations and subscriptions, in the
  file's <affiliations/> and <subscriptions/>): after the import the member
  reads the items, the outcast is refused (forbidden), and the subscriber,
  whose client announces no caps, gets a notification of each new publish.
- A file written by hand in the XEP's own format.
- Errors name the user and element, and nothing is imported.
"""
import asyncio
import base64
import copy
import datetime
import hashlib
import os
import subprocess
import xml.etree.ElementTree as ET

import pytest

slixmpp = pytest.importorskip("slixmpp")
from slixmpp.exceptions import IqError  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

from conftest import BUILD, sm_storage_url  # noqa: E402
from server import Server  # noqa: E402
import test_migration as tm  # noqa: E402  (Prosody on loopback, prosody-migrator)

WEFTCTL = os.path.join(BUILD, "tools", "weftctl")
PS = "http://jabber.org/protocol/pubsub"
PSO = PS + "#owner"
PSE = PS + "#event"
MAM = "urn:xmpp:mam:2"
FWD = "urn:xmpp:forward:0"
CLIENT = "jabber:client"
XDATA = "jabber:x:data"
AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_META = "urn:xmpp:avatar:metadata"
DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"
BOOKMARKS = "urn:xmpp:bookmarks:1"
PW = {"alice": "alice-pep-pw", "bob": "bob-pep-pw", "carol": "carol-pep-pw"}
CLUB = "urn:example:club"          # whitelist: bob member, carol outcast; bob subscribed
STATUS = "urn:example:status"      # presence (the default): bob, a contact, subscribed
# Not a real PNG: the servers keep bytes, they do not decode images.
AVATAR = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
AVATAR_ID = hashlib.sha1(AVATAR).hexdigest()
# prosody-migrator's stores: "pep" (type pubsub: the node configurations,
# then each node's items) and "archive" (type archive: mod_mam's messages).
PROSODY_STORES = ("accounts", "roster", "vcard", "private", "pep-pubsub", "archive-archive")


def weftctl(*args):
    return subprocess.run([WEFTCTL, *map(str, args)], capture_output=True, text=True, timeout=120)


def run(coro, timeout=150):
    asyncio.run(asyncio.wait_for(coro, timeout))


def norm(el):
    """An element as a comparable value: name, attributes, text, children
    (whitespace between elements ignored)."""
    return (el.tag, tuple(sorted(el.attrib.items())), (el.text or "").strip(), tuple(norm(c) for c in el))


def bare(jid):
    return jid.split("/")[0] if jid else None


def seconds(stamp):
    """An XEP-0082 DateTime to whole seconds (Prosody keeps seconds)."""
    return int(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())


def form_xml(ftype, **fields):
    xs = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in fields.items())
    return (f"<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{PS}#{ftype}</value></field>{xs}</x>")


class Session:
    """A slixmpp session that speaks PEP and MAM as raw XML, so that the very
    same requests go to Prosody and to weft."""

    def __init__(self, x):
        self.x = x
        self.results = []
        self.got = asyncio.Queue()
        self.events = asyncio.Queue()
        x.register_handler(Callback("mam results", MatchXPath(f"{{{CLIENT}}}message/{{{MAM}}}result"),
                                    lambda m: self.results.append(copy.deepcopy(m.xml))))
        x.register_handler(Callback("chat", MatchXPath(f"{{{CLIENT}}}message/{{{CLIENT}}}body"),
                                    lambda m: self.got.put_nowait(m["body"])))
        x.register_handler(Callback("pubsub events", MatchXPath(f"{{{CLIENT}}}message/{{{PSE}}}event"),
                                    lambda m: self.events.put_nowait(copy.deepcopy(m.xml))))

    @classmethod
    async def open(cls, port, jid, password, mech):
        x = slixmpp.ClientXMPP(jid, password)
        x.ssl_context.check_hostname = False
        x.ssl_context.verify_mode = __import__("ssl").CERT_NONE
        fm = x["feature_mechanisms"]
        creds = fm.sasl_callback
        fm.sasl_callback = lambda req, opt: {**creds(req, opt), "channel_binding": None}
        fm.use_mech = mech
        s = cls(x)
        started = asyncio.get_running_loop().create_future()
        x.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
        x.add_event_handler("failed_auth",
                            lambda _: started.done() or started.set_exception(AssertionError(f"{jid}: auth")))
        x.connect(("127.0.0.1", port))
        await asyncio.wait_for(started, 20)
        await x.get_roster()
        x.send_presence()
        await asyncio.sleep(0.3)
        return s

    async def close(self):
        self.x.disconnect()
        await asyncio.sleep(0.3)

    async def iq(self, xml, to=None, type_="set"):
        q = self.x.Iq()
        q["type"] = type_
        if to:
            q["to"] = to
        q.xml.append(ET.fromstring(xml))
        return await q.send(timeout=15)

    async def error(self, xml, to=None, type_="get"):
        with pytest.raises(IqError) as ei:
            await self.iq(xml, to, type_)
        return ei.value.iq["error"]["condition"]

    async def publish(self, node, item_id, payload, **options):
        opts = f"<publish-options>{form_xml('publish-options', **options)}</publish-options>" if options else ""
        await self.iq(f"<pubsub xmlns='{PS}'><publish node='{node}'><item id='{item_id}'>{payload}</item>"
                      f"</publish>{opts}</pubsub>")

    async def items(self, owner, node):
        r = await self.iq(f"<pubsub xmlns='{PS}'><items node='{node}'/></pubsub>", to=owner, type_="get")
        its = r.xml.find(f"{{{PS}}}pubsub/{{{PS}}}items")
        return [(i.get("id"), tuple(norm(p) for p in i)) for i in its.findall(f"{{{PS}}}item")]

    async def config(self, node):
        r = await self.iq(f"<pubsub xmlns='{PSO}'><configure node='{node}'/></pubsub>", type_="get")
        x = r.xml.find(f"{{{PSO}}}pubsub/{{{PSO}}}configure/{{{XDATA}}}x")
        return {f.get("var"): [v.text for v in f.findall(f"{{{XDATA}}}value")]
                for f in x.findall(f"{{{XDATA}}}field")}

    async def owner_list(self, node, what):
        """The owner's affiliations or subscriptions of node: {jid: value}."""
        r = await self.iq(f"<pubsub xmlns='{PSO}'><{what} node='{node}'/></pubsub>", type_="get")
        key = what[:-1]
        return {c.get("jid"): c.get(key) for c in r.xml.findall(f"{{{PSO}}}pubsub/{{{PSO}}}{what}/{{{PSO}}}{key}")}

    async def notified(self, wait=1.5):
        """The notifications received within wait: sorted (node, [item ids])."""
        await asyncio.sleep(wait)
        out = []
        while not self.events.empty():
            its = self.events.get_nowait().find(f"{{{PSE}}}event/{{{PSE}}}items")
            if its is not None:
                out.append((its.get("node"), [i.get("id") for i in its.findall(f"{{{PSE}}}item")]))
        return sorted(out)

    async def chat(self, to, body, peer):
        self.x.send_message(mto=to, mbody=body, mtype="chat")
        assert await asyncio.wait_for(peer.got.get(), 10) == body

    async def mam(self, rsm="", **fields):
        """A MAM query; the results as dicts, and the <fin/>."""
        fs = "".join(f"<field var='{k.replace('_', '-')}'><value>{v}</value></field>" for k, v in fields.items())
        form = (f"<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value>"
                f"</field>{fs}</x>") if fields else ""
        self.results.clear()
        r = await self.iq(f"<query xmlns='{MAM}' queryid='q1'>{form}{rsm}</query>")
        out = []
        for m in self.results:
            res = m.find(f"{{{MAM}}}result")
            fwd = res.find(f"{{{FWD}}}forwarded")
            msg = fwd.find(f"{{{CLIENT}}}message")
            out.append({"id": res.get("id"), "stamp": fwd.find("{urn:xmpp:delay}delay").get("stamp"),
                        "from": msg.get("from"), "to": msg.get("to"), "body": msg.findtext(f"{{{CLIENT}}}body"),
                        "msg": norm(msg)})
        return out, r.xml.find(f"{{{MAM}}}fin")


async def befriend(a, b):
    a.x.send_presence(pto=b.x.boundjid.bare, ptype="subscribe")
    for _ in range(100):
        ra = a.x.client_roster[b.x.boundjid.bare]["subscription"]
        rb = b.x.client_roster[a.x.boundjid.bare]["subscription"]
        if ra == rb == "both":
            await asyncio.sleep(0.3)
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"subscription not mutual: {ra} {rb}")


def avatar_payloads():
    data = f"<data xmlns='{AVATAR_DATA}'>{base64.b64encode(AVATAR).decode()}</data>"
    meta = (f"<metadata xmlns='{AVATAR_META}'><info bytes='{len(AVATAR)}' id='{AVATAR_ID}' "
            "type='image/png' width='16' height='16'/></metadata>")
    return data, meta


def bookmark(name, nick):
    return f"<conference xmlns='{BOOKMARKS}' name='{name}' autojoin='true'><nick>{nick}</nick></conference>"


async def publish_client_nodes(a):
    """What a modern client (Conversations, Dino) publishes: an avatar, an
    OMEMO device list, XEP-0402 bookmarks."""
    data, meta = avatar_payloads()
    await a.publish(AVATAR_DATA, AVATAR_ID, data, access_model="open")
    await a.publish(AVATAR_META, AVATAR_ID, meta, access_model="open")
    await a.publish(DEVICELIST, "current",
                    "<list xmlns='eu.siacs.conversations.axolotl'><device id='31415'/><device id='92653'/></list>",
                    access_model="open")
    opts = dict(persist_items="true", max_items="max", send_last_published_item="never", access_model="whitelist")
    await a.publish(BOOKMARKS, "tea@muc.localhost", bookmark("Tea party", "al"), **opts)
    await a.publish(BOOKMARKS, "coffee@muc.localhost", bookmark("Coffee", "alice"), **opts)


def note(node, text):
    return f"<note xmlns='{node}'>{text}</note>"


async def set_members(a, b):
    """alice's whitelist node with bob as member and carol as outcast; bob
    subscribes explicitly to it and to a presence node (he is a contact)."""
    await a.publish(CLUB, "c1", note(CLUB, "club news"), access_model="whitelist")
    await a.iq(f"<pubsub xmlns='{PSO}'><affiliations node='{CLUB}'>"
               "<affiliation jid='bob@localhost' affiliation='member'/>"
               "<affiliation jid='carol@localhost' affiliation='outcast'/></affiliations></pubsub>")
    await a.publish(STATUS, "s1", note(STATUS, "at home"))
    for n in (CLUB, STATUS):
        await b.iq(f"<pubsub xmlns='{PS}'><subscribe node='{n}' jid='bob@localhost'/></pubsub>", to="alice@localhost")


async def member_views(port, mech):
    """What the affiliations and subscriptions decide: bob (member) reads the
    whitelist node, carol (outcast) is refused, the owner's lists, and the
    notifications bob (no caps: by his subscriptions only) gets of a new
    publish on each node."""
    a = await Session.open(port, "alice@localhost/m", PW["alice"], mech)
    b = await Session.open(port, "bob@localhost/m", PW["bob"], mech)
    c = await Session.open(port, "carol@localhost/m", PW["carol"], mech)
    v = {}
    affs = await a.owner_list(CLUB, "affiliations")
    affs.pop("alice@localhost", None)      # the owner: listed by weft, not by Prosody
    v["club-affiliations"] = affs
    v["subscriptions"] = {n: await a.owner_list(n, "subscriptions") for n in (CLUB, STATUS)}
    await b.notified(0.5)                  # a last item sent at login, if any
    await a.publish(CLUB, "c2", note(CLUB, "club meets at five"))
    await a.publish(STATUS, "s2", note(STATUS, "out"))
    v["bob-notified"] = await b.notified()
    v["carol-notified"] = await c.notified(0)
    v["bob-club"] = await b.items("alice@localhost", CLUB)
    v["carol-club"] = await c.error(f"<pubsub xmlns='{PS}'><items node='{CLUB}'/></pubsub>", to="alice@localhost")
    for x in (a, b, c):
        await x.close()
    return v


async def chat_a_while(a, b):
    """Five messages both ways; the last one more than a second later, so a
    'start' filter on its time (Prosody keeps whole seconds) finds it alone."""
    await a.chat("bob@localhost", "hello bob", b)
    await b.chat("alice@localhost", "hi alice", a)
    await a.chat("bob@localhost", "tea at five?", b)
    await b.chat("alice@localhost", "yes", a)
    await asyncio.sleep(1.2)
    await a.chat("bob@localhost", "see you", b)
    await asyncio.sleep(0.5)


async def views(port, mech, nodes_owned, nodes_seen):
    """What alice and bob see: their archives (whole, 'with', 'start'), the
    items of alice's nodes as alice and as bob get them, alice's node
    configurations, and bob's refusal for the whitelist node."""
    a = await Session.open(port, "alice@localhost/v", PW["alice"], mech)
    b = await Session.open(port, "bob@localhost/v", PW["bob"], mech)
    v = {}
    v["alice-mam"], _ = await a.mam()
    v["bob-mam"], _ = await b.mam()
    v["alice-with-bob"], _ = await a.mam(**{"with": "bob@localhost"})
    last = v["alice-mam"][-1]["stamp"] if v["alice-mam"] else "1970-01-01T00:00:00Z"
    v["alice-since-last"], _ = await a.mam(start=last)
    for n in nodes_owned:
        v[f"alice-items {n}"] = await a.items("alice@localhost", n)
        v[f"config {n}"] = await a.config(n)
    for n in nodes_seen:
        v[f"bob-items {n}"] = await b.items("alice@localhost", n)
    v["bob-bookmarks"] = await b.error(f"<pubsub xmlns='{PS}'><items node='{BOOKMARKS}'/></pubsub>",
                                       to="alice@localhost")
    await a.close()
    await b.close()
    return v


# ------------------------------------------------------------------ Prosody 0.12

@pytest.fixture(scope="module")
def prosody_pep_mam(tmp_path_factory):
    why = tm.prosody_available()
    if why:
        pytest.fail(why)
    d = tmp_path_factory.mktemp("prosody-pep")
    p = tm.Prosody(d)
    cfg = p.cfg.read_text().replace('"private"; }', '"private"; "pep"; "mam"; }')
    cfg = cfg.replace('VirtualHost "localhost"', 'archive_expires_after = "never"\nVirtualHost "localhost"')
    p.cfg.write_text(cfg)
    for u, pw in PW.items():
        p.register(u, pw)
    p.start()
    seen = {}
    try:
        async def fill():
            a = await Session.open(p.port, "alice@localhost/pc", PW["alice"], "SCRAM-SHA-1")
            b = await Session.open(p.port, "bob@localhost/pc", PW["bob"], "SCRAM-SHA-1")
            await befriend(a, b)
            await publish_client_nodes(a)
            await set_members(a, b)
            await chat_a_while(a, b)
            await a.close()
            await b.close()
            seen.update(await views(p.port, "SCRAM-SHA-1", [AVATAR_DATA, AVATAR_META, DEVICELIST, BOOKMARKS],
                                    [AVATAR_DATA, AVATAR_META, DEVICELIST]))
            seen.update(await member_views(p.port, "SCRAM-SHA-1"))
        run(fill())
    finally:
        p.stop()
    files, _ = p.export(PROSODY_STORES)
    return files, seen


def test_prosody_migrator_writes_pep_and_archive(prosody_pep_mam):
    files, seen = prosody_pep_mam
    assert [f.name for f in files] == ["alice@localhost.xml", "bob@localhost.xml", "carol@localhost.xml"]
    alice = ET.parse(files[0]).getroot().find("{urn:xmpp:pie:0}host/{urn:xmpp:pie:0}user")
    conf = alice.find(f"{{{PSO}}}pubsub")
    items = alice.find(f"{{{PS}}}pubsub")
    arch = alice.find("{urn:xmpp:pie:0#mam}archive")
    assert conf is not None and items is not None and arch is not None, ET.tostring(alice)
    assert {c.get("node") for c in conf.findall(f"{{{PSO}}}configure")} == {AVATAR_DATA, AVATAR_META, DEVICELIST,
                                                                          BOOKMARKS, CLUB, STATUS}
    # XEP-0060's owner elements, as prosody-migrator 0.12 writes them (the
    # state in an attribute named 'subscribed', not 'subscription').
    affs = conf.find(f"{{{PSO}}}affiliations[@node='{CLUB}']")
    assert {a.get("jid"): a.get("affiliation") for a in affs} == {"bob@localhost": "member",
                                                                  "carol@localhost": "outcast"}
    for n in (CLUB, STATUS):
        subs = conf.find(f"{{{PSO}}}subscriptions[@node='{n}']")
        assert [(x.get("jid"), x.get("subscription") or x.get("subscribed")) for x in subs] == \
            [("bob@localhost", "subscribed")], n
    assert [i.get("id") for i in items.find(f"{{{PS}}}items[@node='{BOOKMARKS}']")] == \
        ["tea@muc.localhost", "coffee@muc.localhost"]
    assert len(arch.findall(f"{{{MAM}}}result")) == 5
    # What Prosody's own MAM answered, to compare weft with.
    assert [m["body"] for m in seen["alice-mam"]] == ["hello bob", "hi alice", "tea at five?", "yes", "see you"]
    assert [m["body"] for m in seen["alice-since-last"]] == ["see you"]


def test_prosody_pep_and_archive_served_by_weft(prosody_pep_mam, tmp_path):
    files, seen = prosody_pep_mam
    r = weftctl("--storage", sm_storage_url(tmp_path), "import", *files)
    assert r.returncode == 0, r.stderr
    assert "users=3" in r.stdout, r.stdout
    assert "pep-nodes=6 pep-items=7 pep-affiliations=2 pep-subscriptions=2 archived=10" in r.stdout, r.stdout
    assert "not kept" not in r.stderr, r.stderr
    s = Server(tmp_path)
    s.start(ibr=False)
    try:
        got = {}

        async def check():
            got.update(await views(s.port, "SCRAM-SHA-1", [AVATAR_DATA, AVATAR_META, DEVICELIST, BOOKMARKS],
                                   [AVATAR_DATA, AVATAR_META, DEVICELIST]))
            got.update(await member_views(s.port, "SCRAM-SHA-1"))
        run(check())
    finally:
        s.close()
    # The same messages: archive ids, bodies, addressees, times (Prosody's seconds).
    for k in ("alice-mam", "bob-mam", "alice-with-bob", "alice-since-last"):
        def key(m):
            return (m["id"], m["body"], bare(m["to"]), seconds(m["stamp"]))
        assert [key(m) for m in got[k]] == [key(m) for m in seen[k]], k
    assert len(got["alice-mam"]) == 5 and len(got["alice-since-last"]) == 1
    # The same items, in the same order, as the owner and as a contact get them.
    for n in (AVATAR_DATA, AVATAR_META, DEVICELIST, BOOKMARKS):
        assert got[f"alice-items {n}"] == seen[f"alice-items {n}"], n
        assert got[f"alice-items {n}"], n
    for n in (AVATAR_DATA, AVATAR_META, DEVICELIST):
        assert got[f"bob-items {n}"] == seen[f"bob-items {n}"], n
    # The configurations that decide who reads: kept.
    for n in (AVATAR_DATA, AVATAR_META, DEVICELIST):
        assert got[f"config {n}"]["pubsub#access_model"] == ["open"], n
    assert got[f"config {BOOKMARKS}"]["pubsub#access_model"] == ["whitelist"]
    assert got[f"config {BOOKMARKS}"]["pubsub#max_items"] == ["max"]
    assert got[f"config {BOOKMARKS}"]["pubsub#send_last_published_item"] == ["never"]
    assert seen["bob-bookmarks"] != "" and got["bob-bookmarks"] == "not-allowed"
    # Affiliations and subscriptions: what Prosody did, weft does.
    check_members(got)
    for k in ("bob-club", "carol-club", "club-affiliations", "subscriptions", "bob-notified", "carol-notified"):
        assert got[k] == seen[k], k


def check_members(v):
    """The member reads, the outcast is refused as an outcast (forbidden: a
    mere stranger gets not-allowed), the subscriber is notified of both
    publishes, carol of none."""
    assert [i for i, _ in v["bob-club"]] and v["carol-club"] == "forbidden", v
    assert v["club-affiliations"] == {"bob@localhost": "member", "carol@localhost": "outcast"}
    assert v["subscriptions"] == {CLUB: {"bob@localhost": "subscribed"}, STATUS: {"bob@localhost": "subscribed"}}
    assert v["bob-notified"] == [(CLUB, ["c2"]), (STATUS, ["s2"])] and v["carol-notified"] == []


# ------------------------------------------------------------------ weft to weft

OWNED = ["urn:example:tune", "urn:example:mood", "urn:example:notes", BOOKMARKS, "storage:bookmarks",
         AVATAR_DATA, AVATAR_META, DEVICELIST]
SEEN = ["urn:example:tune", "urn:example:mood", AVATAR_DATA, AVATAR_META, DEVICELIST]


def tune(t):
    return f"<tune xmlns='urn:example:tune'><title>{t}</title></tune>"


async def fill_weft(port):
    a = await Session.open(port, "alice@localhost/pc", PW["alice"], "SCRAM-SHA-256")
    b = await Session.open(port, "bob@localhost/pc", PW["bob"], "SCRAM-SHA-256")
    await befriend(a, b)
    await publish_client_nodes(a)     # mod_bookmarks adds storage:bookmarks
    # max_items 3: t1 goes; t2 published again is the newest.
    for t in ("t1", "t2", "t3", "t4", "t2"):
        await a.publish("urn:example:tune", t, tune(t), max_items="3")
    await a.publish("urn:example:mood", "current", "<mood xmlns='urn:example:mood'><happy/></mood>")
    await a.iq(f"<pubsub xmlns='{PS}'><create node='urn:example:notes'/><configure>"
               + form_xml("node_config", access_model="whitelist", title="My notes", max_items="max",
                          notify_retract="0", roster_groups_allowed="Friends") + "</configure></pubsub>")
    for i in range(3):
        await a.publish("urn:example:notes", f"n{i}", f"<note xmlns='urn:example:notes'>note {i}</note>")
    await a.iq(f"<pubsub xmlns='{PS}'><retract node='urn:example:notes'><item id='n1'/></retract></pubsub>")
    await set_members(a, b)
    await chat_a_while(a, b)
    # A message to one's own account is archived once, as it arrives.
    a.x.send_message(mto="alice@localhost", mbody="note to self", mtype="chat")
    await asyncio.sleep(0.5)
    await a.close()
    await b.close()


async def weft_views(port):
    v = await views(port, "SCRAM-SHA-256", OWNED, SEEN)
    a = await Session.open(port, "alice@localhost/v2", PW["alice"], "SCRAM-SHA-256")
    v["alice-with-bob-full"], _ = await a.mam(**{"with": "bob@localhost/pc"})
    page1, fin1 = await a.mam("<set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set>")
    last = fin1.find("{http://jabber.org/protocol/rsm}set/{http://jabber.org/protocol/rsm}last").text
    page2, _ = await a.mam(f"<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><after>{last}</after></set>")
    v["alice-pages"] = (page1, page2, fin1.get("complete"))
    r = await a.iq(f"<metadata xmlns='{MAM}'/>", type_="get")
    v["alice-metadata"] = norm(r.xml.find(f"{{{MAM}}}metadata"))
    await a.close()
    v.update(await member_views(port, "SCRAM-SHA-256"))
    return v


def test_weft_export_import_round_trip(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    s = Server(src).start()
    try:
        for u, pw in PW.items():
            s.register(u, pw)
        before = {}

        async def first():
            await fill_weft(s.port)
            before.update(await weft_views(s.port))
        run(first())
    finally:
        s.close()
    # Sanity: the data is what a user would see.
    assert [m["body"] for m in before["alice-mam"]] == ["hello bob", "hi alice", "tea at five?", "yes", "see you",
                                                        "note to self"]
    assert [i for i, _ in before["alice-items urn:example:tune"]] == ["t3", "t4", "t2"]
    assert [i for i, _ in before["alice-items urn:example:notes"]] == ["n0", "n2"]
    assert before["config urn:example:notes"]["pubsub#title"] == ["My notes"]
    assert before["config urn:example:notes"]["pubsub#roster_groups_allowed"] == ["Friends"]
    # a full JID: only what was exchanged with that resource (bob's replies)
    assert [m["body"] for m in before["alice-with-bob-full"]] == ["hi alice", "yes"]
    check_members(before)

    out = tmp_path / "export.xml"
    r = weftctl("--storage", sm_storage_url(src), "export", out)
    assert r.returncode == 0, r.stderr
    assert "pep-nodes=10 pep-items=" in r.stderr and "archived=11 unreadable=0" in r.stderr, r.stderr
    assert "pep-affiliations=2 pep-subscriptions=2" in r.stderr, r.stderr
    doc = ET.parse(out).getroot()
    alice = doc.find("{urn:xmpp:pie:0}host/{urn:xmpp:pie:0}user[@name='alice']")
    assert len(alice.find("{urn:xmpp:pie:0#mam}archive").findall(f"{{{MAM}}}result")) == 6
    assert alice.find(f"{{{PSO}}}pubsub/{{{PSO}}}configure[@node='urn:example:tune']") is not None
    # XEP-0227 1.1: the owner elements of XEP-0060 beside the <configure/>
    affs = alice.find(f"{{{PSO}}}pubsub/{{{PSO}}}affiliations[@node='{CLUB}']")
    assert [(x.get("jid"), x.get("affiliation")) for x in affs] == \
        [("alice@localhost", "owner"), ("bob@localhost", "member"), ("carol@localhost", "outcast")]
    subs = alice.find(f"{{{PSO}}}pubsub/{{{PSO}}}subscriptions[@node='{STATUS}']")
    assert [(x.get("jid"), x.get("subscription")) for x in subs] == [("bob@localhost", "subscribed")]
    r = weftctl("--storage", sm_storage_url(dst), "import", out)
    assert r.returncode == 0, r.stderr
    assert "pep-nodes=10" in r.stdout and "pep-affiliations=2 pep-subscriptions=2 archived=11" in r.stdout, r.stdout
    assert "not kept" not in r.stderr, r.stderr
    # A second export of the imported storage is the same document.
    again = tmp_path / "again.xml"
    assert weftctl("--storage", sm_storage_url(dst), "export", again).returncode == 0
    assert again.read_text() == out.read_text()

    s = Server(dst).start(ibr=False)
    try:
        after = {}

        async def second():
            after.update(await weft_views(s.port))
        run(second())
    finally:
        s.close()
    assert after.keys() == before.keys()
    for k in before:
        assert after[k] == before[k], k


# ------------------------------------------------------------------ the XEP's own format, by hand

XEP_FILE = """<?xml version='1.0' encoding='UTF-8'?>
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='localhost'>
    <user name='romeo' password='romeo-pw'>
      <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
        <configure node='urn:xmpp:bookmarks:1'>
          <x xmlns='jabber:x:data' type='form'>
            <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>
            <field var='pubsub#access_model'><value>whitelist</value></field>
          </x>
        </configure>
        <affiliations node='urn:xmpp:bookmarks:1'>
          <affiliation jid='mercutio@example.net' affiliation='member'/>
        </affiliations>
        <subscriptions node='urn:xmpp:bookmarks:1'>
          <subscription jid='mercutio@example.net' subscription='subscribed' subid='123-abc'/>
        </subscriptions>
        <configure node='http://jabber.org/protocol/nick'>
          <x xmlns='jabber:x:data' type='form'>
            <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>
            <field var='pubsub#access_model'><value>open</value></field>
          </x>
        </configure>
      </pubsub>
      <pubsub xmlns='http://jabber.org/protocol/pubsub'>
        <items node='urn:xmpp:bookmarks:1'>
          <item id='theplay@conference.shakespeare.lit'>
            <conference xmlns='urn:xmpp:bookmarks:1' name='The Play&apos;s the Thing' autojoin='true'>
              <nick>Romeo</nick>
            </conference>
          </item>
          <item id='orchard@conference.shakespeare.lit'>
            <conference xmlns='urn:xmpp:bookmarks:1' name='The Orchard' autojoin='1'>
              <nick>Romeo</nick>
            </conference>
          </item>
        </items>
        <items node='http://jabber.org/protocol/nick'>
          <item id='current'>
            <nick xmlns='http://jabber.org/protocol/nick'>Romy</nick>
          </item>
        </items>
      </pubsub>
    </user>
    <user name='juliet' password='juliet-pw'>
      <archive xmlns='urn:xmpp:pie:0#mam'>
        <result xmlns='urn:xmpp:mam:2' id='28482-98726-73623'>
          <forwarded xmlns='urn:xmpp:forward:0'>
            <delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>
            <message xmlns='jabber:client' to='juliet@localhost/balcony' from='romeo@montague.lit/orchard'
                     type='chat'>
              <body>Call me but love, and I'll be new baptized; Henceforth I never will be Romeo.</body>
            </message>
          </forwarded>
        </result>
        <result xmlns='urn:xmpp:mam:2' id='5d398-28273-f7382'>
          <forwarded xmlns='urn:xmpp:forward:0'>
            <delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:09:32Z'/>
            <message xmlns='jabber:client' to='romeo@montague.lit/orchard' from='juliet@localhost/balcony'
                     type='chat' id='8a54s'>
              <body>What man art thou that thus bescreen'd in night so stumblest on my counsel?</body>
            </message>
          </forwarded>
        </result>
      </archive>
    </user>
  </host>
</server-data>
"""


def test_xep_example_file(tmp_path):
    f = tmp_path / "xep.xml"
    f.write_text(XEP_FILE)
    r = weftctl("--storage", sm_storage_url(tmp_path), "import", f)
    assert r.returncode == 0, r.stderr
    assert "users=2" in r.stdout, r.stdout
    assert "pep-nodes=2 pep-items=3 pep-affiliations=1 pep-subscriptions=1 archived=2 skipped=0" in r.stdout, \
        r.stdout
    assert "not kept" not in r.stderr, r.stderr
    s = Server(tmp_path).start(ibr=False)
    try:
        async def check():
            rom = await Session.open(s.port, "romeo@localhost/r", "romeo-pw", "SCRAM-SHA-256")
            jul = await Session.open(s.port, "juliet@localhost/balcony", "juliet-pw", "SCRAM-SHA-256")
            res, fin = await jul.mam()
            assert [(m["id"], m["stamp"]) for m in res] == [("28482-98726-73623", "2010-07-10T23:08:25.000Z"),
                                                            ("5d398-28273-f7382", "2010-07-10T23:09:32.000Z")]
            assert res[1]["body"].startswith("What man art thou") and fin.get("complete") == "true"
            assert [m["id"] for m in (await jul.mam(**{"with": "romeo@montague.lit"}))[0]] == \
                ["28482-98726-73623", "5d398-28273-f7382"]
            assert [m["id"] for m in (await jul.mam(start="2010-07-10T23:09:00Z"))[0]] == ["5d398-28273-f7382"]
            assert [m["id"] for m in (await jul.mam(end="2010-07-10T23:09:00Z"))[0]] == ["28482-98726-73623"]
            bm = await rom.items("romeo@localhost", BOOKMARKS)
            assert [i for i, _ in bm] == ["theplay@conference.shakespeare.lit", "orchard@conference.shakespeare.lit"]
            assert ("name", "The Play's the Thing") in bm[0][1][0][1]
            nick = await jul.items("romeo@localhost", "http://jabber.org/protocol/nick")
            assert nick[0][0] == "current" and nick[0][1][0][2] == "Romy"
            assert await jul.error(f"<pubsub xmlns='{PS}'><items node='{BOOKMARKS}'/></pubsub>",
                                   to="romeo@localhost") == "not-allowed"
            # mercutio's membership and subscription (the subid dropped: one per JID)
            assert await rom.owner_list(BOOKMARKS, "affiliations") == {"romeo@localhost": "owner",
                                                                       "mercutio@example.net": "member"}
            assert await rom.owner_list(BOOKMARKS, "subscriptions") == {"mercutio@example.net": "subscribed"}
            await rom.close()
            await jul.close()
        run(check())
    finally:
        s.close()


# ------------------------------------------------------------------ what weft has no room for

LEFT_OUT_FILE = f"""<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='romeo' password='romeo-pw'>
<query xmlns='jabber:iq:roster'><item jid='juliet@localhost' subscription='both'/>
<item jid='nurse@localhost' subscription='to'/></query>
<pubsub xmlns='{PSO}'>
<subscriptions node='urn:example:mood'>
<subscription jid='juliet@localhost/balcony' subscription='subscribed'/>
<subscription jid='nurse@localhost' subscription='subscribed'/>
<subscription jid='tybalt@localhost' subscription='pending'/>
<subscription jid='paris@localhost' subscription='none'/>
</subscriptions>
<configure node='urn:example:mood'/>
<configure node='urn:example:club'><x xmlns='jabber:x:data' type='submit'>
<field var='pubsub#access_model'><value>whitelist</value></field></x></configure>
<affiliations node='urn:example:club'>
<affiliation jid='romeo@localhost' affiliation='member'/>
<affiliation jid='paris@localhost' affiliation='publish-only'/>
<affiliation jid='tybalt@localhost' affiliation='outcast'/>
<affiliation jid='benvolio@localhost' affiliation='none'/>
</affiliations>
<subscriptions node='urn:example:club'>
<subscription jid='tybalt@localhost' subscribed='subscribed'><options><x xmlns='jabber:x:data' type='submit'/>
</options></subscription>
<subscription jid='romeo@localhost/pc' subscribed='subscribed'><options><x xmlns='jabber:x:data' type='submit'/>
</options></subscription>
</subscriptions>
</pubsub></user></host></server-data>
"""


def test_members_weft_has_no_room_for_are_left_out_with_a_notice(tmp_path):
    """What XEP-0060 has and weft does not (a pending subscription,
    subscription options), a subscription the node would refuse
    (a contact without a presence subscription on a presence node, an outcast
    on a whitelist node) and a change of the account's own affiliation are
    left out, each with a notice naming it; the rest is imported and the sm
    serves it. Files are read whatever the order of <configure/> and the
    owner lists."""
    f = tmp_path / "left.xml"
    f.write_text(LEFT_OUT_FILE)
    r = weftctl("--storage", sm_storage_url(tmp_path), "import", f)
    assert r.returncode == 0, r.stderr
    assert "pep-nodes=2 pep-items=0 pep-affiliations=2 pep-subscriptions=2" in r.stdout, r.stdout
    notes = [ln.split(": ", 4)[4] for ln in r.stderr.splitlines()]   # after file, user, element
    assert sorted(notes) == sorted([
        "node urn:example:mood: nurse@localhost not kept (access model 'presence' and the node's affiliations "
        "do not let it subscribe)",
        "node urn:example:mood: tybalt@localhost not kept (weft's subscriptions are 'subscribed' only, "
        "not 'pending')",
        "node urn:example:club: the account stays the owner of its node, not 'member'",
        "node urn:example:club: tybalt@localhost not kept (access model 'whitelist' and the node's "
        "affiliations do not let it subscribe)",
        "node urn:example:club: subscription options ignored (weft has none: every notification)",
    ]), r.stderr
    s = Server(tmp_path).start(ibr=False)
    try:
        async def check():
            rom = await Session.open(s.port, "romeo@localhost/r", "romeo-pw", "SCRAM-SHA-256")
            assert await rom.owner_list("urn:example:club", "affiliations") == {
                "romeo@localhost": "owner", "paris@localhost": "publish-only", "tybalt@localhost": "outcast"}
            assert await rom.owner_list("urn:example:club", "subscriptions") == {"romeo@localhost/pc": "subscribed"}
            assert await rom.owner_list("urn:example:mood", "subscriptions") == \
                {"juliet@localhost/balcony": "subscribed"}
            await rom.close()
        run(check())
    finally:
        s.close()


# ------------------------------------------------------------------ errors

def user(name, inner):
    return (f"<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='ok' password='x'/>"
            f"<user name='{name}' password='pw'>\n{inner}</user></host></server-data>")


def result(rid, stamp="2024-01-02T03:04:05Z", frm="zed@example.org/x"):
    return (f"<result xmlns='urn:xmpp:mam:2' id='{rid}'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<delay xmlns='urn:xmpp:delay' stamp='{stamp}'/><message xmlns='jabber:client' from='{frm}' "
            f"to='bad@localhost' type='chat'><body>b</body></message></forwarded></result>")


def node(name, fields="", items="", owner=""):
    return (f"<pubsub xmlns='{PSO}'><configure node='{name}'><x xmlns='jabber:x:data' type='submit'>{fields}"
            f"</x></configure>{owner}</pubsub><pubsub xmlns='{PS}'><items node='{name}'>{items}</items></pubsub>")


def affs(*pairs):
    return ("<affiliations node='urn:example:n'>"
            + "".join(f"<affiliation jid='{j}' affiliation='{a}'/>" for j, a in pairs) + "</affiliations>")


def subs(*pairs):
    return ("<subscriptions node='urn:example:n'>"
            + "".join(f"<subscription jid='{j}' subscription='{s}'/>" for j, s in pairs) + "</subscriptions>")


AFF_EL = f"<affiliation xmlns='{PSO}'>"
SUB_EL = f"<subscription xmlns='{PSO}'>"
OPEN = "<field var='pubsub#access_model'><value>open</value></field>"


BAD = [
    ("duplicate-id", user("bad", f"<archive xmlns='urn:xmpp:pie:0#mam'>{result('m1')}{result('m1')}</archive>"),
     "<result xmlns='urn:xmpp:mam:2'>", "message m1 is given twice"),
    ("bad-stamp", user("bad", f"<archive xmlns='urn:xmpp:pie:0#mam'>{result('m1', stamp='yesterday')}</archive>"),
     "<delay xmlns='urn:xmpp:delay'>", "stamp 'yesterday'"),
    ("no-forwarded", user("bad", "<archive xmlns='urn:xmpp:pie:0#mam'><result xmlns='urn:xmpp:mam:2' id='m1'/>"
                                 "</archive>"),
     "<result xmlns='urn:xmpp:mam:2'>", "forwarded"),
    ("two-payloads", user("bad", node("urn:example:n", items="<item id='i1'><a xmlns='x:a'/><b xmlns='x:b'/></item>")),
     "<item xmlns='http://jabber.org/protocol/pubsub'>", "holds 2 payload elements"),
    ("bad-access", user("bad", node("urn:example:n", fields="<field var='pubsub#access_model'><value>bogus</value>"
                                                            "</field>")),
     "<configure xmlns='http://jabber.org/protocol/pubsub#owner'>", "pubsub#access_model 'bogus'"),
    ("too-big", user("bad", node("urn:example:n", items=f"<item id='i1'><a xmlns='x:a'>{'z' * 140000}</a></item>")),
     "<item xmlns='http://jabber.org/protocol/pubsub'>", "over the 131072"),
    ("no-item-id", user("bad", node("urn:example:n", items="<item><a xmlns='x:a'/></item>")),
     "<item xmlns='http://jabber.org/protocol/pubsub'>", "needs an 'id'"),
    ("bad-affiliation", user("bad", node("urn:example:n", owner=affs(("bob@localhost", "member"),
                                                                    ("eve@localhost", "boss")))),
     AFF_EL, "affiliation 'boss' of eve@localhost"),
    ("affiliation-bad-jid", user("bad", node("urn:example:n", owner=affs(("bob@@localhost", "member")))),
     AFF_EL, "affiliation of 'bob@@localhost': not a JID"),
    ("affiliation-no-jid", user("bad", node("urn:example:n", owner="<affiliations node='urn:example:n'>"
                                                                   "<affiliation affiliation='member'/>"
                                                                   "</affiliations>")),
     AFF_EL, "needs 'jid' and 'affiliation'"),
    ("two-affiliations", user("bad", node("urn:example:n", owner=affs(("bob@localhost", "member"),
                                                                     ("Bob@localhost/x", "outcast")))),
     AFF_EL, "bob@localhost is given two affiliations, member and outcast"),
    ("too-many-affiliations", user("bad", node("urn:example:n", owner=affs(*[(f"u{i}@localhost", "member")
                                                                           for i in range(257)]))),
     AFF_EL, "more than 256 affiliations"),
    ("bad-subscription", user("bad", node("urn:example:n", OPEN, owner=subs(("bob@localhost", "maybe")))),
     SUB_EL, "subscription 'maybe' of bob@localhost"),
    ("subscription-bad-jid", user("bad", node("urn:example:n", OPEN, owner=subs(("bob@localhost/", "subscribed")))),
     SUB_EL, "subscription of 'bob@localhost/': not a JID"),
    ("affiliations-twice", user("bad", node("urn:example:n", owner=affs() + affs())),
     f"<affiliations xmlns='{PSO}'>", "the affiliations of node urn:example:n are given twice"),
]


@pytest.mark.parametrize("name,text,element,why", BAD, ids=[b[0] for b in BAD])
def test_errors_name_user_and_element_and_import_nothing(tmp_path, name, text, element, why):
    f = tmp_path / "bad.xml"
    f.write_text(text)
    url = sm_storage_url(tmp_path)
    r = weftctl("--storage", url, "import", f)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"bad.xml:2: user bad@localhost: {element}" in r.stderr and why in r.stderr, r.stderr
    assert "nothing imported" in r.stderr
    assert weftctl("--storage", url, "user", "list").stdout == ""     # not even user 'ok'
