"""Holds rekey's emulator to the official Taegis Python SDK (taegis-sdk-python).

Usage: taegis_sdk_check.py URL

Uses the SDK exactly as its documentation shows, changed only by pointing it at URL with
environments={"local": URL}. Expects, in the environment:

  OAUTHLIB_INSECURE_TRANSPORT=1, HOME=<a temp dir>
  CLIENT_ID, CLIENT_SECRET            a Tenant Admin client of tenant A
  REKEY_TENANT_A, REKEY_TENANT_A_CHILD  tenant A and a child tenant of A
  REKEY_TENANT_B                      another tenant, unrelated to A
  REKEY_B_CLIENT_ID, REKEY_B_CLIENT_SECRET  a Tenant Admin client of tenant B

Prints one `ok - ...` line per check and exits non-zero at the first failure. Never prints a
secret or a token: every message goes through redact().
"""

import logging
import os
import sys
import time
import uuid

import requests
from gql.transport.exceptions import TransportQueryError, TransportServerError
from taegis_sdk_python import GraphQLService
from taegis_sdk_python.config import write_to_config
from taegis_sdk_python.services.clients.types import (
    ClientsSearchInput,
    CreateClientInput,
)
from taegis_sdk_python.tokens import get_token_exp

TENANT_ADMIN = "ba0fdcbd-e87d-4bdd-ae7d-ca6118b25068"
TOKEN_PATH = "/auth/api/v2/auth/token"

# Every secret and token this script sees, so no message can carry one.
SENSITIVE = set()


def remember(*values):
    for v in values:
        if v:
            SENSITIVE.add(v)
    register(*values)
    return values[0] if len(values) == 1 else values


def register(*values):
    """Adds the values to the leak scan's registry (scripts/test.sh, tests/common/secrets.rs)."""
    path = os.environ.get("REKEY_SECRET_REGISTRY")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        for v in values:
            if v:
                os.write(fd, f"{v}\n".encode())
    finally:
        os.close(fd)


def redact(text):
    text = str(text)
    for s in sorted(SENSITIVE, key=len, reverse=True):
        text = text.replace(s, "[redacted]")
    return text


def ok(message):
    print(redact(f"ok - {message}"), flush=True)


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


class SchemaWarnings(logging.Handler):
    """The SDK logs 'field X not found. Removing from query string' when our schema lacks a
    field its generated types ask for: that is a fidelity failure, so collect them."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.missing = []

    def emit(self, record):
        msg = record.getMessage()
        if "not found" in msg and "Removing" in msg:
            self.missing.append(redact(msg))


def token_status(url, client_id, secret):
    """Status of a client-credentials token request, the way the SDK makes it."""
    r = requests.post(
        url + TOKEN_PATH,
        auth=(client_id, secret),
        data={"grant_type": "client_credentials"},
        headers={"Accept": "application/json"},
        timeout=10,
    )
    if r.status_code == 200:
        remember(r.json().get("access_token"))
    return r.status_code


def graphql_status(url, token, tenant=None):
    headers = {"Authorization": f"Bearer {token}"}
    if tenant:
        headers["X-Tenant-Context"] = tenant
    r = requests.post(
        url + "/graphql",
        json={"query": "query { clientsSearch { totalCount } }"},
        headers=headers,
        timeout=10,
    )
    return r.status_code


_env_counter = [0]


def fresh_service(url, client_id, secret, **kwargs):
    """A GraphQLService under a new environment name, logging in as client_id.

    The SDK caches tokens per environment name, and reads the credentials from environment
    variables whose names can be remapped per environment (write_to_config), so a new name
    with remapped variables is how its documentation logs in as another client."""
    _env_counter[0] += 1
    env = f"local{_env_counter[0]}"
    id_var, secret_var = f"REKEY_CHECK_{env.upper()}_ID", f"REKEY_CHECK_{env.upper()}_SECRET"
    os.environ[id_var] = client_id
    os.environ[secret_var] = secret
    write_to_config(env, "CLIENT_ID", id_var)
    write_to_config(env, "CLIENT_SECRET", secret_var)
    return GraphQLService(environment=env, environments={env: url}, **kwargs)


def expect_query_error(fn, needle, what):
    try:
        fn()
    except TransportQueryError as e:
        check(needle in str(e), f"{what}: unexpected error {redact(e)!r}")
        return
    raise CheckFailed(f"{what}: the call succeeded")


def main(url):
    tenant_a = os.environ["REKEY_TENANT_A"]
    tenant_child = os.environ["REKEY_TENANT_A_CHILD"]
    tenant_b = os.environ["REKEY_TENANT_B"]
    remember(os.environ["CLIENT_SECRET"], os.environ["REKEY_B_CLIENT_SECRET"])
    run = uuid.uuid4().hex[:8]

    schema_warnings = SchemaWarnings()
    logging.getLogger("taegis_sdk_python").addHandler(schema_warnings)
    # The SDK warns once per deprecated field it leaves out and per deprecated query; that is
    # expected noise. gql would log payloads (secrets) at INFO: keep it above that.
    logging.getLogger("taegis_sdk_python").setLevel(logging.WARNING)
    logging.getLogger("taegis_sdk_python").propagate = False
    logging.getLogger("gql").setLevel(logging.WARNING)

    # --- the documented set-up: environment "local", CLIENT_ID/CLIENT_SECRET from the env.
    service = GraphQLService(environment="local", environments={"local": url})
    token = remember(service.access_token)
    check(isinstance(token, str) and token.count(".") == 2, "access_token is not a JWT")
    check(get_token_exp(token) > time.time() + 60, "the token's exp is not in the future")
    ok("service.access_token returns a JWT whose exp the SDK can read")

    # --- createClient, roles omitted: Tenant Analyst.
    analyst = service.clients.mutation.create_client(name=f"sdk-{run}-analyst", roles=None)
    remember(analyst.client_secret)
    check(analyst.client_secret and len(analyst.client_secret) >= 32, "no secret returned")
    c = analyst.client
    check(len(c.client_id) == 32 and c.client_id.isalnum(), "clientID is not 32 alphanumerics")
    check(c.tenant_id == tenant_a, f"tenantID {c.tenant_id} != {tenant_a}")
    check(c.name == f"sdk-{run}-analyst", "name not kept")
    names = [r.role_name for r in c.role_assignments or []]
    check(names == ["Tenant Analyst"], f"roles without `roles` are {names}")
    ok("create_client without roles makes a Tenant Analyst client in the caller's tenant")

    admin = service.clients.mutation.create_client(name=f"sdk-{run}-admin", roles=[TENANT_ADMIN])
    remember(admin.client_secret)
    check(
        [r.role_id for r in admin.client.role_assignments] == [TENANT_ADMIN],
        "Tenant Admin role not assigned",
    )
    ok("create_client with the Tenant Admin role")

    # --- tenant_id on the service: the SDK sends X-Tenant-Context.
    in_a = GraphQLService(environment="local", environments={"local": url}, tenant_id=tenant_a)
    explicit = in_a.clients.mutation.create_client(
        name=f"sdk-{run}-explicit", input_=CreateClientInput(owner_tenant_id=tenant_a)
    )
    remember(explicit.client_secret)
    check(explicit.client.tenant_id == tenant_a, "tenant_id=A did not create in A")
    check(explicit.client.owner_tenant_id == tenant_a, "ownerTenantID not kept")
    ok("create_client with tenant_id set on GraphQLService (and input ownerTenantID)")

    with service(tenant_id=tenant_child):
        child = service.clients.mutation.create_client(
            name=f"sdk-{run}-child", roles=[TENANT_ADMIN]
        )
    remember(child.client_secret)
    check(child.client.tenant_id == tenant_child, "with service(tenant_id=child) ignored")
    ok("create_client inside `with service(tenant_id=...)` acts in that (child) tenant")

    # --- queries.
    found = service.clients.query.clients(client_ids=[analyst.client.client_id])
    check([x.id_ for x in found] == [analyst.client.id_], "clients(client_ids=) wrong")
    ok("clients.query.clients by client_ids")

    found = service.clients.query.clients(name=f"sdk-{run}-%")
    got = sorted(x.name for x in found)
    want = sorted(f"sdk-{run}-{n}" for n in ["analyst", "admin", "explicit"])
    check(got == want, f"clients(name='%') found {got}, want {want} (child tenant excluded)")
    found = service.clients.query.clients(name=f"%-{run}-adm%")
    check([x.name for x in found] == [f"sdk-{run}-admin"], "inner % wildcard wrong")
    found = service.clients.query.clients(name=f"sdk-{run}-analys")
    check(found == [], "a name without % must match exactly")
    ok("clients.query.clients by %-wildcard name (and exact name without %)")

    res = service.clients.query.clients_search(
        ClientsSearchInput(name=f"sdk-{run}-%", per_page=2)
    )
    check(res.total_count == 3 and len(res.results) == 2, "clientsSearch paging/totals wrong")
    check(res.total_unfiltered_count >= 3, "totalUnfilteredCount too small")
    check([x.name for x in res.results] == sorted(want)[:2], "clientsSearch not sorted by name")
    ok("clients.query.clients_search with totalCount, perPage and name order")

    by_id = service.clients.query.client(analyst.client.id_)
    by_client_id = service.clients.query.client(analyst.client.client_id)
    check(by_id.client_id == by_client_id.client_id == analyst.client.client_id, "client(id)")
    ok("clients.query.client by object id and by client id")

    # --- rotation: by object id, then by client id.
    check(token_status(url, c.client_id, analyst.client_secret) == 200, "analyst login failed")
    analyst_svc = fresh_service(url, c.client_id, analyst.client_secret)
    old_token = remember(analyst_svc.access_token)
    check(graphql_status(url, old_token) == 200, "analyst token refused before rotation")

    rotated = service.clients.mutation.rotate_client_secret(c.id_)
    remember(rotated.client_secret)
    check(rotated.client.client_id == c.client_id, "rotation changed the client id")
    check(rotated.client_secret != analyst.client_secret, "rotation kept the secret")
    ok("rotate_client_secret by object id returns a new secret")

    check(token_status(url, c.client_id, analyst.client_secret) == 401, "old secret still works")
    ok("the old secret is refused at the token endpoint at once")
    check(graphql_status(url, old_token) == 401, "a token minted before rotation still works")
    ok("a token minted before the rotation is rejected (401)")

    new_svc = fresh_service(url, c.client_id, rotated.client_secret)
    check(get_token_exp(remember(new_svc.access_token)) > time.time(), "new pair: no token")
    ok("the new secret gets a token through a fresh GraphQLService")

    rotated2 = service.clients.mutation.rotate_client_secret(c.client_id)
    remember(rotated2.client_secret)
    check(token_status(url, c.client_id, rotated.client_secret) == 401, "2nd rotation: old ok")
    check(token_status(url, c.client_id, rotated2.client_secret) == 200, "2nd rotation: new bad")
    ok("rotate_client_secret by client id; only the newest secret works")

    chosen = remember(f"chosen-{uuid.uuid4().hex}{uuid.uuid4().hex}")
    rotated3 = service.clients.mutation.rotate_client_secret(c.client_id, secret=chosen)
    check(rotated3.client_secret == chosen, "caller-chosen secret not honoured")
    check(token_status(url, c.client_id, chosen) == 200, "caller-chosen secret refused")
    ok("rotate_client_secret(secret=...) sets the caller-chosen secret")

    # --- usage, as the SDK's Client type names it (rekey reads it before deleting a client).
    used = service.clients.query.client(c.id_)
    check(used.token_request_count is not None and used.token_request_count >= 5,
          f"tokenRequestCount {used.token_request_count}, want >= 5 token requests")
    check(used.token_request_time is not None and used.token_request_time.endswith("Z"),
          "tokenRequestTime missing")
    fresh = service.clients.mutation.create_client(name=f"sdk-{run}-unused")
    remember(fresh.client_secret)
    check(fresh.client.token_request_count == 0 and fresh.client.token_request_time is None,
          "a new client reports a use")
    service.clients.mutation.delete_client(fresh.client.id_)
    ok("Client.token_request_time / token_request_count: set by token requests, null/0 when unused")

    # --- a client without Tenant Admin may not manage clients.
    analyst_svc = fresh_service(url, c.client_id, chosen)
    expect_query_error(
        lambda: analyst_svc.clients.query.clients(name="%"),
        "not authorized",
        "Tenant Analyst listing clients",
    )
    ok("a client without Tenant Admin is refused (GraphQL error: not authorized)")

    # --- tenant isolation.
    svc_b = fresh_service(url, os.environ["REKEY_B_CLIENT_ID"], os.environ["REKEY_B_CLIENT_SECRET"])
    in_b = svc_b.clients.mutation.create_client(name=f"sdk-{run}-in-b")
    remember(in_b.client_secret)
    check(in_b.client.tenant_id == tenant_b, "B's client not in B")
    seen = service.clients.query.clients(client_ids=[in_b.client.client_id])
    check(seen == [], "tenant A sees tenant B's client")
    seen = service.clients.query.clients(name=f"sdk-{run}-in-b")
    check(seen == [], "tenant A finds tenant B's client by name")
    expect_query_error(
        lambda: service.clients.query.client(in_b.client.client_id),
        "not found",
        "A reading B's client",
    )
    with service(tenant_id=tenant_b):
        expect_query_error(
            lambda: service.clients.query.clients(name="%"),
            "not authorized",
            "A acting in tenant B",
        )
    expect_query_error(
        lambda: service.clients.mutation.rotate_client_secret(in_b.client.id_),
        "not found",
        "A rotating B's client",
    )
    expect_query_error(
        lambda: service.clients.mutation.delete_client(in_b.client.client_id),
        "not found",
        "A deleting B's client",
    )
    check(token_status(url, in_b.client.client_id, in_b.client_secret) == 200, "B's client hurt")
    seen = svc_b.clients.query.clients(client_ids=[c.client_id])
    check(seen == [], "tenant B sees tenant A's client")
    ok("tenant A cannot see, read, rotate or delete tenant B's clients, nor act in B")

    # --- deletion.
    live_token = remember(analyst_svc.access_token)
    check(graphql_status(url, live_token) == 200, "analyst token refused before deletion")
    deleted = service.clients.mutation.delete_client(c.id_)
    check(deleted.client_id == c.client_id, "delete_client returned another client")
    check(service.clients.query.clients(client_ids=[c.client_id]) == [], "deleted client listed")
    ok("delete_client removes the client")
    check(token_status(url, c.client_id, chosen) == 401, "deleted client can still log in")
    dead = fresh_service(url, c.client_id, chosen)
    try:
        remember(dead.access_token)
        raise CheckFailed("the SDK got a token for a deleted client")
    except CheckFailed:
        raise
    except Exception as e:  # oauthlib's InvalidClientError, as the SDK raises it
        check("invalid_client" in str(e), f"unexpected login error {redact(e)!r}")
    ok("a deleted client cannot log in (SDK and token endpoint)")
    check(graphql_status(url, live_token) == 401, "a token of the deleted client still works")
    ok("tokens of a deleted client are rejected (401)")

    for nc in [admin, explicit]:
        service.clients.mutation.delete_client(nc.client.client_id)
    with service(tenant_id=tenant_child):
        service.clients.mutation.delete_client(child.client.id_)
    svc_b.clients.mutation.delete_client(in_b.client.id_)
    check(service.clients.query.clients(name=f"sdk-{run}-%") == [], "clean-up left clients")
    ok("clean-up: every client this run made is deleted")

    check(not schema_warnings.missing, f"SDK dropped fields: {schema_warnings.missing}")
    ok("the SDK found every field its generated types ask for")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: taegis_sdk_check.py URL", file=sys.stderr)
        sys.exit(2)
    try:
        main(sys.argv[1].rstrip("/"))
    except CheckFailed as e:
        print(redact(f"FAIL - {e}"), file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - report any SDK error as a failure, redacted
        print(redact(f"FAIL - {type(e).__name__}: {e}"), file=sys.stderr)
        sys.exit(1)
