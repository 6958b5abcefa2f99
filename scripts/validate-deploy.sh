#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests and the Helm chart (docs/src/testing.md: no API server
# and no helm binary here; real Helm comes as a library, helm-python-sdk). Needs the project venv
# (scripts/setup-python.sh): kubernetes-validate, check-jsonschema, helm-python-sdk. Prints what it
# validated; exits non-zero on any failure, or if a tool is missing.
#
#   1. deploy/: every object validates strictly against the Kubernetes schemas (CRDs, which have
#      no official schema, are checked for shape only); each kustomization is built and its
#      output validated; inventories parse. helm/rekey: `helm lint --strict`, then rendered by
#      Helm with values.yaml and with each examples/*.yaml, every object validated the same way;
#      the Grafana dashboard's JSON is checked for shape. See scripts/validate_deploy.py.
#   2. helm/rekey: values.yaml, and each examples/*.yaml merged over it, validate against
#      values.schema.json (check-jsonschema, a second validator beside Helm's own).
#   3. The chart tests (scripts/chart_tests/test_*.py): per values option, a render and
#      assertions on its objects.
#   4. helm/rekey/README.md is what scripts/chart_readme.py makes of values.yaml's comments.
#   5. With REKEY_BIN set (the production binary), each inventory in deploy/ and the chart
#      passes rekey's own configuration checks (`rekey plan` exits anything but 2).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || { echo "validate-deploy: no .venv; run scripts/setup-python.sh first" >&2; exit 1; }
"$py" -c 'import helm_python, kubernetes_validate' || {
    echo "validate-deploy: helm-python-sdk or kubernetes-validate missing from .venv; run scripts/setup-python.sh" >&2
    exit 1
}

echo "-- deploy/ and the chart rendered by Helm (kubernetes-validate $(.venv/bin/kubernetes-validate --version))"
"$py" scripts/validate_deploy.py

echo "-- helm/rekey values against values.schema.json ($(.venv/bin/check-jsonschema --version | head -n1))"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
examples=(helm/rekey/examples/*.yaml)
"$py" scripts/merge_values.py helm/rekey/values.yaml "$tmp" "${examples[@]}"
.venv/bin/check-jsonschema --schemafile helm/rekey/values.schema.json helm/rekey/values.yaml
for ex in "${examples[@]}"; do
    echo "   $ex (merged over values.yaml)"
    .venv/bin/check-jsonschema --schemafile helm/rekey/values.schema.json "$tmp/$(basename "$ex")"
done

echo "-- chart tests (scripts/chart_tests: one file per values option, rendered by Helm)"
"$py" scripts/chart_tests/run.py

echo "-- helm/rekey/README.md against values.yaml (scripts/chart_readme.py)"
"$py" scripts/chart_readme.py --check

if [ -n "${REKEY_BIN:-}" ]; then
    echo "-- inventories against rekey's own config checks ($REKEY_BIN)"
    "$py" - "$tmp" <<'PY'
import pathlib, sys, yaml
out = pathlib.Path(sys.argv[1])
n = 0
for p in sorted(pathlib.Path("deploy").rglob("*.yaml")):
    for d in yaml.safe_load_all(p.read_text()):
        if d and d.get("kind") == "ConfigMap" and "inventory.toml" in d.get("data", {}):
            n += 1
            (out / f"inv-{n}.toml").write_text(d["data"]["inventory.toml"])
            print(f"   inv-{n}.toml <- {p}")
for p in [pathlib.Path("helm/rekey/values.yaml"), *sorted(pathlib.Path("helm/rekey/examples").glob("*.yaml"))]:
    c = (yaml.safe_load(p.read_text()) or {}).get("inventory", {}).get("content")
    if c:
        n += 1
        (out / f"inv-{n}.toml").write_text(c)
        print(f"   inv-{n}.toml <- {p}")
PY
    for inv in "$tmp"/inv-*.toml; do
        set +e
        # Placeholder bootstrap values: the check is the inventory's shape, no call succeeds.
        TAEGIS_CLIENT_ID=placeholder TAEGIS_CLIENT_SECRET=placeholder AWS_EC2_METADATA_DISABLED=true \
            AWS_ACCESS_KEY_ID=placeholder AWS_SECRET_ACCESS_KEY=placeholder \
            timeout 120 "$REKEY_BIN" --quiet plan -c "$inv" >/dev/null 2>"$tmp/err"
        code=$?
        set -e
        # Exit 2 naming the file is a problem in the inventory itself; other failures here
        # (no service-account token, no vault) are this machine not being the cluster.
        if [ "$code" = 2 ] && grep -qF "$inv:" "$tmp/err"; then
            echo "FAIL $(basename "$inv"): rekey rejects it:" >&2
            cat "$tmp/err" >&2
            exit 1
        fi
        echo "ok   $(basename "$inv"): accepted by rekey's config checks (then exit $code off-cluster: no vault, token or cloud here)"
    done
fi
# The chart ships the same alert rules as deploy/: one file, copied, never edited apart.
if ! cmp -s deploy/prometheus-rules.yaml helm/rekey/files/prometheus-rules.yaml; then
    echo "FAIL helm/rekey/files/prometheus-rules.yaml differs from deploy/prometheus-rules.yaml: copy it over" >&2
    exit 1
fi
echo "ok   helm/rekey/files/prometheus-rules.yaml is deploy/prometheus-rules.yaml"
# And the same Grafana dashboard.
if ! cmp -s deploy/monitoring/grafana-dashboard.json helm/rekey/files/grafana-dashboard.json; then
    echo "FAIL helm/rekey/files/grafana-dashboard.json differs from deploy/monitoring/grafana-dashboard.json: copy it over" >&2
    exit 1
fi
echo "ok   helm/rekey/files/grafana-dashboard.json is deploy/monitoring/grafana-dashboard.json"
echo "validate-deploy: all checks passed"
