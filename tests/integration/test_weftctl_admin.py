"""weftctl's daily commands (docs/weftctl.md): `user list/add/del/passwd`
with their exit statuses and --json, `check` (configs, certificates, DNS SRV
records through the system resolver, ports), `status` and `reload` against
a running server (server.py), and a client logging in with an account
`user add` made while the server ran."""
import datetime
import json
import os
import subprocess
import sys

import pytest

from conftest import BUILD, wait_for
from server import Server

sys.path.insert(0, os.path.dirname(__file__))

WEFTCTL = os.path.join(BUILD, "tools", "weftctl")
# weft-router -t under LeakSanitizer reports its config's allocations at exit
# (not a fault of the config): check judges configs by the binaries' -t.
ENV = {**os.environ, "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"}


def weftctl(*args, stdin=None, cwd=None):
    return subprocess.run([WEFTCTL, *map(str, args)], capture_output=True, text=True, input=stdin,
                          timeout=120, cwd=cwd, env=ENV)


def test_user_commands_exit_statuses_and_json(tmp_path):
    db = tmp_path / "w.db"
    assert weftctl("-d", db, "user", "add", "ann@localhost", "pw").returncode == 0
    r = weftctl("-d", db, "user", "add", "Ann@LOCALHOST", "pw")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = weftctl("-d", db, "user", "passwd", "nobody@localhost", stdin="pw\n")
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert weftctl("-d", db, "user", "del", "nobody@localhost").returncode == 1
    assert weftctl("-d", db, "user", "add", "no-node-here", "pw").returncode == 2
    assert weftctl("-d", db, "user", "frobnicate").returncode == 2
    assert weftctl("-d", db, "user", "add", "x@localhost", "pw", "extra").returncode == 2
    assert weftctl("-d", tmp_path / "missing" / "w.db", "user", "list").returncode == 3
    assert weftctl("--storage", "nosuchdriver://x", "user", "list").returncode == 3
    assert weftctl("-d", db, "user", "passwd", "ann@localhost", stdin="new-pw\n").returncode == 0
    assert weftctl("-d", db, "user", "add", "bob@localhost", "pw").returncode == 0

    r = weftctl("--json", "-d", db, "user", "list")
    assert r.returncode == 0
    assert json.loads(r.stdout) == {"command": "user list", "ok": True,
                                    "users": ["ann@localhost", "bob@localhost"]}
    r = weftctl("--json", "-d", db, "user", "del", "bob@localhost")
    assert json.loads(r.stdout) == {"command": "user del", "ok": True, "user": "bob@localhost"}
    r = weftctl("--json", "-d", db, "user", "del", "bob@localhost")
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"] == "does not exist"
    # the historical commands keep their statuses (3: exists / not found)
    assert weftctl("-d", db, "adduser", "ann@localhost", "pw").returncode == 3
    assert weftctl("-d", db, "listusers").stdout == "ann@localhost\n"


def make_cert(d, name, cn, days_from=-1, days_to=30, key_of=None):
    """A self-signed certificate for cn valid from/to days relative to now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days_from))
            .not_valid_after(now + datetime.timedelta(days=days_to))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
            .sign(key, hashes.SHA256()))
    (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return d / f"{name}.crt", d / f"{name}.key"


def results(r):
    out = json.loads(r.stdout)
    return out, [(x["level"], x["check"], x["detail"]) for x in out["results"]]


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    s.start(sm_extra=f"<control>{tmp_path}/sm.ctl</control>")
    yield s
    s.close()


def test_check_status_reload_on_a_running_server(server, tmp_path):
    d = tmp_path
    r = weftctl("--json", "-e", d, "check")
    out, res = results(r)
    assert r.returncode == 0 and out["ok"], r.stdout + r.stderr
    for proc in ("router", "sm", "c2s"):
        assert ("ok", "config", f"{d}/{proc}.xml parses (weft-{proc} -t)") in res
    assert any(lv == "ok" and "names localhost" in det for lv, c, det in res)
    assert ("ok", "port", f"c2s 127.0.0.1:{server.port} is listening") in res
    # no SRV record for localhost: said, not a failure
    assert any(lv == "warn" and c == "dns" and "_xmpp-client._tcp.localhost" in det for lv, c, det in res)

    # status: every process, and the sm's own count of sessions
    assert weftctl("-c", d / "sm.xml", "user", "add", "ann@localhost", "ann-pw").returncode == 0
    client = server.login("ann", "ann-pw")      # an account made while the server ran
    r = weftctl("--json", "-e", d, "status")
    out, res = results(r)
    assert r.returncode == 0, r.stdout
    by = {c: det for lv, c, det in res}
    assert by["sm"].startswith("running pid=") and by["sm"].endswith("sessions=1")
    assert by["router"].startswith("running pid=") and by["c2s"].startswith("running pid=")
    assert by["sm"] == f"running pid={server.sm.p.pid} sessions=1"
    client.close()

    # reload: SIGHUP to each, and each reloads
    before = {p: server.log(p).count("event=reload file=") for p in ("router", "sm", "c2s")}
    r = weftctl("-e", d, "reload")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SIGHUP sent to pid") == 3
    for p in ("router", "sm", "c2s"):
        assert wait_for(lambda: server.log(p).count("event=reload file=") > before[p], 10), p

    # a certificate for another name, an expired one, a key not its own
    crt, key = make_cert(d, "other", "other.example")
    c2s = (d / "c2s.xml").read_text()
    (d / "c2s.xml").write_text(c2s.replace(f"{d}/certs/localhost.crt", str(crt))
                               .replace(f"{d}/certs/localhost.key", str(key)))
    r = weftctl("-e", d, "check")
    assert r.returncode == 3
    assert f"fail certificate: c2s {crt} does not name the served domain localhost" in r.stdout
    crt, key = make_cert(d, "old", "localhost", days_from=-60, days_to=-2)
    _, key2 = make_cert(d, "other2", "localhost")
    (d / "c2s.xml").write_text(c2s.replace(f"{d}/certs/localhost.crt", str(crt))
                               .replace(f"{d}/certs/localhost.key", str(key2)))
    r = weftctl("-e", d, "check")
    assert r.returncode == 3
    assert f"fail certificate: c2s {crt} expired 2 days ago" in r.stdout
    assert f"does not belong to {crt}" in r.stdout
    (d / "c2s.xml").write_text(c2s)

    # c2s stopped: status says so (3), check finds its ports free
    server.c2s.stop()
    r = weftctl("-e", d, "status")
    assert r.returncode == 3 and "fail c2s: not running" in r.stdout
    r = weftctl("-e", d, "check")
    assert f"ok   port: c2s 127.0.0.1:{server.port} is free" in r.stdout


def test_check_finds_srv_records_through_the_system_resolver(tmp_path):
    """In a network namespace whose resolv.conf names a dnsmasq of the
    test's own (fed.py) with SRV records for the served domain."""
    import fed
    why = fed.usable()
    if why:
        pytest.fail(f"SRV records need a namespace with dnsmasq (root, scripts/deps.sh): {why}")
    net = fed.FedNet(tmp_path / "net")
    try:
        net.add_srv("chat.test", "xmpp1.chat.test", 5222, service="_xmpp-client._tcp")
        net.add_srv("chat.test", "xmpp2.chat.test", 5269, service="_xmpp-server._tcp")
        net.start_dns()
        etc = tmp_path / "etc"
        etc.mkdir()
        crt, key = make_cert(etc, "chat", "chat.test")
        (etc / "c2s.xml").write_text(f"<c2s><domain>chat.test</domain><listen><starttls>127.0.0.1:5222</starttls>"
                                     f"<tls></tls></listen><tls><certificate>{crt}</certificate>"
                                     f"<key>{key}</key></tls></c2s>")
        r = net.run("clients", ["env", "ASAN_OPTIONS=detect_leaks=0", WEFTCTL, "-e", etc, "check"])
        assert "ok   dns: _xmpp-client._tcp.chat.test: xmpp1.chat.test:5222" in r.stdout, r.stdout + r.stderr
        assert "ok   dns: _xmpp-server._tcp.chat.test: xmpp2.chat.test:5269" in r.stdout
        assert "ok   certificate: c2s" in r.stdout and "names chat.test" in r.stdout
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        net.close()
