"""Group chat across servers (issue 15): weft with weft-muc as a.test
(rooms at conference.a.test) and Debian's Prosody 0.12 with its MUC
component as p.test (rooms at conference.p.test), federated over s2s in
network namespaces built by fed.FedNet (as test_s2s_prosody.py does).

A Prosody user enters a weft room and chats with a weft user in it; a weft
user enters a Prosody room and chats with a Prosody user in it. Each side
reads what the other wrote at its own client.
"""
import shutil

import fed
from fed import CA, FedNet, ProsodyDeployment, WeftDeployment, q

_problem = fed.usable() or (None if shutil.which(fed.PROSODY) else "prosody not installed")
if _problem:
    raise RuntimeError(f"federation tests cannot run: {_problem}")

WEFT_MUC = """<muc>
  <router><address>unix:{dir}/router.sock</address><name>router</name></router>
  <name>muc</name><secret>muc-secret</secret>
  <domain>conference.{domain}</domain>
  <database>{dir}/muc.db</database>
  <log><level>debug</level></log>
</muc>
"""


def test_muc_both_ways_with_prosody(tmp_path):
    net = FedNet(tmp_path, hosts=("a", "p"))
    try:
        ca = CA(tmp_path / "ca")
        ha, hp = net.hosts["a"], net.hosts["p"]
        for name, h in (("a.test", ha), ("conference.a.test", ha), ("p.test", hp), ("conference.p.test", hp)):
            net.add_a(name, h.ip)
        net.start_dns()
        a = WeftDeployment(net, "a", "a.test", ca=ca,
                           router_extra="<component name='muc' secret='muc-secret'><bind>conference.a.test</bind>"
                                        "</component>")
        p = ProsodyDeployment(net, "p", "p.test", ca=ca,
                              extra='Component "conference.p.test" "muc"\n    modules_enabled = { "muc_mam" }\n')
        a.start_all(users=["alice"])
        p.start_all(users=["pat"])
        (a.dir / "muc.xml").write_text(WEFT_MUC.format(dir=a.dir, domain="a.test"))
        muc = net.spawn(ha.name, [a.binary("muc"), "-c", str(a.dir / "muc.xml")], a.dir / "muc.log",
                        cwd=str(a.dir))
        a.procs["muc"] = muc
        assert fed.wait_for(lambda: "event=ready" in a.log("muc"), 20), a.log("muc")
        al, pa = a.client("alice"), p.client("pat")

        # A Prosody user in a weft room.
        al.send("<presence to='w@conference.a.test/Alice'/>")
        al.read_until(r"<subject/>|</subject>")
        pa.send("<presence to='w@conference.a.test/Pat'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        got = q(pa.read_until(r"<subject/>|</subject>", timeout=30))
        assert "from='w@conference.a.test/Alice'" in got and "code='110'" in got
        q(al.read_until(r"<presence[^>]*w@conference.a.test/Pat"))
        pa.send("<message to='w@conference.a.test' type='groupchat'><body>hello from prosody</body></message>")
        m = q(al.read_until(r"hello from prosody</body>[\s\S]*?</message>"))
        assert "from='w@conference.a.test/Pat'" in m
        al.send("<message to='w@conference.a.test' type='groupchat'><body>hello from weft</body></message>")
        q(pa.read_until(r"hello from weft</body>"))

        # A weft user in a Prosody room.
        pa.send("<presence to='pr@conference.p.test/Pat'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        pa.read_until(r"code=.201.|code=.110.")
        pa.send("<iq type='set' to='pr@conference.p.test' id='cfg'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                "<x xmlns='jabber:x:data' type='submit'/></query></iq>")
        pa.read_until(r"id=.cfg.")
        al.send("<presence to='pr@conference.p.test/Alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        got = q(al.read_until(r"<presence[^>]*pr@conference.p.test/Alice[\s\S]*?</presence>", timeout=30))
        assert "code='110'" in got
        al.send("<message to='pr@conference.p.test' type='groupchat'><body>weft in prosody</body></message>")
        q(pa.read_until(r"weft in prosody</body>", timeout=30))
        pa.send("<message to='pr@conference.p.test' type='groupchat'><body>prosody answers</body></message>")
        m = q(al.read_until(r"prosody answers</body>[\s\S]*?</message>", timeout=30))
        assert "from='pr@conference.p.test/Pat'" in m
    finally:
        net.close()
