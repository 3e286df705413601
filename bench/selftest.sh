#!/usr/bin/env bash
# bench/selftest.sh [SP_BACKEND]: a quick check of bench/benchtool.c, run by ctest as
# bench.benchtool (a few seconds). It builds benchtool with -Wall -Wextra -Werror under
# AddressSanitizer and UBSan, then drives `benchtool hold` the way bench/run.sh does (--sources 8
# --window 512) against an sp-backend echo server: open, echo, close, open more, echo again, and
# the --hello open/finish of the stall scenario; then cpu, pids and mem on the backend. Every
# answer must count each connection as ok, and the sanitizers must stay quiet.
#
# HOLD_CONNS (default 5000; 500 when the fd limit cannot be raised to fit) is the number of
# connections held at once: past 4,096 the holder's connection array grows while connections
# are in flight, which is where "open 5000" crashed in the 2026-12-05 run (a pointer kept into
# that array). Exits 77 (skipped) without a C compiler that links the sanitizers.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
backend=${1:-${SP_BACKEND_BIN:-$ROOT/build/sp-backend}}
hello=$ROOT/tests/fixtures/tls/openssl_sni.bin
[[ -x $backend ]] || {
    echo "FAIL: no sp-backend binary at $backend (give its path as the argument)"
    exit 1
}

dir=$(mktemp -d /tmp/bench-selftest.XXXXXX)
bpid=""
cleanup() {
    [[ -z $bpid ]] || kill "$bpid" 2>/dev/null || true
    [[ -z $bpid ]] || wait "$bpid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

cc=${CC:-cc}
command -v "$cc" >/dev/null || {
    echo "SKIP: no C compiler ($cc)"
    exit 77
}
if ! echo 'int main(void) { return 0; }' |
    "$cc" -fsanitize=address,undefined -x c -o "$dir/probe" - 2>/dev/null; then
    echo "SKIP: $cc cannot link -fsanitize=address,undefined here"
    exit 77
fi
"$cc" -std=c11 -Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer \
    -fsanitize=address,undefined -fno-sanitize-recover=all \
    -o "$dir/benchtool" "$BENCH/benchtool.c" || {
    echo "FAIL: bench/benchtool.c does not build with -Wall -Wextra -Werror"
    exit 1
}
export ASAN_OPTIONS=abort_on_error=0:exitcode=99 UBSAN_OPTIONS=print_stacktrace=1

# The holder's fds and the backend's each need room for HOLD_CONNS (plus a margin).
n=${HOLD_CONNS:-5000}
if (($(ulimit -n) < n + 200)) && ! ulimit -n $((n + 200)) 2>/dev/null; then
    echo "note: fd limit $(ulimit -n) (hard $(ulimit -Hn)): holding 500 connections, not $n;" \
        "the array still grows past its first size"
    n=500
fi

"$backend" --mode echo 127.0.0.1:0 2>"$dir/backend.log" &
bpid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/backend.log")
    [[ -n $port ]] && break
    sleep 0.05
done
[[ -n $port ]] || {
    echo "FAIL: sp-backend did not start"
    cat "$dir/backend.log"
    exit 1
}

failed=0
check() { # ANSWER_LINE WANT_OK WANT_HELD WHAT
    local ok held
    ok=$(sed -n 's/.*\bok=\([0-9]*\).*/\1/p' <<<"$1")
    held=$(sed -n 's/.*\bheld=\([0-9]*\).*/\1/p' <<<"$1")
    if [[ $ok == "$2" && $held == "$3" && $1 == *" refused=0 timeout=0 "* ]]; then
        echo "ok   $4: $1"
    else
        echo "FAIL $4: want ok=$2 refused=0 timeout=0 held=$3, got: ${1:-no answer}"
        failed=$((failed + 1))
    fi
}

# hold SESSION_NAME [OPTION...] < commands: runs one holder, answers in $dir/SESSION_NAME.out
hold() {
    local name=$1 rc=0
    shift
    timeout 120 "$dir/benchtool" hold "127.0.0.1:$port" --sources 8 --window 512 \
        --timeout-ms 20000 "$@" >"$dir/$name.out" 2>"$dir/$name.err" || rc=$?
    if ((rc != 0)); then
        echo "FAIL $name: benchtool hold exited with $rc"
        cat "$dir/$name.err"
        failed=$((failed + 1))
    fi
}

half=$((n / 2))
hold echo <<EOF
open $n
echo
close $half
open $half
echo
close $n
quit
EOF
mapfile -t a <"$dir/echo.out"
check "${a[0]:-}" "$n" "$n" "open $n"
check "${a[1]:-}" "$n" "$n" "echo on $n held"
check "${a[2]:-}" "$half" $((n - half)) "close $half"
check "${a[3]:-}" "$half" "$n" "open $half more"
check "${a[4]:-}" "$n" "$n" "echo again"
check "${a[5]:-}" "$n" 0 "close all"

hs=$((n < 1000 ? n : 1000))
hold hello --hello "$hello" <<EOF
open $hs
finish
quit
EOF
mapfile -t a <"$dir/hello.out"
check "${a[0]:-}" "$hs" "$hs" "--hello: open $hs stalled halfway"
check "${a[1]:-}" "$hs" "$hs" "--hello: finish, whole hello echoed"

for what in cpu pids mem; do
    if out=$("$dir/benchtool" "$what" "$bpid" 2>&1) && [[ -n $out ]]; then
        echo "ok   $what $bpid: $out"
    else
        echo "FAIL $what $bpid: ${out:-no output}"
        failed=$((failed + 1))
    fi
done

if ((failed > 0)); then
    echo "$failed check(s) failed"
    exit 1
fi
echo "all checks passed"
