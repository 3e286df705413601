# lib.sh: shared by the shell-driven integration tests (sourced, not run). Gives each test a
# temp dir, a list of started pids stopped on exit, free ports and a wait for a listener.

dir=$(mktemp -d /tmp/splicer-sh.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
# A command that fails under `set -e` says where, instead of ending the test silently.
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND"; echo "0 passed, 1 failed"' ERR

# free_port VAR: sets VAR to a loopback port nothing listens on, below the kernel's ephemeral
# range so that no outgoing connection of a parallel test holds it either, and never the same
# one twice in one test (so it is not called in a $(...) subshell).
_given_ports=" "
free_port() {
    local low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range)
    local span=$((low - 10000))
    ((span > 1000)) || span=1000
    local p=$((10000 + (RANDOM * 32768 + RANDOM) % span))
    while [[ $_given_ports == *" $p "* ]] || (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
        p=$((p + 1))
    done
    _given_ports+="$p "
    printf -v "$1" '%s' "$p"
}

# Waits up to 30 s (a loaded CI box starts Prometheus slowly) until HOST:PORT accepts.
wait_listen() {
    local host=$1 port=$2
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "FAIL: nothing listens on $host:$port"
    return 1
}
