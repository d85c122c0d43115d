"""XEP-0215 external service discovery (sm/mod_extdisco.c) and the
domain's disco#items of running components (sm/mod_disco.c's disco.items):
a whole server on loopback, asked over a raw client stream. The TURN
credentials are checked the way coturn checks them (use-auth-secret):
username "EXPIRY:user", password base64(HMAC-SHA1(secret, username)),
recomputed here in Python.
"""
import base64
import calendar
import hashlib
import hmac
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import Proc, free_port, wait_for
from server import Server, binary

EXT = "urn:xmpp:extdisco:2"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
SECRET = "coturn-shared-secret"

EXTDISCO = ("<module name='extdisco'><services>stun:stun.example.org turn:turn.example.org?transport=udp "
            "turns:turn.example.org:443 stun:[2001:db8::1]:3479</services>"
            f"<secret>{SECRET}</secret><ttl>1h</ttl></module>")


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def iq(c, payload, to="localhost", type_="get"):
    qid = f"q{time.monotonic_ns()}"
    c.send(f"<iq type='{type_}' id='{qid}' to='{to}'>{payload}</iq>")
    raw = c.read_until(rf"<iq[^>]*id=['\"]{qid}['\"](?:[^>]*/>|[\s\S]*?</iq>)")
    raw = raw[raw.rindex("<iq"):]
    head = raw.split(">")[0]
    if "xmlns=" not in head:
        raw = raw.replace("<iq", "<iq xmlns='jabber:client'", 1)
    return ET.fromstring(raw)


def cond(st):
    err = st.find("{jabber:client}error")
    return [c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZAS}}}")][0]


def check_credentials(svc, user):
    username, password = svc.get("username"), svc.get("password")
    expiry, who = username.split(":", 1)
    assert who == user
    want = base64.b64encode(hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
    assert password == want
    assert abs(int(expiry) - (time.time() + 3600)) < 30
    stamp = calendar.timegm(time.strptime(svc.get("expires"), "%Y-%m-%dT%H:%M:%SZ"))
    assert stamp == int(expiry)
    assert svc.get("restricted") == "1"


def test_services_and_credentials(srv):
    srv.start(sm_extra=EXTDISCO)
    srv.register("alice", "pw")
    a = srv.login("alice", "pw")
    info = iq(a, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    assert EXT in [f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")]
    st = iq(a, f"<services xmlns='{EXT}'/>")
    assert st.get("type") == "result", ET.tostring(st)
    svcs = st.find(f"{{{EXT}}}services").findall(f"{{{EXT}}}service")
    got = [(s.get("type"), s.get("host"), s.get("port"), s.get("transport")) for s in svcs]
    assert got == [("stun", "stun.example.org", "3478", "udp"), ("turn", "turn.example.org", "3478", "udp"),
                   ("turns", "turn.example.org", "443", "tcp"), ("stun", "2001:db8::1", "3479", "udp")]
    # STUN needs no credentials; TURN entries carry them.
    assert svcs[0].get("username") is None and svcs[0].get("restricted") is None
    check_credentials(svcs[1], "alice@localhost")
    check_credentials(svcs[2], "alice@localhost")
    # A type filter.
    st = iq(a, f"<services xmlns='{EXT}' type='turn'/>")
    assert [s.get("type") for s in st.iter(f"{{{EXT}}}service")] == ["turn"]
    # Credentials for one service.
    st = iq(a, f"<credentials xmlns='{EXT}'><service type='turns' host='turn.example.org'/></credentials>")
    svc = st.find(f"{{{EXT}}}credentials/{{{EXT}}}service")
    assert svc.get("port") == "443"
    check_credentials(svc, "alice@localhost")
    # Unknown service, or one that needs none: item-not-found.
    st = iq(a, f"<credentials xmlns='{EXT}'><service type='turn' host='other.example.org'/></credentials>")
    assert cond(st) == "item-not-found"
    st = iq(a, f"<credentials xmlns='{EXT}'><service type='stun' host='stun.example.org'/></credentials>")
    assert cond(st) == "item-not-found"
    st = iq(a, f"<credentials xmlns='{EXT}'/>")
    assert cond(st) == "bad-request"
    st = iq(a, f"<services xmlns='{EXT}'/>", type_="set")
    assert cond(st) == "not-allowed"


def test_no_secret_no_credentials_and_empty_default(srv):
    srv.start(sm_extra="<module name='extdisco'><services>turn:turn.example.org</services></module>")
    srv.register("bob", "pw")
    b = srv.login("bob", "pw")
    svc = iq(b, f"<services xmlns='{EXT}'/>").find(f"{{{EXT}}}services/{{{EXT}}}service")
    assert svc.get("type") == "turn" and svc.get("username") is None and svc.get("restricted") is None


def test_default_is_an_empty_list(srv):
    srv.start()
    srv.register("carol", "pw")
    c = srv.login("carol", "pw")
    st = iq(c, f"<services xmlns='{EXT}'/>")
    assert st.get("type") == "result" and list(st.find(f"{{{EXT}}}services")) == []


def test_bad_service_stops_the_start(srv):
    srv.start(sm_extra="<module name='extdisco'><services>turn:</services></module>")
    assert wait_for(lambda: srv.sm.p.poll() is not None, 10)
    assert srv.sm.p.returncode != 0
    assert "reason=bad-service" in srv.log("sm")


def test_disco_items_lists_running_components(srv):
    """disco.items names upload.localhost and conference.localhost; only a
    bound one is listed, and it leaves the list when its process stops."""
    srv.start(sm_extra="<module name='disco'><items>upload.localhost conference.localhost</items></module>",
              router_extra="<component name='upload' secret='up-secret'><bind>upload.localhost</bind></component>")
    srv.register("dave", "pw")
    d = srv.login("dave", "pw")
    items = lambda: [i.get("jid") for i in iq(d, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
                     .iter("{http://jabber.org/protocol/disco#items}item")]
    assert items() == []
    port = free_port()
    (srv.dir / "upload.xml").write_text(
        f"<upload><router><address>127.0.0.1:{srv.router_port}</address></router><secret>up-secret</secret>"
        f"<directory>{srv.dir}/upload</directory><http><listen>127.0.0.1:{port}</listen></http></upload>")
    up = srv._spawn([binary("WEFT_UPLOAD", "upload", "weft-upload"), "-c", str(srv.dir / "upload.xml")],
                    "upload.log")
    assert wait_for(lambda: items() == ["upload.localhost"], 10)
    # The client follows the item to the service.
    info = iq(d, "<query xmlns='http://jabber.org/protocol/disco#info'/>", to="upload.localhost")
    assert "urn:xmpp:http:upload:0" in [f.get("var") for f in
                                        info.iter("{http://jabber.org/protocol/disco#info}feature")]
    up.stop()
    assert wait_for(lambda: items() == [], 10)
