"""An XMPP client session that reads parsed stanzas, for tests that judge
what arrives (and what does not) rather than exact bytes.

Session wraps a RawClient from server.py that has authenticated and bound:
everything after that is fed to an XML pull parser, and every top-level
element lands in an inbox. sync() is the barrier the tests rely on: a
message to the session's own full JID goes through the sm's one FIFO after
everything sent before it. An answer the sm makes (a stanza error) joins
that FIFO behind the sync message itself, so a second round trip is made:
once it is back, whatever earlier stanzas caused for this session has
arrived too.
"""
import itertools
import socket
import xml.etree.ElementTree as ET

C = "jabber:client"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
_sync_ids = itertools.count(1)


def tag(name, ns=C):
    return "{%s}%s" % (ns, name)


def error_condition(st):
    """The defined condition of a stanza error, or None (any stream namespace)."""
    for e in st:
        if e.tag.endswith("}error"):
            for c in e:
                if c.tag.startswith("{%s}" % STANZAS):
                    return c.tag.split("}")[1]
    return None


class Session:
    """raw: anything with sock, buf, jid, send() and close() whose stream
    header was read already (RawClient after bind, a component after its
    handshake); ns is the stream's default namespace."""

    def __init__(self, raw, ns=C):
        self.raw = raw
        self.jid = raw.jid
        self.bare = raw.jid.split("/")[0]
        self.inbox = []
        self._depth = 0
        self._root = None
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._parser.feed(f"<stream:stream xmlns='{ns}' xmlns:stream='http://etherx.jabber.org/streams'>")
        self._feed(raw.buf)
        raw.buf = ""

    def _feed(self, data):
        self._parser.feed(data)
        for ev, el in self._parser.read_events():
            if ev == "start":
                self._depth += 1
                if self._depth == 1:
                    self._root = el
            else:
                self._depth -= 1
                if self._depth == 1:
                    self.inbox.append(el)
                    self._root.remove(el)

    def send(self, xml):
        self.raw.send(xml)

    def _read(self, timeout):
        self.raw.sock.settimeout(timeout)
        try:
            data = self.raw.sock.recv(65536)
        except socket.timeout:
            return
        if not data:
            raise EOFError(f"{self.jid}: stream closed")
        self._feed(data.decode())

    def wait(self, pred, timeout=10):
        """Returns (and removes) the first stanza matching pred."""
        import time
        end = time.time() + timeout
        while True:
            for st in self.inbox:
                if pred(st):
                    self.inbox.remove(st)
                    return st
            left = end - time.time()
            if left <= 0:
                raise TimeoutError(f"{self.jid}: nothing matching; inbox="
                                   f"{[ET.tostring(s)[:200] for s in self.inbox]}")
            self._read(min(left, 1.0))

    def sync(self):
        for _ in range(2):
            sid = f"sync-{next(_sync_ids)}"
            self.send(f"<message to='{self.jid}' id='{sid}' type='chat'/>")
            self.wait(lambda st: st.get("id") == sid)

    def take(self):
        """Everything received so far (after a sync); empties the inbox."""
        got, self.inbox = self.inbox, []
        return got

    def presence(self, priority=None):
        """Initial (or later) broadcast presence, waits for its echo."""
        pr = f"<priority>{priority}</priority>" if priority is not None else ""
        self.send(f"<presence>{pr}</presence>")
        self.wait(lambda st: st.tag == tag("presence") and st.get("from") == self.jid and st.get("type") is None)

    def close(self):
        self.raw.close()
