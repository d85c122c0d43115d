"""Federation between weft and a real peer: Debian's Prosody 0.12 as p.test
(issue 4, "interoperation"). fed.FedNet builds the namespaces: weft a.test on
host "a", Prosody p.test on host "p", dnsmasq on host "dns", clients and
hand-made server peers on host "clients", all on one bridge.

DNS:
  a.test   SRV _xmpp-server._tcp -> xmpp.a.test:5269 (A of host a)
  p.test   A of host p, no SRV: weft uses the fallback port 5269

Prosody: STARTTLS required on c2s and s2s; s2s_secure_auth off with
self-signed certificates (dialback), on with CA-signed ones (SASL EXTERNAL).

Needs root (ip netns, /etc/netns), dnsmasq, openssl and prosody; about 20 s with
the ASan build on 2 cores.
"""
import re
import shutil
import time

import pytest

import fed
from fed import CA, FedNet, ProsodyDeployment, RawS2S, WeftDeployment, q, slix_pair

# scripts/deps.sh installs what this needs and the test command runs as root:
# a machine that cannot run it is a failure, not a skip.
_problem = fed.usable() or (None if shutil.which(fed.PROSODY) else 'prosody not installed')
if _problem:
    raise RuntimeError(f"federation tests cannot run: {_problem}")


QUEUE = 15


class World:
    pass


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2sp")
    net = FedNet(root, hosts=("a", "p"))
    try:
        ca = CA(root / "ca")
        ha, hp = net.hosts["a"], net.hosts["p"]
        net.add_srv("a.test", "xmpp.a.test", 5269)
        net.add_a("xmpp.a.test", ha.ip)
        net.add_a("p.test", hp.ip)
        net.start_dns()
        a = WeftDeployment(net, "a", "a.test", ca=ca, queue=QUEUE)
        p = ProsodyDeployment(net, "p", "p.test", ca=ca)
        a.start_all(users=["alice", "carol"])
        p.start_all(users=["pat", "quinn"])
        x = World()
        x.net, x.ca, x.a, x.p = net, ca, a, p
        yield x
    finally:
        net.close()


@pytest.fixture
def clients(w, request):
    """(weft user, Prosody user) pairs of raw clients, closed after the test."""
    res = request.node.name[-40:]
    made = []

    def make(wu="carol", pu="quinn"):
        c1 = w.a.client(wu, resource=res)
        c2 = w.p.client(pu, resource=res)
        made.extend((c1, c2))
        return c1, c2
    yield make
    for c in made:
        c.close()


def reachable(sender, receiver, timeout=20):
    """Waits until a message from sender reaches receiver. After a restart of
    either server, weft's s2s may still be in the pause that follows a
    connect which found the peer down, and bounces what is sent then
    (remote-server-not-found): a test that restarts servers checks the way
    is open before it counts on a delivery."""
    end = time.time() + timeout
    n = 0
    while time.time() < end:
        n += 1
        body = f"reachable-{n}"
        sender.message(receiver.jid, body)
        try:
            receiver.wait_message(body, timeout=2)
            return True
        except TimeoutError:
            continue
    return False


def from_(jid):
    return r"from=['\"]" + re.escape(jid) + r"['\"]"


def prosody_tls_links(log):
    """Prosody's own account of its s2s sessions: encrypted ones, and the
    completed ones as (direction, from, to)."""
    enc = re.findall(r"(s2s(?:in|out)[0-9a-f]+)\s+info\s+Stream encrypted \((TLS[^)]*)\)", log)
    done = re.findall(r"(Incoming|Outgoing) s2s connection (\S+)->(\S+) complete", log)
    return enc, done


def test_done_means_users_on_weft_and_prosody_add_each_other_see_presence_and_chat(w):
    """The issue's definition of done, with slixmpp as both users' client."""
    a, p = w.a, w.p
    rep = slix_pair(w.net, {"jid": "alice@a.test/slix", "password": "pw", "ip": a.ip, "mech": a.mech},
                    {"jid": "pat@p.test/slix", "password": "pw", "ip": p.ip, "mech": p.mech})
    assert rep.get("ok"), (rep, a.log("s2s")[-4000:], p.log("prosody")[-4000:])
    assert rep["a_roster"] == "both" and rep["b_roster"] == "both", rep
    assert rep["a_sees"] == "pat@p.test/slix" and rep["b_sees"] == "alice@a.test/slix", rep
    assert rep["b_got"] == ["alice@a.test/slix", "hello from a"], rep
    assert rep["a_got"] == ["pat@p.test/slix", "hello from b"], rep
    assert rep["ping_a_to_b_domain"] and rep["ping_b_to_a_domain"], rep
    # TLS on the link, both directions, as each side saw it
    log = a.log("s2s")
    m = re.search(r"event=s2s-authenticated direction=out local=a\.test remote=p\.test .*tls=(\S+)", log)
    assert m and m.group(1).startswith("TLS"), log[-4000:]
    assert re.search(r"event=s2s-authenticated direction=in local=a\.test remote=p\.test", log), log[-4000:]
    enc, done = prosody_tls_links(p.log("prosody"))
    assert ("Outgoing", "p.test", "a.test") in done and ("Incoming", "a.test", "p.test") in done, done
    assert any(s.startswith("s2sout") for s, _ in enc) and any(s.startswith("s2sin") for s, _ in enc), enc


def test_chat_subscription_and_ping_both_ways_over_dialback(w, clients):
    a, p = w.a, w.p
    carol, quinn = clients()
    carol.message(quinn.jid, "hi quinn")
    got = quinn.wait_message("hi quinn")
    assert f"from='{carol.jid}'" in got, got
    quinn.message(carol.jid, "hi carol")
    got = carol.wait_message("hi carol")
    assert f"from='{quinn.jid}'" in got, got

    carol.send("<presence to='quinn@p.test' type='subscribe'/>")
    quinn.read_until(r"<presence[^>]*type=['\"]subscribe['\"]", timeout=15)
    quinn.send("<presence to='carol@a.test' type='subscribed'/>")
    carol.wait_all([r"<presence[^>]*type=['\"]subscribed['\"]",
                    r"<presence(?![^>]*type=)[^>]*" + from_(quinn.jid)], timeout=15)
    quinn.send("<presence to='carol@a.test' type='subscribe'/>")
    carol.read_until(r"<presence[^>]*type=['\"]subscribe['\"]", timeout=15)
    carol.send("<presence to='quinn@p.test' type='subscribed'/>")
    quinn.wait_all([r"<presence[^>]*type=['\"]subscribed['\"]",
                    r"<presence(?![^>]*type=)[^>]*" + from_(carol.jid)], timeout=15)
    quinn.send("<presence><show>dnd</show></presence>")
    carol.read_until(r"<presence[^>]*" + from_(quinn.jid) + r"[^>]*>(?:(?!</presence>)[\s\S])*<show>dnd</show>",
                     timeout=15)
    carol.send("<presence><show>xa</show></presence>")
    quinn.read_until(r"<presence[^>]*" + from_(carol.jid) + r"[^>]*>(?:(?!</presence>)[\s\S])*<show>xa</show>",
                     timeout=15)

    assert "type='result'" in carol.ping("p.test", "ping-p")
    assert "type='result'" in quinn.ping("a.test", "ping-a")

    log = a.log("s2s")
    for direction in ("out", "in"):
        assert re.search(rf"event=s2s-authenticated direction={direction} local=a\.test remote=p\.test "
                         rf"method=dialback", log), (direction, log[-4000:])
    # weft found p.test by its A record (no SRV), on 5269
    assert re.search(rf"event=s2s-connecting local=a\.test remote=p\.test host=p\.test "
                     rf"peer={re.escape(p.ip)}:5269 tls=starttls", log), log[-4000:]
    plog = p.log("prosody")
    # Prosody asked weft (authoritative for a.test) about the key it got,
    # and weft confirmed a key weft made
    assert re.search(r"dialback-verify-asked local=a\.test remote=p\.test result=valid", log), log[-4000:]
    assert "Incoming s2s connection a.test->p.test complete" in plog
    assert "Outgoing s2s connection p.test->a.test complete" in plog


def test_forged_dialback_keys_are_refused_both_ways(w, clients):
    a, p = w.a, w.p
    carol, quinn = clients()
    # (1) a peer claims p.test to weft: weft asks Prosody, which says no
    s = RawS2S(w.net, a.ip, 5269, "p.test", "a.test")
    s.open()
    s.starttls()
    s.send("<db:result from='p.test' to='a.test'>" + "badc0ffee" * 7 + "</db:result>")
    r = q(s.read_until(r"<db:result[^>]*(/>|>[\s\S]*?</db:result>)|<stream:error>[\s\S]*</stream:error>",
                       timeout=25))
    assert "type='invalid'" in r or "<stream:error>" in r, r
    if "<stream:error>" not in r:
        s.send(f"<message from='quinn@p.test/x' to='{carol.jid}' type='chat'><body>forged-to-weft</body></message>")
        rest = s.read_closed(timeout=10)
        assert "not-authorized" in rest or "invalid-from" in rest, rest
    s.close()
    assert "forged-to-weft" not in carol.read_for(2)
    assert re.search(r"event=dialback-invalid local=a\.test remote=p\.test", a.log("s2s")), a.log("s2s")[-4000:]

    # (2) a peer claims a.test to Prosody: Prosody asks weft, which says no
    mark = a.mark()
    s = RawS2S(w.net, p.ip, 5269, "a.test", "p.test")
    s.open()
    s.starttls()
    s.send("<db:result from='a.test' to='p.test'>" + "0badbeef" * 8 + "</db:result>")
    r = q(s.read_until(r"<db:result[^>]*(/>|>[\s\S]*?</db:result>)|<stream:error>[\s\S]*</stream:error>",
                       timeout=25))
    assert "type='invalid'" in r or "<stream:error>" in r, r
    try:
        s.send(f"<message from='carol@a.test/x' to='{quinn.jid}' type='chat'><body>forged-to-prosody</body>"
               "</message>")
        s.read_closed(timeout=5)
    except (OSError, TimeoutError):
        pass
    s.close()
    assert "forged-to-prosody" not in quinn.read_for(2)
    assert re.search(r"event=dialback-verify-asked local=a\.test remote=p\.test result=invalid",
                     a.log("s2s", since=mark)), a.log("s2s", since=mark)[-4000:]


def test_ca_signed_certificates_sasl_external_both_ways(w, clients):
    a, p = w.a, w.p
    mark, pmark = None, None
    try:
        a.set_cert_mode("ca")
        p.set_cert_mode("ca")       # and s2s_secure_auth = true
        mark, pmark = a.mark(), p.mark()
        a.restart("s2s")
        p.restart()
        carol, quinn = clients()
        assert reachable(carol, quinn)
        carol.message(quinn.jid, "external to prosody")
        quinn.wait_message("external to prosody", timeout=20)
        quinn.message(carol.jid, "external to weft")
        carol.wait_message("external to weft", timeout=20)
        assert "type='result'" in carol.ping("p.test", "xping-p")
        assert "type='result'" in quinn.ping("a.test", "xping-a")
        log = a.log("s2s", since=mark)
        assert re.search(r"event=s2s-authenticated direction=out local=a\.test remote=p\.test method=external "
                         r".*cert=valid", log), log[-4000:]
        assert re.search(r"event=s2s-authenticated direction=in local=a\.test remote=p\.test method=external",
                         log), log[-4000:]
        assert "method=dialback" not in log, log[-4000:]
        plog = p.log("prosody", since=pmark)
        assert "Accepting SASL EXTERNAL identity from a.test" in plog, plog[-4000:]
        assert "SASL EXTERNAL with a.test succeeded" in plog, plog[-4000:]
    finally:
        a.set_cert_mode("self")
        p.set_cert_mode("self")
        if mark is not None:
            a.restart("s2s")
            p.restart()


def test_restart_weft_s2s_and_prosody_mid_conversation(w, clients):
    a, p = w.a, w.p
    carol, quinn = clients()
    assert reachable(carol, quinn)     # the test before restarted both servers
    carol.message(quinn.jid, "before")
    quinn.wait_message("before", timeout=20)
    quinn.message(carol.jid, "before-back")
    carol.wait_message("before-back", timeout=20)

    # weft's s2s dies and comes back; Prosody notices, reconnects
    pmark = p.mark()
    a.kill9("s2s")
    assert fed.wait_for(lambda: re.search(r"(s2s stream|s2s disconnected:) (p\.test->a\.test|a\.test->p\.test)",
                                          p.log("prosody", since=pmark)), 10), p.log("prosody", since=pmark)[-3000:]
    # weft holds what carol sends meanwhile (the router's hold queue, then
    # the new s2s); Prosody does not wait for a peer it cannot reach: what
    # quinn sends meanwhile comes back to quinn as an error, never vanishes
    carol.message(quinn.jid, "during-weft-down")
    quinn.message(carol.jid, "during-weft-down-back", mid="qdown")
    time.sleep(0.5)
    a.start("s2s")
    carol.message(quinn.jid, "after-weft-up")
    quinn.wait_all([r"<body>during-weft-down</body>", r"<body>after-weft-up</body>"], timeout=QUEUE + 10)
    quinn.message(carol.jid, "after-weft-up-back")
    carol.wait_message("after-weft-up-back", timeout=QUEUE + 10)
    carol.read_for(1)
    if "during-weft-down-back" not in carol.seen:
        quinn.read_for(0.5)
        bounced = quinn.seen
        assert re.search(r"<message[^>]*id=['\"]qdown['\"][^>]*type=['\"]error['\"]|"
                         r"<message[^>]*type=['\"]error['\"][^>]*id=['\"]qdown['\"]", bounced), bounced

    # Prosody restarts (its users reconnect): weft notices, reconnects
    mark = a.mark()
    p.restart()
    assert fed.wait_for(lambda: re.search(r"event=s2s-(closed|stream-error)", a.log("s2s", since=mark)), 10), \
        a.log("s2s", since=mark)
    quinn2 = p.client("quinn", resource="again")
    carol.message("quinn@p.test/again", "after-prosody-restart")
    quinn2.wait_message("after-prosody-restart", timeout=QUEUE + 10)
    quinn2.message(carol.jid, "after-prosody-restart-back")
    carol.wait_message("after-prosody-restart-back", timeout=QUEUE + 10)
    quinn2.close()
