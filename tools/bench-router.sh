#!/usr/bin/env bash
# bench-router.sh: the router benchmark (docs/performance.md, "Router").
#
# Builds weft in release mode (unless WEFT_BENCH_BUILD points at an existing
# release build), starts weft-router on a free loopback port with a temporary
# config (components a and b), then runs weft-bench-router through the router
# and through a plain byte relay, RUNS times each, interleaved, and prints a
# markdown table with the medians. Stops everything it started.
#
# With two or more CPUs the forwarder (router or relay) is pinned to CPU 0 and
# the generator to CPU 1, so "on one core" means what it says and runs agree.
#
#   tools/bench-router.sh                      # defaults below
#   RUNS=5 SECONDS_PER_RUN=10 WINDOW=1000 SIZE=200 tools/bench-router.sh
#
# BASELINE=/path/to/an/older/weft-router adds a third mode, "baseline": that
# binary runs as a second router (same config, another port) and each round
# runs baseline, router and relay in turn, so a before/after comparison sees
# the same machine load.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${WEFT_BENCH_BUILD:-$repo/build-release}
runs=${RUNS:-3}
secs=${SECONDS_PER_RUN:-5}
window=${WINDOW:-1000}
size=${SIZE:-200}
baseline=${BASELINE:-}

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$repo" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" router/weft-router tools/weft-bench-router >/dev/null

router_bin=$build/router/weft-router
bench_bin=$build/tools/weft-bench-router
tmp=$(mktemp -d)
router_pid=
base_pid=

cleanup() {
    for p in $router_pid $base_pid; do
        if kill -0 "$p" 2>/dev/null; then
            kill "$p"
            wait "$p" 2>/dev/null || true
        fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fwd_pin=() gen_pin=() relay_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    fwd_pin=(taskset -c 0) gen_pin=(taskset -c 1) relay_cpu=(--relay-cpu 0)
fi

# start_router BIN NAME: runs BIN on a free loopback port; sets port and pid
start_router() {
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$tmp/$2.xml" <<EOF
<router>
  <name>router</name>
  <listen>127.0.0.1:$port</listen>
  <log><level>warn</level></log>
  <component name="a" secret="bench-secret-a"><bind>a.test</bind></component>
  <component name="b" secret="bench-secret-b"><bind>b.test</bind></component>
</router>
EOF
    "${fwd_pin[@]}" "$1" -c "$tmp/$2.xml" 2>"$tmp/$2.log" &
    pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
}
start_router "$router_bin" router
router_pid=$pid router_port=$port
if [ -n "$baseline" ]; then
    start_router "$baseline" baseline
    base_pid=$pid base_port=$port
fi

common=(--seconds "$secs" --window "$window" --size "$size")
: >"$tmp/results"
for i in $(seq "$runs"); do
    if [ -n "$baseline" ]; then
        "${gen_pin[@]}" "$bench_bin" --router "127.0.0.1:$base_port" --secret-a bench-secret-a \
            --secret-b bench-secret-b --router-pid "$base_pid" "${common[@]}" |
            sed 's/^mode=router /mode=baseline /' >>"$tmp/results"
    fi
    "${gen_pin[@]}" "$bench_bin" --router "127.0.0.1:$router_port" --secret-a bench-secret-a \
        --secret-b bench-secret-b --router-pid "$router_pid" "${common[@]}" >>"$tmp/results"
    "${gen_pin[@]}" "$bench_bin" --relay "${relay_cpu[@]}" "${common[@]}" >>"$tmp/results"
done

# field MODE NAME: the values of NAME on MODE's lines, one per line
field() { awk -v m="mode=$1" -v k="$2" '$1 == m { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$tmp/results"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '%s runs of %s s each, %s-byte stanzas, window %s per direction, interleaved; nproc=%s\n\n' \
    "$runs" "$secs" "$(field router size | head -1)" "$window" "$(nproc)"
echo "| forwarder | run | stanzas/s | forwarder CPU s per million | forwarder CPU % | generator CPU % |"
echo "|---|---|---:|---:|---:|---:|"
modes="router relay"
[ -n "$baseline" ] && modes="baseline router relay"
for m in $modes; do
    paste <(field $m stanzas_per_s) <(field $m target_cpu_s_per_million) <(field $m target_cpu_pct) \
        <(field $m gen_cpu_pct) | awk -v m=$m '{ printf "| %s | %d | %d | %.2f | %d | %d |\n", m, NR, $1, $2, $3, $4 }'
done
for m in $modes; do
    printf '| **%s** | median | **%.0f** | **%.2f** | %.0f | %.0f |\n' "$m" \
        "$(field $m stanzas_per_s | median)" "$(field $m target_cpu_s_per_million | median)" \
        "$(field $m target_cpu_pct | median)" "$(field $m gen_cpu_pct | median)"
done
r=$(field router stanzas_per_s | median)
b=$(field relay stanzas_per_s | median)
rc=$(field router target_cpu_s_per_million | median)
bc=$(field relay target_cpu_s_per_million | median)
echo
awk -v r="$r" -v b="$b" -v rc="$rc" -v bc="$bc" 'BEGIN {
    printf "ratio router/relay: %.2f of the relay'"'"'s stanzas/s; the router spends %.1fx the relay'"'"'s CPU per stanza\n", r / b, rc / bc }'
if [ -n "$baseline" ]; then
    r0=$(field baseline stanzas_per_s | median)
    rc0=$(field baseline target_cpu_s_per_million | median)
    awk -v r="$r0" -v b="$b" -v rc="$rc0" -v bc="$bc" 'BEGIN {
        printf "ratio baseline/relay: %.2f of the relay'"'"'s stanzas/s; the baseline spends %.1fx the relay'"'"'s CPU per stanza\n", r / b, rc / bc }'
fi
