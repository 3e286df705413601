# iperf.awk: iperf3 text output (-f m) -> "MiB_received Mbit/s" from the last receiver line
# (the [SUM] line with -P > 1). The transfer column's unit varies (KBytes, MBytes, GBytes).
/receiver/ {
    for (i = 2; i <= NF; i++) {
        if ($i ~ /^[KMGT]?Bytes$/) {
            v = $(i - 1)
            u = substr($i, 1, 1)
            m = u == "K" ? v / 1024 : u == "M" ? v : u == "G" ? v * 1024 : u == "T" ? v * 1048576 : v / 1048576
        }
        if ($i == "Mbits/sec") b = $(i - 1)
    }
}
END { if (m != "" && b != "") print m, b }
