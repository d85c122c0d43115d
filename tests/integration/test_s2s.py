"""Federation between two weft deployments over a real network and real DNS
(issue 4). fed.FedNet builds the namespaces: weft a.test on host "a", weft
b.test on host "b", dnsmasq on host "dns", clients and hand-made server peers
on host "clients", all on one bridge.

DNS, as the test declares it:
  a.test         A 10.x.y.a, no SRV: peers use the A fallback on port 5269
  b.test         SRV _xmpp-server._tcp -> xmpp.b.test:5299 only (non-standard
                 port; b.test itself has no address)
  dead.test      A of the clients host, where nothing listens
  nofed.test     SRV target "." (the domain offers no federation)
  anything else under .test: NXDOMAIN

Needs root (ip netns, /etc/netns), dnsmasq and openssl; about 30 s with the ASan
build on 2 cores.
"""
import re
import time

import pytest

import fed
from fed import CA, FedNet, RawS2S, WeftDeployment, q

# scripts/deps.sh installs what this needs and the test command runs as root:
# a machine that cannot run it is a failure, not a skip.
_problem = fed.usable()
if _problem:
    raise RuntimeError(f"federation tests cannot run: {_problem}")


QUEUE = 10          # timeouts.queue of both deployments (seconds)


class World:
    pass


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2s")
    net = FedNet(root, hosts=("a", "b"))
    try:
        ca = CA(root / "ca")
        ha, hb = net.hosts["a"], net.hosts["b"]
        net.add_a("a.test", ha.ip)
        net.add_srv("b.test", "xmpp.b.test", 5299)
        net.add_a("xmpp.b.test", hb.ip)
        net.add_a("dead.test", net.clients.ip)
        net.add_srv("nofed.test", None)
        net.start_dns()
        # Both trust the test CA but start with self-signed certificates:
        # neither can verify the other, so dialback authenticates.
        a = WeftDeployment(net, "a", "a.test", ca=ca, queue=QUEUE)
        b = WeftDeployment(net, "b", "b.test", ca=ca, s2s_port=5299, queue=QUEUE)
        a.start_all(users=["alice"])
        b.start_all(users=["bob"])
        x = World()
        x.net, x.ca, x.a, x.b = net, ca, a, b
        yield x
    finally:
        net.close()


@pytest.fixture
def clients(w, request):
    """alice@a.test/RES and bob@b.test/RES, available, RES = the test's name."""
    res = request.node.name[-40:]
    made = []

    def make():
        alice = w.a.client("alice", resource=res)
        bob = w.b.client("bob", resource=res)
        made.extend((alice, bob))
        return alice, bob
    yield make
    for c in made:
        c.close()


def from_(jid):
    return r"from=['\"]" + re.escape(jid) + r"['\"]"


def test_chat_subscription_presence_and_ping_both_ways_over_dialback(w, clients):
    a, b = w.a, w.b
    alice, bob = clients()
    t0 = time.time()
    alice.message(bob.jid, "hello bob")
    got = bob.wait_message("hello bob", timeout=20)
    first = time.time() - t0
    assert f"from='{alice.jid}'" in got, got
    bob.message(alice.jid, "hello alice")
    got = alice.wait_message("hello alice")
    assert f"from='{bob.jid}'" in got, got

    # subscription both ways; each then sees the other's presence
    alice.send("<presence to='bob@b.test' type='subscribe'/>")
    bob.read_until(r"<presence[^>]*type=['\"]subscribe['\"]", timeout=15)
    bob.send("<presence to='alice@a.test' type='subscribed'/>")
    alice.wait_all([r"<presence[^>]*" + from_("bob@b.test") + r"[^>]*type=['\"]subscribed['\"]"
                    r"|<presence[^>]*type=['\"]subscribed['\"][^>]*" + from_("bob@b.test"),
                    r"<presence(?![^>]*type=)[^>]*" + from_(bob.jid)], timeout=15)
    bob.send("<presence to='alice@a.test' type='subscribe'/>")
    alice.read_until(r"<presence[^>]*type=['\"]subscribe['\"]", timeout=15)
    alice.send("<presence to='bob@b.test' type='subscribed'/>")
    bob.wait_all([r"<presence[^>]*type=['\"]subscribed['\"]",
                  r"<presence(?![^>]*type=)[^>]*" + from_(alice.jid)], timeout=15)
    # a presence change reaches the contact
    alice.send("<presence><show>away</show><status>federated</status></presence>")
    bob.read_until(r"<presence[^>]*" + from_(alice.jid) + r"[^>]*>(?:(?!</presence>)[\s\S])*<show>away</show>",
                   timeout=15)

    # XEP-0199 ping of the other server, both ways
    assert "type='result'" in alice.ping("b.test", "ping-b"), "ping b.test"
    assert "type='result'" in bob.ping("a.test", "ping-a"), "ping a.test"

    # authenticated by dialback in both directions, on both sides, over TLS
    for d, other in ((a, "b.test"), (b, "a.test")):
        log = d.log("s2s")
        for direction in ("out", "in"):
            assert re.search(rf"event=s2s-authenticated direction={direction} local={d.domain} remote={other} "
                             rf"method=dialback", log), (d.domain, direction, log[-4000:])
        m = re.search(rf"event=s2s-authenticated direction=out local={d.domain} remote={other} .*tls=(\S+)", log)
        assert m and m.group(1).startswith("TLS"), m and m.group(0)
    # how each found the other: b through SRV on 5299, a through its A record on 5269
    assert re.search(rf"event=s2s-connecting local=a\.test remote=b\.test host=xmpp\.b\.test "
                     rf"peer={re.escape(b.ip)}:5299 tls=starttls", a.log("s2s")), a.log("s2s")[-4000:]
    assert re.search(rf"event=s2s-connecting local=b\.test remote=a\.test host=a\.test "
                     rf"peer={re.escape(a.ip)}:5269 tls=starttls", b.log("s2s")), b.log("s2s")[-4000:]
    dns = w.net.dns_log()
    assert f"query[SRV] _xmpp-server._tcp.b.test from {a.ip}" in dns, dns[-3000:]
    assert f"query[SRV] _xmpp-server._tcp.a.test from {b.ip}" in dns, dns[-3000:]
    assert first < 10, first


def test_unresolvable_unreachable_and_non_federating_domains_bounce_in_bounded_time(w, clients):
    alice, _ = clients()
    t0 = time.time()
    alice.message("someone@nowhere.test", "into the void", mid="nx1")
    alice.message("someone@dead.test", "nobody home", mid="dead1")
    alice.message("someone@nofed.test", "no federation", mid="nofed1")
    alice.send("<iq type='get' id='nxping' to='nowhere.test'><ping xmlns='urn:xmpp:ping'/></iq>")
    got = {}
    patterns = {
        "nx1": r"<message[^>]*id=['\"]nx1['\"][\s\S]*?</message>",
        "nofed1": r"<message[^>]*id=['\"]nofed1['\"][\s\S]*?</message>",
        "nxping": r"<iq[^>]*id=['\"]nxping['\"][\s\S]*?</iq>",
        "dead1": r"<message[^>]*id=['\"]dead1['\"][\s\S]*?</message>",
    }
    end = t0 + QUEUE + 10
    while len(got) < len(patterns) and time.time() < end:
        for k, p in patterns.items():
            m = re.search(p, alice.buf)
            if m and k not in got:
                got[k] = (time.time() - t0, q(m.group(0)))
        try:
            alice._recv(0.2)
        except Exception:
            pass
    assert set(got) == set(patterns), (got, alice.buf[-3000:], w.a.log("s2s")[-4000:])
    for k in ("nx1", "nofed1", "nxping"):
        took, text = got[k]
        assert "type='error'" in text and "remote-server-not-found" in text, (k, text)
        assert took < w.a.dns_timeout + 2, (k, took)
    # never reached, and its only address refuses: at once, not after
    # timeouts.queue (docs/s2s.md, "Failures")
    took, text = got["dead1"]
    assert "type='error'" in text and "remote-server-not-found" in text, text
    assert took < 2, took
    log = w.a.log("s2s")
    assert re.search(r"event=bounced local=a\.test remote=nowhere\.test .*condition=remote-server-not-found", log)
    assert re.search(r"event=bounced local=a\.test remote=dead\.test .*condition=remote-server-not-found", log)


def test_forged_dialback_key_is_refused_and_nothing_is_routed(w, clients):
    """A peer on the clients host claims to be b.test (a real deployment)
    with a made-up dialback key; a.test asks b.test's server, which says
    the key is not its own."""
    a, b = w.a, w.b
    alice, _ = clients()
    p = RawS2S(w.net, a.ip, 5269, "b.test", "a.test")
    feats = q(p.open())
    assert "<starttls" in feats and "<required/>" in feats, feats
    # before TLS nothing is accepted
    feats = q(p.starttls())
    assert "EXTERNAL" not in feats, feats      # no client certificate
    assert "urn:xmpp:features:dialback" in feats, feats
    p.send("<db:result from='b.test' to='a.test'>" + "0123456789abcdef" * 4 + "</db:result>")
    r = q(p.read_until(r"<db:result[^>]*(/>|>[\s\S]*?</db:result>)|</stream:stream>|<stream:error>[\s\S]*"
                       r"</stream:error>", timeout=20))
    assert "type='invalid'" in r or "<stream:error>" in r, r
    rest = ""
    if "<stream:error>" not in r:
        p.send("<message from='bob@b.test/x' to='" + alice.jid + "' type='chat'><body>forged-by-key</body>"
               "</message>")
        rest = p.read_closed(timeout=10)
        assert "not-authorized" in rest or "invalid-from" in rest, rest
    p.close()
    assert "forged-by-key" not in alice.read_for(2)
    assert re.search(r"event=dialback-invalid local=a\.test remote=b\.test", a.log("s2s")), a.log("s2s")[-4000:]
    assert re.search(r"event=dialback-verify-asked local=b\.test remote=a\.test result=invalid",
                     b.log("s2s")), b.log("s2s")[-4000:]

    # a stanza pipelined right behind the key, while a.test is still asking
    # b.test: the pair is not authenticated yet, so it is refused too
    p = RawS2S(w.net, a.ip, 5269, "b.test", "a.test")
    p.open()
    p.starttls()
    p.send("<db:result from='b.test' to='a.test'>" + "fedcba9876543210" * 4 + "</db:result>"
           f"<message from='bob@b.test/x' to='{alice.jid}' type='chat'><body>pipelined-forgery</body></message>")
    r = q(p.read_closed(timeout=10))
    assert "<stream:error>" in r and ("not-authorized" in r or "invalid-from" in r), r
    p.close()
    assert "pipelined-forgery" not in alice.read_for(1.5)

    # the same made-up key sent before STARTTLS: refused (TLS is required)
    # before any key is looked at
    p = RawS2S(w.net, a.ip, 5269, "b.test", "a.test")
    p.open()
    p.send("<db:result from='b.test' to='a.test'>" + "0" * 64 + "</db:result>")
    r = q(p.read_closed(timeout=10))
    assert "<stream:error>" in r and "type='valid'" not in r, r
    p.close()


def test_stanza_from_outside_the_authenticated_domain_is_refused(w, clients):
    """c.test authenticates with SASL EXTERNAL (a CA-signed client
    certificate), which lets it send from c.test and nothing else."""
    a = w.a
    alice, _ = clients()
    crt, key = w.ca.issue("c.test", w.net.root / "c.test")
    p = RawS2S(w.net, a.ip, 5269, "c.test", "a.test")
    p.open()
    feats = q(p.starttls(crt, key))
    assert "<mechanism>EXTERNAL</mechanism>" in feats, feats
    r = q(p.external("c.test"))
    assert "<success" in r, r
    p.send(f"<message from='eve@c.test/x' to='{alice.jid}' type='chat' id='c1'><body>legit from c</body></message>")
    assert "from='eve@c.test/x'" in alice.wait_message("legit from c", timeout=15)
    mark = a.mark()
    p.send(f"<message from='mallory@b.test/x' to='{alice.jid}' type='chat' id='c2'><body>spoofed from b</body>"
           f"</message>")
    p.send(f"<message from='eve@c.test/x' to='{alice.jid}' type='chat' id='c3'><body>after the spoof</body>"
           f"</message>")
    r = p.read_closed(timeout=10)
    assert "invalid-from" in r, r
    p.close()
    seen = alice.read_for(2)
    assert "spoofed from b" not in seen and "after the spoof" not in seen, seen
    assert re.search(r"event=s2s-refused direction=in .*reason=\S+ from=mallory@b\.test/x",
                     a.log("s2s", since=mark)), a.log("s2s", since=mark)

    # a certificate for c.test does not authenticate a stream claiming b.test
    p = RawS2S(w.net, a.ip, 5269, "b.test", "a.test")
    p.open()
    feats = q(p.starttls(crt, key))
    if "<mechanism>EXTERNAL</mechanism>" in feats:
        r = q(p.external("b.test"))
        assert "<failure" in r, r
    p.send(f"<message from='mallory@b.test/x' to='{alice.jid}' type='chat'><body>spoofed again</body></message>")
    r = p.read_closed(timeout=10)
    assert "not-authorized" in r or "invalid-from" in r, r
    p.close()
    assert "spoofed again" not in alice.read_for(1.5)


def test_ca_signed_certificates_authenticate_with_sasl_external(w, clients):
    a, b = w.a, w.b
    marks = {}
    try:
        for d in (a, b):
            d.set_cert_mode("ca")
        for d in (a, b):
            marks[d.domain] = d.mark()
            d.restart("s2s")
        alice, bob = clients()
        alice.message(bob.jid, "external to b")
        bob.wait_message("external to b", timeout=20)
        bob.message(alice.jid, "external to a")
        alice.wait_message("external to a", timeout=20)
        assert "type='result'" in alice.ping("b.test", "xping-b")
        assert "type='result'" in bob.ping("a.test", "xping-a")
        for d, other in ((a, "b.test"), (b, "a.test")):
            log = d.log("s2s", since=marks[d.domain])
            assert re.search(rf"event=s2s-authenticated direction=out local={d.domain} remote={other} "
                             rf"method=external .*cert=valid", log), log[-4000:]
            assert re.search(rf"event=s2s-authenticated direction=in local={d.domain} remote={other} "
                             rf"method=external", log), log[-4000:]
            assert "method=dialback" not in log, log[-4000:]
    finally:
        for d in (a, b):
            d.set_cert_mode("self")
            if marks.get(d.domain) is not None:
                d.restart("s2s")


def test_restart_either_s2s_mid_conversation_and_it_continues(w, clients):
    a, b = w.a, w.b
    alice, bob = clients()
    alice.message(bob.jid, "before-restart")
    bob.wait_message("before-restart", timeout=20)
    bob.message(alice.jid, "before-restart-back")
    alice.wait_message("before-restart-back", timeout=20)
    for dep, other in ((b, a), (a, b)):
        mark = other.mark()
        dep.kill9("s2s")
        # the other side notices its streams are gone
        # (stanzas already written into a connection that breaks are lost:
        # docs/s2s.md, no XEP-0198 on server streams; so the conversation
        # goes on once the other side has seen the streams close)
        assert fed.wait_for(lambda: re.search(rf"event=s2s-closed (local={other.domain} remote={dep.domain}|"
                                              rf"direction=in peer=\S+ remote={dep.domain})",
                                              other.log("s2s", since=mark)), 10), other.log("s2s", since=mark)
        # both keep talking while it is down, and after it is back
        alice.message(bob.jid, f"down-{dep.domain}-a")
        bob.message(alice.jid, f"down-{dep.domain}-b")
        time.sleep(0.5)
        dep.start("s2s")
        alice.message(bob.jid, f"up-{dep.domain}-a")
        bob.message(alice.jid, f"up-{dep.domain}-b")
        got_b = bob.wait_all([rf"<body>down-{re.escape(dep.domain)}-a</body>",
                              rf"<body>up-{re.escape(dep.domain)}-a</body>"], timeout=QUEUE + 10)
        got_a = alice.wait_all([rf"<body>down-{re.escape(dep.domain)}-b</body>",
                                rf"<body>up-{re.escape(dep.domain)}-b</body>"], timeout=QUEUE + 10)
        assert got_a and got_b
    # and nothing came twice
    time.sleep(1)
    for c, tag in ((alice, "-b<"), (bob, "-a<")):
        rest = c.read_for(0.5)
        assert "down-" not in rest and "up-" not in rest, rest
