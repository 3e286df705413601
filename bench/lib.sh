# bench/lib.sh: what the bench's stand-alone scripts (profile.sh, ab.sh) share, sourced after
# they set LOG_TAG: logging, and processes started in the background recorded by pid in STARTED
# and stopped by pid on exit (TERM, then KILL after 5 s). Nothing is ever killed by name.
# shellcheck shell=bash

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

STARTED=()
stop() { # PID
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

wait_port() { # PORT: until something listens on it (10 s at most)
    local i
    for ((i = 0; i < 200; i++)); do
        ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.05
    done
    die "nothing listens on port $1"
}

port_free() { # PORT...: dies when one of them is taken
    local p
    for p in "$@"; do
        ! ss -Hltn "sport = :$p" | grep -q . || die "port $p is in use; set PORT_BASE"
    done
}
