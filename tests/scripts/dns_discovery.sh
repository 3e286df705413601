#!/usr/bin/env bash
# dns_discovery.sh: servers given by name follow their DNS answers. splicer runs in a private
# mount namespace where a temporary file is bind-mounted over /etc/hosts, so the test changes
# what `backend.test` resolves to without touching the machine's resolver. Needs root and
# unshare(1); exits 77 (skipped) otherwise.
set -euo pipefail

bin=${SPLICER_BIN:?SPLICER_BIN must name the splicer binary}
backend=${SP_BACKEND_BIN:?SP_BACKEND_BIN must name the sp-backend binary}
if [[ $(id -u) -ne 0 ]] || ! command -v unshare >/dev/null; then
    echo "needs root and unshare for a private /etc/hosts: skipped"
    exit 77
fi
if ! unshare -m true 2>/dev/null; then
    echo "mount namespaces are not available here: skipped"
    exit 77
fi

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fail() {
    echo "FAIL: $*"
    echo "--- splicer log"; cat "$dir/splicer.log" || true
    echo "0 passed, 1 failed"
    exit 1
}

# Writes the hosts file in place: the bind mount follows the inode, not the name.
hosts() { printf '127.0.0.1 localhost\n' >"$dir/hosts"; for a in "$@"; do printf '%s backend.test\n' "$a" >>"$dir/hosts"; done; }
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
echo "1 passed, 0 failed"
