"""The rekey chart rendered by real Helm (helm-python-sdk: Helm v4's Go library behind a C
interface, offline), for scripts/validate_deploy.py and the chart tests in this directory.

    objs = render({"extraEnv": [{"name": "A", "value": "1"}]})
    cj = one(objs, "CronJob")
"""

import pathlib

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "rekey"
KUBE_VERSION = "1.37.0"  # as scripts/validate_deploy.py
# Objects of CRDs (no official schema): checked by scripts/validate_deploy.py for shape only.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
RELEASE = "prod"
NAMESPACE = "security"

_chart = None


def chart():
    global _chart
    if _chart is None:
        _chart = helm.Chart.load(str(CHART))
    return _chart


def render_raw(values=None, name=RELEASE, namespace=NAMESPACE):
    """{template path: rendered text}, as `helm template` renders them (values over values.yaml,
    checked against values.schema.json). Raises helm_python.HelmError on any failure."""
    return chart().render(values=values or {}, name=name, namespace=namespace, is_install=True)


def render(values=None, name=RELEASE, namespace=NAMESPACE, validate=True):
    """The rendered Kubernetes objects (NOTES.txt left out), each with `_template` added. Each
    object is validated against the Kubernetes schemas (strict) unless validate=False, so every
    test's render is held to them too."""
    objs = []
    for path, text in sorted(render_raw(values, name, namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                if validate and doc.get("kind") not in CRD_KINDS:
                    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
                doc["_template"] = path
                objs.append(doc)
    return objs


def strip(obj):
    return {k: v for k, v in obj.items() if k != "_template"}


def of_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def one(objs, kind):
    found = of_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def pod_spec(objs):
    return one(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container(objs, name="rekey"):
    cs = [c for c in pod_spec(objs)["containers"] if c["name"] == name]
    assert len(cs) == 1, f"expected one container {name}"
    return cs[0]


def env(objs):
    return {e["name"]: e for e in container(objs).get("env", [])}


def fails(values, needle):
    """The render with `values` fails, its message containing `needle`; returns the message."""
    try:
        render_raw(values)
    except helm.HelmError as e:
        msg = str(e)
        assert needle in msg, f"render failed, but without {needle!r}: {msg}"
        return msg
    raise AssertionError(f"render with {values} succeeded; expected a failure naming {needle!r}")


def example(name):
    return yaml.safe_load((CHART / "examples" / name).read_text()) or {}


def lint(values=None):
    return helm.lint(str(CHART), values, strict=True)
