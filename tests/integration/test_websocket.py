"""c2s over WebSocket (RFC 7395) and XEP-0156 host-meta, driven by a raw
RFC 6455 client (wsclient.py) and slixmpp over TCP on the other side: the
same session as TCP (SASL, bind, routing, XEP-0198 resumption), framing
(one standalone document per message, <open/>/<close/>), pings, limits,
bad frames, origin refusal and the HTTP side's refusals."""
import re
import socket
import struct
import threading
import time
import asyncio
import json

import pytest

from conftest import wait_for
from server import RawClient, Server
from wsclient import FRAMING, WsClient, WsClosed, XmppWs, http_get


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def started(srv, extra=""):
    srv.start(c2s_extra=extra)
    srv.register("alice", "pw-alice")
    srv.register("bob", "pw-bob")
    return srv


# ---------------------------------------------------------------- HTTP side

def test_host_meta_names_the_websocket_endpoint(srv):
    srv.start(sm=False)
    st, h, body = http_get(srv.ws_port, "/.well-known/host-meta")
    assert st == 200, body
    assert h["content-type"].startswith("application/xrd+xml")
    assert h["access-control-allow-origin"] == "*"
    url = f"ws://127.0.0.1:{srv.ws_port}/xmpp-websocket"
    assert re.search(r"<Link rel='urn:xmpp:alt-connections:websocket' href='" + re.escape(url) + "'/>",
                     body.decode()), body
    st, h, body = http_get(srv.ws_port, "/.well-known/host-meta.json")
    assert st == 200 and h["content-type"] == "application/json"
    assert json.loads(body) == {"links": [{"rel": "urn:xmpp:alt-connections:websocket", "href": url}]}
    st, h, body = http_get(srv.ws_port, "/.well-known/host-meta", method="HEAD")
    assert st == 200 and body == b"" and int(h["content-length"]) > 0


def test_host_meta_public_url(srv):
    srv.start(sm=False, c2s_extra="<websocket><public-url>wss://chat.example.org/xmpp-websocket</public-url></websocket>")
    st, _, body = http_get(srv.ws_port, "/.well-known/host-meta.json")
    assert st == 200
    assert json.loads(body)["links"][0]["href"] == "wss://chat.example.org/xmpp-websocket"


def test_http_refusals_then_still_serving(srv):
    srv.start(sm=False)
    p = srv.ws_port
    assert http_get(p, "/nothing")[0] == 404
    assert http_get(p, "/xmpp-websocket")[0] == 426                       # no Upgrade
    assert http_get(p, "/.well-known/host-meta", method="POST")[0] == 405
    assert http_get(p, "", raw="GET / HTTP/2.0\r\nHost: x\r\n\r\n")[0] == 505
    assert http_get(p, "", raw="GET /\r\n\r\n")[0] == 400
    assert http_get(p, "", raw="GET / HTTP/1.1\r\nHost : x\r\n\r\n")[0] == 400
    assert http_get(p, "", raw="GET / HTTP/1.1\nHost: x\n\n")[0] == 400     # bare LF
    big = "GET / HTTP/1.1\r\n" + "X-Fill: " + "a" * 9000 + "\r\n\r\n"
    assert http_get(p, "", raw=big)[0] == 431
    assert WsClient(p, protocol=None, expect=400).status == 400             # no xmpp subprotocol
    assert WsClient(p, protocol="chat, mqtt", expect=400).status == 400
    assert WsClient(p, extra_headers={"Sec-WebSocket-Version": "8"}, expect=426).headers[
        "sec-websocket-version"] == "13"
    assert WsClient(p, extra_headers={"Sec-WebSocket-Key": "short"}, expect=400).status == 400
    # and a good upgrade after all that
    ws = XmppWs(p, protocol="chat, xmpp")
    assert "<mechanisms" in ws.open()


def test_origin_check(srv):
    srv.start(sm=False, c2s_extra="<websocket><origins>https://good.example http://localhost:8080</origins></websocket>")
    p = srv.ws_port
    r = WsClient(p, origin="https://evil.example", expect=403)
    assert r.status == 403
    assert "origin=\"https://evil.example\"" in srv.log("c2s")
    XmppWs(p, origin="https://good.example").open()
    XmppWs(p, origin="HTTP://LOCALHOST:8080").open()   # scheme and host are case-insensitive
    XmppWs(p).open()                                    # no Origin: not a browser page


# ---------------------------------------------------------------- session

def test_login_and_chat_with_tcp_client(srv):
    started(srv)
    ws = XmppWs(srv.ws_port)
    feats = ws.open()
    # no STARTTLS over a WebSocket (RFC 7395 3.8); loopback counts as secure
    assert "starttls" not in feats
    assert "<mechanism>PLAIN</mechanism>" in feats and "SCRAM-SHA-256" in feats
    assert "xmlns:stream='http://etherx.jabber.org/streams'" in feats
    ws.close_stream()
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    assert ws.jid == "alice@localhost/ws"
    ws.send("<presence xmlns='jabber:client'/>")
    bob = srv.login("bob", "pw-bob", resource="tcp")
    bob.send("<presence/>")
    bob.send("<message to='alice@localhost/ws' type='chat' id='m1'><body>hello over tcp</body></message>")
    got = ws.recv_until(r"hello over tcp")
    m = re.search(r"<message [^>]*>", got.split("\n")[-1]).group(0)
    assert "xmlns='jabber:client'" in m and "from='bob@localhost/tcp'" in m
    ws.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat' id='w1'>"
            "<body>hello over websocket</body></message>")
    out = bob.read_until(r"hello over websocket")
    assert "from='alice@localhost/ws'" in out
    # an iq round trip to the sm
    ws.send("<iq xmlns='jabber:client' type='get' id='ping1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "type='result'" in ws.recv_until(r"id='ping1'")
    # <close/> is answered with <close/> and a close frame 1000
    ws.close_stream()
    msgs, code = ws.recv_to_close()
    assert any(m.startswith("<close ") and FRAMING in m for m in msgs), msgs
    assert code == 1000
    assert ws.eof()
    assert wait_for(lambda: "event=session-end" in srv.log("c2s") and "alice@localhost/ws" in srv.log("c2s"))


def test_slixmpp_tcp_client_and_websocket_client_exchange(srv):
    """An independent client (slixmpp, TCP, SCRAM) and ours over WebSocket."""
    started(srv)
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    ws.send("<presence xmlns='jabber:client'/>")
    got = {}
    done = threading.Event()

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        x = srv.slixmpp_client("bob@localhost/sx", "pw-bob")

        def on_start(_):
            x.send_presence()
            x.send_message(mto="alice@localhost/ws", mbody="from slixmpp", mtype="chat")

        def on_msg(m):
            got["body"] = m["body"]
            got["from"] = str(m["from"])
            x.disconnect()

        x.add_event_handler("session_start", on_start)
        x.add_event_handler("message", on_msg)
        x.add_event_handler("disconnected", lambda _: done.set())
        x.connect(("127.0.0.1", srv.port))
        loop.run_until_complete(asyncio.wait_for(x.disconnected, 20))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ws.recv_until(r"from slixmpp", timeout=20)
    ws.send("<message xmlns='jabber:client' to='bob@localhost/sx' type='chat'><body>from websocket</body></message>")
    t.join(25)
    assert got == {"body": "from websocket", "from": "alice@localhost/ws"}, got


def test_scram_over_websocket(srv):
    started(srv)
    ws = XmppWs(srv.ws_port)
    ws.open()
    import base64, hashlib, hmac, os
    nonce = base64.b64encode(os.urandom(12)).decode()
    first_bare = f"n=alice,r={nonce}"
    ws.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>"
            + base64.b64encode(("n,," + first_bare).encode()).decode() + "</auth>")
    ch = base64.b64decode(re.search(r"<challenge[^>]*>([^<]+)<", ws.recv()).group(1)).decode()
    attrs = dict(kv.split("=", 1) for kv in ch.split(","))
    salted = hashlib.pbkdf2_hmac("sha1", b"pw-alice", base64.b64decode(attrs["s"]), int(attrs["i"]))
    ckey = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
    skey = hashlib.sha1(ckey).digest()
    final_wo = f"c=biws,r={attrs['r']}"
    auth_msg = f"{first_bare},{ch},{final_wo}".encode()
    sig = hmac.new(skey, auth_msg, hashlib.sha1).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(ckey, sig))).decode()
    ws.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
            + base64.b64encode(f"{final_wo},p={proof}".encode()).decode() + "</response>")
    assert "<success" in ws.recv()
    assert "<bind" in ws.open()
    assert ws.bind("scram") == "alice@localhost/scram"


def test_wrong_password_refused(srv):
    started(srv)
    ws = XmppWs(srv.ws_port)
    assert ws.auth_plain("alice", "wrong") is False
    assert "peer=127.0.0.1" in srv.log("c2s")


def test_stream_management_resumption(srv):
    started(srv)
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    ws.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    en = ws.recv_until(r"<enabled ")
    previd = re.search(r"id='([^']+)'", en).group(1)
    ws.send("<presence xmlns='jabber:client'/>")
    bob = srv.login("bob", "pw-bob", resource="tcp")
    bob.send("<message to='alice@localhost/ws' type='chat'><body>first</body></message>")
    ws.recv_until(r"first")
    ws.drop()   # no close frame, no <close/>: the connection just goes
    assert wait_for(lambda: "event=detached" in srv.log("c2s"))
    bob.send("<message to='alice@localhost/ws' type='chat'><body>while away</body></message>")
    time.sleep(0.3)
    ws2 = XmppWs(srv.ws_port)
    assert ws2.auth_plain("alice", "pw-alice")
    ws2.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
    got = ws2.recv_until(r"while away")
    assert "<resumed " in got and "first" in got   # nothing acked: both again
    ws2.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'><body>back</body></message>")
    assert "from='alice@localhost/ws'" in bob.read_until(r"back")


def test_websocket_session_resumed_over_tcp(srv):
    """The session belongs to the stream, not to the transport."""
    started(srv)
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    ws.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    previd = re.search(r"id='([^']+)'", ws.recv_until(r"<enabled ")).group(1)
    ws.drop()
    assert wait_for(lambda: "event=detached" in srv.log("c2s"))
    c = srv.login("alice", "pw-alice", bind=False)
    c.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
    assert "<resumed " in c.read_until(r"<resumed [^>]*/>")


# ---------------------------------------------------------------- limits and bad input

def expect_stream_error(ws, condition, code):
    msgs, got_code = ws.recv_to_close()
    joined = "\n".join(msgs)
    assert f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'" in joined, msgs
    assert any(m.startswith("<close ") for m in msgs), msgs
    assert got_code == code, (got_code, msgs)
    assert ws.eof()


def test_frame_and_message_limits(srv):
    started(srv, "<websocket><frame-bytes>2048</frame-bytes><message-bytes>8192</message-bytes></websocket>")
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    ws.send("<message xmlns='jabber:client' to='bob@localhost'><body>" + "x" * 3000 + "</body></message>")
    expect_stream_error(ws, "policy-violation", 1009)
    # fragments of 2000 bytes each: frames pass, the message does not
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    body = "<message xmlns='jabber:client' to='bob@localhost'><body>" + "y" * 9000 + "</body></message>"
    chunks = [body[i:i + 2000] for i in range(0, len(body), 2000)]
    ws.send_frame(0x1, chunks[0], fin=False)
    for ch in chunks[1:-1]:
        ws.send_frame(0x0, ch, fin=False)
    ws.send_frame(0x0, chunks[-1], fin=True)
    expect_stream_error(ws, "policy-violation", 1009)
    # a fragmented message within the limits is one stanza
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    msg = "<iq xmlns='jabber:client' type='get' id='frag'><ping xmlns='urn:xmpp:ping'/></iq>"
    ws.send_frame(0x1, msg[:10], fin=False)
    ws.send_frame(0x9, "mid-ping")              # a control frame between fragments
    ws.send_frame(0x0, msg[10:30], fin=False)
    ws.send_frame(0x0, msg[30:], fin=True)
    assert "type='result'" in ws.recv_until(r"id='frag'")


@pytest.mark.parametrize("case,condition,code", [
    ("unmasked", "not-well-formed", 1002),
    ("rsv", "not-well-formed", 1002),
    ("opcode", "not-well-formed", 1002),
    ("binary", "unsupported-stanza-type", 1003),
    ("long-ping", "not-well-formed", 1002),
    ("fragmented-ping", "not-well-formed", 1002),
    ("bare-continuation", "not-well-formed", 1002),
    ("non-minimal-length", "not-well-formed", 1002),
    ("half-stanza", "not-well-formed", 1000),
    ("two-opens", "policy-violation", 1000),
    ("bad-xml", "not-well-formed", 1000),
])
def test_bad_frames(srv, case, condition, code):
    started(srv)
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    if case == "unmasked":
        ws.send_frame(0x1, "<presence xmlns='jabber:client'/>", mask=False)
    elif case == "rsv":
        ws.send_frame(0x1, "<presence xmlns='jabber:client'/>", rsv=4)
    elif case == "opcode":
        ws.send_frame(0x3, "x")
    elif case == "binary":
        ws.send_frame(0x2, "<presence xmlns='jabber:client'/>")
    elif case == "long-ping":
        ws.send_frame(0x9, "p" * 126)
    elif case == "fragmented-ping":
        ws.send_frame(0x9, "p", fin=False)
    elif case == "bare-continuation":
        ws.send_frame(0x0, "<presence/>")
    elif case == "non-minimal-length":
        ws.sock.sendall(bytes([0x81, 0x80 | 126, 0, 5]) + b"\0\0\0\0" + b"<a/> ")
    elif case == "half-stanza":
        ws.send("<message xmlns='jabber:client' to='bob@localhost'><body>half")
    elif case == "two-opens":
        ws.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
    elif case == "bad-xml":
        ws.send("<message xmlns='jabber:client'><body>x</bod></message>")
    expect_stream_error(ws, condition, code)
    # the process goes on serving others
    assert XmppWs(srv.ws_port).login("bob", "pw-bob").jid == "bob@localhost/ws"


def test_stanza_before_open_and_wrong_namespace(srv):
    started(srv)
    ws = XmppWs(srv.ws_port)
    ws.send("<message xmlns='jabber:client'><body>early</body></message>")
    expect_stream_error(ws, "not-authorized", 1000)
    ws = XmppWs(srv.ws_port)
    ws.send("<open xmlns='jabber:client' to='localhost' version='1.0'/>")
    expect_stream_error(ws, "invalid-namespace", 1000)
    ws = XmppWs(srv.ws_port)
    ws.send(f"<open xmlns='{FRAMING}' to='elsewhere.example' version='1.0'/>")
    expect_stream_error(ws, "host-unknown", 1000)


def test_pings_and_close_frame(srv):
    started(srv, "<websocket><ping-interval>1</ping-interval></websocket>")
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    # our ping is answered with the same payload
    ws.send_frame(0x9, "abc")
    fin, op, payload = ws.recv_frame()
    assert (op, payload) == (0xA, b"abc")
    # a quiet connection is pinged (and our pongs keep it open)
    fin, op, payload = ws.recv_frame(timeout=5)
    assert op == 0x9
    ws.send_frame(0xA, payload)
    # a close frame without <close/>: answered, session ended (no XEP-0198)
    ws.send_frame(0x8, struct.pack("!H", 1001))
    fin, op, payload = ws.recv_frame()
    assert op == 0x8 and struct.unpack("!H", payload[:2])[0] == 1001
    assert ws.eof()
    assert wait_for(lambda: "event=session-end" in srv.log("c2s"))


def test_websocket_over_tls(srv, tmp_path):
    from conftest import free_port
    port = free_port()
    srv.start(c2s_extra=f"<listen><websocket-tls>127.0.0.1:{port}</websocket-tls></listen>")
    srv.register("alice", "pw-alice")
    st, _, body = http_get(port, "/.well-known/host-meta.json", tls=True)
    assert st == 200 and json.loads(body)["links"][0]["href"] == f"wss://127.0.0.1:{port}/xmpp-websocket"
    ws = XmppWs(port, tls=True).login("alice", "pw-alice")
    ws.send("<iq xmlns='jabber:client' type='get' id='t1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "type='result'" in ws.recv_until(r"id='t1'")
    # idle past the parser release and TLS record takeover, then used again
    time.sleep(1.5)
    ws.send("<iq xmlns='jabber:client' type='get' id='t2'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "type='result'" in ws.recv_until(r"id='t2'")


def test_client_that_does_not_read_is_dropped(srv):
    """Past limits.output-buffer a WebSocket client is dropped like a TCP one,
    its session ends, and c2s goes on serving."""
    started(srv, "<limits><output-buffer>65536</output-buffer><rate>64M</rate><burst>64M</burst></limits>")
    ws = XmppWs(srv.ws_port).login("alice", "pw-alice")
    ws.send("<presence xmlns='jabber:client'/>")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    bob = srv.login("bob", "pw-bob", resource="tcp")
    body = "z" * 30000

    def alice_dropped():
        return re.search(r"event=session-end [^\n]*jid=alice@localhost/ws", srv.log("c2s")) is not None

    # Paced, ten messages at a time: only as much as alice's buffers take
    # before the drop, not a flood that would fill the c2s's router link
    # (that is test_backpressure's subject) and queue megabytes ahead of
    # the login below.
    for i in range(0, 1000, 10):
        bob.send("".join(f"<message to='alice@localhost/ws' type='chat' id='f{j}'><body>{body}</body></message>"
                         for j in range(i, i + 10)))
        if wait_for(alice_dropped, 0.05):
            break
    assert wait_for(alice_dropped, 20)
    assert re.search(r"event=client-dropped [^\n]*reason=output-buffer-full", srv.log("c2s"))
    assert "jid=bob@localhost/tcp" not in "".join(
        line for line in srv.log("c2s").splitlines() if "event=session-end" in line)
    assert srv.c2s.p.poll() is None
    assert XmppWs(srv.ws_port).login("alice", "pw-alice", resource="again").jid == "alice@localhost/again"
