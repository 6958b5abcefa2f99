"""serviceAccount.projectedToken: an audience-bound token for Vault's Kubernetes auth."""

from helmchart import container, fails, pod_spec, render


def test_projected_token():
    objs = render({"serviceAccount": {"automountToken": False,
                                      "projectedToken": {"enabled": True, "audience": "vault.example.com",
                                                         "expirationSeconds": 900}}})
    vols = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    src = vols["projected-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert src == {"path": "token", "audience": "vault.example.com", "expirationSeconds": 900}
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    assert mounts["projected-token"] == {"name": "projected-token", "mountPath": "/var/run/secrets/rekey/vault", "readOnly": True}
    assert pod_spec(objs)["automountServiceAccountToken"] is False


def test_short_expiry_refused():
    # The kubelet refuses tokens shorter than 10 minutes.
    fails({"serviceAccount": {"projectedToken": {"enabled": True, "expirationSeconds": 60}}}, "expirationSeconds")


def test_off_by_default():
    assert "projected-token" not in {v["name"] for v in pod_spec(render())["volumes"]}
