# shellcheck shell=bash
# bench/balance.sh: sourced by bench/run.sh. Scenario balance: how the kernel spreads new
# connections over splicer's workers' SO_REUSEPORT listening sockets.
#
# splicer runs with `workers: BALANCE_WORKERS` (2) and an admin endpoint, unpinned, in front of
# the unpinned 2-worker nginx backend; wrk (unpinned, 2 threads, BALANCE_CONNS connections,
# `Connection: close`) keeps a steady stream of short connections coming for DURATION seconds.
# splicer_worker_connections_total{worker} is read from /metrics before and after; each
# worker's share of the connections accepted in between is recorded. Target: no worker above 60%.

# worker_counts: "c0 c1 ..." from splicer_worker_connections_total, one per worker in worker
# order; nothing when the endpoint or the metric is missing.
worker_counts() {
    local body
    body=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' _ "$ADMIN_PORT" \
        2>/dev/null) || return 0
    awk '/^splicer_worker_connections_total\{/ {
            if (!match($0, /worker="[0-9]+"/)) next
            w = substr($0, RSTART + 8, RLENGTH - 9) + 0; v[w] = $NF; if (w + 1 > n) n = w + 1 }
        END { for (i = 0; i < n; i++) printf "%s%d", (i ? " " : ""), v[i]; if (n) print "" }' \
        <<<"$body"
}

scenario_balance() {
    need_backend web2
    local r peer=splicer-w$BALANCE_WORKERS before after
    SPLICER_ADMIN=1
    for ((r = 0; r < ROUNDS; r++)); do
        proxy_start "$peer" "$WEB2_PORT" 0
        wait_port "$ADMIN_PORT" || log "  balance: no admin endpoint on 127.0.0.1:$ADMIN_PORT"
        before=$(worker_counts)
        short_one balance "$peer" "$r" 2 "$BALANCE_CONNS"
        after=$(worker_counts)
        proxy_stop
        if [[ -z $before || -z $after ]]; then
            log "  balance: no splicer_worker_connections_total in /metrics (binary $SPLICER); skipped"
            break
        fi
        echo "round $r: worker_connections_total before: $before; after: $after" >>"$OUT/balance.txt"
        awk -v b="$before" -v a="$after" -v p="$peer" -v r="$r" 'BEGIN {
            n = split(b, x, " "); split(a, y, " ")
            for (i = 1; i <= n; i++) { d[i] = y[i] - x[i]; t += d[i] }
            if (t <= 0) exit
            printf "balance\tconns\t%s\t%s\t%d\n", p, r, t
            for (i = 1; i <= n; i++) {
                s = 100 * d[i] / t; if (s > m) m = s
                printf "balance\tw%d_pct\t%s\t%s\t%.2f\n", i - 1, p, r, s
            }
            printf "balance\tmax_pct\t%s\t%s\t%.2f\n", p, r, m }' >>"$RAW"
        log "  $peer balance: connections per worker $(awk -v b="$before" -v a="$after" 'BEGIN {
            n = split(b, x, " "); split(a, y, " "); for (i = 1; i <= n; i++) printf "%s%d",
            (i > 1 ? " / " : ""), y[i] - x[i] }')"
    done
    SPLICER_ADMIN=""
}
