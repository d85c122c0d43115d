"""The message archive (XEP-0313 v2) and stanza ids (XEP-0359) end to end:
router, sm and c2s (server.py) driven by slixmpp clients, queries written as
the XEPs' XML. Checks that a message has one id everywhere (live delivery,
carbons, offline delivery, the archive of each side), paging both ways,
every filter, preferences (XEP-0441), what is not archived (groupchat,
<no-store/>, chat states), forged ids, metadata, retention by count and age,
and `weftctl archive delete`.
"""
import asyncio
import copy
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

slixmpp = pytest.importorskip("slixmpp")
from slixmpp.exceptions import IqError  # noqa: E402
from slixmpp.xmlstream.handler import Callback  # noqa: E402
from slixmpp.xmlstream.matcher import MatchXPath  # noqa: E402

from conftest import BUILD, sm_storage_url  # noqa: E402
from server import Server  # noqa: E402
from test_sm_iq import make_certs  # noqa: E402

PW = "secret-pw"
MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
RSM = "http://jabber.org/protocol/rsm"
FWD = "urn:xmpp:forward:0"
CARBONS = "urn:xmpp:carbons:2"
CLIENT = "jabber:client"
WEFTCTL = os.path.join(BUILD, "tools", "weftctl")


def start(tmp_path, sm_extra=""):
    make_certs(tmp_path)
    s = Server(tmp_path).start(sm_extra=sm_extra)
    for user in ("alice", "bob", "carol"):
        s.register(user, PW)
    return s


@pytest.fixture
def server(tmp_path):
    s = start(tmp_path)
    yield s
    s.close()


class Client:
    """A slixmpp client that keeps every <message/> it receives (as XML)."""

    def __init__(self, x):
        self.x = x
        self.msgs = []
        self.mam = []
        self.arrived = asyncio.Event()
        x.register_handler(Callback("all messages", MatchXPath("{%s}message" % CLIENT), self._on))

    def _on(self, msg):
        el = copy.deepcopy(msg.xml)
        (self.mam if el.find(f"{{{MAM}}}result") is not None else self.msgs).append(el)
        self.arrived.set()

    async def wait_msgs(self, n, timeout=10):
        end = time.monotonic() + timeout
        while len(self.msgs) < n:
            self.arrived.clear()
            left = end - time.monotonic()
            assert left > 0, f"{self.x.boundjid}: {len(self.msgs)} of {n} messages"
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except asyncio.TimeoutError:
                pass
        return self.msgs

    def send(self, to, body=None, type_="chat", extra=""):
        b = f"<body>{body}</body>" if body is not None else ""
        t = f" type='{type_}'" if type_ else ""
        self.x.send_raw(f"<message to='{to}'{t} xmlns='{CLIENT}'>{b}{extra}</message>")

    async def iq(self, xml, type_="set", to=None):
        iq = self.x.Iq()
        iq["type"] = type_
        if to:
            iq["to"] = to
        iq.xml.append(ET.fromstring(xml))
        return await iq.send(timeout=15)

    async def query(self, fields=None, rsm="", queryid="q", extra=""):
        """Runs a MAM query; returns (results, fin). results: list of
        (archive id, forwarded <message/>, delay stamp)."""
        form = ""
        if fields:
            fs = "".join(
                f"<field var='{k}'>" + "".join(f"<value>{v}</value>" for v in (vs if isinstance(vs, list) else [vs]))
                + "</field>" for k, vs in fields.items())
            form = (f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                    f"<value>{MAM}</value></field>{fs}</x>")
        self.mam.clear()
        res = await self.iq(f"<query xmlns='{MAM}' queryid='{queryid}'>{form}{rsm}{extra}</query>")
        fin = res.xml.find(f"{{{MAM}}}fin")
        assert fin is not None, str(res)
        out = []
        for m in self.mam:
            r = m.find(f"{{{MAM}}}result")
            assert r.get("queryid") == queryid
            fwd = r.find(f"{{{FWD}}}forwarded")
            out.append((r.get("id"), fwd.find(f"{{{CLIENT}}}message"),
                        fwd.find("{urn:xmpp:delay}delay").get("stamp")))
        return out, fin


async def connect(server, jid, priority=None, carbons=False):
    x = server.slixmpp_client(jid, PW)
    fm = x["feature_mechanisms"]
    creds = fm.sasl_callback
    fm.sasl_callback = lambda req, opt: {**creds(req, opt), "channel_binding": None}
    fm.use_mech = "SCRAM-SHA-256"
    x.register_plugin("xep_0030")
    c = Client(x)
    started = asyncio.get_running_loop().create_future()
    x.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    x.add_event_handler("failed_auth", lambda _: started.done() or started.set_exception(AssertionError("auth")))
    x.connect(("127.0.0.1", server.port))
    await asyncio.wait_for(started, 20)
    await x.get_roster()
    if carbons:
        await c.iq(f"<enable xmlns='{CARBONS}'/>")
    if priority is None:
        x.send_presence()
    else:
        x.send_presence(ppriority=priority)
    await asyncio.sleep(0.2)
    return c


async def close(*clients):
    for c in clients:
        c.x.disconnect()
    await asyncio.sleep(0.3)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 120))


def body(m):
    b = m.find(f"{{{CLIENT}}}body")
    return b.text if b is not None else None


def sids(m):
    return [(s.get("by"), s.get("id")) for s in m.findall(f"{{{SID}}}stanza-id")]


def inner(m, kind):
    return m.find(f"{{{CARBONS}}}{kind}/{{{FWD}}}forwarded/{{{CLIENT}}}message")


def test_one_id_for_live_carbon_and_archive(server):
    """A chat between two users: the receiver's live copy and <received/>
    carbon carry one stanza-id by the receiver, which its archive returns;
    the sender's <sent/> carbon carries the id of the sender's archive; the
    outgoing stanza carries none of the sender's. A forged stanza-id by the
    receiver is removed."""
    async def main():
        a1 = await connect(server, "alice@localhost/phone", carbons=True)
        a2 = await connect(server, "alice@localhost/pc", priority=-1, carbons=True)
        b1 = await connect(server, "bob@localhost/phone", priority=5, carbons=True)
        b2 = await connect(server, "bob@localhost/pc", priority=1, carbons=True)
        a1.send("bob@localhost", "hello bob",
                extra=f"<stanza-id xmlns='{SID}' by='bob@localhost' id='forged'/>")
        (live,) = await b1.wait_msgs(1)
        (carbon,) = await b2.wait_msgs(1)
        (sent,) = await a2.wait_msgs(1)
        assert body(live) == "hello bob", ET.tostring(live)
        ids = sids(live)
        assert len(ids) == 1 and ids[0][0] == "bob@localhost" and ids[0][1] != "forged", ids
        assert sids(inner(carbon, "received")) == ids
        # (the forged id alice wrote is hers to see: only alice's own counts)
        sent_ids = [i for i in sids(inner(sent, "sent")) if i[0] == "alice@localhost"]
        assert len(sent_ids) == 1
        assert sent_ids[0][1] != ids[0][1]
        # The archives.
        res, fin = await b1.query()
        assert fin.get("complete") == "true"
        assert [(r[0], body(r[1])) for r in res] == [(ids[0][1], "hello bob")]
        assert res[0][1].get("from") == "alice@localhost/phone"
        # The id comes once, as the result's: the archived message is the
        # one that arrived, without a stanza-id of bob's inside.
        assert [i for i in sids(res[0][1]) if i[0] == "bob@localhost"] == [], ET.tostring(res[0][1])
        res, _ = await a1.query()
        assert [(r[0], body(r[1])) for r in res] == [(sent_ids[0][1], "hello bob")]
        # RSM first/last name the page's ids.
        assert fin.find(f"{{{RSM}}}set/{{{RSM}}}first").text == ids[0][1]
        # Reply: the other way round.
        b1.send("alice@localhost/phone", "hi alice")
        (back,) = await a1.wait_msgs(1)
        bsent = (await b2.wait_msgs(2))[1]
        assert sids(back)[0][0] == "alice@localhost"
        res, _ = await a1.query()
        assert [r[0] for r in res] == [sent_ids[0][1], sids(back)[0][1]]
        assert sids(inner(bsent, "sent"))[0][0] == "bob@localhost"
        await close(a1, a2, b1, b2)
    run(main())


def test_offline_copy_has_the_archive_id(server):
    """Messages to an offline user are archived and stored offline with the
    same stanza-id: the client that logs in gets them from offline storage
    and finds the same ids in the archive (so it shows each once)."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        for i in range(3):
            a.send("bob@localhost", f"offline {i}")
        await asyncio.sleep(0.5)
        b = await connect(server, "bob@localhost/phone")
        got = await b.wait_msgs(3)
        assert [body(m) for m in got] == ["offline 0", "offline 1", "offline 2"]
        live_ids = [sids(m)[0][1] for m in got]
        assert all(sids(m)[0][0] == "bob@localhost" for m in got)
        res, fin = await b.query()
        assert [r[0] for r in res] == live_ids and fin.get("complete") == "true"
        await close(a, b)
    run(main())


def test_paging_both_ways(server):
    """25 messages, pages of 10: forward 10/10/5 with complete only on the
    last; backward from the end (<before/>) the newest 10 in order, then the
    10 before them."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        for i in range(25):
            a.send("bob@localhost", f"m{i:02}")
        await b.wait_msgs(25)
        want = [f"m{i:02}" for i in range(25)]
        seen, after, pages = [], None, []
        while True:
            rsm = f"<set xmlns='{RSM}'><max>10</max>" + (f"<after>{after}</after>" if after else "") + "</set>"
            res, fin = await b.query(rsm=rsm)
            pages.append((len(res), fin.get("complete")))
            seen += [body(r[1]) for r in res]
            if fin.get("complete") == "true":
                break
            after = fin.find(f"{{{RSM}}}set/{{{RSM}}}last").text
            assert after == res[-1][0]
        assert seen == want
        assert pages == [(10, None), (10, None), (5, "true")]
        res, fin = await b.query(rsm=f"<set xmlns='{RSM}'><max>10</max><before/></set>")
        assert [body(r[1]) for r in res] == want[15:] and fin.get("complete") is None
        first = fin.find(f"{{{RSM}}}set/{{{RSM}}}first").text
        res2, _ = await b.query(rsm=f"<set xmlns='{RSM}'><max>10</max><before>{first}</before></set>")
        assert [body(r[1]) for r in res2] == want[5:15]
        res3, fin3 = await b.query(rsm=f"<set xmlns='{RSM}'><max>10</max><before>{res2[0][0]}</before></set>")
        assert [body(r[1]) for r in res3] == want[:5] and fin3.get("complete") == "true"
        # flip-page: the same page, newest first.
        res4, _ = await b.query(rsm=f"<set xmlns='{RSM}'><max>3</max><before/></set>", extra="<flip-page/>")
        assert [body(r[1]) for r in res4] == want[24:21:-1]
        # Default page size 50: everything; max 0: only the fin.
        res5, fin5 = await b.query()
        assert len(res5) == 25 and fin5.get("complete") == "true"
        res6, fin6 = await b.query(rsm=f"<set xmlns='{RSM}'><max>0</max></set>")
        assert res6 == []
        await close(a, b)
    run(main())


def test_filters(server):
    """with (bare and full), start/end, after-id/before-id, ids; unknown
    fields, bad dates and unknown ids are refused."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        c = await connect(server, "carol@localhost/laptop")
        b = await connect(server, "bob@localhost/pc")
        a.send("bob@localhost", "from alice 1")
        await b.wait_msgs(1)
        c.send("bob@localhost", "from carol 1")
        await b.wait_msgs(2)
        await asyncio.sleep(1.1)
        mid = time.time()
        await asyncio.sleep(0.1)
        a.send("bob@localhost", "from alice 2")
        await b.wait_msgs(3)
        b.send("alice@localhost", "to alice")
        await a.wait_msgs(1)
        await asyncio.sleep(0.2)
        all_, _ = await b.query()
        assert [body(r[1]) for r in all_] == ["from alice 1", "from carol 1", "from alice 2", "to alice"]
        ids = [r[0] for r in all_]
        res, _ = await b.query({"with": "alice@localhost"})
        assert [body(r[1]) for r in res] == ["from alice 1", "from alice 2", "to alice"]
        assert [r[0] for r in res] == [ids[0], ids[2], ids[3]]
        res, _ = await b.query({"with": "carol@localhost/laptop"})
        assert [body(r[1]) for r in res] == ["from carol 1"]
        res, _ = await b.query({"with": "carol@localhost/other"})
        assert res == []
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid)) + ".%03dZ" % int(mid % 1 * 1000)
        res, _ = await b.query({"start": stamp})
        assert [body(r[1]) for r in res] == ["from alice 2", "to alice"]
        res, _ = await b.query({"end": stamp})
        assert [body(r[1]) for r in res] == ["from alice 1", "from carol 1"]
        res, _ = await b.query({"with": "alice@localhost", "start": stamp})
        assert [body(r[1]) for r in res] == ["from alice 2", "to alice"]
        res, _ = await b.query({"after-id": ids[0], "before-id": ids[3]})
        assert [r[0] for r in res] == ids[1:3]
        res, _ = await b.query({"ids": [ids[3], ids[1]]})
        assert [r[0] for r in res] == [ids[1], ids[3]]
        # The delay stamps are the archive's times, in order.
        assert [r[2] for r in all_] == sorted(r[2] for r in all_)
        for bad, cond in (({"colour": "red"}, "bad-request"), ({"start": "yesterday"}, "bad-request"),
                          ({"after-id": "nope"}, "item-not-found"), ({"ids": ["nope"]}, "item-not-found")):
            with pytest.raises(IqError) as ei:
                await b.query(bad)
            assert ei.value.iq["error"]["condition"] == cond, bad
        with pytest.raises(IqError) as ei:
            await b.query(rsm=f"<set xmlns='{RSM}'><index>3</index></set>")
        assert ei.value.iq["error"]["condition"] == "feature-not-implemented"
        # Someone else's archive: as for a missing account.
        with pytest.raises(IqError) as ei:
            await a.iq(f"<query xmlns='{MAM}'/>", to="bob@localhost")
        assert ei.value.iq["error"]["condition"] == "service-unavailable"
        # The form lists the fields; disco advertises MAM v2, #extended and stanza ids.
        form = await b.iq(f"<query xmlns='{MAM}'/>", type_="get")
        fields = [f.get("var") for f in form.xml.iter("{jabber:x:data}field")]
        assert fields == ["FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"]
        info = await b.x["xep_0030"].get_info(jid="bob@localhost")
        for f in (MAM, MAM + "#extended", SID):
            assert f in info["disco_info"]["features"]
        await close(a, b, c)
    run(main())


def test_start_and_end_follow_each_message_time_within_one_write_batch(server):
    """Archive writes are committed in batches (mam.write-delay, 1 s on
    SQLite): start/end must still split two messages of one batch at the
    time they were archived, not at the time the batch was written."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        a.send("bob@localhost", "early")
        await b.wait_msgs(1)
        await asyncio.sleep(0.3)
        mid = time.time()
        await asyncio.sleep(0.1)
        a.send("bob@localhost", "late")
        await b.wait_msgs(2)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mid)) + ".%03dZ" % int(mid % 1 * 1000)
        res, _ = await b.query({"start": stamp})
        assert [body(r[1]) for r in res] == ["late"]
        res, _ = await b.query({"end": stamp})
        assert [body(r[1]) for r in res] == ["early"]
        await close(a, b)
    run(main())


def test_not_archived(server):
    """groupchat, <no-store/>, <no-permanent-store/> and bare chat states are
    not archived and get no stanza-id; <store/> archives a message without
    body; an OMEMO message without body is archived as received."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        a.send("bob@localhost/pc", "room talk", type_="groupchat")
        a.send("bob@localhost", "secret", extra="<no-store xmlns='urn:xmpp:hints'/>")
        a.send("bob@localhost", "ephemeral", extra="<no-permanent-store xmlns='urn:xmpp:hints'/>")
        a.send("bob@localhost", None, extra="<composing xmlns='http://jabber.org/protocol/chatstates'/>")
        a.send("bob@localhost", None, extra="<store xmlns='urn:xmpp:hints'/><x xmlns='urn:example'/>")
        a.send("bob@localhost", None,
               extra="<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/>"
                     "<payload>b3BhcXVl</payload></encrypted>")
        got = await b.wait_msgs(6)
        assert [bool(sids(m)) for m in got] == [False, False, False, False, True, True]
        res, _ = await b.query()
        assert len(res) == 2
        enc = res[1][1].find("{eu.siacs.conversations.axolotl}encrypted/{eu.siacs.conversations.axolotl}payload")
        assert enc is not None and enc.text == "b3BhcXVl"
        # Alice's side: she sent 2 archivable of 6 (what she sent as groupchat
        # or with hints is not hers to keep either).
        res, _ = await a.query()
        assert len(res) == 2
        await close(a, b)
    run(main())


def test_preferences(server):
    """XEP-0441: default 'never' stops archiving (no stanza-id), except for
    JIDs in <always/>; 'roster' keeps only roster contacts; 'always' with a
    <never/> JID. The preferences survive a new login."""
    async def main():
        b = await connect(server, "bob@localhost/pc")
        a = await connect(server, "alice@localhost/pc")
        c = await connect(server, "carol@localhost/pc")
        p = await b.iq(f"<prefs xmlns='{MAM}'/>", type_="get")
        assert p.xml.find(f"{{{MAM}}}prefs").get("default") == "always"
        p = await b.iq(f"<prefs xmlns='{MAM}' default='never'><always><jid>carol@localhost</jid></always>"
                       f"<never/></prefs>")
        pr = p.xml.find(f"{{{MAM}}}prefs")
        assert pr.get("default") == "never"
        assert [j.text for j in pr.findall(f"{{{MAM}}}always/{{{MAM}}}jid")] == ["carol@localhost"]
        a.send("bob@localhost", "not kept")
        c.send("bob@localhost", "kept")
        got = await b.wait_msgs(2)
        assert [bool(sids(m)) for m in got] == [False, True]
        res, _ = await b.query()
        assert [body(r[1]) for r in res] == ["kept"]
        # roster: alice is added to bob's roster, carol is not.
        await b.iq("<query xmlns='jabber:iq:roster'><item jid='alice@localhost'/></query>")
        await b.iq(f"<prefs xmlns='{MAM}' default='roster'/>")
        a.send("bob@localhost", "roster kept")
        c.send("bob@localhost", "stranger not kept")
        got = await b.wait_msgs(4)
        assert [bool(sids(m)) for m in got[2:]] == [True, False]
        await b.iq(f"<prefs xmlns='{MAM}' default='always'><never><jid>alice@localhost</jid></never></prefs>")
        await close(b)
        b = await connect(server, "bob@localhost/again")
        p = await b.iq(f"<prefs xmlns='{MAM}'/>", type_="get")
        pr = p.xml.find(f"{{{MAM}}}prefs")
        assert pr.get("default") == "always"
        assert [j.text for j in pr.findall(f"{{{MAM}}}never/{{{MAM}}}jid")] == ["alice@localhost"]
        a.send("bob@localhost", "never alice")
        c.send("bob@localhost", "carol again")
        got = await b.wait_msgs(2)
        assert [bool(sids(m)) for m in got] == [False, True]
        res, _ = await b.query()
        assert [body(r[1]) for r in res] == ["kept", "roster kept", "carol again"]
        for bad, cond in ((f"<prefs xmlns='{MAM}' default='sometimes'/>", "bad-request"),
                          (f"<prefs xmlns='{MAM}' default='always'><always><jid>@@</jid></always></prefs>",
                           "jid-malformed")):
            with pytest.raises(IqError) as ei:
                await b.iq(bad)
            assert ei.value.iq["error"]["condition"] == cond
        await close(a, b, c)
    run(main())


def test_metadata_and_weftctl_delete(server, tmp_path):
    """#extended metadata names the first and last archived message; after
    `weftctl archive delete bob@localhost` bob's archive (also as seen through
    'with', the contact's tag) is empty while alice's stays."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        md = await b.iq(f"<metadata xmlns='{MAM}'/>", type_="get")
        assert list(md.xml.find(f"{{{MAM}}}metadata")) == []
        for i in range(3):
            a.send("bob@localhost", f"m{i}")
        await b.wait_msgs(3)
        res, _ = await b.query()
        md = (await b.iq(f"<metadata xmlns='{MAM}'/>", type_="get")).xml.find(f"{{{MAM}}}metadata")
        assert md.find(f"{{{MAM}}}start").get("id") == res[0][0]
        assert md.find(f"{{{MAM}}}end").get("id") == res[2][0]
        assert md.find(f"{{{MAM}}}end").get("timestamp") == res[2][2]
        r = subprocess.run([WEFTCTL, "--storage", sm_storage_url(tmp_path), "archive", "delete", "bob@localhost"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "3 messages" in r.stdout
        res, _ = await b.query()
        assert res == []
        res, _ = await b.query({"with": "alice@localhost"})
        assert res == []
        res, _ = await a.query()
        assert len(res) == 3
        r = subprocess.run([WEFTCTL, "--storage", sm_storage_url(tmp_path), "archive", "delete", "nobody@localhost"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "does not exist" in r.stderr
        await close(a, b)
    run(main())


def test_retention_by_count_and_age(tmp_path):
    """mam.max-messages keeps each archive's newest N (also as seen through
    'with'); mam.max-age then empties archives older than it, applied
    by the sm's cron without any client action."""
    s = start(tmp_path, sm_extra="<mam><max-messages>4</max-messages><max-age>4s</max-age>"
                                 "<sweep-period>1s</sweep-period></mam>")

    async def main():
        a = await connect(s, "alice@localhost/pc")
        b = await connect(s, "bob@localhost/pc")
        for i in range(7):
            a.send("bob@localhost", f"m{i}")
        await b.wait_msgs(7)
        await asyncio.sleep(2.0)
        res, _ = await b.query()
        assert [body(r[1]) for r in res] == ["m3", "m4", "m5", "m6"]
        res, _ = await b.query({"with": "alice@localhost"})
        assert [body(r[1]) for r in res] == ["m3", "m4", "m5", "m6"]
        await asyncio.sleep(4.5)
        res, _ = await b.query()
        assert res == []
        res, _ = await a.query({"with": "bob@localhost"})
        assert res == []
        await close(a, b)
    try:
        run(main())
    finally:
        s.close()


def test_unacked_delivery_keeps_its_id(server):
    """A XEP-0198 client reads three messages without acknowledging them and
    its connection drops: c2s hands them back, they go to offline storage
    with the ids they already had, and the archive holds each once. A
    made-up id in the right form is still removed."""
    import re
    raw = server.login("alice", PW, resource="sm")
    raw.send("<enable xmlns='urn:xmpp:sm:3'/>")
    raw.read_until(r"<enabled[^>]*/>")
    raw.send("<presence/>")
    raw.read_until(r"<presence[^>]*from=['\"]alice@localhost/sm")

    async def main():
        b = await connect(server, "bob@localhost/pc")
        for i in range(3):
            b.send("alice@localhost", f"unacked {i}")
        b.send("alice@localhost", "forged",
               extra=f"<stanza-id xmlns='{SID}' by='alice@localhost' id='{'0' * 28}'/>")
        seen = await asyncio.get_running_loop().run_in_executor(
            None, lambda: raw.read_until(r"<body>forged</body>[\s\S]*?</message>"))
        live = re.findall(r"<body>unacked \d</body>\s*<stanza-id[^>]*id=['\"]([0-9a-f]+)['\"]", seen)
        assert len(live) == 3, seen
        raw.drop()
        await asyncio.sleep(1.0)
        a = await connect(server, "alice@localhost/phone")
        got = await a.wait_msgs(4)
        assert [body(m) for m in got] == ["unacked 0", "unacked 1", "unacked 2", "forged"]
        assert [sids(m)[0][1] for m in got[:3]] == live
        assert len(sids(got[3])) == 1 and sids(got[3])[0][1] != "0" * 28
        res, _ = await a.query()
        assert [r[0] for r in res] == live + [sids(got[3])[0][1]]
        await close(a, b)
    run(main())


def test_a_copy_changed_on_the_way_is_archived_as_received(server):
    """The receiver's record reuses the bytes of the sender's only when its
    copy arrived unchanged (tree versions, docs/mam.md). Alice's message
    carries a stanza-id that claims to be Bob's archive's: Alice's archive
    keeps it as sent, Bob's copy loses it on the way in (XEP-0359 section
    4), and Bob's archive must hold the stanza as Bob got it."""
    fake = f"<stanza-id xmlns='{SID}' by='bob@localhost' id='forged-by-alice'/>"

    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        for i in range(5):
            a.send("bob@localhost", f"plain {i}")
            a.send("bob@localhost", f"forged {i}", extra=fake)
        got = await b.wait_msgs(10)
        live = [m for m in got if body(m).startswith("forged")]
        assert len(live) == 5
        assert all(("bob@localhost", "forged-by-alice") not in sids(m) for m in live)
        sent, _ = await a.query(rsm=f"<set xmlns='{RSM}'><max>100</max></set>")
        assert [body(r[1]) for r in sent] == [f"{k} {i}" for i in range(5) for k in ("plain", "forged")]
        assert all(("bob@localhost", "forged-by-alice") in sids(r[1])
                   for r in sent if body(r[1]).startswith("forged"))
        recv, _ = await b.query(rsm=f"<set xmlns='{RSM}'><max>100</max></set>")
        assert [body(r[1]) for r in recv] == [body(r[1]) for r in sent]
        for _, m, _ in recv:
            assert ("bob@localhost", "forged-by-alice") not in sids(m), ET.tostring(m)
        await close(a, b)
    run(main())


def test_one_stanza_in_two_archives(server, tmp_path):
    """A chat between two users of one sm is archived whole in both archives;
    on SQLite the receiver's record keeps only its first line and shares
    the stanza with the sender's (docs/mam.md, "One stanza, two archives").
    The receiver's archive reads the same before and after the sender's
    archive is deleted (`weftctl archive delete`), which gives the shared
    records their bytes back."""
    import sqlite3
    from conftest import STORAGE

    def shared():
        db = sqlite3.connect(str(tmp_path / "weft.db"))
        try:
            return db.execute("SELECT count(*) FROM logs WHERE base IS NOT NULL").fetchone()[0]
        finally:
            db.close()

    def as_text(res):
        return [(i, ET.tostring(m), stamp) for i, m, stamp in res]

    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        texts = [f"m{i:02} caf\u00e9 \u2713 " + "x" * 100 for i in range(40)]
        for t in texts:
            a.send("bob@localhost", t)
        await b.wait_msgs(40)
        before, fin = await b.query(rsm=f"<set xmlns='{RSM}'><max>100</max></set>")
        assert fin.get("complete") == "true"
        assert [body(r[1]) for r in before] == texts
        assert all(r[1].get("from") == "alice@localhost/pc" for r in before)
        sent, _ = await a.query(rsm=f"<set xmlns='{RSM}'><max>100</max></set>")
        assert [body(r[1]) for r in sent] == [body(r[1]) for r in before]
        if STORAGE != "postgresql":
            assert shared() >= 20      # most: a batch may end between the two copies
        r = subprocess.run([WEFTCTL, "--storage", sm_storage_url(tmp_path), "archive", "delete",
                            "alice@localhost"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        res, _ = await a.query()
        assert res == []
        after, fin = await b.query(rsm=f"<set xmlns='{RSM}'><max>100</max></set>")
        assert as_text(after) == as_text(before)
        if STORAGE != "postgresql":
            assert shared() == 0
        await close(a, b)
    run(main())
