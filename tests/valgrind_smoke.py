"""Runs router, sm and c2s (a build without sanitizers) under valgrind through
registration, login, chat, offline storage and a clean SIGTERM stop, and fails
on any memory error or leak. Usage: valgrind_smoke.py BUILD_DIR"""
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
work = pathlib.Path(tempfile.mkdtemp(prefix="weft-vg-"))
for p in ("router", "sm", "c2s"):
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
sys.exit(1 if bad or len(logs) < 3 else 0)
