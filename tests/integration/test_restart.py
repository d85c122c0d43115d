"""Restarting one component under traffic with real client connections
(docs/architecture.md, "if it restarts"): kill -9 the sm or the router while users
chat; no client is disconnected and every message arrives exactly once.
Killing c2s ends its sessions at once and messages for them go offline."""
import re
import socket
import time

import pytest

from conftest import wait_for
from server import Server

PAIRS = 10


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def drain(c):
    """Reads whatever is available without blocking for long."""
    c.sock.settimeout(0.01)
    try:
        while True:
            data = c.sock.recv(65536)
            if not data:
                raise EOFError("server closed the client connection")
            c.buf += data.decode(errors="replace")
    except (socket.timeout, BlockingIOError):
        pass
    except Exception as e:  # ssl.SSLWantReadError and friends
        if "timed out" in str(e) or "WantRead" in type(e).__name__:
            return
        raise


def bodies(c):
    return re.findall(r"<body>(m-\d+-\d+)</body>", c.buf)


def setup_pairs(srv):
    senders, receivers = [], []
    for i in range(PAIRS):
        srv.register(f"s{i}", "pw")
        srv.register(f"r{i}", "pw")
    for i in range(PAIRS):
        s = srv.login(f"s{i}", "pw")
        r = srv.login(f"r{i}", "pw")
        s.send("<presence/>")
        r.send("<presence/>")
        senders.append(s)
        receivers.append(r)
    time.sleep(0.5)
    for c in senders + receivers:
        drain(c)
        c.buf = ""
    return senders, receivers


def send_round(senders, k):
    for i, s in enumerate(senders):
        s.send(f"<message to='r{i}@localhost' type='chat'><body>m-{i}-{k}</body></message>")


def collect(receivers, expected, timeout=30):
    def done():
        for r in receivers:
            drain(r)
        return all(len(set(bodies(r))) >= expected for r in receivers)
    wait_for(done, timeout, 0.1)
    return [bodies(r) for r in receivers]


def still_connected(clients):
    for n, c in enumerate(clients):
        c.send(f"<iq type='get' id='alive{n}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    for n, c in enumerate(clients):
        c.read_until(rf"id=['\"]alive{n}['\"]", timeout=20)
    return True


@pytest.mark.parametrize("victim", ["sm", "router"])
def test_kill9_under_chat_loses_and_duplicates_nothing(srv, victim):
    srv.start()
    senders, receivers = setup_pairs(srv)
    rounds = 0
    for _ in range(5):
        send_round(senders, rounds)
        rounds += 1
    proc = srv.sm if victim == "sm" else srv.router
    proc.kill9()
    # Clients keep sending while the component is gone.
    for _ in range(5):
        send_round(senders, rounds)
        rounds += 1
        time.sleep(0.05)
    t0 = time.time()
    if victim == "sm":
        srv.start_sm()
    else:
        srv.router = srv._spawn(srv.router.args, "router.log")
    for _ in range(5):
        send_round(senders, rounds)
        rounds += 1
    got = collect(receivers, rounds)
    print(f"{victim} restart: all {PAIRS * rounds} messages delivered {time.time() - t0:.2f}s after restart")
    for i, b in enumerate(got):
        assert sorted(set(b)) == sorted(f"m-{i}-{k}" for k in range(rounds)), (i, b)
        assert len(b) == len(set(b)), f"duplicates for r{i}: {b}"
    assert still_connected(senders + receivers)


def test_c2s_kill9_ends_sessions_and_messages_go_offline(srv):
    srv.start()
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    a = srv.login("alice", "pw")
    a.send("<presence/>")
    # Subscribe both ways so alice sees bob's presence.
    b = srv.login("bob", "pw")
    b.send("<presence/>")
    a.send("<presence to='bob@localhost' type='subscribe'/>")
    b.read_until(r"type=['\"]subscribe['\"]")
    b.send("<presence to='alice@localhost' type='subscribed'/>")
    b.send("<presence to='alice@localhost' type='subscribe'/>")
    a.read_until(r"type=['\"]subscribe['\"]")
    a.send("<presence to='bob@localhost' type='subscribed'/>")
    time.sleep(0.5)
    srv.c2s.kill9()
    # The sm ends the sessions at once; a message to bob goes to offline storage.
    assert wait_for(lambda: "event=c2s-lost c2s=c2s.localhost sessions=2" in srv.log("sm"), 10), srv.log("sm")[-2000:]
    srv.c2s = srv._spawn(srv.c2s.args, "c2s.log")
    assert wait_for(lambda: srv.log("c2s").count("event=router-ready") >= 2, 15)
    a2 = srv.login("alice", "pw", resource="again")
    a2.send("<presence/>")
    a2.send("<message to='bob@localhost' type='chat'><body>while you were gone</body></message>")
    time.sleep(0.5)
    b2 = srv.login("bob", "pw", resource="back")
    b2.send("<presence/>")
    out = b2.read_until(r"while you were gone[\s\S]*?</message>")
    assert "urn:xmpp:delay" in out


def test_stanza_held_past_the_hold_time_comes_back_as_an_error(tmp_path):
    """No sm for longer than the router's hold time: the client's message
    comes back to it as a stanza error (recipient-unavailable), never as a
    message addressed to it."""
    srv = Server(tmp_path)
    try:
        srv.start(hold=2)
        srv.register("alice", "pw")
        a = srv.login("alice", "pw")
        a.send("<presence/>")
        a.read_until(r"<presence[^>]*/?>")
        srv.sm.kill9()
        a.send("<message to='bob@localhost' id='held1' type='chat'><body>anyone?</body></message>")
        r = a.read_until(r"<message[^>]*id=['\"]held1['\"][\s\S]*?</message>", timeout=15)
        assert re.search(r"type=['\"]error['\"]", r), r
        assert "recipient-unavailable" in r or "service-unavailable" in r, r
        assert re.search(r"from=['\"]bob@localhost['\"]", r), r
    finally:
        srv.close()
