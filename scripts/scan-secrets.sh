#!/usr/bin/env bash
# The leak scan: fails if any secret the tests made appears in any of the given files or
# directories (the whole `cargo test` output and the trace-level logs of every rekey process the
# tests started; see tests/common/secrets.rs). A hit is reported by the secret's fingerprint
# (sha256, first 8 hex digits, as rekey logs it) and the file, never by its value.
#
#   scripts/scan-secrets.sh REGISTRY PATH...
set -euo pipefail
registry=$1
shift

if [ ! -s "$registry" ]; then
    # A selection of tests may make none; tests/hardening.rs proves the recording works.
    echo "secret scan: no secret was recorded in $registry; nothing to scan"
    exit 0
fi
patterns=$(mktemp)
trap 'rm -f "$patterns"' EXIT
# Every recorded value is random and at least 16 characters long; shorter ones would only
# match by chance.
awk 'length($0) >= 16' "$registry" | sort -u > "$patterns"
secrets=$(wc -l < "$patterns")
files=$(find "$@" -type f | wc -l)
bytes=$(find "$@" -type f -exec cat {} + | wc -c)

hits=$(grep -rlaF -f "$patterns" -- "$@" || true)
if [ -n "$hits" ]; then
    echo "secret scan: LEAK: recorded secrets appear in the test output:" >&2
    while IFS= read -r f; do
        grep -ohaF -f "$patterns" -- "$f" | sort -u | while IFS= read -r s; do
            fp=$(printf '%s' "$s" | sha256sum | cut -c1-8)
            echo "  sha256:$fp in $f ($(grep -caF -- "$s" "$f") lines)" >&2
        done
    done <<< "$hits"
    exit 1
fi
echo "secret scan: $secrets secrets checked in $files files ($bytes bytes): none found"
