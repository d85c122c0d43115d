"""A small, independent client of weft's internal component protocol, written
from docs/component-protocol.md: SASL SCRAM-SHA-256, session, bind, acks.
Used by tests that need to speak the protocol at byte level."""
import base64
import hashlib
import hmac
import os
import socket
import xml.etree.ElementTree as ET

NS_STREAM = "http://etherx.jabber.org/streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_W = "urn:xmpp:weft:component:1"

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
          "xmlns:stream='http://etherx.jabber.org/streams' xmlns:w='urn:xmpp:weft:component:1' "
          "to='{to}' version='1.0'>")


class Link:
    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.raw = b""
        self._new_parser()

    def _new_parser(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.queue = []

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def next(self, timeout=10):
        """Returns the next top-level element (or the stream header as ('open', attrs))."""
        self.sock.settimeout(timeout)
        while not self.queue:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.raw += chunk
            self.parser.feed(chunk)
            for ev, el in self.parser.read_events():
                if ev == "start":
                    self.depth += 1
                    if self.depth == 1:
                        self.queue.append(("open", dict(el.attrib)))
                else:
                    self.depth -= 1
                    if self.depth == 1:
                        self.queue.append(("el", el))
                    elif self.depth == 0:
                        self.queue.append(("close", None))
        return self.queue.pop(0)

    def next_el(self, timeout=10):
        while True:
            kind, v = self.next(timeout)
            if kind == "el":
                return v
            if kind == "close":
                raise EOFError("stream closed")

    def open(self, to="router"):
        self.send(HEADER.format(to=to))
        kind, attrs = self.next()
        assert kind == "open"
        return attrs

    def authenticate(self, name, secret):
        feats = self.next_el()
        mechs = [m.text for m in feats.iter("{%s}mechanism" % NS_SASL)]
        assert "SCRAM-SHA-256" in mechs, mechs
        cnonce = base64.b64encode(os.urandom(18)).decode()
        bare = f"n={name},r={cnonce}"
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>"
                  f"{base64.b64encode(('n,,' + bare).encode()).decode()}</auth>")
        ch = self.next_el()
        if ch.tag != "{%s}challenge" % NS_SASL:
            return ch
        first = base64.b64decode(ch.text).decode()
        parts = dict(p.split("=", 1) for p in first.split(","))
        salt = base64.b64decode(parts["s"])
        salted = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, int(parts["i"]))
        ckey = hmac.new(salted, b"Client Key", "sha256").digest()
        skey = hashlib.sha256(ckey).digest()
        final_wo = f"c=biws,r={parts['r']}"
        auth_msg = f"{bare},{first},{final_wo}".encode()
        sig = hmac.new(skey, auth_msg, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(ckey, sig))
        self.send(f"<response xmlns='{NS_SASL}'>"
                  f"{base64.b64encode((final_wo + ',p=' + base64.b64encode(proof).decode()).encode()).decode()}"
                  "</response>")
        res = self.next_el()
        if res.tag == "{%s}success" % NS_SASL:
            server_key = hmac.new(salted, b"Server Key", "sha256").digest()
            expect = base64.b64encode(hmac.new(server_key, auth_msg, "sha256").digest()).decode()
            assert base64.b64decode(res.text).decode() == "v=" + expect
            self._new_parser()
            self.open()
            feats = self.next_el()
            assert feats.find("{%s}session" % NS_W) is not None
        return res

    def session(self, epoch="00112233445566778899aabbccddeeff", next_seq=1):
        self.send(f"<w:session epoch='{epoch}' next='{next_seq}'/>")
        return self.next_el()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
