"""The sm's IQ services end to end: router, sm and c2s (server.py) driven by
slixmpp, an independent client implementation. Each service answers as
docs/sm-modules.md says; an unknown namespace gets service-unavailable.
"""
import asyncio
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

slixmpp = pytest.importorskip("slixmpp")
from slixmpp.exceptions import IqError  # noqa: E402

from server import Server  # noqa: E402

PLUGINS = ("xep_0030", "xep_0012", "xep_0054", "xep_0092", "xep_0191", "xep_0199", "xep_0202", "xep_0280")
PW = "secret-pw"


def make_certs(d):
    """A self-signed localhost certificate where server.py's c2s config wants it."""
    certs = d / "certs"
    if (certs / "localhost.crt").exists():
        return
    certs.mkdir(exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(certs / "localhost.key"), "-out", str(certs / "localhost.crt")],
                   check=True, capture_output=True)


@pytest.fixture
def server(tmp_path):
    make_certs(tmp_path)
    s = Server(tmp_path).start()
    for user in ("alice", "bob", "eve"):
        s.register(user, PW)
    yield s
    s.close()


async def connect(server, jid):
    x = server.slixmpp_client(jid, PW)
    # slixmpp 1.8 binds channels with tls-unique, which c2s does not offer:
    # these tests are about the sm, so they log in with SCRAM-SHA-256 and no
    # channel binding (gs2 flag 'n').
    fm = x["feature_mechanisms"]
    creds = fm.sasl_callback
    fm.sasl_callback = lambda req, opt: {**creds(req, opt), "channel_binding": None}
    fm.use_mech = "SCRAM-SHA-256"
    for p in PLUGINS:
        x.register_plugin(p)
    started = asyncio.get_running_loop().create_future()

    def on_start(_):
        if not started.done():
            started.set_result(True)

    def on_fail(_):
        if not started.done():
            started.set_exception(AssertionError(f"{jid}: authentication failed"))

    x.add_event_handler("session_start", on_start)
    x.add_event_handler("failed_auth", on_fail)
    x.connect(("127.0.0.1", server.port))
    await asyncio.wait_for(started, 20)
    await x.get_roster()
    x.send_presence()
    return x


async def close(*clients):
    for x in clients:
        x.disconnect()
    await asyncio.sleep(0.2)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 60))


def condition(exc):
    return exc.iq["error"]["condition"]


async def raw_iq(x, xml, to=None, type_="get"):
    iq = x.Iq()
    iq["type"] = type_
    if to:
        iq["to"] = to
    iq.xml.append(ET.fromstring(xml))
    return await iq.send(timeout=10)


def test_disco(server):
    async def main():
        a = await connect(server, "alice@localhost/pc")
        e = await connect(server, "eve@localhost/pc")
        info = await a["xep_0030"].get_info(jid="localhost")
        ids = info["disco_info"]["identities"]
        assert ("server", "im", None, "weft") in ids, ids
        feats = info["disco_info"]["features"]
        for want in ("http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items",
                     "vcard-temp", "jabber:iq:private", "urn:xmpp:blocking", "urn:xmpp:carbons:2",
                     "jabber:iq:version", "urn:xmpp:time", "urn:xmpp:ping", "jabber:iq:last"):
            assert want in feats, (want, feats)
        assert len(feats) == len(set(feats))
        items = await a["xep_0030"].get_items(jid="localhost")
        assert list(items["disco_items"]["items"]) == []
        own = await a["xep_0030"].get_info(jid="alice@localhost")
        assert any(i[0] == "account" and i[1] == "registered" for i in own["disco_info"]["identities"])
        with pytest.raises(IqError) as ei:
            await e["xep_0030"].get_info(jid="alice@localhost")
        assert condition(ei.value) == "service-unavailable"
        await close(a, e)
    run(main())


def test_version_time_ping_last(server):
    async def main():
        a = await connect(server, "alice@localhost/pc")
        e = await connect(server, "eve@localhost/pc")
        v = await a["xep_0092"].get_version("localhost")
        assert v["software_version"]["name"] == "weft" and v["software_version"]["version"] == "0.1.0"
        t = await a["xep_0202"].get_entity_time("localhost")
        assert re.fullmatch(r"[+-]\d\d:\d\d", t.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}tzo").text)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                            t.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}utc").text)
        assert await a["xep_0199"].ping("localhost", timeout=10) is not None
        assert await a["xep_0199"].ping("alice@localhost", timeout=10) is not None
        last = await a["xep_0012"].get_last_activity("localhost")
        assert int(last["last_activity"]["seconds"]) >= 0
        mine = await a["xep_0012"].get_last_activity("alice@localhost")
        assert int(mine["last_activity"]["seconds"]) == 0           # online
        with pytest.raises(IqError) as ei:
            await e["xep_0012"].get_last_activity("alice@localhost")
        assert condition(ei.value) == "forbidden"
        await close(a, e)
    run(main())


def test_unknown_namespace(server):
    async def main():
        a = await connect(server, "alice@localhost/pc")
        for to in ("localhost", "alice@localhost", "bob@localhost", None):
            with pytest.raises(IqError) as ei:
                await raw_iq(a, "<nothing xmlns='urn:example:unknown'/>", to=to)
            assert condition(ei.value) == "service-unavailable", to
        await close(a)
    run(main())


def test_vcard(server):
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        vc = a["xep_0054"].make_vcard()
        vc["FN"] = "Alice Liddell"
        await a["xep_0054"].publish_vcard(vc)
        got = await b["xep_0054"].get_vcard("alice@localhost", cached=False)
        assert got["vcard_temp"]["FN"] == "Alice Liddell"
        empty = await a["xep_0054"].get_vcard("bob@localhost", cached=False)
        assert empty["vcard_temp"]["FN"] == ""
        with pytest.raises(IqError) as ei:
            await raw_iq(b, "<vCard xmlns='vcard-temp'><FN>x</FN></vCard>", to="alice@localhost", type_="set")
        assert condition(ei.value) == "forbidden"
        await close(a, b)
    run(main())


def test_private_storage(server):
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        await raw_iq(a, "<query xmlns='jabber:iq:private'><prefs xmlns='x:prefs'><n>1</n></prefs></query>",
                     type_="set")
        r = await raw_iq(a, "<query xmlns='jabber:iq:private'><prefs xmlns='x:prefs'/></query>")
        assert r.xml.find("{jabber:iq:private}query/{x:prefs}prefs/{x:prefs}n").text == "1"
        with pytest.raises(IqError) as ei:
            await raw_iq(a, "<query xmlns='jabber:iq:private'><x xmlns='jabber:iq:roster'/></query>", type_="set")
        assert condition(ei.value) == "not-acceptable"
        with pytest.raises(IqError) as ei:
            await raw_iq(b, "<query xmlns='jabber:iq:private'><prefs xmlns='x:prefs'/></query>", to="alice@localhost")
        assert condition(ei.value) == "forbidden"
        await close(a, b)
    run(main())


def test_blocking(server):
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        assert set((await a["xep_0191"].get_blocked())["blocklist"]["items"]) == set()
        await a["xep_0191"].block(["bob@localhost"])
        items = {str(j) for j in (await a["xep_0191"].get_blocked())["blocklist"]["items"]}
        assert items == {"bob@localhost"}
        errors = asyncio.Queue()
        b.add_event_handler("message_error", lambda m: errors.put_nowait(m))
        b.send_message(mto="alice@localhost", mbody="hello?", mtype="chat")
        m = await asyncio.wait_for(errors.get(), 10)
        assert m["error"]["condition"] == "service-unavailable"
        with pytest.raises(IqError) as ei:
            await b["xep_0054"].get_vcard("alice@localhost", cached=False)
        assert condition(ei.value) == "service-unavailable"
        await a["xep_0191"].unblock(["bob@localhost"])
        assert set((await a["xep_0191"].get_blocked())["blocklist"]["items"]) == set()
        await close(a, b)
    run(main())


def test_carbons(server):
    async def main():
        a1 = await connect(server, "alice@localhost/one")
        a2 = await connect(server, "alice@localhost/two")
        b = await connect(server, "bob@localhost/pc")
        await a1["xep_0280"].enable()
        received, sent = asyncio.Queue(), asyncio.Queue()
        a1.add_event_handler("carbon_received", lambda m: received.put_nowait(m))
        a1.add_event_handler("carbon_sent", lambda m: sent.put_nowait(m))
        b.send_message(mto="alice@localhost/two", mbody="to two", mtype="chat")
        m = await asyncio.wait_for(received.get(), 10)
        assert m["carbon_received"]["body"] == "to two"
        a2.send_message(mto="bob@localhost", mbody="from two", mtype="chat")
        m = await asyncio.wait_for(sent.get(), 10)
        assert m["carbon_sent"]["body"] == "from two"
        await a1["xep_0280"].disable()
        await close(a1, a2, b)
    run(main())


if __name__ == "__main__":
    raise SystemExit(pytest.main([os.path.abspath(__file__), "-q"]))
