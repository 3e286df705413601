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
# `test_deb.sh systemd` (ctest docker.deb.systemd) runs the unit under a real systemd instead:
# the package and systemd in the image, systemd booted as the container's PID 1, then
# `systemctl start` (Type=notify: it returns on READY=1, and the listener serves at once), the
# sandbox as the kernel shows it (user, capabilities, no_new_privs, seccomp), StatusText,
# `systemctl reload` (a broken config fails it and the old one serves), the watchdog restarting
# a frozen splicer, and `systemctl stop` ending with exit 0. Skipped when systemd does not boot.
#
# Env: SPLICER_SOURCE_DIR  repository root (default: two levels above this script)
#      SPLICER_DEB         a built .deb to test instead of building one
#      DEB_TEST_IMAGE      the image (default debian:bookworm)
set -euo pipefail

mode=${1:-package}
[[ $mode == package || $mode == systemd ]] || {
    echo "usage: $0 [package|systemd]" >&2
    exit 2
}
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

# --- systemd mode: the unit under a real systemd ------------------------------------------------
# The package and systemd installed in the image, committed, then booted with systemd as PID 1
# (no --privileged: a read-only /sys/fs/cgroup and tmpfs on /run are enough for systemd 252).
if [[ $mode == systemd ]]; then
    prep=$name-prep
    booted=splicer-deb-systemd:$$
    cleanup_systemd() {
        timeout 60 docker rm -f "$prep" "$name" >/dev/null 2>&1 || true
        timeout 60 docker rmi -f "$booted" >/dev/null 2>&1 || true
        rm -rf "$tmp"
    }
    trap cleanup_systemd EXIT
    timeout 60 docker run -d --name "$prep" -v "$tmp/in:/pkg:ro" "$image" sleep 3600 >/dev/null
    if ! timeout 600 docker exec "$prep" apt-get update >"$tmp/apt.log" 2>&1 ||
        grep -qE "^(W|E): (Failed to fetch|Some index files failed)" "$tmp/apt.log"; then
        cat "$tmp/apt.log" >&2
        skip "the container cannot reach a Debian mirror for systemd and the package's dependencies"
    fi
    log "apt-get install systemd ./$debname"
    timeout 900 docker exec "$prep" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends systemd systemd-sysv "/pkg/$debname" >"$tmp/install.log" 2>&1 || {
        cat "$tmp/install.log" >&2
        fail "apt-get install of systemd and $debname failed"
    }
    # The test's config: the shipped one has an [::1] listener, and containers often have no
    # IPv6. Its listener relays to splicer's own admin endpoint, so a client in the container
    # (bash's /dev/tcp: the image has no curl) sees a reply that went through the relay.
    docker exec -i "$prep" sh -c 'cat >/etc/splicer/splicer.yaml' <<'YAML'
shutdown_timeout: 5s
admin:
  listen: 127.0.0.1:19090
listeners:
  t:
    listen: 127.0.0.1:18080
    upstream: admin
    max_connections: 1000
upstreams:
  admin:
    servers:
      - address: 127.0.0.1:19090
YAML
    docker commit "$prep" "$booted" >/dev/null
    timeout 60 docker rm -f "$prep" >/dev/null
    timeout 60 docker run -d --name "$name" --tmpfs /run --tmpfs /run/lock \
        -v /sys/fs/cgroup:/sys/fs/cgroup:ro "$booted" /lib/systemd/systemd >/dev/null
    sx() { timeout 120 docker exec "$name" "$@"; }
    state=
    for ((i = 0; i < 120; i++)); do
        state=$(sx systemctl is-system-running 2>/dev/null || true)
        [[ $state == running || $state == degraded ]] && break
        sleep 0.5
    done
    [[ $state == running || $state == degraded ]] ||
        skip "systemd does not boot in a container here (state '$state'; see docker logs)"
    log "systemd is $state in the container"
    show() { sx systemctl show splicer -p "$1" --value; }
    relay() { # a GET to the admin endpoint through the listener: its status line
        sx bash -c 'exec 3<>/dev/tcp/127.0.0.1/18080 &&
            printf "GET /healthz HTTP/1.0\r\n\r\n" >&3 && timeout 10 cat <&3' | head -n 1
    }
    wait_show() { # wait_show PROPERTY SUBSTRING: up to 20 s
        local v
        for ((i = 0; i < 100; i++)); do
            v=$(show "$1")
            [[ $v == *"$2"* ]] && return 0
            sleep 0.2
        done
        fail "$1 is '$v', want it to contain '$2'"
    }

    # Type=notify: `systemctl start` returns once READY=1 came, and the listener serves then.
    sx systemctl stop splicer >/dev/null 2>&1 || true
    sx systemctl start splicer || {
        sx journalctl -u splicer --no-pager | tail -n 20 >&2
        fail "systemctl start splicer failed"
    }
    [[ $(show ActiveState)/$(show SubState) == active/running ]] || fail "not active/running"
    [[ $(relay) == "HTTP/1.1 200"* ]] || fail "no reply through the listener right after start"
    pid=$(show MainPID)
    proc=$(sx cat "/proc/$pid/status")
    log "main pid $pid:" $(grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' <<<"$proc")
    [[ $(awk '$1 == "Uid:" { print $2 }' <<<"$proc") == $(sx id -u splicer) ]] ||
        fail "splicer does not run as the splicer user"
    grep -qE '^CapEff:\s+0000000000000400$' <<<"$proc" ||
        fail "capabilities beyond CAP_NET_BIND_SERVICE"
    grep -qE '^NoNewPrivs:\s+1$' <<<"$proc" || fail "NoNewPrivileges is not in force"
    grep -qE '^Seccomp:\s+2$' <<<"$proc" || fail "no seccomp filter (SystemCallFilter)"
    [[ $(show WatchdogUSec) == 30s ]] || fail "WatchdogUSec is $(show WatchdogUSec)"
    wait_show StatusText "1 total, config generation 1"
    log "StatusText: $(show StatusText)"

    # Reload: generation 2; a broken config fails `systemctl reload` (ExecReload's splicer -t)
    # and the old config keeps serving.
    sx systemctl reload splicer || fail "systemctl reload failed"
    wait_show StatusText "config generation 2"
    sx sh -c 'cp /etc/splicer/splicer.yaml /tmp/good.yaml && echo "bad: [" >>/etc/splicer/splicer.yaml'
    ! sx systemctl reload splicer 2>/dev/null || fail "systemctl reload accepted a broken config"
    [[ $(show ActiveState) == active ]] || fail "a failed reload stopped the service"
    [[ $(relay) == "HTTP/1.1 200"* ]] || fail "no reply after a failed reload"
    sx cp /tmp/good.yaml /etc/splicer/splicer.yaml
    log "reload: generation 2, a broken config refused by systemctl reload"

    # The watchdog: a frozen splicer stops pinging; systemd aborts it and Restart= brings it
    # back. WatchdogSec=2s in a drop-in, so that this takes seconds.
    sx mkdir -p /etc/systemd/system/splicer.service.d
    sx sh -c 'printf "[Service]\nWatchdogSec=2s\n" >/etc/systemd/system/splicer.service.d/wd.conf'
    sx systemctl daemon-reload
    sx systemctl restart splicer
    pid=$(show MainPID)
    restarts=$(show NRestarts)
    sx kill -STOP "$pid"
    for ((i = 0; i < 150; i++)); do
        (($(show NRestarts) > restarts)) && [[ $(show ActiveState) == active ]] && break
        sleep 0.2
    done
    (($(show NRestarts) > restarts)) || fail "a frozen splicer was not restarted by the watchdog"
    for ((i = 0; i < 50; i++)); do # journald may write it a moment later
        sx journalctl -u splicer --no-pager | grep -q "Failed with result 'watchdog'" && break
        sleep 0.2
    done
    sx journalctl -u splicer --no-pager | grep -q "Failed with result 'watchdog'" || {
        sx journalctl -u splicer --no-pager | tail -n 15 >&2
        fail "the journal does not say the watchdog ended it"
    }
    [[ $(show MainPID) != "$pid" ]] || fail "the frozen process is still the main one"
    [[ $(relay) == "HTTP/1.1 200"* ]] || fail "no reply after the watchdog restart"
    log "watchdog: frozen pid $pid aborted, restarted as $(show MainPID)"

    # SIGTERM from systemctl stop: STOPPING=1, a drain, exit 0.
    sx systemctl stop splicer
    [[ $(show Result)/$(show ExecMainStatus) == success/0 ]] ||
        fail "stop: Result $(show Result), exit status $(show ExecMainStatus)"
    log "PASS: splicer.service under systemd $(sx systemctl --version | head -n 1 | cut -d' ' -f2)"
    exit 0
fi

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
