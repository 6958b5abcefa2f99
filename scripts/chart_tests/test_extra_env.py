"""extraEnv (and env, its older name), extraEnvFrom."""

from helmchart import container, env, render


def test_extra_env():
    objs = render({"extraEnv": [{"name": "VAULT_CACERT", "value": "/etc/ca/ca.crt"},
                                {"name": "RELEASE", "value": "{{ .Release.Name }}"}],
                   "env": [{"name": "OLD", "value": "1"}]})
    e = env(objs)
    assert e["VAULT_CACERT"]["value"] == "/etc/ca/ca.crt"
    assert e["RELEASE"]["value"] == "prod"
    assert e["OLD"]["value"] == "1"
    assert e["REKEY_LOG_FORMAT"]["value"] == "json"


def test_extra_env_as_template_string():
    objs = render({"extraEnv": "- name: NS\n  value: {{ .Release.Namespace }}\n"})
    assert env(objs)["NS"]["value"] == "security"


def test_extra_env_from():
    objs = render({"extraEnvFrom": [{"configMapRef": {"name": "proxy-settings"}}]})
    ef = container(objs)["envFrom"]
    assert ef == [{"secretRef": {"name": "rekey-bootstrap"}}, {"configMapRef": {"name": "proxy-settings"}}]


def test_extra_env_from_without_bootstrap_secret():
    objs = render({"bootstrap": {"existingSecret": ""},
                   "extraEnvFrom": [{"secretRef": {"name": "other"}}]})
    assert container(objs)["envFrom"] == [{"secretRef": {"name": "other"}}]
    assert "envFrom" not in container(render({"bootstrap": {"existingSecret": ""}}))


def test_none_by_default():
    # The log format, and the downward-API variables the audit trail's actor is read from.
    e = env(render())
    assert set(e) == {"REKEY_LOG_FORMAT", "POD_NAME", "POD_NAMESPACE", "POD_SERVICE_ACCOUNT"}
    assert e["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert e["POD_SERVICE_ACCOUNT"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}
