"""priorityClassName, podAnnotations, podLabels."""

from helmchart import one, pod_spec, render


def pod_meta(objs):
    return one(objs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]


def test_priority_class_name():
    assert pod_spec(render({"priorityClassName": "rekey-critical"}))["priorityClassName"] == "rekey-critical"
    assert "priorityClassName" not in pod_spec(render())


def test_pod_annotations_and_labels():
    objs = render({"podAnnotations": {"vault.example.com/role": "rekey", "rel": "{{ .Release.Name }}"},
                   "podLabels": {"tier": "security"}})
    m = pod_meta(objs)
    assert m["annotations"] == {"vault.example.com/role": "rekey", "rel": "prod"}
    assert m["labels"]["tier"] == "security"
    assert m["labels"]["app.kubernetes.io/name"] == "rekey"
    assert "annotations" not in pod_meta(render())
