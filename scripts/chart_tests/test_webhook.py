"""webhook: the URL from an existing Secret (never a value in the chart), its format and events as
the environment `rekey` reads (src/cli.rs), and networkPolicy.webhook for an in-cluster
receiver. The allowed formats and events are the binary's own: read from
src/observe/notify/mod.rs, so the chart cannot offer one that rekey refuses."""

import json
import re

from helmchart import ROOT, env, fails, one, render

HOOK = {"webhook": {"existingSecret": "rekey-webhook", "format": "cloudevents",
                    "events": ["rotated", "failed", "run_failed"]}}


def rust_value_names(enum):
    """The `clap::ValueEnum` names of `enum`: its variants in snake_case."""
    src = (ROOT / "src" / "observe" / "notify" / "mod.rs").read_text()
    body = re.search(r"pub enum %s \{(.*?)\n\}" % enum, src, re.S).group(1)
    variants = re.findall(r"^\s*([A-Z][A-Za-z]*),", body, re.M)
    return [re.sub(r"(?<!^)([A-Z])", r"_\1", v).lower() for v in variants]


def test_url_from_the_secret_format_and_events():
    e = env(render(HOOK))
    assert e["REKEY_WEBHOOK_URL"] == {"name": "REKEY_WEBHOOK_URL", "valueFrom": {
        "secretKeyRef": {"name": "rekey-webhook", "key": "url"}}}
    assert e["REKEY_WEBHOOK_FORMAT"]["value"] == "cloudevents"
    assert e["REKEY_WEBHOOK_EVENTS"]["value"] == "rotated,failed,run_failed"


def test_the_variables_are_the_ones_rekey_reads():
    cli = (ROOT / "src" / "cli.rs").read_text()
    for name in [k for k in env(render(HOOK)) if k.startswith("REKEY_WEBHOOK")]:
        assert f'env = "{name}"' in cli, name


def test_same_in_mode_run():
    pod = one(render({**HOOK, "mode": "run"}), "Deployment")["spec"]["template"]["spec"]
    e = {v["name"]: v for v in pod["containers"][0]["env"]}
    assert e["REKEY_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["name"] == "rekey-webhook"
    assert e["REKEY_WEBHOOK_EVENTS"]["value"] == "rotated,failed,run_failed"


def test_none_by_default_and_rekeys_default_events():
    assert not [k for k in env(render()) if k.startswith("REKEY_WEBHOOK")]
    e = env(render({"webhook": {"existingSecret": "hook", "key": "address"}}))
    assert e["REKEY_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hook", "key": "address"}
    assert e["REKEY_WEBHOOK_FORMAT"]["value"] == "generic"
    assert "REKEY_WEBHOOK_EVENTS" not in e, "rekey's own default applies"


def test_the_schema_offers_what_rekey_accepts():
    schema = json.loads((ROOT / "helm" / "rekey" / "values.schema.json").read_text())
    props = schema["properties"]["webhook"]["properties"]
    assert props["format"]["enum"] == rust_value_names("WebhookFormat")
    assert props["events"]["items"]["enum"] == rust_value_names("WebhookEvent")
    fails({"webhook": {"existingSecret": "h", "format": "teams"}}, "format")
    fails({"webhook": {"existingSecret": "h", "events": ["rotate"]}}, "events")
    fails({"webhook": {"url": "https://hooks.example/x"}}, "url")


def test_network_policy_admits_the_receiver_it_names():
    objs = render({**HOOK, "networkPolicy": {"webhook": {
        "enabled": True, "namespaceLabels": {"kubernetes.io/metadata.name": "apps"},
        "podLabels": {"app": "reload-hook"}}}})
    rules = one(objs, "NetworkPolicy")["spec"]["egress"]
    hook = [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": 8080}]]
    assert len(hook) == 1
    assert hook[0]["to"][0]["podSelector"]["matchLabels"] == {"app": "reload-hook"}
    assert hook[0]["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "apps"}
    fails({"networkPolicy": {"webhook": {"enabled": True}}}, "networkPolicy.webhook.enabled needs")
