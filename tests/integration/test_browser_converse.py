"""converse.js (npm) in headless Chromium (Debian's, driven by puppeteer-core
from npm) against weft over WebSocket, with a slixmpp user over TCP on the
other side. The browser finds the endpoint itself: converse asks
https://localhost/.well-known/host-meta (XEP-0156), which Chromium's host
resolver sends to c2s's websocket-tls port, and connects to the wss:// URL
weft names there. Then it logs in (SCRAM), sends a message the TCP user
receives, shows the TCP user's answer, and sends an image (a PNG the test
makes) with its paperclip: converse finds weft-upload in the domain's
disco#items, gets a XEP-0363 slot, PUTs the file and sends the URL, which the
TCP user receives and downloads byte for byte; converse shows the picture.
After a reload it resumes its session (XEP-0198 over a new WebSocket) and
shows the conversation from its own browser storage; then a fresh browser
context (empty IndexedDB) logs in as another resource and shows the
messages and the picture again, which there can only come from weft's
message archive (MAM, XEP-0313). The second test plays the same with
Profanity under tmux as the TCP user, which saves the image with /url save.

The JID has a fixed resource: converse 14 makes up a new resource on a
reload, resumes the old session all the same, and then stamps its stanzas
with the new resource, which RFC 6120 8.1.2.1 makes an invalid-from stream
error (docs/c2s.md, "Known limits"). Screenshots are kept in the test's directory
(and under build/browser-shots/ for a look).

node_modules come from scripts/deps.sh (WEFT_NODE_DIR, default
~/.cache/weft/node); a missing browser or module fails the test."""
import asyncio
import functools
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import urllib.request
import zlib

import pytest

from conftest import BUILD, free_port, wait_for
from server import Server, binary

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.environ.get("WEFT_NODE_DIR", os.path.expanduser("~/.cache/weft/node"))
CHROMIUM = os.environ.get("WEFT_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def make_png(width=48, height=32):
    """A small RGB PNG with a gradient, so a byte lost or changed shows."""
    rows = b"".join(b"\0" + b"".join(bytes(((x * 5) & 255, (y * 8) & 255, (x * y) & 255)) for x in range(width))
                    for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def start_upload(srv, http_port):
    """weft-upload on loopback, bound to upload.localhost (the router entry is
    given to srv.start)."""
    (srv.dir / "upload.xml").write_text(
        f"<upload><router><address>127.0.0.1:{srv.router_port}</address></router><secret>up-secret</secret>"
        f"<directory>{srv.dir}/upload</directory><log><level>debug</level></log>"
        f"<http><listen>127.0.0.1:{http_port}</listen></http></upload>")
    srv._spawn([binary("WEFT_UPLOAD", "upload", "weft-upload"), "-c", str(srv.dir / "upload.xml")], "upload.log")
    assert wait_for(lambda: "event=ready" in srv.log("upload"), 15), srv.log("upload")


def serve_page(root):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def tcp_peer(srv, jid, password, answer, got, ready, stop):
    """slixmpp over TCP: answers the first chat message with `answer`."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    x = srv.slixmpp_client(jid, password)

    def on_start(_):
        x.send_presence()
        ready.set()

    def on_msg(m):
        if m["type"] in ("chat", "normal") and m["body"]:
            got.append((str(m["from"]), m["body"]))
            if len(got) == 1:
                x.send_message(mto=m["from"].bare, mbody=answer, mtype="chat")

    x.add_event_handler("session_start", on_start)
    x.add_event_handler("message", on_msg)
    x.connect(("127.0.0.1", srv.port))

    async def until_stopped():
        while not stop.is_set():
            await asyncio.sleep(0.1)
        x.disconnect()
        await asyncio.sleep(0.5)

    loop.run_until_complete(until_stopped())


def converse_world(srv, tmp_path, shot_name="converse.png"):
    """Starts weft with a websocket-tls listener and weft-upload, registers
    alice and bob, serves the test page; returns (driver env, image bytes,
    upload port, http server, driver dir)."""
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: scripts/deps.sh installs chromium"
    for mod in ("converse.js/dist/converse.min.js", "puppeteer-core/package.json"):
        assert os.path.exists(os.path.join(NODE_DIR, "node_modules", mod)), \
            f"{NODE_DIR}/node_modules/{mod} missing: scripts/deps.sh installs it"
    wss = free_port()
    srv.start(c2s_extra=f"<listen><websocket-tls>127.0.0.1:{wss}</websocket-tls></listen>",
              sm_extra="<module name='disco'><items>upload.localhost</items></module>",
              router_extra="<component name='upload' secret='up-secret'><bind>upload.localhost</bind></component>")
    up_port = free_port()
    start_upload(srv, up_port)
    image = make_png()
    (tmp_path / "weft-picture.png").write_bytes(image)
    srv.register("alice", "pw-alice")
    srv.register("bob", "pw-bob")

    web = tmp_path / "web"
    web.mkdir()
    shutil.copy(os.path.join(HERE, "browser", "index.html"), web / "index.html")
    os.symlink(os.path.join(NODE_DIR, "node_modules", "converse.js", "dist"), web / "converse")
    httpd = serve_page(web)
    drv = tmp_path / "driver"
    drv.mkdir()
    shutil.copy(os.path.join(HERE, "browser", "converse.mjs"), drv / "converse.mjs")
    os.symlink(os.path.join(NODE_DIR, "node_modules"), drv / "node_modules")

    shot = tmp_path / shot_name
    env = dict(os.environ, PAGE=f"http://127.0.0.1:{httpd.server_port}/index.html?jid=alice@localhost/web"
                               f"&password=pw-alice", DOMAIN="localhost", WSS_PORT=str(wss),
               PEER="bob@localhost", SEND="hello from converse", EXPECT="answer from tcp",
               SHOT=str(shot), CHROMIUM=CHROMIUM, UPLOAD=str(tmp_path / "weft-picture.png"),
               PAGE_FRESH=f"http://127.0.0.1:{httpd.server_port}/index.html?jid=alice@localhost/fresh"
                          f"&password=pw-alice", TIMEOUT_MS="120000")
    return env, image, up_port, httpd, drv


def driver_result(srv, tmp_path, r_stdout, r_stderr):
    """The driver's JSON line; keeps the screenshots; returns (res, diag)."""
    lines = [l for l in r_stdout.splitlines() if l.startswith("{")]
    assert lines, (r_stdout[-2000:], r_stderr[-2000:])
    res = json.loads(lines[-1])
    keep = os.path.join(BUILD, "browser-shots")
    os.makedirs(keep, exist_ok=True)
    for f in tmp_path.glob("converse*.png"):
        shutil.copy(f, keep)
    diag = json.dumps({k: res.get(k) for k in ("error", "steps", "websocket_url", "image",
                                                 "history_from_mam")}) + "\n" + \
        "\n".join(res.get("console", [])[-60:]) + "\n" + srv.log("c2s")[-3000:]
    return res, diag


def test_converse_in_chromium(srv, tmp_path):
    env, image, up_port, httpd, drv = converse_world(srv, tmp_path)
    shot = tmp_path / "converse.png"
    got, ready, stop = [], threading.Event(), threading.Event()
    peer = threading.Thread(target=tcp_peer, args=(srv, "bob@localhost/tcp", "pw-bob", "answer from tcp",
                                                   got, ready, stop), daemon=True)
    peer.start()
    try:
        assert ready.wait(20), "slixmpp peer did not log in"
        r = subprocess.run(["node", str(drv / "converse.mjs")], env=env, capture_output=True, text=True,
                           timeout=200)
        res, diag = driver_result(srv, tmp_path, r.stdout, r.stderr)
        assert res.get("ok"), diag
        # discovered through host-meta, from weft's own listener
        assert res["websocket_url"] == "wss://localhost/xmpp-websocket", diag
        assert res["jid"].startswith("alice@localhost/"), diag
        assert wait_for(lambda: any(b == "hello from converse" for _, b in got), 10), got
        assert got[0][0].startswith("alice@localhost/")
        assert shot.exists() and shot.stat().st_size > 10000
        log = srv.log("c2s")
        assert "event=host-meta" in log and "format=xrd" in log
        assert log.count("event=websocket-open") >= 2   # the reload logged in again
        assert "event=resumed" in log and "jid=alice@localhost/web" in log
        assert "event=stream-error" not in log
        assert "mechanism=SCRAM" in log
        assert res["history_after_reload"], diag

        # XEP-0363: the TCP user got the URL of the upload service and
        # downloads exactly the bytes converse sent; converse shows the picture
        urls = [b for _, b in got if b.startswith("http")]
        assert urls, got
        assert urls[0].startswith(f"http://127.0.0.1:{up_port}/") and urls[0].endswith("/weft-picture.png"), urls
        with urllib.request.urlopen(urls[0], timeout=10) as r:
            assert r.headers["Content-Type"] == "image/png"
            assert r.read() == image
        assert res["image"] and res["image"]["width"] == 48 and res["image"]["height"] == 32, diag
        assert res["image"]["src"] == urls[0], diag
        up_log = srv.log("upload")
        assert "event=slot id=" in up_log and "event=uploaded" in up_log and "owner=alice@localhost" in up_log, up_log[-2000:]

        # MAM: the fresh context's history came from the archive
        mam = res["history_from_mam"]
        assert mam and mam["send"], diag
        assert mam["expect"], diag
        assert mam["image"] and mam["image"]["src"] == urls[0], diag
        assert "event=mam-query user=alice@localhost" in srv.log("sm")
    finally:
        stop.set()
        peer.join(5)
        httpd.shutdown()


@pytest.mark.skipif(not shutil.which("profanity") or not shutil.which("tmux"),
                    reason="profanity and tmux are installed by scripts/deps.sh")
def test_converse_and_profanity(srv, tmp_path):
    """The TCP user is Profanity under tmux: it gets converse's message,
    answers it, receives the image's URL and saves the file with /url save,
    which must be the PNG converse sent, byte for byte."""
    from test_profanity import Profanity
    env, image, up_port, httpd, drv = converse_world(srv, tmp_path, "converse-profanity.png")
    bob = Profanity(tmp_path, "bob")
    node = None
    try:
        bob.connect("bob@localhost", "pw-bob", srv.port)
        node = subprocess.Popen(["node", str(drv / "converse.mjs")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        bob.wait("chat message: alice@localhost", 90)
        bob.type("/msg alice@localhost answer from tcp")
        out, err = node.communicate(timeout=200)
        res, diag = driver_result(srv, tmp_path, out, err)
        assert res.get("ok"), diag
        assert res["history_after_reload"], diag
        assert res["image"] and res["image"]["width"] == 48, diag
        bob.type("/win 2")
        bob.wait("hello from converse")
        m = re.search(r"(http://127\.0\.0\.1:%d/\S+/weft-picture\.png)" % up_port, bob.screen())
        assert m, bob.screen()[-3000:]
        saved = tmp_path / "saved.png"
        bob.type(f"/url save {m.group(1)} {saved}")
        assert wait_for(lambda: saved.exists() and saved.stat().st_size == len(image), 20, 0.2), \
            bob.screen()[-3000:]
        assert saved.read_bytes() == image
        mam = res["history_from_mam"]
        assert mam and mam["send"] and mam["expect"] and mam["image"], diag
    finally:
        if node and node.poll() is None:
            node.kill()
            node.wait()
        bob.close()
        httpd.shutdown()
