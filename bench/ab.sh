#!/usr/bin/env bash
# bench/ab.sh LABEL=BINARY...: splicer builds against each other on bulk transfer, interleaved
# round by round so that a noisy machine weighs on every build alike. Made to answer "is this
# change no worse than the code before it?" on the machine at hand, where run.sh's ratios to
# HAProxy move between machines and runs.
#
#   git worktree add /tmp/before d10ee3a && cmake -S /tmp/before -B /tmp/before/build \
#       -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/before/build --target splicer
#   ROUNDS=7 bench/ab.sh before=/tmp/before/build/splicer now=build/splicer
#
# Each round runs `direct` (no proxy) and then every build in turn (the order rotated by round):
# splicer with `workers: 1`, `relay: RELAY` (splice), `pipe_size: PIPE_SIZE` (1m), iperf3 -P
# STREAMS (1) for DURATION (5) seconds through it to an iperf3 -s, every process on CPU PIN_CPU
# (0). Per GiB received: splicer's own CPU (utime + stime from /proc/PID/stat) and the pinned
# CPU's busy time (/proc/stat: user, nice, system, irq, softirq). Prints the medians with
# [min-max]; the rounds go to bench/out/ab-RUN_ID/rounds.txt. Stops what it started, by pid.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
STREAMS=${STREAMS:-1}
PIN_CPU=${PIN_CPU:-0}
RELAY=${RELAY:-splice}
PIPE_SIZE=${PIPE_SIZE:-1m}
PORT_BASE=${PORT_BASE:-27150}
RUN_ID=${RUN_ID:-$(date +%Y%m%d-%H%M%S)}
OUT=$BENCH/out/ab-$RUN_ID
PROXY_PORT=$PORT_BASE
SERVER_PORT=$((PORT_BASE + 1))
PIN=(taskset -c "$PIN_CPU")

LOG_TAG=ab
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
(($# > 0)) || die "usage: bench/ab.sh LABEL=BINARY... (see the head of this file)"
for t in iperf3 taskset; do command -v "$t" >/dev/null || die "$t is missing"; done
LABELS=()
declare -A BIN
for arg in "$@"; do
    [[ $arg == ?*=?* ]] || die "not LABEL=BINARY: $arg"
    label=${arg%%=*}
    [[ $label != direct ]] || die "the label direct is taken by the run without a proxy"
    [[ -x ${arg#*=} ]] || die "not an executable: ${arg#*=}"
    LABELS+=("$label")
    BIN[$label]=${arg#*=}
done
port_free "$PROXY_PORT" "$SERVER_PORT"
mkdir -p "$OUT"


"${PIN[@]}" iperf3 -s -p "$SERVER_PORT" -B 127.0.0.1 >"$OUT/iperf3-server.log" 2>&1 &
STARTED+=($!)
wait_port "$SERVER_PORT"

cat >"$OUT/splicer.yaml" <<EOF
workers: 1
relay: $RELAY
pipe_size: $PIPE_SIZE
log_level: warn
listeners:
  ab:
    listen: 127.0.0.1:$PROXY_PORT
    upstream: server
    idle_timeout: 0s
upstreams:
  server:
    servers:
      - address: 127.0.0.1:$SERVER_PORT
EOF

busy() { awk -v l="cpu$PIN_CPU" '$1 == l { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
own() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
gib() { # iperf3's receiver total (the SUM line with several streams), in GiB
    awk '/receiver/ { u["KBytes"] = 2 ^ -20; u["MBytes"] = 2 ^ -10; u["GBytes"] = 1
            for (i = 1; i < NF; i++) if ($(i + 1) in u) v = $i * u[$(i + 1)] }
        /SUM.*receiver/ { s = v } END { print (s != "" ? s : v) }' "$1"
}

hz=$(getconf CLK_TCK)
ROUNDS_FILE=$OUT/rounds.txt
: >"$ROUNDS_FILE"
one() { # LABEL ROUND
    local label=$1 r=$2 pid="" port=$SERVER_PORT b0 b1 o0=0 o1=0 g f=$OUT/$1-r$2.txt
    if [[ $label != direct ]]; then
        "${PIN[@]}" "${BIN[$label]}" -c "$OUT/splicer.yaml" >"$OUT/$label-r$r.log" 2>&1 &
        pid=$!
        STARTED+=("$pid")
        wait_port "$PROXY_PORT"
        port=$PROXY_PORT
        o0=$(own "$pid")
    fi
    b0=$(busy)
    timeout $((DURATION + 20)) "${PIN[@]}" iperf3 -c 127.0.0.1 -p "$port" -t "$DURATION" \
        -P "$STREAMS" -f m >"$f" 2>&1 || die "iperf3 failed ($label, round $r), see $f"
    b1=$(busy)
    [[ -n $pid ]] && o1=$(own "$pid")
    g=$(gib "$f")
    [[ -n $g ]] || die "no iperf3 result ($label, round $r), see $f"
    if [[ -n $pid ]]; then
        stop "$pid"
        unset 'STARTED[${#STARTED[@]}-1]'
        local i
        for ((i = 0; i < 100; i++)); do
            ss -Hltn "sport = :$PROXY_PORT" | grep -q . || break
            sleep 0.05
        done
    fi
    awk -v l="$label" -v r="$r" -v g="$g" -v b=$((b1 - b0)) -v o=$((o1 - o0)) -v hz="$hz" 'BEGIN {
        printf "%s %d %.3f %.1f %.1f\n", l, r, g, b * 1000 / hz / g, o * 1000 / hz / g }' \
        >>"$ROUNDS_FILE"
    log "  round $r $label: $g GiB"
}

log "$ROUNDS rounds of ${DURATION}s, $STREAMS stream(s), relay $RELAY, pipe_size $PIPE_SIZE; out $OUT"
for ((r = 0; r < ROUNDS; r++)); do
    order=(direct "${LABELS[@]}")
    n=${#order[@]}
    for ((i = 0; i < n; i++)); do one "${order[(i + r) % n]}" "$r"; done
done

# label round GiB machine-ms/GiB own-ms/GiB -> medians [min-max] per label, in the given order
awk -v order="direct ${LABELS[*]}" '
    function sorted(s, a,    k, i, j, t) {
        k = split(s, a, " ")
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return k
    }
    function stat(s,    a, k) {
        k = sorted(s, a)
        return sprintf("%.1f [%.1f-%.1f]", k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2, a[1], a[k])
    }
    { g[$1] = g[$1] " " $3; m[$1] = m[$1] " " $4; o[$1] = o[$1] " " $5 }
    END {
        printf "%-12s %-22s %-26s %s\n", "", "GiB per run", "machine CPU ms/GiB", "own CPU ms/GiB"
        n = split(order, L, " ")
        for (i = 1; i <= n; i++)
            printf "%-12s %-22s %-26s %s\n", L[i], stat(g[L[i]]), stat(m[L[i]]), L[i] == "direct" ? "-" : stat(o[L[i]])
    }' "$ROUNDS_FILE" | tee "$OUT/summary.txt"
