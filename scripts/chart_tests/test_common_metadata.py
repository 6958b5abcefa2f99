"""commonLabels and commonAnnotations on every object (and the labels on the pods)."""

from helmchart import one, render

ALL = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
       "persistence": {"enabled": True}, "extraObjects": [
           {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"k": "v"}}, "data": {}}]}


def test_common_labels_everywhere():
    objs = render({**ALL, "commonLabels": {"team": "platform", "release": "{{ .Release.Name }}"}})
    own = [o for o in objs if o["_template"] != "rekey/templates/extra-objects.yaml"]
    assert len(own) == 7, [o["kind"] for o in own]
    for o in own:
        labels = o["metadata"]["labels"]
        assert labels["team"] == "platform", o["kind"]
        assert labels["release"] == "prod", o["kind"]
    pod = one(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    assert pod["labels"]["team"] == "platform"


def test_common_annotations_everywhere():
    objs = render({**ALL, "commonAnnotations": {"owner": "secops"},
                   "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/rekey"}}})
    own = [o for o in objs if o["_template"] != "rekey/templates/extra-objects.yaml"]
    for o in own:
        assert o["metadata"]["annotations"]["owner"] == "secops", o["kind"]
    sa = one(objs, "ServiceAccount")["metadata"]["annotations"]
    assert sa["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_none_by_default():
    for o in render():
        assert "annotations" not in o["metadata"], o["kind"]
        assert set(o["metadata"]["labels"]) == {
            "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by", "helm.sh/chart"}, o["kind"]
