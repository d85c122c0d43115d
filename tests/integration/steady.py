"""The fault tests' common run: weft-bench-xmpp's steady scenario with one
component killed and restarted in the middle, its JSON report returned.

How long to wait for the end. With no probe, the generator drains for at
most `drain` s after sending (its --drain) and the test waits for that. With
a probe (`progress`: a callable returning a number that changes while the
server works, e.g. the sm's count of finished storage requests), `drain` is
only a last-resort cap and what ends a run that has not recovered is
`stall` s without progress: an sm on PostgreSQL under load can take longer
than any fixed drain to work off the writes it accepted during the outage
(its storage queue is one connection, first in first out, and a login's
reads wait behind those writes: docs/storage.md), and that is slow, not
stuck; a login that never completes leaves the server idle, and the run ends
`stall` s later with the generator's report ("cut_short": SIGTERM)."""
import json
import os
import signal
import subprocess
import time
import urllib.request

from conftest import BUILD, wait_for


def metrics_sum(port, family):
    """The sum of every sample of a counter or histogram `family` (its
    _count for a histogram) on a /metrics endpoint; None when it cannot be
    read (the process is down)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in (family, family + "_count", family + "_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_steady_with_kill(tmp_path, target_args, label, kill, restart, *, pairs, rate, seconds, drain,
                         kill_at, down, start_timeout, end_slack, progress=None, stall=None):
    """target_args: --host/--port/--domain/--peer-* of the two servers. kill()
    and restart() act on the victim; the generator is told of each (SIGUSR1,
    SIGUSR2) so it measures recovery from them. Returns the final report,
    with "stalled_s" (seconds without progress when the run was cut short)
    when a probe was given."""
    ready = tmp_path / "sending"
    errlog = open(tmp_path / "bench.log", "wb")
    gen = subprocess.Popen(
        [os.path.join(BUILD, "tools", "weft-bench-xmpp"), *target_args,
         "--tls", "starttls", "--register", "ibr", "--concurrency", "25", "--scenario", "steady",
         "--pairs", str(pairs), "--rate", str(rate), "--seconds", str(seconds), "--drain", str(drain),
         "--ready-file", str(ready), "--label", label],
        stdout=subprocess.PIPE, stderr=errlog)
    stalled = None
    try:
        assert wait_for(lambda: ready.exists() or gen.poll() is not None, start_timeout, 0.1), \
            "generator never started"
        assert gen.poll() is None, (tmp_path / "bench.log").read_text()
        sending_until = time.time() + seconds
        time.sleep(kill_at)
        kill()
        gen.send_signal(signal.SIGUSR1)
        time.sleep(down)
        restart()
        gen.send_signal(signal.SIGUSR2)
        if progress is not None:
            stalled = _wait_while_progress(gen, progress, stall, sending_until,
                                           sending_until + drain + end_slack)
        out, _ = gen.communicate(timeout=seconds + drain + end_slack)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
        errlog.close()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, (tmp_path / "bench.log").read_text()
    r = json.loads(lines[-1])
    if progress is not None:
        r["stalled_s"] = stalled
    return r


def _wait_while_progress(gen, progress, stall, sending_until, cap):
    """Waits for the generator to end by itself. Once sending is over, `stall`
    s in which progress() did not change end the run (SIGTERM: the
    generator reports at once); returns those seconds then, else None. The
    generator's own --drain (cap) bounds a server that keeps working
    without ever recovering.

    Idle time is counted per sample, at most 1 s each: on the shared test
    machine other runs' processes (some at nice -19) have starved every
    process of a run, this loop included, for 40 s at a time; a probe that
    was not running itself has not seen the server idle."""
    last, idle = progress(), 0.0
    prev = time.monotonic()
    while gen.poll() is None and time.time() < cap:
        time.sleep(0.5)
        v = progress()
        now = time.monotonic()
        step, prev = min(now - prev, 1.0), now
        if v is not None and v != last:
            last, idle = v, 0.0
        elif time.time() > sending_until:
            idle += step
            if idle > stall:
                gen.send_signal(signal.SIGTERM)
                return round(idle, 1)
    return None
