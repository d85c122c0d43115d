"""XEP-0352 client state indication in c2s: <inactive/> and <active/> are
accepted and advertised; while a client is inactive presences and chat
states wait in c2s, collapsed to the latest per sender; a message with a
body, an iq or <active/> sends everything held first, in order; the queue
is bounded (csi.queue-max); held stanzas are outside XEP-0198's count and
are not acknowledged to the router (a c2s killed meanwhile: the next one
hands them back to the sm).

The client under test is raw XML over a socket (server.RawClient) read with
an XML pull parser (stanza_client.Session), so every stanza and its order is
seen as the server wrote it.
"""
import re
import time

import pytest

from conftest import wait_for
from server import RawClient, Server
from stanza_client import Session, tag

CSI = "urn:xmpp:csi:0"
CHATSTATES = "http://jabber.org/protocol/chatstates"


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def nothing_arrives(sess, secs=0.6):
    """Reads for secs: nothing may arrive (the client is inactive)."""
    end = time.time() + secs
    while time.time() < end:
        sess._read(max(0.05, end - time.time()))
    got = sess.take()
    assert not got, [s.tag for s in got]


def describe(st):
    """A short name for a stanza: kind, sender's resource, what it carries."""
    res = (st.get("from") or "").split("/")[-1]
    if st.tag == tag("presence"):
        show = st.find(tag("show"))
        return f"presence {res} {show.text if show is not None else st.get('type') or 'available'}"
    if st.tag == tag("message"):
        body = st.find(tag("body"))
        if body is not None:
            return f"message {res} {body.text}"
        for ch in st:
            return f"message {res} {ch.tag.split('}')[1]}"
        return f"message {res} empty"
    return f"{st.tag.split('}')[1]} {res} {st.get('id')}"


def read_n(sess, n, timeout=10):
    end = time.time() + timeout
    while len(sess.inbox) < n and time.time() < end:
        sess._read(0.2)
    got = sess.take()
    return [describe(s) for s in got]


def read_through(sess, last, timeout=10):
    """Everything up to and including the stanza described as last."""
    got = []
    end = time.time() + timeout
    while last not in got and time.time() < end:
        sess._read(0.2)
        got += [describe(s) for s in sess.take()]
    assert last in got, got
    return got


def users(srv, extra=""):
    srv.start(c2s_extra=extra)
    srv.register("ann", "pw")
    srv.register("bob", "pw")
    ann = Session(srv.login("ann", "pw", resource="phone"))
    b1 = Session(srv.login("bob", "pw", resource="b1"))
    b2 = Session(srv.login("bob", "pw", resource="b2"))
    return ann, b1, b2


# Each sender then makes a round trip through the sm (sync): what it sent
# has reached ann's c2s before the next sender's stanza, so the order seen by
# ann is the test's order.
def pres(sender, show):
    sender.send(f"<presence to='ann@localhost/phone'><show>{show}</show></presence>")
    sender.sync()


def chat_state(sender, state):
    sender.send(f"<message type='chat' to='ann@localhost/phone'><{state} xmlns='{CHATSTATES}'/></message>")
    sender.sync()


def test_inactive_is_advertised_and_accepted(srv):
    """On the code before CSI, <inactive/> closed the stream with
    unsupported-stanza-type; now it is a stream feature and the stream goes
    on."""
    srv.start()
    srv.register("ann", "pw")
    c = RawClient(srv)
    c.open()
    c.starttls()
    feats = []
    orig = c.open
    c.open = lambda **kw: feats.append(orig(**kw)) or feats[-1]
    assert c.auth("ann", "pw")
    assert f"<csi xmlns='{CSI}'/>" in feats[0], feats
    c.bind("phone")
    c.send(f"<inactive xmlns='{CSI}'/>")
    c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    r = c.read_until(r"<iq[^>]*p1[^>]*/?>")
    assert "type='result'" in r and "stream:error" not in r, r
    c.send(f"<active xmlns='{CSI}'/>")
    c.send("<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "type='result'" in c.read_until(r"<iq[^>]*p2[^>]*/?>")
    assert "unsupported-stanza-type" not in srv.log("c2s")


def test_hold_collapse_and_flush_order(srv):
    ann, b1, b2 = users(srv)
    ann.send(f"<inactive xmlns='{CSI}'/>")
    time.sleep(0.2)
    pres(b1, "away")
    pres(b2, "xa")
    pres(b1, "dnd")              # replaces b1's away
    chat_state(b1, "composing")
    chat_state(b1, "paused")     # replaces composing
    chat_state(b2, "composing")
    b1.send("<message to='ann@localhost/phone' id='rc'><received xmlns='urn:xmpp:receipts' id='x'/></message>")
    nothing_arrives(ann)
    b1.send("<message type='chat' to='ann@localhost/phone'><body>hello</body></message>")
    got = read_n(ann, 6)
    assert got == ["presence b2 xa", "presence b1 dnd", "message b1 paused", "message b2 composing",
                   "message b1 received", "message b1 hello"], got
    # Still inactive: the next presence waits again.
    pres(b2, "chat")
    nothing_arrives(ann, 0.4)
    ann.send(f"<active xmlns='{CSI}'/>")
    assert read_n(ann, 1) == ["presence b2 chat"]
    # Active: a presence comes at once.
    pres(b1, "away")
    assert read_n(ann, 1, timeout=3) == ["presence b1 away"]


def test_iq_error_and_subscription_flush(srv):
    """An iq for the client, an error and a subscription request each send
    what is held first."""
    ann, b1, b2 = users(srv)
    ann.presence()   # available: a subscription request is delivered live
    ann.send(f"<inactive xmlns='{CSI}'/>")
    time.sleep(0.2)
    pres(b1, "away")
    nothing_arrives(ann, 0.3)
    b2.send("<iq type='get' id='v1' to='ann@localhost/phone'><query xmlns='jabber:iq:version'/></iq>")
    assert read_n(ann, 2) == ["presence b1 away", "iq b2 v1"]
    chat_state(b1, "composing")
    nothing_arrives(ann, 0.3)
    b2.send("<message type='error' to='ann@localhost/phone' id='e1'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
    assert read_n(ann, 2) == ["message b1 composing", "message b2 error"]
    pres(b2, "dnd")
    nothing_arrives(ann, 0.3)
    b1.send("<presence type='subscribe' to='ann@localhost'/>")
    got = read_n(ann, 2)
    assert got == ["presence b2 dnd", "presence bob@localhost subscribe"], got
    # A call (Jingle message initiation) is a message without body that
    # cannot wait.
    chat_state(b2, "gone")
    nothing_arrives(ann, 0.3)
    b1.send("<message to='ann@localhost/phone' id='call'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'>"
            "<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>")
    assert read_n(ann, 2) == ["message b2 gone", "message b1 propose"]


def test_queue_bound_flushes(srv):
    ann, b1, b2 = users(srv, "<csi><queue-max>3</queue-max></csi>")
    ann.send(f"<inactive xmlns='{CSI}'/>")
    time.sleep(0.2)
    for i in range(2):
        b1.send(f"<message to='ann@localhost/phone' id='r{i}'><received xmlns='urn:xmpp:receipts' id='{i}'/>"
                f"</message>")
    nothing_arrives(ann)
    b1.send("<message to='ann@localhost/phone' id='r2'><received xmlns='urn:xmpp:receipts' id='2'/></message>")
    assert read_n(ann, 3) == ["message b1 received"] * 3
    assert wait_for(lambda: "reason=queue-max" in srv.log("c2s"), 3)


def test_held_stanzas_are_outside_the_stream_management_count(srv):
    ann, b1, b2 = users(srv)
    ann.send("<enable xmlns='urn:xmpp:sm:3'/>")
    ann.wait(lambda st: st.tag.endswith("}enabled"))
    ann.send(f"<inactive xmlns='{CSI}'/>")
    time.sleep(0.2)
    pres(b1, "away")
    pres(b2, "away")
    nothing_arrives(ann)
    # Nothing was sent: h=0 is right, h=1 would acknowledge a stanza never sent.
    ann.send("<a xmlns='urn:xmpp:sm:3' h='0'/>")
    b1.send("<message type='chat' to='ann@localhost/phone'><body>now</body></message>")
    got = read_through(ann, "message b1 now")
    stanzas = [g for g in got if not g.startswith("r ")]
    assert stanzas == ["presence b1 away", "presence b2 away", "message b1 now"], got
    ann.send("<a xmlns='urn:xmpp:sm:3' h='3'/>")
    ann.send(f"<active xmlns='{CSI}'/>")
    ann.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    ann.wait(lambda st: st.get("id") == "p1" and st.get("type") == "result")
    assert "event=stream-error" not in srv.log("c2s")   # no undefined-condition for h


def test_held_presence_is_not_acknowledged_to_the_router(srv):
    """c2s acknowledges a held stanza to the router only once it is written
    (docs/c2s.md, "Delivery and acknowledgement"): c2s killed while a
    presence is held, the router gives it to the next c2s, which hands it
    back to the sm. Within timeouts.delivery-ack (raised here to 60 s, so a
    slow machine cannot let it pass)."""
    ann, b1, b2 = users(srv, "<timeouts><delivery-ack>60</delivery-ack></timeouts>")
    ann.send(f"<inactive xmlns='{CSI}'/>")
    time.sleep(0.2)
    pres(b1, "away")
    nothing_arrives(ann, 0.3)
    srv.c2s.kill9()
    srv.c2s = srv._spawn(srv.c2s.args, "c2s.log")
    assert wait_for(lambda: srv.log("c2s").count("event=router-ready") >= 2, 20)
    returned = re.compile(r"event=delivery-returned reason=no-session sid=\d+ element=presence")
    assert wait_for(lambda: returned.search(srv.log("c2s")), 10), srv.log("c2s")[-2000:]
