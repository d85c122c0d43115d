"""weft-sm on PostgreSQL: what only a network database shows.

- A message stored offline is acknowledged to the router only once the
  database has committed it (docs/storage.md, "Writing sm code against
  storage"): with the records table locked, the sm's count and append wait;
  the sm is killed (SIGKILL) while they wait, the lock goes, a new sm starts,
  and the router gives it the message again: the recipient gets it from
  offline storage, once. An sm that acknowledged on receipt loses it.
- The loop never waits for the database: while one user's load waits on
  the lock (storage has one connection: every query queues behind it),
  users already loaded still chat.

Each test starts a PostgreSQL server of its own (tests/pg_server.py)."""
import os
import subprocess
import sys
import time

import pytest

from conftest import wait_for
from server import Server

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from pg_server import PgServer  # noqa: E402


@pytest.fixture
def pg():
    server = PgServer().start()
    yield server
    server.stop()


class TableLock:
    """A psql session holding an exclusive lock on the records table until
    release(): every read and write of records waits behind it."""

    def __init__(self, pg):
        psql = os.path.join(pg.bindir, "psql")
        cmd = [psql, "-h", pg.dir, "-p", str(pg.port), "-U", "weft", "-d", "weft", "-v", "ON_ERROR_STOP=1"]
        if pg.as_root:
            cmd = ["runuser", "-u", pg.user, "--"] + cmd
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        self.p.stdin.write("BEGIN;\nLOCK TABLE records IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n")
        self.p.stdin.flush()
        seen = []
        while "locked" not in seen:          # BEGIN, LOCK TABLE, then our echo
            line = self.p.stdout.readline()
            assert line, seen
            seen.append(line.strip())

    def release(self):
        self.p.stdin.write("ROLLBACK;\n")
        self.p.stdin.close()
        self.p.wait(10)


def start(tmp_path, pg):
    srv = Server(tmp_path)
    try:
        srv.start(sm_extra=f"<storage>{pg.url().replace('&', '&amp;')}</storage>")
        assert wait_for(lambda: "event=storage driver=postgresql" in srv.log("sm"), 10), srv.log("sm")
    except BaseException:
        srv.close()
        raise
    return srv


def chat(sender, to, body):
    sender.send(f"<message to='{to}' type='chat'><body>{body}</body></message>")


def test_offline_message_survives_an_sm_killed_before_commit(tmp_path, pg):
    srv = start(tmp_path, pg)
    try:
        srv.register("alice", "pw")
        srv.register("bob", "pw")
        bob = srv.login("bob", "pw", resource="b")
        bob.send("<presence/>")
        lock = TableLock(pg)
        chat(bob, "alice@localhost", "while the table is locked")
        # The sm has the message and waits for the database (its count of
        # alice's offline messages is queued behind the lock).
        assert wait_for(lambda: "user=alice@localhost" in srv.log("sm"), 10), srv.log("sm")
        time.sleep(1.0)
        assert "offline-stored" not in srv.log("sm")
        srv.sm.kill9()
        lock.release()
        srv.start_sm()
        assert wait_for(lambda: "event=offline-stored user=alice@localhost" in srv.log("sm"), 20), srv.log("sm")
        alice = srv.login("alice", "pw", resource="a")
        alice.send("<presence/>")
        got = alice.read_until(r"while the table is locked[\s\S]*?</message>", timeout=15)
        assert "urn:xmpp:delay" in got
        time.sleep(1.0)                  # a duplicate would come now
        try:
            alice.read_until(r"while the table is locked", timeout=1)
            pytest.fail("the message came twice")
        except TimeoutError:
            pass
        assert "error" not in bob.buf
    finally:
        srv.close()


def test_a_waiting_store_does_not_stop_other_users(tmp_path, pg):
    srv = start(tmp_path, pg)
    try:
        for u in ("alice", "bob", "carol", "dave"):
            srv.register(u, "pw")
        bob = srv.login("bob", "pw", resource="b")
        carol = srv.login("carol", "pw", resource="c")
        dave = srv.login("dave", "pw", resource="d")
        for c in (bob, carol, dave):
            c.send("<presence/>")
        lock = TableLock(pg)
        try:
            chat(bob, "alice@localhost", "for later")     # waits on the lock
            t0 = time.time()
            for i in range(20):
                chat(carol, "dave@localhost", f"live {i}")
            dave.read_until(r"live 19</body>", timeout=10)
            elapsed = time.time() - t0
            assert elapsed < 5, elapsed
            assert "offline-stored" not in srv.log("sm")
        finally:
            lock.release()
        assert wait_for(lambda: "event=offline-stored user=alice@localhost" in srv.log("sm"), 10), srv.log("sm")
    finally:
        srv.close()
