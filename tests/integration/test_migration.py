"""Moving users into weft with `weftctl import` / `weftctl export` (XEP-0227).

The Prosody test is the real migration an operator does: Debian's Prosody
0.12 on loopback gets accounts from prosodyctl, rosters, a vCard and private
XML from slixmpp clients; Prosody's own prosody-migrator writes the XEP-0227
files; weftctl imports them; the same users log in to weft with their old
passwords (slixmpp) and get their rosters, vCards and private XML back.
The others: export→import round trip through weft (offline messages,
blocklist, pending subscriptions) and refusals that name the user and element
and leave the storage untouched."""
import asyncio
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import pytest

slixmpp = pytest.importorskip("slixmpp")

from conftest import BUILD, free_port, selfsigned_cert, wait_for, wait_port  # noqa: E402
from server import RawClient, Server, binary  # noqa: E402

WEFTCTL = os.path.join(BUILD, "tools", "weftctl")
PROSODY = os.environ.get("WEFT_PROSODY", "/usr/bin/prosody")
PROSODYCTL = os.environ.get("WEFT_PROSODYCTL", "/usr/bin/prosodyctl")
MIGRATOR = os.environ.get("WEFT_PROSODY_MIGRATOR", "/usr/bin/prosody-migrator")

# Non-ASCII on purpose: both servers SASLprep the password before hashing.
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "c\u00e4rol p\u00e4ss"}

PROSODY_CFG = """-- written by tests/integration/test_migration.py
run_as_root = true
daemonize = false
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
log = {{ info = "{dir}/prosody.log" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{}}
s2s_ports = {{}}
s2s_direct_tls_ports = {{}}
http_ports = {{}}
https_ports = {{}}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "vcard"; "private"; }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
certificates = "{dir}/no-cert-dir"
ssl = {{ certificate = "{dir}/localhost.crt"; key = "{dir}/localhost.key"; }}
VirtualHost "localhost"
"""

# prosody-migrator's own config: internal (Prosody's files) to xep0227.
MIGRATOR_CFG = """input {{ type = "internal"; path = "{data}";
        hosts = {{ ["localhost"] = {{ {stores} }} }} }}
output {{ type = "xep0227"; path = "{out}"; }}
"""
STORES = ("accounts", "roster", "vcard", "private")

BOOKMARKS = "<storage xmlns='storage:bookmarks'><conference jid='tea@muc.localhost' name='Tea party'/></storage>"


def weftctl(*args, stdin=None):
    return subprocess.run([WEFTCTL, *map(str, args)], capture_output=True, text=True, input=stdin,
                          timeout=120)


def client(port, jid, password, mech):
    x = slixmpp.ClientXMPP(jid, password)
    x.ssl_context.check_hostname = False
    x.ssl_context.verify_mode = __import__("ssl").CERT_NONE
    fm = x["feature_mechanisms"]
    creds = fm.sasl_callback
    fm.sasl_callback = lambda req, opt: {**creds(req, opt), "channel_binding": None}
    if mech:
        fm.use_mech = mech
    x.register_plugin("xep_0054")
    x.register_plugin("xep_0049")
    return x


async def connect(port, jid, password, mech=None):
    x = client(port, jid, password, mech)
    started = asyncio.get_running_loop().create_future()
    x.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
    x.add_event_handler("failed_auth",
                        lambda _: started.done() or started.set_exception(AssertionError(f"{jid}: auth failed")))
    x.connect(("127.0.0.1", port))
    await asyncio.wait_for(started, 20)
    await x.get_roster()
    return x


async def private_get(x, ns_el):
    iq = x.Iq()
    iq["type"] = "get"
    q = ET.SubElement(iq.xml, "{jabber:iq:private}query")
    q.append(ET.fromstring(ns_el))
    r = await iq.send(timeout=10)
    return ET.tostring(r.xml, encoding="unicode")


async def private_set(x, xml):
    iq = x.Iq()
    iq["type"] = "set"
    q = ET.SubElement(iq.xml, "{jabber:iq:private}query")
    q.append(ET.fromstring(xml))
    await iq.send(timeout=10)


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 120))


class Prosody:
    """Debian's Prosody for localhost on a loopback port, files in dir."""

    def __init__(self, d):
        self.dir = d
        d.mkdir(exist_ok=True)
        (d / "data").mkdir(exist_ok=True)
        (d / "no-cert-dir").mkdir(exist_ok=True)
        selfsigned_cert(d / "localhost.crt", d / "localhost.key", "localhost")
        self.port = free_port()
        self.cfg = d / "prosody.cfg.lua"
        self.cfg.write_text(PROSODY_CFG.format(dir=d, port=self.port))
        self.proc = None

    def register(self, user, password):
        r = subprocess.run([PROSODYCTL, "--config", self.cfg, "register", user, "localhost", password],
                           capture_output=True, text=True, timeout=60, cwd=self.dir)
        assert r.returncode == 0, r.stdout + r.stderr

    def start(self):
        self.out = open(self.dir / "prosody.out", "w")
        self.proc = subprocess.Popen([PROSODY, "-F", "--config", self.cfg], stdout=self.out,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        wait_port(self.port, 20)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(20)
            self.out.close()
            self.proc = None

    def export(self, stores=STORES):
        """prosody-migrator, Prosody's own tool, from its files to XEP-0227.
        Its xep0227 store writes into the global data path
        (/var/lib/prosody, compiled in): a private mount namespace puts an
        empty directory of the test's there for this one run."""
        # Run as root, it switches to the prosody user, which cannot enter
        # pytest's 0700 directories: it works on a copy in a directory of its own.
        work = pathlib.Path(tempfile.mkdtemp(prefix="weft-migrator-"))
        try:
            os.chmod(work, 0o755)
            shutil.copytree(self.dir / "data", work / "data")
            (work / "export").mkdir()
            (work / "migrator.cfg.lua").write_text(MIGRATOR_CFG.format(
                data=work / "data", out=work / "export", stores=", ".join(f'"{x}"' for x in stores)))
            subprocess.run(["chown", "-R", "prosody:prosody", work], check=True)
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                                'mkdir -p /var/lib/prosody && mount --bind "$1/export" /var/lib/prosody && '
                                'cd "$1" && exec "$2" --config "$1/migrator.cfg.lua" input output',
                                "sh", work, MIGRATOR],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
            out = self.dir / "export"
            shutil.copytree(work / "export", out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        files = sorted(out.glob("*.xml"))
        return files, r


def prosody_available():
    for p in (PROSODY, PROSODYCTL, MIGRATOR):
        if not os.access(p, os.X_OK):
            return f"{p} missing (Debian package prosody, scripts/deps.sh)"
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "prosody-migrator's output directory needs a mount namespace (root, unshare)"
    return None


@pytest.fixture(scope="module")
def prosody_export(tmp_path_factory):
    why = prosody_available()
    if why:
        pytest.fail(why)
    d = tmp_path_factory.mktemp("prosody")
    p = Prosody(d)
    for u, pw in USERS.items():
        p.register(u, pw)
    p.start()
    try:
        async def fill():
            a = await connect(p.port, "alice@localhost/pc", USERS["alice"], "SCRAM-SHA-1")
            b = await connect(p.port, "bob@localhost/pc", USERS["bob"], "SCRAM-SHA-1")
            c = await connect(p.port, "carol@localhost/pc", USERS["carol"], "SCRAM-SHA-1")
            for x in (a, b, c):
                x.send_presence()
            await a.update_roster("bob@localhost", name="Bobby", groups=["Friends"])
            a.send_presence(pto="bob@localhost", ptype="subscribe")   # bob's client approves
            await c.update_roster("dave@remote.example", name="Dave", groups=["Work", "Family"])
            vc = a["xep_0054"].make_vcard()
            vc["FN"] = "Alice Liddell"
            vc["NICKNAME"] = "al"
            await a["xep_0054"].publish_vcard(vc)
            await private_set(a, BOOKMARKS)
            for _ in range(100):
                if a.client_roster["bob@localhost"]["subscription"] == "both":
                    break
                await asyncio.sleep(0.1)
            assert a.client_roster["bob@localhost"]["subscription"] == "both"
            for x in (a, b, c):
                x.disconnect()
            await asyncio.sleep(0.5)
        run(fill())
    finally:
        p.stop()
    files, r = p.export()
    return d, files


def test_prosody_migrator_output_is_real(prosody_export):
    d, files = prosody_export
    assert [f.name for f in files] == ["alice@localhost.xml", "bob@localhost.xml", "carol@localhost.xml"]
    alice = files[0].read_text()
    # Prosody 0.12 keeps SCRAM-SHA-1 keys only, and exports them, not passwords.
    assert "urn:xmpp:pie:0#scram" in alice and "SCRAM-SHA-1" in alice and "password=" not in alice
    assert "Bobby" in alice and "Alice Liddell" in alice and "storage:bookmarks" in alice


def test_prosody_users_log_in_to_weft_with_old_passwords(prosody_export, tmp_path):
    d, files = prosody_export
    db = tmp_path / "weft.db"
    r = weftctl("-d", db, "import", *files)
    assert r.returncode == 0, r.stderr
    assert "imported users=3 roster-items=3" in r.stdout, r.stdout
    assert "vcards=1 private=1" in r.stdout
    assert weftctl("-d", db, "listusers").stdout.split() == ["alice@localhost", "bob@localhost",
                                                             "carol@localhost"]
    s = Server(tmp_path)
    s.start(ibr=False)
    try:
        async def check():
            # The keys came over, not a password: SCRAM-SHA-1 (what Prosody
            # hashed) and PLAIN (checked against those keys) both work.
            a = await connect(s.port, "alice@localhost/w", USERS["alice"], "SCRAM-SHA-1")
            b = await connect(s.port, "bob@localhost/w", USERS["bob"], "PLAIN")
            c = await connect(s.port, "carol@localhost/w", USERS["carol"], "SCRAM-SHA-1")
            ra = a.client_roster["bob@localhost"]
            assert (ra["name"], ra["groups"], ra["subscription"]) == ("Bobby", ["Friends"], "both")
            assert b.client_roster["alice@localhost"]["subscription"] == "both"
            rc = c.client_roster["dave@remote.example"]
            assert (rc["name"], sorted(rc["groups"])) == ("Dave", ["Family", "Work"])
            got = await b["xep_0054"].get_vcard("alice@localhost", cached=False)
            assert got["vcard_temp"]["FN"] == "Alice Liddell"
            assert got["vcard_temp"]["NICKNAME"] in ("al", ["al"])
            priv = await private_get(a, "<storage xmlns='storage:bookmarks'/>")
            assert "tea@muc.localhost" in priv and "Tea party" in priv
            for x in (a, b, c):
                x.disconnect()
            await asyncio.sleep(0.2)
        run(check())

        async def wrong_password():
            await connect(s.port, "alice@localhost/w", "not-alice-pw", "SCRAM-SHA-1")
        with pytest.raises(AssertionError, match="auth failed"):
            run(wrong_password())
    finally:
        s.close()


def test_import_errors_name_user_and_element_and_import_nothing(prosody_export, tmp_path):
    d, files = prosody_export
    db = tmp_path / "w.db"
    broken = tmp_path / "broken.xml"
    text = files[2].read_text().replace("subscription='none'", "subscription='sometimes'")
    text = text.replace('subscription="none"', 'subscription="sometimes"')
    broken.write_text(text)
    # alice and bob are fine, carol's roster is not: none of the three lands.
    r = weftctl("-d", db, "import", files[0], files[1], broken)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "user carol@localhost" in r.stderr and "<item xmlns='jabber:iq:roster'>" in r.stderr
    assert "sometimes" in r.stderr and "nothing imported" in r.stderr
    assert weftctl("-d", db, "listusers").stdout == ""
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM records").fetchone()[0] == 0
    con.close()
    # An account that already exists: refused, named, nothing merged.
    assert weftctl("-d", db, "adduser", "bob@localhost", "new").returncode == 0
    r = weftctl("-d", db, "import", *files)
    assert r.returncode == 1 and "user bob@localhost" in r.stderr and "already exists" in r.stderr
    assert weftctl("-d", db, "listusers").stdout.split() == ["bob@localhost"]
    # Not XML at all: a usage error with the line.
    bad = tmp_path / "bad.xml"
    bad.write_text("<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>\n<user name='x'>")
    r = weftctl("-d", db, "import", bad)
    assert r.returncode == 2 and "not well-formed" in r.stderr


PIE = """<?xml version='1.0'?>
<server-data xmlns='urn:xmpp:pie:0'>
  <host jid='localhost'>
    <user name='dora' password='dora-pw'>
      <query xmlns='jabber:iq:roster'>
        <item jid='eve@localhost' name='Eve' subscription='from'><group>Others</group></item>
      </query>
      <presence xmlns='jabber:client' from='frank@localhost' type='subscribe'/>
      <offline-messages>
        <message xmlns='jabber:client' from='eve@localhost/x' to='dora@localhost' type='chat' id='m1'>
          <body>while you were away</body>
          <delay xmlns='urn:xmpp:delay' from='localhost' stamp='2024-01-02T03:04:05Z'/>
        </message>
      </offline-messages>
      <blocklist xmlns='urn:xmpp:blocking'><item jid='spam@example.org'/></blocklist>
      <query xmlns='jabber:iq:private'><note xmlns='x:notes'>hi</note></query>
      <archive xmlns='urn:xmpp:pie:0#mam'/>
    </user>
    <user name='eve' password='eve-pw'/>
  </host>
</server-data>
"""


def test_plaintext_password_offline_blocklist_and_round_trip(tmp_path):
    src = tmp_path / "in.xml"
    src.write_text(PIE)
    db = tmp_path / "weft.db"
    r = weftctl("-d", db, "import", "-n", src)       # dry run: all checked, nothing kept
    assert r.returncode == 0 and r.stdout.startswith("would import (dry run, nothing written) users=2"), r.stdout
    assert weftctl("-d", db, "user", "list").stdout == ""
    r = weftctl("-d", db, "import", src)
    assert r.returncode == 0, r.stderr
    assert ("imported users=2 roster-items=1 pending-subscriptions=1 vcards=0 private=1 offline=1 "
            "blocked=1 pep-nodes=0 pep-items=0 pep-affiliations=0 pep-subscriptions=0 archived=0 skipped=0") \
        in r.stdout
    assert "skipped" not in r.stderr    # an empty archive is an archive (test_migration_pep_mam.py)

    # export, then import into an empty storage: the same records.
    out = tmp_path / "out.xml"
    r = weftctl("-d", db, "export", out)
    assert r.returncode == 0, r.stderr
    assert oct(os.stat(out).st_mode & 0o777) == "0o600"
    text = out.read_text()
    assert "SCRAM-SHA-256" in text and "SCRAM-SHA-1" in text and "dora-pw" not in text
    db2 = tmp_path / "again.db"
    r = weftctl("-d", db2, "import", out)
    assert r.returncode == 0, r.stderr

    def rows(p):
        con = sqlite3.connect(p)
        u = con.execute("SELECT bare, sha256, sha1 FROM users ORDER BY bare").fetchall()
        rec = con.execute("SELECT owner, coll, key, value FROM records WHERE coll != 'offline' "
                          "ORDER BY owner, coll, key").fetchall()
        off = con.execute("SELECT owner, value FROM records WHERE coll = 'offline'").fetchall()
        con.close()
        return u, rec, off
    assert rows(db) == rows(db2)
    assert weftctl("-d", db2, "export").stdout == text

    # dora logs in with the plaintext password's keys (SCRAM-SHA-256 now),
    # gets the offline message, her roster with the pending request hidden.
    s = Server(tmp_path)
    shutil.copy(db2, tmp_path / "weft.db")
    s.start(ibr=False)
    try:
        async def check():
            x = client(s.port, "dora@localhost/w", "dora-pw", "SCRAM-SHA-256")
            got = asyncio.get_running_loop().create_future()
            x.add_event_handler("message", lambda m: got.done() or got.set_result(m))
            started = asyncio.get_running_loop().create_future()
            x.add_event_handler("session_start", lambda _: started.set_result(True))
            x.connect(("127.0.0.1", s.port))
            await asyncio.wait_for(started, 20)
            await x.get_roster()
            assert list(x.client_roster.keys()) == ["eve@localhost"]
            assert x.client_roster["eve@localhost"]["subscription"] == "from"
            x.send_presence()
            m = await asyncio.wait_for(got, 10)
            assert m["body"] == "while you were away"
            x.disconnect()
            await asyncio.sleep(0.2)
        run(check())
    finally:
        s.close()



def test_prosody_accounts_have_no_scram_sha256_keys(prosody_export, tmp_path):
    """Prosody 0.12 hashes with SHA-1 only: an imported account has no
    SCRAM-SHA-256 keys, so a client choosing SCRAM-SHA-256 is refused
    (not-authorized) until the password is set again in weft; documented in
    docs/operations.md ("Moving from Prosody or ejabberd")."""
    d, files = prosody_export
    db = tmp_path / "weft.db"
    assert weftctl("-d", db, "import", *files).returncode == 0
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM users WHERE sha256 IS NULL AND sha1 IS NOT NULL").fetchone()[0] == 3
    con.close()
    s = Server(tmp_path)
    s.start(ibr=False)
    try:
        async def sha256():
            await connect(s.port, "alice@localhost/w", USERS["alice"], "SCRAM-SHA-256")
        with pytest.raises(AssertionError, match="auth failed"):
            run(sha256())
        # user passwd gives both keys: SCRAM-SHA-256 works from then on
        assert weftctl("-d", db, "user", "passwd", "alice@localhost", USERS["alice"]).returncode == 0

        async def again():
            a = await connect(s.port, "alice@localhost/w", USERS["alice"], "SCRAM-SHA-256")
            assert a.client_roster["bob@localhost"]["name"] == "Bobby"
            a.disconnect()
            await asyncio.sleep(0.2)
        run(again())
    finally:
        s.close()


def test_auth_mechanisms_lets_prosody_users_in_with_their_client_default(prosody_export, tmp_path):
    """A client that takes the strongest mechanism offered and does not try
    another (as Conversations and Dino do): against weft's default list that
    is SCRAM-SHA-256-PLUS, which an account imported from Prosody cannot
    pass. With auth.mechanisms naming the SHA-1 ones only (what Prosody
    offered these users), the same client logs in unchanged."""
    d, files = prosody_export
    db = tmp_path / "weft.db"
    assert weftctl("-d", db, "import", *files).returncode == 0
    for mechs, ok in (("", False), ("SCRAM-SHA-1-PLUS SCRAM-SHA-1 PLAIN", True)):
        s = Server(tmp_path)
        s.start(ibr=False, c2s_extra=f"<auth><mechanisms>{mechs}</mechanisms></auth>" if mechs else "")
        try:
            c = RawClient(s)
            c.open()
            feats = c.starttls()
            offered = re.findall(r"<mechanism>([^<]+)</mechanism>", feats)
            assert ("SCRAM-SHA-256" in offered) == (not ok), offered
            assert c.auth("alice", USERS["alice"], mech=offered[0]) == ok, (offered, getattr(c, "last_failure", ""))
            c.close()
        finally:
            s.close()


def test_auth_mechanisms_with_an_unknown_name_stops_c2s(tmp_path):
    s = Server(tmp_path)
    s.start(ibr=False)
    s.close()
    cfg = tmp_path / "c2s.xml"
    cfg.write_text(cfg.read_text().replace("</c2s>", "<auth><mechanisms>SCRAM-SHA-1 DIGEST-MD5</mechanisms></auth></c2s>"))
    r = subprocess.run([binary("WEFT_C2S", "c2s", "weft-c2s"), "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1, r
    assert 'option=auth.mechanisms value="DIGEST-MD5" reason=unknown-mechanism' in r.stderr, r.stderr


def test_xinclude_split_files_as_ejabberd_writes_them(tmp_path):
    """ejabberd's export_piefxis: a main file including one file per host,
    which includes one file per user. Followed; a missing one fails the
    whole import, naming it."""
    xi = "http://www.w3.org/2001/XInclude"
    (tmp_path / "main.xml").write_text(
        f"<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='{xi}'><xi:include href='localhost.xml'/></server-data>")
    (tmp_path / "localhost.xml").write_text(
        f"<host xmlns='urn:xmpp:pie:0' xmlns:xi='{xi}' jid='localhost'>"
        "<xi:include href='localhost_gus.xml'/><xi:include href='localhost_hal.xml'/></host>")
    (tmp_path / "localhost_gus.xml").write_text(
        "<user xmlns='urn:xmpp:pie:0' name='gus' password='gus-pw'><query xmlns='jabber:iq:roster'>"
        "<item jid='hal@localhost' subscription='both'/></query></user>")
    (tmp_path / "localhost_hal.xml").write_text("<user xmlns='urn:xmpp:pie:0' name='hal' password='hal-pw'/>")
    db = tmp_path / "w.db"
    r = weftctl("-d", db, "import", tmp_path / "main.xml")
    assert r.returncode == 0, r.stderr
    assert "imported users=2 roster-items=1" in r.stdout
    (tmp_path / "localhost_hal.xml").unlink()
    db2 = tmp_path / "w2.db"
    r = weftctl("-d", db2, "import", tmp_path / "main.xml")
    assert r.returncode == 1 and "localhost_hal.xml" in r.stderr and "nothing imported" in r.stderr
    assert weftctl("-d", db2, "user", "list").stdout == ""


EJABBERDCTL = os.environ.get("WEFT_EJABBERDCTL", "/usr/sbin/ejabberdctl")
EJ_USERS = {"alice": "alice-ej-pw", "bob": "bob-ej-pw"}
# No listener at all: the data is made and exported with ejabberdctl alone.
EJABBERD_YML = """hosts:
  - localhost
loglevel: info
certfiles: []
auth_method: internal
auth_password_format: scram
default_db: mnesia
listen: []
modules:
  mod_roster: {}
  mod_vcard: {}
  mod_private: {}
  mod_offline: {}
  mod_admin_extra: {}
"""


@pytest.fixture(scope="module")
def ejabberd_export(tmp_path_factory):
    """Debian 12's ejabberd 23.01 with a config, spool and Erlang node of
    the test's own (epmd on loopback), filled with ejabberdctl, exported with
    `ejabberdctl export_piefxis`."""
    if not os.access(EJABBERDCTL, os.X_OK):
        pytest.fail(f"{EJABBERDCTL} missing (Debian package ejabberd, scripts/deps.sh)")
    if os.geteuid() != 0:
        pytest.fail("ejabberdctl runs ejabberd as its own user: needs root")
    work = pathlib.Path(tempfile.mkdtemp(prefix="weft-ejabberd-"))
    os.chmod(work, 0o755)
    for sub in ("spool", "logs", "export"):
        (work / sub).mkdir()
    (work / "ejabberd.yml").write_text(EJABBERD_YML)
    (work / "ejabberdctl.cfg").write_text(f'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n'
                                          f"EJABBERD_PID_PATH={work}/ejabberd.pid\n"
                                          f"EJABBERD_CONFIG_PATH={work}/ejabberd.yml\n"
                                          "INET_DIST_INTERFACE=127.0.0.1\n")
    subprocess.run(["chown", "-R", "ejabberd:ejabberd", work], check=True)
    node = f"weft{os.getpid()}@localhost"
    env = {**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"}
    epmd_before = set(subprocess.run(["pgrep", "-x", "epmd"], capture_output=True, text=True).stdout.split())

    def ctl(*args, check=True):
        r = subprocess.run([EJABBERDCTL, "--config", work / "ejabberd.yml", "--ctl-config", work / "ejabberdctl.cfg",
                            "--spool", work / "spool", "--logs", work / "logs", "--node", node, *args],
                           capture_output=True, text=True, timeout=120, cwd=work, env=env)
        assert not check or r.returncode == 0, f"ejabberdctl {args}: {r.stdout}{r.stderr}"
        return r
    try:
        ctl("start")
        ctl("started")
        for u, pw in EJ_USERS.items():
            ctl("register", u, "localhost", pw)
        ctl("add_rosteritem", "alice", "localhost", "bob", "localhost", "Bobby", "Friends", "both")
        ctl("add_rosteritem", "bob", "localhost", "alice", "localhost", "Alice", "Friends", "both")
        ctl("set_vcard", "alice", "localhost", "FN", "Alice Liddell")
        ctl("private_set", "alice", "localhost", BOOKMARKS)
        ctl("send_message", "chat", "bob@localhost", "alice@localhost", "", "kept by ejabberd")
        ctl("export_piefxis", work / "export")
        out = tmp_path_factory.mktemp("ejabberd")
        shutil.copytree(work / "export", out / "export")
    finally:
        ctl("stop", check=False)
        ctl("stopped", check=False)
        for pid in set(subprocess.run(["pgrep", "-x", "epmd"], capture_output=True, text=True).stdout.split()) \
                - epmd_before:
            os.kill(int(pid), 15)
        shutil.rmtree(work, ignore_errors=True)
    main = [f for f in (out / "export").glob("*.xml") if "_" not in f.name]
    assert len(main) == 1, list((out / "export").iterdir())
    return main[0]


def test_ejabberd_users_log_in_to_weft_with_old_passwords(ejabberd_export, tmp_path):
    text = " ".join(f.read_text() for f in ejabberd_export.parent.glob("*.xml"))
    assert "XInclude" in text and "SCRAM-SHA-1" in text     # really ejabberd's layout
    db = tmp_path / "weft.db"
    r = weftctl("-d", db, "import", ejabberd_export)
    assert r.returncode == 0, r.stderr
    assert "imported users=2 roster-items=2" in r.stdout and "vcards=1 private=1 offline=1" in r.stdout, r.stdout
    s = Server(tmp_path)
    s.start(ibr=False)
    try:
        async def check():
            b = await connect(s.port, "bob@localhost/w", EJ_USERS["bob"], "PLAIN")
            a = client(s.port, "alice@localhost/w", EJ_USERS["alice"], "SCRAM-SHA-1")
            got = asyncio.get_running_loop().create_future()
            a.add_event_handler("message", lambda m: got.done() or got.set_result(m))
            started = asyncio.get_running_loop().create_future()
            a.add_event_handler("session_start", lambda _: started.set_result(True))
            a.connect(("127.0.0.1", s.port))
            await asyncio.wait_for(started, 20)
            await a.get_roster()
            ra = a.client_roster["bob@localhost"]
            assert (ra["name"], ra["groups"], ra["subscription"]) == ("Bobby", ["Friends"], "both")
            a.send_presence()
            m = await asyncio.wait_for(got, 10)
            assert m["body"] == "kept by ejabberd"
            vc = await b["xep_0054"].get_vcard("alice@localhost", cached=False)
            assert vc["vcard_temp"]["FN"] == "Alice Liddell"
            assert "Tea party" in await private_get(a, "<storage xmlns='storage:bookmarks'/>")
            for x in (a, b):
                x.disconnect()
            await asyncio.sleep(0.2)
        run(check())
    finally:
        s.close()
