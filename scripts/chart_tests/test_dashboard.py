"""dashboard: a ConfigMap with the Grafana dashboard for the sidecar, off by default; its JSON is
deploy/monitoring/grafana-dashboard.json byte for byte (files/ holds a copy, checked here and by
scripts/validate-deploy.sh)."""

import json

from helmchart import CHART, ROOT, of_kind, one, render

DEPLOY = ROOT / "deploy" / "monitoring" / "grafana-dashboard.json"


def dashboards(objs):
    return [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]


def test_off_by_default():
    assert not dashboards(render())


def test_configmap_has_the_sidecar_label_and_the_dashboard():
    cm = one(dashboards(render({"dashboard": {"enabled": True}})), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "security"
    text = cm["data"]["rekey.json"]
    assert text == DEPLOY.read_text()
    dash = json.loads(text)
    assert dash["uid"] == "rekey-overview"
    assert any(v["name"] == "datasource" and v["type"] == "datasource" for v in dash["templating"]["list"])


def test_label_annotation_and_namespace_configurable():
    cm = one(dashboards(render({"dashboard": {
        "enabled": True, "namespace": "grafana", "labels": {"my_dashboards": "yes", "grafana_dashboard": None},
        "annotations": {"grafana_folder": "Security"}}})), "ConfigMap")
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"]["my_dashboards"] == "yes"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]  # null drops the default
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Security"}


def test_chart_copy_is_the_deploy_file():
    assert (CHART / "files" / "grafana-dashboard.json").read_bytes() == DEPLOY.read_bytes()
