"""XEP-0357 push notifications (sm/mod_push.c) with a fake app server: a
XEP-0114 component on a raw socket (push.localhost) that reads the publish
iqs and answers them.

A device enables push and hibernates (XEP-0198: its connection drops, the
session waits for it); a message for it makes the sm publish a summary
notification to the app server, with the device's publish-options; a
device that is offline (session gone) gets one for each message that goes
to offline storage; an error from the app server disables the
registration; the registration is stored (it survives an sm restart).
"""
import re
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import wait_for
from server import Server
from stanza_client import Session, error_condition, tag
from test_iq_rules import component

PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
XDATA = "jabber:x:data"
APP = "<component name='push.localhost' secret='push-secret' protocol='xep0114'/>"
OPTIONS = (f"<x xmlns='{XDATA}' type='submit'><field var='FORM_TYPE'>"
           f"<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
           f"<field var='secret'><value>s3cr3t</value></field></x>")


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def start(srv, sm_extra=""):
    srv.start(router_extra=APP, sm_extra=sm_extra)
    srv.register("ann", "pw")
    srv.register("bob", "pw")
    app = component(srv.router_port, "push.localhost", "push-secret")
    return app


def iq(sess, payload, iq_id, to=None, kind="set"):
    t = f" to='{to}'" if to else ""
    sess.send(f"<iq type='{kind}' id='{iq_id}'{t}>{payload}</iq>")
    return sess.wait(lambda st: st.get("id") == iq_id)


def enable(sess, node="n1", options=OPTIONS):
    r = iq(sess, f"<enable xmlns='{PUSH}' jid='push.localhost' node='{node}'>{options}</enable>", "en1")
    assert r.get("type") == "result", ET.tostring(r)


def fields(publish_iq):
    """The summary form's fields of a publish iq, and its publish-options."""
    pub = publish_iq.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
    x = pub.find(f"{{{PUBSUB}}}item/{{{PUSH}}}notification/{{{XDATA}}}x")
    got = {f.get("var"): f.find(f"{{{XDATA}}}value").text for f in x.findall(f"{{{XDATA}}}field")}
    opts = publish_iq.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish-options/{{{XDATA}}}x")
    secret = None
    if opts is not None:
        for f in opts.findall(f"{{{XDATA}}}field"):
            if f.get("var") == "secret":
                secret = f.find(f"{{{XDATA}}}value").text
    return pub.get("node"), got, secret


def next_publish(app, timeout=10):
    return app.wait(lambda st: st.tag.endswith("}iq") and st.get("type") == "set", timeout=timeout)


def answer(app, pub, error=None):
    if error:
        app.send(f"<iq type='error' id='{pub.get('id')}' from='push.localhost' to='{pub.get('from')}'>"
                 f"<error type='{error}'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    else:
        app.send(f"<iq type='result' id='{pub.get('id')}' from='push.localhost' to='{pub.get('from')}'/>")


def no_publish(app, secs=1.0):
    end = time.time() + secs
    while time.time() < end:
        app._read(max(0.05, end - time.time()))
    got = [s for s in app.take() if s.tag.endswith("}iq") and s.get("type") == "set"]
    assert not got, [ET.tostring(s)[:300] for s in got]


def hibernate(srv, raw):
    """XEP-0198 with resumption, then the connection drops."""
    raw.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    enabled = raw.read_until(r"<enabled[^>]*/>")
    previd = re.search(r"id='([^']+)'", enabled).group(1)
    raw.drop()
    assert wait_for(lambda: "event=session-hibernated" in srv.log("sm"), 10), srv.log("sm")[-2000:]
    return previd


def test_enable_errors_and_disco(srv):
    start(srv)
    ann = Session(srv.login("ann", "pw", resource="phone"))
    r = iq(ann, "<query xmlns='http://jabber.org/protocol/disco#info'/>", "d1", kind="get").find(
        "{http://jabber.org/protocol/disco#info}query")
    assert PUSH in [f.get("var") for f in r.findall("{http://jabber.org/protocol/disco#info}feature")]
    assert error_condition(iq(ann, f"<enable xmlns='{PUSH}' jid='push.localhost'/>", "e1")) == "bad-request"
    assert error_condition(iq(ann, f"<enable xmlns='{PUSH}' node='x'/>", "e2")) == "bad-request"
    assert error_condition(iq(ann, f"<enable xmlns='{PUSH}' jid='push.localhost' node='x'>"
                                   f"<x xmlns='{XDATA}' type='form'/></enable>", "e3")) == "bad-request"
    bob = Session(srv.login("bob", "pw", resource="pc"))
    assert error_condition(iq(bob, f"<enable xmlns='{PUSH}' jid='push.localhost' node='x'/>", "e4",
                              to="ann@localhost")) == "forbidden"
    enable(ann)
    r = iq(ann, f"<disable xmlns='{PUSH}' jid='push.localhost' node='n1'/>", "dis1")
    assert r.get("type") == "result"


def test_hibernated_device_is_pushed_summary_only(srv):
    app = start(srv)
    raw = srv.login("ann", "pw", resource="phone")
    ann = Session(raw)
    enable(ann)
    ann.presence()
    bob = Session(srv.login("bob", "pw", resource="pc"))
    # Awake: no push.
    bob.send("<message type='chat' to='ann@localhost'><body>awake</body></message>")
    ann.wait(lambda st: st.find(tag("body")) is not None)
    no_publish(app, 0.5)
    previd = hibernate(srv, raw)
    bob.send("<message type='chat' to='ann@localhost'><body>secret words</body></message>")
    pub = next_publish(app)
    assert pub.get("from") == "ann@localhost" and pub.get("to") == "push.localhost"
    node, f, secret = fields(pub)
    assert node == "n1" and secret == "s3cr3t"
    assert f == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1"}, f
    answer(app, pub)
    # A chat state wakes nobody.
    bob.send("<message type='chat' to='ann@localhost'><composing xmlns='http://jabber.org/protocol/chatstates'/>"
             "</message>")
    no_publish(app, 0.5)
    bob.send("<message type='chat' to='ann@localhost'><body>more</body></message>")
    _, f, _ = fields(next_publish(app))
    assert f["message-count"] == "2"
    # The device comes back: it gets the messages, and no push while awake.
    raw2 = srv.login("ann", "pw", bind=False)
    raw2.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
    got = raw2.read_until(r"more</body>")
    assert "secret words" in got
    assert wait_for(lambda: "event=session-resumed" in srv.log("sm"), 5)
    bob.send("<message type='chat' to='ann@localhost'><body>back</body></message>")
    raw2.read_until(r"back</body>")
    no_publish(app, 0.5)


def test_sender_and_body_only_when_configured(srv):
    app = start(srv, sm_extra="<push><include-sender>true</include-sender><include-body>true</include-body></push>")
    raw = srv.login("ann", "pw", resource="phone")
    ann = Session(raw)
    enable(ann, options="")
    ann.presence()
    hibernate(srv, raw)
    bob = Session(srv.login("bob", "pw", resource="pc"))
    bob.send("<message type='chat' to='ann@localhost/phone'><body>hi ann</body></message>")
    node, f, secret = fields(next_publish(app))
    assert secret is None
    assert f["last-message-sender"] == "bob@localhost/pc" and f["last-message-body"] == "hi ann", f


def test_unacknowledged_messages_push_at_hibernation(srv):
    """A message the device got but never acknowledged (its network died
    under it) is pushed once the session hibernates."""
    app = start(srv)
    raw = srv.login("ann", "pw", resource="phone")
    ann = Session(raw)
    enable(ann)
    ann.presence()
    raw.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    raw.read_until(r"<enabled[^>]*/>")
    bob = Session(srv.login("bob", "pw", resource="pc"))
    bob.send("<message type='chat' to='ann@localhost'><body>unseen</body></message>")
    raw.read_until(r"unseen</body>")
    no_publish(app, 0.3)
    raw.drop()
    pub = next_publish(app)
    assert fields(pub)[1]["message-count"] == "1"
    assert "pending=1" in srv.log("sm")


def test_offline_push_stored_and_disabled_by_app_server_error(srv):
    app = start(srv)
    ann = Session(srv.login("ann", "pw", resource="phone"))
    enable(ann)
    ann.close()
    assert wait_for(lambda: "event=session-end" in srv.log("c2s"), 5)
    # The registration is in storage: an sm restart keeps it.
    srv.sm.stop()
    srv.start_sm()
    assert wait_for(lambda: srv.log("sm").count("event=ready domain") >= 2, 15)
    bob = Session(srv.login("bob", "pw", resource="pc"))
    bob.send("<message type='chat' to='ann@localhost'><body>are you there</body></message>")
    pub = next_publish(app, timeout=15)
    assert fields(pub)[1]["message-count"] == "1"
    # Still stored offline as usual.
    answer(app, pub, error="cancel")
    assert wait_for(lambda: "result=disabled" in srv.log("sm"), 5)
    bob.send("<message type='chat' to='ann@localhost'><body>second</body></message>")
    no_publish(app, 1.0)
    ann2 = Session(srv.login("ann", "pw", resource="phone"))
    ann2.send("<presence/>")
    ann2.wait(lambda st: st.find(tag("body")) is not None and st.find(tag("body")).text == "second")
    # A wait error keeps a registration.
    enable(ann2, node="n2")
    ann2.close()
    assert wait_for(lambda: srv.log("c2s").count("event=session-end") >= 2, 5)
    bob.send("<message type='chat' to='ann@localhost'><body>third</body></message>")
    pub = next_publish(app)
    answer(app, pub, error="wait")
    assert wait_for(lambda: "result=kept type=wait" in srv.log("sm"), 5)
    bob.send("<message type='chat' to='ann@localhost'><body>fourth</body></message>")
    assert fields(next_publish(app))[0] == "n2"
