"""The s2s row of the fault tests (docs/operations.md): 200 clients, 100 on
a.test sending to 100 on b.test through the load generator, while an s2s is
killed with SIGKILL and restarted.

* a.test's s2s (the outgoing side): stanzas for b.test wait in the router
  while it is down, and the ones it held unwritten are given again (it
  acknowledges only what it wrote out): 0 lost, 0 duplicated, nobody
  disconnected.
* b.test's s2s (the incoming side): a.test's stream breaks and is opened
  again on demand; the conversation goes on. Stanzas already written into
  the broken TCP connection are lost (no stream management on server
  streams, docs/s2s.md), so only the recovery is asserted and the loss is
  reported.

Figures go to stderr and to the JUnit report."""
import sys

import pytest

from conftest import wait_port
from steady import run_steady_with_kill
from test_s2s_loopback import Deployment

PAIRS = 100
RATE = 2
SECONDS = 12
KILL_AT = 3
DOWN = 1.0
DRAIN = 30


@pytest.fixture
def fed(tmp_path):
    a, b = Deployment(tmp_path, "a.test"), Deployment(tmp_path, "b.test")
    a.peers = [("b.test", b.s2s_port, False)]
    b.peers = [("a.test", a.s2s_port, False)]
    a.level = b.level = "info"
    try:
        a.start_all()
        b.start_all()
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("side", ["sending", "receiving"])
def test_s2s_kill9_under_load(fed, side, tmp_path, record_property):
    a, b = fed
    victim = a if side == "sending" else b

    def restart():
        victim.start("s2s")
        wait_port(victim.s2s_port)

    r = run_steady_with_kill(
        tmp_path, ["--host", "127.0.0.1", "--port", str(a.c2s_port), "--domain", "a.test", "--peer-host",
                   "127.0.0.1", "--peer-port", str(b.c2s_port), "--peer-domain", "b.test"],
        f"s2s-{side}", victim.procs["s2s"].kill9, restart, pairs=PAIRS, rate=RATE, seconds=SECONDS,
        drain=DRAIN, kill_at=KILL_AT, down=DOWN, start_timeout=120, end_slack=60)
    for k in ("disconnected", "lost", "duplicated", "recovery_s", "recovery_after_restart_s"):
        record_property(k, r.get(k))
    sys.stderr.write(f"\nfault s2s ({side} side): clients={r['clients']} disconnected={r['disconnected']} "
                     f"sent={r['sent']} lost={r['lost']} duplicated={r['duplicated']} bounced={r['bounced']} "
                     f"recovery={r.get('recovery_s')}s (after restart {r.get('recovery_after_restart_s')}s)\n")
    info = f"{r}\n--- a s2s:\n{a.log('s2s')[-3000:]}\n--- b s2s:\n{b.log('s2s')[-3000:]}"
    assert r["clients"] == 2 * PAIRS
    assert r["sent"] >= PAIRS * RATE * (SECONDS - 2), info
    assert r["disconnected"] == 0, info
    assert r["still_disconnected"] == 0, info
    assert r["recovery_s"] is not None, info
    assert r["bounced"] == 0, info
    if side == "sending":
        assert r["lost"] == 0, info
        # At least once: a stanza whose bytes reached the kernel just before
        # the kill, but whose ack never reached the router (not yet written,
        # or dropped with the link when the kernel reset it), is sent again
        # (docs/s2s.md, "Restarts"). That is at most the last moments' worth.
        assert r["duplicated"] <= PAIRS * RATE // 10, info
    else:
        # what b's dead s2s had read but not routed, or the kernel held for it
        assert r["lost"] <= PAIRS * RATE * 2, info
        assert r["duplicated"] == 0, info
