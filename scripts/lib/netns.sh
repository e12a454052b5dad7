# shellcheck shell=bash
# The namespace topology of issue 16, shared by scripts/test-netns (the
# assertions) and scripts/bench-netns (the timings). Sourced, not run:
#
#   WAN  (hnN-wan, bridge 10.99.0.0/24): the anchor at 10.99.0.1
#    |-- router hnN-r1 (10.99.0.11, masquerade) -- home 1 LAN 192.168.1.0/24:
#    |       households hnN-h1a (.10), hnN-h1b (.11), both --no-mdns
#    '-- router hnN-r2 (10.99.0.12, masquerade) -- home 2 LAN 192.168.2.0/24:
#            households hnN-h2a (.10), hnN-h2b (.11) with mDNS, and hnN-h2x
#            (.12), a node of a second community on the same anchor
#
# Home 1 runs without mDNS so its two households can only find each
# other's LAN addresses through identify (over the relay); home 2 finds
# them by mDNS. Only namespace-internal addresses are used; `netns_up`
# installs a trap that tears everything down on exit, also on failure or
# Ctrl-C. The caller sets `set -euo pipefail` and cds to the repo root.
#
# Environment: HEARTH (a hearth binary; else built), DEADLINE_S (every
# wait gives up after this long, default 120), KEEP=1 (leave data dirs
# and logs), RUST_LOG (the nodes' log filter, default warn).

say() { printf '[%s %s] %s\n' "${NETNS_WHO:-netns}" "$(date +%T)" "$*" >&2; }
die() {
    say "FAIL: $*"
    exit 1
}
now_ms() { date +%s%3N; }

# netns_require: root and the tools; installs nftables/jq with apt-get
# when missing.
netns_require() {
    [ "$(id -u)" = 0 ] || die "needs root (it makes network namespaces); run it as root"
    command -v ip >/dev/null || die "needs iproute2 (ip)"
    if ! command -v nft >/dev/null && ! command -v iptables >/dev/null; then
        netns_need_pkg nftables
    fi
    command -v jq >/dev/null || netns_need_pkg jq
}
netns_need_pkg() {
    command -v apt-get >/dev/null || die "$1 is missing and apt-get is not here to install it"
    say "installing $1 (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" >/dev/null
}

# netns_binary PROFILE: sets HEARTH, building it (debug or release) unless
# HEARTH is set already.
netns_binary() {
    local profile=$1
    if [ -z "${HEARTH:-}" ]; then
        say "building hearth ($profile)"
        if [ "$profile" = release ]; then
            cargo build -q --release -p hearth-node --bin hearth
        else
            cargo build -q -p hearth-node --bin hearth
        fi
        HEARTH=$PWD/target/$profile/hearth
    fi
    [ -x "$HEARTH" ] || die "no hearth binary at $HEARTH"
}

P="hn$$" # prefix: parallel runs do not collide
WAN="$P-wan" R1="$P-r1" R2="$P-r2"
HOUSEHOLDS=("$P-h1a" "$P-h1b" "$P-h2a" "$P-h2b")
NAMES=(h1a h1b h2a h2b)
OTHER="$P-h2x"
WORK=
PIDS=()
DEADLINE_S=${DEADLINE_S:-120}
START_S=$(date +%s)

netns_cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    # No node outlives the run (a leftover keeps running in its deleted
    # namespace, unseen, for as long as the machine is up).
    if [ -n "$WORK" ] && pgrep -f -- "--data-dir $WORK/" >/dev/null; then
        say "FAIL: nodes still running after the kill: $(pgrep -f -- "--data-dir $WORK/" | tr '\n' ' ')"
        pkill -9 -f -- "--data-dir $WORK/" || true
        rc=1
    fi
    for ns in "${HOUSEHOLDS[@]}" "$OTHER" "$R1" "$R2" "$WAN"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ "$rc" != 0 ] && [ -n "$WORK" ]; then
        say "logs of every node (last lines):"
        for f in "$WORK"/*.log; do
            [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; } >&2
        done
    fi
    if [ -n "$WORK" ]; then
        if [ -n "${KEEP:-}" ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    say "torn down (exit $rc)"
    exit "$rc"
}

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# router R (home H, WAN address 10.99.0.1H, LAN 192.168.H.0/24)
netns_home() {
    local r=$1 h=$2
    ip link add "$P-w$h" type veth peer name wan netns "$r"
    ip link set "$P-w$h" netns "$WAN"
    in_ns "$WAN" ip link set "$P-w$h" master br0 up
    in_ns "$r" ip addr add "10.99.0.1$h/24" dev wan
    in_ns "$r" ip link set wan up
    in_ns "$r" ip link add lan type bridge
    in_ns "$r" ip addr add "192.168.$h.1/24" dev lan
    in_ns "$r" ip link set lan up
    in_ns "$r" sysctl -qw net.ipv4.ip_forward=1
    # Masquerade everything leaving by the WAN; nothing comes in unless
    # conntrack knows it (no port forwards): a typical home router. It
    # drops what it does not expect, silently: no RST or ICMP that would
    # abort a peer's punch, and no conntrack entry for the dropped packet
    # that would make masquerade pick another port for our own punch.
    # LAN to LAN passes: a home router switches its LAN. (Where the host
    # has br_netfilter loaded, frames bridged between two LAN ports go
    # through the forward hook too, as lan -> lan; without that rule the
    # households of one home could not reach each other, not even by
    # mDNS, and stayed relayed through the anchor.)
    if command -v nft >/dev/null; then
        in_ns "$r" nft -f - <<NFT
table ip nat {
    chain masq { type nat hook postrouting priority srcnat; oifname "wan" masquerade; }
}
table ip filter {
    chain inbound {
        type filter hook input priority filter; policy drop;
        iifname != "wan" accept
        ct state established,related accept
    }
    chain guard {
        type filter hook forward priority filter; policy drop;
        iifname "lan" oifname "lan" accept
        iifname "lan" oifname "wan" accept
        ct state established,related accept
    }
}
NFT
    else
        in_ns "$r" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE
        in_ns "$r" iptables -P FORWARD DROP
        in_ns "$r" iptables -A FORWARD -i lan -o lan -j ACCEPT
        in_ns "$r" iptables -A FORWARD -i lan -o wan -j ACCEPT
        in_ns "$r" iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        in_ns "$r" iptables -A INPUT ! -i wan -j ACCEPT
        in_ns "$r" iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        in_ns "$r" iptables -P INPUT DROP
    fi
}
netns_household() {
    local ns=$1 r=$2 h=$3 host=$4
    ip link add "$P-$h$host" type veth peer name eth0 netns "$ns"
    ip link set "$P-$h$host" netns "$r"
    in_ns "$r" ip link set "$P-$h$host" master lan up
    in_ns "$ns" ip addr add "192.168.$h.$host/24" dev eth0
    in_ns "$ns" ip link set eth0 up
    in_ns "$ns" ip route add default via "192.168.$h.1"
}

# netns_up: the work dir, the teardown trap, and the topology, checked.
netns_up() {
    WORK=$(mktemp -d /tmp/hearth-netns.XXXXXX)
    trap netns_cleanup EXIT
    trap 'exit 130' INT TERM
    for ns in "$WAN" "$R1" "$R2" "${HOUSEHOLDS[@]}" "$OTHER"; do
        ip netns add "$ns"
        in_ns "$ns" ip link set lo up
    done
    in_ns "$WAN" ip link add br0 type bridge
    in_ns "$WAN" ip addr add 10.99.0.1/24 dev br0
    in_ns "$WAN" ip link set br0 up
    netns_home "$R1" 1
    netns_home "$R2" 2
    netns_household "${HOUSEHOLDS[0]}" "$R1" 1 10
    netns_household "${HOUSEHOLDS[1]}" "$R1" 1 11
    netns_household "${HOUSEHOLDS[2]}" "$R2" 2 10
    netns_household "${HOUSEHOLDS[3]}" "$R2" 2 11
    netns_household "$OTHER" "$R2" 2 12
    if command -v ping >/dev/null; then
        in_ns "${HOUSEHOLDS[0]}" ping -c1 -W2 10.99.0.1 >/dev/null || die "home 1 cannot reach the WAN"
        if in_ns "$WAN" ping -c1 -W1 192.168.1.10 >/dev/null 2>&1; then
            die "the WAN reaches into home 1: no NAT"
        fi
    fi
    # The WAN has no route into the homes at all: only the routers' NAT
    # lets anything through.
    in_ns "$WAN" ip route get 192.168.1.10 >/dev/null 2>&1 && die "the WAN has a route into home 1"
    say "topology up: anchor 10.99.0.1, homes behind 10.99.0.11 and 10.99.0.12"
}

# ---- nodes ------------------------------------------------------------
hearth() {
    local ns=$1 dir=$2
    shift 2
    in_ns "$ns" "$HEARTH" --data-dir "$dir" "$@"
}
# Sync and discovery intervals of every node (seconds): short, so a run
# takes seconds; the bench states its ceilings in these.
SYNC_INTERVAL_S=5
DISCOVERY_INTERVAL_S=2
# Extra `hearth run` arguments for every node (the bench: JSON logs).
NODE_ARGS=()
# start NAME NS ARGS...: hearth run in the background, output in NAME.log
start() {
    local name=$1 ns=$2
    shift 2
    # `ip netns exec` directly, not through in_ns: a backgrounded function
    # runs in a subshell, so $! would be that shell and killing it would
    # leave the node running (and "the anchor goes away" untested).
    # `ip netns exec` execs the node itself, so $! is the node.
    ip netns exec "$ns" "$HEARTH" --data-dir "$WORK/$name" run --no-http --no-upnp \
        --sync-interval-seconds "$SYNC_INTERVAL_S" \
        --discovery-interval-seconds "$DISCOVERY_INTERVAL_S" "${NODE_ARGS[@]}" "$@" \
        >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_$name=$!"
}
# try_until WHAT CMD...: polls CMD until it succeeds (0) or the deadline
# passes (1)
try_until() {
    local what=$1
    shift
    local until=$(($(date +%s) + DEADLINE_S))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$until" ]; then
            say "timed out after ${DEADLINE_S}s waiting for $what"
            return 1
        fi
        sleep 0.3
    done
    say "ok: $what ($(($(date +%s) - START_S))s)"
}
wait_until() { try_until "$@" || die "$1"; }
status() { hearth "$1" "$WORK/$2" --json status; }
peer_id() { status "$1" "$2" | jq -r .peer_id 2>/dev/null; }
titles() { hearth "$1" "$WORK/$2" --json list | jq -r '.posts[].title'; }
has_title() { titles "$1" "$2" | grep -qxF "$3"; }
level_is_member() { [ "$(status "$1" "$2" | jq -r .level)" != null ]; }

# netns_community: the anchor founds "Netns Street"; the four households
# join by invite (home 1 with --no-mdns) and are admitted; the second
# community's node starts in home 2. Sets ANCHOR_TCP, ANCHOR_PEER,
# PEER_IDS (by household index) and STARTED_MS (each household's start).
netns_community() {
    say "anchor: founding the community"
    RUST_LOG=${RUST_LOG:-warn} start anchor "$WAN" --anchor --port 4001 --name "Netns Street"
    wait_until "the anchor to print its invite address" \
        grep -q "address for invites: /ip4/10.99.0.1/tcp/4001" "$WORK/anchor.log"
    if grep -qE "address for invites: /ip[46]/(0\.0\.0\.0|::)/" "$WORK/anchor.log"; then
        die "the anchor printed an unspecified address for invites"
    fi
    ANCHOR_TCP=$(grep -o "address for invites: /ip4/10.99.0.1/tcp/4001/p2p/[^ ]*" "$WORK/anchor.log" | head -1 | cut -d' ' -f4)
    ANCHOR_PEER=${ANCHOR_TCP##*/}
    local quic="/ip4/10.99.0.1/udp/4001/quic-v1/p2p/$ANCHOR_PEER"
    local invite i n id
    invite=$(hearth "$WAN" "$WORK/anchor" community invite --addr "$ANCHOR_TCP" --addr "$quic")
    STARTED_MS=()
    for i in 0 1 2 3; do
        STARTED_MS+=("$(now_ms)")
        if [ "$i" -lt 2 ]; then
            RUST_LOG=${RUST_LOG:-warn} start "${NAMES[$i]}" "${HOUSEHOLDS[$i]}" --join "$invite" --no-mdns
        else
            RUST_LOG=${RUST_LOG:-warn} start "${NAMES[$i]}" "${HOUSEHOLDS[$i]}" --join "$invite"
        fi
    done
    for i in 0 1 2 3; do
        n=${NAMES[$i]}
        wait_until "$n to run" grep -q "^node " "$WORK/$n.log"
        id=$(grep -o "^node [0-9a-f]*" "$WORK/$n.log" | head -1 | cut -d' ' -f2)
        hearth "$WAN" "$WORK/anchor" member add "$id" >/dev/null
    done
    PEER_IDS=()
    for i in 0 1 2 3; do PEER_IDS+=("$(peer_id "${HOUSEHOLDS[$i]}" "${NAMES[$i]}")"); done
    say "second community: a node in home 2 that uses the same anchor as relay"
    RUST_LOG=${RUST_LOG:-warn} start other "$OTHER" --name "Other Street" --bootstrap "$ANCHOR_TCP"
}

# ---- what the nodes report ---------------------------------------------
# knows_all_one I: household I has the anchor and the three other
# households in its Kademlia table.
knows_all_one() {
    local i=$1 j table
    table=$(status "${HOUSEHOLDS[$i]}" "${NAMES[$i]}" | jq -r '.reach.routing_table[]')
    grep -qxF "$ANCHOR_PEER" <<<"$table" || return 1
    for j in 0 1 2 3; do
        [ "$i" = "$j" ] || grep -qxF "${PEER_IDS[$j]}" <<<"$table" || return 1
    done
}
knows_all() {
    local i
    for i in 0 1 2 3; do knows_all_one "$i" || return 1; done
}
# kind A B: how household A is connected to household B (from A's status)
kind() {
    local pid=${PEER_IDS[$2]}
    status "${HOUSEHOLDS[$1]}" "${NAMES[$1]}" |
        jq -r --arg p "$pid" '[.peers[] | select(.peer_id == $p) | .connection] | first // "none"'
}
# punched_across A B...: A holds a hole-punched connection to one of B...
punched_across() {
    local a=$1 b
    for b in "${@:2}"; do
        [ "$(kind "$a" "$b")" = hole_punched ] && return 0
    done
    return 1
}
# the other home's households, by household index
other_home() { if [ "$1" -lt 2 ]; then echo 2 3; else echo 0 1; fi; }
# same_home I: the other household of I's home
same_home() { echo $(($1 ^ 1)); }
punched_one() {
    # shellcheck disable=SC2046
    punched_across "$1" $(other_home "$1")
}
cross_ok() {
    local i
    for i in 0 1 2 3; do punched_one "$i" || return 1; done
}
# lan_direct_one I: household I reaches its home's other household over
# a connection of its own, not through the relay: dialed ("direct") or,
# when DCUtR raced the LAN dial and won on the LAN addresses it also
# tries, "hole_punched".
lan_direct_one() {
    case "$(kind "$1" "$(same_home "$1")")" in
    direct | hole_punched) return 0 ;;
    *) return 1 ;;
    esac
}
lan_direct() {
    local i
    for i in 0 1 2 3; do lan_direct_one "$i" || return 1; done
}
