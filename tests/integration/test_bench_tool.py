"""weft-bench-xmpp, the load generator the fault tests and benchmarks trust for
their counts, against a real server: a registration the server refuses is
reported with the server's own error condition (the condition was read from a
stanza already freed, a heap use-after-free under the sanitizers, seen when the
sm timed out under load)."""
import re
import json
import os
import subprocess

import pytest

from conftest import BUILD
from muc_env import MucServer
from server import Server


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path).start()
    yield s
    s.close()


def test_refused_registration_reports_the_servers_condition(srv):
    r = subprocess.run([os.path.join(BUILD, "tools", "weft-bench-xmpp"), "--host", "127.0.0.1",
                        "--port", str(srv.port), "--domain", "localhost", "--tls", "starttls",
                        "--users", "2", "--user-template", "bad@user%d", "--password", "pw",
                        "--register", "ibr", "--scenario", "register"],
                       capture_output=True, text=True, timeout=60)
    assert "AddressSanitizer" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 1, r.stderr
    assert "ok=0 existing=0 failed=2" in r.stderr, r.stderr
    # the two registrations run at once: either may be the first to fail
    assert re.search(r"first: bad@user[01]: jid-malformed", r.stderr), r.stderr


def test_muc_scenario_counts_every_delivery(tmp_path):
    """The muc scenario (docs/performance.md, "Group chat (MUC)") against
    weft-muc: 2 rooms of 3 occupants, each room created and configured by its
    first occupant, one sender per room for 2 s; every message must reach all
    3 occupants of its room (the sender's echo included), none twice."""
    srv = MucServer(tmp_path).start(muc_extra="<limits><messages-per-second>0</messages-per-second></limits>")
    try:
        r = subprocess.run([os.path.join(BUILD, "tools", "weft-bench-xmpp"), "--host", "127.0.0.1",
                            "--port", str(srv.port), "--domain", "localhost", "--tls", "starttls",
                            "--register", "ibr", "--scenario", "muc", "--rooms", "2", "--occupants", "3",
                            "--senders", "1", "--window", "5", "--seconds", "2", "--label", "weft"],
                           capture_output=True, text=True, timeout=120)
    finally:
        srv.close()
    assert "AddressSanitizer" not in r.stderr, r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, r.stderr[-3000:]
    rep = json.loads(lines[-1])
    assert rep["scenario"] == "muc" and rep["rooms"] == 2 and rep["occupants"] == 3, rep
    assert rep["sent"] > 0 and rep["deliveries"] > 0 and rep["deliveries_per_s"] > 0, rep
    assert rep["deliveries"] == 3 * rep["sent"] == rep["expected"], rep
    assert rep["lost"] == 0 and rep["duplicated"] == 0 and rep["error_replies"] == 0, rep
    assert rep["failures"] == 0, rep
    assert r.returncode == 0, r.stderr[-3000:]
