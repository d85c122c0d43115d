"""kill -9 of the router under load: nothing lost, nothing duplicated."""
import time

from conftest import wait_for


def test_router_kill9_under_load_every_stanza_once(env):
    env.start_router()
    n = 20000
    b = env.comp("b", "secret-b", "--bind", "b.test", "--expect", n)
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test/r", "--from", "a.test",
                 "--count", n, "--rate", 4000)
    time.sleep(1.5)
    env.router.kill9()
    time.sleep(1.0)          # components keep sending into their buffers meanwhile
    t0 = time.time()
    env.start_router()
    rb = b.wait_report(timeout=60)
    recovered = time.time() - t0
    ra = a.report()
    print(f"router restart: recovery to all {n} delivered in {recovered:.2f}s")
    assert rb["unique"] == n, rb
    assert rb["dups"] == 0, rb
    assert ra["errors"] == 0
    assert ra["sent"] == n


def test_router_kill9_twice_with_echo(env):
    """Both directions survive two router crashes; echoes arrive exactly once."""
    env.start_router()
    n = 6000
    b = env.comp("b", "secret-b", "--bind", "b.test", "--echo")
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "x@a.test",
                 "--count", n, "--rate", 3000, "--expect", n)
    for _ in range(2):
        time.sleep(0.7)
        env.router.kill9()
        time.sleep(0.3)
        env.start_router()
    ra = a.wait_report(timeout=60)
    rb = b.report()
    assert ra["unique"] == n and ra["dups"] == 0, ra
    assert rb["unique"] == n and rb["dups"] == 0, rb


def test_held_stanzas_for_two_names_are_not_taken_for_duplicates(env):
    """Stanzas held for two names of one component come back in a different
    order than they were sent; none may be dropped as a duplicate."""
    env.start_router(hold=20)
    b = env.comp("b", "secret-b", "--bind", "b.test", "--bind", "c.test")
    b.kill9()
    assert wait_for(lambda: "event=link-lost component=b" in env.router_log(), 10)
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--to2", "u@c.test",
                 "--from", "a.test", "--count", 400, "--rate", 2000)
    assert wait_for(lambda: "held=200" in env.stats(), 10), env.stats()
    # Bind in the other order: c.test's queue is flushed first.
    b2 = env.comp("b", "secret-b", "--bind", "c.test", "--bind", "b.test", "--expect", 400)
    rb = b2.wait_report(timeout=30)
    assert rb["unique"] == 400 and rb["dups"] == 0
    a.report()


def test_two_components_flooding_each_other_do_not_deadlock(env):
    env.start_router(extra="<limits><output-buffer>16K</output-buffer></limits>")
    n = 30000
    b = env.comp("b", "secret-b", "--bind", "b.test", "--to", "x@a.test", "--from", "b.test",
                 "--count", n, "--rate", 30000, "--expect", n)
    a = env.comp("a", "secret-a", "--bind", "a.test", "--to", "u@b.test", "--from", "a.test",
                 "--count", n, "--rate", 30000, "--expect", n)
    ok = wait_for(lambda: a.p.poll() is not None and b.p.poll() is not None, 60)
    assert ok, env.stats()
    ra, rb = a.wait_report(timeout=5), b.wait_report(timeout=5)
    assert ra["unique"] == n and rb["unique"] == n
    assert ra["dups"] == 0 and rb["dups"] == 0
