"""weft-muc restarts without emptying a room (issue 15): 200 occupants (20
accounts x 10 resources, raw TLS streams through c2s) in 20 rooms of 10, one
sender per room writing steadily; weft-muc is killed with SIGKILL in the
middle (50 ms after a round of messages) and started again. Every client reads everything all along. Checked
at the clients: no occupant receives an unavailable presence, every message
sent (before, during and after the outage) reaches each of its room's 10
occupants, in order, and none twice: a broadcast and the acknowledgement of
the message that caused it are one fan-out element, which the router has
whole or not at all (docs/component-protocol.md 9.7); a self-ping (XEP-0410)
from each of the
200 after the restart succeeds, and MAM holds every message once. The time
to recover is reported: kill to the first delivery after restart, and
restart to the last held message delivered.

With WEFT_TEST_STORAGE=postgresql WEFT_TEST_MUC_STORAGE=postgresql weft-muc
stores on PostgreSQL, whose writes complete later: its output waits for
them (muc/outq.c) and the same counts must hold. The test's server runs
without fsync, so a commit takes a fraction of a millisecond and a kill
would seldom fall between a message's broadcast and its commit even if they
were apart; a trigger makes each archive write take
WEFT_TEST_MUC_PG_DELAY_MS (8 by default; 0: none), as a database on another
host or one that syncs to disk would, so that such a window would be hit.
"""
import html
import os
import re
import selectors
import time

import conftest
from muc_env import MUC_STORAGE, MucServer, room
from test_sm_iq import make_certs

MUC_ON_PG = conftest.STORAGE == MUC_STORAGE == "postgresql"
PG_DELAY_MS = int(os.environ.get("WEFT_TEST_MUC_PG_DELAY_MS", "8"))


def slow_archive_writes(directory, ms):
    """Every write of a muc-archive record waits ms milliseconds in the
    database (the sm's records, in the same database, are not slowed)."""
    url = conftest.sm_storage_url(directory)
    conftest._pg._run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c",
                      "CREATE FUNCTION weft_test_slow() RETURNS trigger LANGUAGE plpgsql AS "
                      f"$$ BEGIN PERFORM pg_sleep({ms / 1000.0}); RETURN NEW; END $$; "
                      "CREATE TRIGGER weft_test_slow BEFORE INSERT OR UPDATE ON records FOR EACH ROW "
                      "WHEN (NEW.coll = 'muc-archive') EXECUTE FUNCTION weft_test_slow();")

ROOMS, PER_ROOM, USERS = 20, 10, 20
STANZA = re.compile(r"<(message|presence|iq)\b[^>]*?(/>|>[\s\S]*?</\1>)")
INTERVAL = 0.25          # seconds between two messages of one room's sender
BEFORE, DOWN, AFTER = 3.0, 2.0, 4.0


class Fleet:
    """Every connection read in one loop (TLS sockets are not shared
    between threads); sends are written from the same loop."""

    def __init__(self, clients):
        self.clients = clients
        self.sel = selectors.DefaultSelector()
        for i, c in enumerate(clients):
            c.sock.setblocking(False)
            c.buf = ""
            c.log = []
            self.sel.register(c.sock, selectors.EVENT_READ, i)

    def pump(self, timeout):
        end = time.time() + timeout
        while True:
            left = end - time.time()
            for key, _ in self.sel.select(max(0, left)):
                self._read(self.clients[key.data])
            for c in self.clients:                     # TLS may hold decrypted bytes
                if c.sock.pending():
                    self._read(c)
            if left <= 0:
                return

    def _read(self, c):
        while True:
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, __import__("ssl").SSLWantReadError):
                return
            if not data:
                return
            c.buf += data.decode(errors="replace")
            end = 0
            for m in STANZA.finditer(c.buf):
                c.log.append((time.time(), m.group(0)))
                end = m.end()
            c.buf = c.buf[end:]

    def send(self, c, data):
        c.sock.setblocking(True)
        c.sock.sendall(data.encode())
        c.sock.setblocking(False)


def test_kill9_restart_keeps_every_occupant(tmp_path):
    make_certs(tmp_path)
    s = MucServer(tmp_path).start(
        c2s_extra="<limits><connections-per-ip>1000</connections-per-ip></limits>",
        muc_extra="<limits><messages-per-second>100</messages-per-second><mam-page>1000</mam-page></limits>")
    try:
        assert ("postgresql" in (tmp_path / "muc.xml").read_text()) == MUC_ON_PG
        if MUC_ON_PG and PG_DELAY_MS:
            slow_archive_writes(tmp_path, PG_DELAY_MS)
        for u in range(USERS):
            s.register(f"u{u:02d}", "secret-pw")
        clients = []
        for i in range(ROOMS * PER_ROOM):
            c = s.login(f"u{i % USERS:02d}", "secret-pw", resource=f"res{i // USERS}")
            clients.append(c)
        fleet = Fleet(clients)
        # Each room: its first occupant creates it (instant), then the others enter.
        for k in range(ROOMS):
            for j in range(PER_ROOM):
                c = clients[k * PER_ROOM + j]
                fleet.send(c, f"<presence to='{room(f'room{k}')}/n{j}'><x xmlns='http://jabber.org/protocol/muc'>"
                              "<history maxstanzas='0'/></x></presence>")
                if j == 0:
                    fleet.pump(0.05)
                    fleet.send(c, f"<iq type='set' to='{room(f'room{k}')}' id='cfg'><query xmlns="
                                  "'http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/>"
                                  "</query></iq>")
            fleet.pump(0.05)
        deadline = time.time() + 60
        while time.time() < deadline:
            fleet.pump(0.2)
            joined = sum(1 for c in clients if any("code='110'" in st for _, st in c.log))
            if joined == len(clients):
                break
        assert joined == len(clients), f"only {joined} joined"
        fleet.pump(1.0)
        for c in clients:
            c.log.clear()

        sent = {k: [] for k in range(ROOMS)}
        seq = 0

        def burst():
            nonlocal seq
            for k in range(ROOMS):
                body = f"r{k}-m{seq}"
                fleet.send(clients[k * PER_ROOM], f"<message to='{room(f'room{k}')}' type='groupchat'>"
                                                  f"<body>{body}</body></message>")
                sent[k].append(body)
            seq += 1

        def traffic(duration):
            end = time.time() + duration
            while time.time() < end:
                burst()
                fleet.pump(INTERVAL)

        traffic(BEFORE)
        # The kill comes 50 ms after a round of 20 messages, while weft-muc is
        # still busy with it (on PostgreSQL with the trigger: 160 ms of writes).
        burst()
        fleet.pump(0.05)
        muc = s.mucs["muc"]
        t_kill = time.time()
        muc.kill9()
        n_before = seq
        traffic(DOWN)
        n_down = seq
        t_restart = time.time()
        s.start_muc("muc", wait=False)
        traffic(AFTER)
        # Drain until every room's last message reached all its occupants.
        deadline = time.time() + 60

        def bodies(c):
            return [m.group(1) for _, st in c.log for m in [re.search(r"<body>([^<]*)</body>", st)] if m]

        while time.time() < deadline:
            fleet.pump(0.5)
            if all(sent[k][-1] in bodies(clients[k * PER_ROOM + j])
                   for k in range(ROOMS) for j in range(PER_ROOM)):
                break
        fleet.pump(1.0)
        lost = dup = disorder = 0
        dups_seen = []
        for k in range(ROOMS):
            for j in range(PER_ROOM):
                c = clients[k * PER_ROOM + j]
                got = [b for b in bodies(c) if b.startswith(f"r{k}-")]
                lost += len(set(sent[k]) - set(got))
                dup += len(got) - len(set(got))
                first = list(dict.fromkeys(got))          # order of first arrival
                disorder += first != sorted(first, key=sent[k].index)
                for b in {b for b in got if got.count(b) > 1}:
                    ids = {m.group(1) for t, st in c.log if f"<body>{b}</body>" in st
                           for m in [re.search(r"stanza-id[^>]*id='(\w+)'", st)] if m}
                    dups_seen.append((b, len(ids)))
        # No delivery given twice (should one be, the report says whether it
        # kept its stanza id).
        dup_msgs = {b for b, _ in dups_seen}
        dup_ids_differ = sum(1 for _, n in dups_seen if n != 1)
        unavailable = sum(1 for c in clients for _, st in c.log
                          if st.startswith("<presence") and "type='unavailable'" in st)
        # Recovery: first delivery after the restart; last delivery of what was sent while down.
        down_msgs = {f"r{k}-m{n}" for k in range(ROOMS) for n in range(n_before, n_down)}
        last_held = max(t for c in clients for t, st in c.log
                        for m in [re.search(r"<body>([^<]*)</body>", st)] if m and m.group(1) in down_msgs)
        first_after = min((t for c in clients for t, st in c.log if t > t_restart and "<body>" in st),
                          default=None)
        total = sum(len(v) for v in sent.values())
        # Self-ping (XEP-0410) from every occupant after the restart.
        for i, c in enumerate(clients):
            k, j = divmod(i, PER_ROOM)
            fleet.send(c, f"<iq type='get' to='{room(f'room{k}')}/n{j}' id='sp{i}'><ping xmlns='urn:xmpp:ping'/></iq>")
        deadline = time.time() + 30
        while time.time() < deadline:
            fleet.pump(0.2)
            ok = sum(1 for i, c in enumerate(clients) if any(f"id='sp{i}'" in st for _, st in c.log))
            if ok == len(clients):
                break
        pings_ok = sum(1 for i, c in enumerate(clients)
                       if any(f"id='sp{i}'" in st and "type='result'" in st for _, st in c.log))
        print(f"\nmuc restart ({'postgresql, archive writes +%d ms' % PG_DELAY_MS if MUC_ON_PG else 'sqlite'}): "
              f"{len(clients)} occupants in {ROOMS} rooms, {total} messages sent "
              f"({total * PER_ROOM} deliveries expected): lost {lost}, duplicated {dup} "
              f"(of {len(dup_msgs)} messages, same stanza id: {dup_ids_differ == 0}), rooms out of order "
              f"{disorder}, unavailable presences {unavailable}, self-pings ok {pings_ok}/{len(clients)}; "
              f"kill to first delivery after restart {first_after - t_kill:.2f} s, "
              f"restart to first delivery {first_after - t_restart:.2f} s, to the last message held while down "
              f"{last_held - t_restart:.2f} s ({len(down_msgs)} sent while down)" if first_after else "no delivery")
        # The archive (MAM) of one room has every message once.
        c = clients[1]
        fleet.send(c, f"<iq type='set' to='{room('room0')}' id='mam'><query xmlns='urn:xmpp:mam:2'>"
                      "<set xmlns='http://jabber.org/protocol/rsm'><max>1000</max></set></query></iq>")
        deadline = time.time() + 20
        while time.time() < deadline and not any("id='mam'" in st for _, st in c.log):
            fleet.pump(0.2)
        archived = [m.group(1) for _, st in c.log if "urn:xmpp:mam:2" in st
                    for m in [re.search(r"<body>([^<]*)</body>", st)] if m]
        assert archived == sent[0], (len(archived), len(sent[0]))
        assert down_msgs and lost == 0 and disorder == 0
        assert dup == 0, dups_seen[:20]
        assert unavailable == 0
        assert pings_ok == len(clients)
        assert "event=loaded rooms=20 occupants=200" in s.log("muc")
    finally:
        s.close()


def test_occupant_gone_while_down_is_removed(tmp_path):
    """Occupants leave while weft-muc is down. Carol's unavailable presence
    is lost (held, then bounced when hold.seconds, 2 here, ran out): after
    the restart she is removed at the first delivery that comes back as an
    error (status 333). Bob's is held by the router and delivered after the
    next restart: a normal exit. Alice stays throughout."""
    from muc_env import codes, join, stanza
    make_certs(tmp_path)
    s = MucServer(tmp_path).start(hold=2)
    try:
        a, b, c = s.user("alice"), s.user("bob"), s.user("carol")
        join(a, "g", "Alice", muc=False)
        join(b, "g", "Bob")
        join(c, "g", "Carol")
        s.mucs["muc"].kill9()
        c.drop()                       # Carol's unavailable is held, then bounced after 2 s
        time.sleep(3.5)
        s.start_muc("muc")
        a.send(f"<message to='{room('g')}' type='groupchat' id='x'><body>anyone?</body></message>")
        assert "anyone?" in stanza(a, "anyone?")
        gone = stanza(a, "<presence[^>]*/Carol'[^>]*type='unavailable'")
        assert codes(gone) == [333]
        s.mucs["muc"].kill9()
        b.drop()                       # Bob's unavailable is held until the restart
        time.sleep(0.5)
        s.start_muc("muc")
        un = stanza(a, "<presence[^>]*/Bob'[^>]*type='unavailable'")
        assert codes(un) == []
        a.send(f"<iq type='get' to='{room('g')}/Alice' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert "type='result'" in stanza(a, "id='p'")
    finally:
        s.close()


def test_restart_on_postgresql(tmp_path):
    """The same storage through PostgreSQL (asynchronous completions from the
    loop): rooms, occupants, history and the archive survive a kill -9."""
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from pg_server import PgServer
    from muc_env import codes, join, stanza
    make_certs(tmp_path)
    try:
        pg = PgServer()
    except FileNotFoundError as e:
        raise AssertionError(f"PostgreSQL server missing (scripts/deps.sh installs it): {e}")
    pg.start()
    s = MucServer(tmp_path)
    try:
        s.start(muc_extra=f"<storage>{html.escape(pg.url())}</storage>")
        a, b = s.user("alice"), s.user("bob")
        join(a, "pg", "Alice", muc=False)
        join(b, "pg", "Bob")
        for i in range(3):
            a.send(f"<message to='{room('pg')}' type='groupchat'><body>pg {i}</body></message>")
            stanza(b, f"pg {i}<")
        s.mucs["muc"].kill9()
        a.send(f"<message to='{room('pg')}' type='groupchat'><body>while down</body></message>")
        s.start_muc("muc")
        assert "while down" in stanza(b, "while down")
        assert "event=loaded rooms=1 occupants=2" in s.log("muc")
        b.send(f"<iq type='get' to='{room('pg')}/Bob' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        assert "type='result'" in stanza(b, "id='p'")
        out = join(s.user("carol"), "pg", "Carol", extra="<history maxstanzas='10'/>")
        assert re.findall(r"<body>([^<]*)</body>", out) == ["pg 0", "pg 1", "pg 2", "while down"]
        assert 110 in codes(out)
        b.send(f"<iq type='set' to='{room('pg')}' id='m'><query xmlns='urn:xmpp:mam:2'/></iq>")
        got = b.read_until(r"<iq[^>]*id='m'[\s\S]*?</iq>")
        assert re.findall(r"<body>([^<]*)</body>", got) == ["pg 0", "pg 1", "pg 2", "while down"]
    finally:
        s.close()
        pg.stop()


def test_failed_write_is_retried_on_postgresql(tmp_path):
    """On PostgreSQL a room message's broadcast waits for its archive write
    (muc/outq.c). When that write fails (here a CHECK constraint refuses
    archive records), nothing of the message goes out and it is not
    acknowledged: weft-muc submits the write again with a backoff, and the
    input behind it waits. Once the database takes it, the message reaches
    everyone once, then the one sent after it: order kept, archive once.
    The same when the connection to the database is cut."""
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from pg_server import PgServer
    from muc_env import join, stanza
    make_certs(tmp_path)
    try:
        pg = PgServer()
    except FileNotFoundError as e:
        raise AssertionError(f"PostgreSQL server missing (scripts/deps.sh installs it): {e}")
    pg.start()
    s = MucServer(tmp_path)

    def sql(q):
        pg._run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.url(), "-c", q)

    try:
        s.start(muc_extra=f"<storage>{html.escape(pg.url())}</storage>")
        a, b = s.user("alice"), s.user("bob")
        join(a, "f", "Alice", muc=False)
        join(b, "f", "Bob")
        a.send(f"<message to='{room('f')}' type='groupchat'><body>one</body></message>")
        stanza(b, "one<")
        sql("ALTER TABLE records ADD CONSTRAINT weft_test_no_archive CHECK (coll <> 'muc-archive') NOT VALID")
        a.send(f"<message to='{room('f')}' type='groupchat'><body>two</body></message>")
        a.send(f"<message to='{room('f')}' type='groupchat'><body>three</body></message>")
        try:
            early = stanza(b, "two<|three<", timeout=1.5)
        except TimeoutError:
            early = None
        assert early is None, early
        assert "event=store-failed action=retry" in s.log("muc")
        sql("ALTER TABLE records DROP CONSTRAINT weft_test_no_archive")
        t0 = time.time()
        assert "two<" in stanza(b, "two<|three<", timeout=15)
        assert "three<" in stanza(b, "two<|three<", timeout=5)
        print(f"\nmuc write retried: delivered {time.time() - t0:.2f} s after the database took it again")
        a.send(f"<message to='{room('f')}' type='groupchat'><body>four</body></message>")
        stanza(b, "four<")
        assert "two<" not in b.buf and "three<" not in b.buf
        # The connection itself lost: the write in flight fails (its outcome
        # unknown), the driver reconnects, the writes go again.
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = 'weft' AND pid <> pg_backend_pid()")
        a.send(f"<message to='{room('f')}' type='groupchat'><body>five</body></message>")
        a.send(f"<message to='{room('f')}' type='groupchat'><body>six</body></message>")
        assert "five<" in stanza(b, "five<|six<", timeout=15)
        assert "six<" in stanza(b, "five<|six<", timeout=5)
        try:
            again = stanza(b, "five<|six<", timeout=1.0)
        except TimeoutError:
            again = None
        assert again is None, again
        b.send(f"<iq type='set' to='{room('f')}' id='m'><query xmlns='urn:xmpp:mam:2'/></iq>")
        got = b.read_until(r"<iq[^>]*id='m'[\s\S]*?</iq>")
        assert re.findall(r"<body>([^<]*)</body>", got) == ["one", "two", "three", "four", "five", "six"]
        assert "connection-lost" in s.log("muc") or "database unavailable" in s.log("muc"), s.log("muc")[-2000:]
    finally:
        s.close()
        pg.stop()
