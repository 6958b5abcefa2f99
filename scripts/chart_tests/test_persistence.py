"""persistence: a volume for the file backend's store and the audit log."""

from helmchart import container, env, fails, of_kind, one, pod_spec, render


def test_created_claim():
    objs = render({"persistence": {"enabled": True, "size": "5Gi", "storageClass": "gp3"}})
    pvc = one(objs, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == "prod-rekey-data"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pvc["spec"]["storageClassName"] == "gp3"
    vols = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "prod-rekey-data"
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    assert mounts["data"]["mountPath"] == "/var/lib/rekey"
    assert "REKEY_AUDIT_LOG" not in env(objs)


def test_existing_claim():
    objs = render({"persistence": {"enabled": True, "existingClaim": "rekey-store"}})
    assert of_kind(objs, "PersistentVolumeClaim") == []
    vols = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "rekey-store"


def test_audit_log_on_the_volume():
    objs = render({"persistence": {"enabled": True, "mountPath": "/data/",
                                   "auditLog": {"enabled": True}}})
    assert env(objs)["REKEY_AUDIT_LOG"]["value"] == "/data/audit.jsonl"


def test_audit_log_needs_the_volume():
    fails({"persistence": {"auditLog": {"enabled": True}}}, "persistence.auditLog.enabled needs persistence.enabled")


def test_off_by_default():
    objs = render()
    assert of_kind(objs, "PersistentVolumeClaim") == []
    assert "data" not in {v["name"] for v in pod_spec(objs)["volumes"]}
