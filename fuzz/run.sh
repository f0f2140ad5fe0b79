#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and fails if any of them finds a crash
# (a panic, including a broken property in fuzz/properties.rs).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # default: 30 s for each target, all targets
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Each target starts from its committed seeds (fuzz/corpus/<target>/seed-*) and grows a
# temporary corpus that is thrown away afterwards, so the repository only ever holds the
# seeds. A crashing input is kept in fuzz/artifacts/<target>/ (git-ignored); replay it
# with `cargo +nightly fuzz run <target> <file>`.
set -euo pipefail

seconds="${1:-30}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
    exit 2
fi
cd "$(dirname "$0")"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: needs the nightly toolchain and cargo-fuzz:" >&2
    echo "  rustup toolchain install nightly && cargo install cargo-fuzz --locked" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# officeswitch is safe Rust: the properties, not memory errors, are what is hunted, and
# without AddressSanitizer targets run several times faster. FUZZ_SANITIZER=address
# instruments everything (aws-lc's C code included) at the cost of a much longer build.
sanitizer="${FUZZ_SANITIZER:-none}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Build first, so build time does not eat into the fuzzing time (`run` then only links).
for target in "${targets[@]}"; do
    cargo +nightly fuzz build --sanitizer "$sanitizer" "$target"
done

failed=()
printf '%-12s %10s %12s %8s  %s\n' target execs execs/s corpus result
for target in "${targets[@]}"; do
    grown="$work/$target"
    mkdir -p "$grown"
    log="$work/$target.log"
    # New inputs go to the first directory (temporary); the seeds are only read.
    if cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "$grown" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result=CRASH
        failed+=("$target")
    fi
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    printf '%-12s %10s %12s %8s  %s\n' "$target" "$(stat number_of_executed_units)" \
        "$(stat average_exec_per_sec)" "$(ls "$grown" | wc -l)" "$result"
    if [ "$result" != ok ]; then
        grep -E 'panicked at|SUMMARY|Test unit written to|^thread' "$log" | head -n 20 >&2 || true
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz/run.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
