"""The resync window (docs/sm.md): after the sm restarts, the router hands it
what it held for its users before c2s has re-announced their sessions. Those
stanzas wait for the sessions instead of being answered as for an absent
resource. A room's groupchat message bounced there makes the room remove the
occupant (XEP-0045 status 333); a directed presence or an IQ to the client
would be lost. Here a XEP-0114 component (not behind our sm) sends them to
full JIDs while the sm is down."""
import re
import time

from conftest import wait_for
from server import Server
from test_iq_rules import component

BOT = "<component name='bot.localhost' secret='bot-secret' protocol='xep0114'/>"


def room_traffic(bot, to, tag, n):
    """What a room sends an occupant: n groupchat messages, a directed
    presence and a ping (id ping-TAG), from the component bot."""
    for k in range(n):
        bot.raw.send(f"<message from='room@bot.localhost/x' to='{to}' type='groupchat' id='{tag}{k}'>"
                     f"<body>{tag} {k}</body></message>")
    bot.raw.send(f"<presence from='room@bot.localhost/y' to='{to}'/>")
    bot.raw.send(f"<iq from='room@bot.localhost/x' to='{to}' type='get' id='ping-{tag}'>"
                 "<ping xmlns='urn:xmpp:ping'/></iq>")


def got_room_traffic(c, tag, n):
    """c got all of room_traffic in order, and answers the ping."""
    got = c.read_until(rf"<iq[^>]*id=['\"]ping-{tag}['\"]", timeout=30)
    assert re.findall(rf"<body>{tag} (\d+)</body>", got) == [str(k) for k in range(n)], got
    assert re.search(r"<presence[^>]*from=['\"]room@bot.localhost/y['\"]", got), got
    c.send(f"<iq to='room@bot.localhost/x' type='result' id='ping-{tag}'/>")


def assert_answers_without_error(bot, results):
    """The component gets that many IQ results back, and no error at all
    (it listens for a second at least)."""
    answers = bot.raw.buf
    start = time.time()
    while time.time() < start + 15 and (time.time() < start + 1 or
                                        len(re.findall(r"<iq[^>]*type=['\"]result['\"]", answers)) < results):
        bot.raw.sock.settimeout(0.5)
        try:
            answers += bot.raw.sock.recv(65536).decode(errors="replace")
        except OSError:
            pass
    assert len(re.findall(r"<iq[^>]*type=['\"]result['\"]", answers)) == results, answers
    assert "type='error'" not in answers and 'type="error"' not in answers, answers


def online(srv, name, resource):
    srv.register(name, "pw")
    c = srv.login(name, "pw", resource=resource)
    c.send("<presence/>")
    c.read_until(r"<presence[^>]*/?>")
    return c


def test_stanzas_held_during_an_sm_restart_reach_the_sessions_not_an_error(tmp_path):
    """While the sm is down a component sends two users' sessions room
    traffic; after the restart each client gets all of it in order, the
    component gets both IQ answers and no error, and all 14 stanzas waited
    in the window."""
    srv = Server(tmp_path)
    try:
        srv.start(router_extra=BOT)
        alice = online(srv, "alice", "phone")
        bob = online(srv, "bob", "pc")
        bot = component(srv.router_port, "bot.localhost", "bot-secret")
        srv.sm.kill9()
        time.sleep(0.3)
        room_traffic(bot, "alice@localhost/phone", "alice", 5)
        room_traffic(bot, "bob@localhost/pc", "bob", 5)
        time.sleep(0.3)
        srv.start_sm()
        got_room_traffic(alice, "alice", 5)
        got_room_traffic(bob, "bob", 5)
        assert_answers_without_error(bot, 2)
        # all 14 waited for the window (none was handled before c2s's resync)
        handled = re.findall(r"event=resync-window state=closed handled=(\d+)", srv.log("sm"))
        assert handled and int(handled[-1]) >= 14, srv.log("sm")[-2000:]
    finally:
        srv.close()


def test_stanzas_held_for_a_lost_instance_reach_its_users_on_the_new_owner(tmp_path):
    """Two sm instances partition localhost (docs/component-protocol.md 8.5);
    sm1 is killed and, past takeover.seconds, sm2 serves its users. What a
    component sent to an sm1 user's full JID meanwhile (held by the router,
    then routed to sm2 right after the takeover, before c2s's
    re-announcements) reaches the client: a groupchat message, a directed
    presence and an IQ, none answered with an error."""
    from test_sm_takeover import Loopback, login, owner, register
    d = Loopback(tmp_path, f"sqlite:{tmp_path}/weft.db")
    try:
        d.setup()
        router_xml = d.dir / "router.xml"
        router_xml.write_text(router_xml.read_text().replace("<partition>", BOT + "<partition>"))
        for n in ("router", "sm1", "sm2", "c2s"):
            d.start(n)
        assert wait_for(lambda: all("event=ready" in d.log(n) for n in ("sm1", "sm2")), 20)
        user = next(f"u{i}" for i in range(100) if owner(f"u{i}") == "sm1")
        register(d, user)
        c = login(d, user)
        c.read_until(r"<presence[^>]*/?>", timeout=20)
        bot = component(d.router_port, "bot.localhost", "bot-secret")
        d.kill9("sm1")
        room_traffic(bot, f"{user}@localhost/r", "lost", 3)
        got_room_traffic(c, "lost", 3)
        assert "event=resync-window state=open reason=takeover" in d.log("sm2"), d.log("sm2")[-3000:]
        assert_answers_without_error(bot, 1)
    finally:
        d.close()


class SmallLinkServer(Server):
    """An sm whose router link has the smallest buffer (router.buffer 64K:
    backpressure above 32K not yet acknowledged)."""

    def _sm_cfg(self):
        path = super()._sm_cfg()
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("<name>router</name></router>", "<name>router</name><buffer>64K</buffer></router>"))
        return path


def test_a_large_window_drains_under_backpressure_in_order(tmp_path):
    """1,500 room messages held during an sm restart are more than the sm's
    router link takes at once: the window drains in steps
    (`state=draining`) and the client still gets every one once, in order,
    and the room no error."""
    srv = SmallLinkServer(tmp_path)
    try:
        srv.start(router_extra=BOT)
        alice = online(srv, "alice", "phone")
        bot = component(srv.router_port, "bot.localhost", "bot-secret")
        srv.sm.kill9()
        time.sleep(0.3)
        n = 1500
        pad = "x" * 200
        bot.raw.send("".join(f"<message from='room@bot.localhost/x' to='alice@localhost/phone' type='groupchat' "
                             f"id='b{k}'><body>big {k} {pad}</body></message>" for k in range(n)))
        time.sleep(0.5)
        srv.start_sm()
        got = alice.read_until(rf"<body>big {n - 1} ", timeout=60)
        assert [int(x) for x in re.findall(r"<body>big (\d+) ", got)] == list(range(n)), got[-2000:]
        log = srv.log("sm")
        assert "event=resync-window state=draining" in log, log[-3000:]
        closed = re.findall(r"event=resync-window state=closed handled=(\d+)", log)
        assert closed and int(closed[-1]) >= n, log[-3000:]
        assert_answers_without_error(bot, 0)
    finally:
        srv.close()
