"""Multi-host deployment: router, sm and c2s each in its own network
namespace ("host") made by the test, joined by a bridge, component links over
TLS verified against the router's certificate (SCRAM-SHA-256-PLUS). Clients
connect to the c2s host and chat; then the router's host restarts its router
and the chat goes on."""
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
    """Three hosts and a bridge, all in namespaces this test owns."""

    def __init__(self):
        tag = f"{os.getpid() % 10000}{random.randint(10, 99)}"
        self.subnet = f"10.213.{random.randint(1, 250)}"
        self.bridge = f"wb{tag}"
        self.hosts = {}
        sh("ip", "netns", "add", self.bridge)
        sh("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge, "link", "set", "br0", "up")
        for n, name in enumerate(("router", "sm", "c2s"), start=1):
            ns, v, p = f"w{name[0]}{tag}", f"v{name[0]}{tag}", f"p{name[0]}{tag}"
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
    import sys
    sys.path.insert(0, {here!r})
    from server import RawClient
    class S:
        port = {port}; tls_port = {port}; cert = {cert!r}
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
    else:
        a, b = login("ann"), login("ben")
        for i in range(20):
            a.send("<message to='ben@localhost/r' type='chat'><body>m%d</body></message>" % i)
        for i in range(20):
            b.read_until("m%d</body>" % i, timeout=30)
        print("CHAT-OK")
""")


def test_components_on_three_hosts_over_tls(net, tmp_path):
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
    procs = {}

    def start(name, ns):
        log = open(tmp_path / f"{name}.log", "ab")
        procs[name] = subprocess.Popen(["ip", "netns", "exec", ns, os.path.join(BUILD, name, f"weft-{name}"),
                                        "-c", str(tmp_path / f"{name}.xml")], stderr=log, stdout=log)

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
        script.write_text(CLIENT.format(here=HERE, port=5222, cert=f"{tmp_path}/certs/c2s.crt", host=cip))
        run = lambda what: subprocess.run(["ip", "netns", "exec", cns, "/usr/bin/python3", str(script), what],
                                          capture_output=True, text=True, timeout=120)
        r = run("register")
        assert r.returncode == 0, r.stderr[-2000:]
        r = run("chat")
        assert "CHAT-OK" in r.stdout, r.stderr[-2000:]
        # The router's host restarts its router; the components come back over TLS.
        procs["router"].kill()
        procs["router"].wait()
        start("router", rns)
        assert wait_for(lambda: log("router").count("mechanism=SCRAM-SHA-256-PLUS") >= 4, 30), log("router")
        time.sleep(1)
        r = run("chat")
        assert "CHAT-OK" in r.stdout, r.stderr[-2000:] + log("c2s")[-2000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
