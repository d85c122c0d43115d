"""c2s's own TLS 1.3 record layer (tls.record-takeover, common/tls_record.c)
against TLS implementations other than the OpenSSL it takes over from:
GnuTLS (gnutls-cli) and Java's JSSE (a small client compiled at run time,
tests/integration/TlsPipe.java).

Each client is a transparent pipe: the test writes the XMPP stream to its
stdin and reads the server's bytes from its stdout, so the XMPP side is the
same for both. Per client and cipher suite: direct TLS (XEP-0368), SASL
PLAIN, bind, then several MB of stanzas the client sends to itself (so they
go through c2s both ways), with KeyUpdates in both directions in the middle
of the transfer: the client's ("^rekey^": gnutls-cli's inline command, JSSE's
startHandshake(), both asking the server to update too) and the server's own
(tls.key-update-records set low, so c2s sends one every few records). Every
body must come back intact, the connection must have been taken over, and
c2s must log no TLS failure.
"""
import base64
import os
import random
import re
import shutil
import string
import subprocess
import threading
import time

import pytest

from conftest import wait_for
from server import Server

SUITES = {
    "TLS_AES_128_GCM_SHA256": "+AES-128-GCM",
    "TLS_AES_256_GCM_SHA384": "+AES-256-GCM",
    "TLS_CHACHA20_POLY1305_SHA256": "+CHACHA20-POLY1305",
}
# Server-side KeyUpdate after this many records under one key: small, so
# that a transfer of a few MB (~16 KB per record) sees dozens.
KEY_UPDATE_RECORDS = 16
BODY = 128 * 1024        # under limits.stanza-bytes (256 KB)
MESSAGES = 24            # 3 MB each way
C2S_EXTRA = (f"<tls><key-update-records>{KEY_UPDATE_RECORDS}</key-update-records></tls>"
             "<limits><rate>1G</rate><burst>1G</burst></limits>")


class Pipe:
    """A TLS client process used as a pipe: stdin to the server, the server's
    bytes on stdout (accumulated by a thread), diagnostics on stderr."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = ""
        self.err = ""
        self.pos = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._pump, args=(self.p.stdout, "buf"), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stderr, "err"), daemon=True).start()

    def _pump(self, f, attr):
        while True:
            chunk = f.read1(65536)
            if not chunk:
                return
            with self.lock:
                setattr(self, attr, getattr(self, attr) + chunk.decode("latin-1"))

    def _write(self, data):
        try:
            self.p.stdin.write(data)
            self.p.stdin.flush()
        except BrokenPipeError:
            time.sleep(0.5)
            raise AssertionError(f"the client exited ({self.p.poll()}); it read "
                                 f"{self.buf[-300:]!r}; stderr {self.err[-2000:]!r}")

    def send(self, text):
        self._write(text.encode("utf-8") + b"\n")

    def rekey(self):
        self._write(b"^rekey^\n")

    def read_until(self, pattern, timeout=20):
        """Waits for pattern after what earlier calls consumed; returns the text
        up to the end of the match."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                m = rx.search(self.buf, self.pos)
                if m:
                    out = self.buf[self.pos:m.end()]
                    self.pos = m.end()
                    return out
            if self.p.poll() is not None and not rx.search(self.buf, self.pos):
                time.sleep(0.2)
                break
            time.sleep(0.02)
        raise AssertionError(f"timeout waiting for {pattern!r}; got {self.buf[self.pos:self.pos + 500]!r} "
                             f"stderr {self.err[-2000:]!r}")

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


@pytest.fixture(scope="module")
def java_pipe(tmp_path_factory):
    if not shutil.which("javac") or not shutil.which("java"):
        pytest.fail("javac/java missing: install default-jdk-headless (scripts/deps.sh)")
    out = tmp_path_factory.mktemp("java")
    src = os.path.join(os.path.dirname(__file__), "TlsPipe.java")
    subprocess.run(["javac", "-d", str(out), src], check=True)
    return str(out)


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def stream_header():
    return ("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def login(pipe, user, password, resource):
    pipe.send(stream_header())
    pipe.read_until(r"</stream:features>")
    plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    pipe.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>")
    assert "<success" in pipe.read_until(r"<success[^>]*?(/>|>[^<]*</success>)|<failure[\s\S]*?</failure>")
    pipe.send(stream_header())
    pipe.read_until(r"</stream:features>")
    pipe.send(f"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
              f"<resource>{resource}</resource></bind></iq>")
    jid = re.search(r"<jid>([^<]+)</jid>", pipe.read_until(r"</jid>")).group(1)
    assert jid == f"{user}@localhost/{resource}"
    return jid


def takeovers(srv):
    return len(re.findall(r"event=tls-takeover [^\n]*result=done", srv.log("c2s")))


def transfer(srv, pipe, jid, pace=0.15):
    """MESSAGES bodies of BODY bytes to the client's own full JID, with a
    client KeyUpdate every 6 messages, pace seconds apart; each must come
    back intact."""
    rnd = random.Random(7)
    sent = []
    for i in range(MESSAGES):
        body = "".join(rnd.choice(string.ascii_letters) for _ in range(BODY))
        sent.append(body)
        pipe.send(f"<message to='{jid}' id='m{i}' type='chat'><body>{body}</body></message>")
        if i % 6 == 3:
            pipe.rekey()
        time.sleep(pace)
    for i, body in enumerate(sent):
        got = pipe.read_until(rf"<message[^>]*id='m{i}'[^>]*>[\s\S]*?</message>", timeout=60)
        assert f"<body>{body}</body>" in got, f"message {i} damaged"
    # The stream still works both ways after the transfer.
    pipe.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "type='result'" in pipe.read_until(r"<iq[^>]*id='p1'[^>]*>")


def finish(srv, pipe, before):
    pipe.send("</stream:stream>")
    pipe.read_until(r"</stream:stream>")
    pipe.close()
    log = srv.log("c2s")
    assert takeovers(srv) > before, log[-3000:]
    assert "event=tls-failed" not in log, log[-3000:]
    assert "AddressSanitizer" not in log and "runtime error" not in log


@pytest.mark.parametrize("suite", list(SUITES))
def test_gnutls_client(srv, suite):
    srv.start(c2s_extra=C2S_EXTRA)
    srv.register("gnu", "pw")
    prio = f"NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:{SUITES[suite]}"
    pipe = Pipe(["gnutls-cli", "-d", "4", "--no-ca-verification", "--inline-commands", f"--priority={prio}",
                 "-p", str(srv.tls_port), "127.0.0.1"])
    try:
        jid = login(pipe, "gnu", "pw", "gnutls")
        assert wait_for(lambda: takeovers(srv) >= 1, 10), srv.log("c2s")[-3000:]
        assert f"({SUITES[suite][1:]})" in pipe.buf + pipe.err, (pipe.buf[:2000], pipe.err[-2000:])
        # GnuTLS ends a connection that gets more than 8 KeyUpdates in a
        # second (its limit against floods); this test makes about 16 (c2s's
        # every 16 records, and its answers to the client's), which a fast
        # machine fitted into one second: spread over about 3.5 s.
        transfer(srv, pipe, jid, pace=0.15)
        finish(srv, pipe, takeovers(srv) - 1)
        # gnutls-cli -d 4 logs every KeyUpdate: its own (asking for ours) and
        # every one it received: our answers, and ours after every
        # KEY_UPDATE_RECORDS records.
        sent = pipe.err.count("sending key update (1)")
        received = pipe.err.count("received TLS 1.3 key update")
        print(f"gnutls {suite}: client KeyUpdates {sent}, received {received}")
        assert sent >= MESSAGES // 6, pipe.err[-3000:]
        assert received >= sent + 5, (sent, received)
    finally:
        pipe.close()


@pytest.mark.parametrize("suite", list(SUITES))
def test_jsse_client(srv, java_pipe, suite):
    srv.start(c2s_extra=C2S_EXTRA)
    srv.register("jsse", "pw")
    pipe = Pipe(["java", "-Djavax.net.debug=ssl:handshake", "-cp", java_pipe, "TlsPipe", "127.0.0.1",
                 str(srv.tls_port), suite])
    try:
        jid = login(pipe, "jsse", "pw", "java")
        assert f"TLSv1.3 {suite}" in pipe.err
        assert wait_for(lambda: takeovers(srv) >= 1, 10), srv.log("c2s")[-3000:]
        transfer(srv, pipe, jid)
        finish(srv, pipe, takeovers(srv) - 1)
        # JSSE's debug log: "write key updated" for each of its own KeyUpdates,
        # "read key updated" for each it received from c2s.
        writes = pipe.err.count("KeyUpdate: write key updated")
        reads = pipe.err.count("KeyUpdate: read key updated")
        print(f"jsse {suite}: client KeyUpdates {writes}, received {reads}")
        assert pipe.err.count("Rekey was completed") >= MESSAGES // 6
        assert writes >= MESSAGES // 6, pipe.err[-3000:]
        assert reads >= writes + 5, (writes, reads)
    finally:
        pipe.close()
