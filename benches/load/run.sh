#!/usr/bin/env bash
# Load script: a small static asset through officeswitch vs. straight from the Collabora
# stand-in, with wrk, on loopback. Bounded: two warm-ups and two measured runs.
#
#   bash benches/load/run.sh                    # -t2 -c32 -d10s
#   DURATION=30s CONNECTIONS=64 bash benches/load/run.sh
#
# Starts the lab (examples/lab.rs: stand-in editors + officeswitch in one process) on the
# addresses of officeswitch.toml, or on free ports from a temporary settings file when
# those are taken, and stops it on exit. Installs wrk with apt-get when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ASSET=${ASSET:-/browser/61cf2b4/bundle.js}

work=$(mktemp -d)
lab_pid=
cleanup() {
    if [ -n "$lab_pid" ] && kill -0 "$lab_pid" 2>/dev/null; then
        kill -INT "$lab_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$lab_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$lab_pid" 2>/dev/null || true
        wait "$lab_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- wrk -------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    echo "wrk is missing: installing it with apt-get" >&2
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get install -y wrk >/dev/null ||
        { "${as_root[@]}" apt-get update >/dev/null && "${as_root[@]}" apt-get install -y wrk >/dev/null; }
fi

# --- lab -------------------------------------------------------------------------------
cargo build --release --example lab

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        port_busy "$port" || { echo "$port"; return; }
    done
    echo "no free port found" >&2
    exit 1
}

os_port=8080 cool_port=9980 oo_port=8000
config=officeswitch.toml
if port_busy $os_port || port_busy $cool_port || port_busy $oo_port; then
    os_port=$(free_port) cool_port=$(free_port) oo_port=$(free_port)
    config=$work/officeswitch.toml
    cat >"$config" <<EOF
public_url = "http://127.0.0.1:$os_port"
listen = "127.0.0.1:$os_port"
rules_dir = "$repo/rules"
state_dir = "$work/state"
[keys]
proof_key = "$work/state/keys/proof_key.pem"
generate_missing = true
[log]
level = "info"
[[pool]]
name = "collabora"
kind = "collabora"
nodes = ["http://127.0.0.1:$cool_port"]
[[pool]]
name = "onlyoffice"
kind = "onlyoffice"
nodes = ["http://127.0.0.1:$oo_port"]
EOF
    echo "8080/9980/8000 taken: lab on $os_port (officeswitch), $cool_port, $oo_port" >&2
fi

target/release/examples/lab --config "$config" >"$work/lab.log" 2>&1 &
lab_pid=$!
ready=
for _ in $(seq 100); do
    if curl -fs -o /dev/null "http://127.0.0.1:$os_port/readyz"; then
        ready=1
        break
    fi
    kill -0 "$lab_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "the lab did not become ready; its log:" >&2
    cat "$work/lab.log" >&2
    exit 1
fi

# --- runs ------------------------------------------------------------------------------
direct=http://127.0.0.1:$cool_port$ASSET
through=http://127.0.0.1:$os_port$ASSET
for url in "$direct" "$through"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
    [ "$code" = 200 ] || { echo "GET $url answered $code" >&2; exit 1; }
done

# Runs wrk on $1 and prints "requests/s p50_ms p99_ms errors".
measure() {
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$1" >/dev/null
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$1" >"$work/wrk.out"
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
            return v + 0
        }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
        END { printf "%s %s %s %d\n", rps, p50, p99, errors + 0 }
    ' "$work/wrk.out"
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION GET $ASSET ($(nproc) cores, $(date -u +%F))" >&2
read -r d_rps d_p50 d_p99 d_err < <(measure "$direct")
read -r o_rps o_p50 o_p99 o_err < <(measure "$through")

printf '\n| path | requests/s | p50 | p99 | errors |\n|---|---|---|---|---|\n'
printf '| direct to the Collabora stand-in | %.0f | %.2f ms | %.2f ms | %d |\n' \
    "$d_rps" "$d_p50" "$d_p99" "$d_err"
printf '| through officeswitch | %.0f | %.2f ms | %.2f ms | %d |\n' \
    "$o_rps" "$o_p50" "$o_p99" "$o_err"
awk -v dr="$d_rps" -v or="$o_rps" -v d50="$d_p50" -v o50="$o_p50" -v d99="$d_p99" -v o99="$o_p99" \
    'BEGIN { printf "| officeswitch / direct | %.2f | %.2fx | %.2fx | |\n", or / dr, o50 / d50, o99 / d99 }'

if [ "$d_err" -ne 0 ] || [ "$o_err" -ne 0 ]; then
    echo "some requests failed (see the errors column)" >&2
    exit 1
fi
