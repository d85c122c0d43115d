#!/usr/bin/env python3
"""table.py: turns weft-bench-xmpp JSON lines into the markdown tables of
docs/performance.md ("Client load"). Medians over runs; CPU columns are the
server's and the generator's CPU in % of one core over the measured interval."""
import json
import statistics
import sys
from collections import defaultdict


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "–"
    return f"{x:,.{nd}f}" if nd else f"{x:,.0f}"


def main(path):
    rows = defaultdict(list)
    order = []
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        key = (r["scenario"], r["label"], r["mech"])
        if key not in rows:
            order.append(key)
        rows[key].append(r)

    def runs(sc):
        return [(k, rows[k]) for k in order if k[0] == sc]

    out = []
    idle = runs("idle")
    if idle:
        levels = sorted({lv["sessions"] for _, rs in idle for r in rs for lv in r["levels"]})
        out.append("| idle (STARTTLS, roster of 10) | " + " | ".join(f"KiB/session at N={n}" for n in levels)
                   + " | RSS at N=" + str(levels[-1]) + " (MiB) | run | failures |")
        out.append("|---|" + "---:|" * (len(levels) + 3))
        for (sc, label, mech), rs in idle:
            # Only the first run starts on freshly started servers; later runs
            # start with memory the allocators kept from the earlier sessions,
            # so their growth says nothing.
            rs = rs[:1]
            cells = []
            for n in levels:
                cells.append(fmt(med([lv["kb_per_session"] for r in rs for lv in r["levels"] if lv["sessions"] == n]), 1))
            rss = med([lv["rss_kb"] / 1024 for r in rs for lv in r["levels"] if lv["sessions"] == levels[-1]])
            out.append(f"| {label} | " + " | ".join(cells) + f" | {fmt(rss, 1)} | first |  {sum(r['failures'] for r in rs)} |")
        out.append("")
    chat = runs("chat")
    if chat:
        r0 = chat[0][1][0]
        out.append(f"| chat ({r0['pairs']} pairs, window {r0['window']}, {r0['seconds']:.0f} s) | msgs/s | p50 ms | p99 ms | max ms | lost | server CPU % | generator CPU % | runs |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (sc, label, mech), rs in chat:
            out.append(f"| {label} | {fmt(med([r['msgs_per_s'] for r in rs]))} | {fmt(med([r['p50_ms'] for r in rs]), 2)} | "
                       f"{fmt(med([r['p99_ms'] for r in rs]), 2)} | {fmt(med([r['max_ms'] for r in rs]), 1)} | "
                       f"{sum(r['lost'] for r in rs)} | {fmt(med([r['server_cpu_pct'] for r in rs]))} | "
                       f"{fmt(med([r['gen_cpu_pct'] for r in rs]))} | {len(rs)} |")
        out.append("")
    login = runs("login")
    if login:
        r0 = login[0][1][0]
        out.append(f"| login (concurrency {r0['concurrency']}, {r0['seconds']:.0f} s) | mechanism | logins/s | p50 ms | p99 ms | server CPU % | generator CPU % | failures | runs |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for (sc, label, mech), rs in login:
            out.append(f"| {label} | {mech} | {fmt(med([r['logins_per_s'] for r in rs]), 1)} | {fmt(med([r['p50_ms'] for r in rs]), 1)} | "
                       f"{fmt(med([r['p99_ms'] for r in rs]), 1)} | {fmt(med([r['server_cpu_pct'] for r in rs]))} | "
                       f"{fmt(med([r['gen_cpu_pct'] for r in rs]))} | {sum(r['failures'] for r in rs)} | {len(rs)} |")
        out.append("")
    fan = runs("fanout")
    if fan:
        r0 = fan[0][1][0]
        out.append(f"| fan-out ({r0['contacts']} contacts, {r0['rounds']} changes per run) | ms until all have it (median) | max ms | per-contact p50 ms | missing | runs |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for (sc, label, mech), rs in fan:
            out.append(f"| {label} | {fmt(med([r['all_ms_median'] for r in rs]), 2)} | {fmt(max(r['all_ms_max'] for r in rs), 2)} | "
                       f"{fmt(med([r['delivery_p50_ms'] for r in rs]), 2)} | {sum(r['missing'] for r in rs)} | {len(rs)} |")
        out.append("")
    pep = runs("pep")
    if pep:
        by_k = defaultdict(list)
        for (sc, label, mech), rs in pep:
            for r in rs:
                by_k[(r["contacts"], label)].append(r)
        out.append("| PEP fan-out (one publish, 5 per run) | contacts | notifications/s | ms until all (median) | "
                   "p50 ms | p99 ms | missing | server CPU % | runs |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for (k, label) in sorted(by_k, key=lambda x: x[0]):   # stable: servers in run order
            rs = by_k[(k, label)]
            out.append(f"| {label} | {k} | {fmt(med([r['notifications_per_s'] for r in rs]))} | "
                       f"{fmt(med([r['all_ms_median'] for r in rs]), 2)} | {fmt(med([r['delivery_p50_ms'] for r in rs]), 2)} | "
                       f"{fmt(med([r['delivery_p99_ms'] for r in rs]), 2)} | {sum(r['missing'] for r in rs)} | "
                       f"{fmt(med([r['server_cpu_pct'] for r in rs]))} | {len(rs)} |")
        out.append("")
    muc = runs("muc")
    if muc:
        by_shape = defaultdict(list)
        for (sc, label, mech), rs in muc:
            for r in rs:
                by_shape[(f"{r['rooms']}x{r['occupants']}", label)].append(r)
        r0 = muc[0][1][0]
        flow = f"window {r0['window']}" if r0["window"] else f"{r0['rate']:g} msgs/s"
        out.append(f"| group chat ({r0['senders']} sender(s) per room, {flow}, {r0['seconds']:.0f} s) | rooms x occupants | "
                   "deliveries/s | room msgs/s | p50 ms | p99 ms | max ms | lost | dup | server CPU % | "
                   "per process CPU % | generator CPU % | load avg | runs |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|")
        for (shape, label) in sorted(by_shape, key=lambda x: -int(x[0].split("x")[1])):   # servers in run order
            rs = by_shape[(shape, label)]
            procs = sorted({p for r in rs for p in r.get("server_cpu_each", {})})
            each = ", ".join(f"{p.replace('weft-', '')} {fmt(med([r['server_cpu_each'].get(p) for r in rs]))}"
                             for p in procs) if len(procs) > 1 else ""
            loads = [r["loadavg_end"] for r in rs]
            out.append(f"| {label} | {shape} | {fmt(med([r['deliveries_per_s'] for r in rs]))} | "
                       f"{fmt(med([r['msgs_per_s'] for r in rs]))} | {fmt(med([r['p50_ms'] for r in rs]), 2)} | "
                       f"{fmt(med([r['p99_ms'] for r in rs]), 2)} | {fmt(med([r['max_ms'] for r in rs]), 1)} | "
                       f"{sum(r['lost'] for r in rs)} | {sum(r['duplicated'] for r in rs)} | "
                       f"{fmt(med([r['server_cpu_pct'] for r in rs]))} | {each} | "
                       f"{fmt(med([r['gen_cpu_pct'] for r in rs]))} | {min(loads):.1f}-{max(loads):.1f} | {len(rs)} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/dev/stdin")
