#!/usr/bin/env bash
# soak.sh: splicer (workers: 2) under mixed load for N minutes while backends are killed, frozen
# and made to reset, the configuration is reloaded every few seconds and /metrics is scraped.
# Prints a table row per minute and a verdict; exits 0 only if the verdict is pass.
#
# Usage: scripts/soak.sh [--minutes N] [--keep]
#   --minutes N  load time (default 10); the end phase adds about half a minute
#   --keep       keep the temp directory (configs, logs, events, scrapes) instead of removing it
# Environment: SPLICER_BIN (default: build/splicer, built if missing or stale), SOAK_NETNS=0 (do
# not enter a private network namespace even as root), and the load knobs below.
# README.md, section "Reliability", says what each load, fault and check is.
set -Eeuo pipefail
set -m # every background job in its own process group: stopped with its children, by its pid
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORIG_ARGS=("$@")
MINUTES=10
KEEP=0

usage() { sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*" >&"${LOG_FD:-2}"; }
die() {
    log "error: $*"
    exit 2
}

while (($#)); do
    case $1 in
    --minutes)
        MINUTES=${2:-}
        shift 2 || die "--minutes needs a value"
        ;;
    --keep)
        KEEP=1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
done
[[ $MINUTES =~ ^[0-9]+$ ]] && ((MINUTES >= 1)) || die "--minutes takes a whole number >= 1"

# ---- knobs ----
BULK_LANES=${BULK_LANES:-3}          # parallel echo transfers of BULK_MIN..BULK_MAX bytes
BULK_MIN=${BULK_MIN:-16m}
BULK_MAX=${BULK_MAX:-64m}
BULK_PAUSE_MS=${BULK_PAUSE_MS:-300}  # per lane, between two transfers
ABORT_PCT=${ABORT_PCT:-5}            # bulk transfers the client aborts mid-way on purpose
IDLE_CONNS=${IDLE_CONNS:-300}        # idle connections held open
PING_EVERY=${PING_EVERY:-15}         # mean seconds between two pings of one idle connection
PROXY_LANES=${PROXY_LANES:-2}        # PROXY v1/v2 clients
XCHG_PAUSE_MS=${XCHG_PAUSE_MS:-50}   # PROXY and ClientHello clients, between two exchanges
WRK_CONNS=${WRK_CONNS:-4}            # wrk connections (Connection: close: one request each)
SLICE=${SLICE:-10}                   # seconds of one wrk or redis-benchmark run
RELOAD_EVERY=${RELOAD_EVERY:-5}      # seconds between two SIGHUPs
SCRAPE_EVERY=${SCRAPE_EVERY:-5}      # seconds between two /metrics scrapes
FAULT_EVERY=${FAULT_EVERY:-$((MINUTES < 5 ? 10 : 30))} # seconds between two injected faults
GRACE_MS=${GRACE_MS:-5000}           # a failure this long after a fault ended is still its effect
ROW_EVERY=${ROW_EVERY:-60}           # seconds between two table rows

# ---- build (before entering a network namespace: deps.sh may need the network) ----
if [[ -z ${SOAK_IN_NETNS:-} ]]; then
    "$ROOT/scripts/deps.sh" wrk nginx redis-server redis-tools openssl curl iproute2 ||
        die "could not install the load tools"
    if [[ -n ${SPLICER_BIN:-} ]]; then
        BIN_DIR=$(dirname "$SPLICER_BIN")
    else
        BIN_DIR=$ROOT/build
        SPLICER_BIN=$BIN_DIR/splicer
        log "building splicer, sp-backend and soak-client (Release) in $BIN_DIR"
        { [[ -f $BIN_DIR/CMakeCache.txt ]] ||
            cmake -S "$ROOT" -B "$BIN_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null; } &&
            cmake --build "$BIN_DIR" -j2 --target splicer sp-backend soak-client >/dev/null ||
            die "build failed"
    fi
    export SPLICER_BIN BIN_DIR
    [[ -x $BIN_DIR/sp-backend && -x $BIN_DIR/soak-client ]] ||
        die "no sp-backend or soak-client next to $SPLICER_BIN (cmake --build ... --target sp-backend soak-client)"
    # As root, run in a private network namespace: its own loopback, free ports, and iptables and
    # tc rules that touch nothing outside it (they vanish with it).
    if [[ ${SOAK_NETNS:-1} != 0 && $EUID == 0 ]] && unshare -n true 2>/dev/null; then
        export SOAK_IN_NETNS=1
        exec unshare -n -- "$BASH" "${BASH_SOURCE[0]}" "${ORIG_ARGS[@]}"
    fi
fi
SPLICER=$SPLICER_BIN
BACKEND=$BIN_DIR/sp-backend
CLIENT=$BIN_DIR/soak-client
NETFAULTS=0
NETFAULTS_NOTE="iptables/tc faults skipped: they need root in a private network namespace"
if [[ -n ${SOAK_IN_NETNS:-} ]]; then
    ip link set lo up
    if iptables -S >/dev/null 2>&1 && tc qdisc show dev lo >/dev/null 2>&1; then
        NETFAULTS=1
        NETFAULTS_NOTE="iptables/tc faults on (private network namespace)"
    else
        NETFAULTS_NOTE="iptables/tc faults skipped: iptables or tc does not work here"
    fi
fi

# ---- temp dir, processes, cleanup ----
D=$(mktemp -d "${TMPDIR:-/tmp}/splicer-soak.XXXXXX")
mkdir -p "$D/logs" "$D/conf" "$D/tls"
# The shell's own stderr (job notices such as "Killed" for the backends it kills on purpose, tool
# chatter) goes to a file; log lines keep the terminal through fd 3.
exec 3>&2 2>>"$D/logs/soak.stderr"
LOG_FD=3
EV=$D/events.log        # one line per client-visible outcome (soak_client.c's format)
FAULTS=$D/faults.tsv    # B ID KIND BACKEND POOL T_MS / E ID T_MS
: >"$EV"
: >"$FAULTS"
declare -A BPID=()      # backend name -> pid
LOAD_PIDS=()            # load generators
SPID=""                 # splicer

stop_job() { # PID: the job's whole process group, TERM then KILL after 5 s
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -CONT -- "-$pid" 2>/dev/null || true
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local p
    touch "$D/stop"
    for p in "${LOAD_PIDS[@]}"; do stop_job "$p"; done
    for p in "${BPID[@]}"; do stop_job "$p"; done
    stop_job "$SPID"
    if ((KEEP)); then log "kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "line $LINENO: \"$BASH_COMMAND\" failed ($?)"' ERR

tick() { # NOW = wall-clock milliseconds (the clients log the same clock)
    NOW=${EPOCHREALTIME/./}
    NOW=${NOW:0:${#NOW}-3}
}

wait_port() { # PORT: until something listens on 127.0.0.1:PORT (10 s)
    local i
    for ((i = 0; i < 200; i++)); do
        ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
        sleep 0.05
    done
    return 1
}

# Ports: any in a private namespace; outside one, free ones below the ephemeral range.
NEXT_PORT=20000
port() { # VAR
    local p=$NEXT_PORT
    while ss -Hltn "sport = :$p" 2>/dev/null | grep -q . ||
        ss -Htn "sport = :$p or dport = :$p" 2>/dev/null | grep -q .; do
        p=$((p + 1))
    done
    NEXT_PORT=$((p + 1))
    printf -v "$1" '%s' "$p"
}
declare -A PORT=()
for b in echo1 echo2 echo3 resetter web1 web2 redis1 redis2 tls_a tls_b tls_default; do
    port "PORT[$b]"
done
port P_BULK
port P_IDLE
port P_WEB
port P_REDIS
port P_PP
port P_SNI
port P_EXTRA
port P_ADMIN

# ---- backends ----
make_tls() { # NAME DNS: a self-signed certificate for DNS; trust.pem collects them all
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$D/tls/$1.key" -out "$D/tls/$1.pem" -subj "/CN=$2" \
        -addext "subjectAltName=DNS:$2" >/dev/null 2>&1 || die "openssl req failed"
    cat "$D/tls/$1.pem" >>"$D/tls/trust.pem"
}
make_tls tls_a a.soak.test
make_tls tls_b '*.b.soak.test'
make_tls tls_default default.soak.test

for w in web1 web2; do
    mkdir -p "$D/$w"
    cat >"$D/$w/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $D/$w/nginx.pid;
error_log $D/logs/$w.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:${PORT[$w]};
        location / { return 200 "$w\n"; }
    }
}
EOF
done

start_backend() { # NAME: (re)starts one backend on its port and waits until it listens
    local n=$1 p=${PORT[$1]}
    case $n in
    echo*) "$BACKEND" --mode name --name "$n" "127.0.0.1:$p" >>"$D/logs/$n.log" 2>&1 & ;;
    resetter) "$CLIENT" resetter --listen "127.0.0.1:$p" --name resetter >>"$D/logs/$n.log" 2>&1 & ;;
    web*) nginx -p "$D/$n" -e "$D/logs/$n.log" -c "$D/$n/nginx.conf" >>"$D/logs/$n.log" 2>&1 & ;;
    redis*)
        mkdir -p "$D/$n"
        redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$D/$n" \
            --logfile "$D/logs/$n.log" >/dev/null 2>&1 &
        ;;
    tls_*)
        openssl s_server -accept "127.0.0.1:$p" -cert "$D/tls/$n.pem" -key "$D/tls/$n.key" \
            -www -quiet >>"$D/logs/$n.log" 2>&1 </dev/null &
        ;;
    esac
    BPID[$n]=$!
    wait_port "$p" || die "backend $n did not start on port $p (see $D/logs/$n.log)"
}

# ---- configuration: flags changed by reloads and faults ----
F_VARIANT=0  # 0 is the base configuration (the one at the start and at the end)
F_RESETTER=0 # the resetting backend is in echo_pool (a fault)
PP_FROM=1    # the PROXY listener lists proxy_protocol_from (required where splicer knows it)

server_list() { # ADDRESS...
    local a
    for a in "$@"; do printf '      - address: 127.0.0.1:%s\n' "$a"; done
}

write_config() { # [invalid]: the YAML for the current flags
    local v=$F_VARIANT relays=(auto splice copy) balances=(round_robin least_conn random_two)
    local echo_servers=("${PORT[echo1]}" "${PORT[echo2]}")
    ((v % 2 == 0)) && echo_servers+=("${PORT[echo3]}")
    ((F_RESETTER)) && echo_servers+=("${PORT[resetter]}")
    cat <<EOF
# soak.sh variant $v, resetter $F_RESETTER (max_connections: 400 each keeps 7 listeners within
# a 20000-descriptor limit)
workers: 2
shutdown_timeout: 5s
pipe_pool_max: 16
log_level: info
access_log: $D/access.log
admin:
  listen: 127.0.0.1:$P_ADMIN
listeners:
  bulk:
    listen: 127.0.0.1:$P_BULK
    max_connections: 400
    upstream: echo_pool
    connect_timeout: 1s
    idle_timeout: 20s
  idle:
    listen: 127.0.0.1:$P_IDLE
    max_connections: 400
    upstream: echo_pool
    connect_timeout: 1s
    idle_timeout: 120s
    relay: auto
  web:
    listen: 127.0.0.1:$P_WEB
    max_connections: 400
    upstream: web_pool
    connect_timeout: 1s
    idle_timeout: 20s
    relay: ${relays[v % 3]}
  redis:
    listen: 127.0.0.1:$P_REDIS
    max_connections: 400
    upstream: redis_pool
    connect_timeout: 1s
    idle_timeout: 20s
    relay: auto
  pp:
    listen: 127.0.0.1:$P_PP
    max_connections: 400
    upstream: pp_pool
    connect_timeout: 1s
    idle_timeout: 20s
    accept_proxy_protocol: true
$( ((PP_FROM)) && echo "    proxy_protocol_from: [127.0.0.0/8]")
  sni:
    listen: 127.0.0.1:$P_SNI
    max_connections: 400
    connect_timeout: 1s
    idle_timeout: 20s
    routes:
      - sni: [a.soak.test]
        upstream: tls_a
      - sni: ["*.b.soak.test"]
        upstream: tls_b
      - sni: [www.example.com, "*.example.net"]
        upstream: hello_www
      - sni: ["*.example.org"]
        upstream: hello_org
    upstream: tls_default
$( ((v % 3 == 1)) && printf '  extra:\n    listen: 127.0.0.1:%s\n    max_connections: 400\n    upstream: echo_pool\n' "$P_EXTRA")
upstreams:
  echo_pool:
    fail_timeout: 3s
    balance: ${balances[v % 3]}
    health_check: {interval: 1s, timeout: 1s, rise: 2, fall: 2, expect: "\n"}
    servers:
$(server_list "${echo_servers[@]}")
  pp_pool:
    fail_timeout: 3s
    balance: source_hash
    proxy_protocol: v1
    health_check: {interval: 1s, timeout: 1s, rise: 2, fall: 2, expect: "\n"}
    servers:
$(server_list "${PORT[echo1]}" "${PORT[echo2]}" "${PORT[echo3]}")
  web_pool:
    fail_timeout: 3s
    health_check: {interval: 1s, timeout: 1s, rise: 2, fall: 2, send: "GET / HTTP/1.0\r\n\r\n", expect: " 200 "}
    servers:
$(server_list "${PORT[web1]}" "${PORT[web2]}")
  redis_pool:
    fail_timeout: 3s
    balance: least_conn
    health_check: {interval: 1s, timeout: 1s, rise: 2, fall: 2, send: "PING\r\n", expect: "+PONG"}
    servers:
$(server_list "${PORT[redis1]}" "${PORT[redis2]}")
  hello_www:
    fail_timeout: 3s
    servers:
$(server_list "${PORT[echo1]}")
  hello_org:
    fail_timeout: 3s
    servers:
$(server_list "${PORT[echo2]}")
  tls_a:
    fail_timeout: 3s
    servers:
$(server_list "${PORT[tls_a]}")
  tls_b:
    fail_timeout: 3s
    servers:
$(server_list "${PORT[tls_b]}")
  tls_default:
    fail_timeout: 3s
    servers:
$(server_list "${PORT[tls_default]}")
EOF
    [[ ${1:-} == invalid ]] && printf 'conect_timeout: 1s\n'
    return 0
}

CONF=$D/conf/splicer.yaml
write_config >"$CONF"
if ! "$SPLICER" -t -c "$CONF" >/dev/null 2>"$D/logs/check.log"; then
    if grep -q "proxy_protocol_from" "$D/logs/check.log"; then
        PP_FROM=0 # this splicer predates proxy_protocol_from
        write_config >"$CONF"
    fi
    "$SPLICER" -t -c "$CONF" >/dev/null 2>"$D/logs/check.log" ||
        die "soak configuration refused: $(cat "$D/logs/check.log")"
fi

# ---- metrics and process samples ----
SCRAPES=0
scrape() { # fetches /metrics into metrics.last; records RSS; checks that no counter went down
    tick
    if ! curl -sf --max-time 3 "http://127.0.0.1:$P_ADMIN/metrics" -o "$D/m.new"; then
        echo "$NOW" >>"$D/scrape_failures"
        return 0
    fi
    awk '!/^#/ && $1 ~ /_total(\{|$)/ { print $1 "\t" $NF }' "$D/m.new" >"$D/c.new"
    if [[ -f $D/c.prev ]]; then
        awk -F'\t' -v t="$NOW" 'NR == FNR { p[$1] = $2; next }
            ($1 in p) && $2 + 0 < p[$1] + 0 { print t "\t" $1 "\t" p[$1] "\t" $2 }' \
            "$D/c.prev" "$D/c.new" >>"$D/counter_violations"
    fi
    mv -f "$D/c.new" "$D/c.prev"
    mv -f "$D/m.new" "$D/metrics.last"
    echo "$NOW $(rss_kib)" >>"$D/rss.tsv"
    SCRAPES=$((SCRAPES + 1))
}

msum() { # SERIES...: sum of the series (a bare family name matches all its labels)
    awk -v names="$*" 'BEGIN { n = split(names, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
        !/^#/ { f = $1; sub(/\{.*/, "", f); if (($1 in want) || (f in want)) s += $NF }
        END { printf "%.0f\n", s }' "$D/metrics.last"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SPID/status" 2>/dev/null || echo 0; }

fd_counts() { # -> "FDS PIPE_FDS"
    { find "/proc/$SPID/fd" -mindepth 1 -printf '%l\n' 2>/dev/null || true; } | # fds come and go
        awk '{ n++ } /^pipe:/ { p++ } END { print n + 0, p + 0 }'
}

quiet_fd_counts() { # the smallest counts over 10 looks 0.2 s apart: health checks come and go
    local i best="" cur
    for ((i = 0; i < 10; i++)); do
        cur=$(fd_counts)
        if [[ -z $best ]] || ((${cur% *} < ${best% *})); then best=$cur; fi
        sleep 0.2
    done
    echo "$best"
}

# ---- reloads ----
reload() { # [invalid]: writes the config for the flags, SIGHUPs and checks the outcome
    local kind=${1:-valid} g0 f0 g f i t0 res=fail why=timeout
    scrape
    g0=$(msum splicer_config_generation)
    f0=$(msum 'splicer_config_reloads_total{result="failure"}')
    write_config "$kind" >"$CONF.new"
    mv -f "$CONF.new" "$CONF"
    tick
    t0=$NOW
    kill -HUP "$SPID"
    for ((i = 0; i < 50; i++)); do
        sleep 0.1
        scrape
        g=$(msum splicer_config_generation)
        f=$(msum 'splicer_config_reloads_total{result="failure"}')
        if [[ $kind == valid ]] && ((g > g0)); then
            res=ok why=-
            break
        elif [[ $kind == invalid ]] && ((f > f0)) && ((g == g0)); then
            res=ok why=-
            break
        elif ((g != g0 || f != f0)); then
            why=unexpected_outcome
            break
        fi
    done
    echo "$t0 $NOW reload $res - 0 ${kind}_$why" >>"$EV"
}

probe_extra() { # after a reload: the extra listener answers when configured, refuses when not
    local present=$1 name="" got="" i
    tick
    local t0=$NOW
    if ((present)); then
        if { exec 7<>"/dev/tcp/127.0.0.1/$P_EXTRA"; } 2>/dev/null; then
            IFS= read -r -t 5 name <&7 || true
            printf 'ping\n' >&7 2>/dev/null || true
            IFS= read -r -t 5 got <&7 || true
            exec 7<&- 7>&-
        fi
        tick
        if [[ $got == ping ]]; then
            echo "$t0 $NOW probe_add ok ${name:--} 5 -" >>"$EV"
        else
            echo "$t0 $NOW probe_add fail ${name:--} 0 no_echo_from_new_listener" >>"$EV"
        fi
    else
        for ((i = 0; i < 20; i++)); do # workers close a removed listener soon after the reload
            (exec 7<>"/dev/tcp/127.0.0.1/$P_EXTRA") 2>/dev/null || break
            sleep 0.1
        done
        tick
        if ((i < 20)); then
            echo "$t0 $NOW probe_del ok - 0 -" >>"$EV"
        else
            echo "$t0 $NOW probe_del fail - 0 removed_listener_still_accepts" >>"$EV"
        fi
    fi
}

RELOADS=0
periodic_reload() { # every 7th writes an invalid file; the others step the variant
    RELOADS=$((RELOADS + 1))
    if ((RELOADS % 7 == 0)); then
        reload invalid
        return
    fi
    F_VARIANT=$((F_VARIANT + 1))
    reload valid
    probe_extra $((F_VARIANT % 3 == 1))
}

# ---- faults ----
FID=0
PEND_T=()
PEND_C=()
later() { # SECONDS COMMAND: run COMMAND (eval) from the main loop after SECONDS
    tick
    PEND_T+=($((NOW + $1 * 1000)))
    PEND_C+=("$2")
}
run_due() { # [all]: the pending commands that are due (or all of them)
    local i
    tick
    for i in "${!PEND_T[@]}"; do
        if [[ ${1:-} == all ]] || ((PEND_T[i] <= NOW)); then
            eval "${PEND_C[i]}"
            unset "PEND_T[$i]" "PEND_C[$i]"
        fi
    done
}
fault_begin() { # KIND BACKEND POOL: opens a fault window, its id in FID
    FID=$((FID + 1))
    tick
    echo "B $FID $1 $2 $3 $NOW" >>"$FAULTS"
    FAULT_COUNT[$1]=$((${FAULT_COUNT[$1]:-0} + 1))
}
fault_end() { # ID
    tick
    echo "E $1 $NOW" >>"$FAULTS"
}
declare -A FAULT_COUNT=()

restart_after_kill() { # NAME ID
    wait "${BPID[$1]}" 2>/dev/null || true
    start_backend "$1"
    fault_end "$2"
}

ipt_window() { # KIND BACKEND SECONDS RULE...: an iptables rule for SECONDS
    local kind=$1 be=$2 secs=$3
    shift 3
    fault_begin "$kind" "$be" echo
    iptables -I INPUT "$@"
    later "$secs" "iptables -D INPUT $(printf '%q ' "$@"); fault_end $FID"
}

if ((NETFAULTS)); then
    FAULT_ROTA=(kill:echo synblock:echo stop:web loss:echo resetter rst:echo term:redis slow:bulk
        stop:echo drain:echo kill:web client_burst)
else
    FAULT_ROTA=(kill:echo stop:web resetter term:redis stop:echo drain:echo kill:web client_burst)
fi
admin_drain() { # drain|enable|check BACKEND: through the admin endpoint, logged as an event
    local what=$1 be=$2 code t0 srv="127.0.0.1:${PORT[$2]}"
    tick
    t0=$NOW
    if [[ $what == check ]]; then # still drained, after the reloads since
        scrape
        code=$(msum "splicer_server_drained{upstream=\"echo_pool\",server=\"$srv\"}")
        tick
        [[ $code == 1 ]] && echo "$t0 $NOW admin ok $be 0 drain_kept" >>"$EV" ||
            echo "$t0 $NOW admin fail $be 0 drain_lost_gauge_$code" >>"$EV"
        return 0
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 -X POST -H 'X-Splicer-Admin: 1' \
        "http://127.0.0.1:$P_ADMIN/upstreams/echo_pool/servers/$srv/$what") || true
    tick
    [[ $code == 200 ]] && echo "$t0 $NOW admin ok $be 0 $what" >>"$EV" ||
        echo "$t0 $NOW admin fail $be 0 ${what}_http_$code" >>"$EV"
}

FAULT_N=0
inject_next() {
    local kind=${FAULT_ROTA[FAULT_N % ${#FAULT_ROTA[@]}]} n=$FAULT_N
    local e="echo$((n % 3 + 1))" w="web$((n % 2 + 1))" r="redis$((n % 2 + 1))"
    FAULT_N=$((FAULT_N + 1))
    case $kind in
    kill:echo | kill:web | term:redis)
        local be=$e pool=echo sig=KILL
        [[ $kind == kill:web ]] && be=$w pool=web
        [[ $kind == term:redis ]] && be=$r pool=redis sig=TERM
        fault_begin "$kind" "$be" "$pool"
        kill "-$sig" "${BPID[$be]}" 2>/dev/null || true
        later 3 "restart_after_kill $be $FID"
        ;;
    stop:echo | stop:web)
        local be=$e pool=echo secs=6
        [[ $kind == stop:web ]] && be=$w pool=web secs=5
        fault_begin "$kind" "$be" "$pool"
        kill -STOP "${BPID[$be]}"
        later "$secs" "kill -CONT ${BPID[$be]}; fault_end $FID"
        ;;
    resetter)
        fault_begin resetter resetter echo
        F_RESETTER=1
        reload valid
        later 12 "F_RESETTER=0; reload valid; fault_end $FID"
        ;;
    drain:echo) # an operator's drain: no client may notice it, and reloads must not undo it
        e="echo$((n % 2 + 1))" # one that every variant keeps
        fault_begin drain:echo "$e" none
        admin_drain drain "$e"
        later 8 "admin_drain check $e; admin_drain enable $e; fault_end $FID"
        ;;
    client_burst) # 20 bulk clients that connect, send a little and reset (counted as aborts)
        fault_begin client_burst - none
        "$CLIENT" bulk --connect "127.0.0.1:$P_BULK" --lanes 20 --min 1m --max 4m \
            --abort-pct 100 --seconds 0.5 --log "$EV" >>"$D/logs/clients.log" 2>&1 || true
        fault_end $FID
        ;;
    synblock:echo) ipt_window "$kind" "$e" 8 -p tcp --dport "${PORT[$e]}" --syn -j DROP ;;
    loss:echo)
        ipt_window "$kind" "$e" 10 -p tcp --dport "${PORT[$e]}" -m statistic --mode random \
            --probability 0.05 -j DROP
        ;;
    rst:echo)
        ipt_window "$kind" "$e" 3 -p tcp --dport "${PORT[$e]}" '!' --syn -j REJECT \
            --reject-with tcp-reset
        ;;
    slow:bulk) # what splicer sends to the bulk clients crosses a 50 Mbit/s link
        fault_begin slow:bulk - none
        tc qdisc add dev lo root handle 1: htb default 1 r2q 1000 &&
            tc class add dev lo parent 1: classid 1:1 htb rate 100gbit quantum 200000 &&
            tc class add dev lo parent 1: classid 1:2 htb rate 50mbit burst 256k cburst 256k \
                quantum 65536 &&
            tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "$P_BULK" 0xffff \
                flowid 1:2 || log "tc failed: slow link not applied"
        later 15 "tc qdisc del dev lo root 2>/dev/null || true; fault_end $FID"
        ;;
    esac
}

# ---- loads ----
LOAD_END=0
loop_wrk() {
    local t0 out reqs errs non2xx
    while [[ ! -e $D/stop ]]; do
        tick
        ((NOW < LOAD_END)) || break
        t0=$NOW
        out=$(wrk -t1 -c"$WRK_CONNS" -d"${SLICE}s" --timeout 3s -H 'Connection: close' \
            "http://127.0.0.1:$P_WEB/" 2>&1) || true
        reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
        errs=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/c\1_r\2_w\3_t\4/p' <<<"$out")
        non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
        tick
        if [[ -n $reqs && -z $errs && -z $non2xx ]]; then
            echo "$t0 $NOW wrk ok - $reqs -" >>"$EV"
        else
            echo "$t0 $NOW wrk fail - ${reqs:-0} errors_${errs:-none}_non2xx_${non2xx:-0}" >>"$EV"
        fi
    done
}

loop_redis() {
    local t0 out rc k v got
    while [[ ! -e $D/stop ]]; do
        tick
        ((NOW < LOAD_END)) || break
        t0=$NOW
        rc=0
        out=$(timeout 60 redis-benchmark -h 127.0.0.1 -p "$P_REDIS" -c 8 -n 10000 \
            -t set,get,incr,lpush,lpop -q 2>&1) || rc=$?
        tick
        if ((rc == 0)) && ! grep -qi error <<<"$out"; then
            echo "$t0 $NOW redis ok - 50000 -" >>"$EV"
        else
            echo "$t0 $NOW redis fail - 0 benchmark_rc_$rc" >>"$EV"
        fi
        # One connection, three commands: the answers must be ours.
        k=soak:$RANDOM$RANDOM
        v=$RANDOM$RANDOM$RANDOM
        tick
        t0=$NOW
        got=$(printf 'SET %s %s\nGET %s\nDEL %s\n' "$k" "$v" "$k" "$k" |
            timeout 10 redis-cli -h 127.0.0.1 -p "$P_REDIS" 2>&1 | tr '\n' ' ') || true
        tick
        if [[ $got == "OK $v 1 " ]]; then
            echo "$t0 $NOW redis ok - 3 set_get_del" >>"$EV"
        else
            echo "$t0 $NOW redis fail - 0 set_get_del_answered_$(tr -c 'A-Za-z0-9_' _ <<<"${got:0:40}")" >>"$EV"
        fi
    done
}

loop_tls() { # openssl s_client through the SNI listener: certificate checked against the name
    local names=(a.soak.test x.b.soak.test default.soak.test) i=0 n t0 out res
    while [[ ! -e $D/stop ]]; do
        tick
        ((NOW < LOAD_END)) || break
        t0=$NOW
        n=${names[i++ % 3]}
        out=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect \
            "127.0.0.1:$P_SNI" -servername "$n" -verify_hostname "$n" -CAfile "$D/tls/trust.pem" \
            -verify_return_error -quiet 2>&1) || true
        tick
        if grep -q '^HTTP/1.0 200 ok' <<<"$out"; then
            res="ok - 1 $n"
        elif grep -q 'hostname mismatch' <<<"$out"; then
            res="corrupt - 0 misrouted_$n"
        else
            res="fail - 0 $(grep -m1 -io 'error[^:]*:[^:]*' <<<"$out" | tr -c 'A-Za-z0-9_.' _)_$n"
        fi
        echo "$t0 $NOW tls $res" >>"$EV"
        sleep 0.3
    done
}

start_loads() {
    local secs=$((MINUTES * 60)) T=$ROOT/tests/fixtures/tls
    "$CLIENT" bulk --connect "127.0.0.1:$P_BULK" --lanes "$BULK_LANES" --min "$BULK_MIN" \
        --max "$BULK_MAX" --abort-pct "$ABORT_PCT" --pause-ms "$BULK_PAUSE_MS" --seconds "$secs" \
        --log "$EV" >>"$D/logs/clients.log" 2>&1 &
    LOAD_PIDS+=($!)
    "$CLIENT" idle --connect "127.0.0.1:$P_IDLE" --conns "$IDLE_CONNS" --ping-every "$PING_EVERY" \
        --seconds "$secs" --log "$EV" >>"$D/logs/clients.log" 2>&1 &
    LOAD_PIDS+=($!)
    "$CLIENT" proxy --connect "127.0.0.1:$P_PP" --lanes "$PROXY_LANES" --pause-ms "$XCHG_PAUSE_MS" \
        --seconds "$secs" --log "$EV" >>"$D/logs/clients.log" 2>&1 &
    LOAD_PIDS+=($!)
    "$CLIENT" hello --connect "127.0.0.1:$P_SNI" --hello "$T/openssl_sni.bin=echo1" \
        --hello "$T/curl_sni.bin=echo2" --hello "$T/openssl_tls12_upper.bin=echo1" \
        --pause-ms "$XCHG_PAUSE_MS" --seconds "$secs" --log "$EV" >>"$D/logs/clients.log" 2>&1 &
    LOAD_PIDS+=($!)
    loop_wrk &
    LOAD_PIDS+=($!)
    loop_redis &
    LOAD_PIDS+=($!)
    loop_tls &
    LOAD_PIDS+=($!)
}

wait_loads() { # up to 90 s for the loads to finish what they started; then they are stopped
    local p i
    for p in "${LOAD_PIDS[@]}"; do
        for ((i = 0; i < 900; i++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        ((i < 900)) || log "load $p still running after 90 s: stopped"
        stop_job "$p"
    done
    LOAD_PIDS=()
}

# ---- analysis (awk over faults.tsv and events.log) ----
cat >"$D/analyze.awk" <<'AWK'
# -v now=MS -v grace=MS -v mode=brief|full -v unexpl=FILE   faults.tsv events.log
function pool(l) {
    if (l == "wrk") return "web"
    if (l == "redis") return "redis"
    if (l == "tls" || l == "reload" || l == "probe_del" || l == "admin") return "none"
    return "echo" # bulk idle proxy hello probe_add
}
# The fault that explains a failure: the backend that served the connection (its name line) was
# under a fault when it failed, or the connection never learnt its backend and a fault on its
# pool overlapped it. Faults of pool "none" (client bursts, a slow client link) explain nothing.
function explain(t0, t1, l, be,    i) {
    for (i = 1; i <= nf; i++) {
        if (fp[i] == "none") continue
        if (be != "-" && fb[i] == be && t1 >= fs[i] && t1 <= fe[i] + grace) return fk[i]
        if (be == "-" && fp[i] == pool(l) && t1 >= fs[i] && t0 <= fe[i] + grace) return fk[i]
    }
    return ""
}
FNR == NR {
    if ($1 == "B") { nf++; idx[$2] = nf; fk[nf] = $3; fb[nf] = $4; fp[nf] = $5; fs[nf] = $6; fe[nf] = now }
    else if ($1 == "E") fe[idx[$2]] = $3
    next
}
{
    l = $3; r = $4; loads[l] = 1
    if (r == "ok") ok[l]++
    else if (r == "okn") ok[l] += $6
    else if (r == "abort") ab[l]++
    else if (r == "stopped") st[l]++
    else if (r == "corrupt") { co[l]++; print "corrupt: " $0 > unexpl }
    else if (r == "fail") {
        k = explain($1, $2, l, $5)
        if (k != "") { ex[l]++; byk[k]++ } else { un[l]++; print "unexplained: " $0 > unexpl }
    }
    if (l == "bulk" && r == "ok") vbytes += $6
    if ((l == "wrk" || l == "redis") && r == "ok") req[l] += $6
}
END {
    for (l in loads) { tok += ok[l]; tex += ex[l]; tun += un[l]; tco += co[l] }
    if (mode == "brief") { printf "%d %d %d %d\n", tok, tex, tun, tco; exit }
    printf "| load | verified | failed, explained | failed, unexplained | corrupt | aborted on purpose |\n"
    printf "| --- | ---: | ---: | ---: | ---: | ---: |\n"
    n = split("bulk idle proxy hello tls wrk redis reload probe_add probe_del admin", order, " ")
    for (i = 1; i <= n; i++) {
        l = order[i]
        if (!(l in loads)) continue
        printf "| %s | %d | %d | %d | %d | %d |\n", l, ok[l], ex[l], un[l], co[l], ab[l]
    }
    printf "\nbulk bytes verified: %.1f GiB; requests in the verified runs: wrk %d, redis %d\n",
        vbytes / 1073741824, req["wrk"], req["redis"]
    printf "failures explained, by fault: "
    sep = ""
    for (k in byk) { printf "%s%s %d", sep, k, byk[k]; sep = ", " }
    printf "%s\n", sep == "" ? "none" : ""
    printf "TOTALS %d %d %d %d\n", tok, tex, tun, tco
}
AWK
analyze() { # brief|full
    tick
    awk -v now="$NOW" -v grace="$GRACE_MS" -v mode="$1" -v unexpl="$D/unexplained" \
        -f "$D/analyze.awk" "$FAULTS" "$EV"
}

# ---- the table ----
ROW_FMT='%-5s %7s %5s %5s %9s %7s %5s %9s %8s %8s %8s %11s %6s\n'
print_header() {
    # shellcheck disable=SC2059
    printf "$ROW_FMT" min rss_MiB fds pipes pool_i/u pipeMiB sess conns GiB reloads verified \
        failed/unex faults
}
print_row() { # LABEL
    local rss fds pool pmem=- sess conns bytes rel a
    scrape
    rss=$(awk -v k="$(rss_kib)" 'BEGIN { printf "%.1f", k / 1024 }')
    fds=$(fd_counts)
    pool="$(msum 'splicer_pipe_pool_pipes{state="idle"}')/$(msum 'splicer_pipe_pool_pipes{state="in_use"}')"
    if grep -q '^splicer_pipe_memory_bytes' "$D/metrics.last"; then # where splicer has it
        pmem=$(awk -v b="$(msum splicer_pipe_memory_bytes)" 'BEGIN { printf "%.1f", b / 1048576 }')
    fi
    sess=$(msum splicer_listener_active_connections)
    conns=$(msum splicer_listener_connections_total)
    bytes=$(awk -v b="$(msum splicer_bytes_total)" 'BEGIN { printf "%.1f", b / 1073741824 }')
    rel="$(msum 'splicer_config_reloads_total{result="success"}')/$(msum 'splicer_config_reloads_total{result="failure"}')"
    read -ra a <<<"$(analyze brief 2>/dev/null)"
    # shellcheck disable=SC2059
    printf "$ROW_FMT" "$1" "$rss" "${fds% *}" "${fds#* }" "$pool" "$pmem" "$sess" "$conns" "$bytes" \
        "$rel" "${a[0]}" "$((a[1] + a[2] + a[3]))/$((a[2] + a[3]))" "$FID" | tee -a "$D/table"
}

# ---- run ----
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
for b in echo1 echo2 echo3 resetter web1 web2 redis1 redis2 tls_a tls_b tls_default; do
    start_backend "$b"
done
"$SPLICER" -c "$CONF" >"$D/logs/splicer.log" 2>&1 &
SPID=$!
wait_port "$P_ADMIN" || die "splicer did not start: $(tail -5 "$D/logs/splicer.log")"
sleep 3 # first health checks
scrape
BASE_FDS=$(quiet_fd_counts)
BASE_POOL=$(($(msum splicer_pipe_pool_pipes)))
BASE_RSS=$(rss_kib)

tick
T_START=$NOW
LOAD_END=$((T_START + MINUTES * 60000))
log "splicer $("$SPLICER" --version 2>&1 | head -1), pid $SPID, workers 2, $MINUTES min; temp dir $D"
log "$NETFAULTS_NOTE; PROXY listener $( ((PP_FROM)) && echo "with proxy_protocol_from" || echo "without proxy_protocol_from (not known to this splicer)")"
log "loads: bulk ${BULK_LANES}x${BULK_MIN}-${BULK_MAX} (abort ${ABORT_PCT}%), idle $IDLE_CONNS, proxy $PROXY_LANES, hello 1, tls 1, wrk -c$WRK_CONNS, redis -c8; reload every ${RELOAD_EVERY}s, fault every ${FAULT_EVERY}s"
log "baseline: fds ${BASE_FDS% *}, pipe fds ${BASE_FDS#* }, pool pipes $BASE_POOL, RSS $BASE_RSS KiB"
start_loads
print_header

next_reload=$((T_START + RELOAD_EVERY * 1000))
next_scrape=$((T_START + SCRAPE_EVERY * 1000))
next_fault=$((T_START + FAULT_EVERY * 1000))
next_row=$((T_START + ROW_EVERY * 1000))
row=0
SPLICER_DIED=0
while :; do
    tick
    ((NOW < LOAD_END)) || break
    if ! kill -0 "$SPID" 2>/dev/null; then
        SPLICER_DIED=1
        log "splicer died: $(tail -3 "$D/logs/splicer.log")"
        break
    fi
    run_due
    if ((NOW >= next_scrape)); then
        scrape
        next_scrape=$((next_scrape + SCRAPE_EVERY * 1000))
    fi
    if ((NOW >= next_reload)); then
        periodic_reload
        next_reload=$((next_reload + RELOAD_EVERY * 1000))
    fi
    if ((NOW >= next_fault)) && ((${#PEND_T[@]} == 0)); then
        inject_next
        tick
        next_fault=$((NOW + FAULT_EVERY * 1000))
    fi
    if ((NOW >= next_row)); then
        row=$((row + 1))
        print_row "$((row * ROW_EVERY / 60))"
        next_row=$((next_row + ROW_EVERY * 1000))
    fi
    sleep 0.2
done
tick
LOAD_STOPPED=$NOW

# ---- end phase: faults undone, loads finished, base config, quiet, SIGTERM ----
run_due all
wait_loads
if ((!SPLICER_DIED)); then
    print_row end
    F_VARIANT=0
    F_RESETTER=0
    reload valid
    for ((i = 0; i < 200; i++)); do # sessions drain (40 s: idle_timeout is 20 s on busy listeners)
        scrape
        (($(msum splicer_listener_active_connections) == 0)) && break
        sleep 0.2
    done
    sleep 2 # the last pipes go back to their pools
    scrape
    END_SESS=$(msum splicer_listener_active_connections)
    END_SERVER_ACTIVE=$(msum splicer_server_active_connections)
    END_POOL_IDLE=$(msum 'splicer_pipe_pool_pipes{state="idle"}')
    END_POOL_USED=$(msum 'splicer_pipe_pool_pipes{state="in_use"}')
    END_FDS=$(quiet_fd_counts)
    # Access log lines per listener, against its connection counter (listeners of the base config)
    ALOG_DIFF=$(awk 'FNR == NR { if ($1 ~ /^splicer_listener_connections_total\{/) {
                    l = $1; sub(/.*listener="/, "", l); sub(/".*/, "", l); want[l] = $NF }; next }
            { l = $0; sub(/.*"listener":"/, "", l); sub(/".*/, "", l); got[l]++ }
            END { for (l in want) if (got[l] != want[l]) printf "%s:%d/%d ", l, got[l], want[l] }' \
        "$D/metrics.last" "$D/access.log")
    ALOG_LINES=$(wc -l <"$D/access.log")
    IDLE_ENDS=$(grep -c '"end":"idle_timeout"' "$D/access.log" || true)
    IDLE_BY=$(grep '"end":"idle_timeout"' "$D/access.log" | sed 's/.*"listener":"\([^"]*\)".*/\1/' |
        sort | uniq -c | awk '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1 }' || true)
    kill -TERM "$SPID"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    SPLICER_RC=0
    wait "$SPID" 2>/dev/null || SPLICER_RC=$?
    ((i < 100)) || SPLICER_RC=timeout
    SPID=""
fi

# ---- verdict ----
echo
echo "== loads (client-visible outcomes)"
: >"$D/unexplained"
ANALYSIS=$(analyze full)
grep -v '^TOTALS' <<<"$ANALYSIS"
read -r _ T_OK T_EX T_UN T_CO <<<"$(grep '^TOTALS' <<<"$ANALYSIS")"
echo
echo "== faults injected"
for k in "${!FAULT_COUNT[@]}"; do printf '%s %s\n' "$k" "${FAULT_COUNT[$k]}"; done | sort | tr '\n' ';' |
    sed 's/;$/\n/; s/;/, /g'
echo "$NETFAULTS_NOTE"

# RSS after warm-up: every sample within 10% of the first one after warm-up.
WARMUP_MS=$((MINUTES * 60000 / 5))
((WARMUP_MS > 120000)) && WARMUP_MS=120000
RSS_LINE=$(awk -v from=$((T_START + WARMUP_MS)) -v to="$LOAD_STOPPED" \
    '$1 >= from && $1 <= to && $2 > 0 { if (!n++) r0 = $2; if ($2 < lo || n == 1) lo = $2
        if ($2 > hi) hi = $2 }
     END { if (!n) { print "none"; exit }
           printf "%d %d %d %d %.1f %.1f\n", n, r0, lo, hi, (lo - r0) * 100 / r0, (hi - r0) * 100 / r0 }' \
    "$D/rss.tsv")

echo
echo "== checks"
FAILS=0
check() { # OK(0|1) NAME DETAIL
    local mark=PASS
    if [[ $1 != 1 ]]; then
        mark=FAIL
        FAILS=$((FAILS + 1))
    fi
    printf '%-4s %-34s %s\n' "$mark" "$2" "$3"
}
check $((!SPLICER_DIED)) "splicer ran throughout" "pid kept, $(grep -c . "$D/table") rows"
check $((T_CO == 0)) "every checksum intact" \
    "$T_OK verified, $T_CO corrupt (bulk and PROXY/hello bytes compared one by one)"
check $((T_UN == 0)) "every failure explained by a fault" \
    "$((T_EX + T_UN)) failed, $T_EX explained, $T_UN unexplained (grace ${GRACE_MS} ms)"
if [[ $RSS_LINE == none ]]; then
    check 0 "RSS flat after warm-up" "no sample after $((WARMUP_MS / 1000)) s"
else
    read -r n r0 lo hi dlo dhi <<<"$RSS_LINE"
    ok=$(awk -v a="$dlo" -v b="$dhi" 'BEGIN { print (a >= -10 && b <= 10) }')
    note=""
    if ldd "$SPLICER" 2>/dev/null | grep -q -e libasan -e libtsan; then
        ok=1 # a sanitizer's quarantine and shadow memory grow by design: reported, not judged
        note=" (sanitizer build: not judged)"
    fi
    check "$ok" "RSS within 10% after warm-up" \
        "$n samples after $((WARMUP_MS / 1000)) s: first $r0 KiB, range $lo..$hi KiB ($dlo%..+$dhi%)$note"
fi
VIOL=$( [[ -s $D/counter_violations ]] && wc -l <"$D/counter_violations" || echo 0)
check $((VIOL == 0)) "counters never decrease" "$SCRAPES scrapes, $VIOL decreases"
if ((!SPLICER_DIED)); then
    check $((END_SESS == 0 && END_SERVER_ACTIVE == 0)) "sessions back to 0" \
        "listener active $END_SESS, server active $END_SERVER_ACTIVE"
    b_fds=${BASE_FDS% *} b_pipes=${BASE_FDS#* } e_fds=${END_FDS% *} e_pipes=${END_FDS#* }
    check $((e_fds - e_pipes == b_fds - b_pipes)) "non-pipe fds back to baseline" \
        "$((b_fds - b_pipes)) at start, $((e_fds - e_pipes)) at end"
    pool_end=$((END_POOL_IDLE + END_POOL_USED))
    check $((END_POOL_USED == 0 && e_pipes - b_pipes == 2 * (pool_end - BASE_POOL) && END_POOL_IDLE <= 2 * 16)) \
        "pipes back to baseline" \
        "pipe fds $b_pipes -> $e_pipes; pool $BASE_POOL -> $END_POOL_IDLE idle + $END_POOL_USED in use (cap 2x16)"
    check "$([[ $SPLICER_RC == 0 ]] && echo 1 || echo 0)" "clean exit on SIGTERM" "exit status $SPLICER_RC"
    check "$([[ -z $ALOG_DIFF ]] && echo 1 || echo 0)" "access log: a line per connection" \
        "$ALOG_LINES lines${ALOG_DIFF:+; listener:lines/connections differ: $ALOG_DIFF}"
    check $((IDLE_ENDS == 0)) "no session outlives its client" \
        "$IDLE_ENDS sessions ended by idle_timeout${IDLE_BY:+ ($IDLE_BY)}; every client is active or gone"
fi
SAN=$(grep -c -E 'AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer' "$D/logs/splicer.log" || true)
check $((SAN == 0)) "no sanitizer report" "$SAN lines"
echo
echo "splicer log: $(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(debug|info|warn|error)$/) { c[$i]++; break } }
    END { for (k in c) printf "%s %d  ", k, c[k] }' "$D/logs/splicer.log")"
echo "counters at the end, summed over their labels:"
awk -F'\t' '{ f = $1; sub(/\{.*/, "", f); s[f] += $2 } END { for (f in s) printf "  %s %.0f\n", f, s[f] }' \
    "$D/c.prev" | sort
echo "splicer's warnings and errors, by kind:"
grep -E '^[^ ]+ (warn|error) ' "$D/logs/splicer.log" | cut -d' ' -f2- | sed -E 's/[0-9]+/N/g' |
    sort | uniq -c | sort -rn | head -8 || true
if [[ -s $D/unexplained ]]; then
    echo "first unexplained or corrupt outcomes ($D/unexplained):"
    head -20 "$D/unexplained"
fi
if [[ -s $D/counter_violations ]]; then
    echo "counter decreases (time, series, before, after):"
    head -10 "$D/counter_violations"
fi
echo
if ((FAILS == 0)); then
    echo "VERDICT: PASS"
    exit 0
fi
echo "VERDICT: FAIL ($FAILS checks)"
exit 1
