#!/usr/bin/env python3
"""s2s_bench.py: the federation figures of docs/performance.md, for weft <->
weft and Prosody <-> Prosody measured in the same run (tools/bench/s2s.sh
runs it; needs root).

Builds the network of tests/integration/fed.py: two host namespaces per
pair (weft wa.test and wb.test; Prosody pa.test and pb.test with Debian's
defaults; Prosody pc.test and pd.test with network_settings.nagle = false,
i.e. TCP_NODELAY as weft's sockets have), a dnsmasq serving _xmpp-server._tcp
SRV records and the targets' A records for every domain, and a clients
namespace where the load generator and the latency probe run. Self-signed
certificates, so the servers authenticate each other with dialback over
STARTTLS, as most of the federated network does. SERVERS picks the pairs
(default "weft prosody prosody-nodelay").

1. First stanza to a new domain: both servers of the pair start fresh (weft:
   both s2s restarted; Prosody: both servers restarted, which also empties
   libunbound's cache); a user of the first domain, logged in beforehand,
   sends one message to a user of the second; the time until that user has
   it covers SRV and A lookups, TCP, STARTTLS, dialback (the receiving
   server's verification connection back included) and delivery. Then a
   second message over the now established link. LAT_SAMPLES times per pair.
2. Throughput over one established link: weft-bench-xmpp's chat scenario
   with --peer-host: PAIRS pairs, one member of each on each domain, each
   member keeping WINDOW messages in flight to its partner for SECONDS.
   msgs/s counts deliveries in both directions (the link is two streams,
   one each way). RUNS runs, medians.

Servers are pinned to CPU 0 and the generator to CPU 1 when there are two
or more CPUs. Prints the markdown table on stdout; raw JSON lines go to
OUT/results.jsonl.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import fed  # noqa: E402
from fed import FedNet, ProsodyDeployment, WeftDeployment  # noqa: E402

env = os.environ.get
RUNS = int(env("RUNS", "3"))
LAT_SAMPLES = int(env("LAT_SAMPLES", "5"))
PAIRS = int(env("PAIRS", "50"))
WINDOW = int(env("WINDOW", "10"))
SECONDS = float(env("SECONDS", "10"))
BODY = int(env("BODY_BYTES", "64"))
SERVERS = env("SERVERS", "weft prosody prosody-nodelay").split()
OUT = Path(env("OUT") or "/tmp")
BENCH = env("WEFT_BENCH_XMPP") or os.path.join(fed.BUILD, "tools", "weft-bench-xmpp")

PIN_SRV, PIN_GEN = ([], [])
if (os.cpu_count() or 1) >= 2 and subprocess.run(["which", "taskset"], capture_output=True).returncode == 0:
    PIN_SRV, PIN_GEN = ["taskset", "-c", "0"], ["taskset", "-c", "1"]

WEFT_C2S_LIMITS = """<limits><rate>1073741824</rate><burst>1073741824</burst>
  <connections-per-ip>1000000</connections-per-ip><auth-failures>1000000</auth-failures></limits>"""


def note(*a):
    print(*a, file=sys.stderr, flush=True)


def restart_fresh(kind, deps):
    if kind == "weft":
        for d in deps:
            d.kill9("s2s")
        for d in deps:
            d.start("s2s")
    else:
        for d in deps:
            d.stop()
        for d in deps:
            d.start()


def first_stanza(kind, x, y, n):
    """[(first_ms, next_ms)] over n fresh starts."""
    out = []
    for i in range(n):
        restart_fresh(kind, (x, y))
        time.sleep(0.3)
        s = x.client("lat", resource=f"s{i}")
        r = y.client("lat", resource=f"r{i}")
        t0 = time.perf_counter()
        s.message(r.jid, f"first-{i}")
        r.wait_message(f"first-{i}", timeout=30)
        first = time.perf_counter() - t0
        nexts = []
        for k in range(5):
            t1 = time.perf_counter()
            s.message(r.jid, f"next-{i}-{k}")
            r.wait_message(f"next-{i}-{k}", timeout=30)
            nexts.append(time.perf_counter() - t1)
        out.append((first * 1000, statistics.median(nexts) * 1000))
        note(f"  {kind}: first stanza {out[-1][0]:.1f} ms, next {out[-1][1]:.2f} ms")
        s.close()
        r.close()
    return out


def throughput(kind, x, y, run):
    pids = ",".join(str(p) for p in x.pids() + y.pids())
    args = [*PIN_GEN, BENCH, "--host", x.ip, "--port", "5222", "--domain", x.domain, "--peer-host", y.ip,
            "--peer-port", "5222", "--peer-domain", y.domain, "--tls", "starttls", "--mech", x.mech,
            "--scenario", "chat", "--pairs", str(PAIRS), "--window", str(WINDOW), "--seconds", str(SECONDS),
            "--body-bytes", str(BODY), "--register", "ibr" if run == 0 else "none", "--concurrency", "20",
            "--pids", pids, "--label", kind]
    r = x.net.run("clients", args, timeout=SECONDS + 180)
    note("  " + (r.stderr.strip().splitlines() or ["(no output)"])[-1])
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        note(r.stderr[-2000:])
        return None
    res = json.loads(lines[-1])
    res["kind"] = kind
    return res


def med(xs):
    xs = [v for v in xs if v is not None]
    return statistics.median(xs) if xs else None


def main():
    if fed.usable():
        sys.exit(f"s2s_bench: {fed.usable()}")
    OUT.mkdir(parents=True, exist_ok=True)
    root = OUT / "net"
    hosts = {"weft": ("wa", "wb"), "prosody": ("pa", "pb"), "prosody-nodelay": ("pc", "pd")}
    unknown = [k for k in SERVERS if k not in hosts]
    if unknown:
        sys.exit(f"s2s_bench: unknown SERVERS {unknown}; known: {' '.join(hosts)}")
    net = FedNet(root, hosts=[h for k in SERVERS for h in hosts[k]])
    results = {}
    raw = open(OUT / "results.jsonl", "a")
    try:
        for k in SERVERS:
            for h in hosts[k]:
                dom = f"{h}.test"
                net.add_srv(dom, f"xmpp.{dom}", 5269)
                net.add_a(f"xmpp.{dom}", net.hosts[h].ip)
        net.start_dns()
        pairs = {}
        for kind in SERVERS:
            x, y = hosts[kind]
            if kind == "weft":
                deps = [WeftDeployment(net, h, f"{h}.test", level="notice", c2s_extra=WEFT_C2S_LIMITS)
                        for h in (x, y)]
            else:
                # prosody: Debian's defaults, Nagle on (network_settings.nagle);
                # prosody-nodelay: nagle = false, TCP_NODELAY like weft's sockets
                extra = ("network_settings = { read_timeout = 3600; tcp_backlog = 512; nagle = false }"
                         if kind == "prosody-nodelay" else "")
                deps = [ProsodyDeployment(net, h, f"{h}.test", level="warn", extra=extra) for h in (x, y)]
            for d in deps:
                d.wrap = PIN_SRV
                d.start_all(users=["lat"])
            pairs[kind] = tuple(deps)
        time.sleep(1)
        for kind, (x, y) in pairs.items():
            note(f"first stanza to a new domain: {kind} ({x.domain} -> {y.domain})")
            lat = first_stanza(kind, x, y, LAT_SAMPLES)
            results[kind] = {"lat": lat, "chat": []}
            raw.write(json.dumps({"kind": kind, "scenario": "first-stanza", "samples_ms": lat}) + "\n")
        for run in range(RUNS):
            for kind, (x, y) in pairs.items():
                note(f"run {run + 1}: chat over the {kind} link ({PAIRS} pairs, window {WINDOW}, {SECONDS:g} s)")
                res = throughput(kind, x, y, run)
                if res:
                    results[kind]["chat"].append(res)
                    raw.write(json.dumps(res) + "\n")
                    raw.flush()
                time.sleep(2)
    finally:
        raw.close()
        net.close()

    names = {"weft": "weft ↔ weft", "prosody": "Prosody ↔ Prosody (defaults: Nagle on)",
             "prosody-nodelay": "Prosody ↔ Prosody (nagle = false)"}
    print(f"| pair | first stanza to a new domain, ms: median (min–max, n) | next stanza, ms | "
          f"msgs/s over one link ({PAIRS} pairs, window {WINDOW}) | p50 ms | p99 ms | lost | server CPU % |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in results.items():
        firsts = [a for a, _ in r["lat"]]
        nexts = [b for _, b in r["lat"]]
        ch = r["chat"]

        def m(key, nd=0):
            v = med([c.get(key) for c in ch])
            return "–" if v is None else f"{v:,.{nd}f}"
        lost = sum(max(0, c.get("lost", 0)) for c in ch) if ch else "–"
        print(f"| {names[kind]} | {statistics.median(firsts):.0f} ({min(firsts):.0f}–{max(firsts):.0f}, "
              f"{len(firsts)}) | {statistics.median(nexts):.1f} | {m('msgs_per_s')} | {m('p50_ms', 1)} | "
              f"{m('p99_ms', 1)} | {lost} | {m('server_cpu_pct')} |")
    note(f"raw results: {OUT}/results.jsonl")


if __name__ == "__main__":
    main()
