"""mode: run renders `rekey run` as a Deployment of one pod (Recreate), a Service and, with
metrics.serviceMonitor.enabled, a ServiceMonitor scraping it; no CronJob. Its probes GET the
paths rekey serves (src/observe/serve.rs), the same as deploy/service/deployment.yaml's, which
tests/alerts_prometheus.rs GETs on a live `rekey run`."""

import pathlib
import re

import yaml

from helmchart import ROOT, example, fails, of_kind, one, render
from test_security_context import restricted

RUN = {"mode": "run", "metrics": {"serviceMonitor": {"enabled": True}}}


def deployment_pod(objs):
    return one(objs, "Deployment")["spec"]["template"]["spec"]


def served_paths():
    """The paths src/observe/serve.rs answers (its `match req.uri().path()` arms)."""
    src = (ROOT / "src" / "observe" / "serve.rs").read_text()
    return set(re.findall(r'^\s*"(/[a-z]+)"(?: if [^=]+)? =>', src, re.M))


def test_run_renders_deployment_service_servicemonitor_and_no_cronjob():
    objs = render(RUN)
    assert not of_kind(objs, "CronJob")
    dep, svc, sm = one(objs, "Deployment"), one(objs, "Service"), one(objs, "ServiceMonitor")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9899, "targetPort": "metrics", "protocol": "TCP"}]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [svc["metadata"]["namespace"]]}
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "60s"}]
    c = deployment_pod(objs)["containers"][0]
    assert c["args"][:2] == ["run", "--config"]
    assert c["args"][c["args"].index("--metrics-listen") + 1] == "0.0.0.0:9899"
    assert c["args"][c["args"].index("--schedule") + 1] == "17 * * * *"
    assert c["args"][c["args"].index("--timezone") + 1] == "Etc/UTC"
    assert c["ports"] == [{"name": "metrics", "containerPort": 9899, "protocol": "TCP"}]


def test_cronjob_mode_is_the_default_and_renders_no_deployment():
    objs = render()
    one(objs, "CronJob")
    assert not of_kind(objs, "Deployment") and not of_kind(objs, "Service")


def test_probes_point_at_served_paths_as_the_deploy_manifest():
    c = deployment_pod(render(RUN))["containers"][0]
    served = served_paths()
    assert {"/metrics", "/healthz", "/readyz"} <= served, served
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    manifest = yaml.safe_load((ROOT / "deploy" / "service" / "deployment.yaml").read_text())
    mc = manifest["spec"]["template"]["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe] == mc[probe], probe
        assert c[probe]["httpGet"]["path"] in served


def test_sigterm_grace_and_pod_like_the_cronjobs():
    pod = deployment_pod(render(RUN))
    assert pod["terminationGracePeriodSeconds"] == 300
    assert "restartPolicy" not in pod  # a Deployment's pods restart (Always)
    restricted(pod, pod["containers"][0])
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    pod = deployment_pod(render({**RUN, "run": {"terminationGracePeriodSeconds": 900,
                                                "livenessProbe": {"periodSeconds": 5}}}))
    assert pod["terminationGracePeriodSeconds"] == 900
    assert pod["containers"][0]["livenessProbe"]["periodSeconds"] == 5


def test_network_policy_admits_the_metrics_port_only_in_mode_run():
    np = one(render(RUN), "NetworkPolicy")
    assert np["spec"]["ingress"] == [{
        "ports": [{"protocol": "TCP", "port": 9899}],
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}]
    assert one(render(), "NetworkPolicy")["spec"]["ingress"] == []
    np = one(render({"mode": "run", "run": {"port": 9100, "metricsFrom": []}}), "NetworkPolicy")
    assert np["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 9100}]}]


def test_cronjob_mode_servicemonitor_still_scrapes_the_pushgateway():
    sm = one(render({"metrics": {"serviceMonitor": {"enabled": True}}}), "ServiceMonitor")
    assert sm["metadata"]["name"].endswith("-pushgateway")
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True


def test_invalid_mode_refused_by_the_schema():
    for bad in ("deployment", "Run", "", 1):
        fails({"mode": bad}, "mode")


def test_run_refuses_what_it_cannot_do():
    fails({"mode": "run", "shards": 3}, "shards > 1 needs mode: cronjob")
    # Pushed and scraped, every run would be counted twice (and alert twice).
    fails({"mode": "run", "metrics": {"pushgateway": {"url": "http://pgw.monitoring.svc:9091"}}},
          "metrics.pushgateway.url is for mode: cronjob")
    fails({"mode": "run", "run": {"port": 0}}, "port")
    fails({"mode": "run", "run": {"probes": {}}}, "probes")


def test_run_example():
    objs = render(example("values-run.yaml"))
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PrometheusRule",
                     "Service", "ServiceAccount", "ServiceMonitor"], kinds
    c = deployment_pod(objs)["containers"][0]
    assert c["args"][c["args"].index("--schedule") + 1] == "*/30 * * * *"
