#!/usr/bin/env bash
# bench/profile.sh [PEER...]: where a proxy's CPU goes per unit of work (issue 11), on one of
# run.sh's loads. PEER is splicer, splicer-auto, splicer-copy, haproxy or haproxy-splice
# (default: splicer haproxy). LOAD picks the load and its unit:
#
#   short    scenario 2: wrk -t1 -c SHORT_CONNS, `Connection: close`, a 64-byte file from a
#            one-worker nginx; per connection.
#   redis50  scenario 3: redis-benchmark PING_MBULK -c 50 -n REDIS_REQS against redis-server;
#            per request.
#   bulk1    scenario 1: iperf3 -P 1 for DURATION against iperf3 -s; per GiB.
#
# Every process is pinned to CPU PIN_CPU as in run.sh. For each peer:
#
#   1. CPU split per unit: the proxy's utime and stime (/proc/PID/stat), the pinned CPU's user,
#      system and softirq time (/proc/stat), over one run of the load.
#   2. perf record -g of the proxy (-p PID, timer-sampled where there is no PMU): the share of
#      its samples by syscall (perf_bysyscall.awk: the __x64_sys_NAME frame of each kernel
#      stack), per DSO (kernel, the binary, libuv, libc), and the top symbols (self time).
#   3. perf record -g of the whole pinned CPU (-a -C PIN_CPU): the share per command, which is
#      where the cost a proxy adds to its client and server shows.
#   4. strace -f -c of the proxy (slows it down; counts only), per unit.
#   5. (short only) strace -f of the proxy around one curl request: the syscall sequence of a
#      connection.
#
# Each run starts a fresh proxy. Output in bench/out/profile-RUN_ID/: summary.txt and, per peer,
# the raw reports. Needs perf (linux-perf), strace, and the load's tools (wrk, curl, nginx;
# redis-server, redis-benchmark; iperf3), haproxy for its peers. Not part of run.sh: profiling
# perturbs what run.sh measures. Stops every process it started, by pid.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
DURATION=${DURATION:-10}
PIN_CPU=${PIN_CPU:-0}
LOAD=${LOAD:-short}
SHORT_CONNS=${SHORT_CONNS:-32}
REDIS_REQS=${REDIS_REQS:-300000}
PORT_BASE=${PORT_BASE:-27100}
RUN_ID=${RUN_ID:-$(date +%Y%m%d-%H%M%S)}
OUT=$BENCH/out/profile-$RUN_ID
SPLICER=${SPLICER_BIN:-$ROOT/build/splicer}
PEERS=("$@")
((${#PEERS[@]})) || PEERS=(splicer haproxy)
PROXY_PORT=$PORT_BASE
BACKEND_PORT=$((PORT_BASE + 2))
PIN=(taskset -c "$PIN_CPU")

LOG_TAG=profile
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"

case $LOAD in
short) TOOLS="wrk curl nginx" UNIT=connection SCALE=1e6 PER=us ;;
redis50) TOOLS="redis-server redis-benchmark redis-cli" UNIT=request SCALE=1e6 PER=us ;;
bulk1) TOOLS="iperf3" UNIT=GiB SCALE=1e3 PER=ms ;;
*) die "LOAD must be short, redis50 or bulk1" ;;
esac
for t in perf strace $TOOLS; do command -v "$t" >/dev/null || die "$t is missing"; done
[[ -x $SPLICER ]] || die "no splicer at $SPLICER (build it, or set SPLICER_BIN)"
mkdir -p "$OUT/www" "$OUT/logs"
head -c 64 /dev/zero | tr '\0' x >"$OUT/www/tiny.txt"

port_free "$PROXY_PORT" "$BACKEND_PORT"

case $LOAD in
short)
cat >"$OUT/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $OUT/nginx.pid;
error_log $OUT/logs/nginx-error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    keepalive_timeout 0;
    server { listen 127.0.0.1:$BACKEND_PORT backlog=4096; root $OUT/www; }
}
EOF
"${PIN[@]}" nginx -p "$OUT" -e "$OUT/logs/nginx-error.log" -c "$OUT/nginx.conf" \
    -g 'daemon off;' >"$OUT/logs/nginx.log" 2>&1 &
STARTED+=($!)
wait_port "$BACKEND_PORT"
    ;;
redis50)
    "${PIN[@]}" redis-server --port "$BACKEND_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --protected-mode no --maxclients 10000 >"$OUT/logs/redis.log" 2>&1 &
    STARTED+=($!)
    ;;
bulk1)
    "${PIN[@]}" iperf3 -s -p "$BACKEND_PORT" -B 127.0.0.1 >"$OUT/logs/iperf3.log" 2>&1 &
    STARTED+=($!)
    ;;
esac
wait_port "$BACKEND_PORT"

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
      - address: 127.0.0.1:$BACKEND_PORT
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
    server s1 127.0.0.1:$BACKEND_PORT
EOF
        "${PIN[@]}" haproxy -db -f "$OUT/$peer.cfg" >"$OUT/logs/$peer.log" 2>&1 &
        ;;
    *) die "unknown peer $peer" ;;
    esac
    PROXY_PID=$!
    STARTED+=("$PROXY_PID")
    wait_port "$PROXY_PORT"
    # a first connection, so that lazily made state (pipe pool, haproxy's pools) exists
    case $LOAD in
    short) curl -s -o /dev/null -H 'Connection: close' "http://127.0.0.1:$PROXY_PORT/tiny.txt" || true ;;
    redis50) redis-cli -p "$PROXY_PORT" ping >/dev/null 2>&1 || true ;;
    esac
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

load() { # FILE: one run of the load; prints how many units it did
    case $LOAD in
    short) # connections, one request each
        timeout $((DURATION + 20)) "${PIN[@]}" wrk -t 1 -c "$SHORT_CONNS" -d "${DURATION}s" \
            --timeout 5s -H 'Connection: close' "http://127.0.0.1:$PROXY_PORT/tiny.txt" >"$1" 2>&1
        awk '/requests in/ { print $1 }' "$1"
        ;;
    redis50) # requests, when all were answered
        timeout $((DURATION * 6 + 60)) "${PIN[@]}" redis-benchmark -p "$PROXY_PORT" -c 50 \
            -n "$REDIS_REQS" -t ping_mbulk --csv >"$1" 2>&1
        awk -F, -v n="$REDIS_REQS" '/PING_MBULK/ { print n }' "$1"
        ;;
    bulk1) # GiB received by the server
        timeout $((DURATION + 20)) "${PIN[@]}" iperf3 -c 127.0.0.1 -p "$PROXY_PORT" \
            -t "$DURATION" -P 1 -f m >"$1" 2>&1
        awk '/receiver/ { # the transfer, in binary units (GBytes = GiB)
            u["KBytes"] = 2 ^ -20; u["MBytes"] = 2 ^ -10; u["GBytes"] = 1
            for (i = 1; i < NF; i++) if ($(i + 1) in u) { print $i * u[$(i + 1)]; exit } }' "$1"
        ;;
    esac
}

record_during_load() { # DATA LOG LOADFILE PERF_ARGS...: perf record over one run of the load
    local data=$1 plog=$2 lf=$3 tracer
    shift 3
    perf record -q "$@" -o "$data" >"$plog" 2>&1 &
    tracer=$!
    sleep 1
    load "$lf" >/dev/null
    kill -INT "$tracer"
    wait "$tracer" || true
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
    n=$(load "$OUT/$peer-load.txt")
    read -r pu1 ps1 < <(proc_ticks "$PROXY_PID")
    read -r mu1 ms1 mi1 _ < <(cpu_ticks)
    proxy_stop
    [[ -n $n ]] || die "the load failed ($peer), see $OUT/$peer-load.txt"
    awk -v p="$peer" -v n="$n" -v hz="$hz" -v d="$DURATION" -v cpu="$PIN_CPU" -v a="$pu0 $ps0 $mu0 $ms0 $mi0" \
        -v b="$pu1 $ps1 $mu1 $ms1 $mi1" -v load="$LOAD" -v unit="$UNIT" -v scale="$SCALE" -v per="$PER" 'BEGIN {
        split(a, x, " "); split(b, y, " "); k = scale / hz / n
        printf "%s (%s): %g %s(s) in the CPU run\n", p, load, n, unit
        printf "  proxy CPU per %s: user %.1f %s, kernel %.1f %s, total %.1f %s\n", unit,
            (y[1] - x[1]) * k, per, (y[2] - x[2]) * k, per, (y[1] - x[1] + y[2] - x[2]) * k, per
        printf "  CPU %s per %s (every process): user %.1f %s, system %.1f %s, irq+softirq %.1f %s, busy %.1f %s\n",
            cpu, unit, (y[3] - x[3]) * k, per, (y[4] - x[4]) * k, per, (y[5] - x[5]) * k, per,
            (y[3] - x[3] + y[4] - x[4] + y[5] - x[5]) * k, per }' >>"$SUMMARY"

    log "$peer: perf record -g -p (the proxy)"
    proxy_start "$peer"
    record_during_load "$OUT/$peer-proxy.data" "$OUT/logs/perf-$peer.log" "$OUT/$peer-load-perf.txt" \
        -g -p "$PROXY_PID"
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
    record_during_load "$OUT/$peer-cpu.data" "$OUT/logs/perf-cpu-$peer.log" "$OUT/$peer-load-cpu.txt" \
        -a -C "$PIN_CPU"
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
    n=$(load "$OUT/$peer-load-strace.txt")
    sleep 0.3
    kill -INT "$tracer"
    wait "$tracer" || true
    if [[ $LOAD == short ]]; then # one connection, every syscall in order
        strace -f -tt -o "$OUT/$peer-strace-one.txt" -p "$PROXY_PID" 2>/dev/null &
        tracer=$!
        sleep 1
        curl -s -o /dev/null -H 'Connection: close' "http://127.0.0.1:$PROXY_PORT/tiny.txt" || true
        sleep 0.5
        kill -INT "$tracer"
        wait "$tracer" || true
    fi
    proxy_stop
    {
        echo "  strace -f -c: $n $UNIT(s); syscalls per $UNIT:"
        awk -v n="$n" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ {
            printf "    %-16s %10.2f%s\n", $NF, $4 / n, (NF == 6 ? sprintf("  (%.2f failed)", $5 / n) : "") }' \
            "$OUT/$peer-strace-c.txt"
        if [[ $LOAD == short ]]; then
            echo "  one connection (strace -f, curl):"
            grep -v -e 'resumed>' -e '^ *$' "$OUT/$peer-strace-one.txt" | sed -E 's/^[0-9]+ +//; s/^/    /'
        fi
        echo
    } >>"$SUMMARY"
done
log "summary in $SUMMARY"
cat "$SUMMARY"
