#!/usr/bin/env bash
# s2s.sh: the federation benchmark (docs/performance.md, "Federation").
#
# For weft <-> weft and Prosody <-> Prosody in the same run, each server in
# its own network namespace with DNS from a dnsmasq (tests/integration/fed.py
# builds the network; tools/bench/s2s_bench.py measures):
#   - time from the first stanza to a new domain to its delivery (SRV + A
#     lookups, TCP, STARTTLS, dialback, delivery), servers freshly started;
#   - stanzas/s over one established s2s link (weft-bench-xmpp chat with
#     --peer-host: senders on one domain, receivers on the other).
# Prosody runs twice: with Debian's defaults (Nagle on: every small write of
# a negotiation waits for the peer's delayed ACK) and with nagle = false
# (TCP_NODELAY, as weft's sockets).
# Prints a markdown table on stdout; raw JSON lines go to $OUT/results.jsonl.
# Needs root (ip netns), dnsmasq, openssl and the prosody package.
#
#   sudo tools/bench/s2s.sh
#   RUNS=3 LAT_SAMPLES=5 PAIRS=50 WINDOW=10 SECONDS=10 BODY_BYTES=64 \
#   SERVERS="weft prosody prosody-nodelay" WEFT_BUILD=build-release NO_BUILD=1 tools/bench/s2s.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${WEFT_BUILD:-build-release}
case $build in /*) ;; *) build=$repo/$build ;; esac
export WEFT_BUILD=$build
export OUT=${OUT:-$(mktemp -d /tmp/weft-s2s-bench.XXXXXX)}
servers=${SERVERS:-weft prosody prosody-nodelay}

if [ "$(id -u)" != 0 ]; then
    echo "s2s.sh: needs root (network namespaces)" >&2
    exit 1
fi
if [ -z "${NO_BUILD:-}" ]; then
    if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$repo" -Dbuildtype=release >/dev/null
    fi
    ninja -C "$build" router/weft-router sm/weft-sm c2s/weft-c2s tools/weftctl tools/weft-bench-xmpp >/dev/null
    if [[ " $servers " == *" weft "* ]]; then
        ninja -C "$build" s2s/weft-s2s >/dev/null
    fi
fi
for b in tools/weft-bench-xmpp tools/weftctl; do
    [ -x "$build/$b" ] || { echo "s2s.sh: $build/$b not built" >&2; exit 1; }
done
if [[ " $servers " == *" weft "* ]] && [ ! -x "$build/s2s/weft-s2s" ]; then
    echo "s2s.sh: $build/s2s/weft-s2s not built (SERVERS='prosody prosody-nodelay' measures the baseline alone)" >&2
    exit 1
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVERS=$servers exec /usr/bin/python3 "$repo/tools/bench/s2s_bench.py"
