#!/usr/bin/env bash
# Idempotent setup for a fresh machine: npm packages when missing or outdated, then a build of
# src/ when any source is newer than the build. Quiet when there is nothing to do.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$ROOT"
# Debian packages listed in scripts/apt-packages.txt (installed only when missing; needs root).
missing=()
while read -r pkg _; do
  [ -z "$pkg" ] && continue
  case "$pkg" in \#*) continue ;; esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/apt-packages.txt
if [ ${#missing[@]} -gt 0 ]; then
  echo "zerocell setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's Unicorn 2.1.1 for the x86 engine (falls back to 2.0.1 when it cannot be had).
scripts/install-unicorn.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "zerocell setup: installing npm packages (first run compiles better-sqlite3, ~2 min)..."
  npm ci --no-audit --no-fund
fi
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src tsconfig.json package.json -newer "$stamp" -print -quit)" ]; then
  echo "zerocell setup: building..."
  npx tsc -p tsconfig.json
  node scripts/copy-assets.mjs  # files tsc does not copy (src/runtime/python/driver.py)
  touch "$stamp"
fi
node scripts/build-examples.mjs
