"""extraObjects: maps and strings, both rendered as templates."""

from helmchart import of_kind, render


def test_extra_objects_map_and_string():
    objs = render({"extraObjects": [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "{{ .Release.Name }}-extra", "namespace": "{{ .Release.Namespace }}"},
         "data": {"a": "b"}},
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {{ include \"rekey.fullname\" . }}\n"
        "spec:\n  maxUnavailable: 0\n  selector:\n    matchLabels:\n      {{- include \"rekey.selectorLabels\" . | nindent 6 }}\n",
    ]})
    extra = [o for o in objs if o["_template"].endswith("extra-objects.yaml")]
    assert len(extra) == 2
    cm = [o for o in extra if o["kind"] == "ConfigMap"][0]
    assert cm["metadata"] == {"name": "prod-extra", "namespace": "security"}
    pdb = of_kind(objs, "PodDisruptionBudget")[0]
    assert pdb["metadata"]["name"] == "prod-rekey"
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "prod"


def test_none_by_default():
    assert not [o for o in render() if o["_template"].endswith("extra-objects.yaml")]
