"""A weft server with weft-muc for the group chat tests: Server (router, sm,
c2s) plus one or more weft-muc instances at conference.localhost, and a raw
client helper that speaks to rooms with exact bytes.

MucServer(tmp_path).start(instances=1) registers the muc component(s) in the
router config; with more than one the service domain is a <partition>.
With WEFT_TEST_STORAGE=postgresql and WEFT_TEST_MUC_STORAGE=postgresql a
single weft-muc keeps its rooms in the test's PostgreSQL database too
(beside the sm's records), unless the test names a storage itself;
partitioned instances keep their own SQLite files. Only on request: the
restart tests count duplicates that docs/muc.md expects on PostgreSQL.
"""
import os
import re

from conftest import BUILD, STORAGE, Proc, sm_storage_url, wait_for
from server import RawClient, Server

MUC_STORAGE = os.environ.get("WEFT_TEST_MUC_STORAGE", "sqlite")

SERVICE = "conference.localhost"
PW = "secret-pw"

MUC = """<muc>
  <router><address>127.0.0.1:{router_port}</address><name>router</name></router>
  <name>{name}</name>
  <secret>{name}-secret</secret>
  <domain>conference.localhost</domain>
  <database>{dir}/{name}.db</database>
  {storage}
  <log><level>debug</level></log>
  {extra}
</muc>
"""


class MucServer(Server):
    def start(self, instances=1, muc_extra="", hold=30, **kw):
        self.muc_names = ["muc"] if instances == 1 else [f"muc{i + 1}" for i in range(instances)]
        comps = "".join(f"<component name='{n}' secret='{n}-secret'><bind>{SERVICE}</bind></component>"
                        for n in self.muc_names)
        if instances > 1:
            comps += f"<partition>{SERVICE}</partition>"
        kw["router_extra"] = kw.get("router_extra", "") + comps
        super().start(hold=hold, **kw)
        self.muc_extra = muc_extra
        self.mucs = {}
        for n in self.muc_names:
            self.start_muc(n)
        return self

    def start_muc(self, name="muc", wait=True):
        path = self.dir / f"{name}.xml"
        storage = ""
        if (STORAGE == MUC_STORAGE == "postgresql" and len(self.muc_names) == 1
                and "<storage>" not in self.muc_extra):
            storage = f"<storage>{sm_storage_url(self.dir).replace('&', '&amp;')}</storage>"
        path.write_text(MUC.format(router_port=self.router_port, dir=self.dir, name=name,
                                   extra=self.muc_extra, storage=storage))
        before = self.log(name).count("event=ready")
        p = self._spawn([os.environ.get("WEFT_MUC") or os.path.join(BUILD, "muc", "weft-muc"), "-c", str(path)],
                        f"{name}.log")
        self.mucs[name] = p
        if wait:
            timeout = max(20.0, float(os.environ.get("WEFT_START_TIMEOUT", "20")))
            assert wait_for(lambda: self.log(name).count("event=ready") > before, timeout), self.log(name)
        return p

    def user(self, name, resource="r"):
        """A logged-in raw client for name@localhost, its account made first."""
        if name not in getattr(self, "_registered", set()):
            self.register(name, PW)
            self._registered = getattr(self, "_registered", set()) | {name}
        c = self.login(name, PW, resource=resource)
        c.send("<presence/>")
        c.read_until(r"<presence[^>]*/>|</presence>")   # its own presence back
        return c


def room(name):
    return f"{name}@{SERVICE}"


def join(c, rm, nick, extra="", muc=True):
    """Sends an entering presence; returns everything up to the subject."""
    x = f"<x xmlns='http://jabber.org/protocol/muc'>{extra}</x>" if muc else ""
    c.send(f"<presence to='{room(rm)}/{nick}'>{x}</presence>")
    return c.read_until(r"<subject\s*/>|</subject>")


def stanza(c, pattern, timeout=10):
    """The next whole stanza (message, presence or iq) matching pattern,
    skipping others."""
    rx = re.compile(r"<(message|presence|iq)\b[^>]*?(/>|>[\s\S]*?</\1>)")
    want = re.compile(pattern)
    end = __import__("time").time() + timeout
    while True:
        left = max(0.1, end - __import__("time").time())
        chunk = c.read_until(rx.pattern, timeout=left)
        m = rx.search(chunk)
        if m and want.search(m.group(0)):
            return m.group(0)


def codes(st):
    return sorted(int(x) for x in re.findall(r"<status code=['\"](\d+)['\"]", st))


__all__ = ["MucServer", "RawClient", "room", "join", "stanza", "codes", "PW", "SERVICE", "Proc", "BUILD"]
