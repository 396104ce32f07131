#!/usr/bin/env bash
# The test command from the README: installs what is missing, builds, type-checks, runs vitest.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
npx tsc -p tsconfig.test.json
npx madge --circular --no-spinner --extensions ts --ts-config tsconfig.json src  # import cycles in src/ (type-only imports count too) fail the run
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
exec npx vitest run "$@"
