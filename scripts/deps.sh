#!/usr/bin/env bash
# deps.sh: install the Debian packages splicer needs to build and test, only those missing.
# Usage: scripts/deps.sh [EXTRA_PACKAGE...]
# Quiet and idempotent when everything is there; runs apt-get update only before an install.
# Needs root or sudo when something is missing.
set -euo pipefail

packages=(build-essential cmake pkg-config libuv1-dev libyaml-dev libmicrohttpd-dev libsystemd-dev check "$@")

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "deps.sh: not a Debian-like system (no dpkg-query/apt-get); make sure these are" \
        "installed: ${packages[*]}" >&2
    exit 0
fi

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi

if ((EUID == 0)); then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: run as root (or install sudo) to install them" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
# sudo resets the environment, so pass DEBIAN_FRONTEND through env(1).
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}"
