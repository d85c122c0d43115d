#!/usr/bin/env bash
# faults.sh: the fault table of docs/operations.md ("Fault tests") at scale.
#
# For each of router, sm and c2s: starts weft from the release build (router,
# one sm, two c2s instances) on loopback in a fresh temporary directory,
# creates the accounts by in-band registration, and runs weft-bench-xmpp
# --scenario steady with PAIRS pairs (2 x PAIRS clients): senders on c2s2,
# receivers on c2s, RATE messages/s per sender for SECONDS s. KILL_AT s after
# sending starts the component is killed with SIGKILL and DOWN s later started
# again (the c2s row kills the receivers' c2s). The generator is told both
# moments (SIGUSR1, SIGUSR2) and reports disconnected clients, lost and
# duplicated messages and the recovery time: from the kill until every pair
# has received a message sent after it. Prints a markdown table to stdout;
# raw JSON lines go to $OUT/results.jsonl, logs to $OUT/<row>/.
#
#   tools/bench/faults.sh
#   PAIRS=500 RATE=2 SECONDS_PER_RUN=15 KILL_AT=5 DOWN=1 ROWS="router sm c2s" \
#   LOG_LEVEL=notice WEFT_BUILD=build-release OUT=dir tools/bench/faults.sh
#
# Servers are pinned to CPU 0 and the generator to CPU 1 when there are two
# CPUs or more. Not a test: nothing asserts (tests/integration/test_faults.py
# is the test, with 200 clients).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${WEFT_BUILD:-build-release}
case $build in /*) ;; *) build=$repo/$build ;; esac
pairs=${PAIRS:-500}
rate=${RATE:-2}
seconds=${SECONDS_PER_RUN:-15}
kill_at=${KILL_AT:-5}
down=${DOWN:-1}
rows=${ROWS:-router sm c2s}
level=${LOG_LEVEL:-notice}
out=${OUT:-$(mktemp -d /tmp/weft-faults.XXXXXX)}
mkdir -p "$out"

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$repo" --buildtype=release >/dev/null
fi
ninja -C "$build" router/weft-router sm/weft-sm c2s/weft-c2s tools/weft-bench-xmpp >/dev/null
bench=$build/tools/weft-bench-xmpp

srv_pin=() gen_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    srv_pin=(taskset -c 0) gen_pin=(taskset -c 1)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. "$repo/tools/bench/ports.sh"
wait_log() { # file pattern
    for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "$1: '$2' not seen" >&2
    return 1
}

declare -A pid bin cfg log
started=()
cleanup() {
    for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${started[@]}"; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

spawn() { # name
    "${srv_pin[@]}" "${bin[$1]}" -c "${cfg[$1]}" 2>>"${log[$1]}" &
    pid[$1]=$!
    started+=($!)
}

mkdir -p "$out/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -keyout "$out/certs/localhost.key" -out "$out/certs/localhost.crt" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,DNS:*.localhost 2>/dev/null

c2s_config() { # dir instance name secret port
    cat <<X
<c2s>
  <instance>$2</instance>
  <router><address>127.0.0.1:$rp</address><name>router</name></router>
  <name>$3</name>
  <secret>$4</secret>
  <domain>localhost</domain>
  <listen><starttls>127.0.0.1:$5</starttls><tls></tls></listen>
  <tls><certificate>$out/certs/localhost.crt</certificate><key>$out/certs/localhost.key</key></tls>
  <log><level>$level</level></log>
  <limits><rate>1073741824</rate><burst>1073741824</burst><connections-per-ip>1000000</connections-per-ip>
    <auth-failures>1000000</auth-failures></limits>
  <register><enabled>true</enabled><per-ip>1000000</per-ip></register>
</c2s>
X
}

start_weft() { # dir
    local d=$1
    mkdir -p "$d"
    rp=$(free_port) p1=$(free_port) p2=$(free_port)
    cat >"$d/router.xml" <<X
<router>
  <name>router</name>
  <listen>127.0.0.1:$rp</listen>
  <log><level>$level</level></log>
  <component name="sm" secret="sm-secret" trusted-from="true"><bind>localhost</bind><bind>sm.localhost</bind></component>
  <component name="c2s" secret="c2s-secret" trusted-from="true"><bind>c2s.localhost</bind></component>
  <component name="c2s2" secret="c2s2-secret" trusted-from="true"><bind>c2s2.localhost</bind></component>
</router>
X
    cat >"$d/sm.xml" <<X
<sm>
  <router><address>127.0.0.1:$rp</address><name>router</name></router>
  <name>sm</name>
  <secret>sm-secret</secret>
  <domain>localhost</domain>
  <database>$d/weft.db</database>
  <log><level>$level</level></log>
</sm>
X
    c2s_config "$d" c2s.localhost c2s c2s-secret "$p1" >"$d/c2s.xml"
    c2s_config "$d" c2s2.localhost c2s2 c2s2-secret "$p2" >"$d/c2s2.xml"
    for n in router sm c2s c2s2; do
        log[$n]=$d/$n.log
        bin[$n]=$build/${n%2}/weft-${n%2}
        cfg[$n]=$d/$n.xml
    done
    spawn router
    wait_port "$rp"
    spawn sm
    spawn c2s
    spawn c2s2
    wait_port "$p1"
    wait_port "$p2"
    wait_log "$d/c2s.log" "event=router-ready"
    wait_log "$d/c2s2.log" "event=router-ready"
}

stop_weft() {
    for n in c2s2 c2s sm router; do kill "${pid[$n]}" 2>/dev/null || true; done
    for n in c2s2 c2s sm router; do wait "${pid[$n]}" 2>/dev/null || true; done
    started=()
}

: >"$out/results.jsonl"
for row in $rows; do
    d=$out/$row
    start_weft "$d"
    echo "$row: $((2 * pairs)) clients, kill at ${kill_at}s, down ${down}s" >&2
    rm -f "$d/sending"
    "${gen_pin[@]}" "$bench" --host 127.0.0.1 --port "$p2" --peer-host 127.0.0.1 --peer-port "$p1" \
        --domain localhost --tls starttls --register ibr --concurrency 50 --scenario steady \
        --pairs "$pairs" --rate "$rate" --seconds "$seconds" --drain 30 --ready-file "$d/sending" \
        --label "$row" >>"$out/results.jsonl" 2>"$d/bench.log" &
    gen=$!
    for _ in $(seq 1200); do [ -e "$d/sending" ] || ! kill -0 "$gen" 2>/dev/null && break; sleep 0.1; done
    if [ ! -e "$d/sending" ]; then
        echo "$row: the generator did not start; see $d/bench.log" >&2
        stop_weft
        continue
    fi
    sleep "$kill_at"
    kill -9 "${pid[$row]}"
    wait "${pid[$row]}" 2>/dev/null || true
    kill -USR1 "$gen"
    sleep "$down"
    spawn "$row"
    kill -USR2 "$gen"
    wait "$gen" || echo "$row: generator exit status $?" >&2
    tail -1 "$d/bench.log" >&2
    stop_weft
done

python3 - "$out/results.jsonl" <<'PY'
import json, sys
print("| component | clients | disconnected | sent | lost | duplicated | from offline storage | recovery s (from kill) | recovery s (from restart) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
f = lambda x: "–" if x is None else (f"{x:.2f}" if isinstance(x, float) else str(x))
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    print(f"| {r['label']} | {r['clients']} | {r['disconnected']} | {r['sent']} | {r['lost']} | {r['duplicated']} "
          f"| {r['offline_delivered']} | {f(r.get('recovery_s'))} | {f(r.get('recovery_after_restart_s'))} |")
PY
echo "raw results: $out/results.jsonl" >&2
