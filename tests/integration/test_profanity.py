"""Smoke path with a real client: Profanity (libstrophe) under tmux, as a user
would: log in over STARTTLS with SCRAM-SHA-256, add the other account, see each
other's presence, chat, and get a message sent while offline."""
import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import wait_for
from server import Server

pytestmark = pytest.mark.skipif(not shutil.which("profanity") or not shutil.which("tmux"),
                                reason="profanity and tmux are installed by scripts/deps.sh")


class Profanity:
    def __init__(self, tmp_path, name):
        self.sock = f"weft-{uuid.uuid4().hex[:8]}"
        self.home = tmp_path / f"home-{name}"
        self.home.mkdir()
        env = dict(os.environ, HOME=str(self.home), TERM="xterm")
        self.tmux(["new-session", "-d", "-s", "p", "-x", "200", "-y", "50", "profanity"], env=env)
        self.wait("Type '/help' to show complete help.")   # up and reading input

    def tmux(self, args, env=None):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True,
                              env=env, timeout=10).stdout

    def type(self, line):
        self.tmux(["send-keys", "-t", "p", line, "Enter"])

    def screen(self):
        return self.tmux(["capture-pane", "-t", "p", "-p", "-S", "-200"])

    def wait(self, text, timeout=15):
        assert wait_for(lambda: text in self.screen(), timeout, 0.2), self.screen()[-3000:]

    def wait_roster(self, line, timeout=15):
        """Waits until /roster lists `line`. /roster prints the client's roster as
        it stands when the command runs and never asks the server again, so the
        roster push for the step just taken may still be on its way: print it
        again until the newest printout shows the line (which only a push from
        the server can put there)."""
        def shown():
            scr = self.screen()
            i = scr.rfind("Roster: jid")
            return i >= 0 and line in scr[i:]
        end = time.time() + timeout
        while time.time() < end:
            self.type("/roster")
            if wait_for(shown, 1, 0.1):
                return
        assert shown(), self.screen()[-3000:]

    def connect(self, jid, password, port):
        self.type(f"/connect {jid} server 127.0.0.1 port {port} tls force")
        self.wait("Enter password")
        self.type(password)
        self.wait("/tls always")
        self.type("/tls always")
        self.wait("logged in successfully")

    def close(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def test_profanity_users_subscribe_see_presence_chat_and_get_offline_messages(srv, tmp_path):
    srv.start()
    srv.register("alice", "alice-pw")
    srv.register("bob", "bob-pw")
    a, b = Profanity(tmp_path, "a"), Profanity(tmp_path, "b")
    try:
        a.connect("alice@localhost", "alice-pw", srv.port)
        b.connect("bob@localhost", "bob-pw", srv.port)
        assert "user=alice@localhost mechanism=SCRAM-SHA-256 tls=1" in srv.log("c2s")

        a.type("/roster add bob@localhost")
        a.type("/sub request bob@localhost")
        b.wait("Received authorization request from alice@localhost")
        b.type("/sub allow alice@localhost")
        b.type("/sub request alice@localhost")
        a.wait("Received authorization request from bob@localhost")
        a.type("/sub allow bob@localhost")
        a.wait("bob@localhost (")            # bob's presence arrives
        a.wait_roster("bob@localhost - both")
        b.wait_roster("alice@localhost - both")

        a.type("/msg bob@localhost hello bob from profanity")
        b.wait("chat message: alice@localhost")
        b.type("/msg alice@localhost hello alice")
        a.wait("hello alice")

        b.type("/disconnect")
        a.wait("bob@localhost has left")
        a.type("/msg bob@localhost sent while you were away")
        assert wait_for(lambda: "event=offline-stored user=bob@localhost" in srv.log("sm"), 15), srv.log("sm")
        before = b.screen().count("chat message: alice@localhost")
        b.type("/connect bob@localhost server 127.0.0.1 port %d tls force" % srv.port)
        b.wait("Enter password")
        b.type("bob-pw")
        b.wait("logged in successfully, online")
        # The stored message arrives once bob's presence is out.
        assert wait_for(lambda: b.screen().count("chat message: alice@localhost") > before, 15, 0.2), b.screen()
        b.type("/win 2")
        b.wait("sent while you were away")
    finally:
        a.close()
        b.close()
