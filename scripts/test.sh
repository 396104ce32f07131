#!/usr/bin/env bash
# The test command from the README: installs what is missing, builds, type-checks, runs vitest.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
npx tsc -p tsconfig.test.json
exec npx vitest run "$@"
