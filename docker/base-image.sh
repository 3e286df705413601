#!/usr/bin/env bash
# base-image.sh: build the Debian 12 base of docker/Dockerfile's build stage locally, for machines
# that reach a Debian mirror but no image registry. It bootstraps a minimal bookworm with
# debootstrap and imports it as debian:bookworm-slim, the tag the Dockerfile names.
# With registry access none of this is needed: `docker build` pulls the real image.
#
# Usage: docker/base-image.sh [--force]
#   --force   rebuild even if the tag already exists
# Env: BASE_TAG (default debian:bookworm-slim), DEBIAN_MIRROR (default http://deb.debian.org/debian)
# Needs root (debootstrap chroots), a running Docker daemon and the Debian mirror.
set -euo pipefail

tag=${BASE_TAG:-debian:bookworm-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=0
[[ ${1:-} == --force ]] && force=1

if ((force == 0)) && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base-image.sh: $tag already exists; nothing to do (--force rebuilds it)"
    exit 0
fi
if ((EUID != 0)); then
    echo "base-image.sh: debootstrap needs root" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
fi

rootfs=$(mktemp -d /tmp/splicer-rootfs.XXXXXX)
cleanup() {
    # debootstrap may leave /proc or /sys mounted inside the tree after a failure.
    umount -R "$rootfs/proc" "$rootfs/sys" 2>/dev/null || true
    rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

echo "base-image.sh: debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror"

# What the official image does: deb822 sources with the security and updates suites, no
# recommends, and no cached package lists in the image.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/00no-recommends"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*

echo "base-image.sh: importing as $tag"
tar -C "$rootfs" --numeric-owner -c . |
    docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$tag"
docker image ls "$tag"
