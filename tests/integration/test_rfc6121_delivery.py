"""RFC 6121 section 8.5 as one table: every stanza type sent by an
independent raw client to a local JID in every recipient state, and what
must happen. The same table is in docs/sm.md ("Inbound routing"); the last
test checks the two agree, so the table is the one statement of the rules.

Each row is sent to the eight columns at once; then every session syncs
(a message to itself through the sm's FIFO) and everything that arrived at
any session is attributed to a cell by stanza id, so a stanza that leaks to a
session it should not reach fails the cell as surely as one that is missing.
Messages stored offline and subscription requests kept for later are checked
at the end by bringing the offline accounts online.
"""
import pathlib
import re
import xml.etree.ElementTree as ET

import pytest

from server import Server
from stanza_client import Session, error_condition, tag

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "sm.md"

# Accounts of the recipient states and their sessions (resource, priority).
ACCOUNTS = {
    "off": [],
    "neg": [("n1", -1), ("n2", -5)],
    "eq": [("e1", 2), ("e2", 2)],
    "uq": [("h", 5), ("l", 1), ("n", -1)],
    "fc": [("h", 5), ("n", -1)],
    "fn": [("h", 5), ("l", 1), ("n", -1)],
    "fo": [],
}

# (key, heading in the doc, 'to' of the stanza)
COLUMNS = [
    ("none", "no account", "nobody@localhost"),
    ("offline", "offline", "off@localhost"),
    ("negative", "only negative (-1, -5)", "neg@localhost"),
    ("equal", "equal (e1 2, e2 2)", "eq@localhost"),
    ("unequal", "unequal (h 5, l 1, n -1)", "uq@localhost"),
    ("full-on", "full, connected (n -1; h 5)", "fc@localhost/n"),
    ("full-gone", "full, not connected (h 5, l 1, n -1)", "fn@localhost/gone"),
    ("full-offline", "full, account offline", "fo@localhost/gone"),
]

ERR = ("<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>")
PAYLOAD = "<q xmlns='urn:example:unknown'/>"

# (row, RFC 6121 sections, stanza template, one cell per column).
# Cells: "SU" the sender gets service-unavailable; "-" silently ignored;
# "store" kept offline (delivered with the next non-negative available
# presence); "kept" subscription request kept (delivered with the next
# available presence); "unsubscribed" the sender gets presence of type
# unsubscribed; otherwise the resources of the recipient that get it.
ROWS = [
    ("message normal", "8.5.1, 8.5.2.1.1, 8.5.2.2.1, 8.5.3.2.1",
     "<message to='{to}' id='{id}'><body>x</body></message>",
     ["SU", "store", "store", "e1 e2", "h", "n", "SU", "SU"]),
    ("message chat", "8.5.1, 8.5.2.1.1, 8.5.2.2.1, 8.5.3.2.1",
     "<message to='{to}' id='{id}' type='chat'><body>x</body></message>",
     ["SU", "store", "store", "e1 e2", "h", "n", "h", "store"]),
    ("message groupchat", "8.5.2.1.1, 8.5.2.2.1, 8.5.3.2.1",
     "<message to='{to}' id='{id}' type='groupchat'><body>x</body></message>",
     ["SU", "SU", "SU", "SU", "SU", "n", "SU", "SU"]),
    ("message headline", "8.5.2.1.1, 8.5.2.2.1, 8.5.3.2.1",
     "<message to='{to}' id='{id}' type='headline'><body>x</body></message>",
     ["SU", "-", "-", "e1 e2", "h l", "n", "-", "-"]),
    ("message error", "8.5.2.1.1, 8.5.2.2.1, 8.5.3.2.1",
     "<message to='{to}' id='{id}' type='error'>" + ERR + "</message>",
     ["-", "-", "-", "-", "-", "n", "-", "-"]),
    ("presence (available)", "8.5.1, 8.5.2.1.2, 8.5.2.2.2, 8.5.3.2.2",
     "<presence to='{to}' id='{id}'/>",
     ["-", "-", "n1 n2", "e1 e2", "h l n", "n", "-", "-"]),
    ("presence unavailable", "8.5.1, 8.5.2.1.2, 8.5.2.2.2, 8.5.3.2.2",
     "<presence to='{to}' id='{id}' type='unavailable'/>",
     ["-", "-", "n1 n2", "e1 e2", "h l n", "n", "-", "-"]),
    # The 'unsubscribed' answer to a stranger's probe goes to the sender's bare
    # JID, where its own roster, with nothing pending, absorbs it (3.4.3).
    ("presence probe", "8.5.1, 4.3.2",
     "<presence to='{to}' id='{id}' type='probe'/>", ["-"] * 8),
    ("presence error", "8.5.3.1, 8.5.3.2.2",
     "<presence to='{to}' id='{id}' type='error'>" + ERR + "</presence>",
     ["-", "-", "-", "-", "-", "n", "-", "-"]),
    # From a stranger, so nothing is pending: 3.2.3, 3.3.3, 3.4.3.
    ("presence subscribed", "8.5.1, 3.2.3",
     "<presence to='{to}' id='{id}' type='subscribed'/>", ["-"] * 8),
    ("presence unsubscribe", "8.5.1, 3.3.3",
     "<presence to='{to}' id='{id}' type='unsubscribe'/>", ["-"] * 8),
    ("presence unsubscribed", "8.5.1, 3.4.3",
     "<presence to='{to}' id='{id}' type='unsubscribed'/>", ["-"] * 8),
    ("presence subscribe", "8.5.1, 3.1.3",
     "<presence to='{to}' id='{id}' type='subscribe'/>",
     ["-", "kept", "n1 n2", "e1 e2", "h l n", "h n", "h l n", "kept"]),
    ("iq get", "8.5.1, 8.5.2.1.3, 8.5.2.2.3, 8.5.3.1, 8.5.3.2.3",
     "<iq to='{to}' id='{id}' type='get'>" + PAYLOAD + "</iq>",
     ["SU", "SU", "SU", "SU", "SU", "n", "SU", "SU"]),
    ("iq set", "8.5.1, 8.5.2.1.3, 8.5.2.2.3, 8.5.3.1, 8.5.3.2.3",
     "<iq to='{to}' id='{id}' type='set'>" + PAYLOAD + "</iq>",
     ["SU", "SU", "SU", "SU", "SU", "n", "SU", "SU"]),
    ("iq result", "RFC 6120 8.2.3 rule 5",
     "<iq to='{to}' id='{id}' type='result'/>",
     ["-", "-", "-", "-", "-", "n", "-", "-"]),
    ("iq error", "RFC 6120 8.3.1",
     "<iq to='{to}' id='{id}' type='error'>" + ERR + "</iq>",
     ["-", "-", "-", "-", "-", "n", "-", "-"]),
]


def cell_id(row, col):
    return re.sub(r"[^a-z0-9]+", "-", f"{row}-{col}")


def doc_table():
    lines = ["| stanza | RFC 6121 section | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for row, sections, _, cells in ROWS:
        lines.append(f"| {row} | {sections} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_docs_show_the_same_table():
    text = DOC.read_text()
    assert doc_table() in text, "docs/sm.md must contain, verbatim:\n" + doc_table()


@pytest.fixture
def world(tmp_path):
    srv = Server(tmp_path).start()
    try:
        srv.register("sender", "pw")
        for acct in ACCOUNTS:
            srv.register(acct, "pw")
        sender = Session(srv.login("sender", "pw", resource="s"))
        sender.presence()
        sessions = {}
        for acct, res in ACCOUNTS.items():
            for r, prio in res:
                s = Session(srv.login(acct, "pw", resource=r))
                s.presence(prio)
                sessions[(acct, r)] = s
        yield srv, sender, sessions
    finally:
        srv.close()


def sync_all(sender, sessions):
    """Waits until the sm has handled everything sent so far. The sm keeps
    one account's stanzas in order, not different accounts': on PostgreSQL
    the check of an account that is not in memory answers later than a
    stanza to another account. So an iq to each column's account (answered
    service-unavailable, after what that account got before it) fences it."""
    fences = []
    for i, bare in enumerate(sorted({to.split("/")[0] for _, _, to in COLUMNS})):
        fid = f"fence-{i}"
        sender.send(f"<iq to='{bare}' id='{fid}' type='get'>{PAYLOAD}</iq>")
        fences.append(fid)
    for fid in fences:
        sender.wait(lambda st, fid=fid: st.get("id") == fid)
    sender.sync()
    for s in sessions.values():
        s.sync()


def test_delivery_table(world):
    srv, sender, sessions = world
    sync_all(sender, sessions)
    for s in sessions.values():
        s.take()
    sender.take()
    failures = []
    for row, _, template, cells in ROWS:
        for (col, _, to), _cell in zip(COLUMNS, cells):
            sender.send(template.format(to=to, id=cell_id(row, col)))
        sync_all(sender, sessions)
        got = {col: {"to": set(), "sender": []} for col, _, _ in COLUMNS}
        by_id = {cell_id(row, col): col for col, _, _ in COLUMNS}
        by_bare = {to.split("/")[0]: col for col, _, to in COLUMNS}
        for (acct, res), s in sessions.items():
            for st in s.take():
                col = by_id.get(st.get("id"))
                if col is None:
                    failures.append(f"{row}: {s.jid} got a stanza of no cell: {ET.tostring(st)[:200]}")
                    continue
                if st.tag.endswith("}message") and st.get("to") != dict((c, t) for c, _, t in COLUMNS)[col]:
                    failures.append(f"{row}/{col}: 'to' rewritten to {st.get('to')}")
                if not col.startswith("full-") and acct != {c: t for c, _, t in COLUMNS}[col].split("@")[0]:
                    failures.append(f"{row}/{col}: reached another account {s.jid}")
                got[col]["to"].add(res)
        for st in sender.take():
            col = by_id.get(st.get("id"))
            if col is None and st.get("type") == "unsubscribed":
                col = by_bare.get(st.get("from"))     # answers a probe or subscribe: no id
            if col is None:
                failures.append(f"{row}: sender got a stanza of no cell: {ET.tostring(st)[:200]}")
                continue
            got[col]["sender"].append(st)
        for (col, _, to), cell in zip(COLUMNS, cells):
            g = got[col]
            want_to = set(cell.split()) if cell not in ("SU", "-", "store", "kept") else set()
            if g["to"] != want_to:
                failures.append(f"{row}/{col}: delivered to {sorted(g['to'])}, want {sorted(want_to)}")
            replies = g["sender"]
            if cell == "SU":
                ok = (len(replies) == 1 and replies[0].get("type") == "error"
                      and error_condition(replies[0]) == "service-unavailable")
            else:
                ok = not replies
            if not ok:
                failures.append(f"{row}/{col}: sender got {[ET.tostring(r)[:160] for r in replies]}, want {cell}")
    # What was stored offline (and the subscription requests kept) arrives
    # with the next available presence of non-negative priority.
    for acct, col in (("off", "offline"), ("neg", "negative"), ("fo", "full-offline")):
        k = [c for c, _, _ in COLUMNS].index(col)
        want = {cell_id(row, col) for row, _, _, cells in ROWS if cells[k] == "store"}
        kept = any(cells[k] == "kept" for _, _, _, cells in ROWS)
        later = Session(srv.login(acct, "pw", resource="later"))
        later.presence(0)
        later.sync()
        msgs = {st.get("id") for st in later.inbox if st.tag == tag("message")}
        subs = [st for st in later.inbox if st.tag == tag("presence") and st.get("type") == "subscribe"]
        if msgs != want:
            failures.append(f"stored for {acct}: {sorted(msgs)}, want {sorted(want)}")
        if kept and not subs:
            failures.append(f"subscription request for {acct} was not kept")
        later.close()
    assert not failures, "\n".join(failures)
