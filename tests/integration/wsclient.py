"""A raw RFC 6455 WebSocket client for the tests, written from the RFC (no
library): exact control of every frame (masking, reserved bits, opcodes,
fragmentation, lengths), so the tests can send what a correct client never
would. XmppWs adds RFC 7395 framing on top: <open/>, PLAIN, bind, <close/>.

Each message the server sends is checked to be a whole XML document by
itself (RFC 7395 3.3.3) by parsing it with ElementTree."""
import base64
import hashlib
import os
import re
import socket
import ssl
import struct
import time
import xml.etree.ElementTree as ET

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"


class WsClosed(Exception):
    pass


def http_get(port, path, headers=None, method="GET", host="127.0.0.1", tls=False, raw=None):
    """One HTTP request; returns (status, headers dict lower-cased, body)."""
    s = socket.create_connection((host, port), timeout=10)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname="localhost")
    if raw is None:
        hdrs = {"Host": f"{host}:{port}"}
        hdrs.update(headers or {})
        raw = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    s.sendall(raw.encode() if isinstance(raw, str) else raw)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    h = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        h[k.strip().lower()] = v.strip()
    return status, h, body


class WsClient:
    def __init__(self, port, path="/xmpp-websocket", protocol="xmpp", origin=None, host="127.0.0.1",
                 tls=False, extra_headers=None, expect=101):
        self.sock = socket.create_connection((host, port), timeout=10)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.close_code = None
        key = base64.b64encode(os.urandom(16)).decode()
        hdrs = {"Host": f"{host}:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
        if protocol:
            hdrs["Sec-WebSocket-Protocol"] = protocol
        if origin:
            hdrs["Origin"] = origin
        hdrs.update(extra_headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        if expect is not None:
            assert self.status == expect, (self.status, head)
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == want
            assert self.headers.get("sec-websocket-protocol") == "xmpp"

    # ---- frames

    def send_frame(self, opcode, payload, fin=True, mask=True, rsv=0, length=None):
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            hdr += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(hdr + payload)

    def send(self, text):
        self.send_frame(0x1, text)

    def _need(self, n, timeout):
        end = time.time() + timeout
        while len(self.buf) < n:
            left = end - time.time()
            if left <= 0:
                raise TimeoutError(f"waiting for {n} bytes, have {self.buf[:200]!r}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise WsClosed(f"connection closed, buffer {self.buf[:200]!r}")
            self.buf += chunk

    def recv_frame(self, timeout=10):
        """(fin, opcode, payload bytes) of the server's next frame; server
        frames must not be masked."""
        self._need(2, timeout)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames are not masked"
        assert not b0 & 0x70
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, timeout)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, timeout)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._need(off + n, timeout)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv(self, timeout=10, pong=True):
        """The next text message (a str), each a standalone XML document.
        Pings are answered; a close frame raises WsClosed (code kept)."""
        while True:
            fin, op, payload = self.recv_frame(timeout)
            if op == 0x9:
                if pong:
                    self.send_frame(0xA, payload)
                continue
            if op == 0xA:
                continue
            if op == 0x8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise WsClosed(f"close frame {self.close_code}")
            assert op == 0x1 and fin, (op, fin)
            text = payload.decode("utf-8")
            ET.fromstring(text)   # a whole document with its namespaces
            return text

    def recv_until(self, pattern, timeout=10):
        """Messages until one matches; returns all of them joined."""
        end = time.time() + timeout
        got = []
        while True:
            m = self.recv(max(0.1, end - time.time()))
            got.append(m)
            if re.search(pattern, m):
                return "\n".join(got)

    def recv_to_close(self, timeout=10):
        """Every message until the close frame; returns (messages, close code)."""
        got = []
        try:
            while True:
                got.append(self.recv(timeout))
        except WsClosed:
            pass
        return got, self.close_code

    def eof(self, timeout=5):
        """True once the server closed the TCP connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def drop(self):
        self.sock.close()


class XmppWs(WsClient):
    """RFC 7395 on a WsClient."""

    def open(self, to="localhost"):
        self.send(f"<open xmlns='{FRAMING}' to='{to}' version='1.0'/>")
        first = self.recv()
        assert first.startswith("<open ") and f"xmlns='{FRAMING}'" in first, first
        return first + "\n" + self.recv_until(r"</stream:features>")

    def auth_plain(self, user, password):
        feats = self.open()
        assert "<mechanism>PLAIN</mechanism>" in feats, feats
        cred = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{cred}</auth>")
        r = self.recv()
        if "<success" not in r:
            return False
        return self.open()

    def bind(self, resource="ws"):
        self.send(f"<iq type='set' id='b1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        r = self.recv_until(r"id=['\"]b1['\"]")
        m = re.search(r"<jid>([^<]+)</jid>", r)
        assert m, r
        self.jid = m.group(1)
        return self.jid

    def login(self, user, password, resource="ws"):
        feats = self.auth_plain(user, password)
        assert feats, "authentication failed"
        self.bind(resource)
        return self

    def close_stream(self):
        self.send(f"<close xmlns='{FRAMING}'/>")
