"""The fault tests' common run: weft-bench-xmpp's steady scenario with one
component killed and restarted in the middle, its JSON report returned."""
import json
import os
import signal
import subprocess
import time

from conftest import BUILD, wait_for


def run_steady_with_kill(tmp_path, target_args, label, kill, restart, *, pairs, rate, seconds, drain,
                         kill_at, down, start_timeout, end_slack):
    """target_args: --host/--port/--domain/--peer-* of the two servers. kill()
    and restart() act on the victim; the generator is told of each (SIGUSR1,
    SIGUSR2) so it measures recovery from them. Returns the final report."""
    ready = tmp_path / "sending"
    errlog = open(tmp_path / "bench.log", "wb")
    gen = subprocess.Popen(
        [os.path.join(BUILD, "tools", "weft-bench-xmpp"), *target_args,
         "--tls", "starttls", "--register", "ibr", "--concurrency", "25", "--scenario", "steady",
         "--pairs", str(pairs), "--rate", str(rate), "--seconds", str(seconds), "--drain", str(drain),
         "--ready-file", str(ready), "--label", label],
        stdout=subprocess.PIPE, stderr=errlog)
    try:
        assert wait_for(lambda: ready.exists() or gen.poll() is not None, start_timeout, 0.1), \
            "generator never started"
        assert gen.poll() is None, (tmp_path / "bench.log").read_text()
        time.sleep(kill_at)
        kill()
        gen.send_signal(signal.SIGUSR1)
        time.sleep(down)
        restart()
        gen.send_signal(signal.SIGUSR2)
        out, _ = gen.communicate(timeout=seconds + drain + end_slack)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
        errlog.close()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, (tmp_path / "bench.log").read_text()
    return json.loads(lines[-1])
