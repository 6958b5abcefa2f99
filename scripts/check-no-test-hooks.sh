#!/usr/bin/env bash
# Proves that a rekey binary has no test hooks (SECURITY.md, "Build"): with REKEY_CRASH_AT,
# REKEY_SECRET_REGISTRY and REKEY_TEST_CLOCK_OFFSET all set, it runs the demo (which passes
# every crash point of a create, a rotation and a retirement) without aborting, writes no
# registry file, and reads the clock unshifted (`status` shows no slot overdue ten years on).
# Its `--version` lists no test-hooks feature and carries no warning.
# Usage: scripts/check-no-test-hooks.sh target/release/rekey   (.ci/run runs it on the default
# release build, the one `cargo run --release -- demo` makes)
set -euo pipefail
bin=${1:?usage: $0 path/to/rekey}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "check-no-test-hooks: $bin: $*" >&2; exit 1; }

version=$("$bin" --version)
grep -q '^features: ' <<< "$version" || fail "--version has no features line: $version"
if grep -q 'test-hooks' <<< "$version" || grep -q 'WARNING' <<< "$version"; then
    fail "built with the test hooks: $version"
fi

registry="$work/registry"
set +e
REKEY_CRASH_AT=after-provider-create REKEY_SECRET_REGISTRY="$registry" \
    REKEY_TEST_CLOCK_OFFSET=3650d "$bin" demo --dir "$work/demo" > "$work/demo.out" 2>&1
code=$?
set -e
[ "$code" = 0 ] || { cat "$work/demo.out" >&2; fail "the demo exited $code with REKEY_CRASH_AT set"; }
grep -q "demo finished" "$work/demo.out" || fail "the demo did not finish"
grep -q "test crash point" "$work/demo.out" && fail "a crash point was reached"
[ -e "$registry" ] && fail "REKEY_SECRET_REGISTRY was written ($(wc -l < "$registry") lines)"

REKEY_TEST_CLOCK_OFFSET=3650d "$bin" status -c "$work/demo/inventory.toml" > "$work/status.out" 2>&1 || true
grep -q "^siem-ingest-acme .* ok " "$work/status.out" || { cat "$work/status.out" >&2; fail "status does not show the demo's slots ok"; }
grep -q "OVERDUE\|3650d" "$work/status.out" && { cat "$work/status.out" >&2; fail "REKEY_TEST_CLOCK_OFFSET moved the clock"; }
echo "no test hooks in $bin: REKEY_CRASH_AT, REKEY_SECRET_REGISTRY and REKEY_TEST_CLOCK_OFFSET ignored; --version: $(grep '^features: ' <<< "$version")"
