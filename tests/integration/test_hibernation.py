"""XEP-0198 hibernation in c2s (docs/c2s.md, "Hibernation"): a phone
whose network dies without a word is found by its unanswered <r/>
(stream-management.ack-timeout) or by timeouts.idle, and its session
hibernates instead of ending; the sm is told (hibernated / resumed);
resume-timeout is 10 minutes by default; stream-management.max-hibernated
bounds how many wait, the oldest going first with its stanzas back to the
sm (offline storage). Raw XML clients (server.RawClient)."""
import re
import time

import pytest

from conftest import wait_for
from server import Server


@pytest.fixture
def srv(tmp_path):
    s = Server(tmp_path)
    yield s
    s.close()


def resumable(srv, user, resource="phone"):
    c = srv.login(user, "pw", resource=resource)
    c.send("<presence/>")
    # its echo comes before <enable/>: outside the count
    c.read_until(rf"<presence[^>]*from=['\"]{user}@localhost/{resource}['\"]")
    c.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    enabled = c.read_until(r"<enabled[^>]*/>")
    return c, re.search(r"id='([^']+)'", enabled).group(1), enabled


def test_default_resume_timeout_is_ten_minutes(srv):
    srv.start()
    srv.register("ann", "pw")
    _, _, enabled = resumable(srv, "ann")
    assert "max='600'" in enabled, enabled


def test_silent_connection_hibernates_after_ack_timeout(srv):
    """The client stops answering (its socket stays open): once an <r/> has
    waited ack-timeout, the session hibernates; the sm hears of it; the
    client resumes and gets the message it never acknowledged."""
    srv.start(c2s_extra="<stream-management><ack-timeout>2</ack-timeout></stream-management>")
    srv.register("ann", "pw")
    srv.register("bob", "pw")
    ann, previd, _ = resumable(srv, "ann")
    bob = srv.login("bob", "pw", resource="pc")
    t0 = time.time()
    bob.send("<message type='chat' to='ann@localhost/phone'><body>are you there</body></message>")
    ann.read_until(r"<r xmlns='urn:xmpp:sm:3'/>")   # asked, never answered
    assert wait_for(lambda: "event=ack-timeout" in srv.log("c2s"), 10), srv.log("c2s")[-2000:]
    took = time.time() - t0
    assert wait_for(lambda: "event=session-hibernated jid=ann@localhost/phone pending=1" in srv.log("sm"), 5), \
        srv.log("sm")[-2000:]
    assert 2 <= took < 6, took
    ann2 = srv.login("ann", "pw", bind=False)
    ann2.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
    got = ann2.read_until(r"are you there</body>")
    assert "<resumed" in got and got.count("<body>") == 1
    assert wait_for(lambda: "event=session-resumed jid=ann@localhost/phone" in srv.log("sm"), 5)
    # An answered <r/> keeps a session awake.
    ann2.send("<a xmlns='urn:xmpp:sm:3' h='1'/>")
    bob.send("<message type='chat' to='ann@localhost/phone'><body>again</body></message>")
    ann2.read_until(r"again</body>")
    ann2.read_until(r"<r xmlns='urn:xmpp:sm:3'/>")
    ann2.send("<a xmlns='urn:xmpp:sm:3' h='2'/>")
    time.sleep(3.5)
    assert srv.log("c2s").count("event=ack-timeout") == 1


def test_idle_resumable_session_hibernates_instead_of_ending(srv):
    srv.start(c2s_extra="<timeouts><idle>10</idle></timeouts>")
    srv.register("ann", "pw")
    ann, previd, _ = resumable(srv, "ann")
    assert wait_for(lambda: "event=idle-timeout" in srv.log("c2s"), 15), srv.log("c2s")[-2000:]
    assert "result=hibernated" in srv.log("c2s")
    assert "condition=connection-timeout" not in srv.log("c2s")
    assert wait_for(lambda: "event=session-hibernated" in srv.log("sm"), 5)
    ann2 = srv.login("ann", "pw", bind=False)
    ann2.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
    assert "<resumed" in ann2.read_until(r"<resumed[^>]*/>")


def test_max_hibernated_ends_the_oldest(srv):
    srv.start(c2s_extra="<stream-management><max-hibernated>1</max-hibernated></stream-management>")
    srv.register("ann", "pw")
    srv.register("cat", "pw")
    srv.register("bob", "pw")
    ann, ann_id, _ = resumable(srv, "ann")
    cat, cat_id, _ = resumable(srv, "cat")
    bob = srv.login("bob", "pw", resource="pc")
    bob.send("<message type='chat' to='ann@localhost/phone'><body>for ann</body></message>")
    ann.read_until(r"for ann</body>")
    ann.drop()
    assert wait_for(lambda: "event=detached" in srv.log("c2s"), 5)
    time.sleep(0.2)
    cat.drop()
    assert wait_for(lambda: "event=hibernation-evicted" in srv.log("c2s"), 5), srv.log("c2s")[-2000:]
    assert "jid=ann@localhost/phone" in srv.log("c2s").split("event=hibernation-evicted")[1].split("\n")[0]
    # ann's session is gone: resuming fails, and the message she never
    # acknowledged waits in offline storage.
    ann2 = srv.login("ann", "pw", bind=False)
    ann2.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{ann_id}' h='0'/>")
    assert "item-not-found" in ann2.read_until(r"</failed>")
    ann3 = srv.login("ann", "pw", resource="again")
    ann3.send("<presence/>")
    ann3.read_until(r"for ann</body>")
    # cat's still waits.
    cat2 = srv.login("cat", "pw", bind=False)
    cat2.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{cat_id}' h='0'/>")
    assert "<resumed" in cat2.read_until(r"<resumed[^>]*/>")
