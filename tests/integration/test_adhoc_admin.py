"""Admin over XMPP (sm/mod_adhoc.c, sm/mod_admin.c): XEP-0050 ad-hoc
commands with the XEP-0133 service administration set, run by slixmpp's
xep_0050 plugin as the admin named in <module name='adhoc'><admins>. Each
command's effect is checked by another client: raw SASL logins (the added
user can log in, a disabled or deleted one cannot, a changed password
works), slixmpp sessions that receive the announcement and the message of
the day, or are closed by end-user-session. A non-admin sees no commands
and gets forbidden.
"""
import asyncio
import re

import pytest

slixmpp = pytest.importorskip("slixmpp")
from slixmpp.exceptions import IqError  # noqa: E402

from server import RawClient, Server  # noqa: E402
from test_sm_iq import PW, close, connect, make_certs  # noqa: E402

ADMIN = "http://jabber.org/protocol/admin"
CMDS = "http://jabber.org/protocol/commands"
ADMINS = "<module name='adhoc'><admins>alice@localhost</admins></module>"


def login(srv, user, password, mech="SCRAM-SHA-256"):
    """(ok, failure element text) of a SASL login over a raw stream."""
    c = RawClient(srv)
    c.open()
    c.starttls()
    ok = c.auth(user, password, mech)
    fail = "" if ok else c.last_failure
    c.close()
    return ok, fail


async def run(x, node, fields=None, multi=()):
    """Runs a command to completion: execute, then submit fields to its form.
    Returns (first stage's command, last command)."""
    res = await x["xep_0050"].send_command("localhost", f"{ADMIN}#{node}", timeout=10)
    first = res["command"]
    if first["status"] == "completed":
        return first, first
    assert first["status"] == "executing"
    assert values(first, "FORM_TYPE") == [ADMIN]
    form = x["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=ADMIN)
    for var, val in (fields or {}).items():
        form.add_field(var=var, ftype="jid-multi" if var in multi else None, value=val)
    res = await x["xep_0050"].send_command("localhost", f"{ADMIN}#{node}", action="complete", payload=form,
                                           sessionid=first["sessionid"], timeout=10)
    last = res["command"]
    assert last["status"] == "completed", last
    return first, last


def values(cmd, var):
    v = cmd["form"].get_fields()[var]["value"]
    return v if isinstance(v, list) else v.split("\n")   # slixmpp joins text-multi


async def admin_client(srv, jid):
    x = await connect(srv, jid)
    x.register_plugin("xep_0004")
    x.register_plugin("xep_0050")
    return x


def headlines(x):
    got = []
    x.add_event_handler("message", lambda m: got.append((m["type"], m["subject"], m["body"])))
    return got


async def until(cond, timeout=10):
    for _ in range(int(timeout * 20)):
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def test_admin_commands_end_to_end(tmp_path):
    make_certs(tmp_path)
    srv = Server(tmp_path).start(sm_extra=ADMINS)
    try:
        for u in ("alice", "bob"):
            srv.register(u, PW)

        async def main():
            a = await admin_client(srv, "alice@localhost/pc")
            b = await admin_client(srv, "bob@localhost/pc")
            bob_got = headlines(b)

            # disco: the admin sees the XEP-0133 set, bob sees nothing and is refused
            items = (await a["xep_0030"].get_items(jid="localhost", node=CMDS, timeout=10))["disco_items"]
            nodes = {i[1] for i in items["items"]}
            for n in ("add-user", "delete-user", "disable-user", "reenable-user", "change-user-password",
                      "end-user-session", "get-user-stats", "get-online-users-list", "announce",
                      "set-motd", "edit-motd", "delete-motd"):
                assert f"{ADMIN}#{n}" in nodes, n
            info = (await a["xep_0030"].get_info(jid="localhost", timeout=10))["disco_info"]
            assert CMDS in info["features"]
            items = (await b["xep_0030"].get_items(jid="localhost", node=CMDS, timeout=10))["disco_items"]
            assert not items["items"]
            for n in ("add-user", "get-online-users-num", "delete-motd"):
                with pytest.raises(IqError) as e:
                    await b["xep_0050"].send_command("localhost", f"{ADMIN}#{n}", timeout=10)
                assert e.value.iq["error"]["condition"] == "forbidden"

            # add-user: carol can log in with the password given
            first, last = await run(a, "add-user", {"accountjid": "carol@localhost", "password": "first-pw",
                                                    "password-verify": "first-pw"})
            assert {"accountjid", "password", "password-verify"} <= set(first["form"].get_fields())
            assert login(srv, "carol", "first-pw")[0]
            with pytest.raises(IqError) as e:            # twice: conflict
                await run(a, "add-user", {"accountjid": "carol@localhost", "password": "x",
                                          "password-verify": "x"})
            assert e.value.iq["error"]["condition"] == "conflict"

            # change-user-password: the old password stops working, the new one works
            await run(a, "change-user-password", {"accountjid": "carol@localhost", "password": PW})
            assert not login(srv, "carol", "first-pw")[0]
            assert login(srv, "carol", PW)[0]

            # set-motd: sent to carol's session when it comes online; edit-motd shows it
            await run(a, "set-motd", {"motd": "Maintenance at noon"})
            c = await admin_client(srv, "carol@localhost/pc")
            carol_got = headlines(c)
            assert await until(lambda: any(m[2] == "Maintenance at noon" for m in carol_got)), carol_got
            first, _ = await run(a, "edit-motd", {"motd": "Maintenance moved"})
            assert values(first, "motd") == ["Maintenance at noon"]
            first, _ = await run(a, "edit-motd", {"motd": "x"})
            assert values(first, "motd") == ["Maintenance moved"]
            _, last = await run(a, "delete-motd")
            # a session coming online now gets no MOTD: the answer to an iq it
            # sends after its presence (same stream, so after any MOTD)
            # arrives with nothing before it
            p = await admin_client(srv, "alice@localhost/phone")
            phone_got = headlines(p)
            await p["xep_0030"].get_info(jid="localhost", timeout=10)
            await asyncio.sleep(0.2)
            assert phone_got == [], phone_got
            await close(p)
            # bob may not even look at a command node
            with pytest.raises(IqError) as e:
                await b["xep_0030"].get_info(jid="localhost", node=f"{ADMIN}#add-user", timeout=10)
            assert e.value.iq["error"]["condition"] == "item-not-found"
            info = (await a["xep_0030"].get_info(jid="localhost", node=f"{ADMIN}#add-user",
                                                 timeout=10))["disco_info"]
            assert CMDS in info["features"] and ("automation", "command-node") in \
                {(i[0], i[1]) for i in info["identities"]}

            # announce: every online user gets it
            await run(a, "announce", {"subject": "Notice", "announcement": "Server restarts soon"})
            for got in (bob_got, carol_got):
                assert await until(lambda: ("headline", "Notice", "Server restarts soon") in got), got

            # online users, counts, statistics
            _, last = await run(a, "get-online-users-list", {"max_items": "100"})
            assert sorted(values(last, "onlineuserjids")) == ["alice@localhost", "bob@localhost",
                                                               "carol@localhost"]
            _, last = await run(a, "get-online-users-num")
            assert values(last, "onlineusersnum") == ["3"]
            _, last = await run(a, "get-registered-users-num")
            assert values(last, "registeredusersnum") == ["3"]
            _, last = await run(a, "get-user-stats", {"accountjid": "carol@localhost"})
            assert values(last, "onlineresources") == ["pc"]
            assert values(last, "rostersize") == ["0"]

            # end-user-session: carol's stream is closed
            gone = asyncio.get_running_loop().create_future()
            c.add_event_handler("disconnected", lambda _: gone.done() or gone.set_result(True))
            await run(a, "end-user-session", {"accountjids": ["carol@localhost/pc"]}, multi=("accountjids",))
            await asyncio.wait_for(gone, 10)
            _, last = await run(a, "get-online-users-list", {"max_items": "none"})
            assert sorted(values(last, "onlineuserjids")) == ["alice@localhost", "bob@localhost"]

            # disable-user: bob's session ends and he cannot log in until re-enabled
            bob_gone = asyncio.get_running_loop().create_future()
            b.add_event_handler("disconnected", lambda _: bob_gone.done() or bob_gone.set_result(True))
            await run(a, "disable-user", {"accountjids": ["bob@localhost"]}, multi=("accountjids",))
            await asyncio.wait_for(bob_gone, 10)
            ok, fail = login(srv, "bob", PW)
            assert not ok and "account-disabled" in fail, fail
            ok, fail = login(srv, "bob", "wrong")        # no hint without the password
            assert not ok and "not-authorized" in fail, fail
            ok, fail = login(srv, "bob", PW, mech="PLAIN")
            assert not ok and "account-disabled" in fail, fail
            await run(a, "reenable-user", {"accountjids": ["bob@localhost"]}, multi=("accountjids",))
            assert login(srv, "bob", PW)[0]

            # delete-user: carol's account is gone
            await run(a, "delete-user", {"accountjids": ["carol@localhost"]}, multi=("accountjids",))
            ok, fail = login(srv, "carol", PW)
            assert not ok and "not-authorized" in fail, fail
            _, last = await run(a, "get-registered-users-num")
            assert values(last, "registeredusersnum") == ["2"]
            await close(a, b, c)

        asyncio.run(asyncio.wait_for(main(), 120))
        assert "event=account-disabled user=bob@localhost" in srv.log("sm")
    finally:
        srv.close()


def test_bad_input_and_sessions(tmp_path):
    """Foreign JIDs, mismatched passwords, unknown nodes and session ids get
    stanza errors; cancel ends a session; with no admins nobody may run."""
    make_certs(tmp_path)
    srv = Server(tmp_path).start(sm_extra=ADMINS)
    try:
        srv.register("alice", PW)

        async def main():
            a = await admin_client(srv, "alice@localhost/pc")
            for fields, cond in (({"accountjid": "x@elsewhere.example", "password": "p",
                                   "password-verify": "p"}, "bad-request"),
                                 ({"accountjid": "dave@localhost", "password": "p",
                                   "password-verify": "q"}, "bad-request")):
                with pytest.raises(IqError) as e:
                    await run(a, "add-user", fields)
                assert e.value.iq["error"]["condition"] == cond
            assert not login(srv, "dave", "p")[0]
            with pytest.raises(IqError) as e:
                await a["xep_0050"].send_command("localhost", f"{ADMIN}#no-such", timeout=10)
            assert e.value.iq["error"]["condition"] == "item-not-found"
            with pytest.raises(IqError) as e:
                await a["xep_0050"].send_command("localhost", f"{ADMIN}#add-user", action="complete",
                                                 sessionid="forged", timeout=10)
            assert e.value.iq["error"]["condition"] == "bad-request"
            res = await a["xep_0050"].send_command("localhost", f"{ADMIN}#add-user", timeout=10)
            sid = res["command"]["sessionid"]
            res = await a["xep_0050"].send_command("localhost", f"{ADMIN}#add-user", action="cancel",
                                                   sessionid=sid, timeout=10)
            assert res["command"]["status"] == "canceled"
            with pytest.raises(IqError):                 # the session is gone
                await a["xep_0050"].send_command("localhost", f"{ADMIN}#add-user", action="complete",
                                                 sessionid=sid, timeout=10)
            await close(a)

        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        srv.close()
    assert re.search(r"event=adhoc-error node=\S+#add-user", srv.log("sm"))


def test_admin_ends_own_session(tmp_path):
    """An admin who ends their own session (or disables their own account)
    loses the stream; the sm keeps serving (no use of the ended session)."""
    make_certs(tmp_path)
    srv = Server(tmp_path).start(sm_extra=ADMINS)
    try:
        srv.register("alice", PW)
        srv.register("bob", PW)

        async def main():
            a = await admin_client(srv, "alice@localhost/pc")
            gone = asyncio.get_running_loop().create_future()
            a.add_event_handler("disconnected", lambda _: gone.done() or gone.set_result(True))
            res = await a["xep_0050"].send_command("localhost", f"{ADMIN}#end-user-session", timeout=10)
            form = a["xep_0004"].make_form(ftype="submit")
            form.add_field(var="accountjids", ftype="jid-multi", value=["alice@localhost"])
            a["xep_0050"].send_command("localhost", f"{ADMIN}#end-user-session", action="complete",
                                       payload=form, sessionid=res["command"]["sessionid"], timeout=10)
            await asyncio.wait_for(gone, 10)
            b = await admin_client(srv, "bob@localhost/pc")          # the sm still serves
            await b["xep_0030"].get_info(jid="localhost", timeout=10)
            await close(b)

        asyncio.run(asyncio.wait_for(main(), 60))
        assert srv.sm.p.poll() is None, srv.log("sm")[-3000:]
    finally:
        srv.close()
    log = srv.log("sm")
    assert "AddressSanitizer" not in log and "runtime error" not in log, log[-3000:]


def test_admins_reload_on_sighup(tmp_path):
    """adhoc.admins is re-read on SIGHUP: bob, refused before, may run the
    commands after the config names him; alice, no longer named, may not."""
    import signal
    from conftest import wait_for
    make_certs(tmp_path)
    srv = Server(tmp_path).start(sm_extra=ADMINS)
    try:
        for u in ("alice", "bob"):
            srv.register(u, PW)

        async def main():
            a = await admin_client(srv, "alice@localhost/pc")
            b = await admin_client(srv, "bob@localhost/pc")
            with pytest.raises(IqError):
                await b["xep_0050"].send_command("localhost", f"{ADMIN}#get-online-users-num", timeout=10)
            srv.sm_extra = "<module name='adhoc'><admins>bob@localhost</admins></module>"
            srv._sm_cfg()
            srv.sm.p.send_signal(signal.SIGHUP)
            assert wait_for(lambda: "event=reload file=" in srv.log("sm"), 10)
            _, last = await run(b, "get-online-users-num")
            assert values(last, "onlineusersnum") == ["2"]
            with pytest.raises(IqError) as e:
                await a["xep_0050"].send_command("localhost", f"{ADMIN}#get-online-users-num", timeout=10)
            assert e.value.iq["error"]["condition"] == "forbidden"
            await close(a, b)

        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        srv.close()
