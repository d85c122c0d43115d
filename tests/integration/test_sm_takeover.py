"""Several sm instances sharing one storage, one of them lost for good and then
back (docs/component-protocol.md 8.5, docs/operations.md "Losing an sm
host"): a router, two sm instances (sm1, sm2) partitioning localhost over
one database, a c2s. Clients chat in pairs across the two instances and
write to users who are offline; sm1 is killed with SIGKILL. Past
takeover.seconds sm2 serves sm1's users: every client is still connected,
every message arrives exactly once, rosters and offline messages are there.
Then sm1 starts again, sm2 hands its users back, and the same holds.

Storage is one SQLite file shared by both processes (WAL) on loopback, or a
PostgreSQL server when the sm runs on it; the second test runs the same
scenario in network namespaces (router host, two sm hosts, c2s host, and the
clients' host)."""
import collections
import os
import re
import socket
import subprocess
import sys
import time
from xml.sax.saxutils import escape as xml_escape

import pytest

from conftest import (BUILD, Proc, free_port, router_control, router_unacked, selfsigned_cert,
                      wait_for, wait_port)
from server import RawClient

TAKEOVER = 3
# Waits stretch with WEFT_START_TIMEOUT (set for valgrind runs, where the
# processes are 20-50 times slower).
SLOW = max(1.0, float(os.environ.get("WEFT_START_TIMEOUT", "10")) / 10)


def score(key, instance):
    """The router's rendezvous score (docs/component-protocol.md 8.2)."""
    m, p = 1 << 64, 0x100000001b3
    h = 1469598103934665603     # what the code uses (0x14650fb0739d0383)
    for b in key.encode():
        h = ((h ^ b) * p) % m
    h = ((h ^ 0xff) * p) % m
    for b in instance.encode():
        h = ((h ^ b) * p) % m
    h = (h + 0x9e3779b97f4a7c15) % m
    h = ((h ^ (h >> 30)) * 0xbf58476d1ce4e5b9) % m
    h = ((h ^ (h >> 27)) * 0x94d049bb133111eb) % m
    return h ^ (h >> 31)


def owner(user):
    bare = f"{user}@localhost"
    return max(("sm1", "sm2"), key=lambda i: score(bare, i))


def test_score_matches_the_documented_vectors():
    assert score("juliet@example.org", "sm1") == 0xeebe87bf0ebf5257
    assert score("romeo@example.org", "sm2") == 0xfb94403f82fce53a


def pick_users():
    """Senders and receivers for the four (sender owner, receiver owner)
    pairs, and two offline users of sm1 (one read after the takeover, one
    after the handback) and one of sm2."""
    by = {"sm1": [], "sm2": []}
    for i in range(200):
        by[owner(f"u{i}")].append(f"u{i}")
    one, two = by["sm1"], by["sm2"]
    pairs = [(one[0], one[1]), (one[2], two[0]), (two[1], one[3]), (two[2], two[3])]
    return pairs, {"o1": one[4], "o3": one[5], "o2": two[4]}


class Client(RawClient):
    """Keeps everything it received in `seen`, whatever read it."""
    seen = ""

    def read_until(self, pattern, timeout=10):
        before = len(self.buf)
        out = super().read_until(pattern, timeout * SLOW)
        self.seen += (out + self.buf)[before:]
        return out


def drain(c):
    c.sock.settimeout(0.01)
    try:
        while True:
            data = c.sock.recv(65536)
            if not data:
                raise EOFError("server closed the client connection")
            c.buf += data.decode(errors="replace")
            c.seen += data.decode(errors="replace")
    except (socket.timeout, BlockingIOError):
        pass
    except Exception as e:  # ssl.SSLWantReadError and friends
        if "timed out" in str(e) or "WantRead" in type(e).__name__:
            return
        raise


def bodies(c, prefix):
    return re.findall(r"<body>(%s[^<]*)</body>" % re.escape(prefix), c.seen)


class Loopback:
    """Router, sm1, sm2 and c2s on 127.0.0.1, one shared storage."""

    def __init__(self, tmp_path, storage):
        self.dir = tmp_path
        self.storage = storage
        self.procs = {}
        self.router_port = free_port()
        self.port = free_port()
        self.tls_port = free_port()
        self.host = "127.0.0.1"

    @property
    def cert(self):
        return str(self.dir / "certs" / "localhost.crt")

    def write_configs(self, router_addr, c2s_listen, router_tls=""):
        link_tls = ""
        if router_tls:
            crt, key = selfsigned_cert(self.dir / "router" / "router.crt", self.dir / "router" / "router.key",
                                       "router")
            router_tls = f"<tls><certificate>{crt}</certificate><key>{key}</key></tls>"
            link_tls = f"<tls-ca>{crt}</tls-ca>"
        (self.dir / "router.xml").write_text(f"""<router><name>router</name><listen>{router_addr}</listen>
          <control>{self.dir}/router.ctl</control>
          <log><level>debug</level></log>
          <hold><seconds>30</seconds></hold>
          <takeover><seconds>{TAKEOVER}</seconds><handback-timeout>5</handback-timeout></takeover>
          {router_tls}
          <component name="sm1" secret="s1" trusted-from="true"><bind>localhost</bind></component>
          <component name="sm2" secret="s2" trusted-from="true"><bind>localhost</bind></component>
          <component name="c2s" secret="c1" trusted-from="true"><bind>c2s.localhost</bind></component>
          <partition>localhost</partition></router>""")
        for n in ("sm1", "sm2"):
            (self.dir / f"{n}.xml").write_text(f"""<sm><router><address>{router_addr}</address>
              <name>router</name>{link_tls}</router><name>{n}</name><secret>s{n[-1]}</secret>
              <domain>localhost</domain><storage>{xml_escape(self.storage)}</storage>
              <log><level>debug</level></log></sm>""")
        selfsigned_cert(self.dir / "certs" / "localhost.crt", self.dir / "certs" / "localhost.key", "localhost")
        (self.dir / "c2s.xml").write_text(f"""<c2s><instance>c2s.localhost</instance>
          <router><address>{router_addr}</address><name>router</name>{link_tls}</router>
          <name>c2s</name><secret>c1</secret><domain>localhost</domain>
          <listen><starttls>{c2s_listen}</starttls><tls></tls></listen>
          <tls><certificate>{self.cert}</certificate><key>{self.dir}/certs/localhost.key</key></tls>
          <log><level>debug</level></log>
          <register><enabled>true</enabled><per-ip>100</per-ip></register></c2s>""")

    def setup(self):
        self.write_configs(f"127.0.0.1:{self.router_port}", f"127.0.0.1:{self.port}")

    def start(self, name):
        prog = "sm" if name.startswith("sm") else name
        binary = os.environ.get(f"WEFT_{prog.upper()}") or os.path.join(BUILD, prog, f"weft-{prog}")
        self.procs[name] = Proc([binary, "-c", str(self.dir / f"{name}.xml")], self.dir / f"{name}.log")
        if name == "router":
            wait_port(self.router_port)
        if name == "c2s":
            wait_port(self.port)

    def kill9(self, name):
        self.procs[name].kill9()

    def stats(self):
        return router_control(self.dir / "router.ctl")

    def unacked(self, component):
        return router_unacked(self.dir / "router.ctl", component)

    def log(self, name):
        p = self.dir / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def client(self):
        return Client(self, host=self.host)

    def close(self):
        for p in reversed(list(self.procs.values())):
            try:
                p.stop()
            except Exception:
                pass


class NsClient(Client):
    """A client whose socket lives in the clients' namespace."""

    def __init__(self, d):
        self.server = d
        self.buf = ""
        self.seen = ""
        self.sock = d.net.connect(d.hosts["c2s"].ip, 5222)
        self.tls = False


class Netns(Loopback):
    """The same processes, each on a host of its own (network namespaces on
    one bridge, fed.FedNet): router, sm1, sm2, c2s; clients on a fifth. The
    component links cross the bridge, so they use STARTTLS and SCRAM-PLUS,
    verified against the router's certificate."""

    def __init__(self, tmp_path, storage):
        import fed
        super().__init__(tmp_path, storage)
        self.net = fed.FedNet(tmp_path / "net", hosts=("router", "sm1", "sm2", "c2s"))
        self.hosts = self.net.hosts

    def setup(self):
        self.write_configs(f"{self.hosts['router'].ip}:5347", f"{self.hosts['c2s'].ip}:5222", router_tls=True)

    def start(self, name):
        prog = "sm" if name.startswith("sm") else name
        self.procs[name] = self.net.spawn(name, [os.path.join(BUILD, prog, f"weft-{prog}"), "-c",
                                                 str(self.dir / f"{name}.xml")], self.dir / f"{name}.log")
        if name == "router":
            self.net.wait_port(self.hosts["router"].ip, 5347, host="c2s")
        if name == "c2s":
            self.net.wait_port(self.hosts["c2s"].ip, 5222)

    def client(self):
        return NsClient(self)

    def close(self):
        self.net.close()


def register(d, user):
    c = d.client()
    c.open()
    c.starttls()
    c.send(f"<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}</username>"
           f"<password>pw</password></query></iq>")
    r = c.read_until(r"<iq[^>]*id=['\"]reg['\"][\s\S]*?(/>|</iq>)", timeout=20)
    c.close()
    assert "type='result'" in r or 'type="result"' in r, r


def login(d, user, presence=True):
    c = d.client()
    c.open()
    c.starttls()
    assert c.auth(user, "pw"), c.buf
    c.bind("r")
    c.user = user
    if presence:
        c.send("<presence/>")
    return c


def roster_of(c, n):
    c.send(f"<iq type='get' id='rg{n}'><query xmlns='jabber:iq:roster'/></iq>")
    return c.read_until(rf"<iq[^>]*id=['\"]rg{n}['\"][\s\S]*?(/>|</iq>)", timeout=30)


def alive(clients, tag):
    """Every client answers a ping through its sm: still connected, still served."""
    for n, c in enumerate(clients):
        c.send(f"<iq type='get' id='{tag}{n}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    for n, c in enumerate(clients):
        r = c.read_until(rf"<iq[^>]*id=['\"]{tag}{n}['\"][^>]*>", timeout=30)
        assert "type='result'" in r or 'type="result"' in r, (c.user, r)


class Scenario:
    def __init__(self, d):
        self.d = d
        self.pairs, self.off = pick_users()
        self.sent = collections.defaultdict(list)      # receiver -> bodies
        self.k = 0

    def prepare(self):
        d = self.d
        for s, r in self.pairs:
            register(d, s)
            register(d, r)
        for u in self.off.values():
            register(d, u)
        self.senders = [login(d, s) for s, _ in self.pairs]
        self.receivers = [login(d, r) for _, r in self.pairs]
        # a roster item per user, to find again on the other instance
        for n, c in enumerate(self.senders + self.receivers):
            c.send(f"<iq type='set' id='rs{n}'><query xmlns='jabber:iq:roster'><item jid='friend-of-{c.user}@"
                   f"localhost' name='F {c.user}'/></query></iq>")
            c.read_until(rf"<iq[^>]*id=['\"]rs{n}['\"]", timeout=20)
        time.sleep(0.5)
        for c in self.senders + self.receivers:
            drain(c)
            c.buf = c.seen = ""

    def send_rounds(self, n, offline=True):
        """n rounds: each sender to its receiver, and to each offline user."""
        for _ in range(n):
            k = self.k
            self.k += 1
            for i, s in enumerate(self.senders):
                r = self.pairs[i][1]
                body = f"m-{i}-{k}"
                s.send(f"<message to='{r}@localhost' type='chat'><body>{body}</body></message>")
                self.sent[r].append(body)
                for u in (self.off.values() if offline else ()):
                    body = f"x-{i}-{k}-{u}"
                    s.send(f"<message to='{u}@localhost' type='chat'><body>{body}</body></message>")
                    self.sent[u].append(body)

    def check_live(self, timeout=40 * SLOW):
        """Every message to an online receiver arrived exactly once."""
        def done():
            for c in self.receivers:
                drain(c)
            return all(set(bodies(c, "m-")) >= set(self.sent[c.user]) for c in self.receivers)
        wait_for(done, timeout, 0.1)
        for c in self.receivers:
            got = collections.Counter(bodies(c, "m-"))
            missing = [b for b in self.sent[c.user] if not got[b]]
            dup = {b: n for b, n in got.items() if n > 1}
            assert not missing and not dup, (c.user, owner(c.user), "missing", missing, "duplicated", dup,
                                             self.d.log("router")[-3000:])
        return sum(len(self.sent[c.user]) for c in self.receivers)

    def check_offline(self, key, stage):
        """The offline user logs in: everything sent to it, exactly once."""
        u = self.off[key]
        c = login(self.d, u)
        c.user = u
        want = self.sent[u]
        wait_for(lambda: (drain(c), set(bodies(c, "x-")) >= set(want))[1], 40 * SLOW, 0.1)
        got = collections.Counter(bodies(c, "x-"))
        missing = [b for b in want if not got[b]]
        dup = {b: n for b, n in got.items() if n > 1}
        assert not missing and not dup, (stage, u, owner(u), "missing", missing, "duplicated", dup)
        c.close()
        return len(want)

    def check_rosters(self, tag):
        for n, c in enumerate(self.senders + self.receivers):
            r = roster_of(c, f"{tag}{n}")
            assert f"friend-of-{c.user}@localhost" in r, (c.user, owner(c.user), r)

    def run(self):
        d = self.d
        d.start("router")
        time.sleep(0.3)
        d.start("sm1")
        d.start("sm2")
        d.start("c2s")
        assert wait_for(lambda: "event=router-ready" in d.log("c2s") and
                        d.log("router").count("event=bind component=sm") >= 2, 20 * SLOW), d.log("router")
        self.prepare()
        report = {}
        # Both up: every owner is used.
        self.send_rounds(5)
        report["before"] = self.check_live()
        alive(self.senders + self.receivers, "p0-")
        # sm1 dies and never comes back, at a quiet moment: it has
        # acknowledged everything it processed (what it had not would be
        # processed again by sm2: at least once, docs/operations.md).
        # Messages sent during the grace period wait in the router; then
        # sm2 serves everyone.
        t0 = time.time()
        report["sm1_unacked_at_check"] = d.unacked("sm1")
        assert wait_for(lambda: d.unacked("sm1") == 0, 10 * SLOW), d.stats()
        report["sm1_acked_all_after"] = round(time.time() - t0, 2)
        d.kill9("sm1")
        killed = time.time()
        self.send_rounds(5)
        assert wait_for(lambda: "event=takeover name=localhost instance=sm1" in d.log("router"), (TAKEOVER + 10) * SLOW), \
            d.log("router")[-3000:]
        report["takeover_after"] = round(time.time() - killed, 1)
        self.send_rounds(5)
        report["after_takeover"] = self.check_live()
        alive(self.senders + self.receivers, "p1-")
        self.check_rosters("t")
        report["offline_o1"] = self.check_offline("o1", "takeover")
        report["offline_o2"] = self.check_offline("o2", "takeover")
        assert "event=resync reason=sm-taken-over" in d.log("c2s"), d.log("c2s")[-3000:]
        # sm1 comes back: sm2 hands its users back; messages keep flowing
        # all along (a round every 10 ms until the handback is done, so some
        # arrive while sm1's stanzas are held for it).
        d.start("sm1")
        self.send_rounds(5)
        end = time.time() + 30 * SLOW
        while time.time() < end and "event=handback-done name=localhost instance=sm1 reason=released" \
                not in d.log("router"):
            self.send_rounds(1, offline=False)
            time.sleep(0.01)
        assert "event=handback-done name=localhost instance=sm1 reason=released" in d.log("router"), \
            d.log("router")[-3000:]
        report["handback"] = re.findall(r"event=handback-done name=localhost instance=sm1 [^\n]*",
                                        d.log("router"))[-1]
        self.send_rounds(5)
        report["after_handback"] = self.check_live()
        alive(self.senders + self.receivers, "p2-")
        self.check_rosters("h")
        report["offline_o3"] = self.check_offline("o3", "handback")
        # Each instance serves its own users again.
        sm1_users = {u for p in self.pairs for u in p if owner(u) == "sm1"}
        log1 = d.log("sm1")
        for u in sm1_users:
            assert f"event=session-start jid={u}@localhost/r" in log1.split("event=router-linked")[-1], (u, log1[-3000:])
        assert "event=session-moved" in d.log("sm2"), d.log("sm2")[-3000:]
        assert "event=bounce " not in d.log("router"), d.log("router")
        return report


def pg_server_class():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from pg_server import PgServer
    return PgServer


def start_pg(net=None, host=None):
    """A throw-away PostgreSQL (tests/pg_server.py): on loopback, or on a
    host of its own in the namespaces, listening on that host's address and
    trusting the test subnet. Returns (server, url)."""
    PgServer = pg_server_class()

    class NsPgServer(PgServer):
        def _run(self, *argv, **kw):
            if net and argv[0] == "pg_ctl" and argv[-1] == "start":
                i = argv.index("-o")
                opts = argv[i + 1].replace("listen_addresses=127.0.0.1", f"listen_addresses={net.hosts[host].ip}")
                cmd = [os.path.join(self.bindir, "pg_ctl"), *argv[1:i + 1], opts, *argv[i + 2:]]
                cmd = ["ip", "netns", "exec", net.hosts[host].ns, "runuser", "-u", self.user, "--"] + cmd
                return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, **kw)
            r = super()._run(*argv, **kw)
            if net and argv[0] == "initdb":
                with open(os.path.join(self.dir, "data", "pg_hba.conf"), "a") as f:
                    f.write(f"host all all {net.subnet}.0/24 trust\n")
            return r

    try:
        pg = NsPgServer()
    except FileNotFoundError as e:
        pytest.fail(f"PostgreSQL server missing (scripts/deps.sh installs it): {e}")
    pg.start()
    if net:
        return pg, f"postgresql://weft@{net.hosts[host].ip}:{pg.port}/weft"
    return pg, pg.url()


# sqlite: one file both sm processes open (WAL); pgsql: one PostgreSQL the
# sm instances share (in the namespaces: on a host of its own).
STORAGES = ["sqlite", "pgsql"]


@pytest.fixture(params=STORAGES)
def loopback(tmp_path, request):
    pg = None
    if request.param == "pgsql":
        pg, url = start_pg()
    else:
        url = f"sqlite:{tmp_path}/weft.db"
    d = Loopback(tmp_path, url)
    d.setup()
    yield d
    d.close()
    if pg:
        pg.stop()


def test_sm_lost_for_good_then_back(loopback, record_property):
    report = Scenario(loopback).run()
    for k, v in report.items():
        record_property(k, v)
    print("sm-takeover", report)


@pytest.fixture(params=STORAGES)
def netns_hosts(tmp_path, request):
    import fed
    why = fed.usable()
    assert why is None, why
    d = Netns(tmp_path, f"sqlite:{tmp_path}/weft.db")
    pg = None
    try:
        if request.param == "pgsql":
            d.net.add_host("db")
            pg, d.storage = start_pg(d.net, "db")
        d.setup()
        yield d
    finally:
        d.close()
        if pg:
            pg.stop()


def test_sm_host_lost_in_network_namespaces(netns_hosts, record_property):
    report = Scenario(netns_hosts).run()
    assert "mechanism=SCRAM-SHA-256-PLUS" in netns_hosts.log("router"), netns_hosts.log("router")[-2000:]
    for k, v in report.items():
        record_property(k, v)
    print("sm-takeover-netns", report)


# ---- the router's side, byte level (an independent client: weftproto.py)

def link(port, name, secret, epoch, bind):
    import weftproto
    lk = weftproto.Link(port)
    lk.open()
    res = lk.authenticate(name, secret)
    assert res.tag.endswith("success"), res
    assert lk.session(epoch=epoch).get("acked") is not None
    lk.send(f"<w:bind name='{bind}'/>")
    lk.els = []
    return lk


def wait_el(lk, pred, timeout=10):
    """The next element (after those already read) that matches pred; the
    others read meanwhile are kept in lk.els."""
    end = time.time() + timeout
    while time.time() < end:
        for i, (marker, el) in enumerate(lk.els):
            if pred(marker, el):
                return lk.els.pop(i)
        try:
            el = lk.next_el(timeout=max(0.05, end - time.time()))
        except socket.timeout:
            continue
        if el.tag.endswith("}o"):
            lk.marker = dict(el.attrib)
            continue
        if el.tag.endswith("}a"):
            continue
        lk.els.append((getattr(lk, "marker", None) if not el.tag.startswith("{urn:xmpp:weft:component") else None,
                       el))
        lk.marker = None
    raise TimeoutError([(m, e.tag, e.attrib) for m, e in lk.els])


def test_router_takeover_and_handback_on_the_wire(tmp_path):
    """Partition p.test over b1 and b2. b2 drops: past takeover.seconds b1
    gets state='lost' and what was held for b2, its markers saying p='b2'.
    b2 binds again: it is told it was lost, b1 gets <w:handback/>, what
    arrives for b2's users is held (state=handback) until b1's <w:released/>."""
    port = free_port()
    ctl = tmp_path / "router.ctl"
    (tmp_path / "router.xml").write_text(f"""<router><name>router</name><listen>127.0.0.1:{port}</listen>
      <control>{ctl}</control><log><level>debug</level></log>
      <takeover><seconds>1</seconds><handback-timeout>20</handback-timeout></takeover>
      <component name="a" secret="sa"><bind>a.test</bind></component>
      <component name="b1" secret="s1"><bind>p.test</bind></component>
      <component name="b2" secret="s2"><bind>p.test</bind></component>
      <partition>p.test</partition></router>""")
    router = Proc([os.path.join(BUILD, "router", "weft-router"), "-c", str(tmp_path / "router.xml")],
                  tmp_path / "router.log")
    wait_port(port)

    def stats():
        return router_control(ctl)

    try:
        users = [f"w{i}@p.test" for i in range(40)]
        of_b2 = [u for u in users if score(u, "b2") > score(u, "b1")][:3]
        a = link(port, "a", "sa", "a" * 32, "a.test")
        b1 = link(port, "b1", "s1", "1" * 32, "p.test")
        b2 = link(port, "b2", "s2", "2" * 32, "p.test")
        for lk in (a, b1, b2):
            wait_el(lk, lambda m, e: e.tag.endswith("}bound"))

        def msg(to, body):
            a.send(f"<message from='x@a.test' to='{to}' id='{body}'><body>{body}</body></message>")

        msg(of_b2[0], "direct")
        m, el = wait_el(b2, lambda m, e: e.get("id") == "direct")
        b2.send("<w:a h='1'/>")
        b2.close()
        wait_el(b1, lambda m, e: e.tag.endswith("}name") and e.get("instance") == "b2" and e.get("state") == "down")
        msg(of_b2[1], "held1")
        msg(of_b2[2], "held2")
        # taken over: b1 hears of it, then gets the held messages in order,
        # their markers naming the queue they come from
        t0 = time.time()
        wait_el(b1, lambda m, e: e.tag.endswith("}name") and e.get("instance") == "b2" and e.get("state") == "lost")
        assert time.time() - t0 < 4
        m1, e1 = wait_el(b1, lambda m, e: e.get("id") == "held1")
        m2, e2 = wait_el(b1, lambda m, e: e.get("id") == "held2")
        assert m1.get("p") == "b2" and m2.get("p") == "b2", (m1, m2)
        assert int(m2["n"]) == int(m1["n"]) + 1
        msg(of_b2[1], "after")
        m, el = wait_el(b1, lambda m, e: e.get("id") == "after")
        assert "p" not in m, m
        b1.send("<w:a h='3'/>")
        assert "instance=b2" not in stats(), stats()
        # b2 returns: fenced until b1 releases
        b2 = link(port, "b2", "s2", "3" * 32, "p.test")
        wait_el(b2, lambda m, e: e.tag.endswith("}bound"))
        wait_el(b2, lambda m, e: e.tag.endswith("}name") and e.get("instance") == "b2" and e.get("state") == "lost")
        hb = wait_el(b1, lambda m, e: e.tag.endswith("}handback"))[1]
        assert hb.get("name") == "p.test" and hb.get("instance") == "b2", hb.attrib
        msg(of_b2[0], "fenced")
        time.sleep(0.5)
        assert "instance=b2 state=handback partitioned=1 held=1" in stats(), stats()
        with pytest.raises(TimeoutError):
            wait_el(b2, lambda m, e: e.get("id") == "fenced", timeout=0.5)
        b1.send("<w:released name='p.test' instance='b2'/>")
        m, el = wait_el(b2, lambda m, e: e.get("id") == "fenced")
        assert "p" not in m
        assert "instance=b2 state=up" in stats(), stats()
        assert "event=handback-done name=p.test instance=b2 reason=released held=1" in \
            (tmp_path / "router.log").read_text()
        for lk in (a, b1, b2):
            lk.close()
    finally:
        router.stop()


def test_c2s_started_while_an_sm_is_lost(loopback):
    """A c2s that starts while sm1 is taken over never saw sm1 up; when sm1
    returns, c2s must still re-announce sessions so that sm1 gets those of
    its users (sm2 forgets them at the handback)."""
    d = loopback
    sc = Scenario(d)
    d.start("router")
    time.sleep(0.3)
    d.start("sm1")
    d.start("sm2")
    d.start("c2s")
    assert wait_for(lambda: "event=router-ready" in d.log("c2s") and
                    d.log("router").count("event=bind component=sm") >= 2, 20), d.log("router")
    d.kill9("sm1")
    assert wait_for(lambda: "event=takeover name=localhost instance=sm1" in d.log("router"), (TAKEOVER + 10) * SLOW)
    d.procs["c2s"].stop()
    d.start("c2s")
    assert wait_for(lambda: d.log("c2s").count("event=router-ready") >= 2, 20), d.log("c2s")
    sc.prepare()
    sc.send_rounds(3, offline=False)
    sc.check_live()
    d.start("sm1")
    assert wait_for(lambda: "event=handback-done name=localhost instance=sm1" in d.log("router"), 30)
    sc.send_rounds(3, offline=False)
    n = sc.check_live()
    alive(sc.senders + sc.receivers, "c0-")
    assert n == 4 * 6
