#!/usr/bin/env bash
# The test command: installs what the tests need (a Python venv with the official Taegis SDK),
# then runs every Rust test. Tests start their own servers (the emulator) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-python.sh
cargo test --all-targets "$@"
