"""The server's own XEP-0115 entity capabilities in c2s's stream features
(section 6.3; docs/c2s.md): after authentication the features carry
<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node=... ver=.../>
whose ver is the hash of the disco#info the domain answers.

The client here is independent of weft's code: raw sockets read the exact
features and ask the domain's disco#info, and the hash is computed in Python
from the XEP's text (xep0115_ver below, checked against the XEP's own
examples). slixmpp, which verifies a server's caps feature by itself, must
accept it too. Switching a module off in sm.xml and restarting the sm
changes the hash; an sm that cannot answer leaves the <c/> out.
"""
import asyncio
import base64
import hashlib
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import wait_for
from server import RawClient, Server

PW = "secret-pw"
CAPS = "http://jabber.org/protocol/caps"
DISCO = "http://jabber.org/protocol/disco#info"
XDATA = "jabber:x:data"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
NODE = "https://weft.im"


def xep0115_ver(query):
    """XEP-0115 section 5.1 on an ElementTree disco#info <query/>, with the
    section 5.4 checks: None when the answer is ill-formed."""
    ids = [(i.get("category", ""), i.get("type", ""), i.get(XML_LANG, ""), i.get("name", ""))
           for i in query.findall(f"{{{DISCO}}}identity")]
    if len(set(ids)) != len(ids):
        return None
    feats = [f.get("var") for f in query.findall(f"{{{DISCO}}}feature")]
    if len(set(feats)) != len(feats):
        return None
    forms = {}
    for x in query.findall(f"{{{XDATA}}}x"):
        ft = [f for f in x.findall(f"{{{XDATA}}}field") if f.get("var") == "FORM_TYPE"]
        if not ft or ft[0].get("type") != "hidden":
            continue
        types = {v.text or "" for v in ft[0].findall(f"{{{XDATA}}}value")}
        if len(types) > 1:
            return None
        if not types:
            continue
        t = types.pop()
        if t in forms:
            return None
        forms[t] = x
    # Python orders str by code point, which is the UTF-8 byte order (i;octet).
    s = "".join("/".join(i) + "<" for i in sorted(ids))
    s += "".join(f + "<" for f in sorted(feats))
    for t in sorted(forms):
        s += t + "<"
        fields = sorted((f.get("var"), sorted(v.text or "" for v in f.findall(f"{{{XDATA}}}value")))
                        for f in forms[t].findall(f"{{{XDATA}}}field")
                        if f.get("var") not in (None, "FORM_TYPE"))
        for var, values in fields:
            s += var + "<" + "".join(v + "<" for v in values)
    return base64.b64encode(hashlib.sha1(s.encode("utf-8")).digest()).decode()


def test_reference_hash_matches_the_xep_examples():
    """The test's own hash function gives the XEP's results (5.2, 5.3)."""
    feats = "".join(f"<feature var='http://jabber.org/protocol/{f}'/>"
                    for f in ("caps", "disco#info", "disco#items", "muc"))
    simple = ET.fromstring(f"<query xmlns='{DISCO}'><identity category='client' name='Exodus 0.9.1' "
                           f"type='pc'/>{feats}</query>")
    assert xep0115_ver(simple) == "QgayPKawpkPSDYmwT/WM94uAlu0="
    form = ("<x xmlns='jabber:x:data' type='result'>"
            "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>"
            "<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>"
            "<field var='os'><value>Mac</value></field><field var='os_version'><value>10.5.1</value></field>"
            "<field var='software'><value>Psi</value></field>"
            "<field var='software_version'><value>0.11</value></field></x>")
    complex_ = ET.fromstring(f"<query xmlns='{DISCO}'>"
                             "<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>"
                             "<identity xml:lang='el' category='client' name='\u03a8 0.11' type='pc'/>"
                             f"{feats}{form}</query>")
    assert xep0115_ver(complex_) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def caps_lines(srv):
    return [line for line in srv.log("c2s").splitlines() if "event=server-caps ver=" in line]


def start(srv, sm_extra=""):
    srv.start(sm_extra=sm_extra)
    srv.register("alice", PW)
    assert wait_for(lambda: caps_lines(srv), 10), srv.log("c2s")


def login(srv):
    """Authenticates alice over a raw stream; returns the client, the features
    before authentication and those after it (exact bytes)."""
    c = RawClient(srv)
    c.open()
    before = c.starttls()
    msg = base64.b64encode(f"\0alice\0{PW}".encode()).decode()
    c.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{msg}</auth>")
    c.read_until(r"<success[^>]*(/>|>[^<]*</success>)")
    c.buf = ""
    after = c.open()
    return c, before, after


def caps_of(features):
    """(hash, node, ver) of the <c/> in features, or None."""
    m = re.search(r"<c\s[^>]*/>", features)
    if not m:
        return None
    c = ET.fromstring(m.group(0))
    assert c.tag == f"{{{CAPS}}}c", m.group(0)
    return c.get("hash"), c.get("node"), c.get("ver")


def disco(c, node=None, iq_id="d1"):
    """The domain's answer to disco#info (optionally of node): the <iq/> element."""
    n = f" node='{node}'" if node else ""
    c.send(f"<iq type='get' id='{iq_id}' to='localhost'><query xmlns='{DISCO}'{n}/></iq>")
    r = c.read_until(rf"<iq[^>]*id=['\"]{iq_id}['\"][^>]*(/>|>[\s\S]*?</iq>)")
    m = re.search(rf"<iq[^>]*id=['\"]{iq_id}['\"][\s\S]*", r)
    return ET.fromstring(m.group(0).replace("<iq ", "<iq xmlns='jabber:client' ", 1))


def server_ver(c):
    iq = disco(c)
    assert iq.get("type") == "result", ET.tostring(iq)
    q = iq.find(f"{{{DISCO}}}query")
    feats = [f.get("var") for f in q.findall(f"{{{DISCO}}}feature")]
    return xep0115_ver(q), feats


def test_features_carry_the_servers_caps(srv):
    start(srv)
    c, before, after = login(srv)
    assert caps_of(before) is None          # only after authentication
    caps = caps_of(after)
    assert caps is not None, after
    h, node, ver = caps
    assert h == "sha-1" and node == NODE
    c.bind("r")
    want, feats = server_ver(c)
    assert CAPS in feats                    # section 7: the server says it supports caps
    assert want and ver == want, (ver, want)
    # The caps node (node#ver) answers as the domain itself (section 6.2)...
    iq = disco(c, node=f"{NODE}#{ver}", iq_id="d2")
    assert iq.get("type") == "result", ET.tostring(iq)
    q = iq.find(f"{{{DISCO}}}query")
    assert q.get("node") == f"{NODE}#{ver}"
    assert xep0115_ver(q) == ver
    # ...and a node with another hash does not exist.
    iq = disco(c, node=f"{NODE}#bm90LXRoZS1oYXNoLXZhbHVlPT0=", iq_id="d3")
    assert iq.get("type") == "error" and iq.find(".//{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
    c.close()


def test_ver_follows_the_sm_modules(srv):
    """A module switched off in sm.xml: after the sm restarts, c2s asks
    again and announces the new hash (and none while no sm is up)."""
    start(srv)
    c, _, after = login(srv)
    ver1 = caps_of(after)[2]
    c.bind("r")
    assert server_ver(c)[0] == ver1
    assert "vcard-temp" in server_ver(c)[1]
    c.close()
    srv.sm.stop()
    assert wait_for(lambda: "event=server-caps result=withdrawn reason=sm-down" in srv.log("c2s"), 10), \
        srv.log("c2s")
    n = len(caps_lines(srv))
    srv.sm_extra = "<module name='vcard' enabled='false'/>"
    srv.start_sm()
    assert wait_for(lambda: len(caps_lines(srv)) > n, 15), srv.log("c2s")
    c, _, after = login(srv)
    ver2 = caps_of(after)[2]
    c.bind("r")
    want, feats = server_ver(c)
    assert "vcard-temp" not in feats
    assert ver2 == want and ver2 != ver1, (ver1, ver2, want)
    c.close()


def test_no_answer_no_caps(srv):
    """The sm does not answer the domain's disco#info (disco switched off):
    the features carry no <c/>, never a hash that may be wrong."""
    srv.start(sm_extra="<module name='disco' enabled='false'/>")
    srv.register("alice", PW)
    assert wait_for(lambda: "event=server-caps result=none" in srv.log("c2s"), 10), srv.log("c2s")
    c, _, after = login(srv)
    assert "<bind " in after and caps_of(after) is None, after
    c.close()


def test_slixmpp_verifies_the_servers_caps(srv):
    """slixmpp reads the caps feature, asks the domain for node#ver and
    checks the hash itself before it caches it for the domain."""
    slixmpp = pytest.importorskip("slixmpp")
    start(srv)
    c, _, after = login(srv)
    ver = caps_of(after)[2]
    c.close()

    async def main():
        x = srv.slixmpp_client("alice@localhost/sx", PW)
        fm = x["feature_mechanisms"]
        creds = fm.sasl_callback
        fm.sasl_callback = lambda req, opt: {**creds(req, opt), "channel_binding": None}
        fm.use_mech = "SCRAM-SHA-256"
        for p in ("xep_0030", "xep_0004", "xep_0128", "xep_0115"):
            x.register_plugin(p)
        started = asyncio.get_running_loop().create_future()
        x.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
        x.connect(("127.0.0.1", srv.port))
        await asyncio.wait_for(started, 20)
        got = None
        for _ in range(50):
            got = await x["xep_0115"].get_verstring(slixmpp.JID("localhost"))
            if got:
                break
            await asyncio.sleep(0.1)
        x.disconnect()
        return got

    assert asyncio.run(asyncio.wait_for(main(), 60)) == ver
