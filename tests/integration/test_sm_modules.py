"""The sm module API (docs/sm-modules.md), through the example module of
tests/modules/mod_example.c built into weft-sm-example, and the per-module
configuration of sm.xml (<module name="X" enabled="...">) with weft-sm.

Driven by the fake c2s of test_sm_raw.py.
"""
import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import Proc, sm_storage_xml
from test_sm_raw import C, COMPONENTS, FakeC2S, error_cond, tag

EX = "urn:weft:example:1"
DISCO_INFO = "http://jabber.org/protocol/disco#info"

SM_XML = """<sm>
  <router><address>127.0.0.1:{port}</address></router>
  {storage}
  <log><level>debug</level></log>
  {extra}
</sm>
"""


def build_path(*parts):
    return os.path.join(os.environ.get("WEFT_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build")),
                        *parts)


EXAMPLE_SM = build_path("tests", "modules", "weft-sm-example")
PLAIN_SM = build_path("sm", "weft-sm")


class ModWorld:
    def __init__(self, env, extra="", binary=EXAMPLE_SM):
        env.start_router(extra=COMPONENTS)
        cfg = env.dir / "sm.xml"
        cfg.write_text(SM_XML.format(port=env.router_port, storage=sm_storage_xml(env.dir), extra=extra))
        self.sm = Proc([binary, "-c", str(cfg)], env.dir / "sm.log")
        env.procs.append(self.sm)
        self.c2s = FakeC2S(env.router_port)
        self.env = env

    def log(self):
        return (self.env.dir / "sm.log").read_text(errors="replace")


def iq(c, sid, body, id_, to=None, type_="get"):
    to_attr = f" to='{to}'" if to else ""
    c.send(sid, f"<iq type='{type_}' id='{id_}'{to_attr}>{body}</iq>")
    return c.expect(sid, lambda st: st.tag == tag(C, "iq") and st.get("id") == id_
                    and st.get("type") in ("result", "error"))


def features(st):
    q = st.find(tag(DISCO_INFO, "query"))
    return [f.get("var") for f in q.findall(tag(DISCO_INFO, "feature"))]


def users(w, *names):
    for n in names:
        w.c2s.register(f"{n}@localhost")


def test_example_module_option_hook_iq_feature_state(env):
    w = ModWorld(env, "<module name='example'><greeting>hi there</greeting></module>")
    users(w, "alice", "bob")
    c = w.c2s
    a = c.start("alice@localhost/pc")
    b = c.start("bob@localhost/pc")
    # a disco feature of the domain
    assert EX in features(iq(c, a, f"<query xmlns='{DISCO_INFO}'/>", "d1", to="localhost"))
    # a hook (message_out) keeping per-user state, read through the IQ namespace
    for i in range(3):
        c.send(a, f"<message to='bob@localhost/pc' type='chat' id='m{i}'><body>{i}</body></message>")
    for i in range(3):
        c.expect(b, lambda st: st.tag == tag(C, "message") and st.get("id") == f"m{i}")
    st = iq(c, a, f"<count xmlns='{EX}'/>", "c1")
    cnt = st.find(tag(EX, "count"))
    assert st.get("type") == "result" and cnt.get("n") == "3", ET.tostring(st)
    assert cnt.get("greeting") == "hi there"              # the option, from <module>
    assert cnt.get("roster") == "0"
    # roster_change: an item added, then removed
    for i, sub in enumerate(("", " subscription='remove'")):
        st = iq(c, a, f"<query xmlns='jabber:iq:roster'><item jid='carol@example.org'{sub}/></query>",
                f"r{i}", type_="set")
        assert st.get("type") == "result", ET.tostring(st)
    assert iq(c, a, f"<count xmlns='{EX}'/>", "c1b").find(tag(EX, "count")).get("roster") == "2"
    st = iq(c, a, f"<count xmlns='{EX}'/>", "c2", to="alice@localhost")
    assert st.find(tag(EX, "count")).get("n") == "3"
    assert iq(c, b, f"<count xmlns='{EX}'/>", "c3").find(tag(EX, "count")).get("n") == "0"
    # the registry's answers: a refused type, another account, the domain
    assert error_cond(iq(c, a, f"<count xmlns='{EX}'/>", "e1", type_="set")) == "feature-not-implemented"
    assert error_cond(iq(c, b, f"<count xmlns='{EX}'/>", "e2", to="alice@localhost")) == "forbidden"
    assert error_cond(iq(c, a, f"<count xmlns='{EX}'/>", "e3", to="localhost")) == "service-unavailable"


def test_deferred_request_keeps_the_users_order(env):
    w = ModWorld(env, "<module name='example'><delay>0.6</delay></module>")
    users(w, "alice", "bob")
    c = w.c2s
    a = c.start("alice@localhost/pc")
    b = c.start("bob@localhost/pc")
    t0 = time.time()
    c.send(a, f"<iq type='get' id='s1'><slow xmlns='{EX}'/></iq>")
    c.send(a, "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    c.send(b, "<message to='alice@localhost/pc' type='chat' id='m1'><body>x</body></message>")
    c.send(a, f"<iq type='get' id='c1'><count xmlns='{EX}'/></iq>")
    order = []
    for _ in range(4):
        st = c.expect(a, lambda s: s.get("id") in ("s1", "p1", "m1", "c1"), timeout=10)
        order.append((st.get("id"), time.time() - t0))
    ids = [o[0] for o in order]
    # the deferred answer first, then what alice sent in her order; bob's
    # message (routed through the sm's local queue) after the answer too
    assert ids[0] == "s1" and ids.index("p1") < ids.index("c1"), order
    assert order[0][1] >= 0.5, order                  # answered by the timer, not at once
    # bob was never held: his own requests are answered at once meanwhile
    c.send(a, f"<iq type='get' id='s2'><slow xmlns='{EX}'/></iq>")
    t1 = time.time()
    st = iq(c, b, "<ping xmlns='urn:xmpp:ping'/>", "bp")
    assert st.get("type") == "result" and time.time() - t1 < 0.5
    c.expect(a, lambda s: s.get("id") == "s2")


def test_a_hook_holds_its_user(env):
    w = ModWorld(env, "<module name='example'><delay>0.6</delay></module>")
    users(w, "alice", "bob")
    c = w.c2s
    a = c.start("alice@localhost/pc")
    b = c.start("bob@localhost/pc")
    t0 = time.time()
    c.send(a, f"<presence><hold xmlns='{EX}'/></presence>")
    c.send(a, "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    c.send(a, "<message to='bob@localhost/pc' type='chat' id='m1'><body>x</body></message>")
    st = c.expect(a, lambda s: s.get("id") == "p1")
    assert time.time() - t0 >= 0.5, "answered while the user was held"
    c.expect(b, lambda s: s.get("id") == "m1")
    # released: no hold, no wait
    t1 = time.time()
    assert iq(c, a, "<ping xmlns='urn:xmpp:ping'/>", "p2").get("type") == "result"
    assert time.time() - t1 < 0.5


def test_example_is_off_by_default(env):
    w = ModWorld(env)
    users(w, "alice")
    c = w.c2s
    a = c.start("alice@localhost/pc")
    assert EX not in features(iq(c, a, f"<query xmlns='{DISCO_INFO}'/>", "d1", to="localhost"))
    assert error_cond(iq(c, a, f"<count xmlns='{EX}'/>", "c1")) == "service-unavailable"


def test_modules_switched_off_in_sm_xml(env):
    w = ModWorld(env, "<module name='vcard' enabled='false'/>"
                      "<offline><enabled>false</enabled></offline>", binary=PLAIN_SM)
    users(w, "alice", "bob")
    c = w.c2s
    a = c.start("alice@localhost/pc")
    f = features(iq(c, a, f"<query xmlns='{DISCO_INFO}'/>", "d1", to="localhost"))
    assert "vcard-temp" not in f and "msgoffline" not in f and "urn:xmpp:ping" in f, f
    assert error_cond(iq(c, a, "<vCard xmlns='vcard-temp'/>", "v1")) == "service-unavailable"
    # no offline storage: a chat for an account with no session bounces
    c.send(a, "<message to='bob@localhost' type='chat' id='o1'><body>hi</body></message>")
    st = c.expect(a, lambda s: s.get("id") == "o1")
    assert st.get("type") == "error" and error_cond(st) == "service-unavailable"


@pytest.mark.parametrize("extra,want", [
    ("<module name='nope'/>", "no module named 'nope'"),
    ("<module name='offline'><max-mesages>5</max-mesages></module>", "unknown option 'offline.max-mesages'"),
    ("<module name='offline'><max-messages>-5</max-messages></module>", "offline.max-messages"),
    ("<module name='offline' enabled='maybe'/>", "not a boolean"),
    ("<module/>", "needs a name"),
])
def test_bad_module_config_is_refused(tmp_path, extra, want):
    cfg = tmp_path / "sm.xml"
    cfg.write_text(SM_XML.format(port=1, storage=sm_storage_xml(tmp_path), extra=extra))
    r = subprocess.run([PLAIN_SM, "-t", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and want in r.stderr, r.stderr
    assert f"{cfg}:" in r.stderr                        # file and line named


def test_module_options_old_and_new_forms(tmp_path):
    for extra in ("<offline><max-messages>7</max-messages></offline>",
                  "<module name='offline'><max-messages>7</max-messages></module>"):
        cfg = tmp_path / "sm.xml"
        cfg.write_text(SM_XML.format(port=1, storage=sm_storage_xml(tmp_path), extra=extra))
        r = subprocess.run([PLAIN_SM, "--dump-config", "-c", str(cfg)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and "offline.max-messages = 7" in r.stdout, (extra, r.stdout, r.stderr)
