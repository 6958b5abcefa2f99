#!/usr/bin/env bash
# The test command: installs what the tests need (a Python venv with the official Taegis SDK;
# promtool and the Pushgateway from Debian packages),
# then runs every Rust test. Tests start their own servers (the emulator) on 127.0.0.1.
# Ends with one line of totals over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-python.sh
scripts/setup-system.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo build --examples --quiet
set +e
cargo test --no-fail-fast --lib --bins --tests "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "rekey: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
