# syscalls.awk: bench/out/RUN/syscalls-KIND.tsv (peer syscall count units) -> a markdown table of
# syscalls per unit (-v unit=GiB|conn, -v f=printf format): total (raw_syscalls, "ALL"), splice,
# the read/write family, epoll_wait, and the top four by count.
function isrw(n) { return n ~ /^(read|write|readv|writev|recvfrom|sendto|recvmsg|sendmsg|recvmmsg|sendmmsg)$/ }
{
    if (!($1 in G)) order[++np] = $1
    G[$1] = $4
    if ($2 == "ALL") { ALL[$1] = $3; next }
    T[$1] += $3; C[$1, $2] += $3; names[$1] = names[$1] " " $2
    if ($2 == "splice") S[$1] += $3
    if (isrw($2)) RW[$1] += $3
    if ($2 ~ /^epoll_(wait|pwait|pwait2)$/) E[$1] += $3
}
END {
    u = unit == "" ? "GiB" : unit
    if (f == "") f = "%.0f"
    printf "| peer | %s | syscalls/%s | splice/%s | rw/%s | epoll_wait/%s | top syscalls (per %s) |\n", u == "conn" ? "connections" : u, u, u, u, u, u
    print "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
    for (i = 1; i <= np; i++) {
        p = order[i]; g = G[p] + 0
        if (g <= 0) { print "| " p " | 0 | — | — | — | — | nothing moved |"; continue }
        if (!(p in T)) { # the total alone: no breakdown was counted, so none is shown as 0
            printf "| %s | %s | " f " | — | — | — | no per-syscall counts |\n", p, (u == "GiB" ? sprintf("%.2f", g) : g), ALL[p] / g
            continue
        }
        n = split(names[p], nn, " ")
        top = ""
        for (k = 1; k <= 4; k++) {
            best = ""; bv = -1
            for (j = 1; j <= n; j++) if (!(nn[j] in used) && C[p, nn[j]] > bv) { best = nn[j]; bv = C[p, nn[j]] }
            if (best == "") break
            used[best] = 1
            top = top (top == "" ? "" : ", ") sprintf("%s " f, best, bv / g)
        }
        delete used
        printf "| %s | %s | " f " | " f " | " f " | " f " | %s |\n", p, (u == "GiB" ? sprintf("%.2f", g) : g), (p in ALL ? ALL[p] : T[p]) / g, S[p] / g, RW[p] / g, E[p] / g, top
    }
}
