"""`global`: the schema accepts it, and the chart renders as a subchart of an umbrella chart
(where Helm always passes `global` down, which a strict root schema without it refuses)."""

import pathlib
import shutil
import tempfile

import helm_python as helm
import yaml

from helmchart import CHART, fails, one, render


def test_global_values_accepted():
    objs = render({"global": {"imageRegistry": "registry.example.com", "anything": [1, 2]}})
    assert one(objs, "CronJob")


def test_other_unknown_root_keys_still_refused():
    fails({"replicaCount": 2}, "replicaCount")


def test_renders_as_a_subchart():
    with tempfile.TemporaryDirectory() as tmp:
        umbrella = pathlib.Path(tmp) / "platform"
        (umbrella / "charts").mkdir(parents=True)
        (umbrella / "Chart.yaml").write_text(yaml.safe_dump({
            "apiVersion": "v2", "name": "platform", "version": "1.0.0",
            "dependencies": [{"name": "rekey", "version": "0.1.0"}],
        }))
        (umbrella / "values.yaml").write_text(yaml.safe_dump({
            "global": {"environment": "prod"},
            "rekey": {"schedule": "@daily"},
        }))
        shutil.copytree(CHART, umbrella / "charts" / "rekey")
        with helm.Chart.load(str(umbrella)) as c:
            out = c.render(name="platform", namespace="platform")
        cronjobs = [d for p, t in out.items() if p.startswith("platform/charts/rekey/") and p.endswith(".yaml")
                    for d in yaml.safe_load_all(t) if d and d.get("kind") == "CronJob"]
        assert len(cronjobs) == 1, sorted(out)
        assert cronjobs[0]["spec"]["schedule"] == "@daily"
        assert cronjobs[0]["metadata"]["name"] == "platform-rekey"
