#!/usr/bin/env bash
# The benchmark command (docs/src/benchmarks.md): makes the venv (official Taegis SDK, hvac,
# OpenBao) and the release build (cargo rebuilds only what changed), then runs scripts/bench.py,
# which starts its own emulator and OpenBao on 127.0.0.1 and prints every figure from one run.
#   scripts/bench.sh --slots 1000 --tenants 50 --latency-ms 20
#   scripts/bench.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh >&2
cargo build --release --quiet >&2
exec .venv/bin/python scripts/bench.py "$@"
