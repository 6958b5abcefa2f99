"""helm/rekey/README.md: generated from values.yaml's `# --` comments (scripts/chart_readme.py)."""

import importlib.util
import pathlib

spec = importlib.util.spec_from_file_location(
    "chart_readme", pathlib.Path(__file__).resolve().parents[1] / "chart_readme.py")
chart_readme = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chart_readme)


def test_readme_is_current():
    assert chart_readme.README.read_text() == chart_readme.render()


def test_comments_parsed_helm_docs_style():
    text = """# -- top
# continued
a: 1
b:
  # -- nested
  c: |
    not: a key
  d: 2
e: 3
"""
    docs = chart_readme.documented(text.splitlines())
    assert docs == [(("a",), "top continued", None), (("b", "c"), "nested", None)]


def test_every_option_in_the_table():
    readme = chart_readme.README.read_text()
    for key in ("global", "nameOverride", "fullnameOverride", "namespaceOverride", "commonLabels",
                "commonAnnotations", "extraEnv", "extraEnvFrom", "extraVolumes", "extraVolumeMounts",
                "extraObjects", "initContainers", "priorityClassName", "podAnnotations",
                "podSecurityContext", "containerSecurityContext", "serviceAccount.projectedToken.audience",
                "persistence.enabled", "persistence.auditLog.enabled", "networkPolicy.extraCidrs",
                "networkPolicy.dns.nodeLocal.enabled", "networkPolicy.pushgateway.enabled", "mode", "run.port",
                "run.terminationGracePeriodSeconds", "run.metricsFrom", "dashboard.enabled", "dashboard.labels"):
        assert f"\n| {key} |" in readme, key
