"""Backpressure on a component's router link (docs/component-protocol.md
10.1), provoked with router.buffer at its 64 KiB minimum. First weft-muc
under a storm of concurrent joins to one room whose occupants carry long
statuses. Every
join's output (the joiner's broadcast and every occupant's presence to the
joiner) is retained until the router acknowledges it; the storm's total is
many times the buffer. The muc must take new input only as its buffer
drains, never drop a stanza: each client sees every occupant's presence,
its own self-presence included, and no log says buffer-full. Then the sm,
with a burst of messages to a client whose acknowledgements it must wait
for: every message arrives.
"""
import re
import threading

import pytest

import muc_env
from muc_env import MucServer, room
from test_sm_iq import make_certs

MUC = "http://jabber.org/protocol/muc"
OWNER = MUC + "#owner"
BUFFER = 65536          # the option's minimum
JOINERS = 24
STATUS = "s" * 500      # one join's output: about 25 presences of 700 bytes, under BUFFER/2


@pytest.fixture
def srv(tmp_path, monkeypatch):
    make_certs(tmp_path)
    monkeypatch.setattr(muc_env, "MUC", muc_env.MUC.replace(
        "<name>router</name></router>", f"<name>router</name><buffer>{BUFFER}</buffer></router>"))
    s = MucServer(tmp_path).start(c2s_extra="<limits><connections-per-ip>1000</connections-per-ip></limits>")
    yield s
    s.close()


def nick_of(st):
    m = re.search(r"from='[^'/]+/([^']+)'", st)
    return m and m.group(1)


def test_join_storm_drops_nothing(srv):
    owner = srv.user("owner")
    owner.send(f"<presence to='{room('storm')}/Owner'><x xmlns='{MUC}'/>"
               f"<status>{STATUS}</status></presence>")
    owner.read_until(r"<subject\s*/>|</subject>")
    owner.send(f"<iq type='set' to='{room('storm')}' id='c1'><query xmlns='{OWNER}'>"
               "<x xmlns='jabber:x:data' type='submit'/></query></iq>")
    owner.read_until(r"id='c1'")
    clients = {f"u{i}": srv.user(f"u{i}") for i in range(JOINERS)}
    everyone = set(clients) | {"Owner"}

    # Every join at once: the muc gets them in a few reads.
    for nick, c in clients.items():
        c.send(f"<presence to='{room('storm')}/{nick}'><x xmlns='{MUC}'/>"
               f"<status>{STATUS}</status></presence>")

    seen = {nick: set() for nick in clients}
    selfp = {}
    errors = []
    rx = re.compile(r"<presence\b[^>]*?(/>|>[\s\S]*?</presence>)")

    def reader(nick, c):
        try:
            while seen[nick] != everyone or nick not in selfp:
                st = rx.search(c.read_until(rx.pattern, timeout=60)).group(0)
                if "type='error'" in st:
                    errors.append(st)
                    return
                who = nick_of(st)
                if who in everyone and "type='unavailable'" not in st:
                    seen[nick].add(who)
                    if who == nick and "code='110'" in st:
                        selfp[nick] = st
        except Exception as e:   # a timeout: reported below with what was seen
            errors.append(f"{nick}: {e.__class__.__name__}")

    threads = [threading.Thread(target=reader, args=(n, c)) for n, c in clients.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)

    missing = {n: sorted(everyone - s) for n, s in seen.items() if s != everyone}
    assert not errors and not missing, (errors[:3], missing)
    assert sorted(selfp) == sorted(clients)
    # The owner saw every joiner come in.
    got = set()
    while got != set(clients):
        st = rx.search(owner.read_until(rx.pattern, timeout=30)).group(0)
        if nick_of(st) in clients:
            got.add(nick_of(st))
    for name in ("muc", "sm"):
        assert "reason=buffer-full" not in srv.log(name), name
    # The storm did go past the high-water mark: the test provokes what it checks.
    assert "event=link-backpressure component=muc state=on" in srv.log("muc")


def test_sm_burst_to_unacking_client_drops_nothing(tmp_path, monkeypatch):
    """The sm's link: a XEP-0198 client that does not answer <r/> holds
    c2s's acknowledgements of its deliveries (timeouts.delivery-ack), so
    the sm's deliveries to it stay in the sm's buffer meanwhile. A burst of
    messages to it many times router.buffer must all arrive, none dropped."""
    import server
    make_certs(tmp_path)
    monkeypatch.setattr(server, "SM", server.SM.replace(
        "<name>router</name></router>", f"<name>router</name><buffer>{BUFFER}</buffer></router>", 1))
    s = server.Server(tmp_path).start(
        c2s_extra="<timeouts><delivery-ack>2</delivery-ack></timeouts>")
    try:
        for u in ("sender", "sink"):
            s.register(u, "pw-" + u)
        sink = s.login("sink", "pw-sink")
        sink.send("<enable xmlns='urn:xmpp:sm:3'/>")
        sink.read_until(r"<enabled\b[^>]*>")
        sink.send("<presence/>")
        sink.read_until(r"<presence\b")
        sender = s.login("sender", "pw-sender")
        n, body = 300, "b" * 1000        # 300 KB: several times the buffer
        for i in range(n):
            sender.send(f"<message to='sink@localhost/r' type='chat' id='m{i}'><body>{i}:{body}</body></message>")
        got = set()
        while len(got) < n:              # read (the kernel never fills) but never answer <r/>
            chunk = sink.read_until(r"</message>", timeout=60)
            got.update(int(x) for x in re.findall(r"<body>(\d+):", chunk))
        assert got == set(range(n))
        assert "reason=buffer-full" not in s.log("sm")
        assert "event=link-backpressure component=sm state=on" in s.log("sm")
    finally:
        s.close()
