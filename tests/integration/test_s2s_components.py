"""Component domains over s2s (issue 11, "Component domains over s2s"): a
name the router serves to a local component (comp.example, a XEP-0114
component on weft's router) is reachable from remote servers without being
listed in the s2s's `domains`: the s2s learns it from the router's
availability notifications (s2s/names.c), accepts incoming streams and
dialback for it while it is served, and opens outgoing streams from it.

fed.FedNet builds the namespaces: weft a.test on host "a" (its s2s lists
only a.test), Prosody p.test on host "p" as the remote server, dnsmasq on
host "dns", clients and hand-made server peers on host "clients".

DNS:
  a.test        SRV _xmpp-server._tcp -> xmpp.a.test:5269 (A of host a)
  comp.example  SRV _xmpp-server._tcp -> xmpp.a.test:5269 (the same s2s)
  p.test        A of host p

Before: Prosody's stream to comp.example got host-unknown, so nothing from
p.test reached the component, and what the component sent to p.test
bounced (from-not-local).

Needs root (ip netns, /etc/netns), dnsmasq, openssl and prosody.
"""
import hashlib
import re
import shutil
import socket
import threading
import xml.etree.ElementTree as ET

import pytest

import fed
from fed import FedNet, ProsodyDeployment, RawS2S, WeftDeployment, q

_problem = fed.usable() or (None if shutil.which(fed.PROSODY) else 'prosody not installed')
if _problem:
    raise RuntimeError(f"federation tests cannot run: {_problem}")

COMP, SECRET = "comp.example", "comp-secret"
QUEUE = 20


class Bot:
    """comp.example as a XEP-0114 component on weft's router (127.0.0.1:5347
    in host a's namespace): answers a message with "re: BODY", a XEP-0199
    ping with a result, and keeps what it got."""

    def __init__(self, net, host="a", port=5347):
        with fed.netns(net.hosts[host].ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.got = []
        self.lock = threading.Lock()
        self.sock.sendall(f"<stream:stream xmlns='jabber:component:accept' "
                          f"xmlns:stream='http://etherx.jabber.org/streams' to='{COMP}'>".encode())
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        sid = None
        while sid is None:
            self.parser.feed(self.sock.recv(4096))
            for ev, el in self.parser.read_events():
                if ev == "start":
                    self.depth += 1
                    if self.depth == 1:
                        sid = el.get("id")
                elif ev == "end":
                    self.depth -= 1
        digest = hashlib.sha1((sid + SECRET).encode()).hexdigest()
        self.sock.sendall(f"<handshake>{digest}</handshake>".encode())
        self.ready = threading.Event()
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "component handshake not answered"

    def _run(self):
        self.sock.settimeout(None)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                self.parser.feed(data)
                for ev, el in self.parser.read_events():
                    if ev == "start":
                        self.depth += 1
                        continue
                    self.depth -= 1
                    if self.depth == 1:
                        self._handle(el)
        except OSError:
            return

    def _handle(self, el):
        tag = el.tag.split("}")[-1]
        if tag == "handshake":
            self.ready.set()
            return
        frm, to = el.get("from"), el.get("to")
        with self.lock:
            self.got.append((tag, frm, to, el.get("type"), el.findtext("{jabber:component:accept}body")))
        if tag == "message" and el.get("type") != "error":
            body = el.findtext("{jabber:component:accept}body") or ""
            self.send(f"<message from='{to}' to='{frm}' type='chat'><body>re: {body}</body></message>")
        elif tag == "iq" and el.get("type") == "get" and el.find("{urn:xmpp:ping}ping") is not None:
            self.send(f"<iq type='result' from='{to}' to='{frm}' id='{el.get('id')}'/>")

    def send(self, data):
        self.sock.sendall(data.encode())

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.sendall(b"</stream:stream>")
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


class World:
    pass


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2sc")
    net = FedNet(root, hosts=("a", "p"))
    try:
        ha, hp = net.hosts["a"], net.hosts["p"]
        net.add_srv("a.test", "xmpp.a.test", 5269)
        net.add_srv(COMP, "xmpp.a.test", 5269)
        net.add_a("xmpp.a.test", ha.ip)
        net.add_a("p.test", hp.ip)
        net.start_dns()
        a = WeftDeployment(net, "a", "a.test", queue=QUEUE,
                           router_extra=f"<component name='{COMP}' secret='{SECRET}' protocol='xep0114'/>",
                           s2s_extra="<components><exclude>c2s.a.test</exclude></components>")
        p = ProsodyDeployment(net, "p", "p.test")
        a.start_all(users=["carol"])
        p.start_all(users=["quinn"])
        x = World()
        x.net, x.a, x.p = net, a, p
        x.bot = Bot(net)
        assert fed.wait_for(lambda: f"event=component-name name={COMP} instance={COMP} state=up federated=yes"
                            in a.log("s2s"), 10), a.log("s2s")[-3000:]
        yield x
        x.bot.close()
    finally:
        net.close()


def open_stream(w, to, frm="x.test"):
    """A raw server stream from the clients namespace to weft's s2s; the
    server's first answer (features, or a stream error)."""
    s = RawS2S(w.net, w.a.ip, 5269, frm, to)
    s.send(f"<?xml version='1.0'?><stream:stream {RawS2S.NS} from='{frm}' to='{to}' version='1.0'>")
    try:
        r = q(s.read_until(r"</stream:features>|<stream:features/>|</stream:error>", timeout=10))
    finally:
        s.close()
    return r


def test_remote_user_chats_with_and_pings_the_component(w):
    quinn = w.p.client("quinn", resource="comp")
    try:
        quinn.message(f"bot@{COMP}", "hello component")
        got = quinn.wait_message("re: hello component", timeout=QUEUE)
        assert f"from='bot@{COMP}'" in got, got
        assert "type='result'" in quinn.ping(COMP, "ping-comp")
        with w.bot.lock:
            seen = list(w.bot.got)
        assert ("message", quinn.jid, f"bot@{COMP}", "chat", "hello component") in seen, seen
        log = w.a.log("s2s")
        # Prosody's stream to comp.example was accepted and dialback-verified,
        # and the component's answer left on a stream from comp.example
        assert re.search(rf"event=s2s-authenticated direction=in local={re.escape(COMP)} remote=p\.test", log), \
            log[-4000:]
        assert re.search(rf"event=s2s-authenticated direction=out local={re.escape(COMP)} remote=p\.test", log), \
            log[-4000:]
        # Prosody asked weft, authoritative for comp.example, about the key
        assert re.search(rf"dialback-verify-asked local={re.escape(COMP)} remote=p\.test result=valid", log), \
            log[-4000:]
        assert "host-unknown" not in log
    finally:
        quinn.close()


def test_only_names_the_router_serves_to_components(w):
    # served: the stream opens with features
    assert "<stream:features" in open_stream(w, COMP)
    # the s2s's own instance name, an excluded instance name, a remote
    # domain (the default route) and an unknown name: host-unknown
    for name in ("s2s.a.test", "c2s.a.test", "p.test", "nobody.example"):
        r = open_stream(w, name)
        assert "<host-unknown" in r, (name, r)
    log = w.a.log("s2s")
    assert "event=component-name name=c2s.a.test instance=c2s state=up federated=no reason=components.exclude" \
        in log, log[-3000:]


def test_name_gone_means_host_unknown_again_and_back_when_it_returns(w):
    mark = w.a.mark()
    w.bot.close()
    assert fed.wait_for(lambda: f"event=component-name name={COMP} instance={COMP} state=down federated=no"
                        in w.a.log("s2s", since=mark), 10), w.a.log("s2s", since=mark)[-3000:]
    r = open_stream(w, COMP)
    assert "<host-unknown" in r, r
    # dialback for it is refused as well (item-not-found), on a stream to a.test
    s = RawS2S(w.net, w.a.ip, 5269, "x.test", "a.test")
    s.open()
    s.starttls()
    s.send(f"<db:result from='x.test' to='{COMP}'>abcdef0123456789</db:result>")
    r = q(s.read_until(r"<db:result[^>]*(/>|>[\s\S]*?</db:result>)|</stream:error>", timeout=10))
    s.close()
    assert "type='error'" in r and "item-not-found" in r, r

    w.bot = Bot(w.net)
    assert fed.wait_for(lambda: f"event=component-name name={COMP} instance={COMP} state=up federated=yes"
                        in w.a.log("s2s", since=mark), 10), w.a.log("s2s", since=mark)[-3000:]
    assert "<stream:features" in open_stream(w, COMP)
    quinn = w.p.client("quinn", resource="back")
    try:
        quinn.message(f"bot@{COMP}", "are you back")
        quinn.wait_message("re: are you back", timeout=QUEUE)
    finally:
        quinn.close()


def test_components_federate_off_warns_and_refuses(w):
    """With components.federate=false the s2s is as before (only domains),
    and says what to add."""
    a = w.a
    mark = a.mark()
    a.s2s_extra = "<components><federate>false</federate></components>"
    try:
        a.restart("s2s")
        assert fed.wait_for(lambda: re.search(rf"event=component-name name={re.escape(COMP)} .*federated=no "
                                              rf"reason=components\.federate=false hint=\"add {re.escape(COMP)} "
                                              rf"to domains", a.log("s2s", since=mark)), 10), \
            a.log("s2s", since=mark)[-3000:]
        assert "<host-unknown" in open_stream(w, COMP)
    finally:
        mark = a.mark()
        a.s2s_extra = "<components><exclude>c2s.a.test</exclude></components>"
        a.restart("s2s")
    assert fed.wait_for(lambda: f"event=component-name name={COMP} instance={COMP} state=up federated=yes"
                        in a.log("s2s", since=mark), 10), a.log("s2s", since=mark)[-3000:]
    assert "<stream:features" in open_stream(w, COMP)
