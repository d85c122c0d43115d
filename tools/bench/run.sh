#!/usr/bin/env bash
# run.sh: the client-load benchmark (docs/performance.md, "Client load").
#
# Starts weft (router, sm, c2s from $WEFT_BUILD), Prosody and ejabberd (the
# Debian packages) on loopback with private configs and free ports in a
# temporary directory, configured alike: STARTTLS required, SCRAM keys at 4096
# iterations, offline storage on, no rate limits or traffic shaping, listen
# backlog 512, no s2s. Creates the accounts by in-band registration, then runs
# every scenario against every server, interleaved, RUNS times, the order
# turned by one server each run (weft, prosody, ejabberd; then prosody,
# ejabberd, weft; ...) so that no server always runs right after the same
# one (its backlog, its memory, its writes to disk), and prints a markdown
# table of the medians to stdout
# (raw JSON lines go to $OUT/results.jsonl). Stops everything it started.
# The pep scenario (one PEP publish fanned out to PEP_K online contacts,
# XEP-0115-filtered) needs PEP on: mod_pep in Prosody, mod_pubsub's pep
# plugin with mod_caps in ejabberd, weft's pep module (on by default).
# PEP_ROUNDS (5, at most 64 counted) publishes are timed; each reports the
# server processes' CPU per notification (server_us_per_notification_each).
# WEFT_LOG_LEVEL (warn) is the log level of the weft processes (their logs
# are in $OUT/weft*/).
#
# Group chat (XEP-0045) is on in every server: weft-muc (started with the
# rest of weft), Prosody's muc component, ejabberd's mod_muc, each at
# conference.localhost with no per-occupant rate limits, room size up to
# 1,000, history of 20 messages, rooms temporary and not archived (the bench
# submits that room configuration; a user's own archive never holds
# groupchat in any of the three). SCENARIOS="muc" runs the muc scenario once
# per shape of MUC_SHAPES ("KxN": K rooms of N occupants), MUC_SENDERS
# senders per room each keeping MUC_WINDOW messages in flight, MUC_SECONDS s:
#   MAM=off SCENARIOS=muc MUC_SHAPES="1x500 100x10" RUNS=3 tools/bench/run.sh
#
# TRANSPORTS="tcp websocket" also runs every scenario over plain WebSocket
# (RFC 7395) on loopback, labelled "SERVER ws": weft's listen.websocket,
# Prosody's mod_websocket, ejabberd's ejabberd_http_ws, each counting a
# loopback WebSocket as secure as the TCP runs count STARTTLS.
#
# The servers are pinned to CPU 0 and the generator to CPU 1 when there are
# two or more CPUs, so each server gets one core and the generator its own.
#
# PostgreSQL: the servers weft-pg (weft's sm with storage on PostgreSQL) and
# ejabberd-pg (ejabberd with sql_type pgsql, default_db sql, auth_method sql,
# its schema from /usr/share/ejabberd/sql/pg.sql) share one PostgreSQL 15
# server the script starts (initdb in $OUT/pg, a free loopback port, Debian's
# defaults: fsync and synchronous_commit on), pinned to the servers' CPU.
#   SERVERS="weft weft-pg ejabberd ejabberd-pg" SCENARIOS="chat login" tools/bench/run.sh
#
#   tools/bench/run.sh
#   RUNS=3 IDLE_LEVELS=1000,2000 IDLE_SETTLE=35 CHAT_PAIRS=200 CHAT_SECONDS=20 \
#   LOGIN_CONC=50 LOGIN_SECONDS=20 FANOUT_K=200 PEP_K="200 1000" SERVERS="weft prosody ejabberd" MAM=on TRANSPORTS="tcp websocket" \
#   WEFT_BUILD=build-release tools/bench/run.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/tools/bench
build=${WEFT_BUILD:-build-release}
case $build in /*) ;; *) build=$repo/$build ;; esac
runs=${RUNS:-3}
idle_levels=${IDLE_LEVELS:-1000,2000}
# Seconds idle sessions sit before memory is read: weft processes hand free
# heap pages back every 30 s and c2s frees the parser of a stream idle for 2 s.
idle_settle=${IDLE_SETTLE:-35}
chat_pairs=${CHAT_PAIRS:-200}
chat_seconds=${CHAT_SECONDS:-20}
chat_window=${CHAT_WINDOW:-10}
login_conc=${LOGIN_CONC:-50}
login_seconds=${LOGIN_SECONDS:-20}
fanout_k=${FANOUT_K:-200}
pep_ks=${PEP_K:-200 1000}
muc_shapes=${MUC_SHAPES:-1x500 100x10}
muc_senders=${MUC_SENDERS:-1}
muc_window=${MUC_WINDOW:-10}
muc_seconds=${MUC_SECONDS:-10}
# Joins (and logins) at a time: with 100, weft-muc and weft-sm dropped part of
# the presence storm of a 500-occupant room (docs/performance.md, "Group chat")
muc_join_conc=${MUC_JOIN_CONC:-10}
servers=${SERVERS:-weft prosody ejabberd}
# Message archives (XEP-0313) on every server (weft's default), or off;
# SERVERS may add weft-nomam, weft with its archive off, to the same run.
# SM_EXTRA: more sm.xml for both weft rows (e.g. <database-cache>64M</database-cache>).
# C2S_EXTRA: the same for c2s.xml (e.g. <output><batch>0</batch></output>).
mam=${MAM:-on}
scenarios=${SCENARIOS:-idle chat login fanout pep}
transports=${TRANSPORTS:-tcp}
iter=4096
out=${OUT:-$(mktemp -d /tmp/weft-bench.XXXXXX)}
mkdir -p "$out"

if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$repo" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" router/weft-router sm/weft-sm c2s/weft-c2s muc/weft-muc >/dev/null
if ninja -C "$build" tools/weft-bench-xmpp >/dev/null 2>&1; then
    bench=$build/tools/weft-bench-xmpp
else # not in tools/meson.build yet: build it by hand
    bench=$out/weft-bench-xmpp
    # shellcheck disable=SC2046
    gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -I"$repo/common" "$repo"/common/*.c \
        "$repo"/tools/bench_xmpp*.c -o "$bench" \
        $(pkg-config --cflags --libs libevent libevent_openssl expat openssl libidn sqlite3) -lm
fi

srv_pin=() gen_pin=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    srv_pin=(taskset -c 0) gen_pin=(taskset -c 1)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. "$repo/tools/bench/ports.sh"

started=()          # PIDs to stop at exit
cleanup() {
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do
        kill "${started[i]}" 2>/dev/null || true
    done
    sleep 1
    for pid in "${started[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
}
trap 'cleanup; [ -n "$pg_stop" ] && pg_run "$pg_bin/pg_ctl" -D "$out/pg/data" -m fast -w stop >/dev/null 2>&1; true' EXIT
trap 'exit 130' INT TERM   # exit runs cleanup once; a bare trap would carry on

mkdir -p "$out/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -keyout "$out/certs/localhost.key" -out "$out/certs/localhost.crt" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,DNS:*.localhost 2>/dev/null

declare -A port pids mech wsport mucpid
# ---- weft: router, sm, c2s (and muc, tests/integration/muc_env.py) as
# tests/integration/server.py starts them, but sm, c2s and muc reach the
# router over a UNIX socket: over TCP every hop through
# the router waits ~40 ms (the router does not set TCP_NODELAY on the
# connections it accepts, so Nagle meets delayed ACKs).
start_weft() { start_weft_as weft "" "$([ "$mam" = on ] || echo '<module name="mam" enabled="false"/>')"; }
# weft with its archive off: what archiving costs (docs/performance.md).
start_weft_nomam() { start_weft_as weft-nomam "" '<module name="mam" enabled="false"/>'; }
start_weft_as() { # label, storage element (empty: SQLite in its directory), extra sm.xml
    local name=$1 storage=${2:-"<database>$out/$1/weft.db</database>"} smextra=$3
    local d=$out/$name rp p tp wp
    mkdir -p "$d"
    rp=$(free_port) p=$(free_port) tp=$(free_port) wp=$(free_port)
    cat >"$d/router.xml" <<X
<router>
  <name>router</name>
  <listen>127.0.0.1:$rp</listen>
  <listen-unix>$d/router.sock</listen-unix>
  <log><level>${WEFT_LOG_LEVEL:-warn}</level></log>
  <component name="sm" secret="sm-secret" trusted-from="true"><bind>localhost</bind><bind>sm.localhost</bind></component>
  <component name="c2s" secret="c2s-secret" trusted-from="true"><bind>c2s.localhost</bind></component>
  <component name="muc" secret="muc-secret"><bind>conference.localhost</bind></component>
</router>
X
    cat >"$d/sm.xml" <<X
<sm>
  <router><address>unix:$d/router.sock</address><name>router</name></router>
  <name>sm</name>
  <secret>sm-secret</secret>
  <domain>localhost</domain>
  $storage
  <log><level>${WEFT_LOG_LEVEL:-warn}</level></log>
  $smextra
  ${SM_EXTRA:-}
</sm>
X
    cat >"$d/c2s.xml" <<X
<c2s>
  <instance>c2s.localhost</instance>
  <router><address>unix:$d/router.sock</address><name>router</name></router>
  <name>c2s</name>
  <secret>c2s-secret</secret>
  <domain>localhost</domain>
  <listen><starttls>127.0.0.1:$p</starttls><tls>127.0.0.1:$tp</tls><websocket>127.0.0.1:$wp</websocket></listen>
  <tls><certificate>$out/certs/localhost.crt</certificate><key>$out/certs/localhost.key</key></tls>
  <log><level>${WEFT_LOG_LEVEL:-warn}</level></log>
  <limits><rate>1073741824</rate><burst>1073741824</burst><connections-per-ip>1000000</connections-per-ip>
    <auth-failures>1000000</auth-failures></limits>
  <register><enabled>true</enabled><per-ip>1000000</per-ip><scram-iterations>$iter</scram-iterations></register>
  ${C2S_EXTRA:-}
</c2s>
X
    # group chat: no per-occupant rate limit, history of 20 (as Prosody's and
    # ejabberd's defaults); on PostgreSQL with the sm when weft-pg
    local mucstore="<database>$d/muc.db</database>"
    [ -n "$2" ] && mucstore=$2
    cat >"$d/muc.xml" <<X
<muc>
  <router><address>unix:$d/router.sock</address><name>router</name></router>
  <name>muc</name>
  <secret>muc-secret</secret>
  <domain>conference.localhost</domain>
  $mucstore
  <log><level>notice</level></log>
  <limits><occupants>1000</occupants><history>20</history><history-default>20</history-default>
    <messages-per-second>0</messages-per-second><rooms-per-user>0</rooms-per-user></limits>
</muc>
X
    "${srv_pin[@]}" "$build/router/weft-router" -c "$d/router.xml" 2>"$d/router.log" &
    started+=($!); local r=$!
    wait_port "$rp"
    "${srv_pin[@]}" "$build/sm/weft-sm" -c "$d/sm.xml" 2>"$d/sm.log" &
    started+=($!); local s=$!
    "${srv_pin[@]}" "$build/c2s/weft-c2s" -c "$d/c2s.xml" 2>"$d/c2s.log" &
    started+=($!); local c=$!
    "${srv_pin[@]}" "$build/muc/weft-muc" -c "$d/muc.xml" 2>"$d/muc.log" &
    started+=($!); local m=$!
    wait_port "$p"
    for _ in $(seq 100); do grep -q "event=router-ready" "$d/c2s.log" 2>/dev/null && break; sleep 0.1; done
    for _ in $(seq 100); do grep -q "event=ready" "$d/muc.log" 2>/dev/null && break; sleep 0.1; done
    # the muc's pid goes to the muc scenario only: the other tables stay comparable
    port[$name]=$p pids[$name]=$r,$s,$c mech[$name]=SCRAM-SHA-256 wsport[$name]=$wp mucpid[$name]=$m
}

# ---- PostgreSQL 15 (Debian's binaries), for weft-pg and ejabberd-pg: a
# private cluster as the user postgres when we are root (initdb refuses root)
pg_port=
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
pg_run() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
start_postgres() {
    [ -n "$pg_port" ] && return 0
    local d=$out/pg
    mkdir -p "$d"
    [ "$(id -u)" = 0 ] && chown postgres "$d"
    pg_run "$pg_bin/initdb" -D "$d/data" -U weft -A trust -E UTF8 --locale=C >/dev/null
    pg_port=$(free_port)
    pg_run "${srv_pin[@]}" "$pg_bin/pg_ctl" -D "$d/data" -l "$d/log" -w -t 60 \
        -o "-p $pg_port -k $d -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    pg_stop=1
    for db in weft ejabberd; do pg_run "$pg_bin/createdb" -h "$d" -p "$pg_port" -U weft "$db"; done
    pg_run "$pg_bin/psql" -q -h "$d" -p "$pg_port" -U weft -d ejabberd -f /usr/share/ejabberd/sql/pg.sql >/dev/null
}
pg_stop=
start_weft-pg() {
    start_postgres
    start_weft_as weft-pg "<storage>postgresql:///weft?host=$out/pg&amp;port=$pg_port&amp;user=weft</storage>" "$([ "$mam" = on ] || echo '<module name="mam" enabled="false"/>')"
}

# ---- Prosody 0.12 (Debian): foreground, private config and data
start_prosody() {
    local d=$out/prosody p tp wp
    mkdir -p "$d/data"
    p=$(free_port) tp=$(free_port) wp=$(free_port)
    local pmam=; [ "$mam" = on ] && pmam='"mam";'
    sed -e "s#@DIR@#$d#g; s#@PORT@#$p#; s#@TLSPORT@#$tp#; s#@HTTPPORT@#$wp#; s#@ITER@#$iter#; s#@REQUIRE_TLS@#true#" \
        -e "s#@MAM@#$pmam#" -e "s#$d/certs#$out/certs#g" "$here/prosody.cfg.lua.in" >"$d/prosody.cfg.lua"
    "${srv_pin[@]}" prosody -F --config "$d/prosody.cfg.lua" >"$d/stdout.log" 2>&1 &
    started+=($!)
    wait_port "$p"
    local pid; pid=$(cat "$d/prosody.pid" 2>/dev/null || echo "${started[-1]}")
    # Prosody 0.12 has SCRAM-SHA-1 only.
    port[prosody]=$p pids[prosody]=$pid mech[prosody]=SCRAM-SHA-1 wsport[prosody]=$wp
}

# ---- ejabberd 23.01 (Debian): ejabberdctl foreground as user ejabberd, own
# node name and distribution port (no epmd), private config, spool and logs
start_ejabberd() { # [label]
    local label=${1:-ejabberd} node=weftbench
    local d=$out/$label p tp dp wp
    [ "$label" = ejabberd ] || node=weftbench${label//-/}
    mkdir -p "$d/spool" "$d/logs" "$d/certs"
    p=$(free_port) tp=$(free_port) dp=$(free_port) wp=$(free_port)
    cat "$out/certs/localhost.crt" "$out/certs/localhost.key" >"$d/certs/localhost.pem"
    local emam='  mod_mam: {default: always}'; [ "$mam" = on ] || emam=
    sed -e "s#@DIR@#$d#g; s#@PORT@#$p#; s#@TLSPORT@#$tp#; s#@HTTPPORT@#$wp#; s#@SCRAM_HASH@#sha256#; s#@REQUIRE_TLS@#true#" \
        -e "s#@MAM@#$emam#" "$here/ejabberd.yml.in" >"$d/ejabberd.yml"
    if [ "$label" = ejabberd-pg ]; then
        # everything in PostgreSQL: accounts, rosters, offline messages
        sed -i -e "s#^auth_method: internal#auth_method: sql#" \
            -e "s#^default_db: mnesia#default_db: sql\nsql_type: pgsql\nsql_server: 127.0.0.1\nsql_port: $pg_port\nsql_database: ejabberd\nsql_username: weft\nsql_password: \"\"\nsql_pool_size: 10#" \
            "$d/ejabberd.yml"
    fi
    sed -e "s#@DISTPORT@#$dp#; s#weftbench@#$node@#" "$here/ejabberdctl.cfg.in" >"$d/ejabberdctl.cfg"
    cp /etc/ejabberd/inetrc "$d/" 2>/dev/null || true
    if [ "$(id -u)" = 0 ]; then chown -R ejabberd "$d"; fi
    # ejabberdctl started by root switches to user ejabberd with su, which
    # resets the open-files limit to 1024 (ejabberd then dies of emfile near
    # 1,000 sessions); setpriv switches user and keeps our limit.
    local asuser=()
    if [ "$(id -u)" = 0 ]; then
        asuser=(setpriv --reuid ejabberd --regid ejabberd --init-groups env HOME="$d")
    fi
    (cd "$d" && exec "${srv_pin[@]}" "${asuser[@]}" ejabberdctl --config-dir "$d" --config "$d/ejabberd.yml" \
        --ctl-config "$d/ejabberdctl.cfg" --logs "$d/logs" --spool "$d/spool" foreground \
        >"$d/stdout.log" 2>&1) &
    started+=($!)
    wait_port "$p"
    local beam=
    for _ in $(seq 50); do
        beam=$(pgrep -f "beam.smp.*-sname $node@localhost.*$d" | head -1 || true)
        [ -n "$beam" ] && break
        sleep 0.1
    done
    [ -n "$beam" ] && started+=("$beam")
    port[$label]=$p pids[$label]=$beam mech[$label]=SCRAM-SHA-256 wsport[$label]=$wp
}
start_ejabberd-pg() {
    start_postgres
    start_ejabberd ejabberd-pg
}

gen() { # server scenario args...
    local s=$1; shift
    "${gen_pin[@]}" "$bench" --port "${port[$s]}" --domain localhost --tls starttls \
        --mech "${mech[$s]}" --pids "${pids[$s]}" --label "$s" "$@"
}
gen_ws() { # the same over plain WebSocket on loopback
    local s=$1; shift
    "${gen_pin[@]}" "$bench" --port "${wsport[$s]}" --domain localhost --tls none --websocket /xmpp-websocket \
        --mech "${mech[$s]}" --pids "${pids[$s]}" --label "$s ws" "$@"
}

# Waits until server s has finished what a run left it (up to SETTLE_MAX
# seconds): its processes' CPU time grows by at most 5 % of the time for
# two half-seconds in a row. Every server shares CPU 0: a server still
# working off a run's backlog (Prosody and ejabberd hold seconds of queued
# messages when a chat run ends) would otherwise run beside the next
# server's run and be counted against it.
settle_max=${SETTLE_MAX:-60}
cpu_ticks() { # pids (comma-separated): their utime + stime, in clock ticks
    local t=0 pid f
    for pid in ${1//,/ }; do
        [ -r "/proc/$pid/stat" ] || continue
        f=$(sed 's/.*) //' "/proc/$pid/stat")
        set -- $f
        t=$((t + ${12} + ${13}))
    done
    echo "$t"
}
settle() { # server
    local p=${pids[$1]} quiet=0 i a b hz
    hz=$(getconf CLK_TCK)
    a=$(cpu_ticks "$p")
    for ((i = 0; i < settle_max * 2 && quiet < 2; i++)); do
        sleep 0.5
        b=$(cpu_ticks "$p")
        if [ $(((b - a) * 40)) -le "$hz" ]; then quiet=$((quiet + 1)); else quiet=0; fi
        a=$b
    done
    [ "$quiet" -ge 2 ] || echo "  ($1 still busy after ${settle_max}s)" >&2
}

for s in $servers; do "start_${s//-/_}"; done
sleep 2
max_users=${idle_levels##*,}
for n in $((2 * chat_pairs)) $((fanout_k + 1)) $login_conc; do [ "$n" -gt "$max_users" ] && max_users=$n; done
for k in $pep_ks; do n=$((k + 1)); [ "$n" -gt "$max_users" ] && max_users=$n; done
if [[ " $scenarios " == *" muc "* ]]; then
    for sh in $muc_shapes; do n=$((${sh%x*} * ${sh#*x})); [ "$n" -gt "$max_users" ] && max_users=$n; done
fi
for s in $servers; do
    gen "$s" --register ibr --scenario register --users "$max_users" --concurrency 50 >&2
done

turned() { # run: $servers, turned left by run - 1
    local -a list=($servers)
    local n=${#list[@]} k i
    k=$((($1 - 1) % n))
    for ((i = 0; i < n; i++)); do printf '%s ' "${list[(i + k) % n]}"; done
}

: >"$out/results.jsonl"
for run in $(seq "$runs"); do
    for sc0 in $scenarios; do
      # pep runs once per contact count: pep:200, pep:1000
      scs=$sc0
      [ "$sc0" = pep ] && scs=$(for k in $pep_ks; do printf 'pep:%s ' "$k"; done)
      # muc runs once per shape: muc:1x500, muc:100x10
      [ "$sc0" = muc ] && scs=$(for sh in $muc_shapes; do printf 'muc:%s ' "$sh"; done)
      for sc in $scs; do
        for s in $(turned "$run"); do
            case $sc in
                idle) args=(--scenario idle --users "$max_users" --levels "$idle_levels" --contacts 10 --concurrency 100 --settle "$idle_settle") ;;
                chat) args=(--scenario chat --pairs "$chat_pairs" --window "$chat_window" --seconds "$chat_seconds") ;;
                login) args=(--scenario login --users "$max_users" --concurrency "$login_conc" --seconds "$login_seconds") ;;
                fanout) args=(--scenario fanout --contacts "$fanout_k" --rounds 5) ;;
                pep:*) args=(--scenario pep --contacts "${sc#pep:}" --rounds ${PEP_ROUNDS:-5} --concurrency 100) ;;
                muc:*) sh=${sc#muc:}
                       args=(--scenario muc --rooms "${sh%x*}" --occupants "${sh#*x}" --senders "$muc_senders"
                             --window "$muc_window" --seconds "$muc_seconds" --concurrency "$muc_join_conc")
                       [ -n "${mucpid[$s]:-}" ] && args+=(--pids "${mucpid[$s]}") ;;
            esac
            for tr in $transports; do
                g=gen
                [ "$tr" = websocket ] && g=gen_ws
                echo "run $run: $sc on $s over $tr" >&2
                $g "$s" "${args[@]}" >>"$out/results.jsonl" || echo "  ($sc on $s over $tr reported failures)" >&2
                settle "$s"
            done
        done
        # SCRAM-SHA-1 logins for weft too, the mechanism Prosody has
        if [ "$sc" = login ] && [[ " $servers " == *" weft "* ]]; then
            "${gen_pin[@]}" "$bench" --port "${port[weft]}" --domain localhost --tls starttls \
                --mech SCRAM-SHA-1 --pids "${pids[weft]}" --label weft "${args[@]}" >>"$out/results.jsonl" || true
            settle weft
        fi
      done
    done
done

python3 "$here/table.py" "$out/results.jsonl"
echo "raw results: $out/results.jsonl" >&2
