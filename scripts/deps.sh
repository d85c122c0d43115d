#!/usr/bin/env bash
# Installs what weft needs to build and test on Debian 12, only if missing.
# Sourced by scripts/run and scripts/test; safe to run again.
set -euo pipefail
WEFT_PACKAGES=(build-essential meson ninja-build pkg-config clang libclang-rt-dev
  libevent-dev libexpat1-dev libssl-dev libsqlite3-dev libidn-dev libcmocka-dev
  python3 python3-pytest python3-slixmpp python3-cryptography openssl valgrind profanity tmux iproute2
  dnsmasq-base prosody gnutls-bin default-jdk-headless jabberd2 libpq-dev postgresql-15
  ejabberd debhelper dpkg-dev fakeroot chromium)
missing=()
for p in "${WEFT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "weft: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Prosody and jabberd2 are peers for the federation tests (Prosody and
  # ejabberd also the sources of the migration tests), PostgreSQL the
  # storage tests' database; the tests run their own copies (tests/pg_server.py
  # runs initdb and pg_ctl in a temporary directory): their packages must not
  # start a system service (that would hold ports 5222, 5269, 5347 and 5432,
  # and fail the install where services cannot start). A policy-rc.d that
  # says "no" does that for the length of the install.
  servers=()
  for s in prosody jabberd2 postgresql-15 ejabberd; do
    [[ " ${missing[*]} " == *" $s "* ]] && servers+=("$s")
  done
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ${#servers[@]} -gt 0 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    made_policy=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null || rc=$?
  [ "$made_policy" = 1 ] && $SUDO rm -f "$policy"
  [ "$rc" = 0 ] || exit "$rc"
  # and none starts at the next boot either (jabberd2's units: jabberd*)
  for s in "${servers[@]}"; do
    units=("$s")
    [ "$s" = jabberd2 ] && units=(jabberd jabberd-router jabberd-sm jabberd-c2s jabberd-s2s)
    [ "$s" = postgresql-15 ] && units=(postgresql)
    $SUDO systemctl disable --now "${units[@]}" >/dev/null 2>&1 || $SUDO service "$s" stop >/dev/null 2>&1 || true
  done
fi

# The browser test (tests/integration/test_browser_converse.py): converse.js
# and puppeteer-core from npm (versions in tests/integration/browser/
# package.json), kept in WEFT_NODE_DIR for every run to reuse. puppeteer-core
# downloads no browser; the test drives Debian's chromium (above). Node and
# npm come from Debian unless some other node is there already (NodeSource's
# nodejs bundles npm and conflicts with Debian's npm package).
WEFT_NODE_DIR=${WEFT_NODE_DIR:-$HOME/.cache/weft/node}
if ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
node_pkg="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/integration/browser/package.json"
if ! cmp -s "$node_pkg" "$WEFT_NODE_DIR/package.json" ||
   [ ! -f "$WEFT_NODE_DIR/node_modules/converse.js/dist/converse.min.js" ] ||
   [ ! -f "$WEFT_NODE_DIR/node_modules/puppeteer-core/package.json" ]; then
  echo "weft: installing converse.js and puppeteer-core into $WEFT_NODE_DIR" >&2
  mkdir -p "$WEFT_NODE_DIR"
  cp "$node_pkg" "$WEFT_NODE_DIR/package.json"
  (cd "$WEFT_NODE_DIR" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi
