"""The router with components of ours: routing, echo, hold queue, partitions."""
import time

from conftest import wait_for


def test_two_components_exchange_both_ways(env):
    env.start_router()
    b = env.comp("b", "secret-b", "--bind", "b.test", "--echo")
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "user@b.test/res",
                 "--from", "me@a.test/x", "--count", 500, "--rate", 2000, "--expect", 500)
    stats = env.stats()
    assert "component=a protocol=internal" in stats and "component=b protocol=internal" in stats
    ra = a.wait_report(timeout=60)
    rb = b.report()
    # b saw every message once and echoed it; a got every echo once.
    assert rb["unique"] == 500 and rb["dups"] == 0
    assert ra["unique"] == 500 and ra["dups"] == 0 and ra["errors"] == 0


def test_unknown_domain_bounces_remote_server_not_found(env):
    env.start_router()
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "someone@nowhere.test",
                 "--from", "me@a.test", "--count", 5, "--rate", 50)
    assert wait_for(lambda: "remote-server-not-found" in env.router_log(), 10)
    r = a.report()
    assert r["errors"] == 5


def test_bind_outside_acl_is_refused(env):
    env.start_router()
    env.comp("a", "secret-a", "--bind", "b.test", ready=False)
    assert wait_for(lambda: "event=bind-failed component=a name=b.test condition=not-allowed" in env.router_log(), 10)


def test_wrong_secret_internal_component_never_binds(env):
    env.start_router()
    c = env.comp("a", "wrong", "--bind", "a.test", ready=False)
    assert wait_for(lambda: "event=auth-failed" in env.router_log(), 10)
    time.sleep(0.5)
    assert not c.ready_file.exists()
    assert "event=bind component=a" not in env.router_log()


def test_hold_queue_delivers_after_component_restart(env):
    env.start_router(hold=20)
    b = env.comp("b", "secret-b", "--bind", "b.test")
    b.kill9()
    assert wait_for(lambda: "event=link-lost component=b" in env.router_log(), 10)
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                 "--count", 200, "--rate", 1000)
    assert wait_for(lambda: "held=200" in env.stats(), 10), env.stats()
    b2 = env.comp("b", "secret-b", "--bind", "b.test", "--expect", 200)
    rb = b2.wait_report(timeout=30)
    assert rb["unique"] == 200 and rb["dups"] == 0
    assert a.report()["errors"] == 0


def test_hold_queue_bounces_after_hold_time(env):
    env.start_router(hold=1)
    b = env.comp("b", "secret-b", "--bind", "b.test")
    b.kill9()
    assert wait_for(lambda: "event=link-lost component=b" in env.router_log(), 10)
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                 "--count", 10, "--rate", 100)
    # Held at first, then bounced with recipient-unavailable once the hold time passed.
    assert wait_for(lambda: env.router_log().count("condition=recipient-unavailable") >= 10, 15)
    assert a.report()["errors"] == 10


def test_partitioned_name_sends_each_user_to_one_instance(env):
    env.start_router()
    b1 = env.comp("b", "secret-b", "--bind", "p.test")
    b2 = env.comp("b2", "secret-b2", "--bind", "p.test")
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u%d@p.test/r", "--users", 50,
                 "--from", "a.test", "--count", 1000, "--rate", 2000)
    assert wait_for(lambda: "stanzas_in=1000" in env.stats(), 20), env.stats()
    time.sleep(0.5)
    r1, r2 = b1.report(), b2.report()
    a.report()
    u1, u2 = set(r1["users"]), set(r2["users"])
    assert r1["unique"] + r2["unique"] == 1000
    assert not (u1 & u2), "a user was delivered to both instances"
    assert len(u1 | u2) == 50
    # Both instances get a share (50 users over 2 instances by a hash).
    assert u1 and u2


def test_partition_mapping_is_stable_across_runs(env):
    """The same user set maps to the same instances after a router restart."""
    env.start_router()
    maps = []
    for _ in range(2):
        b1 = env.comp("b", "secret-b", "--bind", "p.test")
        b2 = env.comp("b2", "secret-b2", "--bind", "p.test")
        a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u%d@p.test", "--users", 30,
                     "--from", "a.test", "--count", 30, "--rate", 300)
        assert wait_for(lambda: b1.ready_file.exists() and b2.ready_file.exists(), 5)
        time.sleep(1.5)
        r1, r2 = b1.report(), b2.report()
        a.report()
        maps.append((frozenset(r1["users"]), frozenset(r2["users"])))
        env.router.stop()
        env.start_router()
    assert maps[0] == maps[1]
    assert len(maps[0][0] | maps[0][1]) == 30


def _make_cert(d, name):
    import subprocess
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    return crt, key


def test_component_link_over_starttls_with_verified_certificate(env):
    crt, key = _make_cert(env.dir, "router")
    env.start_router(extra=f"<tls><certificate>{crt}</certificate><key>{key}</key></tls>")
    b = env.comp("b", "secret-b", "--bind", "b.test", "--tls", "--ca", crt, "--expect", 300)
    a = env.comp("a", "secret-a", "--bind", "a.test", "--tls", "--ca", crt, "--to", "u@b.test",
                 "--from", "a.test", "--count", 300, "--rate", 1000)
    rb = b.wait_report(timeout=30)
    a.report()
    assert rb["unique"] == 300 and rb["dups"] == 0
    log = env.router_log()
    # TLS 1.3 gives tls-exporter channel binding, so the -PLUS mechanism is used.
    assert "event=authenticated component=b peer=127.0.0.1" in log
    assert "tls=1 mechanism=SCRAM-SHA-256-PLUS" in log


def test_component_refuses_router_certificate_it_cannot_verify(env):
    crt, key = _make_cert(env.dir, "router")
    other, _ = _make_cert(env.dir, "someone-else")
    env.start_router(extra=f"<tls><certificate>{crt}</certificate><key>{key}</key></tls>")
    c = env.comp("b", "secret-b", "--bind", "b.test", "--tls", "--ca", other, ready=False)
    time.sleep(2)
    assert not c.ready_file.exists()
    assert "event=authenticated component=b" not in env.router_log()


def test_weftctl_shows_per_component_counters(env):
    import os
    import subprocess
    from conftest import BUILD
    env.start_router()
    b = env.comp("b", "secret-b", "--bind", "b.test")
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                 "--count", 50, "--rate", 500)
    assert wait_for(lambda: "stanzas_out=50 " in env.stats(), 10)
    out = subprocess.run([os.path.join(BUILD, "tools", "weftctl"), "-s", str(env.dir / "router.ctl"), "stats"],
                         capture_output=True, text=True, check=True).stdout
    line_a = [l for l in out.splitlines() if "component=a " in l][0]
    line_b = [l for l in out.splitlines() if "component=b " in l][0]
    assert "stanzas_in=50 " in line_a and "stanzas_out=50 " in line_b
    assert b.report()["unique"] == 50
    a.report()
