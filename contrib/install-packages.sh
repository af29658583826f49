#!/usr/bin/env bash
# install-packages.sh PKG...: apt-get install the Debian packages dpkg does
# not have yet (apt-get update first, once, only when something is missing).
# Shared by the quickstart, tests/run-all.sh and the benchmarks.
set -uo pipefail
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "==> installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
