"""A real third-party XEP-0114 component (python3-slixmpp) through the router."""
import asyncio
import os
import socket
import subprocess
import sys
import time

from conftest import wait_for

SLIX = r'''
import asyncio, sys, logging
from slixmpp.componentxmpp import ComponentXMPP

port, n_expect, n_send = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

class C(ComponentXMPP):
    def __init__(self):
        super().__init__("legacy.test", "legacy-secret", "127.0.0.1", port)
        self.got = set()
        self.echoes = 0
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("message", self.on_message)

        self.started = False

    async def start(self, _):
        print("READY", flush=True)

    def on_message(self, msg):
        body = msg["body"]
        # Our component is up once its first message arrives: answer with ours.
        if not self.started:
            self.started = True
            for i in range(n_send):
                self.send_message(mto="peer@a.test/r", mfrom="bot@legacy.test", mbody=f"seq:{i}", mtype="chat")
        if msg["from"].domain == "a.test" and body.startswith("seq:"):
            if msg["to"].bare == "bot@legacy.test":
                self.echoes += 1
            else:
                self.got.add(body)
        if len(self.got) >= n_expect and self.echoes >= n_send:
            print(f"DONE got={len(self.got)} echoes={self.echoes}", flush=True)
            self.disconnect()
            asyncio.get_event_loop().call_later(0.5, sys.exit, 0)

c = C()
c.connect()
asyncio.get_event_loop().run_until_complete(asyncio.wait_for(c.disconnected, 60))
'''


def test_slixmpp_component_routes_both_ways(env, tmp_path):
    env.start_router()
    script = tmp_path / "slix.py"
    script.write_text(SLIX)
    slix = subprocess.Popen(["/usr/bin/python3", str(script), str(env.router_port), "50", "20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert slix.stdout.readline().strip() == "READY"
        # Our component echoes what slixmpp sends and sends 50 of its own to slixmpp.
        a = env.comp("a", "secret-a", "--bind", "a.test", "--echo", "--to", "someone@legacy.test",
                     "--from", "peer@a.test", "--count", 50, "--rate", 100)
        out, err = slix.communicate(timeout=90)
    finally:
        if slix.poll() is None:
            slix.kill()
    assert "DONE got=50 echoes=20" in out, out + err[-3000:]
    r = a.report()
    assert r["errors"] == 0
    assert "event=authenticated protocol=xep0114 component=legacy.test" in env.router_log()


def _legacy_handshake(port, name, digest_fn):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"<stream:stream xmlns='jabber:component:accept' "
              f"xmlns:stream='http://etherx.jabber.org/streams' to='{name}'>".encode())
    data = b""
    while b"id=" not in data or b">" not in data.split(b"id=")[1]:
        data += s.recv(4096)
    sid = data.split(b"id='")[1].split(b"'")[0].decode()
    if b"</stream:stream>" in data:
        s.close()
        return data.decode()
    s.sendall(f"<handshake>{digest_fn(sid)}</handshake>".encode())
    reply = data
    s.settimeout(5)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
            if b"</stream:stream>" in reply or b"<handshake/>" in reply:
                break
    except socket.timeout:
        pass
    s.close()
    return reply.decode()


def test_wrong_secret_is_refused_with_not_authorized(env):
    import hashlib
    env.start_router()
    reply = _legacy_handshake(env.router_port, "legacy.test",
                              lambda sid: hashlib.sha1((sid + "nope").encode()).hexdigest())
    assert "<not-authorized" in reply and "</stream:stream>" in reply
    assert "<handshake/>" not in reply
    ok = _legacy_handshake(env.router_port, "legacy.test",
                           lambda sid: hashlib.sha1((sid + "legacy-secret").encode()).hexdigest())
    assert "<handshake/>" in ok
    assert "event=auth-failed protocol=xep0114 component=legacy.test peer=127.0.0.1" in env.router_log()


def test_unknown_component_name_is_host_unknown(env):
    env.start_router()
    reply = _legacy_handshake(env.router_port, "nobody.test", lambda sid: "00" * 20)
    assert "<host-unknown" in reply
