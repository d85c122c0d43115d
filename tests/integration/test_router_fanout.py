"""The fan-out element (docs/component-protocol.md 9.7), driven at byte level
by two raw components written from the spec (weftproto.py): a sends one
stanza to several recipients in one <w:fanout/>, b (bound to b.test and
c.test) receives the deliveries. Checked: every recipient gets the stanza
with its own 'to' and an origin marker of its own, the ack the element
carries reaches the router, a recipient nobody serves is bounced, elements
over the router's limits are refused with <w:fanout-error/> while the link
keeps serving, a malformed one is a bad-format stream error, skip= resends
only the rest, and an element cut short by a dying component delivers
nothing."""
import socket
import struct
import time

from weftproto import Link, NS_SASL, NS_W

W = "{%s}" % NS_W
ACCEPT = "{jabber:component:accept}"


def connect(env, name, secret, binds, epoch):
    link = Link(env.router_port)
    link.open()
    res = link.authenticate(name, secret)
    assert res.tag == "{%s}success" % NS_SASL, res.tag
    reply = link.session(epoch=epoch)
    assert reply.tag == W + "session", reply.tag
    for b in binds:
        link.send(f"<w:bind name='{b}'/>")
    bound = 0
    while bound < len(binds):
        el = link.next_el()
        if el.tag == W + "bound":
            bound += 1
        assert el.tag != W + "bind-error", el.attrib
    return link, reply


def collect(link, want, timeout=5.0):
    """Routed elements (with the attributes of the marker before each) and
    control elements, until want(list of routed) is true or the time is up."""
    routed, control, marker = [], [], None
    end = time.time() + timeout
    while not want(routed, control):
        left = end - time.time()
        if left <= 0:
            break
        try:
            el = link.next_el(timeout=left)
        except (socket.timeout, TimeoutError, EOFError):
            break
        if el.tag == W + "o":
            marker = dict(el.attrib)
        elif el.tag.startswith(W):
            control.append(el)
        else:
            routed.append((marker, el))
            marker = None
    return routed, control


def acked(control):
    return [int(el.get("h")) for el in control if el.tag == W + "a"]


def fanout(to, body="hi", h=None, skip=None, sid="f1"):
    attrs = (f" h='{h}'" if h is not None else "") + (f" skip='{skip}'" if skip is not None else "")
    rs = "".join(f"<w:r to='{t}'/>" for t in to)
    return (f"<w:fanout{attrs}>{rs}<message from='room@a.test/nick' type='groupchat' id='{sid}'>"
            f"<body>{body}</body></message></w:fanout>")


EPOCH_A, EPOCH_B = "aaaaaaaaaaaaaaaa0001", "bbbbbbbbbbbbbbbb0001"


def test_fanout_reaches_every_recipient_and_carries_the_ack(env):
    env.start_router()
    b, _ = connect(env, "b", "secret-b", ["b.test", "c.test"], EPOCH_B)
    a, reply = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    # The router tells components its limits in the session reply.
    assert reply.get("fanout-recipients") == "4096" and reply.get("stanza-bytes") == "262144"
    # b sends a one stanza; a's fan-out acknowledges it (h=1) in the same element.
    b.send("<message from='x@b.test' to='room@a.test' id='q1'><body>to the room</body></message>")
    got, _ = collect(a, lambda r, c: len(r) >= 1)
    assert [m.get("id") for _, m in got] == ["q1"]
    to = ["u1@b.test/r1", "u2@b.test/r2", "u3@c.test"]
    a.send(fanout(to, h=1))
    got, ctl = collect(b, lambda r, c: len(r) >= 3 and 1 in acked(c))
    assert [m.get("to") for _, m in got] == to
    assert all(m.findtext(ACCEPT + "body") == "hi" and m.get("id") == "f1" and
               m.get("from") == "room@a.test/nick" for _, m in got)
    # One marker per delivery, a's epoch, seqs 1..3 (each delivery is one seq).
    assert [mk.get("n") for mk, _ in got] == ["1", "2", "3"]
    assert got[0][0].get("e") == EPOCH_A
    assert 1 in acked(ctl), "the ack carried by the fan-out did not reach b"
    # b acknowledges the three deliveries: a learns they are done.
    b.send("<w:a h='3'/>")
    _, ctl = collect(a, lambda r, c: 3 in acked(c))
    assert 3 in acked(ctl)
    assert "stanzas_in=3 " in [l for l in env.stats().splitlines() if "component=a " in l][0]


def test_fanout_recipient_nobody_serves_is_bounced_and_the_rest_delivered(env):
    env.start_router()
    b, _ = connect(env, "b", "secret-b", ["b.test"], EPOCH_B)
    a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    a.send(fanout(["u1@b.test/r", "ghost@nowhere.test/x", "u2@b.test/r"]))
    got, _ = collect(b, lambda r, c: len(r) >= 2)
    assert [m.get("to") for _, m in got] == ["u1@b.test/r", "u2@b.test/r"]
    bounced, _ = collect(a, lambda r, c: len(r) >= 1)
    (_, err), = bounced
    assert err.get("type") == "error" and err.get("from") == "ghost@nowhere.test/x"
    assert err.find(ACCEPT + "error/{urn:ietf:params:xml:ns:xmpp-stanzas}remote-server-not-found") is not None
    # The link goes on.
    a.send("<message from='room@a.test' to='u1@b.test/r' id='after'/>")
    got, _ = collect(b, lambda r, c: len(r) >= 1)
    assert [m.get("id") for _, m in got] == ["after"]


def test_fanout_over_the_limits_is_refused_and_the_link_keeps_serving(env):
    env.start_router(extra="<limits><fanout-recipients>3</fanout-recipients>"
                           "<fanout-bytes>65536</fanout-bytes></limits>")
    b, _ = connect(env, "b", "secret-b", ["b.test"], EPOCH_B)
    a, reply = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    assert reply.get("fanout-recipients") == "3" and reply.get("fanout-bytes") == "65536"
    a.send(fanout([f"u{i}@b.test" for i in range(4)], sid="many"))
    _, ctl = collect(a, lambda r, c: any(e.tag == W + "fanout-error" for e in c) and 4 in acked(c))
    err = [e for e in ctl if e.tag == W + "fanout-error"]
    assert err and err[0].attrib == {"first": "1", "count": "4", "condition": "too-many-recipients"}
    assert 4 in acked(ctl), "a refused fan-out's seqs must be acknowledged (done)"
    a.send(fanout(["u1@b.test", "u2@b.test"], body="x" * 40000, sid="big"))
    _, ctl = collect(a, lambda r, c: any(e.tag == W + "fanout-error" for e in c) and 6 in acked(c))
    err = [e for e in ctl if e.tag == W + "fanout-error"]
    assert err and err[0].attrib == {"first": "5", "count": "2", "condition": "too-large"}
    # Nothing of either reached b; the next fan-out does, with the next seqs.
    a.send(fanout(["u1@b.test", "u2@b.test"], sid="ok"))
    got, _ = collect(b, lambda r, c: len(r) >= 2)
    assert [(m.get("id"), mk.get("n")) for mk, m in got] == [("ok", "7"), ("ok", "8")]
    log = env.router_log()
    assert "event=fanout-refused component=a first=1 count=4 condition=too-many-recipients" in log
    assert "condition=too-large" in log


def test_malformed_fanout_is_a_bad_format_stream_error(env):
    env.start_router()
    b, _ = connect(env, "b", "secret-b", ["b.test"], EPOCH_B)
    for bad in ["<w:fanout><w:r to='u@b.test'/></w:fanout>",
                "<w:fanout><w:r/><message from='a.test'/></w:fanout>",
                "<w:fanout skip='3'><w:r to='u@b.test'/><message from='a.test'/></w:fanout>",
                "<w:fanout><w:r to='u@b.test'/><message from='a.test'/><iq from='a.test'/></w:fanout>"]:
        a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
        a.send(bad)
        _, ctl = collect(a, lambda r, c: False, timeout=2)
        raw = a.raw.decode()
        assert "<bad-format xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in raw, (bad, raw[-300:])
        a.close()
    # b was never disturbed and nothing reached it.
    got, _ = collect(b, lambda r, c: False, timeout=0.5)
    assert got == []


def test_fanout_skip_delivers_only_the_rest(env):
    env.start_router()
    b, _ = connect(env, "b", "secret-b", ["b.test"], EPOCH_B)
    a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    a.send(fanout(["u1@b.test", "u2@b.test", "u3@b.test", "u4@b.test"], skip=2))
    got, _ = collect(b, lambda r, c: len(r) >= 2)
    assert [(m.get("to"), mk.get("n")) for mk, m in got] == [("u3@b.test", "1"), ("u4@b.test", "2")]


def test_fanout_cut_short_by_a_dying_component_delivers_nothing(env):
    env.start_router()
    b, _ = connect(env, "b", "secret-b", ["b.test"], EPOCH_B)
    a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    whole = fanout([f"u{i}@b.test/r" for i in range(10)], sid="cut")
    # Everything but the closing tags, then a reset (as a kill -9 with unread input).
    a.send(whole[: whole.index("<message")])
    time.sleep(0.2)
    a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    a.close()
    got, _ = collect(b, lambda r, c: False, timeout=1.0)
    assert got == [], "part of a fan-out was delivered"
    # The next process of a sends it whole: every recipient gets it once.
    a2, _ = connect(env, "a", "secret-a", ["a.test"], "aaaaaaaaaaaaaaaa0002")
    a2.send(whole)
    got, _ = collect(b, lambda r, c: len(r) >= 10)
    assert [m.get("to") for _, m in got] == [f"u{i}@b.test/r" for i in range(10)]


def test_router_reads_what_a_lost_link_left_before_freeing_it(env):
    """a is paused (its window of unacknowledged elements is full: b never
    acknowledges), writes more, and dies with a reset. The router notices
    only when it writes to a (here: the name notice of a third component
    binding), while a is paused: it must still read and route what a wrote,
    which the kernel kept for it."""
    env.start_router(extra="<limits><window>1024</window></limits>")
    b, _ = connect(env, "b", "secret-b", ["b.test"], EPOCH_B)
    a, _ = connect(env, "a", "secret-a", ["a.test"], EPOCH_A)
    a.send("".join(f"<message from='a.test' to='u@b.test' id='w{i}'/>" for i in range(1100)))
    got, _ = collect(b, lambda r, c: len(r) >= 1000)
    assert wait_paused(env, "a")
    late = [f"late{i}" for i in range(20)]
    a.send("".join(f"<message from='a.test' to='u@b.test' id='{i}'/>" for i in late))
    time.sleep(0.3)
    a.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    a.close()
    time.sleep(0.3)
    # A third component binds: the router tells a, and finds it gone.
    c, _ = connect(env, "b2", "secret-b2", ["p.test"], "cccccccccccccccc0001")
    more, _ = collect(b, lambda r, c: late[-1] in [m.get("id") for _, m in r], timeout=5)
    ids = [m.get("id") for _, m in got + more]
    assert [i for i in ids if i.startswith("w")] == [f"w{i}" for i in range(1100)]
    assert [i for i in ids if i.startswith("late")] == late, "what the lost link left was not read"
    assert "event=link-drained component=a" in env.router_log()


def wait_paused(env, name, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        line = [l for l in env.stats().splitlines() if f"component={name} " in l]
        if line and "paused=1" in line[0]:
            return True
        time.sleep(0.05)
    return False
