"""podSecurityContext / containerSecurityContext: the restricted Pod Security Standard by default,
overridable, and the OpenShift example leaves the UIDs to the SCC."""

from helmchart import container, example, pod_spec, render


def restricted(pod, c):
    """The restricted profile's rules (kubernetes.io/docs/concepts/security/pod-security-standards)."""
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True
    assert (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    assert csc.get("allowPrivilegeEscalation") is False
    assert csc.get("capabilities", {}).get("drop") == ["ALL"]
    assert not csc.get("capabilities", {}).get("add")
    assert csc.get("privileged") in (None, False)
    assert psc.get("runAsUser", 1) != 0 and csc.get("runAsUser", 1) != 0


def test_restricted_by_default():
    objs = render()
    pod, c = pod_spec(objs), container(objs)
    restricted(pod, c)
    assert pod["securityContext"]["runAsUser"] == 65532
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_openshift_example_leaves_uids_unset():
    objs = render(example("values-openshift.yaml"))
    pod, c = pod_spec(objs), container(objs)
    for k in ("runAsUser", "runAsGroup", "fsGroup"):
        assert k not in pod["securityContext"], k
    restricted(pod, c)


def test_overridable():
    objs = render({"podSecurityContext": {"runAsUser": 1000, "supplementalGroups": [2000]},
                   "containerSecurityContext": {"readOnlyRootFilesystem": False}})
    pod, c = pod_spec(objs), container(objs)
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["supplementalGroups"] == [2000]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}  # merged
    assert c["securityContext"]["readOnlyRootFilesystem"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
