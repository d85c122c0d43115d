"""Grouped deliveries of a fan-out (docs/component-protocol.md 9.8), driven at
byte level by raw components written from the spec (weftproto.py): a sends
one stanza to several recipients in one <w:fanout/>; b said fan='1' in its
<w:session/> and gets the deliveries for it as one <w:fan/> element (epoch,
first seq, one <w:r/> per recipient, the stanza once); c did not and gets
plain routed elements. Checked: seqs and acks stay per delivery; a lost
link requeues the unacknowledged deliveries of a group one by one, as plain
routed elements with their own markers; a group never exceeds the router's
limits.stanza-bytes (it is split); and the router's stats count the
elements."""
import re
import socket
import time

from conftest import wait_for
from test_router_fanout import ACCEPT, EPOCH_A, EPOCH_B, W, acked, collect, connect, fanout
from weftproto import Link, NS_SASL

def connect_fan(env, name, secret, binds, epoch, next_seq=1):
    """As connect, with fan='1' in the session request."""
    link = Link(env.router_port)
    link.open()
    res = link.authenticate(name, secret)
    assert res.tag == "{%s}success" % NS_SASL, res.tag
    link.send(f"<w:session epoch='{epoch}' next='{next_seq}' fan='1'/>")
    reply = link.next_el()
    assert reply.tag == W + "session", reply.tag
    for b in binds:
        link.send(f"<w:bind name='{b}'/>")
    bound = 0
    while bound < len(binds):
        el = link.next_el()
        if el.tag == W + "bound":
            bound += 1
        assert el.tag != W + "bind-error", el.attrib
    return link


def fans(control):
    return [el for el in control if el.tag == W + "fan"]


def recipients(fan):
    """(to, seq) of each <w:r/> of a <w:fan/>, seqs as the spec counts them."""
    out, n = [], int(fan.get("n"))
    for r in fan.findall(W + "r"):
        if r.get("n") is not None:
            n = int(r.get("n"))
        out.append((r.get("to"), n))
        n += 1
    return out


def stats_line(env, comp):
    return [l for l in env.stats().splitlines() if f"component={comp} " in l and l.startswith("link ")][0]


def test_deliveries_for_a_fan_link_come_as_one_element(env):
    """b (fan='1') serves b.test and, with b2 (which did not ask), the
    partitioned p.test: the recipients b2 serves come plain, b's in one
    element whose seqs skip theirs."""
    env.start_router()
    b = connect_fan(env, "b", "secret-b", ["b.test", "p.test"], EPOCH_B)
    b2, _ = connect(env, "b2", "secret-b2", ["p.test"], "b2b2b2b2b2b2b2b20001")
    a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    to = ["u1@b.test/r1", "u2@b.test/r2"] + [f"x{i}@p.test/r" for i in range(8)] + ["u3@b.test/r3"]
    a.send(fanout(to, sid="g1"))
    plain, _ = collect(b2, lambda r, c: False, timeout=1.0)
    _, ctl = collect(b, lambda r, c: len(fans(c)) >= 1)
    (fan,) = fans(ctl)
    at_b2 = [m.get("to") for _, m in plain]
    assert 0 < len(at_b2) < 8, at_b2      # the partition splits p.test's users
    seq = {t: i + 1 for i, t in enumerate(to)}
    # b2: plain routed elements, each with its own marker and seq.
    assert [int(mk.get("n")) for mk, _ in plain] == [seq[t] for t in at_b2]
    # b: one element, a's epoch, its recipients' seqs (gaps named with n=).
    assert fan.get("e") == EPOCH_A
    assert recipients(fan) == [(t, seq[t]) for t in to if t not in at_b2]
    (msg,) = [el for el in fan if not el.tag.startswith(W)]
    assert msg.tag == ACCEPT + "message" and msg.get("to") is None and msg.get("id") == "g1"
    assert msg.get("from") == "room@a.test/nick" and msg.findtext(ACCEPT + "body") == "hi"
    # Acks count deliveries: b acknowledges all but its last one; a learns
    # everything before that is done once b2 acknowledged its own too.
    nb = len(to) - len(at_b2)
    b2.send(f"<w:a h='{len(at_b2)}'/>")
    b.send(f"<w:a h='{nb - 1}'/>")
    _, ctl = collect(a, lambda r, c: len(to) - 1 in acked(c))
    assert max(acked(ctl)) == len(to) - 1
    assert "unacked=1 " in stats_line(env, "b")
    b.send(f"<w:a h='{nb}'/>")
    _, ctl = collect(a, lambda r, c: len(to) in acked(c))
    assert len(to) in acked(ctl)
    line = stats_line(env, "b")
    assert "fan=1 fan_elements=1" in line and f"stanzas_out={nb} " in line and "unacked=0 " in line
    assert "fan=0 fan_elements=0" in stats_line(env, "b2")
    # The next one continues the numbering; the marker's epoch is left out now.
    a.send(fanout(["u1@b.test/r1", "u2@b.test/r2"], sid="g2"))
    _, ctl = collect(b, lambda r, c: len(fans(c)) >= 1)
    (fan,) = fans(ctl)
    n = len(to)
    assert fan.get("e") is None and recipients(fan) == [("u1@b.test/r1", n + 1), ("u2@b.test/r2", n + 2)]


def test_a_single_delivery_goes_plain(env):
    env.start_router()
    b = connect_fan(env, "b", "secret-b", ["b.test"], EPOCH_B)
    a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    a.send(fanout(["u1@b.test/r1", "x@nowhere.test"], sid="one"))
    got, ctl = collect(b, lambda r, c: len(r) >= 1)
    assert not fans(ctl)
    assert [(mk.get("n"), m.get("to")) for mk, m in got] == [("1", "u1@b.test/r1")]


def test_lost_link_requeues_the_unacknowledged_deliveries_one_by_one(env):
    env.start_router()
    b = connect_fan(env, "b", "secret-b", ["b.test"], EPOCH_B)
    a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    to = [f"u{i}@b.test/r" for i in range(6)]
    a.send(fanout(to, sid="lost"))
    _, ctl = collect(b, lambda r, c: len(fans(c)) >= 1)
    assert [n for _, n in recipients(fans(ctl)[0])] == [1, 2, 3, 4, 5, 6]
    # Two processed, then the connection is reset.
    b.send("<w:a h='2'/>")
    _, ctl = collect(a, lambda r, c: 2 in acked(c))
    b.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    b.close()
    time.sleep(0.3)
    # The same process comes back (same epoch): the four others, each a
    # plain routed element with its own marker; nothing twice.
    b2 = connect_fan(env, "b", "secret-b", ["b.test"], EPOCH_B)
    got, ctl = collect(b2, lambda r, c: len(r) >= 4, timeout=5)
    assert not fans(ctl)
    assert [(mk.get("n"), m.get("to")) for mk, m in got] == [(str(i + 1), to[i]) for i in range(2, 6)]
    assert got[0][0].get("e") == EPOCH_A
    assert all(m.get("id") == "lost" and m.findtext(ACCEPT + "body") == "hi" for _, m in got)
    got, _ = collect(b2, lambda r, c: False, timeout=0.5)
    assert got == []
    b2.send("<w:a h='4'/>")
    _, ctl = collect(a, lambda r, c: 6 in acked(c))
    assert 6 in acked(ctl)


def test_groups_are_split_at_the_stanza_limit(env):
    env.start_router(extra="<limits><stanza-bytes>2048</stanza-bytes></limits>")
    b = connect_fan(env, "b", "secret-b", ["b.test"], EPOCH_B)
    a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    # Three fan-outs of 30 (each ~1,300 bytes, under the limit); a <w:fan/>
    # of 30 may need more (a recipient may carry its n): each is split.
    to = [f"user{i:03d}@b.test/resource-abcdefghij" for i in range(90)]
    for k in range(3):
        a.send(fanout(to[30 * k:30 * k + 30], sid=f"s{k}"))
    _, ctl = collect(b, lambda r, c: sum(len(recipients(f)) for f in fans(c)) >= 90)
    got = [x for f in fans(ctl) for x in recipients(f)]
    assert got == [(t, i + 1) for i, t in enumerate(to)]
    assert len(fans(ctl)) >= 6
    sizes = [len(m) for m in re.findall(rb"<w:fan\b.*?</w:fan>", b.raw, re.S)]
    assert sizes and max(sizes) <= 2048, sizes


def test_comp_client_drops_grouped_deliveries_it_had_after_a_router_restart(env):
    """testcomp (comp_client with on_fan) gets a fan-out's five deliveries in
    one <w:fan/> and acknowledges them; the router is killed and started
    again, and a (same epoch, as a component that never heard the router's
    ack) sends the fan-out again: the router gives testcomp the same seqs in
    a new <w:fan/>, and comp_client drops all five as duplicates (9.4). A
    new fan-out then arrives in one call again."""
    env.start_router()
    b = env.comp("b", "secret-b", "--bind", "b.test", "--fan")
    a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    to = [f"u{i}@b.test/r" for i in range(5)]
    first = fanout(to, body="seq:0", sid="d0")
    a.send(first)
    _, ctl = collect(a, lambda r, c: 5 in acked(c))
    assert 5 in acked(ctl), "testcomp did not acknowledge the five deliveries"
    assert "fan=1 fan_elements=1" in stats_line(env, "b")
    env.router.kill9()
    b.ready_file.unlink()
    env.start_router()
    assert wait_for(b.ready_file.exists, 15), "testcomp did not come back"
    a2, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    a2.send(first)
    _, ctl = collect(a2, lambda r, c: 5 in acked(c))
    assert 5 in acked(ctl)
    assert "fan=1 fan_elements=1" in stats_line(env, "b")     # it went as one element again
    a2.send(fanout(to, body="seq:1", sid="d1"))
    _, ctl = collect(a2, lambda r, c: 10 in acked(c))
    report = b.report()
    assert report["received"] == 10, report
    assert report["fan_calls"] == 2, report
