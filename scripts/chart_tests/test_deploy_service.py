"""deploy/service (kustomize): the base with its CronJob replaced by the Deployment of `rekey run`
and its Service; the NetworkPolicy admits the metrics port. Built the way
scripts/validate_deploy.py builds every kustomization."""

import pathlib
import sys

from helmchart import ROOT

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import validate_deploy  # noqa: E402  (scripts/validate_deploy.py)


def built():
    return validate_deploy.build(ROOT / "deploy" / "service")


def test_deployment_replaces_the_cronjob():
    objs = built()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "Service", "ServiceAccount"], kinds
    dep = next(o for o in objs if o["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert all(o["metadata"].get("namespace") == "rekey" for o in objs if o["kind"] != "Namespace")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example.com/rekey:0.1.0"  # the base's images transform reaches it
    assert c["args"][0] == "run"


def test_metrics_port_agrees_everywhere():
    objs = built()
    dep = next(o for o in objs if o["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    listen = c["args"][c["args"].index("--metrics-listen") + 1]
    port = c["ports"][0]["containerPort"]
    assert listen == f"0.0.0.0:{port}" and c["ports"][0]["name"] == "metrics"
    svc = next(o for o in objs if o["kind"] == "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    np = next(o for o in objs if o["kind"] == "NetworkPolicy")
    assert np["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": port}]
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 300
