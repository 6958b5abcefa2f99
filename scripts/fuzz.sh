#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ (cargo fuzz: libFuzzer + AddressSanitizer) and runs each for
# SECONDS (default 30), then prints one line of figures per target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: inventory taegis cisco exec (default all)
#
# Runs on the stable toolchain: RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo fuzz passes.
# cargo-fuzz is installed from crates.io into .tools/ when it is missing. Each target starts from
# its committed seeds (fuzz/seeds/T), with a dictionary of the format's words (fuzz/dict/T.dict),
# and keeps what it learns in fuzz/corpus/T (git-ignored).
# A crash stops the script with exit 1 and leaves the input in fuzz/artifacts/T/: fix the bug,
# then keep the input in fuzz/regressions/T/ (tests/fuzz_replay.rs replays it in `cargo test`).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(inventory taegis cisco exec)

CARGO_FUZZ_VERSION=0.13.2
export PATH="$PWD/.tools/bin:$PATH"
if ! cargo fuzz --version 2> /dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/"
    start=$(date +%s)
    cargo install --quiet --locked --root .tools "cargo-fuzz@$CARGO_FUZZ_VERSION"
    echo "fuzz: cargo-fuzz installed in $(($(date +%s) - start)) s"
fi

export RUSTC_BOOTSTRAP=1
# Debug assertions on: an integer overflow in a decoder is a crash, not a silent wrap.
build=(--debug-assertions)
start=$(date +%s)
buildlog=$(mktemp)
for t in "${targets[@]}"; do
    if ! cargo fuzz build "${build[@]}" "$t" > "$buildlog" 2>&1; then
        grep -vE '^\s+(Compiling|Downloaded|Downloading)' "$buildlog" >&2
        echo "fuzz: target $t did not build" >&2
        exit 1
    fi
done
rm -f "$buildlog"
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - start)) s"

# Per input: 10 s at most (a hang is a crash), 1 GiB of memory at most, 64 KiB of input (the
# parsers are linear; longer inputs only slow the search down).
limits=(-timeout=10 -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log="$logs/$t.log"
    if ! cargo fuzz run "${build[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        "${limits[@]}" -dict="fuzz/dict/$t.dict" -max_total_time="$secs" \
        -artifact_prefix="fuzz/artifacts/$t/" > "$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: target $t FAILED; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    stat() { grep -oE "^stat::$1: *[0-9]+" "$log" | grep -oE '[0-9]+$' | tail -n 1; }
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+' || echo "?")
    echo "fuzz: $t: $(stat number_of_executed_units) runs in $secs s ($(stat average_exec_per_sec)/s), coverage $cov edges, corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs, peak RSS $(stat peak_rss_mb) MB, no crash"
done
