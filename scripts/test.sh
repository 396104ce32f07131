#!/usr/bin/env bash
# The test command from the README: installs what is missing, builds, type-checks, runs vitest.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
npx tsc -p tsconfig.test.json
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
exec npx vitest run "$@"
