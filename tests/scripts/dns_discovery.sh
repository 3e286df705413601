#!/usr/bin/env bash
# dns_discovery.sh: servers given by name follow their DNS answers. splicer runs in a private
# mount namespace where a temporary file is bind-mounted over /etc/hosts, so the test changes
# what `backend.test` resolves to without touching the machine's resolver. A second part churns
# the answer and checks that the servers that stay keep their health check (no extra probes),
# their health verdict and their counters. Needs root and unshare(1); exits 77 (skipped)
# otherwise.
set -euo pipefail

bin=${SPLICER_BIN:?SPLICER_BIN must name the splicer binary}
backend=${SP_BACKEND_BIN:?SP_BACKEND_BIN must name the sp-backend binary}
if [[ $(id -u) -ne 0 ]] || ! command -v unshare >/dev/null; then
    echo "SKIP: needs root and unshare(1) for a private /etc/hosts"
    exit 77
fi
# The bind mount the test makes, tried once on a file over itself (private namespace).
if ! unshare -m sh -c 'mount --bind /etc/hosts /etc/hosts' 2>/dev/null; then
    echo "SKIP: no private mount namespace with bind mounts here (a container without CAP_SYS_ADMIN?)"
    exit 77
fi

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fail() {
    echo "FAIL: $*"
    echo "--- splicer log"; cat "$dir/splicer.log" || true
    echo "0 passed, 1 failed"
    exit 1
}

# Writes the hosts file in place (the bind mount follows the inode, not the name), in one
# write: a lookup between the truncation and the write finds no name and keeps the last
# answer, where one between two appends would see a partial answer, a DNS change of its own.
hosts() {
    local text=$'127.0.0.1 localhost\n'
    for a in "$@"; do text+="$a backend.test"$'\n'; done
    printf '%s' "$text" >"$dir/hosts"
}
# One connection: prints the name of the backend that answered, or "closed".
who() {
    local name=closed
    exec 7<>"/dev/tcp/127.0.0.1/$lport" || { echo refused; return; }
    read -r -t 2 name <&7 || name=closed
    exec 7<&-
    echo "$name"
}
# Waits until `who` answers only with the given names (space separated), up to 5 s.
settle() {
    local want=" $* " seen
    for _ in $(seq 1 50); do
        seen=" "
        for _ in 1 2 3 4; do seen+="$(who) "; done
        local ok=1
        for n in $seen; do [[ $want == *" $n "* ]] || ok=0; done
        for n in "$@"; do [[ $seen == *" $n "* ]] || ok=0; done
        ((ok)) && return 0
        sleep 0.1
    done
    fail "expected answers from {$*}, last saw:$seen"
}

free_port bport; free_port lport
"$backend" --mode name --name A "127.0.0.2:$bport" >/dev/null 2>&1 &
pids+=($!)
"$backend" --mode name --name B "127.0.0.3:$bport" >/dev/null 2>&1 &
pids+=($!)
wait_listen 127.0.0.2 "$bport"
wait_listen 127.0.0.3 "$bport"

hosts 127.0.0.2
cat >"$dir/splicer.yaml" <<YAML
listeners:
  web:
    listen: 127.0.0.1:$lport
    upstream: pool
upstreams:
  pool:
    retries: 0
    dns_refresh: 200ms
    servers:
      - address: backend.test:$bport
YAML
unshare -m sh -c "mount --bind '$dir/hosts' /etc/hosts && exec '$bin' -c '$dir/splicer.yaml'" \
    2>"$dir/splicer.log" &
pids+=($!)
spid=$!
wait_listen 127.0.0.1 "$lport"

settle A
echo "ok: backend.test -> 127.0.0.2 reaches A only"

hosts 127.0.0.2 127.0.0.3
settle A B
echo "ok: a second address joins the rotation"

# A connection opened to A stays up after A's address leaves the answer.
exec 8<>"/dev/tcp/127.0.0.1/$lport"
read -r -t 2 held <&8
[[ $held == A ]] || { held=""; exec 8<&-; exec 8<>"/dev/tcp/127.0.0.1/$lport"; read -r -t 2 held <&8; }
[[ $held == A ]] || fail "could not open a connection to A"
hosts 127.0.0.3
settle B
printf 'still here\n' >&8
read -r -t 2 echoed <&8 || fail "the connection to the removed server was cut"
[[ $echoed == "still here" ]] || fail "the held connection echoed '$echoed'"
exec 8<&-
echo "ok: a removed address takes no new connections, its open one finishes"

hosts # backend.test no longer resolves
sleep 0.6
settle B
grep -q "cannot resolve backend.test:$bport" "$dir/splicer.log" || fail "no log line for the failed lookup"
echo "ok: a failed lookup keeps the last good set"

# ---- DNS churn keeps the state of the servers that stay --------------------------------------
# A second splicer, with health checks every 2 s: A2 (127.0.0.2) is up, 127.0.0.4 has nothing
# listening and is down after its first check, 127.0.0.3 (B2) comes and goes six times.
kill "$spid"
wait "$spid" 2>/dev/null || true
free_port bport2; free_port lport2; free_port aport
"$backend" --mode name --name A2 --verbose "127.0.0.2:$bport2" >/dev/null 2>"$dir/a2.log" &
pids+=($!)
"$backend" --mode name --name B2 "127.0.0.3:$bport2" >/dev/null 2>&1 &
pids+=($!)
wait_listen 127.0.0.2 "$bport2"
wait_listen 127.0.0.3 "$bport2"

hosts 127.0.0.2 127.0.0.4
cat >"$dir/splicer2.yaml" <<YAML
admin:
  listen: 127.0.0.1:$aport
listeners:
  web:
    listen: 127.0.0.1:$lport2
    upstream: pool
upstreams:
  pool:
    retries: 0
    max_fails: 0
    dns_refresh: 100ms
    health_check:
      interval: 2s
      timeout: 500ms
      rise: 2
      fall: 1
    servers:
      - address: backend.test:$bport2
YAML
unshare -m sh -c "mount --bind '$dir/hosts' /etc/hosts && exec '$bin' -c '$dir/splicer2.yaml'" \
    2>"$dir/splicer.log" &
pids+=($!)
lport=$lport2
wait_listen 127.0.0.1 "$lport"

# The value of one sample of /metrics ("" when absent).
metric() {
    exec 9<>"/dev/tcp/127.0.0.1/$aport"
    printf 'GET /metrics HTTP/1.0\r\n\r\n' >&9
    local line value=""
    while read -r line; do [[ $line == "$1 "* ]] && value=${line#"$1 "}; done <&9
    exec 9<&-
    echo "${value%$'\r'}"
}
count() { grep -c -- "$1" "$2" || true; }
settle A2
dead="server 127.0.0.4:$bport2"
[[ $(count "$dead up -> down (first check" "$dir/splicer.log") == 1 ]] || fail "127.0.0.4 not marked down"
served="splicer_server_connections_total{upstream=\"pool\",server=\"127.0.0.2:$bport2\"}"
before=$(metric "$served")
[[ $before -ge 4 ]] || fail "A2 counted '$before' connections after settling"

probes0=$(count " conn " "$dir/a2.log")
start=$(date +%s%N)
for i in 1 2 3 4 5 6; do
    n=$(count "DNS change: generation" "$dir/splicer.log")
    if ((i % 2)); then hosts 127.0.0.2 127.0.0.3 127.0.0.4; else hosts 127.0.0.2 127.0.0.4; fi
    for _ in $(seq 1 60); do
        (($(count "DNS change: generation" "$dir/splicer.log") > n)) && break
        sleep 0.05
    done
    (($(count "DNS change: generation" "$dir/splicer.log") > n)) || fail "DNS change $i not applied"
done
sleep 0.1 # the last probe a restart would have sent, closed
probes=$(($(count " conn " "$dir/a2.log") - probes0))
took=$((($(date +%s%N) - start) / 1000000))
allowed=$((took / 2000 + 2))
((probes <= allowed)) || fail "A2 was probed $probes times in $took ms of DNS churn (its 2 s schedule allows $allowed)"
echo "ok: six DNS changes probed the unchanged A2 $probes times in $took ms (no restarted checks)"

[[ $(count "$dead up -> down" "$dir/splicer.log") == 1 ]] || fail "127.0.0.4 went down more than once"
[[ $(count "$dead down -> up" "$dir/splicer.log") == 0 ]] || fail "127.0.0.4 came up without rising"
[[ $(count "127.0.0.2:$bport2 up -> down" "$dir/splicer.log") == 0 ]] || fail "A2 flipped down"
settle A2
after=$(metric "$served")
((after >= before + 4)) || fail "A2's connection counter went from $before to $after"
echo "ok: the down server stayed down, A2's counter went on ($before -> $after)"
echo "1 passed, 0 failed"
