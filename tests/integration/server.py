"""A whole weft server for integration tests: router, sm and c2s on loopback.

Server(tmp_path) writes the three configs into tmp_path with free ports,
starts the processes and stops them at close(). RawClient speaks XMPP over a
plain socket with exact control of every byte (stream errors, SASL, XEP-0198);
slixmpp helpers give an independent client implementation.

Binaries come from WEFT_BUILD (as in conftest) or WEFT_ROUTER / WEFT_SM /
WEFT_C2S when set.
"""
import base64
import hashlib
import hmac
import os
import re
import socket
import ssl
import time

from conftest import BUILD, Proc, free_port, selfsigned_cert, wait_for, wait_port


def binary(env, *parts):
    return os.environ.get(env) or os.path.join(BUILD, *parts)


ROUTER = """<router>
  <name>router</name>
  <listen>127.0.0.1:{router_port}</listen>
  <log><level>debug</level></log>
  <hold><seconds>{hold}</seconds></hold>
  <component name="sm" secret="sm-secret" trusted-from="true"><bind>localhost</bind><bind>sm.localhost</bind></component>
  <component name="c2s" secret="c2s-secret" trusted-from="true"><bind>c2s.localhost</bind></component>
  {extra}
</router>
"""

SM = """<sm>
  <router><address>127.0.0.1:{router_port}</address><name>router</name></router>
  <name>sm</name>
  <secret>sm-secret</secret>
  <domain>localhost</domain>
  <database>{dir}/weft.db</database>
  <log><level>debug</level></log>
  {extra}
</sm>
"""

C2S = """<c2s>
  <instance>c2s.localhost</instance>
  <router><address>127.0.0.1:{router_port}</address><name>router</name></router>
  <name>c2s</name>
  <secret>c2s-secret</secret>
  <domain>localhost</domain>
  <listen><starttls>127.0.0.1:{port} [::1]:{port}</starttls><tls>127.0.0.1:{tls_port}</tls></listen>
  <tls><certificate>{dir}/certs/localhost.crt</certificate><key>{dir}/certs/localhost.key</key></tls>
  <log><level>debug</level></log>
  <register><enabled>{ibr}</enabled><per-ip>50</per-ip></register>
  {extra}
</c2s>
"""


class Server:
    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.procs = []
        self.router_port = free_port()
        self.port = free_port()
        self.tls_port = free_port()
        self.ws_port = free_port()
        self.c2s = self.sm = self.router = None

    def start(self, sm=True, ibr=True, c2s_extra="", sm_extra="", router_extra="", hold=30):
        self.sm_extra = sm_extra
        (self.dir / "router.xml").write_text(ROUTER.format(router_port=self.router_port, extra=router_extra,
                                                           hold=hold))
        self.router = self._spawn([binary("WEFT_ROUTER", "router", "weft-router"), "-c", str(self.dir / "router.xml")],
                                  "router.log")
        wait_port(self.router_port)
        if sm:
            self.start_sm()
        selfsigned_cert(self.dir / "certs" / "localhost.crt", self.dir / "certs" / "localhost.key", "localhost")
        cfg = C2S.format(router_port=self.router_port, port=self.port, tls_port=self.tls_port, dir=self.dir,
                         ibr="true" if ibr else "false", extra=c2s_extra)
        # a WebSocket listener of its own (test_websocket.py)
        cfg = cfg.replace("</listen>", f"<websocket>127.0.0.1:{self.ws_port}</websocket></listen>", 1)
        (self.dir / "c2s.xml").write_text(cfg)
        self.c2s = self._spawn([binary("WEFT_C2S", "c2s", "weft-c2s"), "-c", str(self.dir / "c2s.xml")], "c2s.log")
        wait_port(self.port)
        assert wait_for(lambda: "event=router-ready" in self.log("c2s"), 15), self.log("c2s")
        return self

    def start_sm(self):
        self.sm = self._spawn([binary("WEFT_SM", "sm", "weft-sm"), "-c", self._sm_cfg()], "sm.log")
        return self.sm

    def _sm_cfg(self):
        path = self.dir / "sm.xml"
        path.write_text(SM.format(router_port=self.router_port, dir=self.dir,
                                  extra=getattr(self, "sm_extra", "")))
        return str(path)

    def _spawn(self, args, log):
        p = Proc(args, self.dir / log)
        self.procs.append(p)
        return p

    def log(self, name):
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def cert(self):
        return str(self.dir / "certs" / "localhost.crt")

    def close(self):
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception:
                pass

    # ---- accounts and clients

    def register(self, user, password):
        """Creates an account with XEP-0077 over a raw stream."""
        c = RawClient(self)
        c.open()
        c.starttls()
        c.send(f"<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>{user}</username>"
               f"<password>{password}</password></query></iq>")
        resp = c.read_until(r"<iq[^>]*id=['\"]reg1['\"][\s\S]*?(/>|</iq>)")
        c.close()
        assert "type='result'" in resp or 'type="result"' in resp, resp
        return resp

    def login(self, user, password, resource="r", mech="SCRAM-SHA-256", direct_tls=False, bind=True):
        c = RawClient(self, direct_tls=direct_tls)
        c.open()
        if not direct_tls:
            c.starttls()
        assert c.auth(user, password, mech), c.buf
        if bind:
            c.bind(resource)
        return c

    def slixmpp_client(self, jid, password):
        import slixmpp
        x = slixmpp.ClientXMPP(jid, password)
        x.ssl_context.check_hostname = False
        x.ssl_context.verify_mode = ssl.CERT_NONE
        return x


class RawClient:
    """XMPP over a socket, matched with regular expressions (no XML parser:
    tests see exactly the bytes the server wrote)."""

    def __init__(self, server, direct_tls=False, port=None, family=socket.AF_INET, host="127.0.0.1"):
        self.server = server
        self.buf = ""
        port = port or (server.tls_port if direct_tls else server.port)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        self.tls = False
        if direct_tls:
            self._wrap()

    def _wrap(self):
        ctx = ssl.create_default_context(cafile=self.server.cert)
        ctx.check_hostname = True
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.tls = True

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def header(self, to="localhost", version="1.0", ns="jabber:client"):
        return (f"<?xml version='1.0'?><stream:stream xmlns='{ns}' xmlns:stream='http://etherx.jabber.org/streams'"
                f" to='{to}' version='{version}' xml:lang='en'>")

    def read_until(self, pattern, timeout=10):
        rx = re.compile(pattern)
        end = time.time() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                out = self.buf[:m.end()]
                self.buf = self.buf[m.end():]
                return out
            if time.time() > end:
                raise TimeoutError(f"{pattern!r} not seen; got {self.buf!r}")
            try:
                self.sock.settimeout(max(0.05, end - time.time()))
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise EOFError(f"closed before {pattern!r}; got {self.buf!r}")
            self.buf += data.decode(errors="replace")

    def read_closed(self, timeout=10):
        """Reads until the server closes the connection; returns everything."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                self.sock.settimeout(max(0.05, end - time.time()))
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                break
            if not data:
                break
            self.buf += data.decode(errors="replace")
        else:
            raise TimeoutError(f"connection not closed; got {self.buf!r}")
        out, self.buf = self.buf, ""
        return out

    def open(self, **kw):
        self.send(self.header(**kw))
        return self.read_until(r"</stream:features>")

    def starttls(self):
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(r"<proceed[^>]*/>")
        self.buf = ""
        self._wrap()
        return self.open()

    def cbind_endpoint(self):
        der = self.sock.getpeercert(binary_form=True)
        return hashlib.sha256(der).digest()

    def auth(self, user, password, mech="SCRAM-SHA-256", authzid=None, initial=True):
        if mech == "PLAIN":
            msg = f"{authzid or ''}\0{user}\0{password}".encode()
            self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                      f"{base64.b64encode(msg).decode()}</auth>")
            r = self.read_until(r"<success[^>]*(/>|>[^<]*</success>)|</failure>")
            if "<success" in r:
                self.buf = ""
                self.open()
                return True
            self.last_failure = r
            return False
        hname = "sha256" if "SHA-256" in mech else "sha1"
        plus = mech.endswith("-PLUS")
        gs2 = ("p=tls-server-end-point," if plus else "n,") + (f"a={authzid}," if authzid else ",")
        cnonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n={user},r={cnonce}"
        first = (gs2 + first_bare).encode()
        if initial:
            self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>"
                      f"{base64.b64encode(first).decode()}</auth>")
        else:
            self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'/>")
            self.read_until(r"<challenge[^>]*(/>|></challenge>)")
            self.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{base64.b64encode(first).decode()}</response>")
        r = self.read_until(r"</challenge>|</failure>")
        if "</failure>" in r:
            self.last_failure = r
            return False
        chal = base64.b64decode(re.search(r"<challenge[^>]*>([^<]*)</challenge>", r).group(1)).decode()
        parts = dict(p.split("=", 1) for p in chal.split(","))
        salt = base64.b64decode(parts["s"])
        it = int(parts["i"])
        salted = hashlib.pbkdf2_hmac(hname, password.encode(), salt, it)
        ckey = hmac.new(salted, b"Client Key", hname).digest()
        stored = hashlib.new(hname, ckey).digest()
        cbdata = gs2.encode() + (self.cbind_endpoint() if plus else b"")
        final_bare = f"c={base64.b64encode(cbdata).decode()},r={parts['r']}"
        am = f"{first_bare},{chal},{final_bare}".encode()
        sig = hmac.new(stored, am, hname).digest()
        proof = bytes(a ^ b for a, b in zip(ckey, sig))
        final = f"{final_bare},p={base64.b64encode(proof).decode()}"
        self.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{base64.b64encode(final.encode()).decode()}"
                  f"</response>")
        r = self.read_until(r"</success>|<success[^>]*/>|</failure>")
        if "success" not in r:
            self.last_failure = r
            return False
        skey = hmac.new(salted, b"Server Key", hname).digest()
        ssig = base64.b64encode(hmac.new(skey, am, hname).digest()).decode()
        got = base64.b64decode(re.search(r"<success[^>]*>([^<]*)</success>", r).group(1)).decode()
        assert got == f"v={ssig}", got
        self.buf = ""
        self.open()
        return True

    def bind(self, resource="r"):
        res = f"<resource>{resource}</resource>" if resource else ""
        self.send(f"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>")
        r = self.read_until(r"<iq[^>]*bind1[\s\S]*?</iq>")
        m = re.search(r"<jid>([^<]*)</jid>", r)
        assert m, r
        self.jid = m.group(1)
        return r

    def close(self):
        try:
            self.send("</stream:stream>")
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def drop(self):
        """Kills the TCP connection without a closing handshake."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.sock.close()
