"""weft-upload (XEP-0363 HTTP File Upload) against the running process:
router, sm, c2s and weft-upload on loopback. Slots are asked for by slixmpp
(its xep_0363 plugin) and by a raw XMPP stream where the exact error
elements matter; files go up and down with Python's http.client and raw
sockets (no weft code on the client side).
"""
import asyncio
import http.client
import os
import re
import socket
import ssl
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import Proc, free_port, wait_for, wait_port
from server import Server, binary

UP = "urn:xmpp:http:upload:0"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"

UPLOAD_XML = """<upload>
  <router><address>127.0.0.1:{router_port}</address><name>router</name></router>
  <name>upload</name>
  <secret>up-secret</secret>
  <domain>upload.localhost</domain>
  <allowed-domains>{allowed}</allowed-domains>
  <directory>{dir}/upload</directory>
  <log><level>debug</level></log>
  <limits>{limits}</limits>
  <http><listen>127.0.0.1:{http_port}</listen>{http}</http>
</upload>
"""

ROUTER_EXTRA = "<component name='upload' secret='up-secret'><bind>upload.localhost</bind></component>"


class World:
    """A server with weft-upload; users alice and bob (password pw)."""

    def __init__(self, tmp_path, limits="", http="", allowed="localhost", users=("alice", "bob")):
        self.srv = Server(tmp_path).start(router_extra=ROUTER_EXTRA)
        self.dir = tmp_path
        self.http_port = free_port()
        (tmp_path / "upload.xml").write_text(UPLOAD_XML.format(
            router_port=self.srv.router_port, dir=tmp_path, http_port=self.http_port, limits=limits,
            http=http, allowed=allowed))
        self.up = None
        self.start_upload()
        for u in users:
            self.srv.register(u, "pw")
        self.clients = {}

    def start_upload(self):
        before = self.srv.log("upload").count("event=ready")
        self.up = self.srv._spawn([binary("WEFT_UPLOAD", "upload", "weft-upload"), "-c",
                                   str(self.dir / "upload.xml")], "upload.log")
        wait_port(self.http_port)
        assert wait_for(lambda: self.srv.log("upload").count("event=ready") > before,
                        float(os.environ.get("WEFT_START_TIMEOUT", "15"))), self.srv.log("upload")

    def log(self):
        return self.srv.log("upload")

    def client(self, user):
        if user not in self.clients:
            self.clients[user] = self.srv.login(user, "pw")
        return self.clients[user]

    def iq(self, user, payload, to="upload.localhost", type_="get"):
        """Sends an iq from user's raw stream; returns the answer's element."""
        c = self.client(user)
        qid = f"q{time.monotonic_ns()}"
        c.send(f"<iq type='{type_}' id='{qid}' to='{to}'>{payload}</iq>")
        raw = c.read_until(rf"<iq[^>]*id=['\"]{qid}['\"](?:[^>]*/>|[\s\S]*?</iq>)")
        raw = raw[raw.rindex("<iq"):]
        return ET.fromstring(raw.replace("<iq", "<iq xmlns='jabber:client'", 1) if "xmlns=" not in
                             raw.split(">")[0] else raw)

    def slot(self, user, filename, size, ctype=None):
        """(put_url, get_url) or raises with the error element."""
        attrs = f"filename='{filename}' size='{size}'" + (f" content-type='{ctype}'" if ctype else "")
        st = self.iq(user, f"<request xmlns='{UP}' {attrs}/>")
        assert st.get("type") == "result", ET.tostring(st)
        s = st.find(f"{{{UP}}}slot")
        return s.find(f"{{{UP}}}put").get("url"), s.find(f"{{{UP}}}get").get("url")

    def slot_error(self, user, attrs):
        st = self.iq(user, f"<request xmlns='{UP}' {attrs}/>")
        assert st.get("type") == "error", ET.tostring(st)
        return st.find("{jabber:client}error")

    def close(self):
        for c in self.clients.values():
            try:
                c.close()
            except Exception:
                pass
        self.srv.close()


def cond(err):
    return [c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZAS}}}") and not c.tag.endswith("}text")][0]


def path_of(url):
    return re.sub(r"^https?://[^/]+", "", url)


def request(w, method, url, body=None, headers=None, tls=None):
    """(status, headers dict (lower-case names), body) of one HTTP request."""
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", w.http_port, timeout=10, context=tls)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", w.http_port, timeout=10)
    conn.request(method, path_of(url), body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def raw_http(w, data, timeout=10):
    """Sends bytes, returns everything until the server closes."""
    s = socket.create_connection(("127.0.0.1", w.http_port), timeout=timeout)
    s.sendall(data)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    s.close()
    return out


@pytest.fixture
def world(tmp_path):
    made = []

    def make(**kw):
        w = World(tmp_path, **kw)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


def slixmpp_slot(w, user, filename, size, ctype):
    """Discovers the service and asks for a slot with slixmpp's xep_0363
    plugin; returns (disco features, max-file-size, put url, get url)."""
    import slixmpp
    asyncio.set_event_loop(asyncio.new_event_loop())
    x = w.srv.slixmpp_client(f"{user}@localhost/slix", "pw")
    x.register_plugin("xep_0030")
    x.register_plugin("xep_0363")
    out = {}

    async def run(event):
        try:
            info = await x["xep_0030"].get_info(jid="upload.localhost", timeout=10)
            out["features"] = info["disco_info"]["features"]
            form = info["disco_info"]["form"]
            out["max"] = form.get_values().get("max-file-size")
            iq = await x["xep_0363"].request_slot("upload.localhost", filename, size, ctype, timeout=10)
            out["put"] = iq["http_upload_slot"]["put"]["url"]
            out["get"] = iq["http_upload_slot"]["get"]["url"]
        finally:
            x.disconnect()

    x.add_event_handler("session_start", run)
    x.connect(("127.0.0.1", w.srv.port))
    asyncio.get_event_loop().run_until_complete(asyncio.wait_for(x.disconnected, 30))
    return out


# ------------------------------------------------------------------ the path a client takes

def test_slot_put_get_byte_exact(world):
    w = world()
    data = os.urandom(150_000) + b"\r\n\r\n\x00end"
    got = slixmpp_slot(w, "alice", "très cool.png", len(data), "image/png")
    assert UP in got["features"]
    assert str(got["max"]) in ("10485760", "['10485760']"), got
    put, get = got["put"], got["get"]
    assert get.startswith(f"http://127.0.0.1:{w.http_port}/") and get.endswith("/tr%C3%A8s%20cool.png"), get
    assert put.startswith(get + "?token="), put
    # Nothing to GET before the PUT.
    assert request(w, "GET", get)[0] == 404
    st, h, _ = request(w, "PUT", put, body=data, headers={"Content-Type": "image/png"})
    assert st == 201 and h["access-control-allow-origin"] == "*"
    st, h, body = request(w, "GET", get)
    assert st == 200 and body == data
    assert h["content-type"] == "image/png" and int(h["content-length"]) == len(data)
    assert "immutable" in h["cache-control"] and "max-age=" in h["cache-control"]
    assert h["x-content-type-options"] == "nosniff" and "sandbox" in h["content-security-policy"]
    assert h["access-control-allow-origin"] == "*"
    st, h, body = request(w, "HEAD", get)
    assert st == 200 and body == b"" and int(h["content-length"]) == len(data)
    # The CORS preflight a browser sends before its PUT.
    st, h, _ = request(w, "OPTIONS", put, headers={"Origin": "http://web.example",
                                                   "Access-Control-Request-Method": "PUT"})
    assert st == 204 and "PUT" in h["access-control-allow-methods"]
    assert "content-type" in h["access-control-allow-headers"].lower()
    # A slot is filled once.
    assert request(w, "PUT", put, body=data, headers={"Content-Type": "image/png"})[0] == 409
    assert request(w, "GET", get)[2] == data
    # Bob (another user) reads it by its URL, as the recipient of a message does.
    assert "event=uploaded" in w.log() and "owner=alice@localhost" in w.log()


def test_keep_alive_and_expect_continue(world):
    """Two requests on one connection, the PUT with Expect: 100-continue as
    curl sends it for large bodies."""
    w = world()
    put, get = w.slot("alice", "a.bin", 5000, "application/octet-stream")
    data = os.urandom(5000)
    s = socket.create_connection(("127.0.0.1", w.http_port), timeout=10)
    s.sendall((f"PUT {path_of(put)} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
               f"Content-Type: application/octet-stream\r\nExpect: 100-continue\r\n\r\n").encode())
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.sendall(data)
    f = s.makefile("rb")
    assert f.readline().startswith(b"HTTP/1.1 201")
    while f.readline() not in (b"\r\n", b""):
        pass
    s.sendall(f"GET {path_of(get)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert f.readline().startswith(b"HTTP/1.1 200")
    length = None
    while True:
        line = f.readline()
        if line == b"\r\n":
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    assert length == 5000 and f.read(5000) == data
    s.close()


# ------------------------------------------------------------------ slot rules

def test_size_limit_and_type(world):
    w = world(limits="<max-file-size>1000</max-file-size>")
    err = w.slot_error("alice", "filename='big.bin' size='1001'")
    assert err.get("type") == "modify" and cond(err) == "not-acceptable"
    assert err.find(f"{{{UP}}}file-too-large/{{{UP}}}max-file-size").text == "1000"
    for bad in ("filename='x' size='0'", "filename='x' size='-5'", "filename='x' size='12abc'", "size='10'",
                "filename='x' size='+10'", "filename='x' size=' 10'", "filename='x' size='99999999999999999999'",
                "filename='' size='10'", "filename='x' size='10' content-type='bad\ttype'"):
        err = w.slot_error("alice", bad)
        assert cond(err) == "bad-request", bad
    put, get = w.slot("alice", "ok.txt", 1000, "text/plain")
    # Content-Length must be the slot's size, larger or smaller.
    assert request(w, "PUT", put, body=b"x" * 1001, headers={"Content-Type": "text/plain"})[0] == 413
    assert request(w, "PUT", put, body=b"x" * 999, headers={"Content-Type": "text/plain"})[0] == 400
    # And the content type the slot was given for.
    assert request(w, "PUT", put, body=b"x" * 1000, headers={"Content-Type": "text/html"})[0] == 400
    assert request(w, "GET", get)[0] == 404
    # Chunked bodies have no length to check in advance.
    out = raw_http(w, (f"PUT {path_of(put)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3e8\r\n" + "x" * 1000 + "\r\n0\r\n\r\n").encode())
    assert out.startswith(b"HTTP/1.1 411"), out[:100]
    assert request(w, "PUT", put, body=b"y" * 1000, headers={"Content-Type": "text/plain"})[0] == 201
    st, h, body = request(w, "GET", get)
    assert st == 200 and body == b"y" * 1000 and h["content-type"] == "text/plain"
    # A slot asked for without a content type takes the PUT's, or none.
    put, get = w.slot("alice", "photo", 10)
    assert request(w, "PUT", put, body=b"p" * 10, headers={"Content-Type": "image/jpeg"})[0] == 201
    st, h, _ = request(w, "GET", get)
    assert h["content-type"] == "image/jpeg" and h["content-disposition"] == "inline"
    put, get = w.slot("alice", "blob", 10)
    assert request(w, "PUT", put, body=b"b" * 10)[0] == 201
    st, h, _ = request(w, "GET", get)
    assert h["content-type"] == "application/octet-stream" and h["content-disposition"] == "attachment"


def test_quota(world):
    w = world(limits="<quota>3000</quota>")
    w.slot("alice", "one.bin", 2000)
    err = w.slot_error("alice", "filename='two.bin' size='2000'")
    assert err.get("type") == "wait" and cond(err) == "resource-constraint"
    stamp = err.find(f"{{{UP}}}retry").get("stamp")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp
    # The quota is per user: bob still may.
    w.slot("bob", "two.bin", 2000)
    w.slot("alice", "small.bin", 1000)


def test_only_allowed_domains(world):
    w = world(allowed="example.org")
    err = w.slot_error("alice", "filename='a' size='10'")
    assert err.get("type") == "cancel" and cond(err) == "not-allowed"
    # disco#info still answers; other payloads are service-unavailable.
    st = w.iq("alice", "<query xmlns='http://jabber.org/protocol/disco#info'/>")
    assert st.get("type") == "result"
    st = w.iq("alice", "<query xmlns='jabber:iq:version'/>")
    assert cond(st.find("{jabber:client}error")) == "service-unavailable"


# ------------------------------------------------------------------ hostile HTTP

def test_wrong_secret(world):
    w = world()
    put, get = w.slot("alice", "s.bin", 100)
    put2, get2 = w.slot("alice", "t.bin", 100)
    token2 = put2.split("token=")[1]
    bad = [get, get + "?token=", put[:-1] + ("0" if put[-1] != "0" else "1"), get + "?token=" + token2,
           get + "?token=" + put.split("token=")[1] + "0"]
    for url in bad:
        st, _, _ = request(w, "PUT", url, body=b"z" * 100)
        assert st == 403, url
    assert w.log().count("reason=bad-token") == len(bad)
    assert "peer=127.0.0.1" in w.log()
    assert request(w, "GET", get)[0] == 404
    # The right token still works afterwards.
    assert request(w, "PUT", put, body=b"z" * 100)[0] == 201


def test_path_traversal(world):
    w = world()
    put, get = w.slot("alice", "p.bin", 10)
    assert request(w, "PUT", put, body=b"0123456789")[0] == 201
    slot_id = path_of(get).split("/")[1]
    secret = (w.dir / "upload" / "secret").read_bytes()
    assert (w.dir / "upload" / f"{slot_id}.meta").exists()
    paths = ["/../../../../etc/passwd", "/secret", f"/{slot_id}.meta", f"/{slot_id}.data", f"/{slot_id}",
             f"/{slot_id}/../secret", f"/{slot_id}/%2e%2e%2fsecret", f"/{slot_id}/..%2F..%2Fetc%2Fpasswd",
             f"/..%2f{slot_id}.meta/p.bin", f"/{slot_id.upper()}/p.bin", f"/{slot_id}/p.bin%00",
             f"/{slot_id}/p.bin/", "/" + "../" * 10 + f"{slot_id}/p.bin", f"/{slot_id}/other.bin",
             f"//{slot_id}/p.bin"]
    for p in paths:
        out = raw_http(w, f"GET {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status = out.split(b" ")[1]
        assert status in (b"404", b"400"), (p, out[:200])
        assert secret not in out and b"owner" not in out and b"root:" not in out, p
    # The real URL still works.
    assert request(w, "GET", get)[2] == b"0123456789"


def test_bad_heads(world):
    w = world()
    cases = {
        b"GARBAGE\r\n\r\n": b"400",
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n": b"505",
        b"GET / HTTP/1.1\r\n\r\n": b"400",   # no Host
        b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n": b"400",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n": b"400",
        b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n": b"400",
        b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n": b"414",
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n": b"431",
        b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n": b"405",
    }
    for req, status in cases.items():
        out = raw_http(w, req)
        assert out.split(b" ")[1] == status, (req[:60], out[:100])
    # The service still serves.
    put, get = w.slot("alice", "after.bin", 3)
    assert request(w, "PUT", put, body=b"abc")[0] == 201


def test_slow_loris(world):
    w = world(limits="", http="<header-timeout>1s</header-timeout><idle-timeout>1s</idle-timeout>"
                              "<min-rate>1K</min-rate><max-connections-per-ip>4</max-connections-per-ip>")
    # A head trickled a byte at a time is cut at the header timeout, not kept
    # alive by each byte.
    s = socket.create_connection(("127.0.0.1", w.http_port), timeout=10)
    t0 = time.monotonic()
    out = b""
    try:
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            s.send(bytes([b]))
            time.sleep(0.2)
            if time.monotonic() - t0 > 5:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.settimeout(3)
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    elapsed = time.monotonic() - t0
    assert out.startswith(b"HTTP/1.1 408"), out[:100]
    assert elapsed < 4, elapsed
    # A body trickled below min-rate is cut at idle-timeout + size/min-rate
    # (1 + 4000/1024 = 4.9 s), and the slot can be filled afterwards.
    put, slow_get = w.slot("alice", "slow.bin", 4000)
    s = socket.create_connection(("127.0.0.1", w.http_port), timeout=10)
    s.sendall(f"PUT {path_of(put)} HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n".encode())
    t0 = time.monotonic()
    out = b""
    try:
        while time.monotonic() - t0 < 12:
            s.send(b"x" * 100)
            time.sleep(0.5)
    except (BrokenPipeError, ConnectionResetError):
        pass
    cut = time.monotonic() - t0
    s.settimeout(2)
    try:
        out = s.recv(4096)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert 4 < cut < 8, cut
    assert out == b"" or out.startswith(b"HTTP/1.1 408"), out[:100]
    assert "reason=too-slow" in w.log()
    assert not list((w.dir / "upload").glob("*.part"))
    assert request(w, "PUT", put, body=b"q" * 4000)[0] == 201
    # A body that stops (no byte for idle-timeout, 1 s) ends at once, long
    # before its rate deadline.
    put, get = w.slot("alice", "idle.bin", 4000)
    s = socket.create_connection(("127.0.0.1", w.http_port), timeout=10)
    s.sendall(f"PUT {path_of(put)} HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\nxx".encode())
    t0 = time.monotonic()
    s.settimeout(5)
    try:
        s.recv(4096)
    except (ConnectionResetError, socket.timeout):
        pass
    assert time.monotonic() - t0 < 3
    s.close()
    # Connections per address are capped: the fifth gets 503.
    held = [socket.create_connection(("127.0.0.1", w.http_port)) for _ in range(4)]
    time.sleep(0.2)
    out = raw_http(w, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503"), out[:100]
    assert "reason=max-connections-per-ip" in w.log()
    for h in held:
        h.close()
    assert wait_for(lambda: request(w, "GET", slow_get)[0] == 200, 5)


# ------------------------------------------------------------------ time and restarts

def test_expiry(world):
    w = world(limits="<expire-after>3s</expire-after><slot-timeout>2s</slot-timeout>")
    put, get = w.slot("alice", "e.bin", 10)
    assert request(w, "PUT", put, body=b"e" * 10)[0] == 201
    assert request(w, "GET", get)[0] == 200
    unused_put, _ = w.slot("alice", "never.bin", 10)
    # The unused slot goes after 2 s, the file after 3 s (the cron runs each
    # second; times are whole seconds).
    time.sleep(3.2)
    assert request(w, "PUT", unused_put, body=b"n" * 10)[0] == 404
    assert wait_for(lambda: request(w, "GET", get)[0] == 404, 5)
    assert wait_for(lambda: not list((w.dir / "upload").glob("*.data")) and
                    not list((w.dir / "upload").glob("*.meta")), 3), os.listdir(w.dir / "upload")
    assert "event=expired" in w.log() and "state=slot" in w.log() and "state=complete" in w.log()


def test_restart_keeps_files(world):
    w = world()
    data = os.urandom(64_000)
    put, get = w.slot("alice", "keep.bin", len(data))
    assert request(w, "PUT", put, body=data)[0] == 201
    later_put, later_get = w.slot("alice", "later.bin", 5)
    cut_put, cut_get = w.slot("alice", "cut.bin", 100_000)
    # An upload under way when the process is killed.
    s = socket.create_connection(("127.0.0.1", w.http_port), timeout=10)
    s.sendall(f"PUT {path_of(cut_put)} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode() +
              b"c" * 30_000)
    assert wait_for(lambda: list((w.dir / "upload").glob("*.part")), 5)
    w.up.kill9()
    s.close()
    w.start_upload()
    assert "cut-uploads=1" in w.log()
    assert not list((w.dir / "upload").glob("*.part"))
    st, _, body = request(w, "GET", get)
    assert st == 200 and body == data
    # Slots given before the restart still take their PUT (the token key is kept).
    assert request(w, "PUT", later_put, body=b"hello")[0] == 201
    assert request(w, "GET", later_get)[2] == b"hello"
    assert request(w, "PUT", cut_put, body=b"d" * 100_000)[0] == 201
    assert request(w, "GET", cut_get)[2] == b"d" * 100_000
    # A clean stop (SIGTERM) keeps them too.
    assert w.up.stop() == 0
    w.start_upload()
    assert request(w, "GET", get)[2] == data
    # And the XMPP side is back: a new slot works.
    put, get = w.slot("bob", "new.bin", 1)
    assert request(w, "PUT", put, body=b"!")[0] == 201


def test_https_listener(world, tmp_path):
    from conftest import selfsigned_cert
    crt, key = selfsigned_cert(tmp_path / "up" / "up.crt", tmp_path / "up" / "up.key", "localhost")
    w = world(http=f"<tls><certificate>{crt}</certificate><key>{key}</key></tls>")
    put, get = w.slot("alice", "t.txt", 4, "text/plain")
    assert get.startswith(f"https://127.0.0.1:{w.http_port}/")
    ctx = ssl.create_default_context(cafile=crt)
    ctx.check_hostname = False
    assert request(w, "PUT", put, body=b"tls!", headers={"Content-Type": "text/plain"}, tls=ctx)[0] == 201
    assert request(w, "GET", get, tls=ctx)[2] == b"tls!"


def test_weftctl_check_and_status(world, tmp_path):
    """weftctl check/status know weft-upload: its config through its own -t,
    its HTTP port listening while it runs."""
    import subprocess
    from conftest import BUILD
    w = world()
    etc = tmp_path   # the test server's router.xml, sm.xml, c2s.xml and upload.xml
    ctl = os.path.join(BUILD, "tools", "weftctl")
    r = subprocess.run([ctl, "-e", str(etc), "check"], capture_output=True, text=True, timeout=30)
    assert f"ok   config: {etc}/upload.xml parses (weft-upload -t)" in r.stdout, r.stdout + r.stderr
    assert f"ok   port: upload 127.0.0.1:{w.http_port} is listening" in r.stdout, r.stdout
    r = subprocess.run([ctl, "-e", str(etc), "status"], capture_output=True, text=True, timeout=30)
    assert f"ok   upload: running pid={w.up.p.pid}" in r.stdout, r.stdout + r.stderr
    w.up.stop()
    r = subprocess.run([ctl, "-e", str(etc), "status"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "fail upload: not running" in r.stdout, r.stdout


def test_metrics(world, tmp_path):
    """The Prometheus families at metrics.listen follow what happened."""
    port = free_port()
    w = world(limits="<max-file-size>100</max-file-size>")
    # metrics.listen is a start-time option: restart with it.
    cfg = tmp_path / "upload.xml"
    cfg.write_text(cfg.read_text().replace("</upload>", f"<metrics><listen>127.0.0.1:{port}</listen></metrics>"
                                                            "</upload>"))
    w.up.stop()
    w.start_upload()
    put, get = w.slot("alice", "m.bin", 50)
    w.slot("alice", "open.bin", 10)
    w.slot_error("alice", "filename='big' size='101'")
    assert request(w, "PUT", put, body=b"m" * 50)[0] == 201
    assert request(w, "GET", get)[2] == b"m" * 50
    assert request(w, "PUT", put + "x", body=b"m" * 50)[0] == 403

    def scrape():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        return dict(re.findall(r"^(weft_upload_\S+) (\S+)$", text, re.M))
    m = scrape()
    assert m['weft_upload_slot_requests_total{result="given"}'] == "2"
    assert m['weft_upload_slot_requests_total{result="too-large"}'] == "1"
    assert m['weft_upload_http_responses_total{code="201"}'] == "1"
    assert m['weft_upload_http_responses_total{code="200"}'] == "1"
    assert m['weft_upload_http_responses_total{code="403"}'] == "1"
    assert m['weft_upload_bytes_total{direction="in"}'] == "50"
    assert m['weft_upload_bytes_total{direction="out"}'] == "50"
    assert m['weft_upload_files{state="complete"}'] == "1" and m['weft_upload_files{state="slot"}'] == "1"
    assert m["weft_upload_stored_bytes"] == "50"
    assert m["weft_upload_http_connections"] == "0"


def test_long_cors_origin_is_sent_whole(world):
    """http.cors-origin goes out whole, however long: a fixed buffer once cut
    a long origin and the CRLF after it, gluing the next header line to it."""
    origin = "https://" + "a" * 600 + ".example"
    w = world(http=f"<cors-origin>{origin}</cors-origin>")
    put, get = w.slot("alice", "cors.bin", 3)
    st, h, _ = request(w, "PUT", put, body=b"abc")
    assert st == 201 and h["access-control-allow-origin"] == origin, h
    st, h, body = request(w, "GET", get)
    assert st == 200 and body == b"abc" and h["access-control-allow-origin"] == origin
    assert "content-type" in h["access-control-allow-headers"].lower()


def test_reload_takes_new_limits(world, tmp_path):
    """SIGHUP: limits.max-file-size and allowed-domains take their new
    values at once; the listener and the files stay."""
    import signal
    w = world(limits="<max-file-size>100</max-file-size>")
    put, get = w.slot("alice", "kept.bin", 100)
    assert request(w, "PUT", put, body=b"k" * 100)[0] == 201
    assert cond(w.slot_error("alice", "filename='x' size='150'")) == "not-acceptable"
    cfg = tmp_path / "upload.xml"
    cfg.write_text(cfg.read_text().replace("<max-file-size>100<", "<max-file-size>200<"))
    w.up.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=reload file=" in w.log(), 10), w.log()
    put2, get2 = w.slot("alice", "now.bin", 150)
    assert request(w, "PUT", put2, body=b"n" * 150)[0] == 201
    assert request(w, "GET", get)[2] == b"k" * 100
    cfg.write_text(cfg.read_text().replace("<allowed-domains>localhost<", "<allowed-domains>example.org<"))
    w.up.p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: w.log().count("event=reload file=") == 2, 10), w.log()
    assert cond(w.slot_error("alice", "filename='x' size='10'")) == "not-allowed"


def test_connection_cap(world):
    """http.max-connections: past it a connection gets 503 at once, and
    the service serves again when connections end."""
    w = world(http="<max-connections>2</max-connections>")
    put, get = w.slot("alice", "c.bin", 1)
    held = [socket.create_connection(("127.0.0.1", w.http_port)) for _ in range(2)]
    time.sleep(0.2)
    t0 = time.monotonic()
    out = raw_http(w, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503") and b"Retry-After" in out, out[:100]
    assert time.monotonic() - t0 < 2
    assert "reason=max-connections\n" in w.log()
    for h in held:
        h.close()
    assert wait_for(lambda: request(w, "PUT", put, body=b"!")[0] == 201, 5)
