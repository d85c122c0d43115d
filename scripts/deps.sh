#!/usr/bin/env bash
# Installs what weft needs to build and test on Debian 12, only if missing.
# Sourced by scripts/run and scripts/test; safe to run again.
set -euo pipefail
WEFT_PACKAGES=(build-essential meson ninja-build pkg-config clang libclang-rt-dev
  libevent-dev libexpat1-dev libssl-dev libsqlite3-dev libidn-dev libcmocka-dev
  python3 python3-pytest python3-slixmpp openssl valgrind profanity tmux iproute2
  dnsmasq-base prosody gnutls-bin default-jdk-headless libpq-dev postgresql-15)
missing=()
for p in "${WEFT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "weft: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Prosody is a peer for the federation tests and PostgreSQL the storage
  # tests' database; both tests run their own copies (tests/pg_server.py runs
  # initdb and pg_ctl in a temporary directory): neither package may start a
  # system service (that would hold ports 5222, 5269 and 5432, and fail the
  # install where services cannot start). A policy-rc.d that says "no" does
  # that for the length of the install.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [[ " ${missing[*]} " == *" prosody "* || " ${missing[*]} " == *" postgresql-15 "* ]] &&
     [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    made_policy=1
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null || rc=$?
  [ "$made_policy" = 1 ] && $SUDO rm -f "$policy"
  [ "$rc" = 0 ] || exit "$rc"
  if [[ " ${missing[*]} " == *" prosody "* ]]; then
    $SUDO systemctl disable --now prosody >/dev/null 2>&1 || $SUDO service prosody stop >/dev/null 2>&1 || true
  fi
  # Debian creates a "main" cluster at install; the policy kept it stopped.
  # Keep it from starting at the next boot too (tests never use it).
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]]; then
    $SUDO systemctl disable --now postgresql >/dev/null 2>&1 || true
  fi
fi
