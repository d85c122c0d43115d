"""One stanza for several sessions travels from the sm to c2s as one
<deliver/> element (sm/deliver_batch.c, c2s/sm_link.c; docs/session-protocol.md,
"Delivering one stanza to several sessions"). What a user sees must not
change: each session gets each stanza once, in order, with its own 'to';
an inactive (XEP-0352) or stream-management session is served as before;
a session that went away meanwhile loses nothing that matters. The c2s
metric weft_c2s_router_deliveries_total says the merged path was taken."""
import re
import socket
import time

from conftest import free_port, wait_for
from muc_env import MucServer, join, room, stanza
from server import RawClient
from test_metrics import scrape, value
from test_muc import instant


def metrics_xml(port):
    return f"<metrics><listen>127.0.0.1:{port}</listen></metrics>"


def merged(port):
    return value(scrape(port), "weft_c2s_router_deliveries_total", element="deliver")


def bodies(text, tag):
    return [int(x) for x in re.findall(rf"<body>{tag} (\d+)</body>", text)]


def drain(c, secs=1.0):
    """What else arrives within secs."""
    got = ""
    c.sock.settimeout(0.3)
    end = time.time() + secs
    while time.time() < end:
        try:
            data = c.sock.recv(1 << 20)
        except (socket.timeout, OSError):
            continue
        if not data:
            break
        got += data.decode(errors="replace")
    return c.buf + got


def test_headline_to_many_resources_arrives_once_each_in_order(tmp_path):
    """A headline to a bare JID goes to every available resource (RFC 6121
    8.5.2.1.1): six sessions of one account, one of them inactive (CSI) and
    one with stream management, each get all 20 once, in order, addressed to
    the bare JID as sent; the sm sent them merged."""
    port = free_port()
    s = MucServer(tmp_path).start(c2s_extra=metrics_xml(port))
    try:
        devices = [s.user("many", f"d{i}") for i in range(6)]
        devices[2].send("<inactive xmlns='urn:xmpp:csi:0'/>")
        devices[4].send("<enable xmlns='urn:xmpp:sm:3'/>")
        devices[4].read_until(r"<enabled[^>]*>")
        bob = s.user("bob")
        before = merged(port)
        for i in range(20):
            bob.send(f"<message to='many@localhost' type='headline' id='h{i}'><body>news {i}</body></message>")
        for n, d in enumerate(devices):
            got = d.read_until(r"<body>news 19</body>", timeout=20)
            got += drain(d, 0.5)
            assert bodies(got, "news") == list(range(20)), f"device {n}: {got[-1500:]}"
            for m in re.findall(r"<message\b[^>]*type=['\"]headline['\"][^>]*>", got):
                assert re.search(r"to=['\"]many@localhost['\"]", m), m
        # 20 stanzas for 6 sessions: most of the 120 copies came merged
        assert merged(port) - before >= 60, merged(port) - before
    finally:
        s.close()


def test_room_message_reaches_every_occupant_once_in_order(tmp_path):
    """A room of 10 occupants on one c2s: 15 messages from one of them reach
    every occupant once each, in order, each addressed to that occupant's
    own full JID; one occupant's connection is cut in the middle, which
    changes nothing for the others; the copies came merged."""
    port = free_port()
    s = MucServer(tmp_path).start(c2s_extra=metrics_xml(port))
    try:
        users = [s.user(f"occ{i}") for i in range(10)]
        instant(users[0], "hall", "n0")
        for i, u in enumerate(users[1:], 1):
            join(u, "hall", f"n{i}")
        time.sleep(0.5)
        before = merged(port)
        for k in range(15):
            if k == 7:
                users[5].drop()
            users[3].send(f"<message to='{room('hall')}' type='groupchat' id='g{k}'><body>hall {k}</body></message>")
        for i, u in enumerate(users):
            if i == 5:
                continue
            got = u.read_until(r"<body>hall 14</body>", timeout=20)
            got += drain(u, 0.5)
            assert bodies(got, "hall") == list(range(15)), f"occ{i}: {got[-1500:]}"
            for m in re.findall(r"<message\b[^>]*type=['\"]groupchat['\"][^>]*>", got):
                assert re.search(rf"to=['\"]occ{i}@localhost/r['\"]", m), m
        assert merged(port) - before >= 15 * 5, merged(port) - before
    finally:
        s.close()


def test_kill_after_merged_chat_gives_nothing_twice(tmp_path):
    """Chat to a bare JID goes to every resource of the highest priority
    (RFC 6121 8.5.2.1.1, weft's choice): four get every one once. Then c2s
    is killed with SIGKILL and started again: a new session of that account
    gets none of them again from offline storage (every merged copy was
    acknowledged once in the kernel, none handed back), and the copies
    came merged."""
    port = free_port()
    s = MucServer(tmp_path).start(c2s_extra=metrics_xml(port))
    try:
        devices = [s.user("four", f"d{i}") for i in range(4)]
        bob = s.user("bob")
        before = merged(port)
        for i in range(10):
            bob.send(f"<message to='four@localhost' type='chat' id='k{i}'><body>tick {i}</body></message>")
        for n, d in enumerate(devices):
            got = d.read_until(r"<body>tick 9</body>", timeout=20)
            got += drain(d, 0.5)
            assert bodies(got, "tick") == list(range(10)), f"device {n}: {got[-1500:]}"
        assert merged(port) - before >= 20, merged(port) - before
        s.c2s.kill9()
        s.c2s = s._spawn(s.c2s.args, "c2s.log")
        assert wait_for(lambda: s.log("c2s").count("event=router-ready") >= 2, 20), s.log("c2s")
        again = s.user("four", "again")
        assert not bodies(drain(again, 1.5), "tick"), again.buf[-1500:]
    finally:
        s.close()


def router_fan(port):
    fams = scrape(port)
    return (value(fams, "weft_router_link_fan_elements_total", component="sm"),
            value(fams, "weft_router_link_stanzas_total", component="sm", direction="out"))


def test_room_message_reaches_the_sm_as_one_element_and_survives_an_sm_kill(tmp_path):
    """A room of 12 local occupants: each room message reaches the sm as one
    grouped <w:fan/> element (docs/component-protocol.md 9.8; the router's
    weft_router_link_fan_elements_total), not 12 routed elements, and every
    occupant gets it once, in order, addressed to its own full JID. Then the
    sm is killed with SIGKILL right after a message went to the room and
    started again: c2s keeps every client, and each occupant has every
    message, before, around and after the kill, exactly once."""
    rport = free_port()
    s = MucServer(tmp_path).start(router_extra=metrics_xml(rport))
    try:
        n_occ = 12
        users = [s.user(f"fan{i}") for i in range(n_occ)]
        instant(users[0], "fanroom", "n0")
        for i, u in enumerate(users[1:], 1):
            join(u, "fanroom", f"n{i}")
        time.sleep(0.5)
        fan0, out0 = router_fan(rport)
        for k in range(10):
            users[1].send(f"<message to='{room('fanroom')}' type='groupchat' id='f{k}'><body>fan {k}</body></message>")
        got = {}
        for i, u in enumerate(users):
            got[i] = u.read_until(r"<body>fan 9</body>", timeout=20) + drain(u, 0.3)
            u.buf = ""
            assert bodies(got[i], "fan") == list(range(10)), f"fan{i}: {got[i][-1500:]}"
            for m in re.findall(r"<message\b[^>]*type=['\"]groupchat['\"][^>]*>", got[i]):
                assert re.search(rf"to=['\"]fan{i}@localhost/r['\"]", m), m
        fan1, out1 = router_fan(rport)
        # One element per message (and the deliveries in it counted one by one).
        assert fan1 - fan0 >= 10 and out1 - out0 >= 10 * n_occ, (fan1 - fan0, out1 - out0)
        assert fan1 - fan0 <= 12, fan1 - fan0
        # The kill, right after message 10 went to the room.
        users[1].send(f"<message to='{room('fanroom')}' type='groupchat' id='f10'><body>fan 10</body></message>")
        time.sleep(0.01)
        s.sm.kill9()
        s.start_sm()
        assert wait_for(lambda: s.log("sm").count("resync=1") >= n_occ, 30), s.log("sm")[-3000:]
        for k in range(11, 20):
            users[1].send(f"<message to='{room('fanroom')}' type='groupchat' id='f{k}'><body>fan {k}</body></message>")
        for i, u in enumerate(users):
            rest = u.read_until(r"<body>fan 19</body>", timeout=30) + drain(u, 0.5)
            seen = bodies(got[i] + rest, "fan")
            assert seen == list(range(20)), f"fan{i}: {seen}"
    finally:
        s.close()


def test_room_messages_in_fan_elements_survive_a_router_kill(tmp_path):
    """The router is killed with SIGKILL right after 5 room messages for a
    room of 12 local occupants went to the room, and started again:
    weft-muc sends its unacknowledged fan-outs again, the sm may get
    deliveries it had (same epoch and seqs) in new <w:fan/> elements, which
    comp_client drops per recipient (docs/component-protocol.md 9.4, 9.8;
    test_router_fan.py checks that step alone). Each occupant has every
    message exactly once, in order."""
    rport = free_port()
    s = MucServer(tmp_path).start(router_extra=metrics_xml(rport))
    try:
        n_occ = 12
        users = [s.user(f"rk{i}") for i in range(n_occ)]
        instant(users[0], "rkroom", "n0")
        for i, u in enumerate(users[1:], 1):
            join(u, "rkroom", f"n{i}")
        time.sleep(0.5)
        for k in range(5):
            users[1].send(f"<message to='{room('rkroom')}' type='groupchat' id='r{k}'><body>rk {k}</body></message>")
        got = {i: u.read_until(r"<body>rk 4</body>", timeout=20) for i, u in enumerate(users)}
        for u in users:
            u.buf = ""
        assert router_fan(rport)[0] >= 5
        for k in range(5, 10):
            users[1].send(f"<message to='{room('rkroom')}' type='groupchat' id='r{k}'><body>rk {k}</body></message>")
        time.sleep(0.005)
        s.router.kill9()
        time.sleep(0.3)
        ready = {n: s.log(n).count("event=router-linked") for n in ("sm", "muc", "c2s")}
        s.router = s._spawn(s.router.args, "router.log")
        assert wait_for(lambda: all(s.log(n).count("event=router-linked") > ready[n] for n in ready), 30), ready
        for k in range(10, 15):
            users[1].send(f"<message to='{room('rkroom')}' type='groupchat' id='r{k}'><body>rk {k}</body></message>")
        for i, u in enumerate(users):
            rest = u.read_until(r"<body>rk 14</body>", timeout=30) + drain(u, 0.5)
            seen = bodies(got[i] + rest, "rk")
            assert seen == list(range(15)), f"rk{i}: {seen}"
    finally:
        s.close()
