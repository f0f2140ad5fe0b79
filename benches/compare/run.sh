#!/usr/bin/env bash
# officeswitch, HAProxy and nginx in front of the same stand-in Collabora nodes, in one
# run, measured by one Rust load client (examples/loadpeer.rs). Prints a Markdown table
# and writes it to benches/compare/last-run.md.
#
#   bash benches/compare/run.sh
#   ROUNDS=3 DURATION=10 bash benches/compare/run.sh
#
# What it does, in order: installs haproxy and nginx with apt-get when they are missing;
# builds officeswitch and the load peer (release); starts NODES stand-in Collabora nodes,
# then officeswitch (one Collabora pool of those nodes), HAProxy (`balance url_param
# WOPISrc` + `hash-type consistent`) and nginx (`hash $arg_WOPISrc consistent`), all on
# free 127.0.0.1 ports; then measures each proxy and "direct" (the client straight to the
# first node): small-asset requests/s, p50, p99 (ROUNDS rounds, best kept); WebSocket
# round trips/s; a 1 GiB download and a 1 GiB upload (MiB/s, RSS peak of the proxy's
# processes); RSS with IDLE_SOCKETS idle WebSockets.
#
# Bounded: every load step has a duration or a timeout, every wait loop a count. Loopback
# only. Every process it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
here=$repo/benches/compare
export PATH=$PATH:/usr/sbin:/sbin

NODES=${NODES:-2}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-2}
DURATION=${DURATION:-8}
WS_SOCKETS=${WS_SOCKETS:-32}
IDLE_SOCKETS=${IDLE_SOCKETS:-9000}
STREAM_BYTES=${STREAM_BYTES:-1073741824}
OUT=${OUT:-$here/last-run.md}

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

# --- HAProxy and nginx --------------------------------------------------------------------
missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v nginx >/dev/null || missing+=(nginx)
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
say "building officeswitch and examples/loadpeer (release)"
cargo build --release --quiet --bin officeswitch --example loadpeer
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
        curl -fs -o /dev/null "$1" && return 0
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

# --- nodes --------------------------------------------------------------------------------------
nodes=()
node_pids=()
for i in $(seq "$NODES"); do
    next_port
    "$peer" node --listen "127.0.0.1:$port" --name "n$i" >"$work/node$i.log" 2>&1 &
    children+=($!)
    node_pids+=($!)
    nodes+=("127.0.0.1:$port")
    wait_http "http://127.0.0.1:$port/hosting/capabilities" 100 $! ||
        { cat "$work/node$i.log" >&2; die "node n$i did not start"; }
done

# --- officeswitch --------------------------------------------------------------------------------
next_port
os_port=$port
toml_nodes=$(printf '"http://%s", ' "${nodes[@]}")
mkdir -p "$work/state/keys"
fill "$here/officeswitch.toml.in" "$work/officeswitch.toml" \
    PORT="$os_port" WORK="$work" HERE="$here" NODES="${toml_nodes%, }"
"$work/bin/officeswitch" --config "$work/officeswitch.toml" >"$work/officeswitch.log" 2>&1 &
os_pid=$!
children+=("$os_pid")
wait_http "http://127.0.0.1:$os_port/readyz" 300 "$os_pid" ||
    { cat "$work/officeswitch.log" >&2; die "officeswitch did not become ready"; }

# --- HAProxy ---------------------------------------------------------------------------------------
next_port
ha_port=$port
servers=""
for i in $(seq "$NODES"); do
    servers+="    server n$i ${nodes[$((i - 1))]} check inter 5s"$'\n'
done
fill "$here/haproxy.cfg.in" "$work/haproxy.cfg" \
    PORT="$ha_port" WORKERS="$(nproc)" SERVERS="${servers%$'\n'}"
haproxy -c -q -f "$work/haproxy.cfg" || die "haproxy rejects $work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
ha_pid=$!
children+=("$ha_pid")
wait_http "http://127.0.0.1:$ha_port/hosting/capabilities" 100 "$ha_pid" ||
    { cat "$work/haproxy.log" >&2; die "HAProxy did not start"; }

# --- nginx -----------------------------------------------------------------------------------------
next_port
ng_port=$port
servers=""
for i in $(seq "$NODES"); do
    servers+="        server ${nodes[$((i - 1))]};"$'\n'
done
mkdir -p "$work/nginx-temp"
fill "$here/nginx.conf.in" "$work/nginx.conf" \
    PORT="$ng_port" WORK="$work" SERVERS="${servers%$'\n'}"
nginx -q -t -p "$work" -c "$work/nginx.conf" 2>"$work/nginx-check.log" ||
    { cat "$work/nginx-check.log" >&2; die "nginx rejects $work/nginx.conf"; }
nginx -p "$work" -c "$work/nginx.conf" >"$work/nginx.log" 2>&1 &
ng_pid=$!
children+=("$ng_pid")
wait_http "http://127.0.0.1:$ng_port/hosting/capabilities" 100 "$ng_pid" ||
    { cat "$work/nginx.log" "$work/nginx-error.log" >&2; die "nginx did not start"; }
ng_workers=$(pgrep -P "$ng_pid" | paste -sd, -)
[ -n "$ng_workers" ] || die "nginx has no worker processes"
# Workers outlive a killed master: stop them too.
IFS=, read -ra worker_pids <<<"$ng_workers"
children+=("${worker_pids[@]}")

# --- targets -----------------------------------------------------------------------------------------
targets=(direct officeswitch haproxy nginx)
declare -A addr=([direct]=${nodes[0]} [officeswitch]=127.0.0.1:$os_port
    [haproxy]=127.0.0.1:$ha_port [nginx]=127.0.0.1:$ng_port)
# officeswitch's editor traffic carries the WOPISrc officeswitch gave the editor at open.
declare -A mode=([direct]=host [officeswitch]=open [haproxy]=host [nginx]=host)
declare -A pids=([direct]="" [officeswitch]=$os_pid [haproxy]=$ha_pid [nginx]="$ng_pid,$ng_workers")
# Whose CPU time a request costs: the proxy's processes; for "direct", the node's.
declare -A cpu_pids=([direct]=${node_pids[0]} [officeswitch]=$os_pid [haproxy]=$ha_pid
    [nginx]="$ng_pid,$ng_workers")
declare -A R=()

for t in "${targets[@]}"; do
    node=$(curl -fs -o /dev/null -D - "http://${addr[$t]}/browser/61cf2b4/bundle.js" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-loadpeer-node" { print $2 }')
    [ -n "$node" ] || die "$t does not reach a node"
done

# Runs the load peer with a time limit; stores its key=value fields as R[target.test.key].
measure() {
    local target=$1 test=$2 limit=$3 line kv
    shift 3
    line=$(timeout "$limit" "$peer" "$@" 2>>"$work/peer.log") ||
        { tail -n 20 "$work/peer.log" >&2; die "$test through $target failed"; }
    for kv in $line; do
        R[$target.$test.${kv%%=*}]=${kv#*=}
    done
}

# Keeps R[target.best.*] from the test whose `$3` field is largest.
keep_best() {
    local target=$1 test=$2 field=$3 key
    if [ -z "${R[$target.best_$test.$field]:-}" ] ||
        awk -v a="${R[$target.$test.$field]}" -v b="${R[$target.best_$test.$field]}" 'BEGIN { exit !(a > b) }'; then
        for key in "${!R[@]}"; do
            case $key in "$target.$test."*) R[$target.best_$test.${key#"$target.$test."}]=${R[$key]} ;; esac
        done
    fi
}

load_started=$(cut -d' ' -f1-3 /proc/loadavg)
measure_started=$SECONDS
limit=$((${WARMUP%.*} + ${DURATION%.*} + 60))
for round in $(seq "$ROUNDS"); do
    for t in "${targets[@]}"; do
        say "round $round: small asset through $t"
        measure "$t" assets "$limit" load assets --addr "${addr[$t]}" \
            --connections "$CONNECTIONS" --warmup "$WARMUP" --duration "$DURATION" \
            --pids "${cpu_pids[$t]}"
        keep_best "$t" assets rps
    done
    for t in "${targets[@]}"; do
        say "round $round: WebSocket round trips through $t"
        measure "$t" ws "$limit" load ws --addr "${addr[$t]}" --wopisrc "${mode[$t]}" \
            --seed "ws$round" --sockets "$WS_SOCKETS" --warmup "$WARMUP" --duration "$DURATION" \
            --pids "${cpu_pids[$t]}"
        keep_best "$t" ws rt_s
    done
done
for t in "${targets[@]}"; do
    watch=()
    [ -z "${pids[$t]}" ] || watch=(--pids "${pids[$t]}")
    say "$STREAM_BYTES-byte download and upload through $t"
    measure "$t" down 180 load download --addr "${addr[$t]}" --bytes "$STREAM_BYTES" "${watch[@]}"
    measure "$t" up 180 load upload --addr "${addr[$t]}" --wopisrc "${mode[$t]}" \
        --bytes "$STREAM_BYTES" "${watch[@]}"
done
for t in officeswitch haproxy nginx; do
    say "$IDLE_SOCKETS idle WebSockets through $t"
    measure "$t" idle 300 idle --addr "${addr[$t]}" --wopisrc "${mode[$t]}" --seed idle \
        --sockets "$IDLE_SOCKETS" --pids "${pids[$t]}"
done
measure_secs=$((SECONDS - measure_started))
load_ended=$(cut -d' ' -f1-3 /proc/loadavg)

# --- table -------------------------------------------------------------------------------------------
# Every node must have been reached through every proxy (the hash spreads documents).
spread_note=""
for t in officeswitch haproxy nginx; do
    reached=$(tr ',' '\n' <<<"${R[$t.best_ws.nodes]}" | grep -c .)
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

row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }
{
    echo "## officeswitch, HAProxy and nginx in front of the same nodes"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($cpu), Linux $(uname -r);" \
        "officeswitch $os_version, HAProxy $ha_version, nginx $ng_version."
    echo "Worker budget: officeswitch's tokio runtime has one worker per core ($(nproc))," \
        "HAProxy \`nbthread $(nproc)\`, nginx \`worker_processes auto\` ($(tr ',' '\n' <<<"$ng_workers" | grep -c .) workers);" \
        "no access logs. The $NODES stand-in nodes (one runtime worker each) and the load client" \
        "(two) run on the same cores, so every figure is a share of one small machine." \
        "Load average $load_started at the start, $load_ended at the end (other engineers compile on" \
        "this machine: figures vary between runs)."
    echo
    row "" "direct to a node" "officeswitch" "HAProxy" "nginx"
    row "---" "---:" "---:" "---:" "---:"
    cells() { # field of test, formatter...
        local test=$1 field=$2 fmt=$3 t out=()
        for t in "${targets[@]}"; do
            local v=${R[$t.$test.$field]:-}
            if [ -z "$v" ]; then out+=("–"); else out+=("$($fmt "$v")"); fi
        done
        printf '%s\n' "${out[@]}"
    }
    mapfile -t c < <(cells best_assets rps num)
    row "small asset ($CONNECTIONS connections), requests/s" "${c[@]}"
    mapfile -t c < <(cells best_assets p50_ms 'num_ms')
    row "small asset, p50" "${c[@]}"
    mapfile -t c < <(cells best_assets p99_ms 'num_ms')
    row "small asset, p99" "${c[@]}"
    mapfile -t c < <(cells best_assets cpu_us 'num_us')
    row "CPU time per request (direct: the node's)" "${c[@]}"
    mapfile -t c < <(cells best_assets errors num)
    row "failed requests" "${c[@]}"
    mapfile -t c < <(cells best_ws rt_s num)
    row "WebSocket round trips/s ($WS_SOCKETS sockets)" "${c[@]}"
    mapfile -t c < <(cells best_ws p99_ms 'num_ms')
    row "WebSocket round trip, p99" "${c[@]}"
    mapfile -t c < <(cells best_ws cpu_us 'num_us')
    row "CPU time per round trip (direct: the node's)" "${c[@]}"
    mapfile -t c < <(cells best_ws nodes echo)
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
    mapfile -t c < <(cells idle rss_before_kib mib)
    row "RSS before the idle WebSockets" "${c[@]}"
    mapfile -t c < <(cells idle rss_idle_kib mib)
    row "RSS with $(num "$IDLE_SOCKETS") idle WebSockets" "${c[@]}"
    mapfile -t c < <(cells idle pss_idle_kib mib)
    row "PSS with $(num "$IDLE_SOCKETS") idle WebSockets" "${c[@]}"
    mapfile -t c < <(cells idle per_socket_kib 'num_kib')
    row "per idle WebSocket" "${c[@]}"
    mapfile -t c < <(cells idle rss_after_kib mib)
    row "RSS after closing them" "${c[@]}"
    echo
    echo "Asset and WebSocket rows: best of $ROUNDS rounds of ${WARMUP}s warm-up + ${DURATION}s" \
        "(p50/p99 from the same round). RSS sums every process of the proxy (nginx: master and" \
        "workers, so shared pages count once per process; PSS splits them). The download and" \
        "upload are checked byte for byte, every WebSocket echo is compared with what was sent," \
        "and officeswitch's WebSockets carry the WOPISrc it gave the editor at open" \
        "(\`/cool/<WOPISrc>/ws?WOPISrc=...\`); HAProxy's and nginx's carry Nextcloud's."
    [ -z "$spread_note" ] || echo "Warning:$spread_note"
    echo
    echo "Issue 6 targets for officeswitch:"
    echo
    target_line() { # description, pass (0/1)
        if [ "$2" -eq 1 ]; then echo "- met: $1"; else echo "- **missed**: $1"; fi
    }
    best_peer() { # test field max|min
        awk -v a="${R[haproxy.$1.$2]}" -v b="${R[nginx.$1.$2]}" -v m="$3" \
            'BEGIN { print (m == "max" ? (a > b ? a : b) : (a < b ? a : b)) }'
    }
    check() { # test field max|min label unit
        local peer ours ok
        peer=$(best_peer "$1" "$2" "$3")
        ours=${R[officeswitch.$1.$2]}
        ok=$(awk -v o="$ours" -v p="$peer" -v m="$3" 'BEGIN { print (m == "max" ? o >= p : o <= p) ? 1 : 0 }')
        target_line "$4: officeswitch $(num "$ours" "$6") $5, better of HAProxy and nginx $(num "$peer" "$6") $5" "$ok"
    }
    check best_assets rps max "small-asset requests/s" "req/s" 0
    check best_assets p99_ms min "small-asset p99 no worse" "ms" 2
    check best_ws rt_s max "WebSocket round trips/s" "rt/s" 0
    check best_ws p99_ms min "WebSocket p99 no worse" "ms" 2
    check down mib_s max "download throughput" "MiB/s" 0
    check up mib_s max "upload throughput" "MiB/s" 0
    idle_mib=$(awk -v k="${R[officeswitch.idle.rss_idle_kib]}" 'BEGIN { printf "%.1f", k / 1024 }')
    target_line "$(num "$IDLE_SOCKETS") idle WebSockets under 90 MiB RSS: $idle_mib MiB" \
        "$(awk -v m="$idle_mib" 'BEGIN { print (m < 90) ? 1 : 0 }')"
    for test in down up; do
        grown=$(awk -v a="${R[officeswitch.$test.rss_before_kib]}" -v b="${R[officeswitch.$test.rss_peak_kib]}" \
            'BEGIN { printf "%.1f", (b - a) / 1024 }')
        target_line "flat memory during the $gib $([ $test = down ] && echo download || echo upload) (growth under 10 MiB): +$grown MiB" \
            "$(awk -v g="$grown" 'BEGIN { print (g < 10) ? 1 : 0 }')"
    done
    echo
    echo "Run time: $((SECONDS - run_started)) s in all, of which ${build_secs} s building and" \
        "${measure_secs} s measuring (\`bash benches/compare/run.sh\`; ROUNDS=$ROUNDS," \
        "DURATION=${DURATION}s, IDLE_SOCKETS=$IDLE_SOCKETS)."
} >"$work/table.md"

cp "$work/table.md" "$OUT"
cat "$work/table.md"
say "written to ${OUT#"$repo"/}"
