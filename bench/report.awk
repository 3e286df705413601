# report.awk: bench/out/RUN/raw.tsv (scenario measure peer round value) -> markdown tables.
# Medians with [min-max] per measure and peer; "added" machine CPU is, round by round, the peer's
# machine CPU minus the baseline's (direct on loopback, routed on veth); then, with -v ratios=1,
# ratios splicer/HAProxy on the medians. -v only="SCENARIO..." says which tables to print ("-":
# none, for the ratios alone); a scenario named veth-X is scenario X on the veth topology.
function fmt(m, v) {
    if (v == "") return "—"
    return sprintf(F[m], v)
}
function median(key,    n, i, j, t, a) {
    n = split(V[key], a, " ")
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    LO = a[1]; HI = a[n]; N = n
    if (n % 2) return a[(n + 1) / 2]
    return (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(s, m, p, r, v) {
    k = s SUBSEP m SUBSEP p
    V[k] = (k in V) ? V[k] " " v : v
    HAS[s, m] = 1; HASP[s, p] = 1
}
BEGIN {
    npeers = split("direct routed splicer splicer-copy splicer-auto splicer-limits splicer-w2 splicer-ref haproxy haproxy-b haproxy-splice haproxy-t2 nginx pen socat", PEER, " ")
    for (i = 1; i <= npeers; i++) KNOWN[PEER[i]] = 1
    nscen = split("bulk1 bulk4 short redis1 redis50 veth-bulk1 veth-bulk4 veth-short veth-redis1 veth-redis50 idle conc scaling balance stall", SCEN, " ")
    if (only == "") only = "bulk1 bulk4 short redis1 redis50 veth-bulk1 veth-bulk4 veth-short veth-redis1 veth-redis50 idle conc scaling balance stall"
    split(only, o, " "); for (i in o) SHOW[o[i]] = 1
    T["bulk1"] = "1. Bulk transfer, 1 stream (iperf3 -P 1)"
    T["bulk4"] = "1. Bulk transfer, 4 streams (iperf3 -P 4)"
    T["short"] = "2. Short connections (wrk, `Connection: close`, 64-byte file from an nginx backend)"
    T["redis1"] = "3. Request/response, 1 client (redis-benchmark PING_MBULK -c 1)"
    T["redis50"] = "3. Request/response, 50 clients (redis-benchmark PING_MBULK -c 50)"
    T["idle"] = "4. Idle connections held open (sp-backend echo; one 16-byte echo each, then idle)"
    T["conc"] = "5. Concurrent connections (each sends 16 bytes and gets the echo, then all close)"
    T["scaling"] = "7. Workers scaling, unpinned (wrk -t 2, `Connection: close`)"
    T["balance"] = "8. Accept balance over the workers' SO_REUSEPORT sockets (unpinned, wrk -t 2, `Connection: close`)"
    T["stall"] = "9. Stalled TLS ClientHellos on an SNI-routing listener (half a hello each, then nothing)"
    T["veth-bulk1"] = "V1. Container path (veth): bulk transfer, 1 stream (iperf3 -P 1)"
    T["veth-bulk4"] = "V1. Container path (veth): bulk transfer, 4 streams (iperf3 -P 4)"
    T["veth-short"] = "V2. Container path (veth): short connections (wrk, `Connection: close`)"
    T["veth-redis1"] = "V3. Container path (veth): request/response, 1 client (PING_MBULK -c 1)"
    T["veth-redis50"] = "V3. Container path (veth): request/response, 50 clients (PING_MBULK -c 50)"
    M["bulk1"] = M["bulk4"] = "gbps own_s_gib mach_s_gib add_s_gib"
    M["short"] = M["scaling"] = "cps own_us mach_us add_us errors"
    M["redis1"] = M["redis50"] = "rps avg_us p50_us p99_us own_us mach_us add_us"
    M["idle"] = "held rss0_kib rss_kib pss_kib fds pipes slab_kib"
    M["conc"] = "served refused timeout open_ms echo_ok fds_left"
    M["balance"] = "cps conns w0_pct w1_pct w2_pct w3_pct max_pct own_us errors"
    M["stall"] = "held proxy_fds stall_pct stall_us done done_ms done_us"
    for (i = 1; i <= nscen; i++) if (SCEN[i] ~ /^veth-/) M[SCEN[i]] = M[substr(SCEN[i], 6)]
    L["gbps"] = "Gbit/s"; F["gbps"] = "%.2f"
    L["own_s_gib"] = "proxy CPU-s/GiB"; F["own_s_gib"] = "%.3f"
    L["mach_s_gib"] = "machine CPU-s/GiB"; F["mach_s_gib"] = "%.3f"
    L["add_s_gib"] = "machine added CPU-s/GiB"; F["add_s_gib"] = "%.3f"
    L["cps"] = "conn/s"; F["cps"] = "%.0f"
    L["own_us"] = "proxy CPU µs/op"; F["own_us"] = "%.1f"
    L["mach_us"] = "machine CPU µs/op"; F["mach_us"] = "%.1f"
    L["add_us"] = "machine added µs/op"; F["add_us"] = "%.1f"
    L["errors"] = "errors"; F["errors"] = "%d"
    L["rps"] = "req/s"; F["rps"] = "%.0f"
    L["avg_us"] = "avg µs"; F["avg_us"] = "%.1f"
    L["p50_us"] = "p50 µs"; F["p50_us"] = "%.0f"
    L["p99_us"] = "p99 µs"; F["p99_us"] = "%.0f"
    L["held"] = "held"; F["held"] = "%d"
    L["rss0_kib"] = "proxy RSS KiB before"; F["rss0_kib"] = "%d"
    L["rss_kib"] = "RSS KiB/conn"; F["rss_kib"] = "%.2f"
    L["pss_kib"] = "PSS KiB/conn"; F["pss_kib"] = "%.2f"
    L["fds"] = "fds/conn"; F["fds"] = "%.2f"
    L["pipes"] = "pipes held"; F["pipes"] = "%d"
    L["slab_kib"] = "kernel slab KiB/conn (machine)"; F["slab_kib"] = "%.2f"
    L["served"] = "served"; F["served"] = "%d"
    L["refused"] = "refused"; F["refused"] = "%d"
    L["timeout"] = "timed out"; F["timeout"] = "%d"
    L["open_ms"] = "open+echo ms"; F["open_ms"] = "%d"
    L["echo_ok"] = "2nd echo ok"; F["echo_ok"] = "%d"
    L["fds_left"] = "proxy fds left after close"; F["fds_left"] = "%d"
    L["conns"] = "connections accepted"; F["conns"] = "%d"
    for (i = 0; i < 4; i++) { L["w" i "_pct"] = "worker " i " share %"; F["w" i "_pct"] = "%.1f" }
    L["max_pct"] = "largest share % (target ≤ 60)"; F["max_pct"] = "%.1f"
    L["proxy_fds"] = "proxy fds held"; F["proxy_fds"] = "%d"
    L["stall_pct"] = "proxy CPU while stalled, % of a core"; F["stall_pct"] = "%.1f"
    L["stall_us"] = "µs CPU per stalled hello per s"; F["stall_us"] = "%.2f"
    L["done"] = "completed and echoed"; F["done"] = "%d"
    L["done_ms"] = "completion ms"; F["done_ms"] = "%d"
    L["done_us"] = "proxy CPU µs per completion"; F["done_us"] = "%.1f"
    # measures where smaller is better, for the ratio note
    LOWER["own_s_gib"] = LOWER["mach_s_gib"] = LOWER["add_s_gib"] = LOWER["own_us"] = 1
    LOWER["mach_us"] = LOWER["add_us"] = LOWER["avg_us"] = LOWER["p50_us"] = LOWER["p99_us"] = 1
    LOWER["rss_kib"] = LOWER["pss_kib"] = LOWER["fds"] = LOWER["slab_kib"] = 1
}
{
    if (!($3 in KNOWN)) { KNOWN[$3] = 1; PEER[++npeers] = $3 }
    add($1, $2, $3, $4, $5)
    RV[$1, $2, $3, $4] = $5
    RND[$1, $2, $3] = RND[$1, $2, $3] " " $4
    if ($2 == "mach_s_gib" || $2 == "mach_us") rows[++nrows] = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4 SUBSEP $5
}
END {
    # added machine CPU, per round, minus the baseline's: direct on loopback, routed on veth
    # (every scenario is computed, so that the ratios can be printed in a separate call)
    for (i = 1; i <= nrows; i++) {
        split(rows[i], f, SUBSEP)
        base = f[1] ~ /^veth-/ ? "routed" : "direct"
        if (!((f[1], f[2], base, f[4]) in RV)) continue
        am = f[2] == "mach_s_gib" ? "add_s_gib" : "add_us"
        if (f[3] != base) add(f[1], am, f[3], f[4], f[5] - RV[f[1], f[2], base, f[4]])
    }
    for (si = 1; si <= nscen; si++) {
        s = SCEN[si]
        nm = split(M[s], ms, " ")
        cols = 0
        for (mi = 1; mi <= nm; mi++) if ((s, ms[mi]) in HAS) cm[++cols] = ms[mi]
        if (cols == 0) continue
        show = s in SHOW
        if (show) { print "## " T[s]; print "" }
        hdr = "| peer |"; sep = "| --- |"
        for (c = 1; c <= cols; c++) { hdr = hdr " " L[cm[c]] " |"; sep = sep " ---: |" }
        if (show) { print hdr; print sep }
        for (pi = 1; pi <= npeers; pi++) {
            p = PEER[pi]
            if (!((s, p) in HASP)) continue
            line = "| " p " |"
            for (c = 1; c <= cols; c++) {
                k = s SUBSEP cm[c] SUBSEP p
                if (!(k in V)) { line = line " — |"; continue }
                med = median(k)
                MED[s, cm[c], p] = med
                cell = fmt(cm[c], med)
                if (N > 1) cell = cell " [" fmt(cm[c], LO) "–" fmt(cm[c], HI) "]"
                line = line " " cell " |"
            }
            if (show) print line
        }
        if (show) print ""
    }
    # ratios to HAProxy, from the medians
    if (!ratios) exit
    nr = split("splicer/haproxy splicer-copy/haproxy splicer-auto/haproxy splicer/haproxy-splice splicer-w2/haproxy-t2 haproxy-b/haproxy", R, " ")
    rtab = ""
    for (si = 1; si <= nscen; si++) {
        s = SCEN[si]
        if (s == "conc" || s == "balance" || s == "stall") continue
        nm = split(M[s], ms, " ")
        for (mi = 1; mi <= nm; mi++) {
            m = ms[mi]
            if (m == "errors" || m == "held" || m == "pipes" || m == "rss0_kib") continue
            line = "| " s " | " L[m] (m in LOWER ? " ↓" : "") " |"
            any = 0
            for (ri = 1; ri <= nr; ri++) {
                split(R[ri], pq, "/")
                a = MED[s, m, pq[1]]; b = MED[s, m, pq[2]]
                if (a != "" && b != "" && b + 0 != 0) { line = line sprintf(" %.2f |", a / b); any = 1 }
                else line = line " — |"
            }
            if (any) rtab = rtab line "\n"
        }
    }
    if (rtab == "") exit # no peer pair measured: no table
    print "## Ratios to HAProxy (from the medians)"
    print ""
    print "Above 1 means splicer has more of the measure: better for throughput and rates, worse for CPU,"
    print "latency and memory (marked ↓ = lower is better). veth-X is scenario X on the veth topology."
    print "The last column is HAProxy against a second instance of itself (peer haproxy-b, as far from"
    print "haproxy in each round as splicer): 1.00 in theory, so its distance from 1 is this run's noise,"
    print "the least a difference between two peers must exceed to mean anything."
    print ""
    print "| scenario | measure | splicer / HAProxy | splicer copy / HAProxy | splicer auto / HAProxy | splicer / HAProxy splice | splicer w2 / HAProxy t2 | HAProxy b / HAProxy (noise) |"
    print "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    printf "%s\n", rtab
}
