"""How fast weft's s2s gets stanzas out after a peer comes back, and how fast
it bounces them when there is nobody to send them to (issues 18 and 11,
docs/s2s.md "Failures"). Debian's Prosody is the peer p.test and Debian's
jabberd2 2.7 the peer j.test; fed.FedNet builds the namespaces (weft a.test
on host "a", Prosody on host "p", jabberd2 on host "j", dnsmasq on "dns",
the test's clients on "clients").

DNS:
  a.test        SRV _xmpp-server._tcp -> xmpp.a.test:5269 (A of host a)
  p.test        A of host p, no SRV
  j.test        SRV _xmpp-server._tcp -> xmpp.j.test:5269 (A of host j)
  refused.test  A of the clients host, where nothing listens on 5269
  unreach.test  A of an address on the bridge that no host has
  silent.test   dnsmasq asks a UDP socket of this test, which never answers

Delays are measured from the moment Prosody's s2s port accepts connections
again (polled every 10 ms) to weft's stream to it being authenticated, which
is when weft writes its queue out (weft's log, in ms). Prosody runs with
mod_offline, so a message that reaches it before its user has logged in again
is kept and handed over at login; the test checks that each message reaches
the user, exactly once and in order, within 1 s of the login.

With jabberd2 it is its s2s process that goes away and comes back: its
router, sm and c2s stay up, so its user stays logged in, and each message
must reach that user's client within 1 s of the s2s port accepting
connections again (jabberd2's own peers see the same: a server whose s2s
restarts).

Needs root (ip netns), dnsmasq, openssl, prosody and jabberd2; about 120 s
with the ASan build on 2 cores.
"""
import datetime
import os
import re
import shutil
import signal
import socket
import sys
import time

import pytest

import fed
from fed import CA, FedNet, Jabberd2Deployment, ProsodyDeployment, WeftDeployment, q

_problem = fed.usable() or (None if shutil.which(fed.PROSODY) else 'prosody not installed') or \
    (None if os.path.exists(os.path.join(fed.JABBERD2_DIR, "jabberd2-s2s")) else "jabberd2 not installed")
if _problem:
    raise RuntimeError(f"federation tests cannot run: {_problem}")

QUEUE = 25          # timeouts.queue of a.test: longer than any downtime below
DNS_TIMEOUT = 2     # dns.timeout of a.test
SILENT_PORT = 5353


class ProsodyWithOffline(ProsodyDeployment):
    """Prosody as fed.py configures it, plus mod_offline."""

    def config(self):
        path = super().config()
        text = path.read_text()
        assert '"register";' in text
        path.write_text(text.replace('"register";', '"register"; "offline";', 1))
        return path


class World:
    pass


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2sr")
    net = FedNet(root, hosts=("a", "p", "j"))
    silent = None
    try:
        ha, hp, hc = net.hosts["a"], net.hosts["p"], net.clients
        with fed.netns(hc.ns):
            silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind((hc.ip, SILENT_PORT))        # reads nothing, answers nothing
        net.add_srv("a.test", "xmpp.a.test", 5269)
        net.add_a("xmpp.a.test", ha.ip)
        net.add_a("p.test", hp.ip)
        net.add_srv("j.test", "xmpp.j.test", 5269)
        net.add_a("xmpp.j.test", net.hosts["j"].ip)
        net.add_a("refused.test", hc.ip)
        net.add_a("unreach.test", f"{net.subnet}.250")
        net.add_silent("silent.test", hc.ip, SILENT_PORT)
        net.start_dns()
        ca = CA(root / "ca")
        a = WeftDeployment(net, "a", "a.test", ca=ca, queue=QUEUE, dns_timeout=DNS_TIMEOUT)
        p = ProsodyWithOffline(net, "p", "p.test", ca=ca)
        a.start_all(users=["carol", "alice", "dave", "erin", "frank"])
        p.start_all(users=["quinn", "pat", "ruth", "sam", "tina"])
        j = Jabberd2Deployment(net, "j", "j.test", rsa_bits=4096)
        j.start_all(users=["joe"])
        x = World()
        x.net, x.a, x.p, x.j = net, a, p, j
        yield x
    finally:
        net.close()
        if silent:
            silent.close()


def report(record_property, **kv):
    for k, v in kv.items():
        record_property(k, v)
    sys.stderr.write("\n" + " ".join(f"{k}={v}" for k, v in kv.items()) + "\n")


def logged_at(log, pattern):
    """time.time() of the first line of a weft log that matches pattern."""
    m = re.search(r"^(\S+)Z [A-Z]+ [^\n]*" + pattern, log, re.M)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


READY_OUT = r"event=s2s-authenticated direction=out local=a\.test remote=p\.test"
READY_OUT_J = r"event=s2s-authenticated direction=out local=a\.test remote=j\.test"


def body_rx(body):
    return f"<body>{re.escape(body)}</body>"


def arrivals(client, bodies, timeout):
    """Reads until every body was seen by `client` (anything it has ever
    received counts); returns {body: time first seen} (time.time())."""
    got = {}
    end = time.time() + timeout
    while True:
        for b in bodies:
            if b not in got and re.search(body_rx(b), client.seen):
                got[b] = time.time()
        if len(got) == len(bodies) or time.time() > end:
            return got
        try:
            client._recv(min(0.05, max(0.01, end - time.time())))
        except (socket.timeout, OSError):
            pass
        except EOFError:
            return got


def warm_up(w, sender, recipient_user, tag):
    """A message that crosses the route, so that weft's stream to p.test is up
    (and the route has been connected) before the peer goes away."""
    r = w.p.client(recipient_user, resource="warm")
    sender.message(f"{recipient_user}@p.test", f"warm-{tag}")
    r.wait_message(f"warm-{tag}", timeout=20)
    r.close()


def stop_peer(p, how):
    if how == "kill":
        p.kill9()
    else:
        assert p.procs["prosody"].stop() is not None


def start_peer_and_wait_port(w):
    """Starts Prosody; returns the time its s2s port first accepted a
    connection (polled every 10 ms from the clients host), once its client
    port (opened a moment later) accepts too."""
    w.p.start(wait=False)
    end = time.time() + 30
    while time.time() < end:
        if w.net.port_open(w.p.ip, w.p.s2s_port):
            t_up = time.time()
            w.net.wait_port(w.p.ip, 5222, timeout=10)
            return t_up
        time.sleep(0.01)
    raise RuntimeError("prosody did not come back:\n" + w.p.log("prosody")[-3000:] + w.p.log_out())


# Down 4 s: the old schedule (attempts at 0, ~1, ~3, ~7 s, each 0.8-1.2x)
# sat in its 4 s pause when the peer came back; down 10 s: in its 8 s pause.
@pytest.mark.parametrize("how,down", [("kill", 4), ("term", 4), ("kill", 10)],
                         ids=["sigkill-4s", "sigterm-4s", "sigkill-10s-longer-than-a-backoff-step"])
def test_queued_messages_reach_a_peer_within_1s_of_its_return(w, how, down, record_property):
    """Prosody goes away while carol writes to quinn; what weft held reaches
    quinn within 1 s of Prosody accepting connections again, exactly once and
    in order with what carol writes after it is back. quinn is not subscribed
    to carol, so Prosody does not contact weft by itself: the fast retry
    schedule (timeouts.retry-fast) is what brings the messages."""
    a, p = w.a, w.p
    carol = a.client("carol", resource=f"{how}{down}")
    warm_up(w, carol, "quinn", f"{how}{down}")
    tag = f"{how}{down}"
    mark = a.mark()
    stop_peer(p, how)
    t_down = time.time()
    carol.message("quinn@p.test", f"{tag}-m1")
    time.sleep(down / 2)
    carol.message("quinn@p.test", f"{tag}-m2")
    time.sleep(max(0, down - (time.time() - t_down)))
    t_up = start_peer_and_wait_port(w)
    carol.message("quinn@p.test", f"{tag}-m3")      # written after the peer is back
    quinn = p.client("quinn", resource=tag)
    t_login = time.time()
    bodies = [f"{tag}-m1", f"{tag}-m2", f"{tag}-m3"]
    got = arrivals(quinn, bodies, timeout=QUEUE)
    quinn.read_for(1.5)                             # anything sent twice would be here by now
    slog = a.log("s2s", since=mark)
    info = (got, quinn.seen[-3000:], slog[-4000:])
    assert set(got) == set(bodies), info
    delay = logged_at(slog, READY_OUT) - t_up
    at_user = got[bodies[0]] - t_login
    report(record_property, case=tag, down_s=round(t_up - t_down, 2), delay_s=round(delay, 3),
           login_s=round(t_login - t_up, 3), at_user_after_login_s=round(at_user, 3),
           attempts=len(re.findall(r"event=s2s-failed local=a\.test remote=p\.test", slog)))
    assert delay < 1.0, (delay, info)
    assert at_user < 1.0, (at_user, info)
    for b in bodies:
        assert len(re.findall(body_rx(b), quinn.seen)) == 1, (b, info)
    pos = [quinn.seen.index(f"<body>{b}</body>") for b in bodies]
    assert pos == sorted(pos), (pos, info)
    assert "event=bounced" not in slog, slog[-4000:]
    assert "type='error'" not in q(carol.read_for(0.2)), carol.seen[-2000:]
    quinn.close()
    carol.close()


def start_jabberd2_s2s_and_wait_port(w):
    """Starts jabberd2's s2s; returns the time its port first accepted a
    connection (polled every 10 ms from the clients host)."""
    w.j.start("s2s", wait=False)
    end = time.time() + 30
    while time.time() < end:
        if w.net.port_open(w.j.ip, w.j.s2s_port):
            return time.time()
        time.sleep(0.01)
    raise RuntimeError("jabberd2's s2s did not come back:\n" + w.j.log("s2s")[-3000:])


@pytest.mark.parametrize("how,down", [("kill", 4), ("term", 4), ("kill", 10)],
                         ids=["sigkill-4s", "sigterm-4s", "sigkill-10s-longer-than-a-backoff-step"])
def test_queued_messages_reach_jabberd2_within_1s_of_its_s2s_return(w, how, down, record_property):
    """The same with jabberd2 as the peer: its s2s goes away while carol
    writes to joe, who stays logged in to jabberd2's c2s and sm; what weft
    held reaches joe's client within 1 s of jabberd2's s2s port accepting
    connections again, exactly once and in order with what carol writes
    after it is back. joe is not subscribed to carol, so jabberd2 has
    nothing to write to weft: weft's fast retries bring the messages (over
    dialback, for which jabberd2 checks back with weft)."""
    a, j = w.a, w.j
    tag = f"j{how}{down}"
    carol = a.client("carol", resource=tag)
    joe = j.client("joe", resource=tag)
    carol.message("joe@j.test", f"warm-{tag}")
    joe.wait_message(f"warm-{tag}", timeout=QUEUE)
    mark = a.mark()
    if how == "kill":
        j.kill9("s2s")
    else:
        assert j.procs["s2s"].stop() is not None
    t_down = time.time()
    carol.message("joe@j.test", f"{tag}-m1")
    time.sleep(down / 2)
    carol.message("joe@j.test", f"{tag}-m2")
    time.sleep(max(0, down - (time.time() - t_down)))
    t_up = start_jabberd2_s2s_and_wait_port(w)
    carol.message("joe@j.test", f"{tag}-m3")        # written after the peer is back
    bodies = [f"{tag}-m1", f"{tag}-m2", f"{tag}-m3"]
    got = arrivals(joe, bodies, timeout=QUEUE)
    joe.read_for(1.5)                               # anything sent twice would be here by now
    slog = a.log("s2s", since=mark)
    info = (got, joe.seen[-3000:], slog[-4000:], j.log("s2s")[-2000:])
    assert set(got) == set(bodies), info
    delay = logged_at(slog, READY_OUT_J) - t_up
    at_user = got[bodies[0]] - t_up
    report(record_property, case=tag, down_s=round(t_up - t_down, 2), delay_s=round(delay, 3),
           at_user_s=round(at_user, 3), last_at_user_s=round(max(got.values()) - t_up, 3),
           attempts=len(re.findall(r"event=s2s-failed local=a\.test remote=j\.test", slog)))
    assert delay < 1.0, (delay, info)
    assert max(got.values()) - t_up < 1.0, (got, t_up, info)
    for b in bodies:
        assert len(re.findall(body_rx(b), joe.seen)) == 1, (b, info)
    pos = [joe.seen.index(f"<body>{b}</body>") for b in bodies]
    assert pos == sorted(pos), (pos, info)
    assert "event=bounced" not in slog, slog[-4000:]
    assert "type='error'" not in q(carol.read_for(0.2)), carol.seen[-2000:]
    joe.close()
    carol.close()


def subscribe_both(weft_user, prosody_user):
    """weft_user and prosody_user (available clients) subscribe to each other."""
    weft_user.send(f"<presence to='{prosody_user.bare}' type='subscribe'/>")
    prosody_user.read_until(r"<presence[^>]*type=['\"]subscribe['\"]", timeout=15)
    prosody_user.send(f"<presence to='{weft_user.bare}' type='subscribed'/>")
    prosody_user.send(f"<presence to='{weft_user.bare}' type='subscribe'/>")
    weft_user.read_until(r"<presence[^>]*type=['\"]subscribe['\"]", timeout=15)
    weft_user.send(f"<presence to='{prosody_user.bare}' type='subscribed'/>")
    prosody_user.read_until(r"<presence(?![^>]*type=)[^>]*from=['\"]" + re.escape(weft_user.jid), timeout=15)


@pytest.mark.parametrize("auth", ["dialback", "external"])
def test_incoming_stream_from_a_returning_peer_ends_the_pause(w, auth, record_property):
    """With the fast schedule off (timeouts.retry-fast-period 0: pauses of 1,
    2, 4, 8 s), the route to p.test is deep in a pause when Prosody is back.
    pat logs in and, being subscribed to alice, makes Prosody open a stream to
    weft: that is the sign the peer is back, and alice's message goes out at
    once instead of at the end of the pause. With self-signed certificates
    Prosody's stream asks for dialback (which needs weft's stream to p.test);
    with CA-signed ones it authenticates with SASL EXTERNAL."""
    a, p = w.a, w.p
    a.s2s_extra = "<timeouts><retry-fast-period>0</retry-fast-period></timeouts>"
    if auth == "external":
        a.set_cert_mode("ca")
        p.set_cert_mode("ca")       # and s2s_secure_auth
        p.restart()
    a.restart("s2s")
    try:
        wu, pu = ("alice", "pat") if auth == "dialback" else ("frank", "tina")
        alice = a.client(wu, resource="trigger")
        pat = p.client(pu, resource="first")
        subscribe_both(alice, pat)
        warm_up(w, alice, pu, f"trigger-{auth}")
        pat.close()
        mark = a.mark()
        p.kill9()
        t_down = time.time()
        body = f"trigger-{auth}-m1"
        alice.message(f"{pu}@p.test", body)

        def pauses():
            return [float(x) for x in re.findall(r"event=s2s-failed local=a\.test remote=p\.test .*retry_in=(\S+)",
                                                 a.log("s2s", since=mark))]
        # wait for the 8 s pause (1, 2, 4, 8 s, each 0.8-1.2x) to begin: the
        # next attempt is then at least 6.4 s away, far past Prosody's return
        assert fed.wait_for(lambda: any(x > 6 for x in pauses()), 20), a.log("s2s", since=mark)[-3000:]
        t_pause = time.time()
        t_up = start_peer_and_wait_port(w)
        assert t_up - t_pause < 4, t_up - t_pause
        retries = pauses()
        pat = p.client(pu, resource="back")           # available presence: Prosody writes to weft
        t_login = time.time()
        got = arrivals(pat, [body], timeout=QUEUE)
        pat.read_for(1)
        slog = a.log("s2s", since=mark)
        info = (got, pat.seen[-3000:], slog[-4000:])
        assert body in got, info
        # Prosody writes to weft only once pat is back: measured from the login
        delay = logged_at(slog, READY_OUT) - t_login
        at_user = got[body] - t_login
        report(record_property, case=f"incoming-stream-{auth}", down_s=round(t_up - t_down, 2),
               login_s=round(t_login - t_up, 3), delay_after_login_s=round(delay, 3),
               delay_s=round(logged_at(slog, READY_OUT) - t_up, 3),
               at_user_after_login_s=round(at_user, 3), pause_s=retries[-1])
        assert delay < 1.0, (delay, info)
        assert at_user < 1.0, (at_user, info)
        assert len(re.findall(body_rx(body), pat.seen)) == 1, info
        method = "dialback" if auth == "dialback" else "external"
        assert re.search(rf"event=s2s-authenticated direction=in local=a\.test remote=p\.test method={method}",
                         slog), slog[-3000:]
        if auth == "external":
            # the incoming stream came first and sent weft's route on its way
            assert re.search(r"event=s2s-peer-back remote=p\.test routes=1", slog), slog[-3000:]
        pat.close()
        alice.close()
    finally:
        a.s2s_extra = ""
        if auth == "external":
            a.set_cert_mode("self")
            p.set_cert_mode("self")
            p.restart()
        a.restart("s2s")


def test_held_longer_than_queue_timeout_bounces_and_is_never_delivered(w, record_property):
    """A stanza that waited timeouts.queue for a peer that is down bounces
    with remote-server-timeout and is not delivered when the peer is back;
    the next one is."""
    a, p = w.a, w.p
    a.queue = 3
    a.config("s2s")
    reloads = a.log("s2s").count("event=reload ")
    a.procs["s2s"].p.send_signal(signal.SIGHUP)       # timeouts.queue is reloadable
    try:
        dave = a.client("dave", resource="q")
        assert fed.wait_for(lambda: a.log("s2s").count("event=reload ") > reloads, 5), a.log("s2s")[-2000:]
        warm_up(w, dave, "ruth", "expire")
        p.kill9()
        t0 = time.time()
        dave.message("ruth@p.test", "expire-old", mid="old1")
        r = q(dave.read_until(r"<message[^>]*id=['\"]old1['\"][\s\S]*?</message>", timeout=15))
        took = time.time() - t0
        report(record_property, case="queue-timeout", bounce_s=round(took, 2))
        assert "type='error'" in r and "remote-server-timeout" in r, r
        assert 2.5 < took < 3 + 2.5, took
        start_peer_and_wait_port(w)
        dave.message("ruth@p.test", "expire-new")
        ruth = p.client("ruth", resource="q")
        got = arrivals(ruth, ["expire-new"], timeout=15)
        ruth.read_for(1.5)
        assert "expire-new" in got, ruth.seen[-2000:]
        assert "expire-old" not in ruth.seen, ruth.seen[-2000:]
        ruth.close()
        dave.close()
    finally:
        a.queue = QUEUE
        a.config("s2s")
        a.procs["s2s"].p.send_signal(signal.SIGHUP)


def test_weft_s2s_restart_sends_what_the_router_held_at_once(w, record_property):
    """weft's own s2s is killed; what erin writes meanwhile waits in the
    router and reaches sam as soon as the s2s is back."""
    a, p = w.a, w.p
    erin = a.client("erin", resource="r")
    sam = p.client("sam", resource="r")
    erin.message("sam@p.test", "s2s-warm")
    sam.wait_message("s2s-warm", timeout=20)
    a.kill9("s2s")
    erin.message("sam@p.test", "s2s-held-1")
    erin.message("sam@p.test", "s2s-held-2")
    time.sleep(1)
    a.start("s2s")
    t_ready = time.time()
    got = arrivals(sam, ["s2s-held-1", "s2s-held-2"], timeout=QUEUE)
    sam.read_for(1)
    assert len(got) == 2, (got, sam.seen[-2000:], a.log("s2s")[-3000:])
    delay = max(got.values()) - t_ready
    report(record_property, case="weft-s2s-restart", delay_s=round(delay, 3))
    assert delay < 1.0, delay
    for b in ("s2s-held-1", "s2s-held-2"):
        assert len(re.findall(body_rx(b), sam.seen)) == 1, sam.seen[-2000:]
    sam.close()
    erin.close()


def test_first_attempt_with_nobody_to_talk_to_bounces_at_once(w, record_property):
    """A domain weft never reached: connection refused, address unreachable,
    DNS silent. Each bounces with remote-server-not-found within its own
    bound (at once; the kernel's ARP give-up; dns.timeout), not after
    timeouts.queue; so does the next message."""
    a = w.a
    carol = a.client("carol", resource="bounce")
    t0 = time.time()
    carol.message("x@refused.test", "refused", mid="refused1")
    carol.message("x@unreach.test", "unreach", mid="unreach1")
    carol.message("x@silent.test", "silent", mid="silent1")
    pats = {k: r"<message[^>]*id=['\"]" + k + r"['\"][\s\S]*?</message>" for k in ("refused1", "unreach1", "silent1")}
    got = {}
    end = t0 + QUEUE + 5
    while len(got) < len(pats) and time.time() < end:
        for k, pat in pats.items():
            m = re.search(pat, carol.seen)
            if m and k not in got:
                got[k] = (time.time() - t0, q(m.group(0)))
        try:
            carol._recv(0.02)
        except (socket.timeout, OSError):
            pass
    slog = a.log("s2s")
    assert set(got) == set(pats), (got, carol.seen[-3000:], slog[-4000:])
    report(record_property, case="first-attempt-bounce",
           **{f"{k}_s": round(v[0], 2) for k, v in got.items()})
    for k, (took, text) in got.items():
        assert "type='error'" in text and "remote-server-not-found" in text, (k, text)
    assert got["refused1"][0] < 1.0, got
    assert got["unreach1"][0] < 5.0, got           # ARP gives up after ~3 s: EHOSTUNREACH
    assert got["silent1"][0] < DNS_TIMEOUT + 1.0, got
    # the next one: bounced at once too (during the pause after the failure,
    # or by a new attempt that is refused again)
    t1 = time.time()
    carol.message("x@refused.test", "refused again", mid="refused2")
    r = q(carol.read_until(r"<message[^>]*id=['\"]refused2['\"][\s\S]*?</message>", timeout=10))
    assert "remote-server-not-found" in r and time.time() - t1 < 1.0, r
    assert re.search(r"event=bounced local=a\.test remote=silent\.test .*condition=remote-server-not-found", slog)
    carol.close()
