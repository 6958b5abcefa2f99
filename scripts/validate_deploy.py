"""Offline checks of deploy/ and helm/rekey/ (run by scripts/validate-deploy.sh, in the .venv).

1. Every Kubernetes object in deploy/ validates strictly against the official schemas of
   Kubernetes KUBE_VERSION (kubernetes-validate). Objects of the Prometheus Operator, External
   Secrets and Vault Secrets Operator CRDs have no official schema: they are checked for shape
   only (apiVersion, kind, metadata.name, spec) and listed as such.
2. Each kustomization is built (resources, namespace, images, inline JSON 6902 patches and
   strategic-merge deletes: the subset deploy/ uses) and the built objects are validated too, so an overlay's patch is held
   to the schema.
3. Every inventory.toml in a ConfigMap (and the chart's inline one) is valid TOML; each Grafana
   dashboard (deploy/**/*.json) has the shape Grafana's sidecar loads.
4. helm/rekey is linted by real Helm (helm-python-sdk, strict: warnings fail) and rendered by it
   (scripts/chart_tests/helmchart.py) with its default values and with each examples/*.yaml; every
   rendered object is validated as deploy/'s are, in the release's namespace.

Prints what it validated; exits 1 on the first kind of failure it finds, after listing them all.
"""

import copy
import json
import pathlib
import sys
import tomllib

import helm_python
import kubernetes_validate
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "chart_tests"))
import helmchart  # noqa: E402  (scripts/chart_tests/helmchart.py)

KUBE_VERSION = helmchart.KUBE_VERSION  # 1.37.0: one place, for the chart tests too
ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHART = ROOT / "helm" / "rekey"
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("external-secrets.io/v1", "ExternalSecret"),
    ("external-secrets.io/v1", "SecretStore"),
    ("external-secrets.io/v1", "ClusterSecretStore"),
    ("secrets.hashicorp.com/v1beta1", "VaultStaticSecret"),
    ("secrets.hashicorp.com/v1beta1", "VaultAuth"),
    ("secrets.hashicorp.com/v1beta1", "VaultConnection"),
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterSecretStore"}

failures = []
validated = []  # (apiVersion, kind, name, where, how)


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def check_object(obj, where):
    api, kind = obj.get("apiVersion"), obj.get("kind")
    name = (obj.get("metadata") or {}).get("name")
    if not api or not kind or not name:
        fail(f"{where}: an object without apiVersion, kind or metadata.name")
        return
    if (api, kind) in CRDS:
        if "spec" not in obj:
            fail(f"{where}: {kind}/{name} has no spec")
            return
        validated.append((api, kind, name, where, "shape only (CRD, no official schema)"))
        return
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        fail(f"{where}: no Kubernetes {KUBE_VERSION} schema for {api} {kind}")
        return
    except kubernetes_validate.ValidationError as e:
        fail(f"{where}: {kind}/{name}: {e.message} at {'/'.join(map(str, e.path))}")
        return
    validated.append((api, kind, name, where, f"schema {KUBE_VERSION} strict"))


def pointer(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def apply_op(doc, op):
    *parents, last = pointer(op["path"])
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    kind = op["op"]
    if isinstance(node, list):
        if kind == "add":
            node.append(op["value"]) if last == "-" else node.insert(int(last), op["value"])
        elif kind == "replace":
            node[int(last)] = op["value"]
        elif kind == "remove":
            del node[int(last)]
        else:
            raise ValueError(f"unsupported op {kind}")
    else:
        if kind in ("add", "replace"):
            if kind == "replace" and last not in node:
                raise KeyError(op["path"])
            node[last] = op["value"]
        elif kind == "remove":
            del node[last]
        else:
            raise ValueError(f"unsupported op {kind}")


def build(kdir):
    """The objects `kustomize build kdir` would print, for the features deploy/ uses."""
    k = load_docs(kdir / "kustomization.yaml")[0]
    known = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
    unknown = set(k) - known
    if unknown:
        raise ValueError(f"{kdir}: kustomization fields this check cannot build: {sorted(unknown)}")
    objs = []
    for r in k.get("resources", []):
        p = (kdir / r).resolve()
        if p.is_dir():
            objs += build(p)
        elif p.is_file():
            objs += [copy.deepcopy(d) for d in load_docs(p)]
        else:
            raise FileNotFoundError(f"{kdir}: resource {r} does not exist")
    for patch in k.get("patches", []):
        doc = yaml.safe_load(patch["patch"])
        if isinstance(doc, dict) and doc.get("$patch") == "delete":
            # A strategic-merge delete: the object it names leaves the build.
            hit = [o for o in objs if o["kind"] == doc["kind"] and o["metadata"]["name"] == doc["metadata"]["name"]]
            if not hit:
                raise ValueError(f"{kdir}: delete patch {doc['kind']}/{doc['metadata']['name']} matches nothing")
            objs = [o for o in objs if not any(o is h for h in hit)]
            continue
        t = patch["target"]
        ops = doc
        hit = [o for o in objs if o["kind"] == t["kind"] and o["metadata"]["name"] == t["name"]]
        if not hit:
            raise ValueError(f"{kdir}: patch target {t} matches nothing")
        for o in hit:
            for op in ops:
                apply_op(o, op)
    for img in k.get("images", []):
        for o in objs:
            spec = o.get("spec", {})
            for pod in (spec.get("template", {}).get("spec"),
                        spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")):
                for c in (pod or {}).get("containers", []):
                    if c["image"].split(":")[0] == img["name"]:
                        c["image"] = f"{img.get('newName', img['name'])}:{img.get('newTag', 'latest')}"
    if "namespace" in k:
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    return objs


def check_inventory(text, where):
    try:
        inv = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(f"{where}: inventory.toml is not valid TOML: {e}")
        return
    if not inv.get("slots"):
        fail(f"{where}: inventory has no [[slots]]")
    print(f"ok   {where}: inventory.toml parses ({len(inv.get('slots', []))} slots)")


def check_dashboard(path):
    """A Grafana dashboard as the sidecar loads it: valid JSON with a uid and title, a
    `datasource` variable of type prometheus, and every panel (rows' too) querying through it
    with at least one target. Its queries are run against a real Prometheus by
    tests/alerts_prometheus.rs."""
    rel = path.relative_to(ROOT)
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        fail(f"{rel}: not valid JSON: {e}")
        return
    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        if key not in dash:
            fail(f"{rel}: no {key}")
            return
    if not any(v.get("name") == "datasource" and v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in dash["templating"].get("list", [])):
        fail(f"{rel}: no `datasource` variable of type prometheus")
    panels, ids, queries = list(dash["panels"]), set(), 0
    for p in panels:
        panels += p.get("panels", [])
    for p in panels:
        title = p.get("title", "?")
        if p.get("id") in ids:
            fail(f"{rel}: panel {title!r}: id {p.get('id')} used twice")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        targets = p.get("targets") or []
        if not targets:
            fail(f"{rel}: panel {title!r} has no query")
        for t in targets:
            if (t.get("datasource") or {}).get("uid") != "${datasource}" or not t.get("expr"):
                fail(f"{rel}: panel {title!r} query {t.get('refId')}: not a PromQL query on ${{datasource}}")
            queries += 1
    print(f"ok   {rel}: Grafana dashboard {dash['uid']!r} ({len(panels)} panels, {queries} queries on ${{datasource}})")


def check_chart():
    rel = CHART.relative_to(ROOT)
    print(f"-- {rel}: Helm {helm_python.helm_sdk_version()} (helm-python-sdk {helm_python.__version__})")
    report = helmchart.lint()
    for m in report["messages"]:
        sev = {1: "INFO", 2: "WARNING", 3: "ERROR"}.get(m["severity"], "UNKNOWN")
        line = f"{rel}: helm lint {sev} {m['path']}: {m['error']}"
        if m["severity"] >= 2:
            fail(line)
        else:
            print(f"NOTE {line}")
    for e in report["errors"]:
        fail(f"{rel}: helm lint: {e}")
    if not report["errors"] and all(m["severity"] < 2 for m in report["messages"]):
        print(f"ok   {rel}: helm lint --strict passes ({report['total_charts_linted']} chart)")
    cases = [("values.yaml", {})]
    for ex in sorted((CHART / "examples").glob("*.yaml")):
        cases.append((f"examples/{ex.name}", yaml.safe_load(ex.read_text()) or {}))
    for label, over in cases:
        where = f"{rel} render {label}"
        try:
            objs = helmchart.render(over, validate=False)  # validated below, failures listed
        except helm_python.HelmError as e:
            fail(f"{where}: helm cannot render it: {e}")
            continue
        if not objs:
            fail(f"{where}: renders no objects")
            continue
        before = len(failures)
        for o in objs:
            meta = o.get("metadata") or {}
            # The ServiceMonitor and the dashboard ConfigMap have a namespace option of their
            # own (metrics.serviceMonitor.namespace, dashboard.namespace).
            own_namespace = o["kind"] == "ServiceMonitor" or o["_template"].endswith("/dashboard.yaml")
            if o["kind"] not in CLUSTER_SCOPED and not own_namespace \
                    and meta.get("namespace") != helmchart.NAMESPACE:
                fail(f"{where}: {o['kind']}/{meta.get('name')} is not in the release namespace")
            check_object(helmchart.strip(o), f"{where} ({o['_template'].split('/', 1)[1]})")
        kinds = ", ".join(sorted({o["kind"] for o in objs}))
        if len(failures) == before:
            print(f"ok   {where}: {len(objs)} objects ({kinds}), each validated below")


def main():
    deploy_objs = []
    files = sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")
    for path in files:
        rel = path.relative_to(ROOT)
        for doc in load_docs(path):
            if "groups" in doc and "kind" not in doc:
                # A plain Prometheus rules file (deploy/prometheus-rules.yaml): not an object.
                print(f"ok   {rel}: Prometheus rules file ({len(doc['groups'])} groups), not a Kubernetes object")
                continue
            if "rule_files" in doc and "tests" in doc and "kind" not in doc:
                # The alert rules' unit tests, run by `promtool test rules` (tests/observability.rs).
                print(f"ok   {rel}: promtool rule tests ({len(doc['tests'])} cases), not a Kubernetes object")
                continue
            check_object(doc, str(rel))
            if "consumers" not in rel.parts:
                deploy_objs.append(doc)
            if doc.get("kind") == "ConfigMap" and "inventory.toml" in doc.get("data", {}):
                check_inventory(doc["data"]["inventory.toml"], str(rel))
    for kfile in sorted(DEPLOY.rglob("kustomization.yaml")):
        kdir = kfile.parent
        rel = kdir.relative_to(ROOT)
        try:
            objs = build(kdir)
        except Exception as e:  # noqa: BLE001 - report any build failure as a check failure
            fail(f"{rel}: cannot build: {e}")
            continue
        for o in objs:
            check_object(o, f"{rel} (built)")
        print(f"ok   {rel}: kustomization builds ({len(objs)} objects)")

    for path in sorted(DEPLOY.rglob("*.json")):
        check_dashboard(path)

    # The chart, by real Helm: lint, then render the defaults and each example and validate
    # every object (docs/src/testing.md "Kubernetes manifests and the chart").
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if values.get("inventory", {}).get("content"):
        check_inventory(values["inventory"]["content"], "helm/rekey/values.yaml")
    check_chart()

    for api, kind, name, where, how in validated:
        print(f"ok   {where}: {api} {kind}/{name}: {how}")

    if failures:
        print(f"validate-deploy: {len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print(f"validate-deploy: {len(validated)} objects validated (deploy/, kustomizations, chart renders)")


if __name__ == "__main__":
    main()
