"""PEP explicit subscriptions and affiliations (XEP-0060 5.6, 5.7, 6.1, 6.2,
8.8, 8.9) end to end with slixmpp as the independent client: subscribe and
unsubscribe under each access model with the errors of 6.1.3, notifications
to a subscriber without +notify caps, the owner's subscription and
affiliation lists and changes, whitelist access by member affiliation,
outcasts refused, publishers publishing, limits, the end of a presence
subscription ending the PEP one, persistence across an sm restart and
removal with the node. docs/pep.md describes the rules.
"""
import asyncio
import time

import pytest

pytest.importorskip("slixmpp")
from slixmpp.exceptions import IqError  # noqa: E402

from test_pep import (NODE, PS, PSE, PSO, befriend, close, connect, event_items, form, iq, iq_error,  # noqa: E402
                      items, next_event, no_event, publish, publish_xml, run, start)

ALICE = "alice@localhost"


@pytest.fixture
def server(tmp_path):
    s = start(tmp_path)
    yield s
    s.close()


def sub_xml(node, jid, what="subscribe"):
    return f"<pubsub xmlns='{PS}'><{what} node='{node}' jid='{jid}'/></pubsub>"


async def raw_error(x, xml, to=None):
    """The error conditions straight from the XML (slixmpp does not know
    RFC 6120's policy-violation): (defined condition, pubsub#errors one)."""
    with pytest.raises(IqError) as ei:
        await iq(x, xml, to)
    err = ei.value.iq.xml.find("{jabber:client}error")
    names = {c.tag.split("}")[0][1:]: c.tag.split("}")[1] for c in err}
    return names.get("urn:ietf:params:xml:ns:xmpp-stanzas"), names.get(PS + "#errors")


async def subscribe(x, node, jid=None):
    """Subscribes jid (x's bare JID by default) to alice's node: the state."""
    r = await iq(x, sub_xml(node, jid or x.boundjid.bare), to=ALICE)
    s = r.xml.find(f"{{{PS}}}pubsub/{{{PS}}}subscription")
    return s.get("node"), s.get("jid"), s.get("subscription")


async def owner_list(a, node, what):
    """The owner's subscriptions or affiliations of node: {jid: state}."""
    r = await iq(a, f"<pubsub xmlns='{PSO}'><{what} node='{node}'/></pubsub>", type_="get")
    el = r.xml.find(f"{{{PSO}}}pubsub/{{{PSO}}}{what}")
    key = "subscription" if what == "subscriptions" else "affiliation"
    return {c.get("jid"): c.get(key) for c in el.findall(f"{{{PSO}}}{key}")}


async def set_affiliation(a, node, jid, aff):
    await iq(a, f"<pubsub xmlns='{PSO}'><affiliations node='{node}'>"
                f"<affiliation jid='{jid}' affiliation='{aff}'/></affiliations></pubsub>")


async def make_node(a, node, access):
    await iq(a, f"<pubsub xmlns='{PS}'><create node='{node}'/><configure>"
                f"{form('node_config', access_model=access)}</configure></pubsub>")


def test_subscriber_without_caps_gets_notifications_until_unsubscribe(server):
    """A contact whose client announces no +notify subscribes its bare JID:
    the result says subscribed, the last item follows, each publish reaches
    it once (also when a resource has the caps interest), and unsubscribe
    stops them; a second unsubscribe is unexpected-request + not-subscribed."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        await befriend(a, b)
        await publish(a, NODE, "t0", "before")
        await no_event(b, 0.3)
        assert await subscribe(b, NODE) == (NODE, "bob@localhost", "subscribed")
        frm, _, ev = await next_event(b)
        assert frm == ALICE and event_items(ev) == (NODE, [("t0", "before")])
        await publish(a, NODE, "t1", "one")
        _, _, ev = await next_event(b)
        assert event_items(ev) == (NODE, [("t1", "one")])
        # a resource of bob with +notify: still one notification each
        b2 = await connect(server, "bob@localhost/phone", notify=[NODE])
        await asyncio.sleep(0.3)
        while not b2.events.empty():
            b2.events.get_nowait()                # the last item on coming online
        await publish(a, NODE, "t2", "two")
        for x in (b, b2):
            _, _, ev = await next_event(x)
            assert event_items(ev) == (NODE, [("t2", "two")])
            await no_event(x, 0.5)
        await iq(b, sub_xml(NODE, "bob@localhost", "unsubscribe"), to=ALICE)
        await close(b2)
        await publish(a, NODE, "t3", "three")
        await no_event(b, 1.0)
        assert await iq_error(b, sub_xml(NODE, "bob@localhost", "unsubscribe"), ALICE) == \
            ("unexpected-request", "not-subscribed")
        await close(a, b)
    run(main())


def test_subscribe_errors_by_access_model(server):
    """6.1.3: a stranger is refused by presence (not-authorized +
    presence-subscription-required), roster (not-in-roster-group) and
    whitelist (not-allowed + closed-node) nodes and may subscribe to an open
    one; a missing node is item-not-found, another entity's JID is
    bad-request + invalid-jid. Disco advertises what is implemented."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        e = await connect(server, "eve@localhost/pc")
        for node, access in (("p", "presence"), ("r", "roster"), ("w", "whitelist"), ("o", "open")):
            await make_node(a, node, access)
        assert await iq_error(e, sub_xml("p", "eve@localhost"), ALICE) == \
            ("not-authorized", "presence-subscription-required")
        assert await iq_error(e, sub_xml("r", "eve@localhost"), ALICE) == ("not-authorized", "not-in-roster-group")
        assert await iq_error(e, sub_xml("w", "eve@localhost"), ALICE) == ("not-allowed", "closed-node")
        assert await iq_error(e, sub_xml("nowhere", "eve@localhost"), ALICE) == ("item-not-found", None)
        assert await iq_error(e, sub_xml("o", "bob@localhost"), ALICE) == ("bad-request", "invalid-jid")
        assert await subscribe(e, "o", "eve@localhost/pc") == ("o", "eve@localhost/pc", "subscribed")
        await publish(a, "o", "1", "open item")
        frm, to, ev = await next_event(e)
        assert to == "eve@localhost/pc" and event_items(ev) == ("o", [("1", "open item")])
        # 5.6 / 5.7: eve's own subscriptions and (no) affiliations
        r = await iq(e, f"<pubsub xmlns='{PS}'><subscriptions/></pubsub>", to=ALICE, type_="get")
        subs = r.xml.findall(f"{{{PS}}}pubsub/{{{PS}}}subscriptions/{{{PS}}}subscription")
        assert [(s.get("node"), s.get("jid"), s.get("subscription")) for s in subs] == \
            [("o", "eve@localhost/pc", "subscribed")]
        r = await iq(e, f"<pubsub xmlns='{PS}'><affiliations/></pubsub>", to=ALICE, type_="get")
        assert r.xml.findall(f"{{{PS}}}pubsub/{{{PS}}}affiliations/{{{PS}}}affiliation") == []
        # only the owner manages
        assert (await iq_error(e, f"<pubsub xmlns='{PSO}'><subscriptions node='o'/></pubsub>", ALICE,
                               "get"))[0] == "forbidden"
        feats = (await a["xep_0030"].get_info(jid=ALICE))["disco_info"]["features"]
        for f in ("subscribe", "retrieve-subscriptions", "retrieve-affiliations", "manage-subscriptions",
                  "modify-affiliations", "member-affiliation", "outcast-affiliation", "publisher-affiliation"):
            assert f"{PS}#{f}" in feats, f
        assert f"{PS}#subscription-options" not in feats
        await close(a, e)
    run(main())


def test_whitelist_member_and_outcast(server):
    """A whitelist node admits members (subscribe and items), lists them to
    the owner and to themselves; an outcast is refused everything, its
    subscription ends and it gets no notification; the account's own
    affiliation cannot be changed."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        await befriend(a, b)
        await make_node(a, "w", "whitelist")
        await publish(a, "w", "1", "secret")
        assert await iq_error(b, sub_xml("w", "bob@localhost"), ALICE) == ("not-allowed", "closed-node")
        await set_affiliation(a, "w", "bob@localhost", "member")
        assert await owner_list(a, "w", "affiliations") == {ALICE: "owner", "bob@localhost": "member"}
        r = await iq(b, f"<pubsub xmlns='{PS}'><affiliations/></pubsub>", to=ALICE, type_="get")
        affs = r.xml.findall(f"{{{PS}}}pubsub/{{{PS}}}affiliations/{{{PS}}}affiliation")
        assert [(x.get("node"), x.get("affiliation")) for x in affs] == [("w", "member")]
        assert await items(b, ALICE, "w") == [("1", "secret")]
        await subscribe(b, "w")
        await next_event(b)                       # the last item
        await publish(a, "w", "2", "more")
        _, _, ev = await next_event(b)
        assert event_items(ev) == ("w", [("2", "more")])
        await set_affiliation(a, "w", "bob@localhost", "outcast")
        assert await owner_list(a, "w", "subscriptions") == {}
        await publish(a, "w", "3", "not for bob")
        await no_event(b, 1.0)
        assert (await iq_error(b, f"<pubsub xmlns='{PS}'><items node='w'/></pubsub>", ALICE, "get"))[0] == \
            "forbidden"
        assert (await iq_error(b, sub_xml("w", "bob@localhost"), ALICE))[0] == "forbidden"
        # an outcast is refused on an open node too
        await make_node(a, "o", "open")
        await set_affiliation(a, "o", "bob@localhost", "outcast")
        assert (await iq_error(b, sub_xml("o", "bob@localhost"), ALICE))[0] == "forbidden"
        await set_affiliation(a, "w", "bob@localhost", "none")
        assert await owner_list(a, "w", "affiliations") == {ALICE: "owner"}
        assert await iq_error(b, sub_xml("w", "bob@localhost"), ALICE) == ("not-allowed", "closed-node")
        with pytest.raises(IqError) as ei:
            await set_affiliation(a, "w", ALICE, "member")
        assert ei.value.iq["error"]["condition"] == "not-acceptable"
        with pytest.raises(IqError) as ei:
            await set_affiliation(a, "w", "bob@localhost", "admin")
        assert ei.value.iq["error"]["condition"] == "not-acceptable"
        await close(a, b)
    run(main())


def test_publish_only_affiliation(server):
    """XEP-0060 4.1: a publish-only JID publishes to the owner's node and
    retracts what it published, not the owner's items (nor replaces them by
    publishing under their id); it may neither read
    the items nor subscribe (forbidden), even on an open node, and gets no
    notification. The affiliation is listed and advertised."""
    async def main():
        a = await connect(server, "alice@localhost/pc", notify=[NODE])
        b = await connect(server, "bob@localhost/pc", notify=[NODE])
        await befriend(a, b)
        await publish(a, NODE, "own", "the owner's", access_model="open", max_items="10")
        await next_event(a)
        await next_event(b)
        await set_affiliation(a, NODE, "bob@localhost", "publish-only")
        assert await owner_list(a, NODE, "affiliations") == {ALICE: "owner", "bob@localhost": "publish-only"}
        await iq(b, publish_xml(NODE, "bobs", "from bob"), to=ALICE)
        _, _, ev = await next_event(a)
        assert event_items(ev) == (NODE, [("bobs", "from bob")])
        await no_event(b, 0.5)                     # not a reader: no notification
        assert (await iq_error(b, f"<pubsub xmlns='{PS}'><items node='{NODE}'/></pubsub>", ALICE, "get"))[0] == \
            "forbidden"
        assert (await iq_error(b, sub_xml(NODE, "bob@localhost"), ALICE))[0] == "forbidden"
        retract = "<pubsub xmlns='{ps}'><retract node='{node}'><item id='{id}'/></retract></pubsub>"
        assert (await iq_error(b, retract.format(ps=PS, node=NODE, id="own"), ALICE))[0] == "forbidden"
        # nor replace it by publishing under its id
        assert (await iq_error(b, publish_xml(NODE, "own", "overwritten"), ALICE))[0] == "forbidden"
        await iq(b, retract.format(ps=PS, node=NODE, id="bobs"), to=ALICE)
        assert await items(a, None, NODE) == [("own", "the owner's")]
        # purge stays the owner's (4.1: No for publish-only)
        assert (await iq_error(b, f"<pubsub xmlns='{PSO}'><purge node='{NODE}'/></pubsub>", ALICE))[0] == \
            "forbidden"
        feats = (await a["xep_0030"].get_info(jid=ALICE))["disco_info"]["features"]
        assert PS + "#publish-only-affiliation" in feats
        await close(a, b)
    run(main())


def test_roster_groups_allowed(server):
    """XEP-0060 4.5: a roster node lets in the contacts in its
    roster_groups_allowed (list-multi in the configure form, stored, checked
    as a publish-options precondition); a contact in another group is
    refused (not-authorized + not-in-roster-group) and gets no notification
    nor last item; with no group, only the owner reads. Moving the contact
    into the group lets it in."""
    async def main():
        a = await connect(server, "alice@localhost/pc", notify=[NODE])
        b = await connect(server, "bob@localhost/pc", notify=[NODE])
        e = await connect(server, "eve@localhost/pc", notify=[NODE])
        await befriend(a, b)
        await befriend(a, e)
        await a.update_roster("bob@localhost", groups=["Friends"])
        await a.update_roster("eve@localhost", groups=["Work"])
        await asyncio.sleep(0.5)
        groups = ("<field var='pubsub#roster_groups_allowed'><value>Friends</value>"
                  "<value>Family</value></field>")
        cfg = form("node_config", access_model="roster").replace("</x>", groups + "</x>")
        await iq(a, f"<pubsub xmlns='{PS}'><create node='{NODE}'/><configure>{cfg}</configure></pubsub>")
        r = await iq(a, f"<pubsub xmlns='{PSO}'><configure node='{NODE}'/></pubsub>", type_="get")
        f = [x for x in r.xml.iter("{jabber:x:data}field") if x.get("var") == "pubsub#roster_groups_allowed"]
        assert f[0].get("type") == "list-multi"
        assert sorted(v.text for v in f[0].findall("{jabber:x:data}value")) == ["Family", "Friends"]
        await publish(a, NODE, "1", "for friends")
        for x in (a, b):
            _, _, ev = await next_event(x)
            assert event_items(ev) == (NODE, [("1", "for friends")])
        await no_event(e, 0.5)
        assert await items(b, ALICE, NODE) == [("1", "for friends")]
        assert await iq_error(e, f"<pubsub xmlns='{PS}'><items node='{NODE}'/></pubsub>", ALICE, "get") == \
            ("not-authorized", "not-in-roster-group")
        assert await iq_error(e, sub_xml(NODE, "eve@localhost"), ALICE) == ("not-authorized", "not-in-roster-group")
        # publish-options: the groups are a precondition (any order)
        po = form("publish-options", access_model="roster").replace(
            "</x>", "<field var='pubsub#roster_groups_allowed'><value>Family</value><value>Friends</value>"
                    "</field></x>")
        await iq(a, f"<pubsub xmlns='{PS}'><publish node='{NODE}'><item id='2'><tune xmlns='{NODE}'>"
                    f"<title>two</title></tune></item></publish><publish-options>{po}</publish-options></pubsub>")
        await next_event(b)
        assert await iq_error(a, publish_xml(NODE, "3", "x", access_model="roster", roster_groups_allowed="Work")) \
            == ("conflict", "precondition-not-met")
        # eve's client coming online again gets no last item; moved into Friends, she reads
        await close(e)
        e = await connect(server, "eve@localhost/pc", notify=[NODE])
        await no_event(e, 0.5)
        await a.update_roster("eve@localhost", groups=["Friends"])
        await asyncio.sleep(0.5)
        assert await items(e, ALICE, NODE) == [("2", "two")]
        # no group at all: only the owner (and affiliates) read
        await iq(a, f"<pubsub xmlns='{PSO}'><configure node='{NODE}'>"
                    f"{form('node_config', roster_groups_allowed='')}</configure></pubsub>")
        assert await iq_error(b, f"<pubsub xmlns='{PS}'><items node='{NODE}'/></pubsub>", ALICE, "get") == \
            ("not-authorized", "not-in-roster-group")
        assert await items(a, None, NODE) == [("2", "two")]
        await close(a, b, e)
    run(main())


def test_publisher_affiliation_publishes(server):
    """A publisher publishes and retracts on the owner's node (the event
    comes from the owner's JID); a member may not; nobody but the owner
    creates nodes."""
    async def main():
        a = await connect(server, "alice@localhost/pc", notify=[NODE])
        b = await connect(server, "bob@localhost/pc")
        e = await connect(server, "eve@localhost/pc")
        await make_node(a, NODE, "open")
        await set_affiliation(a, NODE, "bob@localhost", "publisher")
        await set_affiliation(a, NODE, "eve@localhost", "member")
        await iq(b, f"<pubsub xmlns='{PS}'><publish node='{NODE}'><item id='b1'>"
                    f"<tune xmlns='{NODE}'><title>by bob</title></tune></item></publish></pubsub>", to=ALICE)
        frm, _, ev = await next_event(a)
        assert frm == ALICE and event_items(ev) == (NODE, [("b1", "by bob")])
        assert (await iq_error(e, f"<pubsub xmlns='{PS}'><publish node='{NODE}'><item id='e1'>"
                                  f"<tune xmlns='{NODE}'/></item></publish></pubsub>", ALICE))[0] == "forbidden"
        assert (await iq_error(b, f"<pubsub xmlns='{PS}'><create node='bobs'/></pubsub>", ALICE))[0] == "forbidden"
        await iq(b, f"<pubsub xmlns='{PS}'><retract node='{NODE}'><item id='b1'/></retract></pubsub>", to=ALICE)
        assert await items(a, None, NODE) == []
        await close(a, b, e)
    run(main())


def test_owner_manages_subscriptions(server):
    """8.8: the owner subscribes an entity the access model allows, lists
    and removes it; a 'subscribed' the access model refuses, or a bad
    state, is not-acceptable and changes nothing."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        e = await connect(server, "eve@localhost/pc")
        await make_node(a, "o", "open")
        await make_node(a, "p", "presence")
        await iq(a, f"<pubsub xmlns='{PSO}'><subscriptions node='o'>"
                    f"<subscription jid='eve@localhost' subscription='subscribed'/></subscriptions></pubsub>")
        assert await owner_list(a, "o", "subscriptions") == {"eve@localhost": "subscribed"}
        await publish(a, "o", "1", "x")
        _, _, ev = await next_event(e)
        assert event_items(ev) == ("o", [("1", "x")])
        for bad in ("<subscription jid='eve@localhost' subscription='subscribed'/>",
                    "<subscription jid='eve@localhost' subscription='pending'/>"):
            with pytest.raises(IqError) as ei:
                await iq(a, f"<pubsub xmlns='{PSO}'><subscriptions node='p'>{bad}</subscriptions></pubsub>")
            assert ei.value.iq["error"]["condition"] == "not-acceptable"
        assert await owner_list(a, "p", "subscriptions") == {}
        await iq(a, f"<pubsub xmlns='{PSO}'><subscriptions node='o'>"
                    f"<subscription jid='eve@localhost' subscription='none'/></subscriptions></pubsub>")
        assert await owner_list(a, "o", "subscriptions") == {}
        await publish(a, "o", "2", "y")
        await no_event(e, 1.0)
        await close(a, e)
    run(main())


def test_presence_subscription_end_removes_pep_subscription(server):
    """When the owner cancels a contact's presence subscription, its
    subscription to a presence-model node ends (and to an open node stays)."""
    async def main():
        a = await connect(server, "alice@localhost/pc")
        b = await connect(server, "bob@localhost/pc")
        await befriend(a, b)
        await make_node(a, "p", "presence")
        await make_node(a, "o", "open")
        await subscribe(b, "p")
        await subscribe(b, "o")
        a.send_presence(pto="bob@localhost", ptype="unsubscribed")
        await asyncio.sleep(1.0)
        assert await owner_list(a, "p", "subscriptions") == {}
        assert await owner_list(a, "o", "subscriptions") == {"bob@localhost": "subscribed"}
        await publish(a, "p", "1", "private")
        await no_event(b, 1.0)
        await close(a, b)
    run(main())


def test_limits(tmp_path):
    """max-subscriptions and max-affiliations per node: past them
    policy-violation + too-many-subscriptions and not-acceptable."""
    s = start(tmp_path, sm_extra="<module name='pep'><max-subscriptions>1</max-subscriptions>"
                                 "<max-affiliations>1</max-affiliations></module>")

    async def main():
        a = await connect(s, "alice@localhost/pc")
        b = await connect(s, "bob@localhost/pc")
        e = await connect(s, "eve@localhost/pc")
        await make_node(a, "o", "open")
        await subscribe(b, "o")
        assert await raw_error(e, sub_xml("o", "eve@localhost"), ALICE) == \
            ("policy-violation", "too-many-subscriptions")
        await subscribe(b, "o")                   # the same subscription again is fine
        await set_affiliation(a, "o", "bob@localhost", "member")
        with pytest.raises(IqError) as ei:
            await set_affiliation(a, "o", "eve@localhost", "member")
        assert ei.value.iq["error"]["condition"] == "not-acceptable"
        await set_affiliation(a, "o", "bob@localhost", "publisher")   # a change, not one more
        assert await owner_list(a, "o", "affiliations") == {ALICE: "owner", "bob@localhost": "publisher"}
        await close(a, b, e)
    try:
        run(main())
    finally:
        s.close()


def test_persistence_and_node_deletion(tmp_path):
    """Subscriptions and affiliations survive an sm restart; deleting the
    node notifies its subscribers and a node made again has none."""
    s = start(tmp_path)

    async def first():
        a = await connect(s, "alice@localhost/pc")
        b = await connect(s, "bob@localhost/pc")
        await make_node(a, "w", "whitelist")
        await set_affiliation(a, "w", "bob@localhost", "member")
        await subscribe(b, "w")
        await close(a, b)

    async def second():
        a = await connect(s, "alice@localhost/pc")
        b = await connect(s, "bob@localhost/pc")
        assert await owner_list(a, "w", "subscriptions") == {"bob@localhost": "subscribed"}
        assert await owner_list(a, "w", "affiliations") == {ALICE: "owner", "bob@localhost": "member"}
        await publish(a, "w", "1", "after restart")
        _, _, ev = await next_event(b)
        assert event_items(ev) == ("w", [("1", "after restart")])
        await iq(a, f"<pubsub xmlns='{PSO}'><delete node='w'/></pubsub>")
        _, _, ev = await next_event(b)
        assert ev.find(f"{{{PSE}}}delete").get("node") == "w"
        await make_node(a, "w", "whitelist")
        assert await owner_list(a, "w", "subscriptions") == {}
        assert await owner_list(a, "w", "affiliations") == {ALICE: "owner"}
        await close(a, b)
    try:
        run(first())
        s.sm.stop()
        s.start_sm()
        time.sleep(1.5)
        run(second())
    finally:
        s.close()
