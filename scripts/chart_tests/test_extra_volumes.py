"""extraVolumes and extraVolumeMounts."""

from helmchart import container, pod_spec, render


def test_extra_volumes_and_mounts():
    objs = render({
        "extraVolumes": [{"name": "approle", "secret": {"secretName": "rekey-approle"}}],
        "extraVolumeMounts": [{"name": "approle", "mountPath": "/etc/rekey-approle", "readOnly": True}],
    })
    vols = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    assert vols["approle"]["secret"]["secretName"] == "rekey-approle"
    assert {"inventory", "tmp"} <= set(vols)
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    assert mounts["approle"]["mountPath"] == "/etc/rekey-approle"


def test_as_template_strings():
    objs = render({
        "extraVolumes": "- name: ca\n  configMap:\n    name: {{ .Release.Name }}-ca\n",
        "extraVolumeMounts": "- name: ca\n  mountPath: /etc/ca\n",
    })
    vols = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    assert vols["ca"]["configMap"]["name"] == "prod-ca"
    assert "ca" in {m["name"] for m in container(objs)["volumeMounts"]}


def test_only_the_chart_volumes_by_default():
    objs = render()
    assert [v["name"] for v in pod_spec(objs)["volumes"]] == ["inventory", "tmp"]
    assert [m["name"] for m in container(objs)["volumeMounts"]] == ["inventory", "tmp"]
