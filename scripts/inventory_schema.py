#!/usr/bin/env python3
"""Writes docs/schema/inventory.schema.json, the JSON Schema of rekey's inventory for editors
(taplo / Even Better TOML, VS Code), from the tables below; `--check` fails if the checked-in
file differs. The schema says what an editor can: keys, types, enums, duration and reference
shapes. rekey's own checks (`rekey plan`) say the rest, with file, line and key.

    scripts/inventory_schema.py            # write
    scripts/inventory_schema.py --check    # compare (tests/inventory_schema.rs)
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs/schema/inventory.schema.json")

DURATION = {"$ref": "#/definitions/duration"}
REF = {"$ref": "#/definitions/value_ref"}
SECRET_REF = {"$ref": "#/definitions/secret_ref"}
STR = {"type": "string"}
INT_POS = {"type": "integer", "minimum": 1}


def obj(props, required=(), description=None):
    o = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        o["required"] = list(required)
    if description:
        o["description"] = description
    return o


DRAIN = {
    "drain": {"enum": ["until-unused", "grace-only"],
              "description": "until-unused: delete a previous client once the platform shows no token with it for drain_quiet; grace-only: at the end of the grace"},
    "drain_quiet": dict(DURATION, description="how long without a token request counts as unused (default 2h)"),
    "drain_timeout": dict(DURATION, description="how long after the grace a client still in use is held (default 7d)"),
    "on_drain_timeout": {"enum": ["keep", "delete"], "description": "after drain_timeout: keep holding (default) or delete"},
}
STRATEGY = {"enum": ["alternate", "in-place"]}

SETTINGS = obj({
    "name_prefix": STR, "instance": {"type": "string", "pattern": "^[a-z0-9-]*$"},
    "prune": {"type": "boolean"}, "max_retire": {"type": "integer", "minimum": 0},
    "max_retire_percent": {"type": "integer", "minimum": 0, "maximum": 100},
    "concurrency": {"oneOf": [INT_POS, {"const": "auto"}]},
    "concurrency_min": INT_POS, "concurrency_max": INT_POS, "lease_ttl": DURATION, "verify_attempts": INT_POS,
    "verify_delay": DURATION, "max_verify_failures": INT_POS, "schedule": STR,
    "timezone": STR, "jitter": DURATION,
}, description="run-wide settings (docs/src/inventory.md)")

DEFAULTS = obj(dict({"strategy": STRATEGY, "max_age": DURATION, "grace": DURATION, "backend": STR}, **DRAIN),
               description="what a slot gets when it says nothing")

BOOTSTRAP = {"oneOf": [
    obj({"client_id": REF, "client_secret": SECRET_REF}, ["client_id", "client_secret"]),
    obj({"slot": STR, "seed": {"$ref": "#/definitions/pair_ref"}}, ["slot"]),
]}
COMMON = {"type": {}, "tenant": STR, "rate_limit": {"type": "number", "exclusiveMinimum": 0},
          "timeout": DURATION, "bootstrap": BOOTSTRAP, "ca_cert": STR}


def provider(kind, own):
    props = dict(COMMON, **own)
    props["type"] = {"const": kind}
    return obj(props, ["type", "bootstrap"])


PROVIDER = {"oneOf": [
    provider("taegis", {"environment": STR, "url": STR, "in_place_secret": {"enum": ["server", "caller"]}}),
    provider("cisco", {"region": {"enum": ["us", "eu", "apjc"]}, "url": STR,
                       "paths": obj({"clients": STR, "client": STR}),
                       "availability": STR, "org_hourly_budget": INT_POS,
                       "hourly_budget_reserve": {"oneOf": [{"type": "integer", "minimum": 0},
                                                           {"type": "string", "pattern": "^ *[0-9]{1,2} *% *$"}]}}),
]}

VAULT_AUTH = {"oneOf": [
    obj({"method": {"const": "token"}, "token": SECRET_REF}, ["method"]),
    obj({"method": {"const": "approle"}, "role_id": REF, "secret_id": SECRET_REF, "mount": STR},
        ["method", "role_id", "secret_id"]),
    obj({"method": {"const": "kubernetes"}, "role": STR, "jwt_file": STR, "mount": STR}, ["method", "role"]),
]}


def backend(kind, own, required=()):
    props = dict(own)
    props["type"] = {"const": kind}
    return obj(props, ["type", *required])


BACKEND = {"oneOf": [
    backend("file", {"path": STR, "identity": SECRET_REF, "recipients": {"type": "array", "items": STR}},
            ["path", "identity"]),
    backend("vault", {"address": STR, "mount": STR, "path_prefix": STR, "namespace": STR,
                      "ca_cert": STR, "auth": VAULT_AUTH, "timeout": DURATION}, ["address"]),
    backend("aws", {"region": STR, "endpoint_url": STR, "prefix": STR, "kms_key_id": STR,
                    "recovery_window_days": {"type": "integer", "minimum": 0, "maximum": 30},
                    "timeout": DURATION}),
    backend("exec", {"command": {"type": "array", "items": STR, "minItems": 1}, "timeout": DURATION,
                     "pass_env": {"type": "array", "items": STR}}, ["command"]),
]}

SLOT = obj(dict({
    "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,99}$"},
    "provider": STR, "tenant": STR,
    "roles": {"type": "array", "items": STR}, "scopes": {"type": "array", "items": STR},
    "strategy": STRATEGY, "max_age": DURATION, "grace": DURATION, "backend": STR,
    "mirrors": {"type": "array", "items": STR}, "retired": {"type": "boolean"},
}, **DRAIN), ["name", "provider"])

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": "https://rekey.invalid/schema/inventory.schema.json",
    "title": "rekey inventory",
    "description": "rekey's inventory (TOML). Generated by scripts/inventory_schema.py; docs/src/inventory.md explains every key.",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "settings": SETTINGS,
        "defaults": DEFAULTS,
        "providers": {"type": "object", "additionalProperties": PROVIDER},
        "backends": {"type": "object", "additionalProperties": BACKEND},
        "slots": {"type": "array", "items": SLOT},
    },
    "definitions": {
        "duration": {"type": "string", "pattern": "^\\s*([0-9]+\\s*[a-zA-Z]+\\s*)+$",
                     "description": "a number and a unit: \"90s\", \"10m\", \"24h\", \"30d\""},
        "value_ref": {"oneOf": [
            {"type": "string", "description": "a literal (non-secret values only)"},
            {"$ref": "#/definitions/secret_ref"},
        ]},
        "secret_ref": {"oneOf": [
            obj({"env": STR}, ["env"], "from an environment variable"),
            obj({"file": STR}, ["file"], "from a file (relative to the inventory); trailing newline trimmed"),
        ]},
        "pair_ref": obj({"client_id": REF, "client_secret": SECRET_REF}, ["client_id", "client_secret"]),
    },
}


def main():
    text = json.dumps(SCHEMA, indent=2) + "\n"
    if "--check" in sys.argv:
        with open(OUT) as f:
            if f.read() != text:
                sys.exit(f"{OUT} is not what scripts/inventory_schema.py makes: run it")
        print("inventory schema up to date")
        return
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
