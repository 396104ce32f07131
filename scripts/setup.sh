#!/usr/bin/env bash
# Idempotent setup for a fresh machine: npm packages when missing or outdated, then a build of
# src/ when any source is newer than the build. Quiet when there is nothing to do.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$ROOT"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "zerocell setup: installing npm packages (first run compiles better-sqlite3, ~2 min)..."
  npm ci --no-audit --no-fund
fi
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src tsconfig.json package.json -newer "$stamp" -print -quit)" ]; then
  echo "zerocell setup: building..."
  npx tsc -p tsconfig.json
  touch "$stamp"
fi
node scripts/build-examples.mjs
