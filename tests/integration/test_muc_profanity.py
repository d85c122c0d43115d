"""Group chat with a real client: two Profanity users (libstrophe) under tmux
on weft with weft-muc. Alice creates a room (/join, then accepts the
default configuration), Bob joins, they chat, Alice sets the subject and
kicks Bob; each step is read off the other user's screen."""
import re
import shutil

import pytest

from conftest import wait_for
from muc_env import MucServer
from test_profanity import Profanity

pytestmark = pytest.mark.skipif(not shutil.which("profanity") or not shutil.which("tmux"),
                                reason="profanity and tmux are installed by scripts/deps.sh")


def test_profanity_create_join_chat_subject_kick(tmp_path):
    srv = MucServer(tmp_path).start()
    srv.register("alice", "alice-pw")
    srv.register("bob", "bob-pw")
    a, b = Profanity(tmp_path, "a"), Profanity(tmp_path, "b")
    try:
        a.connect("alice@localhost", "alice-pw", srv.port)
        b.connect("bob@localhost", "bob-pw", srv.port)
        a.type("/join tea@conference.localhost nick alice")
        a.wait("Room locked")                         # a reserved room: Profanity asks
        a.type("/room accept")
        assert wait_for(lambda: "event=room-configured room=tea@conference.localhost" in srv.log("muc"), 15)
        b.type("/join tea@conference.localhost nick bob")
        # The occupant list at the side of Alice's room window shows Bob.
        assert wait_for(lambda: re.search(r"Participants[\s\S]*\bbob\b", a.screen()), 15, 0.2), a.screen()
        b.type("hello from bob")
        a.wait("hello from bob")
        a.type("hi bob, from alice")
        b.wait("hi bob, from alice")
        a.type("/subject set Tea time")
        b.wait("Tea time")
        a.type("/kick bob too much tea")
        b.wait("Kicked from tea@conference.localhost")
        a.wait("bob has been kicked from the room")
        assert "event=occupant-removed room=tea@conference.localhost nick=bob code=307" in srv.log("muc")
    finally:
        a.close()
        b.close()
        srv.close()
