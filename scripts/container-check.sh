#!/usr/bin/env bash
# container-check.sh: run the README's Quick start (scripts/test.sh, then a short scripts/demo.sh)
# the way a newcomer would, on a bare Debian 12 container with IPv6 disabled: once as root, and
# once as a user without sudo (root installs the packages first, since such a user cannot).
# The sources are a clean `git archive` of HEAD, so only committed work is checked.
#
# Usage: scripts/container-check.sh [root|user]...   (default: root user)
# Env: IMAGE   the bare image (default debian:bookworm; without registry access build it with
#              BASE_TAG=debian:bookworm docker/base-image.sh)
#      CPUSET  passed to --cpuset-cpus when set
#      LOG_DIR where each run's output goes (default /tmp/splicer-container-check)
# Needs git, a running Docker daemon and a Debian mirror reachable from the container.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE=${IMAGE:-debian:bookworm}
LOG_DIR=${LOG_DIR:-/tmp/splicer-container-check}
modes=("$@")
((${#modes[@]})) || modes=(root user)
mkdir -p "$LOG_DIR"
docker image inspect "$IMAGE" >/dev/null ||
    { echo "container-check.sh: no image $IMAGE (see the header of this script)" >&2; exit 1; }

status=0
for mode in "${modes[@]}"; do
    [[ $mode == root || $mode == user ]] || { echo "unknown mode '$mode'" >&2; exit 2; }
    c=splicer-check-$mode-$$
    args=(--sysctl net.ipv6.conf.all.disable_ipv6=1 --sysctl net.ipv6.conf.default.disable_ipv6=1)
    [[ -n ${CPUSET:-} ]] && args+=(--cpuset-cpus "$CPUSET")
    docker run -d --rm --name "$c" "${args[@]}" "$IMAGE" sleep infinity >/dev/null
    # shellcheck disable=SC2064 # expand $c now: it changes with each mode
    trap "docker rm -f $c >/dev/null 2>&1 || true" EXIT
    log=$LOG_DIR/$mode.log
    : >"$log"
    if docker exec "$c" test -s /proc/net/if_inet6; then
        echo "container-check.sh: $c still has IPv6 addresses" >&2
        exit 1
    fi
    docker exec "$c" mkdir /src
    git archive --format=tar HEAD | docker exec -i "$c" tar -x -C /src
    user=root
    if [[ $mode == user ]]; then
        user=newcomer
        # What an administrator would do for a user without sudo: the same packages test.sh's
        # own deps.sh call installs, then nothing more as root.
        # shellcheck disable=SC2016 # expanded inside the container
        docker exec -w /src "$c" bash -c 'scripts/deps.sh $(sed -nE "s/^scripts\/deps.sh //p" \
            scripts/test.sh) && useradd -m newcomer && chown -R newcomer: /src' >>"$log" 2>&1
    fi
    for cmd in scripts/test.sh "DEMO_CONNECTIONS=6 scripts/demo.sh"; do
        start=$SECONDS
        rc=0
        docker exec -u "$user" -w /src "$c" bash -c "$cmd" >>"$log" 2>&1 || rc=$?
        printf '%-5s %-34s exit %d, %d s\n' "$mode" "$cmd" "$rc" $((SECONDS - start))
        ((rc == 0)) || status=1
    done
    sed -n '/^==== summary ====/,/^tests: /p' "$log"
    grep -E '^(connection [0-9]+ ->|answers:)' "$log" || true
    echo "full log: $log"
    docker rm -f "$c" >/dev/null
    trap - EXIT
done
exit "$status"
