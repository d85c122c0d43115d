"""The resync window (docs/sm.md): after the sm restarts, the router hands it
what it held for its users before c2s has re-announced their sessions. Those
stanzas wait for the sessions instead of being answered as for an absent
resource. A room's groupchat message bounced there makes the room remove the
occupant (XEP-0045 status 333); a directed presence or an IQ to the client
would be lost. Here a XEP-0114 component (not behind our sm) sends them to
full JIDs while the sm is down."""
import re
import time

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
        assert "event=resync-window state=closed" in srv.log("sm"), srv.log("sm")[-2000:]
    finally:
        srv.close()
