#!/usr/bin/env bash
# bench/run.sh: splicer against a direct connection, HAProxy, nginx stream, pen and socat, on
# loopback and across veth pairs between network namespaces (the container path). See
# bench/README.md for what each scenario measures and how.
#
# Usage: bench/run.sh                 every scenario, every peer (DURATION=5 ROUNDS=3 PIN=1)
#        QUICK=1 bench/run.sh         smoke run: short runs, 1 round, fewer connections
#        SCENARIOS="bulk short" PEERS="direct splicer haproxy" bench/run.sh
#        TOPOLOGY=veth SCENARIOS=bulk PEERS="routed splicer haproxy" bench/run.sh
#        SCENARIOS=bulk PEERS="direct splicer splicer-p64k haproxy-splice" bench/run.sh
#        (splicer-pSIZE: splicer with pipe_size SIZE instead of 1m, e.g. splicer-p256k)
# Writes bench/RESULTS.md (RESULTS= to change) and raw per-round data under bench/out/RUN_ID/.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
CMDLINE="$0${*:+ $*}"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-2}
    ROUNDS=${ROUNDS:-1}
    IDLE_CONNS=${IDLE_CONNS:-1000}
    SYSCALL_BYTES=${SYSCALL_BYTES:-512M}
else
    DURATION=${DURATION:-5}
    ROUNDS=${ROUNDS:-3}
    IDLE_CONNS=${IDLE_CONNS:-5000}
    SYSCALL_BYTES=${SYSCALL_BYTES:-2G}
fi
PIN=${PIN:-1}                     # 1: proxy, client and backend all on CPU 0 (taskset -c 0)
PIN_CPU=${PIN_CPU:-0}
CONC_CONNS=${CONC_CONNS:-9000}    # scenario conc: concurrent connections, each echoes once
CAP_CONNS=${CAP_CONNS:-12000}     # scenario conc: connections opened to hit splicer's fd cap
CAP_NOFILE=${CAP_NOFILE:-}        # fd limit for splicer in the cap test (empty: the inherited one)
SHORT_CONNS=${SHORT_CONNS:-32}    # wrk concurrent connections in scenario short
REDIS_REQS=${REDIS_REQS:-50000}   # scenario redis: requests per DURATION second, 1 client (50: x2.4)
PORT_BASE=${PORT_BASE:-27100}
PEERS_GIVEN=${PEERS:+1}
# haproxy-b is haproxy again, as far from it in each round as splicer is: their ratio, 1 in
# theory, is the run's own noise floor, against which splicer's ratios to HAProxy are read
PEERS=${PEERS:-"direct splicer splicer-copy splicer-auto haproxy haproxy-splice nginx haproxy-b pen socat"}
VETH_PEERS=${VETH_PEERS:-}        # peers on veth (default: PEERS if given, else all but socat)
TOPOLOGY=${TOPOLOGY:-both}        # loopback | veth | both
CONC_PEERS=${CONC_PEERS:-"direct splicer splicer-copy splicer-auto haproxy haproxy-splice nginx pen"}
SCALING_PEERS=${SCALING_PEERS:-"direct splicer splicer-w2 haproxy haproxy-t2"}
LIMITS_PEERS=${LIMITS_PEERS-splicer-limits} # scenario short also runs these (empty: none)
SCENARIOS=${SCENARIOS:-"bulk short redis idle conc syscalls scaling balance stall"}
BALANCE_CONNS=${BALANCE_CONNS:-128} # scenario balance: wrk connections against splicer workers: 2
BALANCE_WORKERS=${BALANCE_WORKERS:-2}
STALL_CONNS=${STALL_CONNS:-2000}  # scenario stall: connections that stop halfway in a ClientHello
if [[ $QUICK == 1 ]]; then STALL_SECONDS=${STALL_SECONDS:-5}; else STALL_SECONDS=${STALL_SECONDS:-10}; fi
STALL_REF_BIN=${STALL_REF_BIN:-}  # scenario stall: another splicer binary to compare (splicer-ref)
STALL_HELLO=${STALL_HELLO:-$ROOT/tests/fixtures/tls/openssl_sni.bin} # a captured ClientHello
RESULTS=${RESULTS:-$BENCH/RESULTS.md}
RUN_ID=${RUN_ID:-$(date +%Y%m%d-%H%M%S)}
OUT=$BENCH/out/$RUN_ID
SMOKE_NOTE=${SMOKE_NOTE:-}        # a paragraph put at the top of RESULTS.md

PROXY_PORT=$PORT_BASE
IPERF_PORT=$((PORT_BASE + 1))
WEB_PORT=$((PORT_BASE + 2))       # nginx backend serving a tiny file
REDIS_PORT=$((PORT_BASE + 3))
ECHO_PORT=$((PORT_BASE + 4))
WEB2_PORT=$((PORT_BASE + 5))      # unpinned nginx backend for the scaling scenario
ADMIN_PORT=$((PORT_BASE + 6))     # splicer's admin endpoint (scenario balance)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
why() { if (($1 == 124)); then echo "timed out after $2 s"; else echo "exit $1"; fi; } # RC LIMIT

# shellcheck source=bench/topology.sh
. "$BENCH/topology.sh"
topo_loopback
case $TOPOLOGY in
loopback | veth) TOPOS=$TOPOLOGY ;;
both) TOPOS="loopback veth" ;;
*) die "TOPOLOGY must be loopback, veth or both" ;;
esac
if [[ -z $VETH_PEERS ]]; then # PEERS if given (direct becomes routed), else all but socat
    VETH_PEERS=${PEERS_GIVEN:+$PEERS}
    VETH_PEERS=${VETH_PEERS:-"routed splicer splicer-copy splicer-auto haproxy haproxy-splice nginx haproxy-b pen"}
fi

mkdir -p "$OUT/logs" "$OUT/conf" "$OUT/www"
RAW=$OUT/raw.tsv # scenario measure peer round value
: >"$RAW"
log "raw data and logs in $OUT"

# ---- processes we start: pids only, stopped by pid ----

STARTED=()
pin() { if [[ $PIN == 1 ]]; then echo "taskset -c $PIN_CPU"; fi; }

stop_pid() { # PID: TERM the process and the descendants it has at that moment, KILL after 5 s
    local pid=$1 kids i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || {
        wait "$pid" 2>/dev/null || true
        return 0
    }
    kids=$("$TOOL" pids "$pid" 2>/dev/null | tr ',' ' ' || true)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -e /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in $kids; do [[ $i == "$pid" ]] || kill -KILL "$i" 2>/dev/null || true; done
}

cleanup() { # every process we started, then the namespaces we made
    local i
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED[i]}"; done
    STARTED=()
    veth_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listening() { # PORT [NETNS]: something listens on PORT (in network namespace NETNS)
    local n=()
    [[ -n ${2:-} ]] && n=(-N "$2")
    ss "${n[@]}" -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

wait_port() { # PORT [NETNS]: wait until something listens on PORT
    local i
    for ((i = 0; i < 200; i++)); do
        listening "$@" && return 0
        sleep 0.05
    done
    return 1
}

port_free() { ! listening "$@"; }

# ---- setup: packages, builds ----

need_pkgs=(haproxy nginx libnginx-mod-stream pen socat iperf3 wrk redis-server redis-tools strace
    iproute2 ethtool)
"$ROOT/scripts/deps.sh" "${need_pkgs[@]}" || die "could not install ${need_pkgs[*]}"

TOOL=$OUT/benchtool
cc -O2 -std=c11 -Wall -Wextra -Werror -o "$TOOL" "$BENCH/benchtool.c" || die "cannot build bench/benchtool.c"

if [[ -n ${SPLICER_BIN:-} ]]; then
    SPLICER=$SPLICER_BIN
    BACKEND=${SP_BACKEND_BIN:-$(dirname "$SPLICER_BIN")/sp-backend}
else
    BUILD_DIR=${SPLICER_BUILD_DIR:-$ROOT/build}
    if [[ ! -x $BUILD_DIR/splicer || ! -x $BUILD_DIR/sp-backend ]] ||
        [[ -n $(find "$ROOT/proxy" "$ROOT/include" "$ROOT/scripts/sp_backend.c" \
            "$ROOT/CMakeLists.txt" -newer "$BUILD_DIR/splicer" 2>/dev/null | head -1) ]]; then
        log "building splicer (Release) in $BUILD_DIR"
        cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$OUT/logs/build.log" 2>&1 &&
            cmake --build "$BUILD_DIR" -j2 --target splicer sp-backend >>"$OUT/logs/build.log" 2>&1 ||
            die "build failed, see $OUT/logs/build.log"
    fi
    SPLICER=$BUILD_DIR/splicer
    BACKEND=$BUILD_DIR/sp-backend
fi
[[ -x $SPLICER && -x $BACKEND ]] || die "no splicer or sp-backend binary"

for p in $PROXY_PORT $IPERF_PORT $WEB_PORT $REDIS_PORT $ECHO_PORT $WEB2_PORT $ADMIN_PORT; do
    port_free "$p" || die "port $p is in use; set PORT_BASE"
done

# ---- measurement helpers ----

cpu_busy() { # busy seconds of the pinned CPU (PIN=1) or of all CPUs (PIN=0), from /proc/stat
    local line=cpu
    [[ $PIN == 1 ]] && line=cpu$PIN_CPU
    awk -v l="$line" -v hz="$(getconf CLK_TCK)" \
        '$1 == l { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

own_cpu() { if [[ -n $PROXY_PID ]]; then "$TOOL" cpu "$PROXY_PID"; else echo 0; fi; }

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RAW"; }

calc() { awk "BEGIN { v = $1; printf \"%.6g\n\", v }"; }

rotate() { # ROUND WORD...: the words rotated left by ROUND
    local r=$1 n i
    shift
    local a=("$@")
    n=${#a[@]}
    for ((i = 0; i < n; i++)); do printf '%s ' "${a[(i + r) % n]}"; done
}

# ---- backends (started once, pinned like the rest) ----

start_bg() { # NAME CMD...: run CMD in the background, log to logs/NAME.log, pid in LAST_PID
    local name=$1
    shift
    "$@" >"$OUT/logs/$name.log" 2>&1 &
    LAST_PID=$!
    STARTED+=("$LAST_PID")
}

start_web_backend() { # PORT WORKERS PINNED: in the server's namespace, on SRV_IP
    local port=$1 workers=$2 dir=$OUT/conf/${SP}web-$1
    mkdir -p "$dir"
    head -c 64 /dev/zero | tr '\0' 'x' >"$OUT/www/tiny.txt"
    cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    keepalive_timeout 0;
    server {
        listen $SRV_IP:$port backlog=4096;
        root $OUT/www;
    }
}
EOF
    local p=()
    [[ $3 == 1 ]] && read -ra p <<<"$(pin)"
    start_bg "${SP}web-$port" "${NS_S[@]}" "${p[@]}" nginx -p "$dir" -e "$dir/error.log" \
        -c "$dir/nginx.conf" -g 'daemon off;'
    wait_port "$port" "$NSN_S" || die "nginx backend on $port did not start"
}

BACKENDS_UP=""
need_backend() { # iperf|web|redis|echo|web2: started once per topology
    case " $BACKENDS_UP " in *" $TOPO:$1 "*) return 0 ;; esac
    local p=()
    read -ra p <<<"$(pin)"
    case $1 in
    iperf)
        start_bg "${SP}iperf3-server" "${NS_S[@]}" "${p[@]}" iperf3 -s -p "$IPERF_PORT" -B "$SRV_IP"
        wait_port "$IPERF_PORT" "$NSN_S" || die "iperf3 -s did not start"
        ;;
    web) start_web_backend "$WEB_PORT" 1 1 ;;
    web2) start_web_backend "$WEB2_PORT" 2 0 ;;
    redis)
        start_bg "${SP}redis-server" "${NS_S[@]}" "${p[@]}" redis-server --port "$REDIS_PORT" \
            --bind "$SRV_IP" --save '' --appendonly no --daemonize no --protected-mode no \
            --maxclients 10000
        wait_port "$REDIS_PORT" "$NSN_S" || die "redis-server did not start"
        ;;
    echo)
        start_bg "${SP}sp-backend" "${NS_S[@]}" "${p[@]}" "$BACKEND" --mode echo "$SRV_IP:$ECHO_PORT"
        wait_port "$ECHO_PORT" "$NSN_S" || die "sp-backend did not start"
        ;;
    esac
    BACKENDS_UP+=" $TOPO:$1"
}

# ---- proxies ----

SPLICER_ADMIN="" # non-empty: splicer peers get an admin endpoint on 127.0.0.1:ADMIN_PORT

# proxy_start PEER UPSTREAM_PORT [PINNED]: starts PEER in the proxy's namespace, listening on
# PROXY_IP:PROXY_PORT, relaying to SRV_IP:UPSTREAM_PORT; sets PROXY_PID (empty for direct and
# routed), TARGET_IP and TARGET_PORT (where the client connects).
proxy_start() {
    local peer=$1 up=$2 pinned=${3:-$PIN} dir=$OUT/conf/$SP$1 p=() name=$SP$1
    mkdir -p "$dir"
    [[ $pinned == 1 && $PIN == 1 ]] && read -ra p <<<"$(pin)"
    p=("${NS_P[@]}" "${p[@]}")
    PROXY_PID=""
    TARGET_IP=$PROXY_IP
    TARGET_PORT=$PROXY_PORT
    case $peer in
    direct | routed) # routed: the proxy's namespace forwards packets in the kernel (veth only)
        TARGET_IP=$SRV_IP
        TARGET_PORT=$up
        return 0
        ;;
    splicer | splicer-copy | splicer-auto | splicer-limits | splicer-w[0-9]* | splicer-p[0-9]*)
        local relay=splice workers=1 admin="" limits="" pipe=1m
        [[ $peer == splicer-copy ]] && relay=copy
        [[ $peer == splicer-auto ]] && relay=auto
        # limits the one client address never reaches: the cost of counting, not of refusing
        [[ $peer == splicer-limits ]] &&
            limits=$'    limits:\n      per_source_connections: 1000000\n      per_source_rate: 1000000/s'
        [[ $peer == splicer-w[0-9]* ]] && workers=${peer#splicer-w}
        [[ $peer == splicer-p[0-9]* ]] && pipe=${peer#splicer-p}
        [[ -n $SPLICER_ADMIN ]] && admin="admin: {listen: 127.0.0.1:$ADMIN_PORT}"
        cat >"$dir/splicer.yaml" <<EOF
workers: $workers
relay: $relay
pipe_size: $pipe
log_level: warn
shutdown_timeout: 1s
$admin
listeners:
  bench:
    listen: $PROXY_IP:$PROXY_PORT
    upstream: pool
    idle_timeout: 0s
    max_connections: 100000
    backlog: 4096
$limits
upstreams:
  pool:
    servers:
      - address: $SRV_IP:$up
EOF
        start_bg "$name" "${p[@]}" "$SPLICER" -c "$dir/splicer.yaml"
        ;;
    haproxy | haproxy-b | haproxy-splice | haproxy-t2)
        local threads=1 splice=""
        [[ $peer == haproxy-t2 ]] && threads=2
        [[ $peer == haproxy-splice ]] && splice=$'    option splice-request\n    option splice-response'
        cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread $threads
    maxconn 9200
    maxpipes 300
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
$splice
frontend fe
    bind $PROXY_IP:$PROXY_PORT
    backlog 4096
    default_backend be
backend be
    server s1 $SRV_IP:$up
EOF
        start_bg "$name" "${p[@]}" haproxy -db -f "$dir/haproxy.cfg"
        ;;
    nginx)
        cat >"$dir/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 19500; }
stream {
    server {
        listen $PROXY_IP:$PROXY_PORT backlog=4096;
        proxy_pass $SRV_IP:$up;
    }
}
EOF
        start_bg "$name" "${p[@]}" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
            -g 'daemon off;'
        ;;
    pen)
        start_bg "$name" "${p[@]}" pen -f -r -x 10000 -c 10000 -q 4096 "$PROXY_IP:$PROXY_PORT" \
            "$SRV_IP:$up"
        ;;
    socat) # forks one process per connection
        start_bg "$name" "${p[@]}" socat \
            "TCP-LISTEN:$PROXY_PORT,bind=$PROXY_IP,reuseaddr,fork,backlog=4096" \
            "TCP:$SRV_IP:$up"
        ;;
    *) die "unknown peer $peer" ;;
    esac
    PROXY_PID=$LAST_PID
    wait_port "$PROXY_PORT" "$NSN_P" || die "$peer did not start, see $OUT/logs/$name.log"
    if [[ $peer == nginx ]]; then # the worker is up once it is a child of the master
        local i
        for ((i = 0; i < 100; i++)); do
            [[ $("$TOOL" pids "$PROXY_PID") == *,* ]] && break
            sleep 0.05
        done
    fi
}

proxy_stop() {
    [[ -n $PROXY_PID ]] || return 0
    stop_pid "$PROXY_PID"
    local keep=() x
    for x in "${STARTED[@]}"; do [[ $x == "$PROXY_PID" ]] || keep+=("$x"); done
    STARTED=("${keep[@]}")
    PROXY_PID=""
    # let the port's listener go away before the next peer binds it
    local i
    for ((i = 0; i < 100; i++)); do port_free "$PROXY_PORT" "$NSN_P" && break; sleep 0.05; done
}

# PINP: the taskset prefix for a client run (empty when unpinned)
PINP=()
[[ $PIN == 1 ]] && PINP=(taskset -c "$PIN_CPU")

# ---- scenario 1: bulk (iperf3, 1 and 4 streams) ----

bulk_one() { # PEER ROUND STREAMS
    local peer=$1 r=$2 n=$3 f=$OUT/${SP}bulk$3-$1-r$2.txt c0 c1 b0 b1 mbytes mbps gib
    c0=$(own_cpu)
    b0=$(cpu_busy)
    local rc=0 lim=$((DURATION + 20))
    timeout $lim "${NS_C[@]}" "${PINP[@]}" iperf3 -c "$TARGET_IP" -p "$TARGET_PORT" \
        -t "$DURATION" -P "$n" -f m >"$f" 2>&1 || rc=$?
    if ((rc != 0)); then
        log "  iperf3 failed ($peer, $n streams, $(why $rc $lim)), see $f"
        return 0
    fi
    c1=$(own_cpu)
    b1=$(cpu_busy)
    read -r mbytes mbps < <(awk -f "$BENCH/iperf.awk" "$f") || true
    [[ -n $mbytes && -n $mbps ]] || {
        log "  no iperf3 result ($peer), see $f"
        return 0
    }
    gib=$(calc "$mbytes / 1024")
    record "${SP}bulk$n" gbps "$peer" "$r" "$(calc "$mbps / 1000")"
    record "${SP}bulk$n" own_s_gib "$peer" "$r" "$(calc "($c1 - $c0) / $gib")"
    record "${SP}bulk$n" mach_s_gib "$peer" "$r" "$(calc "($b1 - $b0) / $gib")"
    log "  $peer ${SP}bulk$n: $(calc "$mbps / 1000") Gbit/s"
}

scenario_bulk() {
    need_backend iperf
    local r peer
    for ((r = 0; r < ROUNDS; r++)); do
        for peer in $(rotate "$r" $RUN_PEERS); do
            proxy_start "$peer" "$IPERF_PORT"
            bulk_one "$peer" "$r" 1
            bulk_one "$peer" "$r" 4
            proxy_stop
        done
    done
}

# ---- scenario 2: short connections (wrk, Connection: close, nginx backend) ----

short_one() { # SCENARIO PEER ROUND THREADS CONNS
    local s=$SP$1 peer=$2 r=$3 f=$OUT/$SP$1-$2-r$3.txt c0 c1 b0 b1 reqs rps errs
    c0=$(own_cpu)
    b0=$(cpu_busy)
    local cl=("${NS_C[@]}" "${PINP[@]}")
    [[ $1 == scaling || $1 == balance ]] && cl=("${NS_C[@]}")
    local rc=0 lim=$((DURATION + 20))
    timeout $lim "${cl[@]}" wrk -t "$4" -c "$5" -d "${DURATION}s" --timeout 5s \
        -H 'Connection: close' "http://$TARGET_IP:$TARGET_PORT/tiny.txt" >"$f" 2>&1 || rc=$?
    if ((rc != 0)); then
        log "  wrk failed ($peer, $(why $rc $lim)), see $f"
        return 0
    fi
    c1=$(own_cpu)
    b1=$(cpu_busy)
    reqs=$(awk '/requests in/ { print $1 }' "$f")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$f")
    errs=$(awk '/Socket errors:/ { gsub(",", ""); s += $4 + $6 + $8 + $10 }
        /Non-2xx/ { s += $NF } END { print s + 0 }' "$f")
    [[ -n $reqs && -n $rps && $reqs != 0 ]] || {
        log "  no wrk result ($peer), see $f"
        return 0
    }
    record "$s" cps "$peer" "$r" "$rps"
    record "$s" own_us "$peer" "$r" "$(calc "($c1 - $c0) * 1e6 / $reqs")"
    record "$s" mach_us "$peer" "$r" "$(calc "($b1 - $b0) * 1e6 / $reqs")"
    record "$s" errors "$peer" "$r" "$errs"
    log "  $peer $s: $rps conn/s, $errs errors"
}

scenario_short() {
    need_backend web
    local r peer
    for ((r = 0; r < ROUNDS; r++)); do
        for peer in $(rotate "$r" $RUN_PEERS $LIMITS_PEERS); do
            proxy_start "$peer" "$WEB_PORT"
            short_one short "$peer" "$r" 1 "$SHORT_CONNS"
            proxy_stop
        done
    done
}

# ---- scenario 3: request/response (redis-benchmark PING_MBULK, 1 and 50 clients) ----

redis_one() { # PEER ROUND CLIENTS REQUESTS
    local peer=$1 r=$2 c=$3 n=$4 f=$OUT/${SP}redis$3-$1-r$2.csv c0 c1 b0 b1 line s=${SP}redis$3
    c0=$(own_cpu)
    b0=$(cpu_busy)
    local rc=0 lim=$((DURATION * 6 + 20))
    timeout $lim "${NS_C[@]}" "${PINP[@]}" redis-benchmark -h "$TARGET_IP" \
        -p "$TARGET_PORT" -c "$c" -n "$n" -t ping_mbulk --csv >"$f" 2>&1 || rc=$?
    if ((rc != 0)); then # a timeout: fewer than n / lim req/s; a busy machine needs REDIS_REQS lower
        log "  redis-benchmark failed ($peer, $c clients, $(why $rc $lim), $n requests), see $f"
        return 0
    fi
    c1=$(own_cpu)
    b1=$(cpu_busy)
    line=$(awk -F, '/PING_MBULK/ { gsub("\"", ""); print $2, $3, $5, $7 }' "$f")
    [[ -n $line ]] || {
        log "  no redis-benchmark result ($peer), see $f"
        return 0
    }
    local rps avg p50 p99
    read -r rps avg p50 p99 <<<"$line"
    record "$s" rps "$peer" "$r" "$rps"
    record "$s" avg_us "$peer" "$r" "$(calc "$avg * 1000")"
    record "$s" p50_us "$peer" "$r" "$(calc "$p50 * 1000")"
    record "$s" p99_us "$peer" "$r" "$(calc "$p99 * 1000")"
    record "$s" own_us "$peer" "$r" "$(calc "($c1 - $c0) * 1e6 / $n")"
    record "$s" mach_us "$peer" "$r" "$(calc "($b1 - $b0) * 1e6 / $n")"
    log "  $peer $s: $rps req/s"
}

scenario_redis() {
    need_backend redis
    local r peer
    for ((r = 0; r < ROUNDS; r++)); do
        for peer in $(rotate "$r" $RUN_PEERS); do
            proxy_start "$peer" "$REDIS_PORT"
            redis_one "$peer" "$r" 1 $((DURATION * REDIS_REQS))
            redis_one "$peer" "$r" 50 $((DURATION * REDIS_REQS * 12 / 5))
            proxy_stop
        done
    done
}

# ---- scenario 4: idle memory (N connections held open) ----

HOLD_IN=""
HOLD_OUT=""
HOLD_PID=""
hold_start() { # PORT TIMEOUT_MS [BENCHTOOL_HOLD_OPTION...]
    local fifo=$OUT/hold.fifo port=$1 ms=$2
    shift 2
    rm -f "$fifo" && mkfifo "$fifo"
    local p=()
    read -ra p <<<"$(pin)"
    "${p[@]}" "$TOOL" hold "127.0.0.1:$port" --sources 8 --window 512 --timeout-ms "$ms" "$@" \
        <"$fifo" >"$OUT/hold.out" 2>>"$OUT/logs/hold.log" &
    HOLD_PID=$!
    STARTED+=("$HOLD_PID")
    exec {HOLD_IN}>"$fifo"
    HOLD_LINES=0
}
hold_cmd() { # COMMAND: send it, wait for its answer line, put it in HOLD_ANS (no subshell!)
    echo "$1" >&"$HOLD_IN"
    HOLD_LINES=$((HOLD_LINES + 1))
    local i
    for ((i = 0; i < 1200; i++)); do
        (($(wc -l <"$OUT/hold.out") >= HOLD_LINES)) && break
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
    done
    HOLD_ANS=$(sed -n "${HOLD_LINES}p" "$OUT/hold.out")
}
hold_stop() {
    echo quit >&"$HOLD_IN" || true
    exec {HOLD_IN}>&-
    stop_pid "$HOLD_PID"
    local keep=() x
    for x in "${STARTED[@]}"; do [[ $x == "$HOLD_PID" ]] || keep+=("$x"); done
    STARTED=("${keep[@]}")
}
kv() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$2"; } # KEY LINE

slab_kib() { awk '/^SUnreclaim:/ { print $2 }' /proc/meminfo; }

scenario_idle() {
    need_backend echo
    local r peer n=$IDLE_CONNS m0 m1 k0 k1 ans ok
    for ((r = 0; r < ROUNDS; r++)); do
        for peer in $(rotate "$r" $RUN_PEERS); do
            proxy_start "$peer" "$ECHO_PORT"
            sleep 0.3
            m0="0 0 0 0 0"
            [[ -n $PROXY_PID ]] && m0=$("$TOOL" mem "$PROXY_PID")
            k0=$(slab_kib)
            hold_start "$TARGET_PORT" 10000
            hold_cmd "open $n"
            ans=$HOLD_ANS
            sleep 1
            m1="0 0 0 0 0"
            [[ -n $PROXY_PID ]] && m1=$("$TOOL" mem "$PROXY_PID")
            k1=$(slab_kib)
            hold_stop
            proxy_stop
            ok=$(kv ok "$ans")
            echo "$peer r$r open $n: $ans | mem before: $m0 | after: $m1" >>"$OUT/idle.txt"
            [[ -n $ok && $ok -gt 0 ]] || {
                log "  $peer idle: no connection held ($ans)"
                continue
            }
            read -r rss0 pss0 fd0 pipe0 _ <<<"$m0"
            read -r rss1 pss1 fd1 pipe1 _ <<<"$m1"
            record idle held "$peer" "$r" "$ok"
            if [[ $peer != direct ]]; then
                record idle rss0_kib "$peer" "$r" "$rss0"
                record idle rss_kib "$peer" "$r" "$(calc "($rss1 - $rss0) / $ok")"
                record idle pss_kib "$peer" "$r" "$(calc "($pss1 - $pss0) / $ok")"
                record idle fds "$peer" "$r" "$(calc "($fd1 - $fd0) / $ok")"
                record idle pipes "$peer" "$r" "$((pipe1 - pipe0))"
            fi
            record idle slab_kib "$peer" "$r" "$(calc "($k1 - $k0) / $ok")"
            log "  $peer idle: $ans; mem $m0 -> $m1"
        done
    done
}

# ---- scenario 5: concurrency (9,000 connections), then splicer's fd cap ----

scenario_conc() {
    need_backend echo
    local peer ans ok f0 f1 fds
    for peer in $CONC_PEERS; do
        proxy_start "$peer" "$ECHO_PORT"
        sleep 0.3
        f0=0
        [[ -n $PROXY_PID ]] && f0=$("$TOOL" mem "$PROXY_PID" | awk '{ print $3 }')
        hold_start "$TARGET_PORT" 10000
        hold_cmd "open $CONC_CONNS"
        ans=$HOLD_ANS
        record conc served "$peer" 0 "$(kv ok "$ans")"
        record conc refused "$peer" 0 "$(kv refused "$ans")"
        record conc timeout "$peer" 0 "$(kv timeout "$ans")"
        record conc open_ms "$peer" 0 "$(kv ms "$ans")"
        local ans2
        hold_cmd echo
        ans2=$HOLD_ANS
        record conc echo_ok "$peer" 0 "$(kv ok "$ans2")"
        hold_cmd "close $CONC_CONNS"
        hold_stop
        sleep 1
        fds=""
        if [[ -n $PROXY_PID ]]; then
            f1=$("$TOOL" mem "$PROXY_PID" | awk '{ print $3 }')
            fds=$((f1 - f0))
            record conc fds_left "$peer" 0 "$fds"
        fi
        proxy_stop
        echo "$peer: open $CONC_CONNS: $ans | echo: $ans2 | fds left after close: $fds" >>"$OUT/conc.txt"
        log "  $peer conc: open: $ans | echo: $ans2 | fds left: $fds"
    done

    # splicer at its fd cap: CAP_CONNS connections against a 20,000 (or CAP_NOFILE) fd limit
    local p=() dir=$OUT/conf/splicer
    PROXY_PID=""
    proxy_start splicer "$ECHO_PORT" # writes the config; restart it under the cap below
    proxy_stop
    [[ $PIN == 1 ]] && read -ra p <<<"$(pin)"
    (
        [[ -n $CAP_NOFILE ]] && ulimit -n "$CAP_NOFILE"
        exec "${p[@]}" "$SPLICER" -c "$dir/splicer.yaml"
    ) >"$OUT/logs/splicer-cap.log" 2>&1 &
    PROXY_PID=$!
    STARTED+=("$PROXY_PID")
    wait_port "$PROXY_PORT" || die "splicer (cap) did not start"
    local limit
    limit=$(awk '/Max open files/ { print $4 }' "/proc/$PROXY_PID/limits")
    hold_start "$PROXY_PORT" 5000
    local a1 a2 a3 a4 a5 alive=yes
    hold_cmd "open $CAP_CONNS"
    a1=$HOLD_ANS
    local mcap
    mcap=$("$TOOL" mem "$PROXY_PID")
    hold_cmd echo
    a2=$HOLD_ANS
    hold_cmd "close 3000"
    a3=$HOLD_ANS
    sleep 1
    hold_cmd "open 2000"
    a4=$HOLD_ANS
    hold_cmd echo
    a5=$HOLD_ANS
    hold_cmd "close $CAP_CONNS" >/dev/null
    hold_stop
    sleep 1
    kill -0 "$PROXY_PID" 2>/dev/null || alive=no
    local mend
    mend=$("$TOOL" mem "$PROXY_PID" 2>/dev/null || echo "? ? ? ? ?")
    proxy_stop
    {
        echo "fd limit $limit; open $CAP_CONNS: $a1"
        echo "proxy at cap (rss_kib pss_kib fds pipes procs): $mcap"
        echo "echo on held: $a2"
        echo "close 3000: $a3"
        echo "open 2000 more: $a4"
        echo "echo on all held: $a5"
        echo "after closing all: alive=$alive, proxy $mend"
        echo "log lines: $(wc -l <"$OUT/logs/splicer-cap.log")"
        sort "$OUT/logs/splicer-cap.log" | sed 's/^[^]]*] *//' | sort | uniq -c | sort -rn | head -5
    } >"$OUT/cap.txt"
    CAP_SUMMARY=$(cat "$OUT/cap.txt")
    log "  splicer cap: $(head -1 "$OUT/cap.txt")"
}

# ---- scenario 6: syscalls per GiB during a fixed-size bulk transfer ----

# raw_syscalls:sys_enter counts every syscall; the named ones break it down. (A glob over all
# syscalls:sys_enter_* takes perf ~15 s to open here, so the list is explicit.) Built by
# scenario_syscalls after a first perf call: perf mounts tracefs on its first use, so on a fresh
# machine /sys/kernel/tracing is empty when the script starts, and a list built then held no
# named syscall at all (every column but the total read 0).
SYSCALL_NAMES="splice read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait
    epoll_ctl accept accept4 connect close socket setsockopt getsockopt pipe2 fcntl ioctl
    clock_gettime pselect6 select poll ppoll shutdown futex sendfile64"
SYSCALL_EVENTS=raw_syscalls:sys_enter
syscall_events() { # sets SYSCALL_EVENTS to the total and the named syscalls this kernel traces
    local s t
    SYSCALL_EVENTS=raw_syscalls:sys_enter
    for s in $SYSCALL_NAMES; do
        for t in /sys/kernel/tracing /sys/kernel/debug/tracing; do
            if [[ -d $t/events/syscalls/sys_enter_$s ]]; then # perf refuses unknown events
                SYSCALL_EVENTS+=",syscalls:sys_enter_$s"
                break
            fi
        done
    done
    [[ $SYSCALL_EVENTS == *,* ]] ||
        log "  no syscalls:sys_enter_* tracepoints found (tracefs not mounted?): totals only"
}

perf_ready() { # PERF_PID PIDS: wait until perf has opened a counter per event and thread
    local want=0 p i have
    for p in ${2//,/ }; do want=$((want + $(ls "/proc/$p/task" | wc -l))); done
    want=$((want * $(tr ',' '\n' <<<"$SYSCALL_EVENTS" | wc -l)))
    for ((i = 0; i < 300; i++)); do
        have=$(ls -l "/proc/$1/fd" 2>/dev/null | grep -c perf_event || true)
        ((have >= want)) && break
        sleep 0.1
    done
    sleep 0.2
}

# syscall_run PEER KIND UPSTREAM_PORT: count the proxy's syscalls during one client run, KIND bulk
# (iperf3 -n SYSCALL_BYTES, unit GiB) or short (wrk, Connection: close, unit connection); appends
# "peer syscall count units" to syscalls-KIND.tsv.
syscall_run() {
    local peer=$1 kind=$2 f=$OUT/syscalls-$2-$1.txt cf=$OUT/syscalls-$2-client-$1.txt
    local pids tracer units
    proxy_start "$peer" "$3"
    pids=$("$TOOL" pids "$PROXY_PID")
    if [[ $USE_PERF == 1 ]]; then # counters are inherited by children forked later (socat)
        perf stat -x, -e "$SYSCALL_EVENTS" -p "$pids" -o "$f" >"$OUT/logs/perf-$kind-$peer.log" 2>&1 &
        tracer=$!
        perf_ready "$tracer" "$pids"
    else
        strace -c -f -o "$f" -p "$PROXY_PID" >/dev/null 2>&1 &
        tracer=$!
        sleep 1
    fi
    case $kind in
    bulk)
        timeout $((DURATION * 10 + 60)) "${PINP[@]}" iperf3 -c 127.0.0.1 -p "$PROXY_PORT" \
            -n "$SYSCALL_BYTES" -f m >"$cf" 2>&1 || log "  iperf3 failed ($peer), see $cf"
        ;;
    short)
        timeout $((DURATION + 20)) "${PINP[@]}" wrk -t 1 -c "$SHORT_CONNS" -d "${DURATION}s" \
            --timeout 5s -H 'Connection: close' "http://127.0.0.1:$PROXY_PORT/tiny.txt" >"$cf" 2>&1 ||
            log "  wrk failed ($peer), see $cf"
        ;;
    esac
    sleep 0.3
    kill -INT "$tracer" 2>/dev/null || true
    wait "$tracer" 2>/dev/null || true
    proxy_stop
    if [[ $kind == bulk ]]; then
        units=$(awk -f "$BENCH/iperf.awk" "$cf" | awk '{ print $1 / 1024 }')
    else
        units=$(awk '/requests in/ { print $1 }' "$cf")
    fi
    [[ -s $f && -n $units ]] || {
        log "  no syscall counts for $peer ($kind), see $OUT/logs and $cf"
        return 0
    }
    if [[ $USE_PERF == 1 ]]; then
        awk -F, -v p="$peer" -v u="$units" '$3 ~ /sys_enter/ && $1 > 0 {
            n = $3; if (n == "raw_syscalls:sys_enter") n = "ALL"; else sub(/.*sys_enter_/, "", n)
            print p "\t" n "\t" $1 "\t" u }' "$f" >>"$OUT/syscalls-$kind.tsv"
    else
        awk -v p="$peer" -v u="$units" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ &&
            $NF != "total" { print p "\t" $NF "\t" $4 "\t" u }' "$f" >>"$OUT/syscalls-$kind.tsv"
    fi
    log "  $peer syscalls ($kind): $(awk -v p="$peer" '$1 == p { if ($2 == "ALL") a = $3; else s += $3 }
        END { print (a ? a : s + 0) }' "$OUT/syscalls-$kind.tsv") for $units $([[ $kind == bulk ]] &&
        echo GiB || echo connections)"
}

USE_PERF=0
scenario_syscalls() {
    need_backend iperf
    need_backend web
    local peer
    command -v perf >/dev/null && perf stat -e syscalls:sys_enter_read true >/dev/null 2>&1 &&
        USE_PERF=1
    if [[ $USE_PERF == 1 ]]; then syscall_events; fi
    : >"$OUT/syscalls-bulk.tsv"
    : >"$OUT/syscalls-short.tsv"
    for peer in $RUN_PEERS; do
        [[ $peer == direct || $peer == haproxy-b ]] && continue # haproxy-b: haproxy's count again
        syscall_run "$peer" bulk "$IPERF_PORT"
        syscall_run "$peer" short "$WEB_PORT"
    done
    SYSCALL_TOOL=$([[ $USE_PERF == 1 ]] &&
        echo "perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_{splice,read,...} -p PIDS" ||
        echo "strace -c -f -p PID")
}

# ---- scenario 7: workers scaling (unpinned, short connections) ----

scenario_scaling() {
    need_backend web2
    local r peer
    for ((r = 0; r < ROUNDS; r++)); do
        for peer in $(rotate "$r" $SCALING_PEERS); do
            proxy_start "$peer" "$WEB2_PORT" 0
            short_one scaling "$peer" "$r" 2 $((SHORT_CONNS * 2))
            proxy_stop
        done
    done
}

# ---- run ----

# shellcheck source=bench/balance.sh
. "$BENCH/balance.sh"
# shellcheck source=bench/stall.sh
. "$BENCH/stall.sh"

CAP_SUMMARY=""
SYSCALL_TOOL=""
VETH_RAN=""
T0=$(date +%s)
for t in $TOPOS; do
    if [[ $t == loopback ]]; then
        topo_loopback
        RUN_PEERS=$(topo_peers "$PEERS")
        for s in $SCENARIOS; do
            log "scenario $s"
            "scenario_$s"
        done
        continue
    fi
    vs=""
    for s in $SCENARIOS; do
        if [[ " $VETH_SCENARIOS " == *" $s "* ]]; then vs+=" $s"; else
            [[ $TOPOLOGY == veth ]] && log "scenario $s runs on loopback only, not on veth"
        fi
    done
    if [[ -z $vs ]]; then
        VETH_SKIPPED="no scenario of SCENARIOS runs on veth (those that do: $VETH_SCENARIOS)"
    elif ! veth_up; then
        log "veth topology skipped: $VETH_SKIPPED"
        veth_down
    else
        topo_veth
        RUN_PEERS=$(topo_peers "$VETH_PEERS")
        VETH_RAN=1
        log "veth topology: namespaces ${MADE_NS[*]}; $VETH_NOTE"
        for s in $vs; do
            log "scenario $s (veth)"
            "scenario_$s"
        done
    fi
done
topo_loopback
T1=$(date +%s)
cleanup

# ---- RESULTS.md ----

peer_versions() {
    if [[ -n ${SPLICER_BIN:-} ]]; then # a given binary: this tree's commit says nothing about it
        echo "- splicer: $("$SPLICER" --version 2>&1 | head -1), binary $SPLICER (SPLICER_BIN, not built by this run)"
    else
        echo "- splicer: $("$SPLICER" --version 2>&1 | head -1), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- proxy include 2>/dev/null || echo ' (with uncommitted changes)'), binary $SPLICER"
    fi
    echo "- HAProxy: $(haproxy -v 2>&1 | head -1)"
    echo "- nginx: $(nginx -v 2>&1 | head -1) (stream module: libnginx-mod-stream $(dpkg-query -W -f='${Version}' libnginx-mod-stream 2>/dev/null))"
    echo "- pen: $(dpkg-query -W -f='${Version}' pen 2>/dev/null)"
    echo "- socat: $(socat -V 2>/dev/null | sed -n 's/^socat version \([^ ]*\).*/\1/p')"
    echo "- clients: $(iperf3 --version | head -1 | cut -d' ' -f1-2), wrk $(dpkg-query -W -f='${Version}' wrk), $(redis-benchmark --version | head -1), redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
}

{
    echo "# splicer benchmark results"
    echo
    if [[ -n $SMOKE_NOTE ]]; then
        echo "$SMOKE_NOTE"
        echo
    fi
    echo "Generated by \`bench/run.sh\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $((T1 - T0)) s). Raw per-round data:"
    echo "\`bench/out/$RUN_ID/\` (not committed). See bench/README.md for how each number is measured."
    echo
    echo "## Setup"
    echo
    echo "- command: \`QUICK=$QUICK DURATION=$DURATION ROUNDS=$ROUNDS PIN=$PIN $CMDLINE\`"
    echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
    echo "- kernel: $(uname -r)"
    # they decide how much is in flight, hence how warm in cache the bytes are when read
    echo "- TCP: congestion control $(sysctl -n net.ipv4.tcp_congestion_control 2>/dev/null), default qdisc $(sysctl -n net.core.default_qdisc 2>/dev/null), tcp_rmem $(sysctl -n net.ipv4.tcp_rmem 2>/dev/null | tr -s '\t ' ' '), tcp_wmem $(sysctl -n net.ipv4.tcp_wmem 2>/dev/null | tr -s '\t ' ' ')"
    # conntrack on the path (loaded by any NAT or stateful rule, e.g. dockerd's) costs every
    # connection of every peer a lookup and an entry: it dilutes the differences between proxies
    echo "- netfilter: $(if [[ -r /proc/sys/net/netfilter/nf_conntrack_count ]]; then
        echo "nf_conntrack loaded, $(cat /proc/sys/net/netfilter/nf_conntrack_count) entries at the end"
    else echo "no conntrack"; fi)$(nft list tables 2>/dev/null | awk '{ t = t sep $2 " " $3; sep = ", " }
        END { if (t != "") print "; nftables tables: " t }')"
    if [[ $PIN == 1 ]]; then
        echo "- **pinned**: every proxy, client and backend process runs on CPU $PIN_CPU (\`taskset -c $PIN_CPU\`),"
        echo "  so no cross-CPU wake-ups; \"machine CPU\" is the busy time of CPU $PIN_CPU. Ratios are from this mode."
    else
        echo "- **unpinned** (PIN=0): the scheduler places every process; \"machine CPU\" is the busy time of all CPUs."
    fi
    echo "- one worker/thread per proxy: splicer \`workers: 1\`, HAProxy \`nbthread 1\`, nginx"
    echo "  \`worker_processes 1\`, pen (single process). socat forks one process per connection."
    echo "- medians over $ROUNDS round(s) with [min–max]; round r runs every peer once, order rotated by r."
    echo "- topologies: $(if [[ $TOPOS == *loopback* ]]; then echo "loopback (scenarios: $SCENARIOS)"; fi)$(
        if [[ $TOPOS == *veth* ]]; then
            [[ $TOPOS == *loopback* ]] && echo -n "; "
            if [[ -n $VETH_RAN ]]; then echo "veth (scenarios:$vs)"; else echo "veth skipped ($VETH_SKIPPED)"; fi
        fi)"
    peer_versions
    echo
    awk -F'\t' -v only="bulk1 bulk4 short redis1 redis50" -f "$BENCH/report.awk" "$RAW"
    if [[ -n $VETH_RAN ]]; then
        echo "## Container path (veth topology): method"
        echo
        echo "The client, the proxy and the backends run in three network namespaces joined by two veth"
        echo "pairs: client ($VETH_NET.1.2) ↔ proxy ($VETH_NET.1.1 | $VETH_NET.2.1) ↔ server ($VETH_NET.2.2),"
        echo "each process started with \`ip netns exec NS\` and pinned as above. \`routed\` is the"
        echo "baseline: no proxy, the middle namespace forwards the packets in the kernel (\`ip_forward=1\`);"
        echo ""machine added" is measured against it. The relay's upstream is not loopback here, so"
        echo "\`relay: auto\` adapts per direction. Veth: $VETH_NOTE. Full \`ethtool -k\` output:"
        echo "\`bench/out/$RUN_ID/veth-ethtool.txt\`."
        echo
        awk -F'\t' -v only="veth-bulk1 veth-bulk4 veth-short veth-redis1 veth-redis50" \
            -f "$BENCH/report.awk" "$RAW"
    elif [[ $TOPOS == *veth* ]]; then
        echo "## Container path (veth topology)"
        echo
        echo "Not run: $VETH_SKIPPED."
        echo
    fi
    awk -F'\t' -v only="idle conc" -f "$BENCH/report.awk" "$RAW"
    if [[ -n $CAP_SUMMARY ]]; then
        echo "## 5b. splicer at its file-descriptor cap"
        echo
        echo "$CAP_CONNS connections opened against splicer (fd limit shown), each sending 16 bytes and"
        echo "waiting for the echo (timeout 5 s); then an echo on every held connection, 3,000 closed, 2,000"
        echo "more opened. \`refused\` = closed or reset by the proxy before the echo; \`timeout\` = no answer."
        echo
        echo '```'
        echo "$CAP_SUMMARY"
        echo '```'
        echo
    fi
    if [[ -s $OUT/syscalls-bulk.tsv ]]; then
        echo "## 6. Syscalls per GiB (bulk, 1 stream, $SYSCALL_BYTES per peer, one run)"
        echo
        echo "Counted with \`$SYSCALL_TOOL\` on every process of the proxy during a fixed-size"
        echo "\`iperf3 -n $SYSCALL_BYTES\` transfer. \`rw\` is read, write, readv, writev, recv*, send*."
        echo
        awk -F'\t' -v unit=GiB -v f=%.0f -f "$BENCH/syscalls.awk" "$OUT/syscalls-bulk.tsv"
        echo
    fi
    if [[ -s $OUT/syscalls-short.tsv ]]; then
        echo "## 6. Syscalls per connection (short connections, wrk for $DURATION s per peer, one run)"
        echo
        echo "The same count during a \`wrk -H 'Connection: close'\` run (scenario 2's load)."
        echo
        awk -F'\t' -v unit=conn -v f=%.1f -f "$BENCH/syscalls.awk" "$OUT/syscalls-short.tsv"
        echo
    fi
    awk -F'\t' -v only=scaling -f "$BENCH/report.awk" "$RAW"
    if grep -q '^balance' "$RAW"; then
        awk -F'\t' -v only=balance -f "$BENCH/report.awk" "$RAW"
        echo "splicer with \`workers: $BALANCE_WORKERS\`, unpinned, \`wrk -t 2 -c $BALANCE_CONNS\` for $DURATION s; the"
        echo "shares are of the connections each worker accepted (\`splicer_worker_connections_total{worker}\`"
        echo "read from \`/metrics\` before and after). Target: no worker above 60%."
        echo
    fi
    if grep -q '^stall' "$RAW"; then
        awk -F'\t' -v only=stall -f "$BENCH/report.awk" "$RAW"
        echo "$STALL_CONNS connections each send the first half of \`$(basename "$STALL_HELLO")\` ($(stat -c %s "$STALL_HELLO") bytes,"
        echo "openssl s_client's ClientHello) and stall; splicer's CPU (utime + stime) is taken over"
        echo "$STALL_SECONDS s of that. Then each sends the rest, splicer routes it by SNI to an echo"
        echo "server, and the whole hello must come back intact (\`completed and echoed\`)."
        echo "splicer: \`$SPLICER\`$([[ -n $STALL_REF_BIN ]] && echo "; splicer-ref: $STALL_REF_LABEL (\`$STALL_REF_BIN\`)")."
        echo
    fi
    awk -F'\t' -v only=- -v ratios=1 -f "$BENCH/report.awk" "$RAW"
} >"$RESULTS"
cp "$RESULTS" "$OUT/RESULTS.md"
log "wrote $RESULTS ($((T1 - T0)) s)"
