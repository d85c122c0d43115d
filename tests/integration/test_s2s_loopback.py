"""Federation between two weft deployments on loopback (a.test and b.test,
each with its own router, sm, c2s and s2s), joined by static <peer> routes
instead of DNS so the test needs no root. Dialback authenticates (self-signed
certificates). The DNS, CA-signed certificate and Prosody scenarios live in
test_s2s.py / test_s2s_prosody.py, which build network namespaces."""
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import Proc, free_port, selfsigned_cert, wait_for, wait_port
from server import RawClient, binary

ROUTER = """<router>
  <name>router</name>
  <listen>127.0.0.1:{router_port}</listen>
  <log><level>debug</level></log>
  <component name="sm" secret="sm-secret" trusted-from="true"><bind>{domain}</bind></component>
  <component name="c2s" secret="c2s-secret" trusted-from="true"><bind>c2s.{domain}</bind></component>
  <component name="s2s" secret="s2s-secret" trusted-from="true" default-route="true"><bind>s2s.{domain}</bind></component>
</router>
"""

SM = """<sm>
  <router><address>127.0.0.1:{router_port}</address></router>
  <name>sm</name><secret>sm-secret</secret>
  <domain>{domain}</domain>
  <database>{dir}/weft.db</database>
  <log><level>debug</level></log>
</sm>
"""

C2S = """<c2s>
  <instance>c2s.{domain}</instance>
  <router><address>127.0.0.1:{router_port}</address></router>
  <name>c2s</name><secret>c2s-secret</secret>
  <domain>{domain}</domain>
  <listen><starttls>127.0.0.1:{c2s_port}</starttls><tls></tls></listen>
  <tls><certificate>{dir}/certs/{domain}.crt</certificate><key>{dir}/certs/{domain}.key</key></tls>
  <register><enabled>true</enabled><per-ip>100000</per-ip></register>
  <limits><connections-per-ip>100000</connections-per-ip><auth-failures>100000</auth-failures></limits>
  <log><level>{level}</level></log>
</c2s>
"""

S2S = """<s2s>
  <instance>s2s.{domain}</instance>
  <router><address>127.0.0.1:{router_port}</address></router>
  <name>s2s</name><secret>s2s-secret</secret>
  <domains>{domain}</domains>
  <listen><starttls>127.0.0.1:{s2s_port}</starttls><tls>{s2s_tls}</tls></listen>
  <tls><certificate>{dir}/certs/{domain}.crt</certificate><key>{dir}/certs/{domain}.key</key><ca>{ca}</ca></tls>
  <dns><nameservers>127.0.0.1:{dead_port}</nameservers><timeout>2</timeout></dns>
  <timeouts><queue>{queue}</queue></timeouts>
  {peers}
  <log><level>debug</level></log>
</s2s>
"""


class Deployment:
    def __init__(self, root, domain):
        self.domain = domain
        self.dir = root / domain
        self.dir.mkdir()
        self.router_port, self.c2s_port, self.s2s_port = free_port(), free_port(), free_port()
        self.procs = {}
        self.s2s_tls_port = free_port()
        self.peers = []          # (domain, port, direct_tls)
        self.queue = 60
        self.ca = ""             # CA bundle: certificates are CA-signed and verified
        self.level = "debug"

    def fmt(self, tpl):
        peers = "".join(f"<peer domain='{d}' address='127.0.0.1:{p}' direct-tls='{str(t).lower()}'/>"
                        for d, p, t in self.peers)
        return tpl.format(domain=self.domain, dir=self.dir, router_port=self.router_port, c2s_port=self.c2s_port,
                          s2s_port=self.s2s_port, s2s_tls=f"127.0.0.1:{self.s2s_tls_port}", ca=self.ca,
                          dead_port=free_port(), peers=peers, queue=self.queue, level=self.level)

    def start(self, name):
        tpl = {"router": ROUTER, "sm": SM, "c2s": C2S, "s2s": S2S}[name]
        cfg = self.dir / f"{name}.xml"
        if name in ("c2s", "s2s"):
            certs = self.dir / "certs"
            selfsigned_cert(certs / f"{self.domain}.crt", certs / f"{self.domain}.key", self.domain)
        cfg.write_text(self.fmt(tpl))
        env = {"router": "WEFT_ROUTER", "sm": "WEFT_SM", "c2s": "WEFT_C2S", "s2s": "WEFT_S2S"}[name]
        self.procs[name] = Proc([binary(env, name, f"weft-{name}"), "-c", str(cfg)], self.dir / f"{name}.log")
        return self.procs[name]

    def start_all(self):
        self.start("router")
        wait_port(self.router_port)
        self.start("sm")
        self.start("c2s")
        wait_port(self.c2s_port)
        self.start("s2s")
        wait_port(self.s2s_port)
        assert wait_for(lambda: "event=router-ready" in self.log("s2s"), 15), self.log("s2s")
        assert wait_for(lambda: "event=router-ready" in self.log("c2s"), 15), self.log("c2s")

    def log(self, name):
        p = self.dir / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def close(self):
        for p in reversed(list(self.procs.values())):
            try:
                p.stop()
            except Exception:
                pass

    @property
    def cert(self):
        return self.ca or str(self.dir / "certs" / f"{self.domain}.crt")

    def ca_sign(self, ca_dir):
        """Certificate for the domain signed by the test CA in ca_dir, usable
        as TLS server and client certificate (SASL EXTERNAL)."""
        certs = self.dir / "certs"
        certs.mkdir(exist_ok=True)
        key, csr, crt = certs / f"{self.domain}.key", certs / f"{self.domain}.csr", certs / f"{self.domain}.crt"
        ext = certs / "ext.cnf"
        ext.write_text(f"subjectAltName=DNS:{self.domain}\nkeyUsage=digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n")
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={self.domain}")
        run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "ca.crt"), "-CAkey",
            str(ca_dir / "ca.key"), "-CAcreateserial", "-days", "2", "-out", str(crt), "-extfile", str(ext))
        self.ca = str(ca_dir / "ca.crt")


    def client(self):
        return Client(self)

    def register(self, user, password="pw"):
        c = self.client()
        c.open(to=self.domain)
        c.starttls()
        c.send(f"<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>{user}</username>"
               f"<password>{password}</password></query></iq>")
        r = c.read_until(r"<iq[^>]*id=['\"]reg1['\"][\s\S]*?(/>|</iq>)")
        c.close()
        assert "result" in r, r

    def login(self, user, password="pw", resource="r", available=True):
        """A bound session; available: initial presence sent and echoed."""
        c = self.client()
        c.open(to=self.domain)
        c.starttls()
        assert c.auth(user, password, "SCRAM-SHA-256"), c.buf
        c.bind(resource)
        if available:
            presence(c)
        return c


def make_ca(root):
    d = root / "ca"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days", "2", "-subj", "/CN=weft test CA",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
                   check=True, capture_output=True)
    return d


class Client(RawClient):
    def __init__(self, dep):
        self.dep = dep
        super().__init__(dep, port=dep.c2s_port)

    def _wrap(self):
        ctx = ssl.create_default_context(cafile=self.dep.cert)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.dep.domain)
        self.tls = True

    def open(self, **kw):
        kw.setdefault("to", self.dep.domain)
        return super().open(**kw)

    def starttls(self):
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(r"<proceed[^>]*/>")
        self.buf = ""
        self._wrap()
        return self.open()


@pytest.fixture
def pair(tmp_path):
    a, b = Deployment(tmp_path, "a.test"), Deployment(tmp_path, "b.test")
    a.peers = [("b.test", b.s2s_port, False)]
    b.peers = [("a.test", a.s2s_port, False)]
    try:
        a.start_all()
        b.start_all()
        a.register("alice")
        b.register("bob")
        yield a, b
    finally:
        a.close()
        b.close()


def presence(c):
    c.send("<presence/>")
    c.read_until(r"<presence[^>]*from=['\"]" + re.escape(c.jid) + r"['\"][^>]*/?>")


def test_message_both_ways_over_dialback(pair):
    a, b = pair
    alice, bob = a.login("alice"), b.login("bob")
    alice.send("<message to='bob@b.test' type='chat' id='m1'><body>hello bob</body></message>")
    got = bob.read_until(r"<message[\s\S]*?</message>", timeout=15)
    assert "hello bob" in got and "from='alice@a.test/r'" in got.replace('"', "'"), got
    bob.send("<message to='alice@a.test/r' type='chat' id='m2'><body>hi alice</body></message>")
    got = alice.read_until(r"<message[\s\S]*?</message>", timeout=15)
    assert "hi alice" in got and "bob@b.test/r" in got, got
    for d, other in ((a, "b.test"), (b, "a.test")):
        log = d.log("s2s")
        assert re.search(rf"event=s2s-authenticated direction=out local={d.domain} remote={other} method=dialback",
                         log), log
        assert re.search(rf"event=s2s-authenticated direction=in local={d.domain} remote={other} method=dialback",
                         log), log


def test_subscription_presence_and_ping(pair):
    a, b = pair
    alice, bob = a.login("alice"), b.login("bob")
    alice.send("<presence to='bob@b.test' type='subscribe'/>")
    bob.read_until(r"<presence[^>]*type=['\"]subscribe['\"][^>]*>", timeout=15)
    bob.send("<presence to='alice@a.test' type='subscribed'/>")
    alice.read_until(r"<presence[^>]*type=['\"]subscribed['\"]", timeout=15)
    # alice now sees bob's presence (the sm probes after 'subscribed')
    alice.read_until(r"<presence[^>]*from=['\"]bob@b\.test/r['\"]", timeout=15)
    # iq ping to the remote server and to the remote user's full JID
    alice.send("<iq type='get' id='p1' to='b.test'><ping xmlns='urn:xmpp:ping'/></iq>")
    r = alice.read_until(r"<iq[^>]*id=['\"]p1['\"][^>]*>", timeout=15)
    assert "type='result'" in r.replace('"', "'"), r
    bob.send("<iq type='get' id='p2' to='a.test'><ping xmlns='urn:xmpp:ping'/></iq>")
    r = bob.read_until(r"<iq[^>]*id=['\"]p2['\"][^>]*>", timeout=15)
    assert "type='result'" in r.replace('"', "'"), r


def test_unreachable_domain_bounces_in_bounded_time(tmp_path):
    a = Deployment(tmp_path, "a.test")
    a.peers = [("down.test", free_port(), False)]   # nothing listens there
    a.queue = 3
    try:
        a.start_all()
        a.register("alice")
        alice = a.login("alice")
        t0 = time.time()
        alice.send("<message to='x@down.test' id='lost1'><body>anyone?</body></message>")
        r = alice.read_until(r"<message[^>]*type=['\"]error['\"][\s\S]*?</message>", timeout=15)
        # never connected, and the only address refuses: bounced at once,
        # not after timeouts.queue (docs/s2s.md, "Failures")
        assert "remote-server-not-found" in r, r
        assert time.time() - t0 < 2, time.time() - t0
        # a domain that DNS cannot resolve (the nameserver does not answer): bounded too
        alice.send("<message to='x@nowhere.test' id='lost2'><body>?</body></message>")
        r = alice.read_until(r"<message[^>]*id=['\"]lost2['\"][\s\S]*?</message>", timeout=15)
        assert "type='error'" in r.replace('"', "'") and "remote-server" in r, r
    finally:
        a.close()


def test_restart_either_s2s_and_conversation_continues(pair):
    a, b = pair
    alice, bob = a.login("alice"), b.login("bob")
    alice.send("<message to='bob@b.test' id='m0'><body>before</body></message>")
    bob.read_until(r"before", timeout=15)
    for dep in (b, a):
        dep.procs["s2s"].kill9()
        dep.start("s2s")
        wait_port(dep.s2s_port)
        assert wait_for(lambda: dep.log("s2s").count("event=router-ready") >= 2, 15), dep.log("s2s")
        for i in range(3):
            alice.send(f"<message to='bob@b.test' id='x{dep.domain}{i}'><body>a-{dep.domain}-{i}</body></message>")
            bob.send(f"<message to='alice@a.test' id='y{dep.domain}{i}'><body>b-{dep.domain}-{i}</body></message>")
        for i in range(3):
            bob.read_until(rf"a-{re.escape(dep.domain)}-{i}", timeout=20)
            alice.read_until(rf"b-{re.escape(dep.domain)}-{i}", timeout=20)


def test_spoofed_from_and_unauthenticated_stanzas_are_refused(pair):
    a, b = pair
    bob = b.login("bob")
    # a raw peer that never authenticates sends a stanza straight to b's s2s
    s = socket.create_connection(("127.0.0.1", b.s2s_port), timeout=10)
    s.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
              b"streams' xmlns:db='jabber:server:dialback' from='evil.test' to='b.test' version='1.0'>")
    buf = b""
    while b"</stream:features>" not in buf:
        buf += s.recv(4096)
    assert b"<required/>" in buf
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    buf = b""
    while b"<proceed" not in buf:
        buf += s.recv(4096)
    t = ctx.wrap_socket(s, server_hostname="b.test")
    t.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
              b"streams' xmlns:db='jabber:server:dialback' from='evil.test' to='b.test' version='1.0'>")
    buf = b""
    while b"</stream:features>" not in buf:
        buf += t.recv(4096)
    # a made-up dialback key for a.test (whose real server answers 'invalid')
    t.sendall(b"<db:result from='a.test' to='b.test'>" + b"0" * 64 + b"</db:result>")
    buf = b""
    while b"<db:result" not in buf:
        buf += t.recv(4096)
    assert b"type='invalid'" in buf, buf
    t.sendall(b"<message from='alice@a.test/x' to='bob@b.test/r'><body>forged</body></message>")
    buf = b""
    try:
        while b"</stream:stream>" not in buf:
            data = t.recv(4096)
            if not data:
                break
            buf += data
    except (ssl.SSLError, OSError):
        pass
    assert b"not-authorized" in buf or b"invalid-from" in buf, buf
    t.close()
    assert "event=dialback-invalid" in b.log("s2s")
    with pytest.raises(TimeoutError):
        bob.read_until(r"forged", timeout=2)


def test_ca_signed_certificates_authenticate_with_sasl_external_over_direct_tls(tmp_path):
    a, b = Deployment(tmp_path, "a.test"), Deployment(tmp_path, "b.test")
    ca = make_ca(tmp_path)
    a.ca_sign(ca)
    b.ca_sign(ca)
    a.peers = [("b.test", b.s2s_tls_port, True)]   # XEP-0368: TLS from the first byte
    b.peers = [("a.test", a.s2s_port, False)]
    try:
        a.start_all()
        b.start_all()
        a.register("alice")
        b.register("bob")
        alice, bob = a.login("alice"), b.login("bob")
        alice.send("<message to='bob@b.test' id='e1'><body>over external</body></message>")
        bob.read_until(r"over external", timeout=15)
        bob.send("<message to='alice@a.test' id='e2'><body>back over external</body></message>")
        alice.read_until(r"back over external", timeout=15)
        assert re.search(r"direction=out local=a\.test remote=b\.test method=external .*tls=direct|"
                         r"direction=out local=a\.test remote=b\.test method=external", a.log("s2s")), a.log("s2s")
        assert "tls=direct" in a.log("s2s")
        assert re.search(r"direction=in local=b\.test remote=a\.test method=external", b.log("s2s")), b.log("s2s")
        assert re.search(r"direction=out local=b\.test remote=a\.test method=external .*cert=valid",
                         b.log("s2s")), b.log("s2s")
        assert "method=dialback" not in a.log("s2s") + b.log("s2s")
    finally:
        a.close()
        b.close()


def test_stanzas_queued_in_a_killed_s2s_go_out_after_restart(pair):
    """kill -9 an s2s holding stanzas for a domain it cannot reach yet: the
    router gives them again to the restarted s2s (it only acknowledged what
    it had written out), and each arrives exactly once. (The peer is back
    first: a restarted s2s does not know it was ever connected to b.test, so
    a refusal would bounce them at once, docs/s2s.md "Failures".)"""
    a, b = pair
    alice, bob = a.login("alice"), b.login("bob")
    alice.send("<message to='bob@b.test/r' id='w'><body>warm</body></message>")
    bob.read_until(r"warm<", timeout=30)
    b.procs["s2s"].kill9()
    for i in range(5):
        alice.send(f"<message to='bob@b.test/r' id='q{i}'><body>queued-{i}</body></message>")
    assert wait_for(lambda: "event=s2s-failed local=a.test remote=b.test" in a.log("s2s"), 10), a.log("s2s")
    a.procs["s2s"].kill9()
    b.start("s2s")
    wait_port(b.s2s_port)
    a.start("s2s")
    got = ""
    for i in range(5):
        got += bob.read_until(rf"queued-{i}<", timeout=30)
    time.sleep(1)
    got += bob.buf
    for i in range(5):
        assert got.count(f"queued-{i}<") == 1, got


def test_stanzas_sent_while_s2s_is_down_go_out_when_it_is_back(pair):
    """The router holds what is sent to other domains while the s2s is down;
    the restarted s2s opens a new stream and delivers all of it, once. (Also
    guards against a resolver bug that closed fd 0, a live socket by then,
    after every static lookup: the restarted s2s's streams died.)"""
    a, b = pair
    alice, bob = a.login("alice"), b.login("bob")
    alice.send("<message to='bob@b.test/r'><body>first</body></message>")
    bob.read_until("first", timeout=15)
    a.procs["s2s"].kill9()
    for i in range(50):
        alice.send(f"<message to='bob@b.test/r'><body>held-{i}</body></message>")
    a.start("s2s")
    got = bob.read_until(r"held-49<", timeout=30)
    time.sleep(1)
    got += bob.buf
    for i in range(50):
        assert got.count(f"held-{i}<") == 1, got


def s2s_peer_cert(dep):
    """The certificate dep's s2s presents to a new incoming stream (DER)."""
    s = socket.create_connection(("127.0.0.1", dep.s2s_port), timeout=10)
    hdr = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
           f"streams' from='x.test' to='{dep.domain}' version='1.0'>").encode()
    s.sendall(hdr)
    buf = b""
    while b"</stream:features>" not in buf:
        buf += s.recv(4096)
    s.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    while b"<proceed" not in buf:
        buf += s.recv(4096)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(s, server_hostname=dep.domain)
    der = t.getpeercert(binary_form=True)
    t.close()
    return der


def test_sighup_reloads_the_certificate_without_dropping_streams(pair):
    a, b = pair
    alice, bob = a.login("alice"), b.login("bob")
    alice.send("<message to='bob@b.test/r'><body>before hup</body></message>")
    bob.read_until("before hup", timeout=15)
    old = s2s_peer_cert(b)
    crt, key = b.dir / "certs" / "b.test.crt", b.dir / "certs" / "b.test.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=b.test",
                    "-addext", "subjectAltName=DNS:b.test"], check=True, capture_output=True)
    b.procs["s2s"].p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=tls-reloaded" in b.log("s2s"), 10), b.log("s2s")
    assert s2s_peer_cert(b) != old
    # the stream a.test opened before the reload still carries stanzas
    alice.send("<message to='bob@b.test/r'><body>after hup</body></message>")
    bob.read_until("after hup", timeout=15)
    assert b.log("s2s").count("direction=in local=b.test remote=a.test method=dialback") == 1, b.log("s2s")
    # a certificate that does not load keeps the running one
    crt.write_text("not a certificate\n")
    b.procs["s2s"].p.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "event=tls-reload result=failed" in b.log("s2s"), 10), b.log("s2s")
    assert s2s_peer_cert(b) != old
