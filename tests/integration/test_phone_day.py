"""A phone's day (issue 14), as one test: ann has a laptop (A) and a phone
(B), bob writes to her.

B enables push with a fake app server (a XEP-0114 component on a raw
socket), stream management with resumption, and says it is inactive
(XEP-0352). Then its network dies without a word: the socket stays open,
nothing is read or answered. bob sends ten messages. A gets them live; c2s
writes B's copies into the dead socket, its <r/> goes unanswered, and after
stream-management.ack-timeout the session hibernates; the app server gets
the push (message-count 10 in the end, no sender or body). B comes back on
a new connection, resumes, and gets the ten exactly once, in order. A third
device (C) logs in fresh and fetches the same ten from the archive (MAM)
with the same stanza ids.

The MAM step needs branch mam (sm/mod_mam.c): until it is merged the
archive is not advertised and the test ends there as xfail, marked
"WAITING ON MAM"; everything before it has passed by then.
"""
import re
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import wait_for
from server import Server
from stanza_client import Session, tag
from test_iq_rules import component
from test_push import APP, OPTIONS, PUSH, fields, next_publish

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
FWD = "urn:xmpp:forward:0"
BODY_RX = re.compile(r"<body>(day-\d+)</body>")


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def stanza_ids(xml_text):
    """(body, stanza-id) of each message in a piece of stream, in order."""
    out = []
    wrapped = ET.fromstring("<s xmlns='jabber:client'>" + re.sub(r"<r xmlns='urn:xmpp:sm:3'/>|<resumed[^>]*/>",
                                                                   "", xml_text) + "</s>")
    for m in wrapped.iter(tag("message")):
        b = m.find(tag("body"))
        sid = m.find(f"{{{SID}}}stanza-id")
        if b is not None:
            out.append((b.text, sid.get("id") if sid is not None else None))
    return out


def test_phone_day(srv):
    srv.start(router_extra=APP, c2s_extra="<stream-management><ack-timeout>2</ack-timeout></stream-management>")
    srv.register("ann", "pw")
    srv.register("bob", "pw")
    app = component(srv.router_port, "push.localhost", "push-secret")

    # Morning: the phone connects, enables push and stream management, and
    # goes to sleep (CSI).
    b = srv.login("ann", "pw", resource="phone")
    b.send(f"<iq type='set' id='push1'><enable xmlns='{PUSH}' jid='push.localhost' node='phone-node'>"
           f"{OPTIONS}</enable></iq>")
    assert "type='result'" in b.read_until(r"<iq[^>]*push1[^>]*>")
    b.send("<presence/>")
    b.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    previd = re.search(r"id='([^']+)'", b.read_until(r"<enabled[^>]*/>")).group(1)
    b.send("<inactive xmlns='urn:xmpp:csi:0'/>")
    a = Session(srv.login("ann", "pw", resource="laptop"))
    a.presence()
    bob = Session(srv.login("bob", "pw", resource="pc"))
    time.sleep(0.3)

    # The phone's network dies silently: from now on b is never read again
    # and sends nothing.
    t0 = time.time()
    for i in range(10):
        bob.send(f"<message type='chat' to='ann@localhost' id='d{i}'><body>day-{i}</body></message>")
    live = []
    while len(live) < 10:
        st = a.wait(lambda st: st.find(tag("body")) is not None, timeout=15)
        live.append(st.find(tag("body")).text)
    assert live == [f"day-{i}" for i in range(10)]

    # The app server is told, without sender or body.
    count, pubs = 0, 0
    while count < 10:
        pub = next_publish(app, timeout=20)
        pubs += 1
        node, f, secret = fields(pub)
        assert node == "phone-node" and secret == "s3cr3t"
        assert set(f) == {"FORM_TYPE", "message-count"}, f
        count = int(f["message-count"])
        app.send(f"<iq type='result' id='{pub.get('id')}' from='push.localhost' to='ann@localhost'/>")
    assert count == 10
    log = srv.log("c2s")
    assert "event=ack-timeout" in log and "event=detached" in log, log[-3000:]
    print(f"phone day: hibernated and pushed {time.time() - t0:.1f} s after the first message, "
          f"{pubs} publish(es)")

    # The phone wakes up on a new connection and resumes: the ten, once, in
    # order (h=0: it never handled a stanza since <enable/>).
    b2 = srv.login("ann", "pw", bind=False)
    b2.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
    got = b2.read_until(r"<body>day-9</body>[\s\S]*?</message>")
    assert "<resumed" in got
    time.sleep(0.5)
    try:
        b2.read_until(r"<body>day-", timeout=0.5)
        extra = True
    except TimeoutError:
        extra = False
    assert not extra, "a message came twice"
    resumed = stanza_ids(got[got.index("<resumed"):])
    assert [body for body, _ in resumed] == [f"day-{i}" for i in range(10)], resumed
    b2.send("<active xmlns='urn:xmpp:csi:0'/>")
    bob.send("<message type='chat' to='ann@localhost/phone'><body>lunch?</body></message>")
    b2.read_until(r"lunch\?</body>")

    # Evening: a tablet logs in fresh and reads the day from the archive.
    c = Session(srv.login("ann", "pw", resource="tablet"))
    c.send("<iq type='get' id='disco1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    info = c.wait(lambda st: st.get("id") == "disco1")
    features = [f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")]
    if MAM not in features:
        pytest.xfail("WAITING ON MAM (branch mam, sm/mod_mam.c): the archive step of the phone's day "
                     "runs once mod_mam is merged; everything before it passed")
    c.send(f"<iq type='set' id='mam1'><query xmlns='{MAM}' queryid='day'>"
           f"<x xmlns='jabber:x:data' type='submit'>"
           f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
           f"<field var='with'><value>bob@localhost</value></field></x></query></iq>")
    fin = c.wait(lambda st: st.get("id") == "mam1", timeout=15)
    assert fin.get("type") == "result", ET.tostring(fin)
    archived = []
    for m in c.take():
        res = m.find(f"{{{MAM}}}result")
        if res is None or res.get("queryid") != "day":
            continue
        inner = res.find(f"{{{FWD}}}forwarded/{tag('message')}")
        body = inner.find(tag("body")) if inner is not None else None
        if body is not None and body.text.startswith("day-"):
            archived.append((body.text, res.get("id")))
    assert archived == resumed, (archived, resumed)
    assert all(sid for _, sid in resumed), resumed
    assert len({sid for _, sid in resumed}) == 10
