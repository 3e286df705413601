#!/usr/bin/env bash
# status_screenshot.sh: remakes docs/status_page.png, the status page as the README shows it.
# Runs scripts/demo.sh (splicer on 127.0.0.1:8080, its status page on 127.0.0.1:9090), opens the
# page in headless Chromium through chromedriver, lets the sparklines fill for a minute, drains
# backend-3 through the admin endpoint, kills backend-2, and takes the screenshot once the page
# shows it down. Chromium's own --screenshot
# runs the page on virtual time, where every rate reads 0; a real browser session shows the
# rates as they are. Needs chromium and chromium-driver (scripts/deps.sh chromium
# chromium-driver) and curl. Usage: scripts/status_screenshot.sh [OUT.png]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-docs/status_page.png}
RUN_DIR=${DEMO_RUN_DIR:-/tmp/splicer-demo}
DRIVER_PORT=${DRIVER_PORT:-9515}
PROFILE=$(mktemp -d /tmp/splicer-screenshot.XXXXXX)

die() {
    printf 'status_screenshot.sh: %s\n' "$*" >&2
    exit 1
}
for tool in chromium chromedriver curl base64; do
    command -v "$tool" >/dev/null || die "$tool is not installed (scripts/deps.sh chromium chromium-driver curl)"
done

demo_pid="" driver_pid="" session=""
cleanup() {
    set +e
    if [[ -n $session ]]; then
        curl -s -X DELETE "http://127.0.0.1:$DRIVER_PORT/session/$session" >/dev/null
    fi
    if [[ -n $driver_pid ]]; then
        kill "$driver_pid" 2>/dev/null
        wait "$driver_pid" 2>/dev/null
    fi
    if [[ -n $demo_pid ]]; then # demo.sh stops its splicer and backends on SIGTERM
        kill -TERM "$demo_pid" 2>/dev/null
        wait "$demo_pid" 2>/dev/null
    fi
    rm -rf "$PROFILE"
}
trap cleanup EXIT

# wd METHOD PATH [JSON]: one WebDriver command; prints the reply.
wd() {
    local body=${3:-'{}'}
    curl -sf -X "$1" -H 'Content-Type: application/json' --data "$body" \
        "http://127.0.0.1:$DRIVER_PORT$2"
}

DEMO_CONNECTIONS=400 scripts/demo.sh >"$PROFILE/demo.log" 2>&1 &
demo_pid=$!
for ((i = 0; i < 600; i++)); do
    curl -sf http://127.0.0.1:9090/healthz >/dev/null 2>&1 && break
    kill -0 "$demo_pid" 2>/dev/null || die "demo.sh stopped: $(tail -n 5 "$PROFILE/demo.log")"
    sleep 0.1
done

chromedriver --port="$DRIVER_PORT" >"$PROFILE/chromedriver.log" 2>&1 &
driver_pid=$!
for ((i = 0; i < 100; i++)); do
    curl -sf "http://127.0.0.1:$DRIVER_PORT/status" >/dev/null 2>&1 && break
    sleep 0.1
done

caps='{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{"args":["--headless=new",
"--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--hide-scrollbars",
"--window-size=1440,540","--user-data-dir='$PROFILE/chromium'"]}}}}'
session=$(wd POST /session "$caps" | sed -E 's/.*"sessionId":"([^"]+)".*/\1/')
[[ -n $session ]] || die "chromedriver gave no session (see $PROFILE/chromedriver.log)"
wd POST "/session/$session/url" '{"url":"http://127.0.0.1:9090/"}' >/dev/null

sleep "${SCREENSHOT_FILL_S:-60}" # the sparklines fill
curl -sf -X POST -H 'X-Splicer-Admin: 1' \
    http://127.0.0.1:9090/upstreams/demo_pool/servers/127.0.0.1:9003/drain >/dev/null
kill "$(cat "$RUN_DIR/backend-2.pid")"
for ((i = 0; i < 60; i++)); do
    wd POST "/session/$session/execute/sync" \
        '{"script":"return document.body.innerText","args":[]}' |
        grep -q '127.0.0.1:9002\\tdown' && break
    sleep 0.5
done
sleep 4

mkdir -p "$(dirname "$OUT")"
wd GET "/session/$session/screenshot" | sed -E 's/.*"value":"([^"]+)".*/\1/' | base64 -d >"$OUT"
echo "wrote $OUT"
