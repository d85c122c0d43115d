"""The sm alone, driven by a fake c2s written in Python (weftproto.py): the
session protocol of docs/session-protocol.md, RFC 6121 routing of messages and
presence, the roster and the subscription state machine.

The fake c2s authenticates to a real router as component "c2s" (a second one
as "c2s2"), binds its instance name, registers accounts through authreg and
starts sessions; everything the sm delivers arrives as <route/> elements that
the helper sorts by session id.
"""
import base64
import hashlib
import hmac
import itertools
import os
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

import pytest

from conftest import Proc, sm_storage_xml, wait_for
import weftproto

S = "urn:xmpp:weft:session:1"
A = "urn:xmpp:weft:authreg:1"
C = "jabber:client"
R = "jabber:iq:roster"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DOMAIN = "localhost"

COMPONENTS = """
  <component name="sm" secret="weft-sm-secret" trusted-from="true"><bind>localhost</bind></component>
  <component name="c2s" secret="weft-c2s-secret" trusted-from="true"><bind>c2s.localhost</bind></component>
  <component name="c2s2" secret="weft-c2s2-secret" trusted-from="true"><bind>c2s2.localhost</bind></component>
  <component name="s2s" secret="weft-s2s-secret" trusted-from="true" default-route="true"><bind>s2s.localhost</bind></component>
"""

SM_XML = """<sm>
  <router><address>127.0.0.1:{port}</address></router>
  {storage}
  <log><level>debug</level></log>
  <roster><max-items>{roster_max}</max-items></roster>
</sm>
"""


def sm_binary():
    if os.environ.get("WEFT_SM"):
        return os.environ["WEFT_SM"]
    return os.path.join(os.environ.get("WEFT_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build")),
                        "sm", "weft-sm")


def scram_keys(password):
    salt = os.urandom(16)
    it = 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, it)
    ckey = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(ckey).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b = lambda x: base64.b64encode(x).decode()
    return f"SHA-256:{it}:{b(salt)}:{b(stored)}:{b(server)}"


def tag(ns, name):
    return "{%s}%s" % (ns, name)


class FakeC2S:
    """One c2s instance: a component link plus a mailbox per session id."""

    ids = itertools.count(1)

    def __init__(self, port, name="c2s", secret="weft-c2s-secret"):
        self.name = name
        self.instance = f"{name}.localhost"
        self.link = weftproto.Link(port)
        self.link.open()
        res = self.link.authenticate(name, secret)
        assert res.tag.endswith("success"), res.tag
        self.link.session(epoch=os.urandom(16).hex())
        self.link.send(f"<w:bind name='{self.instance}'/>")
        self.others = []     # control elements and answers not yet claimed
        self.boxes = {}      # sid -> [stanza]
        self.sessions = {}   # sid -> full jid
        self.count = 0
        self.wait(lambda el: el.tag == tag(weftproto.NS_W, "bound"))
        self.wait(lambda el: el.tag == tag(weftproto.NS_W, "name") and el.get("name") == DOMAIN
                  and el.get("state") == "up", timeout=15)

    # -- reading -------------------------------------------------------------
    def _read_one(self, timeout):
        el = self.link.next_el(timeout)
        if el.tag.startswith("{%s}" % weftproto.NS_W):
            if el.tag == tag(weftproto.NS_W, "o"):
                return
            if el.tag == tag(weftproto.NS_W, "a"):
                return
        else:
            self.count += 1
            self.link.send(f"<w:a h='{self.count}'/>")
        if el.tag == tag(S, "route") and el.get("type") is None:
            inner = [c for c in el]
            self.boxes.setdefault(el.get("sid"), []).append(inner[0])
        else:
            self.others.append(el)

    def wait(self, pred, timeout=10):
        end = time.time() + timeout
        while True:
            for el in self.others:
                if pred(el):
                    self.others.remove(el)
                    return el
            left = end - time.time()
            if left <= 0:
                raise TimeoutError("no matching element; others=%r" % [o.tag for o in self.others])
            try:
                self._read_one(left)
            except OSError:
                pass

    def expect(self, sid, pred, timeout=10):
        """Returns (and removes) the first stanza for session sid matching pred."""
        end = time.time() + timeout
        while True:
            box = self.boxes.setdefault(sid, [])
            for st in box:
                if pred(st):
                    box.remove(st)
                    return st
            left = end - time.time()
            if left <= 0:
                raise TimeoutError(f"sid {sid}: nothing matching; box={[ET.tostring(s)[:200] for s in box]}")
            try:
                self._read_one(left)
            except OSError:
                pass

    def nothing(self, sid, pred, wait=0.6):
        """Asserts that no stanza matching pred arrives for sid within wait seconds."""
        try:
            st = self.expect(sid, pred, timeout=wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected stanza for {sid}: {ET.tostring(st)}")

    def drain(self, wait=0.3):
        end = time.time() + wait
        while time.time() < end:
            try:
                self._read_one(end - time.time())
            except (TimeoutError, OSError):
                break
        for b in self.boxes.values():
            b.clear()

    # -- accounts and sessions -----------------------------------------------
    def register(self, user, password="pw"):
        rid = str(next(self.ids))
        self.link.send(f"<authreg xmlns='{A}' type='register' id='{rid}' to='{DOMAIN}' "
                       f"from='{self.instance}' user='{user}' sha256='{scram_keys(password)}'/>")
        ans = self.wait(lambda el: el.tag == tag(A, "authreg") and el.get("id") == rid)
        assert ans.get("type") == "result", ET.tostring(ans)

    def start(self, full, sid=None, presence=None, resync=False):
        sid = sid or str(next(self.ids))
        bare = full.split("/")[0]
        extra = " resync='true'" if resync else ""
        body = presence or ""
        self.link.send(f"<session xmlns='{S}' type='start' to='{DOMAIN}' from='{self.instance}' "
                       f"user='{bare}' sid='{sid}' jid='{full}'{extra}>{body}</session>")
        ans = self.wait(lambda el: el.tag == tag(S, "session") and el.get("sid") == sid
                        and el.get("type") in ("started", "failed"))
        assert ans.get("type") == "started", ET.tostring(ans)
        self.sessions[sid] = full
        return sid

    def end(self, sid):
        bare = self.sessions[sid].split("/")[0]
        self.link.send(f"<session xmlns='{S}' type='end' to='{DOMAIN}' from='{self.instance}' "
                       f"user='{bare}' sid='{sid}'/>")

    def send(self, sid, stanza):
        """stanza: XML text in jabber:client without xmlns; from is stamped here like c2s does."""
        full = self.sessions[sid]
        bare = full.split("/")[0]
        el = ET.fromstring(stanza)
        el.set("from", full)
        inner = ET.tostring(el, encoding="unicode", default_namespace=None)
        inner = inner.replace(f"<{el.tag}", f"<{el.tag} xmlns='{C}'", 1)
        self.link.send(f"<route xmlns='{S}' to='{DOMAIN}' from='{self.instance}' user='{bare}' "
                       f"sid='{sid}'>{inner}</route>")

    def close(self):
        self.link.close()


def is_(name, **attrs):
    def pred(st):
        if st.tag != tag(C, name):
            return False
        for k, v in attrs.items():
            k = k.rstrip("_")
            if st.get(k) != v:
                return False
        return True
    return pred


def roster_item(st, jid):
    q = st.find(tag(R, "query"))
    if q is None:
        return None
    for it in q.findall(tag(R, "item")):
        if it.get("jid") == jid:
            return it
    return None


def push_for(jid, **attrs):
    def pred(st):
        if st.tag != tag(C, "iq") or st.get("type") != "set":
            return False
        it = roster_item(st, jid)
        if it is None:
            return False
        return all(it.get(k) == v for k, v in attrs.items())
    return pred


def error_cond(st):
    e = st.find(tag(C, "error"))
    if e is None:
        return None
    for c in e:
        if c.tag.startswith("{%s}" % STANZAS):
            return c.tag.split("}")[1]
    return None


class World:
    def __init__(self, env, roster_max=1000):
        self.env = env
        env.start_router(extra=COMPONENTS)
        cfg = env.dir / "sm.xml"
        cfg.write_text(SM_XML.format(port=env.router_port, storage=sm_storage_xml(env.dir), roster_max=roster_max))
        self.sm = Proc([sm_binary(), "-c", str(cfg)], env.dir / "sm.log")
        env.procs.append(self.sm)
        self.c2s = FakeC2S(env.router_port)

    def log(self):
        return (self.env.dir / "sm.log").read_text(errors="replace")

    def online(self, c2s, full, priority=None, sid=None):
        """Starts a session, asks the roster, sends initial presence."""
        sid = c2s.start(full, sid=sid)
        c2s.send(sid, "<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>")
        c2s.expect(sid, is_("iq", type="result", id="r0"))
        pr = f"<priority>{priority}</priority>" if priority is not None else ""
        c2s.send(sid, f"<presence>{pr}</presence>")
        c2s.expect(sid, lambda st: st.tag == tag(C, "presence") and st.get("from") == full)
        return sid


@pytest.fixture
def world(env):
    w = World(env)
    yield w
    w.c2s.close()


def test_session_start_unknown_account_fails(world):
    c = world.c2s
    c.link.send(f"<session xmlns='{S}' type='start' to='{DOMAIN}' from='c2s.localhost' "
                f"user='ghost@localhost' sid='x1' jid='ghost@localhost/r'/>")
    ans = c.wait(lambda el: el.tag == tag(S, "session") and el.get("sid") == "x1")
    assert ans.get("type") == "failed" and ans.get("reason") == "not-allowed"


def test_unknown_iq_is_service_unavailable(world):
    c = world.c2s
    c.register("alice@localhost")
    sid = c.start("alice@localhost/pc")
    for i, to in enumerate(["", " to='localhost'", " to='alice@localhost'", " to='nobody@localhost'",
                            " to='alice@localhost/other'"]):
        c.send(sid, f"<iq type='get' id='u{i}'{to}><nothing xmlns='urn:example:unknown'/></iq>")
        st = c.expect(sid, is_("iq", id=f"u{i}"))
        assert st.get("type") == "error" and error_cond(st) == "service-unavailable", ET.tostring(st)
    # Results and errors are never answered.
    c.send(sid, "<iq type='result' id='x' to='localhost'/>")
    c.send(sid, "<iq type='error' id='y' to='nobody@localhost'/>")
    c.nothing(sid, lambda st: st.get("id") in ("x", "y"))


def test_message_routing_priorities(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a1 = world.online(c, "alice@localhost/one", priority=5)
    a2 = world.online(c, "alice@localhost/two", priority=5)
    a3 = world.online(c, "alice@localhost/low", priority=1)
    an = world.online(c, "alice@localhost/neg", priority=-1)
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    # chat to the bare JID: every session of the highest priority, nobody else
    c.send(b, "<message type='chat' to='alice@localhost' id='m1'><body>hi</body></message>")
    for s in (a1, a2):
        st = c.expect(s, is_("message", id="m1"))
        assert st.get("from") == "bob@localhost/pc"
    c.nothing(a3, is_("message", id="m1"), wait=0.3)
    c.nothing(an, is_("message", id="m1"), wait=0.1)
    # normal (no type) behaves the same
    c.send(b, "<message to='alice@localhost' id='m2'><body>n</body></message>")
    c.expect(a1, is_("message", id="m2"))
    c.expect(a2, is_("message", id="m2"))
    # to a full JID: that session only, even with a negative priority
    c.send(b, "<message type='chat' to='alice@localhost/neg' id='m3'><body>x</body></message>")
    c.expect(an, is_("message", id="m3"))
    c.nothing(a1, is_("message", id="m3"), wait=0.3)
    # to a full JID with no session: as for the bare JID
    c.send(b, "<message type='chat' to='alice@localhost/gone' id='m4'><body>x</body></message>")
    c.expect(a1, is_("message", id="m4"))
    c.expect(a2, is_("message", id="m4"))
    # headline: every non-negative available session
    c.send(b, "<message type='headline' to='alice@localhost' id='m5'><body>x</body></message>")
    for s in (a1, a2, a3):
        c.expect(s, is_("message", id="m5"))
    c.nothing(an, is_("message", id="m5"), wait=0.3)
    # groupchat to a user: service-unavailable
    c.send(b, "<message type='groupchat' to='alice@localhost' id='m6'><body>x</body></message>")
    st = c.expect(b, is_("message", id="m6"))
    assert st.get("type") == "error" and error_cond(st) == "service-unavailable"
    c.send(b, "<message type='groupchat' to='alice@localhost/gone' id='m6b'><body>x</body></message>")
    assert error_cond(c.expect(b, is_("message", id="m6b"))) == "service-unavailable"
    # no such account: service-unavailable
    c.send(b, "<message type='chat' to='nobody@localhost' id='m7'><body>x</body></message>")
    st = c.expect(b, is_("message", id="m7"))
    assert st.get("type") == "error" and error_cond(st) == "service-unavailable"
    # an error message to the bare JID is dropped
    c.send(b, "<message type='error' to='alice@localhost' id='m8'/>")
    c.nothing(a1, is_("message", id="m8"), wait=0.3)
    # the highest priority changes with a later presence
    c.send(a3, "<presence><priority>10</priority></presence>")
    c.expect(a3, is_("presence", from_="alice@localhost/low"))
    c.send(b, "<message type='chat' to='alice@localhost' id='m9'><body>x</body></message>")
    c.expect(a3, is_("message", id="m9"))
    c.nothing(a1, is_("message", id="m9"), wait=0.3)


def test_message_no_available_resource_goes_offline(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    an = world.online(c, "alice@localhost/neg", priority=-5)
    b = world.online(c, "bob@localhost/pc")
    c.send(b, "<message type='chat' to='alice@localhost' id='off1'><body>later</body></message>")
    c.nothing(an, is_("message", id="off1"), wait=0.5)
    c.nothing(b, is_("message", id="off1"), wait=0.1)   # no error: stored
    # a session with a non-negative priority gets it with its initial presence
    a2 = c.start("alice@localhost/pc")
    c.send(a2, "<presence><priority>1</priority></presence>")
    st = c.expect(a2, is_("message", id="off1"))
    assert st.find(tag(C, "body")).text == "later"


def test_unacked_and_early_routes(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a1 = world.online(c, "alice@localhost/one")
    a2 = world.online(c, "alice@localhost/two")
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    # c2s gives back a message its client never acknowledged: the other resource gets it
    c.link.send(f"<route xmlns='{S}' type='unacked' to='{DOMAIN}' from='c2s.localhost' "
                f"user='alice@localhost' sid='{a1}'><message xmlns='{C}' type='chat' "
                f"from='bob@localhost/pc' to='alice@localhost/one' id='ua'><body>x</body></message></route>")
    c.expect(a2, is_("message", id="ua"))
    # a route for a session the sm does not know yet waits for its start
    c.link.send(f"<route xmlns='{S}' to='{DOMAIN}' from='c2s.localhost' user='bob@localhost' sid='early'>"
                f"<message xmlns='{C}' type='chat' from='bob@localhost/new' to='alice@localhost/two' "
                f"id='early'><body>x</body></message></route>")
    time.sleep(0.3)
    c.start("bob@localhost/new", sid="early")
    c.expect(a2, is_("message", id="early", from_="bob@localhost/new"))


def subscribe_both(c, a, b, alice="alice@localhost", bob="bob@localhost"):
    """alice and bob (online, roster requested) reach 'both' through the usual path."""
    c.send(a, f"<presence type='subscribe' to='{bob}'/>")
    c.expect(a, push_for(bob, subscription="none", ask="subscribe"))
    st = c.expect(b, is_("presence", type="subscribe"))
    assert st.get("from") == alice
    c.send(b, f"<presence type='subscribed' to='{alice}'/>")
    c.expect(b, push_for(alice, subscription="from"))
    c.expect(a, push_for(bob, subscription="to"))
    c.expect(a, is_("presence", type="subscribed", from_=bob))
    c.expect(a, lambda st: st.tag == tag(C, "presence") and st.get("type") is None
             and st.get("from", "").startswith(bob + "/"))
    c.send(b, f"<presence type='subscribe' to='{alice}'/>")
    c.expect(b, push_for(alice, subscription="from", ask="subscribe"))
    c.expect(a, is_("presence", type="subscribe", from_=bob))
    c.send(a, f"<presence type='subscribed' to='{bob}'/>")
    c.expect(a, push_for(bob, subscription="both"))
    c.expect(b, push_for(alice, subscription="both"))
    c.expect(b, lambda st: st.tag == tag(C, "presence") and st.get("type") is None
             and st.get("from", "").startswith(alice + "/"))


def test_subscription_request_and_approval_both_ways(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    subscribe_both(c, a, b)
    # presence now flows both ways, and unavailable on session end
    c.send(a, "<presence><show>away</show></presence>")
    c.expect(b, is_("presence", from_="alice@localhost/pc"))
    c.end(a)
    c.expect(b, is_("presence", type="unavailable", from_="alice@localhost/pc"))
    # roster state persisted: alice logs in again and probes bring bob's presence
    a = world.online(c, "alice@localhost/pc2")
    c.expect(a, is_("presence", from_="bob@localhost/pc"))
    c.expect(b, is_("presence", from_="alice@localhost/pc2"))


def test_pre_approval(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    c.send(a, "<presence type='subscribed' to='bob@localhost'/>")
    it = roster_item(c.expect(a, push_for("bob@localhost", subscription="none")), "bob@localhost")
    assert it.get("approved") == "true"
    c.nothing(b, is_("presence", type="subscribed"), wait=0.3)   # not routed
    c.send(b, "<presence type='subscribe' to='alice@localhost'/>")
    c.expect(b, push_for("alice@localhost", subscription="none", ask="subscribe"))
    c.expect(a, push_for("bob@localhost", subscription="from"))
    c.expect(b, is_("presence", type="subscribed", from_="alice@localhost"))
    c.expect(b, push_for("alice@localhost", subscription="to"))
    c.expect(b, is_("presence", from_="alice@localhost/pc"))
    c.nothing(a, is_("presence", type="subscribe"), wait=0.3)    # auto-approved, never shown


def test_pending_request_delivered_at_next_login(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a = world.online(c, "alice@localhost/pc")
    c.send(a, "<presence type='subscribe' to='bob@localhost'><status>add me</status></presence>")
    c.expect(a, push_for("bob@localhost", ask="subscribe"))
    time.sleep(0.3)
    b = c.start("bob@localhost/pc")
    c.send(b, "<presence/>")
    st = c.expect(b, is_("presence", type="subscribe", from_="alice@localhost"))
    assert st.find(tag(C, "status")).text == "add me"
    # denial: unsubscribed from bob cancels alice's pending out
    c.send(b, "<presence type='unsubscribed' to='alice@localhost'/>")
    c.expect(a, push_for("bob@localhost", subscription="none"))
    it = c.expect(a, is_("presence", type="unsubscribed", from_="bob@localhost"))
    assert it is not None
    # and bob's next login does not show it again
    c.end(b)
    b = c.start("bob@localhost/pc2")
    c.send(b, "<presence/>")
    c.nothing(b, is_("presence", type="subscribe"), wait=0.5)


def test_unsubscribe_and_remove(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    subscribe_both(c, a, b)
    c.drain()
    # alice unsubscribes from bob's presence: both -> from (alice), both -> to (bob)
    c.send(a, "<presence type='unsubscribe' to='bob@localhost'/>")
    c.expect(a, push_for("bob@localhost", subscription="from"))
    c.expect(b, push_for("alice@localhost", subscription="to"))
    c.expect(b, is_("presence", type="unsubscribe", from_="alice@localhost"))
    c.expect(a, is_("presence", type="unavailable", from_="bob@localhost/pc"))
    # bob cancels alice's subscription to him... none left; alice cancels bob's: from -> none
    c.send(a, "<presence type='unsubscribed' to='bob@localhost'/>")
    c.expect(a, push_for("bob@localhost", subscription="none"))
    c.expect(b, push_for("alice@localhost", subscription="none"))
    c.expect(b, is_("presence", type="unavailable", from_="alice@localhost/pc"))
    # roster remove: item-not-found for unknown items, push with subscription='remove'
    c.send(a, "<iq type='set' id='rm1'><query xmlns='jabber:iq:roster'>"
              "<item jid='carol@localhost' subscription='remove'/></query></iq>")
    assert error_cond(c.expect(a, is_("iq", id="rm1"))) == "item-not-found"
    c.send(a, "<iq type='set' id='rm2'><query xmlns='jabber:iq:roster'>"
              "<item jid='bob@localhost' subscription='remove'/></query></iq>")
    c.expect(a, is_("iq", id="rm2", type="result"))
    c.expect(a, push_for("bob@localhost", subscription="remove"))


def test_remove_cancels_both_subscriptions(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    subscribe_both(c, a, b)
    c.drain()
    c.send(a, "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'>"
              "<item jid='bob@localhost' subscription='remove'/></query></iq>")
    c.expect(a, is_("iq", id="rm", type="result"))
    c.expect(a, push_for("bob@localhost", subscription="remove"))
    c.expect(b, push_for("alice@localhost", subscription="none"))
    c.expect(b, is_("presence", type="unavailable", from_="alice@localhost/pc"))


def test_roster_set_groups_names_versioning(world):
    c = world.c2s
    c.register("alice@localhost")
    a = c.start("alice@localhost/pc")
    c.send(a, "<iq type='get' id='g1'><query xmlns='jabber:iq:roster' ver=''/></iq>")
    st = c.expect(a, is_("iq", id="g1", type="result"))
    ver0 = st.find(tag(R, "query")).get("ver")
    assert ver0 is not None
    c.send(a, f"<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='{ver0}'/></iq>")
    st = c.expect(a, is_("iq", id="g2", type="result"))
    assert st.find(tag(R, "query")) is None          # unchanged: empty result
    c.send(a, "<iq type='set' id='s1'><query xmlns='jabber:iq:roster'>"
              "<item jid='carol@example.org' name='Carol'><group>Friends</group><group>Work</group></item>"
              "</query></iq>")
    c.expect(a, is_("iq", id="s1", type="result"))
    push = c.expect(a, push_for("carol@example.org", subscription="none", name="Carol"))
    ver1 = push.find(tag(R, "query")).get("ver")
    assert ver1 and ver1 != ver0
    groups = sorted(g.text for g in roster_item(push, "carol@example.org").findall(tag(R, "group")))
    assert groups == ["Friends", "Work"]
    c.send(a, f"<iq type='get' id='g3'><query xmlns='jabber:iq:roster' ver='{ver1}'/></iq>")
    assert c.expect(a, is_("iq", id="g3", type="result")).find(tag(R, "query")) is None
    c.send(a, f"<iq type='get' id='g4'><query xmlns='jabber:iq:roster' ver='{ver0}'/></iq>")
    st = c.expect(a, is_("iq", id="g4", type="result"))
    assert st.find(tag(R, "query")).get("ver") == ver1
    assert roster_item(st, "carol@example.org").get("name") == "Carol"
    # bad sets
    for i, item in enumerate(["<item jid='x@example.org'><group>a</group><group>a</group></item>",
                              "<item jid='x@example.org'><group></group></item>",
                              "<item jid='x@example.org'/><item jid='y@example.org'/>",
                              "<item name='nojid'/>"]):
        c.send(a, f"<iq type='set' id='b{i}'><query xmlns='jabber:iq:roster'>{item}</query></iq>")
        st = c.expect(a, is_("iq", id=f"b{i}", type="error"))
        assert error_cond(st) in ("bad-request", "not-acceptable"), ET.tostring(st)
    # another session that asked for the roster gets the pushes too; one that did not, not
    a2 = c.start("alice@localhost/tablet")
    a3 = c.start("alice@localhost/quiet")
    c.send(a2, "<iq type='get' id='g5'><query xmlns='jabber:iq:roster'/></iq>")
    c.expect(a2, is_("iq", id="g5", type="result"))
    c.send(a, "<iq type='set' id='s2'><query xmlns='jabber:iq:roster'>"
              "<item jid='carol@example.org' name='C.'/></query></iq>")
    c.expect(a, is_("iq", id="s2", type="result"))
    c.expect(a, push_for("carol@example.org", name="C."))
    c.expect(a2, push_for("carol@example.org", name="C."))
    c.nothing(a3, push_for("carol@example.org"), wait=0.3)


def test_remote_contact_subscription_goes_to_s2s(world):
    """A subscription to a remote contact leaves through the default route."""
    env = world.env
    s2s = FakeC2S(env.router_port, name="s2s", secret="weft-s2s-secret")
    s2s.link.send("<w:bind default='true'/>")
    c = world.c2s
    c.register("alice@localhost")
    a = world.online(c, "alice@localhost/pc")
    c.send(a, "<presence type='subscribe' to='romeo@remote.example'/>")
    c.expect(a, push_for("romeo@remote.example", ask="subscribe"))
    st = s2s.wait(lambda el: el.tag == tag("jabber:component:accept", "presence"))
    assert st.get("type") == "subscribe" and st.get("from") == "alice@localhost"
    assert st.get("to") == "romeo@remote.example"
    # the remote side approves: a plain stanza from s2s
    s2s.link.send("<presence type='subscribed' from='romeo@remote.example' to='alice@localhost'/>")
    c.expect(a, push_for("romeo@remote.example", subscription="to"))
    s2s.link.send("<presence from='romeo@remote.example/home' to='alice@localhost'/>")
    c.expect(a, is_("presence", from_="romeo@remote.example/home"))
    # a remote probe from someone without subscription gets unsubscribed
    s2s.link.send("<presence type='probe' from='eve@remote.example' to='alice@localhost'/>")
    st = s2s.wait(lambda el: el.get("type") == "unsubscribed" and el.get("to") == "eve@remote.example")
    assert st.get("from") == "alice@localhost"
    s2s.close()


def test_directed_presence_gets_unavailable_on_logout(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    c.send(a, "<presence to='bob@localhost/pc'><status>hi</status></presence>")
    c.expect(b, is_("presence", from_="alice@localhost/pc"))
    c.end(a)
    c.expect(b, is_("presence", type="unavailable", from_="alice@localhost/pc"))


def test_probe_answers(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    subscribe_both(c, a, b)
    c.drain()
    c.end(b)
    c.drain()
    # a client-sent probe for a subscribed contact who is offline: unavailable
    c.send(a, "<presence type='probe' to='bob@localhost'/>")
    c.expect(a, is_("presence", type="unavailable", from_="bob@localhost"))


def test_resource_conflict_ends_old_session(world):
    c = world.c2s
    c.register("alice@localhost")
    s1 = c.start("alice@localhost/pc")
    s2 = c.start("alice@localhost/pc")
    end = c.wait(lambda el: el.tag == tag(S, "session") and el.get("type") == "end")
    assert end.get("sid") == s1 and end.get("reason") == "conflict"
    c.send(s2, "<iq type='get' id='p'><query xmlns='jabber:iq:roster'/></iq>")
    c.expect(s2, is_("iq", id="p", type="result"))


def test_c2s_loss_ends_its_sessions(world):
    c = world.c2s
    c2 = FakeC2S(world.env.router_port, name="c2s2", secret="weft-c2s2-secret")
    c.register("alice@localhost")
    c.register("bob@localhost")
    a = world.online(c2, "alice@localhost/phone")
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    c2.drain()
    subscribe_both_two(c2, a, c, b)
    c2.close()
    c.expect(b, is_("presence", type="unavailable", from_="alice@localhost/phone"))
    # messages to alice now go offline rather than to the dead c2s
    c.send(b, "<message type='chat' to='alice@localhost/phone' id='gone'><body>x</body></message>")
    c.nothing(b, is_("message", id="gone"), wait=0.5)


def subscribe_both_two(ca, a, cb, b):
    ca.send(a, "<presence type='subscribe' to='bob@localhost'/>")
    cb.expect(b, is_("presence", type="subscribe"))
    cb.send(b, "<presence type='subscribed' to='alice@localhost'/>")
    cb.send(b, "<presence type='subscribe' to='alice@localhost'/>")
    ca.expect(a, is_("presence", type="subscribe"))
    ca.send(a, "<presence type='subscribed' to='bob@localhost'/>")
    cb.expect(b, push_for("alice@localhost", subscription="both"))


def test_resync_restores_session_and_presence(world):
    c = world.c2s
    c.register("alice@localhost")
    c.register("bob@localhost")
    a = world.online(c, "alice@localhost/pc")
    b = world.online(c, "bob@localhost/pc")
    c.drain()
    subscribe_both(c, a, b)
    c.drain()
    # sm restarts; c2s re-announces its sessions with their last presence
    world.sm.stop()
    world.sm = Proc([sm_binary(), "-c", str(world.env.dir / "sm.xml")], world.env.dir / "sm2.log")
    world.env.procs.append(world.sm)
    c.wait(lambda el: el.tag == tag(weftproto.NS_W, "name") and el.get("name") == DOMAIN
           and el.get("state") == "up", timeout=15)
    c.start("alice@localhost/pc", sid=a, resync=True,
            presence=f"<presence xmlns='{C}'><status>back</status></presence>")
    c.start("bob@localhost/pc", sid=b, resync=True, presence=f"<presence xmlns='{C}'/>")
    c.expect(b, lambda st: st.get("from") == "alice@localhost/pc" and st.tag == tag(C, "presence")
             and st.get("type") is None)
    c.send(b, "<message type='chat' to='alice@localhost' id='after'><body>x</body></message>")
    c.expect(a, is_("message", id="after"))
