#!/usr/bin/env bash
# prometheus_scrape.sh: a real Prometheus scrapes splicer's /metrics, and its query API then
# shows the target up and splicer's own series (the build info and the bytes it relayed).
# Exits 77 (skipped) when the prometheus binary is not installed.
set -euo pipefail

bin=${SPLICER_BIN:?SPLICER_BIN must name the splicer binary}
backend=${SP_BACKEND_BIN:?SP_BACKEND_BIN must name the sp-backend binary}
if ! command -v prometheus >/dev/null 2>&1; then
    echo "SKIP: prometheus is not installed (Debian package: prometheus)"
    exit 77
fi

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# GET http://127.0.0.1:PORT/PATH with bash's /dev/tcp (no curl on a bare box); body on stdout.
http_get() {
    local port=$1 path=$2
    exec 5<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&5
    sed '1,/^\r$/d' <&5
    exec 5<&-
}

free_port bport; free_port lport; free_port aport
"$backend" --mode echo "127.0.0.1:$bport" >"$dir/backend.log" 2>&1 &
pids+=($!)
wait_listen 127.0.0.1 "$bport"
cat >"$dir/splicer.yaml" <<YAML
listeners:
  web:
    listen: 127.0.0.1:$lport
    upstream: pool
upstreams:
  pool:
    servers:
      - address: 127.0.0.1:$bport
admin:
  listen: 127.0.0.1:$aport
YAML
"$bin" -c "$dir/splicer.yaml" 2>"$dir/splicer.log" &
pids+=($!)
wait_listen 127.0.0.1 "$lport"
wait_listen 127.0.0.1 "$aport"

# Relay a known payload so splicer_bytes_total has something to show.
exec 6<>"/dev/tcp/127.0.0.1/$lport"
printf 'hello through splicer\n' >&6
read -r -t 5 echoed <&6
exec 6<&-
[[ $echoed == "hello through splicer" ]] || { echo "echo failed: '$echoed'"; exit 1; }

free_port pport
cat >"$dir/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: splicer
    static_configs:
      - targets: ['127.0.0.1:$aport']
YAML
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$pport" >"$dir/prometheus.log" 2>&1 &
pids+=($!)
wait_listen 127.0.0.1 "$pport"

query() { http_get "$pport" "/api/v1/query?query=$1"; }
for _ in $(seq 1 60); do
    up=$(query 'up%7Bjob%3D%22splicer%22%7D' || true)
    if [[ $up == *'"value":['*',"1"]'* ]]; then
        break
    fi
    sleep 0.5
done
echo "up: $up"
[[ $up == *',"1"]'* ]] || { echo "Prometheus never saw the target up"; tail -5 "$dir/prometheus.log"; exit 1; }

info=$(query 'splicer_build_info')
echo "build info: $info"
[[ $info == *'"version":"'* ]] || { echo "no splicer_build_info series"; exit 1; }

bytes=$(query 'splicer_bytes_total%7Bdirection%3D%22upstream%22%7D')
echo "bytes upstream: $bytes"
[[ $bytes == *',"22"]'* ]] || { echo "splicer_bytes_total{direction=upstream} is not 22"; exit 1; }
echo "1 passed, 0 failed"
