"""weftctl through the storage drivers: account commands that find the
storage in sm.xml (<storage> URL or <database> file) or --storage, `migrate`
between SQLite and a PostgreSQL server of the test's own and back (checked
row by row with Python's sqlite3, then by a client logging in to an sm on the
migrated file and getting its offline message), and weft-sm's clear refusal
of a postgresql URL while its modules still call storage synchronously."""
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import BUILD, wait_for
from server import Server

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from pg_server import PgServer  # noqa: E402

WEFTCTL = os.path.join(BUILD, "tools", "weftctl")


def weftctl(*args, stdin=None, cwd=None):
    return subprocess.run([WEFTCTL, *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=60, cwd=cwd)


@pytest.fixture(scope="module")
def pg():
    try:
        server = PgServer()
    except FileNotFoundError as e:
        pytest.fail(f"PostgreSQL server missing (scripts/deps.sh installs it): {e}")
    server.start()
    yield server
    server.stop()


def fresh_pg_db(pg, name):
    """An empty database of its own on the test server."""
    subprocess.run(["psql", "-q", "-h", pg.dir, "-p", str(pg.port), "-U", "weft", "-d", "weft",
                    "-c", f"DROP DATABASE IF EXISTS {name}", "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True)
    return pg.url(name)


def dump(path):
    """Every account and record of an SQLite file, as tuples."""
    db = sqlite3.connect(path)
    users = db.execute("SELECT bare, sha256, sha1, created FROM users ORDER BY bare").fetchall()
    # Log collections (mam, muc-archive) have tables of their own
    # (docs/storage.md, "Log collections"): read back as records, a row
    # that shares its base's tail with it joined on ("Shared tails").
    recs = db.execute("SELECT seq, owner, coll, key, value, stamp, tag FROM records UNION ALL"
                      " SELECT l.seq, s.owner, s.coll, l.key, CASE WHEN l.base IS NULL THEN l.value"
                      " ELSE CAST(l.value || substr(b.value, l.base_at + 1) AS BLOB) END,"
                      " l.stamp, t.tag FROM logs l"
                      " JOIN log_streams s ON s.id = l.stream LEFT JOIN log_tags t ON t.id = l.tag"
                      " LEFT JOIN logs b ON b.seq = l.base ORDER BY 1").fetchall()
    db.close()
    return users, recs


def test_accounts_from_sm_xml_and_storage_option(tmp_path):
    db = tmp_path / "data" / "w.db"
    (tmp_path / "sm.xml").write_text(f"<sm><storage>sqlite:{db}</storage></sm>")
    r = weftctl("-c", tmp_path / "sm.xml", "adduser", "ann@localhost", "pw1")
    assert r.returncode == 0, r.stderr
    assert db.exists()
    r = weftctl("-c", tmp_path / "sm.xml", "adduser", "ann@localhost", "pw1")
    assert r.returncode == 3 and "already exists" in r.stderr
    assert weftctl("--storage", f"sqlite:{db}", "listusers").stdout == "ann@localhost\n"
    # The older <database> element still names the file.
    (tmp_path / "old.xml").write_text(f"<sm><database>{db}</database></sm>")
    assert weftctl("-c", tmp_path / "old.xml", "passwd", "ann@localhost", "pw2").returncode == 0
    # Without -c, etc/sm.xml of the working directory is read.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "sm.xml").write_text(f"<sm><storage>{db}</storage></sm>")
    assert weftctl("listusers", cwd=tmp_path).stdout == "ann@localhost\n"
    assert weftctl("-c", tmp_path / "sm.xml", "deluser", "ann@localhost").returncode == 0
    assert weftctl("-d", db, "listusers").stdout == ""
    # Unknown scheme, broken config: clear failures.
    r = weftctl("--storage", "mongodb://x", "listusers")
    assert r.returncode == 1 and 'unknown storage driver "mongodb"' in r.stderr
    (tmp_path / "bad.xml").write_text("<sm><storage>")
    r = weftctl("-c", tmp_path / "bad.xml", "listusers")
    assert r.returncode == 1 and "bad.xml" in r.stderr


def test_accounts_on_postgresql(pg):
    url = fresh_pg_db(pg, "accounts")
    assert weftctl("--storage", url, "adduser", "bob@localhost", "pw").returncode == 0
    assert weftctl("--storage", url, "adduser", "al@localhost", "pw").returncode == 0
    assert weftctl("--storage", url, "listusers").stdout == "al@localhost\nbob@localhost\n"
    assert weftctl("--storage", url, "deluser", "bob@localhost").returncode == 0
    r = weftctl("--storage", url, "deluser", "bob@localhost")
    assert r.returncode == 3
    assert weftctl("--storage", url, "listusers").stdout == "al@localhost\n"


def test_migrate_sqlite_postgresql_sqlite(tmp_path, pg):
    # Real data: two accounts registered in-band, an offline message stored by
    # the sm, plus records of every shape written beside them.
    srv = Server(tmp_path)
    try:
        srv.start()
        srv.register("carl", "pw")
        srv.register("dora", "pw")
        d = srv.login("dora", "pw")
        d.send("<message to='carl@localhost' type='chat'><body>kept across drivers</body></message>")
        assert wait_for(lambda: (tmp_path / "weft.db").exists() and
                        sum(r[2] == "mam" for r in dump(tmp_path / "weft.db")[1]) == 2, 10)
        d.close()
    finally:
        srv.close()
    src = tmp_path / "weft.db"
    db = sqlite3.connect(src)
    # Values are blobs, as the driver writes them: binary, XML and empty.
    db.executemany("INSERT INTO records (owner, coll, key, value, stamp) VALUES (?, ?, ?, ?, ?)",
                   [("carl@localhost", "vcard", "", b"\x00\xff\x00", 7),
                    ("dora@localhost", "roster", "carl@localhost", b"<item/>", 8),
                    ("localhost", "service", "k", b"", 9)])
    db.commit()
    db.close()
    users, recs = dump(src)
    # The sm's own records (offline message, last activity, ...) and ours.
    assert len(users) == 2 and len(recs) >= 4
    # The message is archived for both, each record tagged with the other
    # (mod_mam): tags must survive the round trip too.
    assert sorted((r[1], r[6]) for r in recs if r[2] == "mam") == \
        [("carl@localhost", "dora@localhost"), ("dora@localhost", "carl@localhost")]
    n = len(recs)

    url = fresh_pg_db(pg, "migrated")
    r = weftctl("migrate", f"sqlite:{src}", url)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"migrated accounts=2 records={n} from=sqlite to=postgresql\n"
    assert weftctl("--storage", url, "listusers").stdout == "carl@localhost\ndora@localhost\n"
    # A second copy into the now full database is refused, nothing changes.
    r = weftctl("migrate", f"sqlite:{src}", url)
    assert r.returncode == 1 and f"not empty (2 accounts, {n} records)" in r.stderr

    back = tmp_path / "back" / "weft.db"
    r = weftctl("migrate", url, back)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"migrated accounts=2 records={n} from=postgresql to=sqlite\n"
    assert dump(back) == (users, recs)

    # An sm on the round-tripped file serves the same users and data.
    os.replace(back, src)
    for suffix in ("-wal", "-shm"):
        try:
            os.unlink(str(src) + suffix)
        except FileNotFoundError:
            pass
    srv2 = Server(tmp_path)
    try:
        srv2.start()
        c = srv2.login("carl", "pw")
        c.send("<presence/>")
        assert "kept across drivers" in c.read_until(r"kept across drivers</body>")
        c.close()
    finally:
        srv2.close()


def test_migrate_missing_source_fails(tmp_path):
    r = weftctl("migrate", tmp_path / "none.db", tmp_path / "to.db")
    assert r.returncode == 1 and "no database at" in r.stderr
    assert not (tmp_path / "to.db").exists()


def test_sm_runs_on_postgresql(tmp_path, pg):
    """weft-sm takes a postgresql URL (it refused one while its modules
    called the blocking storage functions): an account registered and a
    vCard stored through the server are in the database, as weftctl reads
    it through the driver."""
    url = fresh_pg_db(pg, "smrun")
    srv = Server(tmp_path)
    try:
        srv.start(sm_extra=f"<storage>{url.replace('&', '&amp;')}</storage>")
        assert wait_for(lambda: "event=storage driver=postgresql" in srv.log("sm"), 10), srv.log("sm")
        srv.register("pia", "pw")
        c = srv.login("pia", "pw")
        c.send("<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Pia</FN></vCard></iq>")
        r = c.read_until(r"<iq[^>]*id=['\"]v1['\"][\s\S]*?(/>|</iq>)")
        assert "type='result'" in r or 'type="result"' in r, r
        c.close()
    finally:
        srv.close()
    assert weftctl("--storage", url, "listusers").stdout == "pia@localhost\n"
    assert not (tmp_path / "weft.db").exists()


def test_sm_storage_url_wins_over_database(tmp_path):
    """sm.xml's <storage> URL names the database the sm uses; weftctl -c
    reads the same setting and sees the account the sm created."""
    other = tmp_path / "elsewhere" / "data.db"
    srv = Server(tmp_path)
    try:
        srv.start(sm_extra=f"<storage>sqlite:{other}</storage>")
        srv.register("erin", "pw")
        srv.login("erin", "pw").close()
        assert other.exists()
        assert not (tmp_path / "weft.db").exists()
        r = weftctl("-c", tmp_path / "sm.xml", "listusers")
        assert r.returncode == 0 and r.stdout == "erin@localhost\n", r.stderr
    finally:
        srv.close()
