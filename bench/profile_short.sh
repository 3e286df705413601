#!/usr/bin/env bash
# bench/profile_short.sh [PEER...]: where a proxy's CPU goes per short connection (issue 11).
# PEER is splicer, splicer-auto, splicer-copy, haproxy or haproxy-splice (default: splicer
# haproxy). For each, on scenario 2's load (wrk -t1 -c SHORT_CONNS, `Connection: close`, a
# 64-byte file from a one-worker nginx), every process pinned to CPU PIN_CPU as in run.sh:
#
#   1. CPU split per connection: the proxy's utime and stime (/proc/PID/stat), the pinned
#      CPU's user, system and softirq time (/proc/stat), over one DURATION run.
#   2. perf record -g of the proxy (-p PID, timer-sampled where there is no PMU): the share of
#      its samples by syscall (perf_bysyscall.awk: the __x64_sys_NAME frame of each kernel
#      stack), per DSO (kernel, the binary, libuv, libc), and the top symbols (self time).
#   3. perf record -g of the whole pinned CPU (-a -C PIN_CPU): the share per command.
#   4. strace -f -c of the proxy (slows it down; counts only), per connection.
#   5. strace -f of the proxy around one curl request: the syscall sequence of a connection.
#
# Each run starts a fresh proxy. Output in bench/out/profile-RUN_ID/: summary.txt and, per peer,
# the raw reports. Needs perf (linux-perf), strace, wrk, curl, nginx, haproxy. Not part of
# run.sh: profiling perturbs what run.sh measures. Stops every process it started, by pid.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
DURATION=${DURATION:-10}
PIN_CPU=${PIN_CPU:-0}
SHORT_CONNS=${SHORT_CONNS:-32}
PORT_BASE=${PORT_BASE:-27100}
RUN_ID=${RUN_ID:-$(date +%Y%m%d-%H%M%S)}
OUT=$BENCH/out/profile-$RUN_ID
SPLICER=${SPLICER_BIN:-$ROOT/build/splicer}
PEERS=("$@")
((${#PEERS[@]})) || PEERS=(splicer haproxy)
PROXY_PORT=$PORT_BASE
WEB_PORT=$((PORT_BASE + 2))
PIN=(taskset -c "$PIN_CPU")

log() { printf '[profile %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
for t in perf strace wrk curl nginx; do command -v "$t" >/dev/null || die "$t is missing"; done
[[ -x $SPLICER ]] || die "no splicer at $SPLICER (build it, or set SPLICER_BIN)"
mkdir -p "$OUT/www" "$OUT/logs"
head -c 64 /dev/zero | tr '\0' x >"$OUT/www/tiny.txt"

STARTED=()
stop() { # PID: TERM, then KILL after 5 s
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop "${STARTED[i]}"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
    local i
    for ((i = 0; i < 200; i++)); do
        ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.05
    done
    die "nothing listens on port $1"
}
for p in $PROXY_PORT $WEB_PORT; do
    ! ss -Hltn "sport = :$p" | grep -q . || die "port $p is in use; set PORT_BASE"
done

cat >"$OUT/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $OUT/nginx.pid;
error_log $OUT/logs/nginx-error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    keepalive_timeout 0;
    server { listen 127.0.0.1:$WEB_PORT backlog=4096; root $OUT/www; }
}
EOF
"${PIN[@]}" nginx -p "$OUT" -e "$OUT/logs/nginx-error.log" -c "$OUT/nginx.conf" \
    -g 'daemon off;' >"$OUT/logs/nginx.log" 2>&1 &
STARTED+=($!)
wait_port "$WEB_PORT"

PROXY_PID=""
proxy_start() { # PEER: the same configurations as run.sh
    local peer=$1 relay=splice splice=""
    case $peer in
    splicer | splicer-auto | splicer-copy)
        [[ $peer == splicer-auto ]] && relay=auto
        [[ $peer == splicer-copy ]] && relay=copy
        cat >"$OUT/$peer.yaml" <<EOF
workers: 1
relay: $relay
pipe_size: 1m
log_level: warn
shutdown_timeout: 1s
listeners:
  bench:
    listen: 127.0.0.1:$PROXY_PORT
    upstream: pool
    idle_timeout: 0s
    max_connections: 100000
    backlog: 4096
upstreams:
  pool:
    servers:
      - address: 127.0.0.1:$WEB_PORT
EOF
        "${PIN[@]}" "$SPLICER" -c "$OUT/$peer.yaml" >"$OUT/logs/$peer.log" 2>&1 &
        ;;
    haproxy | haproxy-splice)
        [[ $peer == haproxy-splice ]] && splice=$'    option splice-request\n    option splice-response'
        cat >"$OUT/$peer.cfg" <<EOF
global
    nbthread 1
    maxconn 9200
    maxpipes 300
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
$splice
frontend fe
    bind 127.0.0.1:$PROXY_PORT
    backlog 4096
    default_backend be
backend be
    server s1 127.0.0.1:$WEB_PORT
EOF
        "${PIN[@]}" haproxy -db -f "$OUT/$peer.cfg" >"$OUT/logs/$peer.log" 2>&1 &
        ;;
    *) die "unknown peer $peer" ;;
    esac
    PROXY_PID=$!
    STARTED+=("$PROXY_PID")
    wait_port "$PROXY_PORT"
    # a first connection, so that lazily made state (pipe pool, haproxy's pools) exists
    curl -s -o /dev/null -H 'Connection: close' "http://127.0.0.1:$PROXY_PORT/tiny.txt" || true
}
proxy_stop() {
    stop "$PROXY_PID"
    local keep=() x
    for x in "${STARTED[@]}"; do [[ $x == "$PROXY_PID" ]] || keep+=("$x"); done
    STARTED=("${keep[@]}")
    local i
    for ((i = 0; i < 100; i++)); do
        ss -Hltn "sport = :$PROXY_PORT" | grep -q . || break
        sleep 0.05
    done
}

load() { # FILE: one wrk run; prints the number of connections (one request each)
    timeout $((DURATION + 20)) "${PIN[@]}" wrk -t 1 -c "$SHORT_CONNS" -d "${DURATION}s" \
        --timeout 5s -H 'Connection: close' "http://127.0.0.1:$PROXY_PORT/tiny.txt" >"$1" 2>&1
    awk '/requests in/ { print $1 }' "$1"
}

proc_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # utime stime
cpu_ticks() { awk -v l="cpu$PIN_CPU" '$1 == l { print $2 + $3, $4, $7 + $8, $5 }' /proc/stat; }

SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
hz=$(getconf CLK_TCK)
for peer in "${PEERS[@]}"; do
    log "$peer: CPU split"
    proxy_start "$peer"
    read -r pu0 ps0 < <(proc_ticks "$PROXY_PID")
    read -r mu0 ms0 mi0 _ < <(cpu_ticks)
    n=$(load "$OUT/$peer-wrk.txt")
    read -r pu1 ps1 < <(proc_ticks "$PROXY_PID")
    read -r mu1 ms1 mi1 _ < <(cpu_ticks)
    proxy_stop
    awk -v p="$peer" -v n="$n" -v hz="$hz" -v d="$DURATION" -v cpu="$PIN_CPU" -v a="$pu0 $ps0 $mu0 $ms0 $mi0" \
        -v b="$pu1 $ps1 $mu1 $ms1 $mi1" 'BEGIN {
        split(a, x, " "); split(b, y, " "); k = 1e6 / hz / n
        printf "%s: %d connections in the CPU run (%.0f/s)\n", p, n, n / d
        printf "  proxy CPU per conn: user %.1f us, kernel %.1f us, total %.1f us\n",
            (y[1] - x[1]) * k, (y[2] - x[2]) * k, (y[1] - x[1] + y[2] - x[2]) * k
        printf "  CPU %s per conn (every process): user %.1f us, system %.1f us, irq+softirq %.1f us, busy %.1f us\n",
            cpu, (y[3] - x[3]) * k, (y[4] - x[4]) * k, (y[5] - x[5]) * k,
            (y[3] - x[3] + y[4] - x[4] + y[5] - x[5]) * k }' >>"$SUMMARY"

    log "$peer: perf record -g -p (the proxy)"
    proxy_start "$peer"
    perf record -q -g -p "$PROXY_PID" -o "$OUT/$peer-proxy.data" >"$OUT/logs/perf-$peer.log" 2>&1 &
    tracer=$!
    sleep 1
    load "$OUT/$peer-wrk-perf.txt" >/dev/null
    kill -INT "$tracer"
    wait "$tracer" || true
    proxy_stop
    perf report -i "$OUT/$peer-proxy.data" --no-children --sort dso --stdio -g none \
        2>/dev/null | grep -v '^#' | grep . >"$OUT/$peer-proxy-dso.txt" || true
    perf report -i "$OUT/$peer-proxy.data" --no-children --sort dso,sym --stdio -g none \
        --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep . >"$OUT/$peer-proxy-sym.txt" || true
    perf report -i "$OUT/$peer-proxy.data" --children --sort sym --stdio -g none \
        --percent-limit 3 2>/dev/null | grep -v '^#' | grep . >"$OUT/$peer-proxy-children.txt" || true
    perf script -i "$OUT/$peer-proxy.data" -F comm,tid,ip,sym,dso 2>/dev/null >"$OUT/$peer-proxy.script" || true
    awk -f "$BENCH/perf_bysyscall.awk" "$OUT/$peer-proxy.script" | sort -rn >"$OUT/$peer-proxy-class.txt"
    awk -v syms=1 -f "$BENCH/perf_bysyscall.awk" "$OUT/$peer-proxy.script" | sort -rn |
        grep ' user: ' >"$OUT/$peer-proxy-user.txt" || true
    {
        echo "  perf -p $peer, samples by what the proxy was doing (kernel: in which syscall):"
        sed 's/^/    /' "$OUT/$peer-proxy-class.txt" | head -20
        echo "  user-space symbols (% of all the proxy's samples):"
        sed 's/^/    /' "$OUT/$peer-proxy-user.txt" | head -15
        echo "  perf -p $peer, samples per DSO:"
        sed 's/^/    /' "$OUT/$peer-proxy-dso.txt" | head -8
        echo "  top symbols (self):"
        sed 's/^/    /' "$OUT/$peer-proxy-sym.txt" | head -30
    } >>"$SUMMARY"

    log "$peer: perf record -a -C $PIN_CPU (the whole CPU)"
    proxy_start "$peer"
    perf record -q -a -C "$PIN_CPU" -o "$OUT/$peer-cpu.data" >"$OUT/logs/perf-cpu-$peer.log" 2>&1 &
    tracer=$!
    sleep 1
    load "$OUT/$peer-wrk-cpu.txt" >/dev/null
    kill -INT "$tracer"
    wait "$tracer" || true
    proxy_stop
    perf report -i "$OUT/$peer-cpu.data" --sort comm --stdio 2>/dev/null | grep -v '^#' | grep . \
        >"$OUT/$peer-cpu-comm.txt" || true
    {
        echo "  perf -a -C $PIN_CPU, samples per command:"
        sed 's/^/    /' "$OUT/$peer-cpu-comm.txt" | head -8
    } >>"$SUMMARY"

    log "$peer: strace -f -c"
    proxy_start "$peer"
    strace -f -c -o "$OUT/$peer-strace-c.txt" -p "$PROXY_PID" 2>/dev/null &
    tracer=$!
    sleep 1
    n=$(load "$OUT/$peer-wrk-strace.txt")
    sleep 0.3
    kill -INT "$tracer"
    wait "$tracer" || true
    # one connection, every syscall in order
    strace -f -tt -o "$OUT/$peer-strace-one.txt" -p "$PROXY_PID" 2>/dev/null &
    tracer=$!
    sleep 1
    curl -s -o /dev/null -H 'Connection: close' "http://127.0.0.1:$PROXY_PORT/tiny.txt" || true
    sleep 0.5
    kill -INT "$tracer"
    wait "$tracer" || true
    proxy_stop
    {
        echo "  strace -f -c: $n connections; syscalls per connection:"
        awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ {
            printf "    %-16s %6.2f%s\n", $NF, $4 / n, (NF == 6 ? sprintf("  (%.2f failed)", $5 / n) : "") }' \
            "$OUT/$peer-strace-c.txt"
        echo "  one connection (strace -f, curl):"
        grep -v -e 'resumed>' -e '^ *$' "$OUT/$peer-strace-one.txt" | sed -E 's/^[0-9]+ +//; s/^/    /'
        echo
    } >>"$SUMMARY"
done
log "summary in $SUMMARY"
cat "$SUMMARY"
