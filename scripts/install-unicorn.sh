#!/usr/bin/env bash
# Debian's Unicorn 2.1.1 (trixie's libunicorn2t64, built by Debian from its source package) for
# the x86 engine, unpacked into its own directory beside bookworm's libunicorn2 2.0.1 (the same
# soname, so it is not installed as a package). 2.1.1 runs guest stores without 2.0.1's slow
# path (~10-50x faster on store-heavy programs). Idempotent; on any failure the engine keeps
# using 2.0.1 (src/runtime/x86/library-path.ts chooses), so this never fails the setup.
set -uo pipefail
DEST=/opt/zerocell/unicorn-2.1.1
[ -f "$DEST/libunicorn.so.2" ] && exit 0
[ "$(id -u)" = 0 ] || { echo "zerocell setup: not root, the x86 engine uses Unicorn 2.0.1"; exit 0; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/parts" "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
cat > "$work/parts/trixie.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$work/parts" -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Sandbox::User=root -qq)
echo "zerocell setup: fetching Debian's Unicorn 2.1.1 (libunicorn2t64, trixie) for the x86 engine..."
if apt-get "${apt_opts[@]}" update >/dev/null 2>&1 \
  && (cd "$work/deb" && apt-get "${apt_opts[@]}" download libunicorn2t64 >/dev/null 2>&1) \
  && dpkg-deb -x "$work"/deb/libunicorn2t64_*.deb "$work/x"; then
  lib="$(find "$work/x" -name 'libunicorn.so.2*' -type f | head -1)"
  if [ -n "$lib" ]; then
    mkdir -p "$DEST" && cp "$lib" "$DEST/libunicorn.so.2.tmp" && chmod 0644 "$DEST/libunicorn.so.2.tmp" && mv "$DEST/libunicorn.so.2.tmp" "$DEST/libunicorn.so.2"
    echo "zerocell setup: Unicorn 2.1.1 in $DEST"
    exit 0
  fi
fi
echo "zerocell setup: Unicorn 2.1.1 not available here; the x86 engine uses Debian bookworm's 2.0.1"
exit 0
