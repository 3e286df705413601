#!/usr/bin/env bash
# test_image.sh (ctest docker.image): builds the container images from docker/Dockerfile, runs
# splicer as a sidecar in front of an sp-backend container, moves data through it with checksums,
# and checks that `docker stop` ends it with exit code 0.
# Without a reachable Docker daemon, without python3, without the Dockerfile's base image (not
# here and not pullable) or without the Debian mirror during the build, it exits 77, which ctest
# reports as skipped. It never starts a daemon itself: start one by hand (see README, "Container").
#
# Env: SPLICER_SOURCE_DIR  repository root (default: two levels above this script)
#      SPLICER_TEST_TAG    tag of the images it builds (default: test)
set -euo pipefail

src=${SPLICER_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
tag=${SPLICER_TEST_TAG:-test}
image=splicer:$tag
backend_image=splicer-backend:$tag
name=splicer-test-$$
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
# `docker version` fails at once when no daemon listens; the timeout covers a DOCKER_HOST
# that does not answer.
if ! server=$(timeout 15 docker version --format '{{.Server.Version}}' 2>/dev/null); then
    skip "no Docker daemon reachable (start one with: dockerd &)"
fi
command -v python3 >/dev/null 2>&1 || skip "python3 is needed for the data check"
log "docker daemon $server"

containers=()
tmp=$(mktemp -d)
cleanup() {
    local c
    for c in "${containers[@]}"; do
        timeout 30 docker rm -f "$c" >/dev/null 2>&1 || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- build -------------------------------------------------------------------------------------
# The Dockerfile's base images (all but scratch and its own stages) must be here or pullable: a
# machine without registry access cannot have them until docker/base-image.sh builds them, which
# is a missing prerequisite, not a defect of the image.
mapfile -t bases < <(awk 'toupper($1) == "FROM" { print $2 }' "$src/docker/Dockerfile" | sort -u)
stages=" $(awk 'toupper($1) == "FROM" && toupper($3) == "AS" { printf "%s ", $4 }' \
    "$src/docker/Dockerfile")"
for b in "${bases[@]}"; do
    [[ $b == scratch || $stages == *" $b "* ]] && continue
    docker image inspect "$b" >/dev/null 2>&1 && continue
    log "base image $b is not here: docker pull $b"
    timeout 300 docker pull -q "$b" >/dev/null 2>&1 ||
        skip "base image $b is not here and cannot be pulled (no registry access?);" \
            "build it with docker/base-image.sh"
done

for target in splicer backend; do
    t=$image
    [[ $target == backend ]] && t=$backend_image
    log "docker build --target $target -t $t"
    if ! timeout 1200 docker build -q -f "$src/docker/Dockerfile" --target "$target" -t "$t" \
        "$src" >"$tmp/build.log" 2>&1; then
        cat "$tmp/build.log" >&2
        # The build stage installs its compilers with apt-get: a mirror the build cannot reach
        # is the machine's lack, not the image's.
        why=$(grep -m 1 -E "Temporary failure resolving|Could not resolve|Failed to fetch|Unable to connect|Could not connect" \
            "$tmp/build.log" || true)
        [[ -z $why ]] || skip "docker build cannot reach the Debian mirror: $why"
        fail "docker build of $target failed"
    fi
done
size=$(docker image inspect -f '{{.Size}}' "$image")
log "image $image: $size bytes"
((size < 5 * 1024 * 1024)) || fail "image is $size bytes, over 5 MiB"
[[ $(docker image inspect -f '{{.Config.User}}' "$image") == 65532:65532 ]] ||
    fail "image does not run as 65532:65532"

# --- helpers -----------------------------------------------------------------------------------
# start_pair SUFFIX [docker run args for splicer...]: an echo backend on 127.0.0.1:8000 owning
# the network namespace (and publishing 8080 on a free host port), splicer as its sidecar.
# Sets be, sp and port.
start_pair() {
    local suffix=$1
    shift
    be=$name-be-$suffix
    sp=$name-sp-$suffix
    containers+=("$be" "$sp")
    timeout 60 docker run -d --name "$be" -p 127.0.0.1::8080 "$backend_image" \
        --mode echo 127.0.0.1:8000 >/dev/null
    timeout 60 docker run -d --name "$sp" --network "container:$be" "$@" "$image" >/dev/null
    port=$(docker port "$be" 8080/tcp | head -n 1)
    port=${port##*:}
    local i
    for ((i = 0; i < 100; i++)); do
        if docker exec "$sp" /usr/local/bin/splicer-probe >/dev/null 2>&1; then
            log "$sp: /healthz ok, listening on host port $port"
            return 0
        fi
        sleep 0.2
    done
    docker logs "$sp" >&2 || true
    fail "$sp: /healthz did not answer 200 within 20 s"
}

# relay PORT CONNS MIB: CONNS parallel connections each send MIB MiB of random bytes through the
# echo backend, read them back and compare SHA-256 digests.
relay() {
    python3 - "$@" <<'EOF'
import hashlib, os, socket, sys, threading
port, conns, mib = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
errors = []
def one(i):
    data = os.urandom(mib << 20)
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    def send():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=send)
    t.start()
    h, n = hashlib.sha256(), 0
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        h.update(b)
        n += len(b)
    t.join()
    s.close()
    if h.digest() != hashlib.sha256(data).digest():
        errors.append(f"connection {i}: {n} of {len(data)} bytes back, checksum differs")
ts = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
for t in ts: t.start()
for t in ts: t.join()
if errors:
    print("\n".join(errors)); sys.exit(1)
print(f"{conns} x {mib} MiB echoed, SHA-256 equal")
EOF
}

metric() { # metric CONTAINER NAME: the value of an unlabelled metric
    docker exec "$1" /usr/local/bin/splicer-probe 127.0.0.1:9090 /metrics |
        awk -v m="$2" '$1 == m { print $2 }'
}

# stop_clean CONTAINER: docker stop must end splicer (PID 1, SIGTERM) with exit code 0.
stop_clean() {
    timeout 60 docker stop -t 20 "$1" >/dev/null
    local code
    code=$(docker inspect -f '{{.State.ExitCode}}' "$1")
    docker logs "$1" 2>&1 | tail -n 3
    [[ $code == 0 ]] || fail "$1 exited $code after docker stop"
    log "$1: exit code 0 after docker stop"
}

# --- the shipped image and config ---------------------------------------------------------------
start_pair a
uid=$(docker top "$sp" -o pid,uid,comm | awk '$3 == "splicer" { print $2 }')
[[ $uid == 65532 ]] || fail "splicer runs as uid '$uid', not 65532"
[[ $(docker inspect -f '{{.State.Health.Status}}' "$sp") != unhealthy ]] || fail "unhealthy"
relay "$port" 1 64 || fail "relay through the shipped config"
relay "$port" 16 4 || fail "16 parallel connections"
bytes=$(docker exec "$sp" /usr/local/bin/splicer-probe 127.0.0.1:9090 /metrics |
    awk '$1 == "splicer_bytes_total{listener=\"web\",direction=\"upstream\"}" { print $2 }')
[[ $bytes == $((128 << 20)) ]] || fail "splicer_bytes_total upstream is '$bytes', want $((128 << 20))"
log "pipes: created $(metric "$sp" splicer_pipes_created_total)," \
    "shrunk $(metric "$sp" splicer_pipes_shrunk_total)," \
    "copy fallbacks $(metric "$sp" splicer_copy_fallbacks_total)"
stop_clean "$sp"

# --- pipe limits as non-root --------------------------------------------------------------------
# A pipe_size above fs.pipe-max-size makes F_SETPIPE_SZ fail with EPERM for an unprivileged
# process: splicer must take a smaller pipe, count it, and still relay every byte.
max=$(cat /proc/sys/fs/pipe-max-size 2>/dev/null || echo 1048576)
want=$((max * 4))
sed "s/^log_level: info/log_level: info\npipe_size: $((want / 1024))k/" "$src/docker/splicer.yaml" \
    >"$tmp/big-pipes.yaml"
chmod 0644 "$tmp/big-pipes.yaml"
start_pair b -v "$tmp/big-pipes.yaml:/etc/splicer/splicer.yaml:ro"
relay "$port" 8 8 || fail "relay with pipe_size above fs.pipe-max-size"
created=$(metric "$sp" splicer_pipes_created_total)
shrunk=$(metric "$sp" splicer_pipes_shrunk_total)
log "pipe_size $want > fs.pipe-max-size $max: pipes created $created, shrunk $shrunk," \
    "copy fallbacks $(metric "$sp" splicer_copy_fallbacks_total)," \
    "splice bytes $(metric "$sp" splicer_splice_bytes_total)"
((shrunk > 0)) || fail "no pipe counted as shrunk although pipe_size exceeds fs.pipe-max-size"
stop_clean "$sp"

log "PASS"
