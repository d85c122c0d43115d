"""weft-bench-xmpp, the load generator the fault tests and benchmarks trust for
their counts, against a real server: a registration the server refuses is
reported with the server's own error condition (the condition was read from a
stanza already freed, a heap use-after-free under the sanitizers, seen when the
sm timed out under load)."""
import os
import subprocess

import pytest

from conftest import BUILD
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
    assert "bad@user0: jid-malformed" in r.stderr, r.stderr
