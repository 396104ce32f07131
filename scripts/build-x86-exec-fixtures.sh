#!/usr/bin/env bash
# Builds the x86 executor's test programs (test/fixtures/x86-exec/*.c) as static musl binaries
# into test/fixtures/build/x86-exec/. Idempotent: a program is rebuilt only when its source or
# include/zerocell.h is newer than the binary. Needs musl-tools (musl-gcc).
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
SRC="$ROOT/test/fixtures/x86-exec"
OUT="$ROOT/test/fixtures/build/x86-exec"
CC="${MUSL_GCC:-musl-gcc}"
command -v "$CC" >/dev/null || { echo "build-x86-exec-fixtures: $CC not found (apt-get install musl-tools)" >&2; exit 1; }
mkdir -p "$OUT"
# Test files run in parallel and may all call this script: one builds, the others wait.
exec 9>"$OUT/.lock"
flock 9
for c in "$SRC"/*.c; do
  name="$(basename "$c" .c)"
  bin="$OUT/$name"
  if [[ -x "$bin" && "$bin" -nt "$c" && "$bin" -nt "$ROOT/include/zerocell.h" ]]; then continue; fi
  "$CC" -static -O2 -Wall -Wno-unused-variable -fno-stack-protector -I "$ROOT/include" -o "$bin.tmp.$$" "$c"
  mv -f "$bin.tmp.$$" "$bin"
  echo "built $bin"
done
