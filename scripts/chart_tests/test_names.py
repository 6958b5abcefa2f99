"""nameOverride, fullnameOverride, namespaceOverride."""

from helmchart import NAMESPACE, fails, of_kind, one, render


def test_default_names():
    objs = render()
    assert one(objs, "CronJob")["metadata"]["name"] == "prod-rekey"
    assert one(objs, "ConfigMap")["metadata"]["name"] == "prod-rekey-inventory"
    assert {o["metadata"]["namespace"] for o in objs} == {NAMESPACE}
    assert one(objs, "CronJob")["metadata"]["labels"]["app.kubernetes.io/name"] == "rekey"


def test_name_override():
    objs = render({"nameOverride": "rotator"})
    cj = one(objs, "CronJob")
    assert cj["metadata"]["name"] == "prod-rotator"
    assert cj["metadata"]["labels"]["app.kubernetes.io/name"] == "rotator"
    pod_labels = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/name"] == "rotator"
    np = one(objs, "NetworkPolicy")
    assert np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "rotator"


def test_fullname_override():
    objs = render({"fullnameOverride": "creds"})
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert ("CronJob", "creds") in names and ("ServiceAccount", "creds") in names
    assert ("ConfigMap", "creds-inventory") in names
    spec = one(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "creds"


def test_fullname_override_too_long_is_refused():
    # A CronJob's name is 52 characters at most; the schema says so before the API server does.
    fails({"fullnameOverride": "x" * 53}, "fullnameOverride")


def test_namespace_override():
    objs = render({"namespaceOverride": "rekey-system",
                   "metrics": {"serviceMonitor": {"enabled": True}}})
    for o in objs:
        if o["kind"] == "ServiceMonitor":
            continue
        assert o["metadata"]["namespace"] == "rekey-system", o["kind"]
    assert one(objs, "ServiceMonitor")["metadata"]["namespace"] == "rekey-system"
    assert of_kind(render(), "ServiceMonitor") == []


def test_notes_use_the_namespace_override():
    from helmchart import render_raw
    notes = render_raw({"namespaceOverride": "rekey-system"})["rekey/templates/NOTES.txt"]
    assert "kubectl -n rekey-system create job" in notes
    assert "-n security" not in notes
