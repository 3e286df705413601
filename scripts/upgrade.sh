#!/bin/sh
# upgrade.sh: replaces the running splicer with a new binary (or the same binary with a changed
# config, workers included) without refusing a connection: starts the new one with --takeover
# on the control socket of the running one, and waits until it has taken over or failed. The
# old process drains its connections and exits 0 on its own. See README, "Upgrading the binary".
#
# usage: scripts/upgrade.sh -c CONFIG [-b BINARY] [-s CONTROL_SOCKET] [-l LOGFILE] [-w SECONDS]
#   -c CONFIG          the new process's configuration (it sets control_socket)
#   -b BINARY          the new binary (default: splicer from PATH)
#   -s CONTROL_SOCKET  the running process's control socket (default: control_socket of CONFIG)
#   -l LOGFILE         where the new process's stderr is appended (default: CONFIG's directory,
#                      splicer.log)
#   -w SECONDS         how long to wait for the takeover (default 60)
# Exit status: 0 when the new process serves (its pid is printed), 1 when it failed (the old
# process goes on serving; the new one's log says why), 2 on a usage error.
set -eu

conf= bin=splicer sock= log= wait_s=60
while getopts c:b:s:l:w:h opt; do
    case $opt in
    c) conf=$OPTARG ;;
    b) bin=$OPTARG ;;
    s) sock=$OPTARG ;;
    l) log=$OPTARG ;;
    w) wait_s=$OPTARG ;;
    *) sed -n '7,13s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
    esac
done
[ -n "$conf" ] || { echo "upgrade.sh: -c CONFIG is required" >&2; exit 2; }
[ -n "$log" ] || log=$(dirname "$conf")/splicer.log
if [ -z "$sock" ]; then
    # The top-level key, without quotes or a trailing comment.
    sock=$(sed -n 's/^control_socket:[[:space:]]*["'\'']\{0,1\}\([^"'\''#[:space:]]*\).*/\1/p' "$conf" | tail -n 1)
fi
[ -n "$sock" ] || { echo "upgrade.sh: $conf sets no control_socket; give -s PATH" >&2; exit 2; }
[ -S "$sock" ] || { echo "upgrade.sh: no control socket at $sock (is splicer running with it?)" >&2; exit 1; }

"$bin" -t -c "$conf" || { echo "upgrade.sh: $bin rejects $conf; nothing changed" >&2; exit 1; }

before=$(stat -c %d:%i "$sock")
"$bin" -c "$conf" --takeover "$sock" </dev/null >>"$log" 2>&1 &
pid=$!

# Success: the new process has moved its own socket over the path (after the old one let go).
# Failure: it exits.
i=0
while [ "$i" -lt $((wait_s * 10)) ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
        rc=0
        wait "$pid" || rc=$?
        echo "upgrade.sh: the new process failed (exit $rc); the old one goes on serving. Its log ($log):" >&2
        tail -n 5 "$log" >&2
        exit 1
    fi
    now=$(stat -c %d:%i "$sock" 2>/dev/null || echo gone)
    if [ "$now" != "$before" ] && [ "$now" != gone ]; then
        echo "upgrade.sh: splicer pid $pid serves now; the old process drains and exits (log: $log)"
        exit 0
    fi
    sleep 0.1
    i=$((i + 1))
done
echo "upgrade.sh: no takeover within ${wait_s}s; pid $pid is still running, see $log" >&2
exit 1
