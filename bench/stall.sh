# shellcheck shell=bash
# bench/stall.sh: sourced by bench/run.sh. Scenario stall: what stalled TLS ClientHellos cost
# an SNI-routing listener.
#
# splicer (`workers: 1`, pinned like the rest) listens with `routes:`, so it inspects each
# ClientHello before it picks an upstream (an sp-backend echo server). `benchtool hold --hello`
# opens STALL_CONNS (2,000) connections; each sends the first half of a real ClientHello
# (STALL_HELLO, openssl s_client's, from tests/fixtures/tls) and stops there. After one second to
# settle, splicer's CPU time (utime + stime, /proc/PID/stat) is taken over STALL_SECONDS (10 s):
# that is what the stalled hellos cost while they wait. Then every client sends the rest; splicer
# routes each one and the echo server sends the whole hello back, which the client checks byte
# for byte; splicer's CPU for that phase is shown per connection. tls_inspect_timeout is set far
# beyond the stall, so none is closed for it.
#
# SPLICER_BIN= runs another binary throughout; STALL_REF_BIN= adds one to this scenario only,
# as peer splicer-ref (STALL_REF_LABEL names it in the report), to compare two builds in a run.

STALL_REF_LABEL=${STALL_REF_LABEL:-$STALL_REF_BIN}

stall_config() { # FILE
    cat >"$1" <<EOF
workers: 1
log_level: warn
shutdown_timeout: 1s
listeners:
  tls:
    listen: 127.0.0.1:$PROXY_PORT
    upstream: other
    idle_timeout: 0s
    max_connections: 100000
    backlog: 4096
    tls_inspect_timeout: $((STALL_SECONDS * 3 + 60))s
    routes:
      - sni: [www.example.com, "*.example.com"]
        upstream: pool
upstreams:
  pool:
    servers:
      - address: 127.0.0.1:$ECHO_PORT
  other:
    servers:
      - address: 127.0.0.1:$ECHO_PORT
EOF
}

stall_one() { # PEER BINARY ROUND
    local peer=$1 bin=$2 r=$3 dir=$OUT/conf/stall-$1 p=() m0 m1 c0 c1 c2 a1 a2 held ok
    mkdir -p "$dir"
    stall_config "$dir/splicer.yaml"
    [[ $PIN == 1 ]] && read -ra p <<<"$(pin)"
    start_bg "stall-$peer" "${p[@]}" "$bin" -c "$dir/splicer.yaml"
    PROXY_PID=$LAST_PID
    wait_port "$PROXY_PORT" || die "$bin did not start, see $OUT/logs/stall-$peer.log"
    sleep 0.3
    m0=$("$TOOL" mem "$PROXY_PID" | awk '{ print $3 }')
    hold_start "$PROXY_PORT" 20000 --hello "$STALL_HELLO"
    hold_cmd "open $STALL_CONNS"
    a1=$HOLD_ANS
    sleep 1
    m1=$("$TOOL" mem "$PROXY_PID" | awk '{ print $3 }')
    c0=$(own_cpu)
    sleep "$STALL_SECONDS"
    c1=$(own_cpu)
    hold_cmd finish
    a2=$HOLD_ANS
    c2=$(own_cpu)
    hold_stop
    proxy_stop
    echo "$peer r$r: open $STALL_CONNS (half a hello each): $a1 | proxy fds $m0 -> $m1 |" \
        "cpu $c0 -> $c1 over $STALL_SECONDS s | finish: $a2 | cpu -> $c2" >>"$OUT/stall.txt"
    held=$(kv ok "$a1")
    ok=$(kv ok "$a2")
    [[ -n $held && $held -gt 0 ]] || {
        log "  $peer stall: no connection held ($a1)"
        return 0
    }
    record stall held "$peer" "$r" "$held"
    record stall proxy_fds "$peer" "$r" "$((m1 - m0))"
    record stall stall_pct "$peer" "$r" "$(calc "($c1 - $c0) * 100 / $STALL_SECONDS")"
    record stall stall_us "$peer" "$r" "$(calc "($c1 - $c0) * 1e6 / $STALL_SECONDS / $held")"
    record stall done "$peer" "$r" "${ok:-0}"
    record stall done_ms "$peer" "$r" "$(kv ms "$a2")"
    [[ -n $ok && $ok -gt 0 ]] && record stall done_us "$peer" "$r" "$(calc "($c2 - $c1) * 1e6 / $ok")"
    log "  $peer stall: $held stalled, $(calc "($c1 - $c0) * 100 / $STALL_SECONDS")% of a core" \
        "over $STALL_SECONDS s; finish: $a2"
}

scenario_stall() {
    [[ -r $STALL_HELLO ]] || {
        log "  stall: no ClientHello at $STALL_HELLO; skipped"
        return 0
    }
    need_backend echo
    local r peer peers=(splicer)
    [[ -n $STALL_REF_BIN ]] && peers+=(splicer-ref)
    for ((r = 0; r < ROUNDS; r++)); do
        for peer in $(rotate "$r" "${peers[@]}"); do
            if [[ $peer == splicer-ref ]]; then
                stall_one "$peer" "$STALL_REF_BIN" "$r"
            else
                stall_one "$peer" "$SPLICER" "$r"
            fi
        done
    done
}
