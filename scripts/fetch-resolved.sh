#!/usr/bin/env bash
# Fetches a systemd-resolved binary for test/e2e/resolved-live.test.ts WITHOUT installing
# it: installing the package would turn the host's /etc/resolv.conf into resolved's stub
# symlink. The .debs of systemd-resolved and the libsystemd-shared it links against (the
# same version) are downloaded and unpacked into a directory of their own; the test runs
# <dir>/lib/systemd/systemd-resolved with LD_LIBRARY_PATH=<dir>/usr/lib/<arch>/systemd,
# inside a network namespace. Prints that directory. Debian/Ubuntu (apt) only.
#
# usage: scripts/fetch-resolved.sh [dir]   (default: node_modules/.cache/cordon-resolved)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-node_modules/.cache/cordon-resolved}"
bin="$dir/lib/systemd/systemd-resolved"

if [ ! -x "$bin" ]; then
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
    { echo "fetch-resolved: needs apt-get and dpkg-deb (Debian or Ubuntu)" >&2; exit 1; }
  apt-cache show systemd-resolved >/dev/null 2>&1 || apt-get update -qq
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # Root downloads into a directory _apt cannot write to: no sandbox user, no warning.
  dl() { (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root systemd-resolved libsystemd-shared); }
  # Package lists older than a point or security release name files no longer served:
  # refreshed once, then tried again.
  dl || { apt-get update -qq && dl; } ||
    { echo "fetch-resolved: apt-get download systemd-resolved libsystemd-shared failed" >&2; exit 1; }
  rm -rf "$dir.part"
  mkdir -p "$dir.part"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir.part"; done
  rm -rf "$dir"
  mv "$dir.part" "$dir"
fi

lib="$(dirname "$(find "$dir/usr/lib" -name 'libsystemd-shared-*.so' | head -n 1)")"
missing="$(LD_LIBRARY_PATH="$lib" ldd "$bin" | grep 'not found' || true)"
if [ -n "$missing" ]; then
  echo "fetch-resolved: $bin cannot load: $missing" >&2
  exit 1
fi
realpath "$dir"
