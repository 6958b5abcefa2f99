#!/usr/bin/env bash
# The test command: installs what the tests need (a Python venv with the official Taegis SDK;
# promtool and the Pushgateway from Debian packages),
# then runs every Rust test. Tests start their own servers (the emulator) on 127.0.0.1.
# Ends with one line of totals over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-python.sh
scripts/setup-system.sh

# The leak scan (tests/common/secrets.rs, scripts/scan-secrets.sh): every secret the tests make
# is recorded in a 0600 registry, every rekey process they start logs at trace level into
# rekey-logs/, all test output is kept (--show-output), and all of it is scanned at the end.
out=target/test-output
rm -rf "$out"
mkdir -m 700 -p "$out/rekey-logs"
export REKEY_SECRET_REGISTRY="$PWD/$out/secrets" REKEY_TEST_LOG_DIR="$PWD/$out/rekey-logs"
trap 'rm -f "$REKEY_SECRET_REGISTRY"' EXIT
log="$out/test-output.log"
args=("$@")
if [[ " $* " == *" -- "* ]]; then args+=(--show-output); else args+=(-- --show-output); fi

# The test hooks (REKEY_CRASH_AT, REKEY_TEST_CLOCK_OFFSET, REKEY_SECRET_REGISTRY) are opt-in: the
# default build has none, so the tests ask for them (docs/src/deploy.md, "Docker image and builds").
cargo build --features test-hooks --examples --quiet
set +e
cargo test --features test-hooks --no-fail-fast --lib --bins --tests "${args[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
scripts/scan-secrets.sh "$REKEY_SECRET_REGISTRY" "$log" "$REKEY_TEST_LOG_DIR" || status=1
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "rekey: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
