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
