#!/usr/bin/env python3
"""The baseline of scripts/bench.py: the rotation loop a user would script from the Taegis docs.

For each tenant in turn it opens ONE `GraphQLService` of the official SDK (taegis-sdk-python)
logged in as that tenant's admin client, and inside `with service(tenant_id=TENANT)` rotates
each client of that tenant with `service.clients.mutation.rotate_client_secret(client_id)`,
writing every new pair at once to OpenBao/Vault KV v2 with `hvac`
(`secrets.kv.v2.create_or_update_secret`). No verification and no state record: that is less
work than rekey does per slot, so the comparison favours the baseline.

Usage: bench_baseline.py JOB.json, where JOB.json (0600, written by bench.py) holds the emulator
URL, the Vault address, mount, path prefix and token file, the tenants (environment name,
tenant id, files holding the admin pair) and the slots (name, tenant index, client id).
Expects OAUTHLIB_INSECURE_TRANSPORT=1 and HOME set to a temp dir (the SDK caches tokens in
~/.taegis_sdk_python/config per environment name). Prints one JSON line: the count of rotated
slots and the loop's own time. Never prints a secret.
"""
import json
import os
import sys
import time

import hvac
from taegis_sdk_python import GraphQLService
from taegis_sdk_python.config import write_to_config


def read(path):
    with open(path) as f:
        return f.read().strip()


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    vault = hvac.Client(url=job["vault_addr"], token=read(job["vault_token_file"]))
    by_tenant = {}
    for s in job["slots"]:
        by_tenant.setdefault(s["tenant_index"], []).append(s)
    rotated = 0
    loop_start = time.monotonic()
    for i, t in enumerate(job["tenants"]):
        slots = by_tenant.get(i, [])
        if not slots:
            continue
        # One environment name per bootstrap credential, its variables remapped as the SDK's
        # docs show (write_to_config), so each tenant's admin gets its own cached token.
        env = t["env"]
        id_var, secret_var = f"BENCH_{env.upper()}_ID", f"BENCH_{env.upper()}_SECRET"
        os.environ[id_var] = read(t["id_file"])
        os.environ[secret_var] = read(t["secret_file"])
        write_to_config(env, "CLIENT_ID", id_var)
        write_to_config(env, "CLIENT_SECRET", secret_var)
        service = GraphQLService(environment=env, environments={env: job["url"]})
        with service(tenant_id=t["tenant"]):
            for s in slots:
                r = service.clients.mutation.rotate_client_secret(s["client_id"])
                vault.secrets.kv.v2.create_or_update_secret(
                    path=job["path_prefix"] + s["slot"],
                    secret={"client_id": s["client_id"], "client_secret": r.client_secret},
                    mount_point=job["mount"],
                )
                rotated += 1
    # What the harness needs to extrapolate a subset: the loop's own time (process start and
    # imports happen once however many slots there are).
    print(json.dumps({"rotated": rotated, "loop_seconds": time.monotonic() - loop_start}))


if __name__ == "__main__":
    main()
