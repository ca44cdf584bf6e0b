#!/usr/bin/env bash
# Installs everything `make run` and `make test` need on a fresh machine; a no-op when all is there.
#   scripts/install-deps.sh          Python environment only (enough for `make run`)
#   scripts/install-deps.sh --test   plus the Debian packages and Go tools the test suite uses
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'uv>=0.9,<0.14'
fi
uv sync --frozen --quiet

[ "${1:-}" = "--test" ] || exit 0

missing=()
while read -r pkg; do
  [ -z "$pkg" ] || dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done < <(grep -v '^\s*#' scripts/apt-packages.txt)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Package scripts must not start system daemons: the tests start their own servers.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

mkdir -p .bin
while read -r tool; do
  [ -z "$tool" ] && continue
  name=$(basename "${tool%@*}")
  if [ ! -x ".bin/$name" ]; then
    echo "building $tool"
    GOBIN="$PWD/.bin" GOFLAGS=-mod=mod go install "$tool"
  fi
done < <(grep -v '^\s*#' scripts/go-tools.txt)
