#!/usr/bin/env bash
# demo.sh: build splicer, start three named backends and the proxy (configs/demo.yaml), then open
# a connection every half second and print which backend answered, to show round-robin and
# failover, also on the status page at http://127.0.0.1:9090/. Ctrl-C stops everything it started.
# DEMO_CONNECTIONS=N stops after N connections.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RUN_DIR=${DEMO_RUN_DIR:-/tmp/splicer-demo}
DEMO_CONNECTIONS=${DEMO_CONNECTIONS:-0}
LISTEN_PORT=8080
ADMIN_PORT=9090
BACKEND_PORTS=(9001 9002 9003)
SPLICER=$ROOT/build/splicer
BACKEND=$ROOT/build/sp-backend

if ! [[ "$DEMO_CONNECTIONS" =~ ^[0-9]+$ ]]; then
    echo "demo.sh: DEMO_CONNECTIONS must be a number (0 = run until Ctrl-C)" >&2
    exit 2
fi

say() { printf '%s\n' "$*"; }
die() {
    printf 'demo.sh: %s\n' "$*" >&2
    exit 1
}

# True when something listens on TCP port $1 (any address). Reads /proc, so no probe
# connection is made: the rotation the demo prints starts clean.
port_listening() {
    local hex files=()
    hex=$(printf ':%04X' "$1")
    for f in /proc/net/tcp /proc/net/tcp6; do
        [[ -r $f ]] && files+=("$f")
    done
    awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
        END { exit !found }' "${files[@]}"
}

# Polls until port $1 listens, for at most 5 s, while process $2 stays alive.
wait_listening() {
    local i
    for ((i = 0; i < 50; i++)); do
        port_listening "$1" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Sends SIGTERM to pid $1 (if its command line still names $2), waits up to 5 s, then SIGKILL.
stop_pid() {
    local pid=$1 name=$2 i
    [[ -n $pid ]] || return 0
    if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            # A child of ours stays a zombie until waited for; wait also ends the loop.
            [[ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" == Z ]] && break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleaned=0
cleanup() {
    ((cleaned)) && return 0
    cleaned=1
    trap - INT TERM
    say ""
    say "stopping splicer and the backends..."
    stop_pid "$(cat "$RUN_DIR/splicer.pid" 2>/dev/null || true)" splicer
    local n
    # The pid files, not $!: a backend restarted by hand from another terminal is ours too.
    for n in 1 2 3; do
        stop_pid "$(cat "$RUN_DIR/backend-$n.pid" 2>/dev/null || true)" sp-backend
        rm -f "$RUN_DIR/backend-$n.pid"
    done
    rm -f "$RUN_DIR/splicer.pid"
    say "stopped. Logs are in $RUN_DIR/."
}

# shellcheck disable=SC2317 # reached through the trap
on_signal() {
    cleanup
    summary
    exit 0
}

declare -A seen=()
summary() {
    local k line=""
    for k in "${!seen[@]}"; do
        line+=" $k=${seen[$k]}"
    done
    [[ -n $line ]] && say "answers:$(tr ' ' '\n' <<<"$line" | sort | tr '\n' ' ')"
    return 0
}

# --- build -------------------------------------------------------------------------------
scripts/deps.sh
mkdir -p "$RUN_DIR"
for f in "$RUN_DIR"/*.pid; do
    [[ -e $f ]] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        die "another demo seems to be running ($f: pid $pid); stop it first"
    fi
    rm -f "$f"
done
for port in "$LISTEN_PORT" "$ADMIN_PORT" "${BACKEND_PORTS[@]}"; do
    if port_listening "$port"; then
        die "port $port is already in use; the demo needs 8080, 9090 and 9001-9003"
    fi
done

say "building splicer (Release, log: $RUN_DIR/build.log)..."
if ! { cmake -S . -B build && cmake --build build -j2 --target splicer sp-backend; } \
    >"$RUN_DIR/build.log" 2>&1; then
    tail -n 30 "$RUN_DIR/build.log" >&2
    die "build failed; full log in $RUN_DIR/build.log"
fi

# --- start -------------------------------------------------------------------------------
trap on_signal INT TERM
trap cleanup EXIT

for n in 1 2 3; do
    port=${BACKEND_PORTS[n - 1]}
    "$BACKEND" --mode name --name "backend-$n" "127.0.0.1:$port" \
        2>>"$RUN_DIR/backend-$n.log" &
    echo $! >"$RUN_DIR/backend-$n.pid"
done
for n in 1 2 3; do
    wait_listening "${BACKEND_PORTS[n - 1]}" "$(cat "$RUN_DIR/backend-$n.pid")" ||
        die "backend-$n did not start; see $RUN_DIR/backend-$n.log"
done

"$SPLICER" -c configs/demo.yaml 2>>"$RUN_DIR/splicer.log" &
echo $! >"$RUN_DIR/splicer.pid"
if ! wait_listening "$LISTEN_PORT" "$(cat "$RUN_DIR/splicer.pid")"; then
    tail -n 20 "$RUN_DIR/splicer.log" >&2
    die "splicer did not start listening on 127.0.0.1:$LISTEN_PORT; see $RUN_DIR/splicer.log"
fi

cat <<EOF

splicer is listening on 127.0.0.1:$LISTEN_PORT and balancing round-robin over
backend-1..3 on 127.0.0.1:9001-9003 (configs/demo.yaml). Each line below is one new
connection and the name of the backend that answered it.

Status page: http://127.0.0.1:$ADMIN_PORT/  (open it in a browser; it refreshes every 2 s)

Try a failover from another terminal:
  kill \$(cat $RUN_DIR/backend-2.pid)
backend-2 drops out of the rotation (connects to it are retried on the others, and the
health check marks it down: the status page shows it "down", in red). Bring it back (it
rejoins after two good health checks):
  $BACKEND --mode name --name backend-2 127.0.0.1:9002 2>>$RUN_DIR/backend-2.log & echo \$! >$RUN_DIR/backend-2.pid
Proxy log: tail -f $RUN_DIR/splicer.log        Stop: Ctrl-C

EOF

# --- loop --------------------------------------------------------------------------------
# Prints the first line the proxy relays back, or fails. A subshell, so that bash's
# "connection refused" message and the socket's fd both end with it.
probe() {
    (
        exec 2>/dev/null
        exec 3<>"/dev/tcp/127.0.0.1/$LISTEN_PORT" || exit 1
        IFS= read -r -t 2 line <&3 || exit 1
        printf '%s' "$line"
    )
}

i=0
while ((DEMO_CONNECTIONS == 0 || i < DEMO_CONNECTIONS)); do
    i=$((i + 1))
    if answer=$(probe) && [[ -n $answer ]]; then
        say "connection $i -> $answer"
        seen[$answer]=$((${seen[$answer]:-0} + 1))
    else
        say "connection $i -> failed (no answer within 2 s)"
        seen[failed]=$((${seen[failed]:-0} + 1))
    fi
    ((DEMO_CONNECTIONS != 0 && i >= DEMO_CONNECTIONS)) && break
    sleep 0.5
done

cleanup
summary
exit 0
