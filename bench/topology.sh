# shellcheck shell=bash
# bench/topology.sh: sourced by bench/run.sh. Where the client, the proxy and the backends run.
#
#   loopback  every process in the script's own network namespace, on 127.0.0.1.
#   veth      three network namespaces made for this run, joined by two veth pairs:
#
#               client-ns                  proxy-ns                    server-ns
#               vc 10.213.1.2 <--veth--> vpc 10.213.1.1
#                                          vps 10.213.2.1 <--veth--> vs 10.213.2.2
#
#             what a sidecar or a front proxy in a container sees. The proxy listens on
#             10.213.1.1 and connects to the backends on 10.213.2.2. The client and the server
#             route the other's subnet through the proxy's namespace, which forwards
#             (ip_forward=1): that is the `routed` peer, the kernel alone in the middle.
#
# Only the namespaces made here are touched (names spb<PID>{c,p,s}; the host's own interfaces
# and sysctls never), and they are deleted on exit.

VETH_NET=${VETH_NET:-10.213}       # client subnet VETH_NET.1.0/24, server subnet VETH_NET.2.0/24
VETH_MTU=${VETH_MTU:-1500}
VETH_ETHTOOL=${VETH_ETHTOOL:-}     # e.g. "gro on": ethtool -K arguments for all four veth ends
VETH_SCENARIOS="bulk short redis"  # the scenarios that also run on veth

NS_BASE=spb$$
MADE_NS=()
VETH_SKIPPED=""                    # why the veth topology did not run, for the report
VETH_NOTE=""                       # MTU and offloads, for the report's method section

# The topology in force: TOPO, SP (prefix of the scenario names in raw.tsv), the namespaces of
# the client, proxy and server (NSN_*, empty on loopback) and the command prefixes that enter
# them (NS_*), the addresses the backends (SRV_IP) and the proxies (PROXY_IP) listen on.
topo_loopback() {
    TOPO=loopback SP="" NSN_C="" NSN_P="" NSN_S=""
    NS_C=() NS_P=() NS_S=()
    SRV_IP=127.0.0.1 PROXY_IP=127.0.0.1
}

topo_veth() {
    TOPO=veth SP="veth-" NSN_C=${NS_BASE}c NSN_P=${NS_BASE}p NSN_S=${NS_BASE}s
    NS_C=(ip netns exec "$NSN_C") NS_P=(ip netns exec "$NSN_P") NS_S=(ip netns exec "$NSN_S")
    SRV_IP=$VETH_NET.2.2 PROXY_IP=$VETH_NET.1.1
}

# veth_up: makes the three namespaces and the two veth pairs; returns 1 (with VETH_SKIPPED set)
# when this cannot run here.
veth_up() {
    if ((EUID != 0)); then
        VETH_SKIPPED="not root: \`ip netns\` needs root"
        return 1
    fi
    command -v ip >/dev/null && ip netns list >/dev/null 2>&1 || {
        VETH_SKIPPED="\`ip netns\` does not work here"
        return 1
    }
    local stale
    stale=$(ip netns list | awk '$1 ~ /^spb[0-9]+[cps]$/ { print $1 }' | tr '\n' ' ')
    [[ -z $stale ]] || log "namespaces left by an earlier run (not touched): $stale"
    local n
    for n in c p s; do
        ip netns add "$NS_BASE$n" || {
            VETH_SKIPPED="ip netns add $NS_BASE$n failed"
            return 1
        }
        MADE_NS+=("$NS_BASE$n")
        ip -n "$NS_BASE$n" link set lo up
    done
    local c=${NS_BASE}c p=${NS_BASE}p s=${NS_BASE}s
    ip -n "$c" link add vc mtu "$VETH_MTU" type veth peer name vpc mtu "$VETH_MTU" netns "$p" &&
        ip -n "$s" link add vs mtu "$VETH_MTU" type veth peer name vps mtu "$VETH_MTU" netns "$p" &&
        ip -n "$c" addr add "$VETH_NET.1.2/24" dev vc &&
        ip -n "$p" addr add "$VETH_NET.1.1/24" dev vpc &&
        ip -n "$p" addr add "$VETH_NET.2.1/24" dev vps &&
        ip -n "$s" addr add "$VETH_NET.2.2/24" dev vs &&
        ip -n "$c" link set vc up && ip -n "$p" link set vpc up &&
        ip -n "$p" link set vps up && ip -n "$s" link set vs up &&
        ip -n "$c" route add default via "$VETH_NET.1.1" &&
        ip -n "$s" route add default via "$VETH_NET.2.1" &&
        ip netns exec "$p" sysctl -qw net.ipv4.ip_forward=1 || {
        VETH_SKIPPED="could not set up the veth pairs"
        return 1
    }
    # A connecting side may take over its own TIME_WAIT port (tcp_tw_reuse=1), as the default
    # (2) already lets it on loopback. Without that, once the client has closed first on about
    # 14,000 connections to the proxy (the even half of the 28,000 ephemeral ports connect()
    # draws from) each connect() walks every port it holds in TIME_WAIT: perf showed 80% of the
    # CPU in __inet_check_established and __inet_hash_connect, and the rounds after the first
    # fell to ~900 conn/s for every peer alike.
    for n in "$c" "$p" "$s"; do
        ip netns exec "$n" sysctl -qw net.ipv4.tcp_tw_reuse=1 || {
            VETH_SKIPPED="could not set tcp_tw_reuse in $n"
            return 1
        }
    done
    local dev
    if [[ -n $VETH_ETHTOOL ]]; then
        for dev in "$c vc" "$p vpc" "$p vps" "$s vs"; do
            set -- $dev
            # shellcheck disable=SC2086 # VETH_ETHTOOL is a list of ethtool -K arguments
            ip netns exec "$1" ethtool -K "$2" $VETH_ETHTOOL ||
                log "ethtool -K $2 $VETH_ETHTOOL failed"
        done
    fi
    if command -v ping >/dev/null; then # without ping, the routed peer's run shows it
        ip netns exec "$c" ping -c 1 -W 2 "$VETH_NET.2.2" >/dev/null || {
            VETH_SKIPPED="the client namespace cannot reach the server's through the proxy's"
            return 1
        }
    fi
    veth_record
    return 0
}

# veth_record: the offloads of the four veth ends (ethtool -k, full output in the run's
# directory) and the MTU, for the report.
veth_record() {
    local dev f=$OUT/veth-ethtool.txt k line first="" list="" same=1
    : >"$f"
    for dev in "${NS_BASE}c vc" "${NS_BASE}p vpc" "${NS_BASE}p vps" "${NS_BASE}s vs"; do
        set -- $dev
        k=$(ip netns exec "$1" ethtool -k "$2" 2>&1) || k="(ethtool -k failed) $k"
        printf '== %s (namespace %s)\n%s\n' "$2" "$1" "$k" >>"$f"
        line=$(awk -F': ' '
            $1 == "tcp-segmentation-offload" { a["tso"] = $2 }
            $1 == "generic-segmentation-offload" { a["gso"] = $2 }
            $1 == "generic-receive-offload" { a["gro"] = $2 }
            $1 == "rx-gro-list" { a["gro-list"] = $2 }
            $1 == "scatter-gather" { a["sg"] = $2 }
            $1 == "tx-checksumming" { a["tx-csum"] = $2 }
            $1 == "rx-checksumming" { a["rx-csum"] = $2 }
            END { n = split("tso gso gro gro-list sg tx-csum rx-csum", k, " ")
                  for (i = 1; i <= n; i++) if (k[i] in a) printf "%s%s %s", (i > 1 ? ", " : ""), k[i], a[k[i]] }' <<<"$k")
        line=${line:-unknown}
        [[ -n $first ]] || first=$line
        [[ $line == "$first" ]] || same=0
        list+="${list:+; }$2: $line"
    done
    VETH_NOTE="tcp_tw_reuse=1 in each namespace (loopback's default behaviour); MTU $VETH_MTU${VETH_ETHTOOL:+, \`ethtool -K $VETH_ETHTOOL\` applied}; offloads (\`ethtool -k\`)"
    if ((same)); then
        VETH_NOTE+=" on all four ends: $first"
    else
        VETH_NOTE+=": $list"
    fi
}

veth_down() {
    local ns
    for ns in "${MADE_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    MADE_NS=()
}

# topo_peers LIST: LIST for the topology in force. direct and routed are each other's
# counterpart (direct exists only on loopback, routed only on veth); duplicates are dropped.
topo_peers() {
    local p out=" "
    for p in $1; do
        case $TOPO:$p in
        veth:direct) p=routed ;;
        loopback:routed) p=direct ;;
        esac
        [[ $out == *" $p "* ]] || out+="$p "
    done
    echo "$out"
}
