"""The checks themselves can fail: an invalid rendered object is refused by the Kubernetes
schemas, a template error fails the render."""

import kubernetes_validate

from helmchart import fails, render


def test_invalid_object_refused():
    bad = {"extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "x"}, "dataa": {}}]}
    try:
        render(bad)
    except kubernetes_validate.ValidationError as e:
        assert "dataa" in e.message
    else:
        raise AssertionError("an object with an unknown field passed validation")


def test_invalid_pod_field_refused():
    try:
        render({"extraVolumeMounts": [{"name": "x", "mountPath": "/x", "readonly": True}]})
    except kubernetes_validate.ValidationError as e:
        assert "readonly" in e.message
    else:
        raise AssertionError("a volume mount with an unknown field passed validation")


def test_template_error_fails_the_render():
    fails({"extraObjects": ["{{ .Values.nope.deeper }}"]}, "nil pointer")
