#!/usr/bin/env bash
# Soak script (issue 19): the real Collabora editor page's asset requests through officeswitch,
# the node's 404s mixed in, PAGES page loads' worth, over keep-alive connections as a browser
# makes them; then the same page loads straight to the nodes. Fails on any 502. Writes its
# figures to benches/soak/last-run.md.
#
#   bash benches/soak/run.sh
#   PAGES=20 LANES=6 bash benches/soak/run.sh
#   OFFICESWITCH_BIN=/path/to/officeswitch bash benches/soak/run.sh   # a binary built elsewhere
#
# Why: coolwsd 22.05 answers its file server's HTTP/1.1 responses (its 404s, and the page's
# l10n JSON) without `Connection: close` and closes the socket right after. A proxy that puts
# such a connection back in its pool and sends the next request on it gets "connection closed
# before message completed"; officeswitch sends an idempotent bodiless request once more on a
# fresh connection (`officeswitch_upstream_retries_total` counts these).
#
# What it does, in order: builds the real Collabora Online (`../shared/real-collabora/build.sh`,
# cached) and officeswitch (release); starts NODES coolwsd on free 127.0.0.1 ports with the
# options a hoster sets (`server_name` = officeswitch's host:port, the WOPI alias group naming
# it), then officeswitch with one Collabora pool of them (`officeswitch.toml.in`, `rules/`);
# loads one page straight from each node as a warm-up (not counted); then PAGES page loads
# through officeswitch and PAGES straight to the nodes (alternating). A page load is:
#   - the page: through officeswitch, the open form POSTed to the merged discovery's `urlsrc`
#     and its 307 followed (the form re-posted to `/browser/<hash>/cool.html?WOPISrc=...`);
#     straight to a node, the form POSTed to its `cool.html?WOPISrc=...`. One document per
#     page load, so the pages spread over the nodes;
#   - every `/browser/...` URL the page it got references (`src=`, `href=`) in document order,
#     plus the two stylesheets its inline script adds on a desktop browser (device-desktop.css,
#     and branding-desktop.css, which this build lacks: 404, as are branding.css and
#     branding.js), spread over LANES keep-alive connections (one curl per connection, each
#     given its URLs on one command line, LANES at once: a browser's 6 connections per host).
# Counts statuses per class (2xx, 404, 502, other) for each path, reads officeswitch's
# /metrics before and after, and exits 1 on any 502, any other status or a page that did not
# load.
#
# Bounded: every build and start has a timeout, every curl a --max-time, each pass at most
# PASS_LIMIT seconds. Loopback only. Every process it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
here=$repo/benches/soak
export PATH=$PATH:/usr/sbin:/sbin

PAGES=${PAGES:-100}
LANES=${LANES:-6}
NODES=${NODES:-2}
PASS_LIMIT=${PASS_LIMIT:-1800}
OUT=${OUT:-$here/last-run.md}
SHARED=${SHARED:-$repo/../shared}
OFFICESWITCH_BIN=${OFFICESWITCH_BIN:-}
# What a desktop browser sends with every request that matters to a server.
UA="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
BROWSER_HEADERS=(-H "User-Agent: $UA" -H "Accept-Encoding: gzip, deflate, br" -H "Accept-Language: en")
HOST_ORIGIN=https://cloud.example.org

run_started=$SECONDS
work=$(mktemp -d)
children=()
node_dirs=()

say() { echo "soak: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# shellcheck disable=SC2317 # session_pids, stop_node and cleanup run from the EXIT trap
# Every process of coolwsd's session (run.sh starts it with setsid: forkit and kits join it).
session_pids() { ps -eo pid=,sid= | awk -v s="$1" '$2 == s { print $1 }'; }

# shellcheck disable=SC2317
stop_node() {
    local pid left
    pid=$(cat "$1/coolwsd.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        left=$(session_pids "$pid")
        [ -n "$left" ] || return 0
        sleep 0.1
    done
    say "node $pid did not stop in 10 s: killing $(tr '\n' ' ' <<<"$left")"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
}

# shellcheck disable=SC2317
cleanup() {
    local pid dir
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
    for dir in "${node_dirs[@]}"; do
        stop_node "$dir"
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- builds ---------------------------------------------------------------------------------
build_started=$SECONDS
[ -f "$SHARED/real-collabora/build.sh" ] || die "no $SHARED/real-collabora/build.sh (set SHARED)"
# apt-get only when a package build.sh needs is missing (the build is cached otherwise).
packages=(libreofficekit-dev libreoffice-core libreoffice-writer libreoffice-calc
    libreoffice-impress libpoco-dev libcap-dev libpam0g-dev libcppunit-dev libzstd-dev libpng-dev
    libssl-dev python3-polib python3-lxml autoconf automake libtool m4 libcap2-bin cpio fontconfig
    openssh-client make g++ pkg-config xz-utils npm)
skip_apt=1
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || { skip_apt=; break; }
done
say "real Collabora: build.sh (cached when up to date; a first build takes 6-10 minutes)"
cool_dir=$(SKIP_APT=$skip_apt timeout 3600 bash "$SHARED/real-collabora/build.sh" 2>"$work/cool-build.log" | tail -n 1) ||
    { tail -n 30 "$work/cool-build.log" >&2; die "the real Collabora build failed"; }
[ -x "$cool_dir/src/coolwsd" ] || die "no coolwsd in $cool_dir/src"

mkdir "$work/bin"
if [ -n "$OFFICESWITCH_BIN" ]; then
    say "officeswitch: $OFFICESWITCH_BIN (not built by this script)"
    cp "$OFFICESWITCH_BIN" "$work/bin/officeswitch"
else
    say "building officeswitch (release)"
    timeout 3600 cargo build --release --quiet --bin officeswitch
    # A private copy: others may rebuild the target directory while this runs.
    cp "${CARGO_TARGET_DIR:-$repo/target}/release/officeswitch" "$work/bin/"
fi
build_secs=$((SECONDS - build_started))

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
        curl -fs -o /dev/null --max-time 5 "$1" && return 0
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

# Percent-encodes $1 as a query value (ASCII).
enc() {
    local s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9._~-]) out+=$c ;;
        *) printf -v c '%%%02X' "'$c" && out+=$c ;;
        esac
    done
    printf '%s' "$out"
}

# 12345.6 -> 12,346
num() {
    awk -v v="$1" 'BEGIN {
        i = sprintf("%.0f", v); out = ""
        while (length(i) > 3) { out = "," substr(i, length(i) - 2) out; i = substr(i, 1, length(i) - 3) }
        print i out
    }'
}

# --- officeswitch's addresses, then the nodes -------------------------------------------------
next_port
os_port=$port
next_port
admin_port=$port
public=http://127.0.0.1:$os_port

nodes=()
for i in $(seq "$NODES"); do
    next_port
    dir=$work/node$i
    mkdir -p "$dir"
    node_dirs+=("$dir")
    say "starting coolwsd n$i on 127.0.0.1:$port (server_name 127.0.0.1:$os_port)"
    # The options a hoster sets behind officeswitch (tests/integration/support/real_collabora.rs).
    PORT=$port SERVER_NAME=127.0.0.1:$os_port RUN_DIR=$dir REAL_COLLABORA_DIR=$cool_dir \
        timeout 100 bash "$SHARED/real-collabora/run.sh" \
        "--o:storage.wopi.alias_groups[@mode]=groups" \
        "--o:storage.wopi.alias_groups.group[0].host=http://127.0.0.1:$os_port" \
        "--o:storage.wopi.alias_groups.group[0].host[@allow]=true" >"$dir/run.out" 2>&1 ||
        { cat "$dir/run.out" >&2; tail -n 20 "$dir/coolwsd.log" >&2; die "coolwsd n$i did not start"; }
    nodes+=("127.0.0.1:$port")
done

# --- officeswitch ------------------------------------------------------------------------------
toml_nodes=$(printf '"http://%s", ' "${nodes[@]}")
mkdir -p "$work/state/keys"
head -c 24 /dev/urandom | base64 >"$work/admin.token"
chmod 600 "$work/admin.token"
fill "$here/officeswitch.toml.in" "$work/officeswitch.toml" \
    PORT="$os_port" ADMIN_PORT="$admin_port" WORK="$work" HERE="$here" NODES="${toml_nodes%, }"
"$work/bin/officeswitch" --config "$work/officeswitch.toml" >"$work/officeswitch.log" 2>&1 &
os_pid=$!
children+=("$os_pid")
wait_http "$public/readyz" 300 "$os_pid" ||
    { cat "$work/officeswitch.log" >&2; die "officeswitch did not become ready"; }
metrics=http://127.0.0.1:$admin_port/metrics
retries() {
    curl -fs --max-time 10 "$metrics" | awk '$1 == "officeswitch_upstream_retries_total" { print $2; f = 1 } END { if (!f) print "?" }'
}
[ "$(retries)" != "?" ] || die "no officeswitch_upstream_retries_total in $metrics"
# Every node's discovery must be in officeswitch's pool before the first open.
pool_ready=
for _ in $(seq 300); do
    up=$(curl -fs --max-time 10 "$metrics" | awk '/^officeswitch_node_up\{/ && $NF == 1' | grep -c . || true)
    [ "$up" -ge "$NODES" ] && { pool_ready=1; break; }
    sleep 0.1
done
[ -n "$pool_ready" ] || say "warning: officeswitch's metrics do not show $NODES nodes up; going on"

# The node's page path (`urlsrc` of its discovery, on server_name) and versions.
discovery=$(curl -fs --max-time 10 "http://${nodes[0]}/hosting/discovery") || die "no discovery from n1"
urlsrc=$(awk 'match($0, /urlsrc="[^"]*cool\.html\?[^"]*"/) { print substr($0, RSTART + 8, RLENGTH - 9); exit }' <<<"$discovery")
page_path=/${urlsrc#http://*/}
page_path=${page_path%%\?*}
if [ -z "$urlsrc" ] || [ "${page_path#/browser/}" = "$page_path" ]; then
    die "no cool.html urlsrc in discovery"
fi
capabilities=$(curl -fs --max-time 10 "http://${nodes[0]}/hosting/capabilities")
cool_version=$(sed -n 's/.*"productVersion" *: *"\([^"]*\)".*/\1/p' <<<"$capabilities")
cool_hash=$(sed -n 's/.*"productVersionHash" *: *"\([^"]*\)".*/\1/p' <<<"$capabilities")

# --- page loads -----------------------------------------------------------------------------
# The asset paths of page $1 (root-relative), in document order: every /browser/ src= or
# href=, then the stylesheets its inline script adds on a desktop browser.
asset_paths() {
    grep -oE '(src|href)="/browser/[^"]*"' "$1" | sed -E 's/^(src|href)="//; s/"$//; s/&amp;/\&/g'
    grep -oE "'/browser/[^']*/device-desktop\.css'" "$1" | tr -d "'"
    sed -n "s/.*'\(\/browser\/[^']*\/\)' *+ *theme_prefix *+ *'\(branding-desktop\.css\)'.*/\1\2/p" "$1"
}

# Appends "<status> <class> <url>" lines to $dir/codes.
# load_page TARGET I: TARGET is officeswitch or direct; I the page load's number.
load_page() {
    local target=$1 i=$2 dir=$work/$1/$2 base code form wopisrc
    mkdir -p "$dir"
    form="access_token=soak-$i&access_token_ttl=0"
    if [ "$target" = officeswitch ]; then
        base=$public
        wopisrc=$HOST_ORIGIN/index.php/apps/richdocuments/wopi/files/${i}_ocsoak
        # The open (merged discovery's urlsrc), its 307 followed with the form re-posted.
        code=$(curl -s --max-time 30 -L --max-redirs 1 "${BROWSER_HEADERS[@]}" -d "$form" \
            -o "$dir/page.html" -w '%{http_code}' \
            "$public/officeswitch/open/ext/odt/edit?WOPISrc=$(enc "$wopisrc")&lang=en") || true
    else
        base=http://${nodes[$(((i - 1) % NODES))]}
        wopisrc=$public/wopi/files/soak$i
        code=$(curl -s --max-time 30 "${BROWSER_HEADERS[@]}" -d "$form" -o "$dir/page.html" \
            -w '%{http_code}' "$base$page_path?WOPISrc=$(enc "$wopisrc")&lang=en") || true
    fi
    echo "$code page $page_path" >>"$dir/codes"
    asset_paths "$dir/page.html" >"$dir/assets" 2>/dev/null || true
    if [ "$code" != 200 ] || [ ! -s "$dir/assets" ]; then
        echo "$i $target: the page answered $code with $(grep -c . "$dir/assets") asset URLs" >>"$work/failed-pages"
        return 0
    fi
    # Lane k gets URLs k, k+LANES, ...: the order a browser hands them to free connections.
    awk -v n="$LANES" -v base="$base" -v d="$dir" \
        '{ printf "url = \"%s%s\"\noutput = \"/dev/null\"\n", base, $0 > (d "/lane" ((NR - 1) % n)) }' \
        "$dir/assets"
    local pids=() k
    for ((k = 0; k < LANES; k++)); do
        [ -f "$dir/lane$k" ] || continue
        timeout 300 curl -s --max-time 30 "${BROWSER_HEADERS[@]}" -K "$dir/lane$k" \
            -w '%{http_code} asset %{url_effective}\n' >"$dir/codes$k" 2>/dev/null &
        pids+=($!)
    done
    for k in "${pids[@]}"; do
        # A failed transfer shows as status 000 in the codes; curl's exit status adds nothing.
        wait "$k" || true
    done
    cat "$dir"/codes[0-9]* >>"$dir/codes"
    # A lane cut off by its timeout leaves requests with no line: count them as failed.
    local got want
    got=$(grep -c ' asset ' "$dir/codes" || true)
    want=$(grep -c . "$dir/assets")
    for ((k = got; k < want; k++)); do
        echo "000 asset (no answer: lane stopped)" >>"$dir/codes"
    done
}

declare -A secs=()
# Runs PAGES page loads of $1; stores its duration in secs[$1].
pass() {
    local target=$1 i started
    started=$(date +%s.%N)
    for i in $(seq "$PAGES"); do
        if [ $((SECONDS - pass_started)) -gt "$PASS_LIMIT" ]; then
            echo "$target: stopped after $((i - 1)) page loads (PASS_LIMIT ${PASS_LIMIT}s)" >>"$work/failed-pages"
            break
        fi
        load_page "$target" "$i"
        [ $((i % 10)) -ne 0 ] || say "$target: $i page loads"
    done
    secs[$target]="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
    cat "$work/$target"/*/codes >"$work/$target.codes"
}

# "<2xx> <404> <502> <other> <requests>" of codes file $1 (class $2: page, asset or all).
tally() {
    awk -v c="$2" '
        c != "all" && $2 != c { next }
        { n++ }
        $1 ~ /^2/ { ok++; next }
        $1 == 404 { nf++; next }
        $1 == 502 { bg++; next }
        { other++ }
        END { printf "%d %d %d %d %d\n", ok, nf, bg, other, n }' "$1"
}

say "warm-up: one page load straight to each node (not counted)"
for i in $(seq "$NODES"); do
    load_page direct "$i"
done
rm -rf "$work/direct"
rm -f "$work/failed-pages"
touch "$work/failed-pages"

load_started=$(cut -d' ' -f1-3 /proc/loadavg)
retries_before=$(retries)
log_lines_before=$(grep -c . "$work/officeswitch.log" || true)
say "$PAGES page loads through officeswitch ($LANES connections each)"
pass_started=$SECONDS
pass officeswitch
retries_after=$(retries)
say "$PAGES page loads straight to the nodes ($LANES connections each)"
pass_started=$SECONDS
pass direct
load_ended=$(cut -d' ' -f1-3 /proc/loadavg)

# --- figures ----------------------------------------------------------------------------------
read -r os_ok os_404 os_502 os_other os_n < <(tally "$work/officeswitch.codes" all)
read -r d_ok d_404 d_502 d_other d_n < <(tally "$work/direct.codes" all)
read -r _ _ _ _ os_assets < <(tally "$work/officeswitch.codes" asset)
read -r os_pages_ok _ _ _ os_pages < <(tally "$work/officeswitch.codes" page)
read -r d_pages_ok _ _ _ d_pages < <(tally "$work/direct.codes" page)
read -r _ _ _ _ d_assets < <(tally "$work/direct.codes" asset)
retried=$(awk -v a="$retries_before" -v b="$retries_after" 'BEGIN { print (a == "?" || b == "?") ? "?" : b - a }')
per_page=$(grep -c . "$work/officeswitch/1/assets" 2>/dev/null || true)
per_page_404=$(grep -c '^404 asset' "$work/direct/1/codes" 2>/dev/null || true)
# What officeswitch's log says about the pass through it.
tail -n +"$((log_lines_before + 1))" "$work/officeswitch.log" >"$work/pass.log"
closed_lines=$(grep -c 'closed before message completed' "$work/pass.log" || true)
asset_nodes=$(grep -E 'class="?asset' "$work/pass.log" | grep -oE 'node="?[^" ]+' | sed -E 's/node="?//' |
    sort | uniq -c | awk '{ printf "%s%s: %s", sep, $2, $1; sep = ", " }')
page_nodes=$(grep -E 'class="?page' "$work/pass.log" | grep -oE 'node="?[^" ]+' | sed -E 's/node="?//' |
    sort | uniq -c | awk '{ printf "%s%s: %s", sep, $2, $1; sep = ", " }')

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
if [ -n "$OFFICESWITCH_BIN" ]; then
    os_version="binary $OFFICESWITCH_BIN (OFFICESWITCH_BIN, not built from this tree)"
else
    os_version="$(awk -F'"' '/^version/ { print $2; exit }' Cargo.toml) ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src 2>/dev/null || echo ", uncommitted changes in src/"))"
fi
curl_version=$(curl --version | awk 'NR == 1 { print $2 }')
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }'; }

row() { printf '| %s | %s | %s |\n' "$@"; }
{
    echo "## Soak: the editor page's requests through officeswitch, the node's 404s mixed in"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($cpu), Linux $(uname -r);" \
        "officeswitch $os_version; Collabora Online coolwsd $cool_version ($cool_hash, the" \
        "debug build of \`../shared/real-collabora\`), $NODES nodes; curl $curl_version." \
        "Load average $load_started at the start, $load_ended at the end."
    echo
    row "" "through officeswitch" "straight to the nodes"
    row "---" "---:" "---:"
    row "page loads (page 200 / attempted)" "$os_pages_ok / $os_pages" "$d_pages_ok / $d_pages"
    row "requests (pages + assets)" "$(num "$os_n") ($os_pages + $(num "$os_assets"))" \
        "$(num "$d_n") ($d_pages + $(num "$d_assets"))"
    row "2xx" "$(num "$os_ok")" "$(num "$d_ok")"
    row "404 (the node's)" "$(num "$os_404")" "$(num "$d_404")"
    row "**502**" "**$os_502**" "**$d_502**"
    row "other (incl. no answer)" "$os_other" "$d_other"
    row "duration" "${secs[officeswitch]} s" "${secs[direct]} s"
    row "requests/s" "$(num "$(rate "$os_n" "${secs[officeswitch]}")")" "$(num "$(rate "$d_n" "${secs[direct]}")")"
    row "\`officeswitch_upstream_retries_total\` during the pass" "$retried ($retries_before -> $retries_after)" "–"
    echo
    echo "Each page load: the editor page (through officeswitch: the open POST, its 307 followed," \
        "the form re-posted to \`$page_path?WOPISrc=...\`; straight: the form posted to a node's" \
        "page, the nodes alternating), then its $per_page asset URLs ($per_page_404 of them 404 on" \
        "this build: branding.css, branding.js and the branding-desktop.css the page's script adds)" \
        "over $LANES keep-alive connections, one curl per connection with its URLs on one command" \
        "line, all $LANES at once; browser headers (\`Accept-Encoding: gzip, deflate, br\`, a desktop" \
        "User-Agent). One document per page load. One warm-up page load straight to each node" \
        "first, not counted."
    echo
    echo "officeswitch's log during its pass: $closed_lines line(s) with \"connection closed before" \
        "message completed\"; pages per node: ${page_nodes:-?}; assets per node: ${asset_nodes:-?}."
    if [ -s "$work/failed-pages" ]; then
        echo
        echo "Pages that did not load:"
        sed 's/^/- /' "$work/failed-pages"
    fi
    echo
    echo "Run time: $((SECONDS - run_started)) s in all, of which $build_secs s building" \
        "(\`bash benches/soak/run.sh\`; PAGES=$PAGES, LANES=$LANES, NODES=$NODES)."
} >"$work/table.md"

cp "$work/table.md" "$OUT"
cat "$work/table.md"
say "written to ${OUT#"$repo"/}"

status=0
if [ "$os_502" -ne 0 ] || [ "$d_502" -ne 0 ]; then
    say "FAILED: $os_502 502s through officeswitch, $d_502 straight to the nodes"
    grep -E 'status="?502' "$work/pass.log" | head -n 5 >&2 || true
    status=1
fi
if [ "$os_other" -ne 0 ] || [ "$d_other" -ne 0 ] || [ -s "$work/failed-pages" ]; then
    say "FAILED: statuses other than 2xx/404/502 or pages that did not load (see the table)"
    status=1
fi
exit "$status"
