#!/usr/bin/env bash
# officeswitch, HAProxy and nginx in front of the same stand-in Collabora nodes, in one
# run, measured by one Rust load client (examples/loadpeer.rs). Prints a Markdown table
# and writes it to benches/compare/last-run.md.
#
#   bash benches/compare/run.sh
#   ROUNDS=5 DURATION=10 CALLGRIND=0 bash benches/compare/run.sh
#   BUILD=0 bash benches/compare/run.sh    # use target/release as it is, build nothing
#   CG_KEEP=/tmp/cg OUT=/tmp/run.md bash benches/compare/run.sh   # keep the callgrind dumps
#   PROFILE=officeswitch-off CG_KEEP=/tmp/cg bash benches/compare/run.sh   # one count, no table
#
# What it does, in order: installs haproxy and nginx with apt-get when they are missing;
# builds officeswitch and the load peer (release); starts NODES stand-in Collabora nodes,
# then two instances of each proxy, one with its cache off and one with a cache of 64 MiB
# (entries up to 8 MiB): officeswitch (one Collabora pool of those nodes; `[cache]
# max_bytes` 0 or 64 MiB), HAProxy (`balance url_param WOPISrc` + `hash-type consistent`;
# a `cache` section) and nginx (`hash $arg_WOPISrc consistent`; `proxy_cache`), all on
# free 127.0.0.1 ports. With two cores or more, every proxy runs on core 1 (`taskset -c
# 1`, one worker or thread each) and the nodes and the load client on core 0. Then it
# measures each proxy and "direct" (the client straight to the first node): a 10 KiB
# versioned asset, cache off and on: requests/s, p50, p99, CPU per request (ROUNDS
# rounds, the median round kept), and how many requests reached a node (a cache that does
# not answer shows); WebSocket round trips/s; a 1 GiB download and a 1 GiB upload (MiB/s,
# RSS peak of the proxy's processes); RSS peak under 64 concurrent 1 MiB downloads; RSS
# with IDLE_SOCKETS idle WebSockets; and, unless CALLGRIND=0, the instructions each proxy
# spends per asset request, passed through and answered from its cache, counted by
# callgrind in a separate instance of the proxy (the load client and nodes run natively).
#
# Bounded: every load step has a duration or a timeout, every wait loop a count. Loopback
# only. Every process it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
here=$repo/benches/compare
export PATH=$PATH:/usr/sbin:/sbin

NODES=${NODES:-2}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
WARMUP=${WARMUP:-2}
DURATION=${DURATION:-5}
WS_SOCKETS=${WS_SOCKETS:-32}
IDLE_SOCKETS=${IDLE_SOCKETS:-9000}
STREAM_BYTES=${STREAM_BYTES:-1073741824}
# 64 concurrent downloads of 1 MiB, again and again: 2,000 in all or 10 s, whichever first.
DL_CONCURRENCY=${DL_CONCURRENCY:-64}
DL_BYTES=${DL_BYTES:-1048576}
DL_MAX=${DL_MAX:-2000}
DL_SECS=${DL_SECS:-10}
# Every cache: 64 MiB in all, entries up to 8 MiB.
CACHE_MB=${CACHE_MB:-64}
CACHE_ENTRY_BYTES=${CACHE_ENTRY_BYTES:-8388608}
# Instructions per request: CG_WARMUP requests, a callgrind dump, CG_REQUESTS requests, a
# second dump; the second dump's total over CG_REQUESTS.
CALLGRIND=${CALLGRIND:-1}
CG_WARMUP=${CG_WARMUP:-2000}
CG_REQUESTS=${CG_REQUESTS:-10000}
CG_CONNECTIONS=${CG_CONNECTIONS:-4}
# A directory to keep the second dumps in (`callgrind_annotate DIR/officeswitch-off.out`).
CG_KEEP=${CG_KEEP:-}
# PROFILE=KIND-CACHE (officeswitch-off, haproxy-on, ...): only that instance's callgrind
# count, printed, for working on one figure; no load rounds, no table.
PROFILE=${PROFILE:-}
OUT=${OUT:-$here/last-run.md}
cache_bytes=$((CACHE_MB * 1048576))

run_started=$SECONDS
work=$(mktemp -d)
# nginx's workers run as an unprivileged user when started by root: let them in.
chmod 755 "$work"
children=()

say() { echo "compare: $*" >&2; }
die() {
    say "$*"
    exit 1
}

cleanup() {
    local pid
    for pid in "${children[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${children[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- HAProxy, nginx and valgrind ----------------------------------------------------------
missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v nginx >/dev/null || missing+=(nginx)
[ "$CALLGRIND" = 0 ] || command -v callgrind_control >/dev/null || missing+=(valgrind)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} with apt-get (their own services are not used)"
    as_root=(env DEBIAN_FRONTEND=noninteractive)
    [ "$(id -u)" -eq 0 ] || as_root=(sudo env DEBIAN_FRONTEND=noninteractive)
    apt_install() { "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; }
    { apt_install || { "${as_root[@]}" apt-get update && apt_install; }; } >"$work/apt.log" 2>&1 ||
        { cat "$work/apt.log" >&2; die "apt-get could not install ${missing[*]}"; }
fi

# --- open files -----------------------------------------------------------------------------
# Each idle WebSocket holds two connections in the proxy; the machine caps a process at
# 20,000 open files.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
files=$(ulimit -n)
if [ "$files" != unlimited ] && [ $((2 * IDLE_SOCKETS + 500)) -gt "$files" ]; then
    IDLE_SOCKETS=$(((files - 500) / 2))
    say "only $files open files per process: $IDLE_SOCKETS idle WebSockets"
fi

# --- build ------------------------------------------------------------------------------------
build_started=$SECONDS
if [ "${BUILD:-1}" != 0 ]; then
    say "building officeswitch and examples/loadpeer (release)"
    cargo build --release --quiet --bin officeswitch --example loadpeer
else
    say "BUILD=0: using the binaries already in target/release"
fi
build_secs=$((SECONDS - build_started))
# Private copies: others may rebuild target/ while this runs.
mkdir "$work/bin"
cp target/release/officeswitch target/release/examples/loadpeer "$work/bin/"
peer=$work/bin/loadpeer

# --- helpers ----------------------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
taken=" "
# Sets `port` to a free loopback port below the ephemeral range.
next_port() {
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 12000))
        case $taken in *" $port "*) continue ;; esac
        port_busy "$port" && continue
        taken+="$port "
        return
    done
    die "no free port found"
}

# Waits (at most $2 tenths of a second) for URL $1 to answer 2xx; $3 is a pid that must live.
wait_http() {
    for _ in $(seq "$2"); do
        curl -fs --max-time 5 -o /dev/null "$1" && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Writes template $1 to $2 with each KEY=VALUE argument filled in for @KEY@.
fill() {
    local text kv
    text=$(<"$1")
    for kv in "${@:3}"; do
        text=${text//"@${kv%%=*}@"/"${kv#*=}"}
    done
    printf '%s\n' "$text" >"$2"
}

# --- cores --------------------------------------------------------------------------------------
# Every proxy on core 1 with one worker (thread, process), the nodes and the load client on
# core 0: the proxies get the same CPU, and the load does not take it from them.
cores=$(nproc)
if [ "$cores" -ge 2 ] && command -v taskset >/dev/null; then
    pin_proxy=(taskset -c 1)
    pin_load=(taskset -c 0)
    proxy_workers=1
    pin_note="Each proxy is pinned to core 1 (\`taskset -c 1\`) with one worker: officeswitch's tokio runtime one worker thread, HAProxy \`nbthread 1\`, nginx \`worker_processes 1\` (plus its master); the $NODES stand-in nodes (one runtime worker each) and the load client (two) are pinned to core 0."
else
    pin_proxy=()
    pin_load=()
    proxy_workers=$cores
    pin_note="Only $cores core (or no \`taskset\`): nothing is pinned. officeswitch's tokio runtime has one worker per core ($cores), HAProxy \`nbthread $cores\`, nginx \`worker_processes $cores\`; the $NODES stand-in nodes and the load client share the cores with the proxy, so every figure is a share of one small machine."
    say "only $cores core: proxies, nodes and load client are not pinned"
fi

# --- instances ------------------------------------------------------------------------------------
# Each start_* below starts one instance of a proxy named $1 on port $2, in $work/$1, with
# the rest of its arguments as a wrapper (taskset, valgrind) in front of the binary; it
# sets `started_pid` (the process to signal) and `started_pids` (every process of the
# instance, comma-separated). `ready_tenths` bounds the wait for it to answer.
ready_tenths=300

servers_haproxy=""
servers_nginx=""
toml_nodes=""

# start_officeswitch NAME PORT CACHE_BYTES WRAPPER...
keys_from=""
start_officeswitch() {
    local name=$1 port=$2 cache=$3 dir=$work/$1
    shift 3
    mkdir -p "$dir/state/keys"
    # One set of keys for every instance: later ones (valgrind) need not generate theirs.
    [ -z "$keys_from" ] || cp "$keys_from"/* "$dir/state/keys/"
    fill "$here/officeswitch.toml.in" "$dir/officeswitch.toml" \
        PORT="$port" WORK="$dir" HERE="$here" NODES="$toml_nodes" \
        CACHE_BYTES="$cache" CACHE_ENTRY_BYTES="$CACHE_ENTRY_BYTES"
    TOKIO_WORKER_THREADS=$proxy_workers "$@" "$work/bin/officeswitch" \
        --config "$dir/officeswitch.toml" >"$dir/log" 2>&1 &
    started_pid=$!
    started_pids=$started_pid
    children+=("$started_pid")
    wait_http "http://127.0.0.1:$port/readyz" "$ready_tenths" "$started_pid" ||
        { cat "$dir/log" >&2; die "officeswitch $name did not become ready ($dir/officeswitch.toml)"; }
    [ -n "$keys_from" ] || keys_from=$dir/state/keys
}

# start_haproxy NAME PORT CACHE(on|off) THREADS WRAPPER...
start_haproxy() {
    local name=$1 port=$2 cache=$3 threads=$4 dir=$work/$1
    shift 4
    mkdir -p "$dir"
    fill "$here/haproxy.cfg.in" "$dir/haproxy.cfg" \
        PORT="$port" WORKERS="$threads" SERVERS="$servers_haproxy" \
        CACHE="$([ "$cache" = on ] || echo "#")" CACHE_MB="$CACHE_MB" \
        CACHE_ENTRY_BYTES="$CACHE_ENTRY_BYTES"
    haproxy -c -q -f "$dir/haproxy.cfg" || die "haproxy rejects $dir/haproxy.cfg"
    "$@" haproxy -db -f "$dir/haproxy.cfg" >"$dir/log" 2>&1 &
    started_pid=$!
    started_pids=$started_pid
    children+=("$started_pid")
    wait_http "http://127.0.0.1:$port/hosting/capabilities" "$ready_tenths" "$started_pid" ||
        { cat "$dir/log" >&2; die "HAProxy $name did not start"; }
}

# start_nginx NAME PORT CACHE(on|off) MASTER(on|off) WORKERS WRAPPER...
start_nginx() {
    local name=$1 port=$2 cache=$3 master=$4 workers=$5 dir=$work/$1 worker_pids
    shift 5
    mkdir -p "$dir/temp"
    fill "$here/nginx.conf.in" "$dir/nginx.conf" \
        PORT="$port" WORK="$dir" SERVERS="$servers_nginx" MASTER="$master" \
        WORKERS="$workers" CACHE="$([ "$cache" = on ] || echo "#")" CACHE_MB="$CACHE_MB"
    nginx -q -t -p "$dir" -c "$dir/nginx.conf" 2>"$dir/check.log" ||
        { cat "$dir/check.log" >&2; die "nginx rejects $dir/nginx.conf"; }
    "$@" nginx -p "$dir" -c "$dir/nginx.conf" >"$dir/log" 2>&1 &
    started_pid=$!
    started_pids=$started_pid
    children+=("$started_pid")
    wait_http "http://127.0.0.1:$port/hosting/capabilities" "$ready_tenths" "$started_pid" ||
        { cat "$dir/log" "$dir/nginx-error.log" >&2; die "nginx $name did not start"; }
    if [ "$master" = on ]; then
        # Its workers (and, with a cache, its cache manager); not the cache loader, which
        # ends a minute after the start.
        worker_pids=$(ps -o pid=,args= --ppid "$started_pid" |
            awk '!/cache loader/ { print $1 }' | paste -sd, -)
        [ -n "$worker_pids" ] || die "nginx $name has no worker processes"
        started_pids+=",$worker_pids"
        # Workers outlive a killed master: stop them too.
        IFS=, read -ra worker_pids <<<"$worker_pids"
        children+=("${worker_pids[@]}")
    fi
}

# Stops one process this script started (TERM, then KILL after 10 s).
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# --- nodes --------------------------------------------------------------------------------------
nodes=()
node_pids=()
for i in $(seq "$NODES"); do
    next_port
    "${pin_load[@]}" "$peer" node --listen "127.0.0.1:$port" --name "n$i" >"$work/node$i.log" 2>&1 &
    children+=($!)
    node_pids+=($!)
    nodes+=("127.0.0.1:$port")
    wait_http "http://127.0.0.1:$port/hosting/capabilities" 100 $! ||
        { cat "$work/node$i.log" >&2; die "node n$i did not start"; }
    servers_haproxy+="    server n$i 127.0.0.1:$port check inter 5s"$'\n'
    servers_nginx+="        server 127.0.0.1:$port;"$'\n'
    toml_nodes+="\"http://127.0.0.1:$port\", "
done
servers_haproxy=${servers_haproxy%$'\n'}
servers_nginx=${servers_nginx%$'\n'}
toml_nodes=${toml_nodes%, }

# Asset requests the nodes have answered, summed.
node_assets() {
    local n sum=0 line
    for n in "${nodes[@]}"; do
        line=$(curl -fs --max-time 5 "http://$n/loadpeer/served") || die "node $n does not answer"
        line=${line#assets=}
        sum=$((sum + ${line%% *}))
    done
    echo "$sum"
}

# --- proxies ------------------------------------------------------------------------------------
targets=(direct officeswitch haproxy nginx)
cached=(officeswitch-cache haproxy-cache nginx-cache)
declare -A addr=([direct]=${nodes[0]})
declare -A pids=([direct]="")
# Whose CPU time a request costs: the proxy's processes; for "direct", the node's.
declare -A cpu_pids=([direct]=${node_pids[0]})
for cache in off on; do
    suffix=""
    [ "$cache" = off ] || suffix=-cache
    next_port
    start_officeswitch "officeswitch$suffix" "$port" "$([ "$cache" = on ] && echo "$cache_bytes" || echo 0)" \
        "${pin_proxy[@]}"
    addr[officeswitch$suffix]=127.0.0.1:$port pids[officeswitch$suffix]=$started_pids
    next_port
    start_haproxy "haproxy$suffix" "$port" "$cache" "$proxy_workers" "${pin_proxy[@]}"
    addr[haproxy$suffix]=127.0.0.1:$port pids[haproxy$suffix]=$started_pids
    next_port
    start_nginx "nginx$suffix" "$port" "$cache" on "$proxy_workers" "${pin_proxy[@]}"
    addr[nginx$suffix]=127.0.0.1:$port pids[nginx$suffix]=$started_pids
done
for t in "${targets[@]}" "${cached[@]}"; do
    [ -n "${cpu_pids[$t]:-}" ] || cpu_pids[$t]=${pids[$t]}
done
# officeswitch's editor traffic carries the WOPISrc officeswitch gave the editor at open.
declare -A mode=([direct]=host [officeswitch]=open [haproxy]=host [nginx]=host)
declare -A R=()

for t in "${targets[@]}" "${cached[@]}"; do
    node=$(curl -fs -o /dev/null -D - "http://${addr[$t]}/browser/61cf2b4/bundle.js" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-loadpeer-node" { print $2 }')
    [ -n "$node" ] || die "$t does not reach a node"
done

# --- measuring ------------------------------------------------------------------------------------
# Runs the load peer (on the load core) with a time limit; stores its key=value fields as
# R[target.test.key].
measure() {
    local target=$1 test=$2 limit=$3 line kv
    shift 3
    line=$(timeout "$limit" "${pin_load[@]}" "$peer" "$@" 2>>"$work/peer.log") ||
        { tail -n 20 "$work/peer.log" >&2; die "$test through $target failed"; }
    for kv in $line; do
        R[$target.$test.${kv%%=*}]=${kv#*=}
    done
}

# Copies R[target.TEST<round>.*] of the median round by `field` to R[target.med_TEST.*]
# (the lower middle one for an even number of rounds).
keep_median() {
    local target=$1 test=$2 field=$3 r pick key
    pick=$(for r in $(seq "$ROUNDS"); do echo "${R[$target.$test$r.$field]} $r"; done |
        sort -g | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) { print $2 }')
    for key in "${!R[@]}"; do
        case $key in "$target.$test$pick."*) R[$target.med_$test.${key#"$target.$test$pick".}]=${R[$key]} ;; esac
    done
}

# Asset load on target $1 for round $2; counts what reached a node.
asset_round() {
    local t=$1 round=$2 before after
    before=$(node_assets)
    measure "$t" "assets$round" "$limit" load assets --addr "${addr[$t]}" \
        --connections "$CONNECTIONS" --warmup "$WARMUP" --duration "$DURATION" \
        --pids "${cpu_pids[$t]}"
    after=$(node_assets)
    R[$t.sent]=$((${R[$t.sent]:-0} + ${R[$t.assets$round.sent]}))
    R[$t.reached]=$((${R[$t.reached]:-0} + after - before))
}

load_started=$(cut -d' ' -f1-3 /proc/loadavg)
measure_started=$SECONDS
[ -z "$PROFILE" ] || targets=() cached=()
limit=$((${WARMUP%.*} + ${DURATION%.*} + 60))
for round in $(seq "$ROUNDS"); do
    for t in "${targets[@]}" "${cached[@]}"; do
        say "round $round: small asset through $t"
        asset_round "$t" "$round"
    done
    for t in "${targets[@]}"; do
        say "round $round: WebSocket round trips through $t"
        measure "$t" "ws$round" "$limit" load ws --addr "${addr[$t]}" --wopisrc "${mode[$t]}" \
            --seed "ws$round" --sockets "$WS_SOCKETS" --warmup "$WARMUP" --duration "$DURATION" \
            --pids "${cpu_pids[$t]}"
    done
done
for t in "${targets[@]}" "${cached[@]}"; do
    keep_median "$t" assets rps
done
for t in "${targets[@]}"; do
    keep_median "$t" ws rt_s
done
for t in "${targets[@]}"; do
    watch=()
    [ -z "${pids[$t]}" ] || watch=(--pids "${pids[$t]}")
    say "$STREAM_BYTES-byte download and upload through $t"
    measure "$t" down 180 load download --addr "${addr[$t]}" --bytes "$STREAM_BYTES" "${watch[@]}"
    measure "$t" up 180 load upload --addr "${addr[$t]}" --wopisrc "${mode[$t]}" \
        --bytes "$STREAM_BYTES" "${watch[@]}"
done
for t in $([ -n "$PROFILE" ] || echo officeswitch haproxy nginx); do
    say "$DL_CONCURRENCY concurrent $DL_BYTES-byte downloads through $t"
    measure "$t" dls $((DL_SECS + 90)) load downloads --addr "${addr[$t]}" \
        --concurrency "$DL_CONCURRENCY" --bytes "$DL_BYTES" --max-downloads "$DL_MAX" \
        --duration "$DL_SECS" --timeout $((DL_SECS + 60)) --pids "${pids[$t]}"
done
# The idle WebSockets go through fresh cache-off instances: memory an allocator kept from
# the downloads would otherwise be reused by the sockets and hide what they cost.
for t in $([ -n "$PROFILE" ] || echo officeswitch haproxy nginx); do
    IFS=, read -ra old_pids <<<"${pids[$t]}"
    for pid in "${old_pids[@]}"; do
        stop_pid "$pid"
    done
    next_port
    case $t in
        officeswitch) start_officeswitch officeswitch-idle "$port" 0 "${pin_proxy[@]}" ;;
        haproxy) start_haproxy haproxy-idle "$port" off "$proxy_workers" "${pin_proxy[@]}" ;;
        nginx) start_nginx nginx-idle "$port" off on "$proxy_workers" "${pin_proxy[@]}" ;;
    esac
    addr[$t]=127.0.0.1:$port pids[$t]=$started_pids
    say "$IDLE_SOCKETS idle WebSockets through $t (a fresh instance)"
    measure "$t" idle 300 idle --addr "${addr[$t]}" --wopisrc "${mode[$t]}" --seed idle \
        --sockets "$IDLE_SOCKETS" --pids "${pids[$t]}"
done

# --- instructions per request (callgrind) -----------------------------------------------------------
# A separate instance of each proxy under callgrind (one thread or process, on the proxy
# core), cache off and cache on; the load client and the nodes run natively. CG_WARMUP
# requests, a dump, CG_REQUESTS requests, a second dump: the second dump holds the
# instructions of those requests only (start-up and warm-up are in the first; a timer or
# health check that falls in the window counts, for every proxy alike).
callgrind_secs=0
if [ "$CALLGRIND" != 0 ]; then
    callgrind_started=$SECONDS
    cg_tunables=glibc.cpu.x86_rep_movsb_threshold=2147483647:glibc.cpu.x86_rep_stosb_threshold=2147483647
    ready_tenths=1800
    for kind in officeswitch haproxy nginx; do
        for cache in off on; do
            [ -z "$PROFILE" ] || [ "$PROFILE" = "$kind-$cache" ] || continue
            name=cg-$kind-$cache
            mkdir -p "$work/$name"
            # callgrind counts each byte a `rep movsb` or `rep stosb` moves as one
            # instruction, so a 10 KiB copy by glibc's memcpy would count 10,240: glibc
            # is told to use its vector loops instead, whose instructions count as run.
            vg=(env "GLIBC_TUNABLES=$cg_tunables" "${pin_proxy[@]}" valgrind --tool=callgrind
                --dump-instr=no --callgrind-out-file="$work/$name/callgrind.out")
            say "callgrind: $kind, cache $cache"
            phase_started=$SECONDS
            next_port
            case $kind in
                officeswitch) start_officeswitch "$name" "$port" \
                    "$([ "$cache" = on ] && echo "$cache_bytes" || echo 0)" "${vg[@]}" ;;
                haproxy) start_haproxy "$name" "$port" "$cache" 1 "${vg[@]}" ;;
                nginx) start_nginx "$name" "$port" "$cache" off 1 "${vg[@]}" ;;
            esac
            measure "$name" warm 300 load assets --addr "127.0.0.1:$port" \
                --connections "$CG_CONNECTIONS" --requests "$CG_WARMUP" --duration 240
            timeout 60 callgrind_control -d "$started_pid" >"$work/$name/control.log" 2>&1 ||
                { cat "$work/$name/control.log" >&2; die "callgrind_control could not dump $kind"; }
            before=$(node_assets)
            measure "$name" count 300 load assets --addr "127.0.0.1:$port" \
                --connections "$CG_CONNECTIONS" --requests "$CG_REQUESTS" --duration 240
            after=$(node_assets)
            timeout 60 callgrind_control -d "$started_pid" >>"$work/$name/control.log" 2>&1 ||
                { cat "$work/$name/control.log" >&2; die "callgrind_control could not dump $kind"; }
            # The dumps are callgrind.out.1, .2 (each from the previous one on).
            dump=$work/$name/callgrind.out.2
            [ -s "$dump" ] || { ls -l "$work/$name" >&2; die "no second callgrind dump of $kind"; }
            ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")
            [ -n "$ir" ] || die "no instruction total in $dump"
            R[$kind.cg_$cache.ir]=$((ir / CG_REQUESTS))
            [ -z "$CG_KEEP" ] || { mkdir -p "$CG_KEEP" && cp "$dump" "$CG_KEEP/$kind-$cache.out"; }
            R[$kind.cg_$cache.reached]=$((after - before))
            stop_pid "$started_pid"
            say "callgrind: $kind, cache $cache: ${R[$kind.cg_$cache.ir]} instructions per request ($((SECONDS - phase_started)) s)"
        done
    done
    callgrind_secs=$((SECONDS - callgrind_started))
fi
measure_secs=$((SECONDS - measure_started))
if [ -n "$PROFILE" ]; then
    ir=${R[${PROFILE%-*}.cg_${PROFILE##*-}.ir]:-}
    [ -n "$ir" ] || die "PROFILE=$PROFILE names no instance (officeswitch|haproxy|nginx)-(off|on)"
    echo "$PROFILE: $ir instructions per request"
    exit 0
fi
load_ended=$(cut -d' ' -f1-3 /proc/loadavg)

# --- table -------------------------------------------------------------------------------------------
# Every node must have been reached through every proxy (the hash spreads documents).
spread_note=""
for t in officeswitch haproxy nginx; do
    reached=$(tr ',' '\n' <<<"${R[$t.med_ws.nodes]}" | grep -c .)
    [ "$reached" -eq "$NODES" ] || spread_note+=" $t reached $reached of $NODES nodes;"
done

# 12345.6 -> 12,346 (or with $2 decimals).
num() {
    awk -v v="$1" -v d="${2:-0}" 'BEGIN {
        split(sprintf("%." d "f", v), p, ".")
        i = p[1]; out = ""
        while (length(i) > 3) { out = "," substr(i, length(i) - 2) out; i = substr(i, 1, length(i) - 3) }
        print i out (d > 0 ? "." p[2] : "")
    }'
}
num_ms() { echo "$(num "$1" 2) ms"; }
num_kib() { echo "$(num "$1" 1) KiB"; }
num_us() { echo "$(num "$1" 1) µs"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
growth() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f MiB", (b - a) / 1024 }'; }

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
os_version="$(awk -F'"' '/^version/ { print $2; exit }' Cargo.toml) ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src 2>/dev/null || echo ", uncommitted changes in src/"))"
ha_version=$(haproxy -v | awk 'NR == 1 { print $3 }')
ng_version=$(nginx -v 2>&1 | awk -F/ '{ print $2 }')
gib=$(awk -v b="$STREAM_BYTES" 'BEGIN { printf (b == 1073741824 ? "1 GiB" : "%.0f MiB"), b / 1048576 }')
dl_mib=$(awk -v b="$DL_BYTES" 'BEGIN { printf (b == 1048576 ? "1 MiB" : "%g KiB"), b / 1024 }')

# A cache must answer (cache on: at most 1 % of the requests reach a node) and a proxy
# without one must not (cache off: every request reaches a node).
cache_note=""
for t in officeswitch haproxy nginx; do
    if awk -v r="${R[$t-cache.reached]}" -v s="${R[$t-cache.sent]}" 'BEGIN { exit !(r * 100 > s) }'; then
        cache_note+=" with its cache on, $(num "${R[$t-cache.reached]}") of $(num "${R[$t-cache.sent]}") requests through $t reached a node;"
    fi
    if [ "${R[$t.reached]}" -lt "${R[$t.sent]}" ]; then
        cache_note+=" with its cache off, only $(num "${R[$t.reached]}") of $(num "${R[$t.sent]}") requests through $t reached a node;"
    fi
done

row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }
{
    echo "## officeswitch, HAProxy and nginx in front of the same nodes"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $cores cores ($cpu), Linux $(uname -r);" \
        "officeswitch $os_version, HAProxy $ha_version, nginx $ng_version."
    echo "$pin_note No access logs. Caches: 64 MiB in all, entries up to 8 MiB, for all three" \
        "(officeswitch \`[cache] max_bytes = $cache_bytes\`, \`max_entry_bytes = $CACHE_ENTRY_BYTES\`," \
        "\"cache off\" \`max_bytes = 0\`; HAProxy a \`cache\` section, \`total-max-size $CACHE_MB\`," \
        "\`max-object-size $CACHE_ENTRY_BYTES\`; nginx \`proxy_cache\`, \`max_size=${CACHE_MB}m\`, its" \
        "files under the run's temporary directory, no per-entry limit); each cache setting has" \
        "its own instance." \
        "Load average $load_started at the start, $load_ended at the end (other engineers compile on" \
        "this machine: figures vary between runs)."
    echo
    row "" "direct to a node" "officeswitch" "HAProxy" "nginx"
    row "---" "---:" "---:" "---:" "---:"
    cells() { # test field formatter [suffix]: one cell per target
        local test=$1 field=$2 fmt=$3 sfx=${4:-} t out=()
        for t in "${targets[@]}"; do
            [ "$t" = direct ] || t=$t$sfx
            local v=${R[$t.$test.$field]:-}
            if [ -z "$v" ]; then out+=("–"); else out+=("$($fmt "$v")"); fi
        done
        printf '%s\n' "${out[@]}"
    }
    # Direct has no cache: its cache-on cells are "–".
    cached_cells() { # test field formatter
        local t
        echo "–"
        for t in officeswitch haproxy nginx; do
            local v=${R[$t-cache.$1.$2]:-}
            if [ -z "$v" ]; then echo "–"; else "$3" "$v"; fi
        done
    }
    reached_cells() { # suffix ("" or -cache)
        local t
        for t in "${targets[@]}"; do
            if [ "$t" = direct ] && [ -n "$1" ]; then echo "–"; continue; fi
            [ "$t" = direct ] || t=$t$1
            echo "$(num "${R[$t.reached]}") of $(num "${R[$t.sent]}")"
        done
    }
    mapfile -t c < <(cells med_assets rps num)
    row "10 KiB asset, cache off ($CONNECTIONS connections), requests/s" "${c[@]}"
    mapfile -t c < <(cells med_assets p50_ms num_ms)
    row "asset, cache off, p50" "${c[@]}"
    mapfile -t c < <(cells med_assets p99_ms num_ms)
    row "asset, cache off, p99" "${c[@]}"
    mapfile -t c < <(cells med_assets cpu_us num_us)
    row "asset, cache off, CPU time per request (direct: the node's)" "${c[@]}"
    mapfile -t c < <(reached_cells "")
    row "asset, cache off, requests that reached a node (all rounds)" "${c[@]}"
    mapfile -t c < <(cached_cells med_assets rps num)
    row "10 KiB asset, cache on ($CONNECTIONS connections), requests/s" "${c[@]}"
    mapfile -t c < <(cached_cells med_assets p50_ms num_ms)
    row "asset, cache on, p50" "${c[@]}"
    mapfile -t c < <(cached_cells med_assets p99_ms num_ms)
    row "asset, cache on, p99" "${c[@]}"
    mapfile -t c < <(cached_cells med_assets cpu_us num_us)
    row "asset, cache on, CPU time per request" "${c[@]}"
    mapfile -t c < <(reached_cells -cache)
    row "asset, cache on, requests that reached a node (all rounds)" "${c[@]}"
    mapfile -t c < <(cells med_assets errors num)
    mapfile -t c2 < <(cached_cells med_assets errors num)
    row "failed asset requests (cache off / on)" "${c[0]} / –" "${c[1]} / ${c2[1]}" \
        "${c[2]} / ${c2[2]}" "${c[3]} / ${c2[3]}"
    if [ "$CALLGRIND" != 0 ]; then
        for cache in off on; do
            out=("–")
            for t in officeswitch haproxy nginx; do
                v=$(num "${R[$t.cg_$cache.ir]}")
                # A cache hit that reached a node was no hit: say so.
                hits_missed=${R[$t.cg_on.reached]}
                if [ "$cache" = on ] && [ "$((hits_missed * 100))" -gt "$CG_REQUESTS" ]; then
                    v+=" (**$(num "$hits_missed") of $(num "$CG_REQUESTS") reached a node**)"
                fi
                out+=("$v")
            done
            row "instructions per request (callgrind), $([ "$cache" = on ] && echo "cache hit" || echo "pass-through")" "${out[@]}"
        done
    fi
    mapfile -t c < <(cells med_ws rt_s num)
    row "WebSocket round trips/s ($WS_SOCKETS sockets)" "${c[@]}"
    mapfile -t c < <(cells med_ws p99_ms num_ms)
    row "WebSocket round trip, p99" "${c[@]}"
    mapfile -t c < <(cells med_ws cpu_us num_us)
    row "CPU time per round trip (direct: the node's)" "${c[@]}"
    mapfile -t c < <(cells med_ws nodes echo)
    row "WebSockets per node" "${c[@]}"
    mapfile -t c < <(cells down mib_s num)
    row "$gib download, MiB/s" "${c[@]}"
    mapfile -t c < <(cells up mib_s num)
    row "$gib upload, MiB/s" "${c[@]}"
    stream_cells() {
        local test=$1 t
        for t in "${targets[@]}"; do
            if [ -z "${pids[$t]}" ]; then echo "–"; else
                echo "$(mib "${R[$t.$test.rss_peak_kib]}") ($(growth "${R[$t.$test.rss_before_kib]}" "${R[$t.$test.rss_peak_kib]}"))"
            fi
        done
    }
    mapfile -t c < <(stream_cells down)
    row "RSS peak during the download (growth)" "${c[@]}"
    mapfile -t c < <(stream_cells up)
    row "RSS peak during the upload (growth)" "${c[@]}"
    mapfile -t c < <(stream_cells dls)
    row "RSS peak, $DL_CONCURRENCY concurrent $dl_mib downloads (growth)" "${c[@]}"
    mapfile -t c < <(cells dls mib_s num)
    mapfile -t c2 < <(cells dls downloads num)
    row "$DL_CONCURRENCY concurrent $dl_mib downloads, MiB/s (downloads done)" "–" \
        "${c[1]} (${c2[1]})" "${c[2]} (${c2[2]})" "${c[3]} (${c2[3]})"
    mapfile -t c < <(cells idle rss_before_kib mib)
    row "RSS before the idle WebSockets (a fresh instance)" "${c[@]}"
    mapfile -t c < <(cells idle rss_idle_kib mib)
    row "RSS with $(num "$IDLE_SOCKETS") idle WebSockets" "${c[@]}"
    mapfile -t c < <(cells idle pss_idle_kib mib)
    row "PSS with $(num "$IDLE_SOCKETS") idle WebSockets" "${c[@]}"
    mapfile -t c < <(cells idle per_socket_kib num_kib)
    row "per idle WebSocket" "${c[@]}"
    mapfile -t c < <(cells idle rss_after_kib mib)
    row "RSS after closing them" "${c[@]}"
    echo
    echo "Asset and WebSocket rows: the median of $ROUNDS rounds of ${WARMUP}s warm-up + ${DURATION}s" \
        "(the round with the median requests/s or round trips/s; p50, p99 and CPU from that same" \
        "round). The asset is \`/browser/61cf2b4/bundle.js\`, 10 KiB, \`Cache-Control: public," \
        "max-age=31536000, immutable\` and an \`ETag\`; every answer is checked byte for byte. The" \
        "nodes count the asset requests they answer: \"reached a node\" is that count against the" \
        "requests the client had answered (warm-up included), over all rounds. The large downloads" \
        "say \`Cache-Control: no-store\` and go through the cache-off instances, so the RSS rows" \
        "measure streaming; the idle WebSockets go through fresh cache-off instances started after" \
        "the downloads. RSS sums every process of the proxy (nginx: master and workers, so" \
        "shared pages count once per process; PSS splits them). The downloads and the upload are" \
        "checked byte for byte, every WebSocket echo is compared with what was sent, and" \
        "officeswitch's WebSockets carry the WOPISrc it gave the editor at open" \
        "(\`/cool/<WOPISrc>/ws?WOPISrc=...\`); HAProxy's and nginx's carry Nextcloud's."
    if [ "$CALLGRIND" != 0 ]; then
        echo "Instructions per request: a separate instance of each proxy under" \
            "\`valgrind --tool=callgrind\` (HAProxy \`nbthread 1\`, nginx \`master_process off\`" \
            "with one worker, officeswitch one runtime worker), $(num "$CG_WARMUP") asset requests" \
            "over $CG_CONNECTIONS connections, a dump (\`callgrind_control -d\`), $(num "$CG_REQUESTS")" \
            "more, a second dump: its total (user-space instructions, \"Ir\") over $(num "$CG_REQUESTS")." \
            "Start-up and warm-up stay in the first dump; the load client and the nodes are not" \
            "under valgrind. Cache hit: the cache-on settings, the warm-up fills the cache." \
            "glibc's memcpy and memset are kept off \`rep movsb\`/\`rep stosb\` (\`GLIBC_TUNABLES\`)" \
            "for all three, as callgrind counts every byte those move as an instruction."
    fi
    [ -z "$spread_note" ] || echo "Warning:$spread_note"
    [ -z "$cache_note" ] || echo "**Warning:**$cache_note"
    echo
    echo "Issue 15 targets for officeswitch:"
    echo
    target_line() { # description, pass (0/1)
        if [ "$2" -eq 1 ]; then echo "- met: $1"; else echo "- **missed**: $1"; fi
    }
    better() { # key-prefix-haproxy key-prefix-nginx test field max|min
        awk -v a="${R[$1.$3.$4]}" -v b="${R[$2.$3.$4]}" -v m="$5" \
            'BEGIN { print (m == "max" ? (a > b ? a : b) : (a < b ? a : b)) }'
    }
    # check LABEL OURS PEER FACTOR max|min UNIT DECIMALS PEER_NAME: ours >= factor x peer
    # (max) or ours <= factor x peer (min).
    check() {
        local ok
        ok=$(awk -v o="$2" -v p="$3" -v f="$4" -v m="$5" \
            'BEGIN { print (m == "max" ? o >= f * p : o <= f * p) ? 1 : 0 }')
        local unit=${6:+ $6}
        target_line "$1: officeswitch $(num "$2" "$7")$unit, $8 $(num "$3" "$7")$unit" "$ok"
    }
    check "cache on, requests/s at least the better peer's" "${R[officeswitch-cache.med_assets.rps]}" \
        "$(better haproxy-cache nginx-cache med_assets rps max)" 1 max "req/s" 0 "better of HAProxy and nginx"
    check "cache on, p99 at most 1.1x the better peer's" "${R[officeswitch-cache.med_assets.p99_ms]}" \
        "$(better haproxy-cache nginx-cache med_assets p99_ms min)" 1.1 min "ms" 2 "better of HAProxy and nginx"
    if [ "$CALLGRIND" != 0 ]; then
        hit_ok=$(awk -v o="${R[officeswitch.cg_on.ir]}" -v p="${R[haproxy.cg_on.ir]}" 'BEGIN { print (o < p) ? 1 : 0 }')
        target_line "cache on, instructions per cached request under HAProxy's: officeswitch $(num "${R[officeswitch.cg_on.ir]}"), HAProxy $(num "${R[haproxy.cg_on.ir]}")" "$hit_ok"
        check "cache off, instructions per request at most 1.3x HAProxy's" "${R[officeswitch.cg_off.ir]}" \
            "${R[haproxy.cg_off.ir]}" 1.3 min "" 0 "HAProxy"
    else
        echo "- not measured (CALLGRIND=0): instructions per request, cache hit and pass-through"
    fi
    check "cache off, requests/s at least 0.95x HAProxy's" "${R[officeswitch.med_assets.rps]}" \
        "${R[haproxy.med_assets.rps]}" 0.95 max "req/s" 0 "HAProxy"
    check "cache off, p99 at most 1.2x HAProxy's" "${R[officeswitch.med_assets.p99_ms]}" \
        "${R[haproxy.med_assets.p99_ms]}" 1.2 min "ms" 2 "HAProxy"
    dls_mib=$(awk -v k="${R[officeswitch.dls.rss_peak_kib]}" 'BEGIN { printf "%.1f", k / 1024 }')
    target_line "$DL_CONCURRENCY concurrent $dl_mib downloads, RSS peak at most 40 MiB: $dls_mib MiB" \
        "$(awk -v m="$dls_mib" 'BEGIN { print (m <= 40) ? 1 : 0 }')"
    check "$gib download at least HAProxy's MiB/s" "${R[officeswitch.down.mib_s]}" \
        "${R[haproxy.down.mib_s]}" 1 max "MiB/s" 0 "HAProxy"
    check "$gib upload at least HAProxy's MiB/s" "${R[officeswitch.up.mib_s]}" \
        "${R[haproxy.up.mib_s]}" 1 max "MiB/s" 0 "HAProxy"
    check "WebSocket round trips/s at least the better peer's" "${R[officeswitch.med_ws.rt_s]}" \
        "$(better haproxy nginx med_ws rt_s max)" 1 max "rt/s" 0 "better of HAProxy and nginx"
    check "idle WebSocket at most 4 KiB each" "${R[officeswitch.idle.per_socket_kib]}" 4 1 min "KiB" 1 "target"
    echo
    echo "Run time: $((SECONDS - run_started)) s in all, of which ${build_secs} s building and" \
        "${measure_secs} s measuring (${callgrind_secs} s of it under callgrind)" \
        "(\`bash benches/compare/run.sh\`; ROUNDS=$ROUNDS, DURATION=${DURATION}s," \
        "CONNECTIONS=$CONNECTIONS, IDLE_SOCKETS=$IDLE_SOCKETS, CALLGRIND=$CALLGRIND)."
} >"$work/table.md"

cp "$work/table.md" "$OUT"
cat "$work/table.md"
say "written to ${OUT#"$repo"/}"
