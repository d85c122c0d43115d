"""The s2s resolver (s2s/resolve.c) through weft-s2s-resolve, against a real
DNS server: dnsmasq on loopback, authoritative for *.test (anything else
under .test is NXDOMAIN), serving the SRV, A and AAAA records below.

The probe prints one line per target, "host addr:port tls=direct|starttls",
or "error=CONDITION" with exit code 1.
"""
import os
import socket
import struct
import subprocess
import time

import pytest

from conftest import BUILD

DNSMASQ = "/usr/sbin/dnsmasq"
PROBE = os.path.join(BUILD, "s2s", "weft-s2s-resolve")

BIG = 20   # SRV records of big.test: far more than a 512-byte UDP answer holds


def srv(service, domain, target, port, prio, weight):
    return f"--srv-host=_{service}._tcp.{domain},{target},{port},{prio},{weight}"


RECORDS = [
    # priority order, one non-standard port
    srv("xmpp-server", "prio.test", "x20.prio.test", 5269, 20, 0),
    srv("xmpp-server", "prio.test", "x10.prio.test", 15270, 10, 0),
    srv("xmpp-server", "prio.test", "x30.prio.test", 5271, 30, 0),
    "--host-record=x10.prio.test,127.0.0.10",
    "--host-record=x20.prio.test,127.0.0.20",
    "--host-record=x30.prio.test,127.0.0.30",
    # direct TLS (XEP-0368) and STARTTLS records merged
    srv("xmpp-server", "both.test", "first.both.test", 5269, 1, 0),
    srv("xmpps-server", "both.test", "xs.both.test", 5223, 5, 10),
    srv("xmpp-server", "both.test", "xs.both.test", 5269, 5, 10),
    srv("xmpps-server", "both.test", "last.both.test", 5270, 9, 0),
    "--host-record=first.both.test,127.0.0.41",
    "--host-record=xs.both.test,127.0.0.42",
    "--host-record=last.both.test,127.0.0.43",
    # no SRV at all: the domain's own addresses
    "--host-record=plain.test,127.0.0.50",
    "--host-record=v6only.test,2001:db8::5",
    # AAAA and A for one target
    srv("xmpp-server", "v6.test", "dual.v6.test", 5269, 0, 0),
    "--host-record=dual.v6.test,127.0.0.60,::1",
    # "." target: no service, even though the domain has an address
    "--srv-host=_xmpp-server._tcp.none.test",
    "--host-record=none.test,127.0.0.70",
    # weights 90 / 10 at one priority
    srv("xmpp-server", "w.test", "heavy.w.test", 1001, 0, 90),
    srv("xmpp-server", "w.test", "light.w.test", 1002, 0, 10),
    "--host-record=heavy.w.test,127.0.0.81",
    "--host-record=light.w.test,127.0.0.82",
    # a target only the hosts file knows
    srv("xmpp-server", "hf.test", "only-in-hosts.test", 5269, 0, 0),
    # an answer too big for UDP: retried over TCP
    *[srv("xmpp-server", "big.test", f"a-rather-long-target-host-name-number-{i}.big.test", 6000 + i, 0, 0)
      for i in range(BIG)],
    "--host-record=a-rather-long-target-host-name-number-0.big.test,127.0.0.90",
    f"--host-record=a-rather-long-target-host-name-number-{BIG - 1}.big.test,127.0.0.91",
]


def free_udp_port():
    """A port free for both UDP and TCP (dnsmasq listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def dns_answers(port, name="plain.test"):
    """True when a DNS server on port answers an A query for name."""
    q = struct.pack(">HHHHHH", 0x5757, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(q, ("127.0.0.1", port))
            return s.recv(4096)[:2] == b"\x57\x57"
        except OSError:
            return False


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    assert os.path.exists(DNSMASQ), "dnsmasq is needed for the resolver tests"
    assert os.path.exists(PROBE), f"{PROBE} not built"
    log = tmp_path_factory.mktemp("dnsmasq") / "dnsmasq.log"
    for _ in range(3):
        port = free_udp_port()
        proc = subprocess.Popen(
            [DNSMASQ, f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv",
             "--no-hosts", "--conf-file=/dev/null", "--keep-in-foreground", "--pid-file=",
             "--log-facility=-", "--local=/test/", *RECORDS],
            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
        end = time.time() + 10
        while time.time() < end and proc.poll() is None and not dns_answers(port):
            time.sleep(0.05)
        if proc.poll() is None and dns_answers(port):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"dnsmasq did not start; see {log}")
    yield port
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def silent_ns():
    """A nameserver that receives queries and never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{s.getsockname()[1]}"
    s.close()


def parse_line(line):
    if line.startswith("error="):
        return line
    host, addr, tls = line.split(" ")
    return host, addr, tls.removeprefix("tls=")


def probe(domain, *args, ns=None, port=None, timeout=5, hosts=""):
    """Runs the probe; returns (exit code, [(host, addr, tls)] or ["error=..."], seconds, stderr)."""
    cmd = [PROBE, "--timeout", str(timeout), "--hosts", hosts]
    if ns or port:
        cmd += ["--nameservers", ns or f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    p = subprocess.run(cmd + [*args, domain], capture_output=True, text=True, timeout=timeout + 10)
    took = time.monotonic() - t0
    out = [parse_line(l) for l in p.stdout.splitlines() if l]
    return p.returncode, out, took, p.stderr


def test_srv_priority_order_and_port(dns):
    rc, out, _, _ = probe("prio.test", port=dns)
    assert rc == 0
    assert out == [("x10.prio.test", "127.0.0.10:15270", "starttls"),
                   ("x20.prio.test", "127.0.0.20:5269", "starttls"),
                   ("x30.prio.test", "127.0.0.30:5271", "starttls")]


def test_xmpps_and_xmpp_merged(dns):
    want = [("first.both.test", "127.0.0.41:5269", "starttls"),
            ("xs.both.test", "127.0.0.42:5223", "direct"),     # equal priority and weight: direct TLS first
            ("xs.both.test", "127.0.0.42:5269", "starttls"),
            ("last.both.test", "127.0.0.43:5270", "direct")]
    for _ in range(10):
        rc, out, _, _ = probe("both.test", port=dns)
        assert rc == 0
        assert out == want


def test_fallback_to_the_domain_address(dns):
    rc, out, _, _ = probe("plain.test", port=dns)
    assert (rc, out) == (0, [("plain.test", "127.0.0.50:5269", "starttls")])
    rc, out, _, _ = probe("plain.test", "--port", "5999", port=dns)
    assert (rc, out) == (0, [("plain.test", "127.0.0.50:5999", "starttls")])
    rc, out, _, _ = probe("v6only.test", port=dns)
    assert (rc, out) == (0, [("v6only.test", "[2001:db8::5]:5269", "starttls")])


def test_ipv6_addresses_first(dns):
    rc, out, _, _ = probe("v6.test", port=dns)
    assert rc == 0
    assert out == [("dual.v6.test", "[::1]:5269", "starttls"), ("dual.v6.test", "127.0.0.60:5269", "starttls")]


def test_dot_target_is_not_found_without_fallback(dns):
    rc, out, _, _ = probe("none.test", port=dns)
    assert (rc, out) == (1, ["error=not-found"])


def test_unknown_domain_is_not_found_quickly(dns):
    rc, out, took, _ = probe("nowhere.test", port=dns, timeout=5)
    assert (rc, out) == (1, ["error=not-found"])
    assert took < 1.5


def test_silent_nameserver_times_out(silent_ns):
    rc, out, took, _ = probe("prio.test", ns=silent_ns, timeout=1.5)
    assert (rc, out) == (1, ["error=timeout"])
    assert 1.4 <= took < 2.5


def test_refusing_nameserver_fails_fast():
    port = free_udp_port()      # nothing listens: ICMP port unreachable
    rc, out, took, _ = probe("prio.test", port=port, timeout=5)
    assert (rc, out) == (1, ["error=failed"])
    assert took < 1.5


def test_second_nameserver_answers(dns, silent_ns):
    rc, out, _, _ = probe("plain.test", ns=f"{silent_ns} 127.0.0.1:{dns}", timeout=8)
    assert (rc, out) == (0, [("plain.test", "127.0.0.50:5269", "starttls")])


def test_static_entries_bypass_dns(dns, silent_ns):
    rc, out, took, _ = probe("s.test", "--static", "s.test=127.0.0.1:7000", "--static", "s.test=[::1]:7001,tls",
                             ns=silent_ns, timeout=3)
    assert (rc, out) == (0, [("127.0.0.1", "127.0.0.1:7000", "starttls"), ("::1", "[::1]:7001", "direct")])
    assert took < 1.0
    # a domain DNS knows: the static entry still wins
    rc, out, _, _ = probe("prio.test", "--static", "prio.test=127.0.0.2:7002", port=dns)
    assert (rc, out) == (0, [("127.0.0.2", "127.0.0.2:7002", "starttls")])
    # a static host name is resolved to addresses
    rc, out, _, _ = probe("s2.test", "--static", "s2.test=x10.prio.test:7003", port=dns)
    assert (rc, out) == (0, [("x10.prio.test", "127.0.0.10:7003", "starttls")])


def test_weighted_choice(dns):
    first = {"heavy.w.test": 0, "light.w.test": 0}
    for _ in range(200):
        rc, out, _, _ = probe("w.test", port=dns)
        assert rc == 0 and len(out) == 2
        assert {o[0] for o in out} == set(first)
        first[out[0][0]] += 1
    # weight 90 against 10: about 90 % first; bounds loose enough never to flake
    assert first["heavy.w.test"] > 120, first
    assert first["light.w.test"] >= 1, first


def test_truncated_answer_is_asked_again_over_tcp(dns):
    rc, out, _, err = probe("big.test", "--debug", port=dns)
    assert rc == 0
    assert ("a-rather-long-target-host-name-number-0.big.test", "127.0.0.90:6000", "starttls") in out
    assert (f"a-rather-long-target-host-name-number-{BIG - 1}.big.test", f"127.0.0.91:{6000 + BIG - 1}",
            "starttls") in out
    assert "status=truncated" in err and "transport=tcp" in err


def test_hosts_file(dns, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# comment\n127.0.0.99 only-in-hosts.test alias.test\n::99 only-in-hosts.test\n")
    rc, out, _, _ = probe("hf.test", port=dns, hosts=str(hosts))
    assert (rc, out) == (0, [("only-in-hosts.test", "[::99]:5269", "starttls"),
                             ("only-in-hosts.test", "127.0.0.99:5269", "starttls")])
    rc, out, _, _ = probe("hf.test", port=dns)
    assert (rc, out) == (1, ["error=not-found"])


def test_resolv_conf(dns, tmp_path):
    conf = tmp_path / "resolv.conf"
    # weft accepts ip:port in resolv.conf too (the C library would not)
    conf.write_text(f"# test\nsearch example.org\noptions ndots:2\nnameserver 127.0.0.1:{dns}\n")
    rc, out, _, _ = probe("plain.test", "--resolv-conf", str(conf))
    assert (rc, out) == (0, [("plain.test", "127.0.0.50:5269", "starttls")])
    rc, out, _, err = probe("plain.test", "--resolv-conf", str(tmp_path / "missing"))
    assert rc == 2 and "missing" in err


def test_ip_literals(silent_ns):
    rc, out, took, _ = probe("127.0.0.5", ns=silent_ns)
    assert (rc, out) == (0, [("127.0.0.5", "127.0.0.5:5269", "starttls")])
    assert took < 1.0
    rc, out, _, _ = probe("[::1]", ns=silent_ns)
    assert (rc, out) == (0, [("[::1]", "[::1]:5269", "starttls")])
