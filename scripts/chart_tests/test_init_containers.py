"""initContainers."""

from helmchart import pod_spec, render


def test_init_containers():
    objs = render({"initContainers": [{"name": "wait", "image": "registry.example.com/busybox:1.37",
                                       "command": ["true"], "env": [{"name": "R", "value": "{{ .Release.Name }}"}]}]})
    ics = pod_spec(objs)["initContainers"]
    assert [c["name"] for c in ics] == ["wait"]
    assert ics[0]["env"] == [{"name": "R", "value": "prod"}]


def test_none_by_default():
    assert "initContainers" not in pod_spec(render())
