#!/usr/bin/env bash
# test_deb.sh (ctest docker.deb): builds the Debian package (scripts/package.sh) and installs it
# with apt in a bare debian:bookworm container, as an operator would, then checks what the
# package promises: `splicer -t -c /etc/splicer/splicer.yaml` passes; the splicer system user
# exists; the unit is in place; /etc/splicer/splicer.yaml is a registered conffile that survives
# a remove; a purge takes the conffile, the user, the log directory and the unit away.
# Exits 77 (ctest: skipped), with the reason, without a Docker daemon, without the base image
# (not here, not pullable: build it with BASE_TAG=debian:bookworm docker/base-image.sh), or when
# the container cannot reach a Debian mirror for the package's dependencies. It never starts a
# daemon itself.
#
# Env: SPLICER_SOURCE_DIR  repository root (default: two levels above this script)
#      SPLICER_DEB         a built .deb to test instead of building one
#      DEB_TEST_IMAGE      the image (default debian:bookworm)
set -euo pipefail

src=${SPLICER_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
image=${DEB_TEST_IMAGE:-debian:bookworm}
name=splicer-deb-test-$$
skip() {
    echo "SKIP: $*"
    exit 77
}
log() { printf '[%(%T)T] %s\n' -1 "$*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

command -v docker >/dev/null 2>&1 || skip "no docker client installed"
if ! server=$(timeout 15 docker version --format '{{.Server.Version}}' 2>/dev/null); then
    skip "no Docker daemon reachable (start one with: dockerd > /tmp/dockerd.log 2>&1 &)"
fi
log "docker daemon $server"
if ! docker image inspect "$image" >/dev/null 2>&1; then
    log "image $image is not here: docker pull $image"
    timeout 300 docker pull -q "$image" >/dev/null 2>&1 ||
        skip "image $image is not here and cannot be pulled (no registry access?);" \
            "build it with: BASE_TAG=$image docker/base-image.sh"
fi

tmp=$(mktemp -d)
cleanup() {
    timeout 60 docker rm -f "$name" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- the package ---------------------------------------------------------------------------------
if [[ -n ${SPLICER_DEB:-} ]]; then
    deb=$SPLICER_DEB
else
    log "scripts/package.sh"
    deb=$("$src/scripts/package.sh" "$tmp/pkg" 2>"$tmp/package.log" | tail -n 1) || {
        cat "$tmp/package.log" >&2
        fail "scripts/package.sh failed"
    }
    grep -E '^package.sh: (built|systemd-analyze)|^[EW]: ' "$tmp/package.log" || true
fi
[[ -f $deb ]] || fail "no package at '$deb'"
version=$(dpkg-deb -f "$deb" Version)
mkdir -p "$tmp/in"
cp "$deb" "$tmp/in/"
debname=$(basename "$deb")

# --- a bare container ----------------------------------------------------------------------------
timeout 60 docker run -d --name "$name" -v "$tmp/in:/pkg:ro" "$image" sleep 3600 >/dev/null
dx() { timeout 600 docker exec "$name" "$@"; }
dx sh -c '! command -v splicer && ! getent passwd splicer' >/dev/null ||
    fail "$image already has splicer or a splicer user"

log "apt-get install ./$debname"
if ! dx apt-get update >"$tmp/apt.log" 2>&1 ||
    grep -qE "^(W|E): (Failed to fetch|Some index files failed)" "$tmp/apt.log"; then
    cat "$tmp/apt.log" >&2
    skip "the container cannot reach a Debian mirror for the package's dependencies"
fi
dx env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "/pkg/$debname" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    fail "apt-get install of $debname failed"
}
grep -E "^(Setting up|Unpacking) splicer" "$tmp/install.log"

# --- installed -----------------------------------------------------------------------------------
[[ $(dx dpkg-query -W -f='${Status} ${Version}' splicer) == "install ok installed $version" ]] ||
    fail "dpkg does not list splicer $version as installed"
dx splicer -t -c /etc/splicer/splicer.yaml || fail "splicer -t rejects the installed config"
[[ $(dx splicer --version) == "splicer $version" ]] || fail "splicer --version is not $version"
[[ $(dx sh -c 'command -v splicer') == /usr/sbin/splicer ]] || fail "splicer is not /usr/sbin/splicer"
user=$(dx getent passwd splicer) || fail "no splicer user after install"
IFS=: read -r _ _ uid gid _ home shell <<<"$user"
log "user: $user"
((uid < 1000)) || fail "splicer is uid $uid, not a system user"
[[ $shell == /usr/sbin/nologin ]] || fail "splicer's shell is $shell"
[[ $(dx getent group splicer | cut -d: -f3) == "$gid" ]] || fail "no splicer group"
dx test -f /lib/systemd/system/splicer.service || fail "no /lib/systemd/system/splicer.service"
dx grep -qx 'Type=notify' /lib/systemd/system/splicer.service || fail "the unit is not Type=notify"
conffiles=$(dx dpkg-query -W -f='${Conffiles}' splicer)
log "conffiles:$conffiles"
[[ $conffiles == *"/etc/splicer/splicer.yaml "* ]] || fail "/etc/splicer/splicer.yaml is no conffile"
dx test -f /usr/share/doc/splicer/copyright || fail "no copyright file"
dx test -f /usr/share/doc/splicer/README.md.gz || fail "no README in /usr/share/doc/splicer"
# The installed binary serves as the splicer user (what the unit's User= does), on the loopback
# of the container: a config of its own, relaying to a port with nothing behind it.
dx sh -c 'cat >/tmp/t.yaml <<EOF
admin:
  listen: 127.0.0.1:19090
listeners:
  t:
    listen: 127.0.0.1:18080
    upstream: u
upstreams:
  u:
    servers:
      - address: 127.0.0.1:18081
EOF
chmod 0644 /tmp/t.yaml'
dx setpriv --reuid=splicer --regid=splicer --clear-groups splicer -t -c /tmp/t.yaml ||
    fail "the splicer user cannot check a config"

# --- remove keeps the conffile, purge takes everything -------------------------------------------
dx sh -c 'echo "# edited by the operator" >>/etc/splicer/splicer.yaml'
# What LogsDirectory= makes when systemd starts the service (no systemd runs in the container).
dx install -d -o splicer -g splicer -m 0750 /var/log/splicer
dx sh -c 'echo line >/var/log/splicer/access.log'
dx env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q splicer >"$tmp/remove.log" 2>&1 || {
    cat "$tmp/remove.log" >&2
    fail "apt-get remove failed"
}
[[ $(dx dpkg-query -W -f='${Status}' splicer) == "deinstall ok config-files" ]] ||
    fail "after remove, dpkg does not keep splicer's config files"
dx grep -q "edited by the operator" /etc/splicer/splicer.yaml ||
    fail "remove did not keep the edited conffile"
dx test ! -e /usr/sbin/splicer || fail "remove left /usr/sbin/splicer"
dx env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q splicer >"$tmp/purge.log" 2>&1 || {
    cat "$tmp/purge.log" >&2
    fail "apt-get purge failed"
}
status=$(dx dpkg-query -W -f='${Status}' splicer 2>/dev/null || true)
[[ -z $status || $status == "unknown ok not-installed" ]] || fail "after purge, dpkg says '$status'"
dx test ! -e /etc/splicer || fail "purge left /etc/splicer"
dx test ! -e /lib/systemd/system/splicer.service || fail "purge left the unit"
dx test ! -e /var/log/splicer || fail "purge left /var/log/splicer"
! dx getent passwd splicer >/dev/null || fail "purge left the splicer user"
! dx getent group splicer >/dev/null || fail "purge left the splicer group"
log "PASS: splicer $version installed, checked, removed and purged in $image"
