"""Multi-host deployment: router, sm, c2s and s2s each in its own network
namespace ("host") made by the test, joined by a bridge, component links over
TLS verified against the router's certificate (SCRAM-SHA-256-PLUS). Clients
connect to the c2s host and chat, and with a user of remote.test, a second
weft deployment on a fifth host, through the s2s host; then the router's host
restarts its router, and the s2s host its s2s, and both chats go on."""
import os
import random
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import BUILD, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


class Net:
    """Five hosts (router, sm, c2s, s2s, and remote.test's all-in-one) and a
    bridge, all in namespaces this test owns."""

    def __init__(self):
        tag = f"{os.getpid() % 10000}{random.randint(10, 99)}"
        self.subnet = f"10.213.{random.randint(1, 250)}"
        self.bridge = f"wb{tag}"
        self.hosts = {}
        sh("ip", "netns", "add", self.bridge)
        sh("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge, "link", "set", "br0", "up")
        for n, name in enumerate(("router", "sm", "c2s", "s2s", "xremote"), start=1):
            ns, v, p = f"w{n}{tag}", f"v{n}{tag}", f"p{n}{tag}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", v, "type", "veth", "peer", "name", p)
            sh("ip", "link", "set", v, "netns", ns)
            sh("ip", "link", "set", p, "netns", self.bridge)
            sh("ip", "-n", self.bridge, "link", "set", p, "master", "br0")
            sh("ip", "-n", self.bridge, "link", "set", p, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.subnet}.{n}/24", "dev", v)
            sh("ip", "-n", ns, "link", "set", v, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            self.hosts[name] = (ns, f"{self.subnet}.{n}")

    def close(self):
        for ns, _ in self.hosts.values():
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.bridge], capture_output=True)


@pytest.fixture
def net():
    n = Net()
    yield n
    n.close()


CLIENT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {here!r})
    from server import RawClient
    class S:
        port = {port}; tls_port = {port}; cert = {cert!r}
    class RawClient(RawClient):
        # the XMPP domain served on this host, and its certificate's name
        def open(self, **kw):
            kw.setdefault("to", {domain!r})
            return super().open(**kw)
        def _wrap(self):
            import ssl
            ctx = ssl.create_default_context(cafile=S.cert)
            self.sock = ctx.wrap_socket(self.sock, server_hostname={domain!r})
            self.tls = True
    def reg(u):
        c = RawClient(S, host={host!r}); c.open(); c.starttls()
        c.send("<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>" + u +
               "</username><password>pw</password></query></iq>")
        assert "type='result'" in c.read_until(r"<iq[^>]*id='r'[\\s\\S]*?(/>|</iq>)"); c.close()
    def login(u):
        c = RawClient(S, host={host!r}); c.open(); c.starttls(); assert c.auth(u, "pw"); c.bind("r")
        c.send("<presence/>"); return c
    if sys.argv[1] == "register":
        reg("ann"); reg("ben")
    elif sys.argv[1] == "remote-register":
        reg("rita")
    elif sys.argv[1] == "remote-echo":
        # rita@remote.test answers the first message from ann@localhost
        r = login("rita")
        print("READY", flush=True)
        m = r.read_until(r"<message[\\s\\S]*?</message>", timeout=60)
        assert "from='ann@localhost/r'" in m.replace('"', "'"), m
        r.send("<message to='ann@localhost/r' type='chat'><body>echo from remote</body></message>")
        time.sleep(1)
        print("ECHO-OK")
    elif sys.argv[1] == "federate":
        a = login("ann")
        a.send("<message to='rita@remote.test/r' type='chat'><body>to remote</body></message>")
        a.read_until("echo from remote</body>", timeout=60)
        print("FED-OK")
    else:
        a, b = login("ann"), login("ben")
        for i in range(20):
            a.send("<message to='ben@localhost/r' type='chat'><body>m%d</body></message>" % i)
        for i in range(20):
            b.read_until("m%d</body>" % i, timeout=30)
        print("CHAT-OK")
""")


def test_components_on_four_hosts_over_tls(net, tmp_path):
    rns, rip = net.hosts["router"]
    sns, sip = net.hosts["sm"]
    cns, cip = net.hosts["c2s"]
    key, crt = tmp_path / "router.key", tmp_path / "router.crt"
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=router",
       "-addext", "subjectAltName=DNS:router")
    (tmp_path / "router.xml").write_text(f"""<router><name>router</name><listen>{rip}:5347</listen>
      <tls><certificate>{crt}</certificate><key>{key}</key></tls>
      <component name="sm" secret="s1" trusted-from="true"><bind>localhost</bind></component>
      <component name="c2s" secret="c1" trusted-from="true"><bind>c2s.localhost</bind></component>
      <component name="s2s" secret="f1" trusted-from="true" default-route="true"><bind>s2s.localhost</bind></component>
      </router>""")
    (tmp_path / "sm.xml").write_text(f"""<sm><router><address>{rip}:5347</address><name>router</name>
      <tls-ca>{crt}</tls-ca></router><name>sm</name><secret>s1</secret><domain>localhost</domain>
      <database>{tmp_path}/weft.db</database></sm>""")
    (tmp_path / "c2s.xml").write_text(f"""<c2s><instance>c2s.localhost</instance>
      <router><address>{rip}:5347</address><name>router</name><tls-ca>{crt}</tls-ca></router>
      <name>c2s</name><secret>c1</secret><domain>localhost</domain>
      <listen><starttls>{cip}:5222</starttls><tls></tls></listen>
      <tls><certificate>{tmp_path}/certs/c2s.crt</certificate><key>{tmp_path}/certs/c2s.key</key></tls>
      <register><enabled>true</enabled></register></c2s>""")
    s2ns, s2ip = net.hosts["s2s"]
    xns, xip = net.hosts["xremote"]
    (tmp_path / "s2s.xml").write_text(f"""<s2s><instance>s2s.localhost</instance>
      <router><address>{rip}:5347</address><name>router</name><tls-ca>{crt}</tls-ca></router>
      <name>s2s</name><secret>f1</secret><domains>localhost</domains>
      <listen><starttls>{s2ip}:5269</starttls></listen>
      <tls><certificate>{tmp_path}/certs/s2s.crt</certificate><key>{tmp_path}/certs/s2s.key</key></tls>
      <dns><nameservers>{xip}:53</nameservers><timeout>2</timeout></dns>
      <peer domain="remote.test" address="{xip}:5269"/></s2s>""")
    # remote.test: a whole weft on one host (router, sm, c2s, s2s on its address)
    x = tmp_path / "x"
    x.mkdir()
    (x / "router.xml").write_text("""<router><name>router</name><listen>127.0.0.1:5347</listen>
      <component name="sm" secret="s" trusted-from="true"><bind>remote.test</bind></component>
      <component name="c2s" secret="c" trusted-from="true"><bind>c2s.remote.test</bind></component>
      <component name="s2s" secret="f" trusted-from="true" default-route="true"><bind>s2s.remote.test</bind></component>
      </router>""")
    (x / "sm.xml").write_text(f"""<sm><name>sm</name><secret>s</secret><domain>remote.test</domain>
      <database>{x}/weft.db</database></sm>""")
    (x / "c2s.xml").write_text(f"""<c2s><instance>c2s.remote.test</instance><name>c2s</name><secret>c</secret>
      <domain>remote.test</domain><listen><starttls>{xip}:5222</starttls><tls></tls></listen>
      <tls><certificate>{x}/certs/r.crt</certificate><key>{x}/certs/r.key</key></tls>
      <register><enabled>true</enabled></register></c2s>""")
    (x / "s2s.xml").write_text(f"""<s2s><instance>s2s.remote.test</instance><name>s2s</name><secret>f</secret>
      <domains>remote.test</domains><listen><starttls>{xip}:5269</starttls></listen>
      <tls><certificate>{x}/certs/r.crt</certificate><key>{x}/certs/r.key</key></tls>
      <dns><nameservers>{s2ip}:53</nameservers><timeout>2</timeout></dns>
      <peer domain="localhost" address="{s2ip}:5269"/></s2s>""")
    # weft makes a self-signed certificate only at its default path.
    for d, n, dom in ((tmp_path, "c2s", "localhost"), (tmp_path, "s2s", "localhost"), (x, "r", "remote.test")):
        (d / "certs").mkdir(exist_ok=True)
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", str(d / "certs" / f"{n}.key"), "-out", str(d / "certs" / f"{n}.crt"), "-days", "2",
           "-subj", f"/CN={dom}", "-addext", f"subjectAltName=DNS:{dom},DNS:*.{dom}")
    procs = {}

    def start(name, ns, cfgdir=tmp_path, tag=None):
        tag = tag or name
        log = open(tmp_path / f"{tag}.log", "ab")
        procs[tag] = subprocess.Popen(["ip", "netns", "exec", ns, os.path.join(BUILD, name, f"weft-{name}"),
                                       "-c", str(cfgdir / f"{name}.xml")], stderr=log, stdout=log)

    def log(name):
        return (tmp_path / f"{name}.log").read_text(errors="replace")

    try:
        start("router", rns)
        time.sleep(0.5)
        start("sm", sns)
        start("c2s", cns)
        assert wait_for(lambda: log("router").count("mechanism=SCRAM-SHA-256-PLUS") >= 2, 20), log("router")
        assert "tls=1" in log("router")
        assert wait_for(lambda: "event=router-ready" in log("c2s"), 20), log("c2s")
        script = tmp_path / "client.py"
        script.write_text(CLIENT.format(here=HERE, port=5222, cert=f"{tmp_path}/certs/c2s.crt", host=cip,
                                        domain="localhost"))
        run = lambda what: subprocess.run(["ip", "netns", "exec", cns, "/usr/bin/python3", str(script), what],
                                          capture_output=True, text=True, timeout=120)
        r = run("register")
        assert r.returncode == 0, r.stderr[-2000:]
        r = run("chat")
        assert "CHAT-OK" in r.stdout, r.stderr[-2000:]
        # federation from the s2s host to remote.test, and back
        start("router", xns, x, "x-router")
        time.sleep(0.5)
        for n in ("sm", "c2s", "s2s"):
            start(n, xns, x, f"x-{n}")
        start("s2s", s2ns)
        assert wait_for(lambda: "event=router-ready" in log("s2s") and "event=router-ready" in log("x-s2s")
                        and "event=router-ready" in log("x-c2s"), 20), log("s2s") + log("x-s2s")
        xscript = tmp_path / "xclient.py"
        xscript.write_text(CLIENT.format(here=HERE, port=5222, cert=f"{x}/certs/r.crt", host=xip,
                                         domain="remote.test"))

        def federate():
            echo = subprocess.Popen(["ip", "netns", "exec", xns, "/usr/bin/python3", str(xscript), "remote-echo"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            line = echo.stdout.readline()
            assert "READY" in line, echo.stderr.read()[-2000:]
            r = run("federate")
            out, err = echo.communicate(timeout=90)
            assert "FED-OK" in r.stdout, r.stderr[-2000:] + log("s2s")[-2000:] + log("x-s2s")[-2000:]
            assert "ECHO-OK" in out, err[-2000:]

        r = subprocess.run(["ip", "netns", "exec", xns, "/usr/bin/python3", str(xscript), "remote-register"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        federate()
        assert "method=dialback" in log("s2s") and "tls=TLSv1.3" in log("s2s"), log("s2s")
        assert "tls=1" in log("router"), log("router")
        # The s2s host restarts its s2s: the conversation goes on.
        procs["s2s"].kill()
        procs["s2s"].wait()
        start("s2s", s2ns)
        assert wait_for(lambda: log("s2s").count("event=router-ready") >= 2, 30), log("s2s")
        federate()
        # The router's host restarts its router; the components come back over TLS.
        procs["router"].kill()
        procs["router"].wait()
        start("router", rns)
        assert wait_for(lambda: log("router").count("mechanism=SCRAM-SHA-256-PLUS") >= 6, 30), log("router")
        time.sleep(1)
        r = run("chat")
        assert "CHAT-OK" in r.stdout, r.stderr[-2000:] + log("c2s")[-2000:]
        federate()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
