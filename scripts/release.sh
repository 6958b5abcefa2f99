#!/usr/bin/env bash
# Release artefacts (docs/src/deploy.md, "Release artefacts"): the production binary built as
# the Dockerfile builds it (no emulator, no test hooks), a tarball with it and the docs a user
# needs, the tarball's SHA-256, and a CycloneDX SBOM of the binary's dependencies
# (cargo-cyclonedx, installed into .tools on first use).
#
#   scripts/release.sh [OUT_DIR]        # default: target/dist
#   sha256sum -c target/dist/rekey-*.tar.gz.sha256
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/dist}
cyclonedx_version=0.5.9

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(uname -m)
name="rekey-$version-linux-$arch"
mkdir -p "$out"

echo "== production binary (cargo build --release --locked --no-default-features --features aws)"
cargo build --release --locked --no-default-features --features aws
bin=target/release/rekey
"$bin" --version | grep -qx "features: aws" || { echo "release: the binary is not the production build" >&2; exit 1; }

echo "== tarball"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
install -m 0755 "$bin" "$stage/$name/rekey"
cp README.md SECURITY.md RELIABILITY.md "$stage/$name/"
"$bin" man > "$stage/$name/rekey.1"
mkdir "$stage/$name/completions"
for sh in bash zsh fish; do
    "$bin" completions "$sh" > "$stage/$name/completions/rekey.$sh"
done
# Reproducible: fixed owner, order and times (the commit's time).
mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
    -C "$stage" -czf "$out/$name.tar.gz" "$name"
(cd "$out" && sha256sum "$name.tar.gz" > "$name.tar.gz.sha256")

echo "== SBOM (CycloneDX, cargo-cyclonedx $cyclonedx_version)"
if ! .tools/bin/cargo-cyclonedx --version 2>/dev/null | grep -qF "$cyclonedx_version"; then
    cargo install --quiet --locked --root .tools "cargo-cyclonedx@$cyclonedx_version"
fi
# The production build's dependencies only: the same features as the binary.
.tools/bin/cargo-cyclonedx cyclonedx --format json --no-default-features --features aws \
    --override-filename "$name.cdx"
mv "$name.cdx.json" "$out/$name.cdx.json"
(cd "$out" && sha256sum "$name.cdx.json" > "$name.cdx.json.sha256")

echo "release artefacts in $out:"
(cd "$out" && ls -l "$name".*)
