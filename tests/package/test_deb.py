"""The Debian package (debian/, scripts/build-deb): builds the .deb, checks
what it holds the way lintian would look at it (files, conffiles, maintainer
scripts), then installs it and logs in to the server it runs with slixmpp.

Where it installs:
- WEFT_TEST_SYSTEM_INSTALL=1 (set by .ci/run, root only): on this machine with
  apt, as an operator would; the units start under systemd when systemd is
  PID 1, else weft-launch runs /etc/weft/launch.xml as the weft user, as the
  units would. Then remove (data kept) and purge (data gone). This changes
  the machine: a weft user stays behind, as with any Debian package.
- otherwise: `dpkg --root` unpacks it into a temporary root, and the unpacked
  programs run the packaged configs with their paths moved into that root and
  free ports, as the current user. Nothing outside the temporary root changes.

WEFT_DEB=path skips the build and tests that .deb.
Run: python3 -m pytest -q tests/package/test_deb.py
"""
import asyncio
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from ports import free_port  # noqa: E402

import pytest

SOURCE = pathlib.Path(__file__).resolve().parents[2]
SYSTEM = os.environ.get("WEFT_TEST_SYSTEM_INSTALL") == "1"
PROGRAMS = ["weft-router", "weft-sm", "weft-c2s", "weft-s2s", "weft-s2s-resolve", "weft-upload", "weft-muc", "weftctl",
            "weft-launch"]
CONFIGS = ["router", "sm", "c2s", "s2s", "upload", "muc", "launch"]
UNITS = ["weft-router.service", "weft-sm.service", "weft-c2s.service", "weft-s2s.service",
         "weft-upload.service", "weft-muc.service", "weft.target"]


def run(*args, check=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r




def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    assert pred(), f"timed out after {timeout} s waiting for {what}"


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if os.environ.get("WEFT_DEB"):
        return pathlib.Path(os.environ["WEFT_DEB"])
    out = tmp_path_factory.mktemp("deb")
    r = run(str(SOURCE / "scripts/build-deb"), str(out), timeout=900)
    return pathlib.Path(r.stdout.split()[-1])


@pytest.fixture(scope="module")
def control(deb, tmp_path_factory):
    d = tmp_path_factory.mktemp("control")
    run("dpkg-deb", "-e", str(deb), str(d / "DEBIAN"))
    return d / "DEBIAN"


def test_contents(deb):
    listing = run("dpkg-deb", "-c", str(deb)).stdout
    files = {}
    for line in listing.splitlines():
        f = line.split()
        files[f[5].lstrip(".")] = f[0]
    for p in PROGRAMS:
        assert files.get(f"/usr/bin/{p}", "").startswith("-rwxr-xr-x"), p
    for c in CONFIGS:
        assert files.get(f"/etc/weft/{c}.xml") == "-rw-r--r--", c
    for u in UNITS:
        assert files.get(f"/lib/systemd/system/{u}") == "-rw-r--r--", u
    assert "/usr/share/doc/weft/copyright" in files
    assert "/usr/share/doc/weft/operations.md" in files  # the units' Documentation=
    assert not [f for f in files if f.startswith("/usr/local")]
    assert not [f for f in files if f.startswith("/var")], "data is made by the postinst, not shipped"


def test_control(deb, control):
    info = run("dpkg-deb", "-I", str(deb)).stdout
    assert re.search(r"Depends:.*\badduser\b", info) and re.search(r"Depends:.*\bopenssl\b", info)
    conffiles = (control / "conffiles").read_text().split()
    assert sorted(conffiles) == sorted(f"/etc/weft/{c}.xml" for c in CONFIGS)
    for s in ("postinst", "postrm", "prerm"):
        script = control / s
        assert os.access(script, os.X_OK), f"{s} not executable"
        assert script.read_text().startswith("#!/bin/sh"), s
        run("sh", "-n", str(script))
        assert "set -e" in script.read_text(), s
    postrm = (control / "postrm").read_text()
    # data goes on purge only
    assert re.search(r'"\$1" = purge \]; then\n\s+rm -rf /var/lib/weft', postrm)


def test_unpacked_files_agree(deb, tmp_path):
    """The configs and units in the package point at each other and at the
    installed programs: no path from the source tree is left."""
    run("dpkg-deb", "-x", str(deb), str(tmp_path))
    for c in CONFIGS:
        text = (tmp_path / f"etc/weft/{c}.xml").read_text()
        assert not re.search(r'[>"](var|etc|build)/', text), c
    for u in UNITS[:-1]:
        text = (tmp_path / f"lib/systemd/system/{u}").read_text()
        m = re.search(r"^ExecStart=(\S+) -c (\S+)$", text, re.M)
        assert m, u
        assert (tmp_path / m.group(1).lstrip("/")).is_file(), m.group(1)
        assert (tmp_path / m.group(2).lstrip("/")).is_file(), m.group(2)
        assert "User=weft" in text and "WorkingDirectory=/var/lib/weft" in text
        assert u in (tmp_path / "lib/systemd/system/weft.target").read_text()
    sm = (tmp_path / "etc/weft/sm.xml").read_text()
    assert "<database>/var/lib/weft/weft.db</database>" in sm
    c2s = (tmp_path / "etc/weft/c2s.xml").read_text()
    assert "<certificate>/etc/weft/certs/localhost.crt</certificate>" in c2s


def login_and_chat(port, jid, password):
    """An independent client: slixmpp logs in (SCRAM over STARTTLS) and sends
    itself a message through the sm. Returns the body it got back."""
    import slixmpp
    asyncio.set_event_loop(asyncio.new_event_loop())
    got = {}
    x = slixmpp.ClientXMPP(jid + "/pkg", password)
    x.ssl_context.check_hostname = False
    x.ssl_context.verify_mode = ssl.CERT_NONE

    def on_start(event):
        got["jid"] = str(x.boundjid)
        x.send_presence()
        x.send_message(mto=jid, mbody="from the package", mtype="chat")

    def on_message(msg):
        got["body"] = msg["body"]
        x.disconnect()

    def on_failed(event):
        got["failed"] = True
        x.disconnect()

    x.add_event_handler("session_start", on_start)
    x.add_event_handler("message", on_message)
    x.add_event_handler("failed_auth", on_failed)
    x.connect(("127.0.0.1", port))
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(x.disconnected, 30))
    except asyncio.TimeoutError:
        pass
    finally:
        # slixmpp leaves its filter task waiting: end it before the loop goes
        pending = asyncio.all_tasks(loop)
        for t in pending:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
    assert not got.get("failed"), "login refused"
    assert got.get("jid") == jid + "/pkg", got
    return got.get("body")


# ------------------------------------------------------------ dpkg --root

def test_root_install_runs(deb, tmp_path):
    if SYSTEM:
        pytest.skip("WEFT_TEST_SYSTEM_INSTALL=1: the system install test runs instead")
    root = tmp_path / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    run("dpkg", f"--root={root}", "--force-not-root", "--force-script-chrootless",
        f"--log={tmp_path}/dpkg.log", "--unpack", str(deb))
    status = run("dpkg", f"--root={root}", "-s", "weft").stdout
    assert "Status: install ok unpacked" in status
    recorded = (root / "var/lib/dpkg/info/weft.conffiles").read_text().split()
    assert sorted(recorded) == sorted(f"/etc/weft/{c}.xml" for c in CONFIGS)
    for p in PROGRAMS:
        assert os.access(root / "usr/bin" / p, os.X_OK), p

    # dpkg holds conffiles as .dpkg-new until it configures the package (which
    # would run the postinst on this machine): put them in place as it would.
    for c in CONFIGS:
        os.rename(root / f"etc/weft/{c}.xml.dpkg-new", root / f"etc/weft/{c}.xml")
    # What the postinst would do, inside the root: data directory, certificate.
    data = root / "var/lib/weft"
    certs = root / "etc/weft/certs"
    data.mkdir()
    certs.mkdir()
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(certs / "localhost.key"),
        "-out", str(certs / "localhost.crt"))
    # The packaged configs, moved into the root and onto free ports.
    ports = {p: str(free_port()) for p in ("5222", "5223", "5269", "5347", "5281")}
    for c in CONFIGS:
        f = root / f"etc/weft/{c}.xml"
        text = f.read_text()
        for old, new in ports.items():
            text = text.replace(":" + old + "<", ":" + new + "<").replace(":" + old + " ", ":" + new + " ")
        text = text.replace("/etc/weft/", f"{root}/etc/weft/").replace("/var/lib/weft/", f"{data}/")
        text = text.replace("<bindir>/usr/bin</bindir>", f"<bindir>{root}/usr/bin</bindir>")
        text = text.replace("[::1]:" + ports["5222"], "").replace("[::1]:" + ports["5223"], "")
        f.write_text(text)
    log = open(tmp_path / "launch.log", "w")
    launch = subprocess.Popen([str(root / "usr/bin/weft-launch"), "-c", str(root / "etc/weft/launch.xml")],
                              cwd=data, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_open(int(ports["5222"])), 30, "c2s")
        ctl = [str(root / "usr/bin/weftctl"), "-c", str(root / "etc/weft/sm.xml")]
        run(*ctl, "adduser", "debby@localhost", "pkg-pw", cwd=data)
        assert (data / "weft.db").exists()
        assert run(*ctl, "listusers", cwd=data).stdout.split() == ["debby@localhost"]
        wait_until(lambda: (data / "sm.ctl").exists(), 20, "sm's control socket")
        assert login_and_chat(int(ports["5222"]), "debby@localhost", "pkg-pw") == "from the package"
        stats = run(str(root / "usr/bin/weftctl"), "-s", str(data / "router.ctl"), "stats").stdout
        assert "c2s" in stats and "sm" in stats
    finally:
        launch.send_signal(signal.SIGTERM)
        try:
            launch.wait(30)
        except subprocess.TimeoutExpired:
            launch.kill()
            launch.wait()
        log.close()
    assert launch.returncode == 0, (tmp_path / "launch.log").read_text()[-3000:]


# ------------------------------------------------------------ on this machine

def systemd_running():
    return os.path.isdir("/run/systemd/system") and shutil.which("systemctl")


def apt(*args):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return run("apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120", *args, env=env, timeout=300)


def test_system_install(deb, tmp_path):
    if not SYSTEM:
        pytest.skip("installs on this machine only with WEFT_TEST_SYSTEM_INSTALL=1 (CI)")
    assert os.geteuid() == 0, "WEFT_TEST_SYSTEM_INSTALL=1 needs root"
    assert run("dpkg-query", "-W", "-f=${Status}", "weft", check=False).stdout.find(" installed") < 0, \
        "weft is installed already: remove it first"
    for p in (5222, 5269, 5347):
        assert not port_open(p), f"port {p} is taken: the packaged server could not start"
    apt("install", str(deb.resolve()))
    launch = None
    try:
        assert run("getent", "passwd", "weft").stdout.split(":")[5] == "/var/lib/weft"
        st = os.stat("/var/lib/weft")
        assert (st.st_mode & 0o777) == 0o750
        sm_st = os.stat("/etc/weft/sm.xml")
        assert (sm_st.st_mode & 0o777) == 0o640 and sm_st.st_gid == st.st_gid
        assert os.path.exists("/etc/weft/certs/localhost.crt")
        # enabled at boot (deb-systemd-helper makes the links with or without systemd running)
        assert os.path.islink("/etc/systemd/system/multi-user.target.wants/weft.target")
        for u in UNITS[:-1]:
            assert os.path.islink(f"/etc/systemd/system/weft.target.wants/{u}"), u
        if shutil.which("systemd-analyze"):
            r = run("systemd-analyze", "verify", *(f"/lib/systemd/system/{u}" for u in UNITS), check=False)
            bad = [line for line in (r.stdout + r.stderr).splitlines() if "weft" in line]
            assert not bad, bad
        if systemd_running():
            # deb-systemd-invoke started them unless a policy-rc.d said no
            run("systemctl", "start", "weft.target")
            for u in UNITS:
                assert run("systemctl", "is-enabled", u).stdout.strip() == "enabled", u
        else:
            # What the units do, without systemd: weft-launch as the weft user in /var/lib/weft.
            log = open(tmp_path / "launch.log", "w")
            launch = subprocess.Popen(["runuser", "-u", "weft", "--", "weft-launch", "-c",
                                       "/etc/weft/launch.xml"], cwd="/var/lib/weft",
                                      stdout=log, stderr=subprocess.STDOUT)
        # s2s starts last and loads the system's trust store: slow on a busy machine
        for port, who in ((5347, "router"), (5222, "c2s"), (5269, "s2s"), (5281, "upload")):
            wait_until(lambda: port_open(port), 60, f"{who} on {port}")
        wait_until(lambda: os.path.exists("/var/lib/weft/sm.ctl"), 20, "sm's control socket")
        if systemd_running():
            for u in UNITS:
                assert run("systemctl", "is-active", u).stdout.strip() == "active", u
        # the commands docs/operations.md gives the operator
        run("runuser", "-u", "weft", "--", "weftctl", "-e", "/etc/weft", "user", "add",
            "debby@localhost", "pkg-pw", cwd="/var/lib/weft")
        # muc starts last: status is all ok once every process is up
        status = None
        for _ in range(60):
            status = run("weftctl", "-e", "/etc/weft", "status", check=False)
            if status.returncode == 0:
                break
            time.sleep(0.5)
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.search(r"^ok +muc: running", status.stdout, re.M), status.stdout
        check = run("weftctl", "-e", "/etc/weft", "check", check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        assert login_and_chat(5222, "debby@localhost", "pkg-pw") == "from the package"
        stats = run("weftctl", "-s", "/var/lib/weft/router.ctl", "stats").stdout
        assert "c2s" in stats and "sm" in stats

        # An upgrade (a reinstall of the same .deb): the operator's edit of a
        # conffile stays, its mode too, the account too; the server serves again.
        with open("/etc/weft/c2s.xml", "a") as f:
            f.write("<!-- edited by the operator -->\n")
        apt("-o", "Dpkg::Options::=--force-confold", "install", "--reinstall", str(deb.resolve()))
        assert "edited by the operator" in open("/etc/weft/c2s.xml").read()
        assert (os.stat("/etc/weft/c2s.xml").st_mode & 0o777) == 0o640
        wait_until(lambda: port_open(5222), 30, "c2s on 5222 after the upgrade")
        for attempt in range(10):  # under systemd the units restart: sm may bind a moment later
            try:
                assert login_and_chat(5222, "debby@localhost", "pkg-pw") == "from the package"
                break
            except AssertionError:
                if attempt == 9:
                    raise
                time.sleep(1)
    finally:
        if launch:
            launch.send_signal(signal.SIGTERM)
            try:
                launch.wait(30)
            except subprocess.TimeoutExpired:
                launch.kill()
        apt("remove", "weft")  # under systemd the prerm stops the units
        if sys.exc_info()[0] is not None:
            apt("purge", "weft")  # a failed test leaves nothing behind but the weft user
    # remove keeps the users' data and the configs; purge takes both
    try:
        assert os.path.exists("/var/lib/weft/weft.db")
        assert os.path.exists("/etc/weft/sm.xml")
        assert not port_open(5222)
    finally:
        apt("purge", "weft")
    assert not os.path.exists("/var/lib/weft")
    assert not os.path.exists("/etc/weft")
