"""Runs router, sm and c2s (a build without sanitizers) under valgrind through
registration, login, chat, offline storage and a clean SIGTERM stop, then two
federated deployments whose s2s run under valgrind (dialback both ways), and
fails on any memory error or leak. Usage: valgrind_smoke.py BUILD_DIR"""
import glob
import os
import re
import sys
import tempfile
import pathlib

build = os.path.abspath(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "integration"))
os.environ["WEFT_BUILD"] = build
os.environ.setdefault("WEFT_START_TIMEOUT", "60")   # processes start slowly under valgrind
work = pathlib.Path(tempfile.mkdtemp(prefix="weft-vg-"))
for p in ("router", "sm", "c2s", "s2s", "upload"):
    w = work / f"weft-{p}"
    w.write_text(f"#!/bin/sh\nexec valgrind --leak-check=full --show-leak-kinds=definite,indirect "
                 f"--log-file={work}/{p}.%p.vg {build}/{p}/weft-{p} \"$@\"\n")
    w.chmod(0o755)
    os.environ[f"WEFT_{p.upper()}"] = str(w)

from server import Server  # noqa: E402

srv = Server(work)
try:
    srv.start()
    srv.register("alice", "pw")
    srv.register("bob", "pw")
    a = srv.login("alice", "pw")
    a.send("<presence/>")
    a.send("<message to='bob@localhost' type='chat'><body>stored</body></message>")
    b = srv.login("bob", "pw")
    b.send("<presence/>")
    b.read_until(r"stored</body>", timeout=60)
    b.send("<message to='alice@localhost' type='chat'><body>hi</body></message>")
    a.read_until(r"hi</body>", timeout=60)
    a.close()
    b.close()
finally:
    srv.close()

# weft-upload (and the others again): a slot, a PUT and a GET, a refused
# token, a bad head, an upload cut by the client, then SIGTERM.
import socket  # noqa: E402

from test_upload import World, path_of, raw_http, request  # noqa: E402

(work / "up").mkdir()
w = World(work / "up", users=("alice",))
try:
    put, get = w.slot("alice", "v.bin", 3000, "application/octet-stream")
    assert request(w, "PUT", put, body=b"v" * 3000)[0] == 201
    assert request(w, "GET", get)[2] == b"v" * 3000
    assert request(w, "PUT", get + "?token=bad", body=b"x")[0] == 403
    assert raw_http(w, b"GET / HTTP/9.9\r\n\r\n").startswith(b"HTTP/1.1 505")
    put, get = w.slot("alice", "cut.bin", 3000)
    s = socket.create_connection(("127.0.0.1", w.http_port))
    s.sendall(f"PUT {path_of(put)} HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\nabc".encode())
    s.close()
finally:
    w.close()

# Federation: only the s2s of each deployment runs under valgrind.
from test_s2s_loopback import Deployment  # noqa: E402

for p in ("router", "sm", "c2s"):
    os.environ[f"WEFT_{p.upper()}"] = f"{build}/{p}/weft-{p}"
fed = work / "fed"
fed.mkdir()
da, db = Deployment(fed, "a.test"), Deployment(fed, "b.test")
da.peers = [("b.test", db.s2s_port, False)]
db.peers = [("a.test", da.s2s_port, False)]
try:
    da.start_all()
    db.start_all()
    da.register("alice")
    db.register("bob")
    a, b = da.login("alice"), db.login("bob")
    a.send("<message to='bob@b.test/r' type='chat'><body>over s2s</body></message>")
    b.read_until(r"over s2s</body>", timeout=60)
    b.send("<message to='alice@a.test/r' type='chat'><body>and back</body></message>")
    a.read_until(r"and back</body>", timeout=60)
    a.close()
    b.close()
finally:
    da.close()
    db.close()

bad = []
logs = glob.glob(str(work / "*.vg"))
for path in logs:
    text = open(path).read()
    m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
    lost = re.findall(r"(definitely|indirectly) lost: ([\d,]+) bytes", text)
    if not m or m.group(1) != "0" or any(n != "0" for _, n in lost):
        bad.append(path)
        print(text[-3000:])
print(f"valgrind: {len(logs)} process logs, {len(bad)} with errors or leaks")
sys.exit(1 if bad or len(logs) < 9 else 0)
