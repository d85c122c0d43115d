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


def online(srv, name, resource):
    srv.register(name, "pw")
    c = srv.login(name, "pw", resource=resource)
    c.send("<presence/>")
    c.read_until(r"<presence[^>]*/?>")
    return c


def test_stanzas_held_during_an_sm_restart_reach_the_sessions_not_an_error(tmp_path):
    srv = Server(tmp_path)
    try:
        srv.start(router_extra=BOT)
        alice = online(srv, "alice", "phone")
        bob = online(srv, "bob", "pc")
        bot = component(srv.router_port, "bot.localhost", "bot-secret")
        srv.sm.kill9()
        time.sleep(0.3)
        for who, to in (("alice", "alice@localhost/phone"), ("bob", "bob@localhost/pc")):
            for k in range(5):
                bot.raw.send(f"<message from='room@bot.localhost/x' to='{to}' type='groupchat' id='{who}{k}'>"
                             f"<body>{who} {k}</body></message>")
            bot.raw.send(f"<presence from='room@bot.localhost/y' to='{to}'/>")
            bot.raw.send(f"<iq from='room@bot.localhost/x' to='{to}' type='get' id='ping-{who}'>"
                         "<ping xmlns='urn:xmpp:ping'/></iq>")
        time.sleep(0.3)
        srv.start_sm()
        for c, who in ((alice, "alice"), (bob, "bob")):
            got = c.read_until(rf"<iq[^>]*id=['\"]ping-{who}['\"]", timeout=20)
            assert re.findall(rf"<body>{who} (\d)</body>", got) == [str(k) for k in range(5)], got
            assert re.search(r"<presence[^>]*from=['\"]room@bot.localhost/y['\"]", got), got
            c.send(f"<iq to='room@bot.localhost/x' type='result' id='ping-{who}'/>")
        # The component hears the two answers and no error at all.
        answers = bot.raw.buf
        deadline = time.time() + 15
        while time.time() < deadline and answers.count("type='result'") + answers.count('type="result"') < 2:
            bot.raw.sock.settimeout(0.5)
            try:
                answers += bot.raw.sock.recv(65536).decode(errors="replace")
            except OSError:
                pass
        assert len(re.findall(r"<iq[^>]*type=['\"]result['\"]", answers)) == 2, answers
        assert "type='error'" not in answers and 'type="error"' not in answers, answers
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
    from test_sm_takeover import TAKEOVER, Loopback, login, owner, register
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
        full = f"{user}@localhost/r"
        for k in range(3):
            bot.raw.send(f"<message from='room@bot.localhost/x' to='{full}' type='groupchat' id='t{k}'>"
                         f"<body>lost {k}</body></message>")
        bot.raw.send(f"<presence from='room@bot.localhost/y' to='{full}'/>")
        bot.raw.send(f"<iq from='room@bot.localhost/x' to='{full}' type='get' id='ping-t'>"
                     "<ping xmlns='urn:xmpp:ping'/></iq>")
        got = c.read_until(r"<iq[^>]*id=['\"]ping-t['\"]", timeout=TAKEOVER + 30)
        assert re.findall(r"<body>lost (\d)</body>", got) == ["0", "1", "2"], got
        assert re.search(r"<presence[^>]*from=['\"]room@bot.localhost/y['\"]", got), got
        assert "event=resync-window state=open reason=takeover" in d.log("sm2"), d.log("sm2")[-3000:]
        c.send("<iq to='room@bot.localhost/x' type='result' id='ping-t'/>")
        answers = ""
        deadline = time.time() + 15
        while time.time() < deadline and not re.search(r"<iq[^>]*type=['\"]result['\"]", answers):
            bot.raw.sock.settimeout(0.5)
            try:
                answers += bot.raw.sock.recv(65536).decode(errors="replace")
            except OSError:
                pass
        assert re.search(r"<iq[^>]*type=['\"]result['\"]", answers), answers
        assert "type='error'" not in answers and 'type="error"' not in answers, answers
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
        bot.raw.sock.settimeout(1)
        try:
            answers = bot.raw.sock.recv(65536).decode(errors="replace")
        except OSError:
            answers = ""
        assert "type='error'" not in answers and 'type="error"' not in answers, answers
    finally:
        srv.close()
