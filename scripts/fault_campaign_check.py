"""The fault campaign's independent check: reads what rekey left behind with the standard
clients, never with rekey's own code.

- Backends: the `age` CLI (Debian `age`) decrypts the file backend's records; `hvac` reads
  OpenBao's KV v2 entries (state and consumer); `boto3` reads Secrets Manager (moto) by stage.
- Providers: the official Taegis SDK (`taegis-sdk-python`) logs in with each pair and lists the
  tenant's clients; Cisco's `threatresponse` logs in with each pair and, through its own
  authorised request (it has no wrapper for the OAuth client API), lists the org's clients.

`check_world` returns a list of failures (strings that never hold a secret) and a snapshot of
every slot's pairs, which the next scenario's check compares against.
"""

import json
import logging
import os
import subprocess
import tempfile

import boto3
import hvac
import requests
from taegis_sdk_python import GraphQLService
from taegis_sdk_python.config import write_to_config
from threatresponse import ThreatResponse

# gql and the SDK log request payloads (secrets) at INFO and below; the SDK also warns about
# the deprecated `clients` query on every call (it is still the documented one).
for _name in ("gql", "taegis_sdk_python", "urllib3", "botocore", "boto3"):
    logging.getLogger(_name).setLevel(logging.ERROR)

CISCO_CLIENTS = "/iroh/oauth2-clients/clients"
MANAGED_PREFIX = "rekey-"


# ---- backends ---------------------------------------------------------------------------------

class FileReader:
    """`age -d -i IDENTITY STORE/SLOT.age`: the JSON `{version, record}` docs/src/backends/file.md documents."""

    def __init__(self, store, identity):
        self.store, self.identity = store, identity

    def read_all(self):
        out = {}
        if not os.path.isdir(self.store):
            return out
        for name in sorted(os.listdir(self.store)):
            if name.startswith(".") or not name.endswith(".age"):
                continue
            p = subprocess.run(["age", "-d", "-i", self.identity, os.path.join(self.store, name)],
                               capture_output=True, timeout=30)
            if p.returncode != 0:
                raise RuntimeError(f"age could not decrypt {name} (exit {p.returncode})")
            record = json.loads(p.stdout)["record"]
            if is_budget_ledger(record):
                continue
            out[record["slot"]] = (record, None)  # consumers read `current` itself
        return out


def is_budget_ledger(record):
    """A Cisco provider's hourly budget, shared by every process (src/provider/budget.rs): an
    entry in the store, but no slot, with no pair to check."""
    return record.get("budget") is not None


class VaultReader:
    """hvac over KV v2: the state entry `<prefix>.rekey/SLOT` holds the record, the consumer
    entry `<prefix>SLOT` the current pair."""

    def __init__(self, addr, token, prefix, mount="secret"):
        self.client = hvac.Client(url=addr, token=token, timeout=10)
        self.prefix, self.mount = prefix, mount

    def _read(self, path):
        try:
            r = self.client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self.mount, raise_on_deleted_version=True)
        except hvac.exceptions.InvalidPath:
            return None
        return r["data"]["data"]

    def read_all(self):
        try:
            keys = self.client.secrets.kv.v2.list_secrets(
                path=self.prefix + ".rekey", mount_point=self.mount)["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            return {}
        out = {}
        for slot in keys:
            record = self._read(f"{self.prefix}.rekey/{slot}")
            if record is None or is_budget_ledger(record):
                continue
            view = self._read(self.prefix + slot)
            out[slot] = (record, view)
        return out


class AwsReader:
    """boto3: the record is the version labelled REKEY_RECORD, consumers read AWSCURRENT."""

    def __init__(self, endpoint, prefix):
        self.sm = boto3.client(
            "secretsmanager", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
            aws_session_token="testing")
        self.prefix = prefix

    def read_all(self):
        out = {}
        pages = self.sm.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [self.prefix]}])
        for page in pages:
            for s in page["SecretList"]:
                if s.get("DeletedDate"):
                    continue
                name = s["Name"]
                rec = json.loads(self.sm.get_secret_value(
                    SecretId=name, VersionStage="REKEY_RECORD")["SecretString"])["record"]
                if is_budget_ledger(rec):
                    continue
                view = json.loads(self.sm.get_secret_value(
                    SecretId=name, VersionStage="AWSCURRENT")["SecretString"])
                out[rec["slot"]] = (rec, view)
        return out


# ---- providers --------------------------------------------------------------------------------

class Platform:
    """The emulator, seen only through the official Python clients."""

    def __init__(self, url, tenant, admin_id, admin_secret, org, cisco_id, cisco_password, home_base):
        self.url = url
        self.home_base = home_base
        self.tenant = tenant
        self.admin = (admin_id, admin_secret)
        self.org = org
        self.cisco_admin = (cisco_id, cisco_password)
        self.env_counter = 0
        self.cisco_env = {"visibility": url, "private_intel": url, "global_intel": url}
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

    def fresh_home(self):
        """A new HOME for the SDK's token cache (one config file per check, so it stays small
        and no token from an earlier check is ever reused)."""
        home = tempfile.mkdtemp(prefix="sdk-home-", dir=self.home_base)
        os.environ["HOME"] = home
        return home

    def _service(self, client_id, secret):
        # The SDK caches tokens per environment name and reads the credentials from variables
        # that write_to_config can remap per environment: a fresh name per login.
        self.env_counter += 1
        env = f"campaign{self.env_counter}"
        id_var, secret_var = f"REKEY_CAMPAIGN_{self.env_counter}_ID", f"REKEY_CAMPAIGN_{self.env_counter}_SECRET"
        os.environ[id_var], os.environ[secret_var] = client_id, secret
        write_to_config(env, "CLIENT_ID", id_var)
        write_to_config(env, "CLIENT_SECRET", secret_var)
        return GraphQLService(environment=env, environments={env: self.url}), (id_var, secret_var)

    def taegis_login_ok(self, client_id, secret):
        service, names = self._service(client_id, secret)
        try:
            return bool(service.access_token)
        except Exception as e:  # oauthlib's InvalidClientError for a refused pair
            if "invalid_client" in str(e) or "401" in str(e):
                return False
            raise RuntimeError(f"Taegis login: {type(e).__name__}") from None
        finally:
            for n in names:
                os.environ.pop(n, None)

    def taegis_clients(self):
        """{client_id: name} of the tenant's clients whose name is rekey's managed prefix."""
        service, names = self._service(*self.admin)
        try:
            found = service.clients.query.clients(name=MANAGED_PREFIX + "%")
        finally:
            for n in names:
                os.environ.pop(n, None)
        return {c.client_id: c.name for c in found}

    def taegis_plant_client(self, name):
        """Creates a client named like one of rekey's (the checker's self-test); returns
        (object id, secret)."""
        service, names = self._service(*self.admin)
        try:
            made = service.clients.mutation.create_client(name=name, roles=None)
        finally:
            for n in names:
                os.environ.pop(n, None)
        return made.client.id_, made.client_secret

    def taegis_delete_client(self, object_id):
        service, names = self._service(*self.admin)
        try:
            service.clients.mutation.delete_client(object_id)
        finally:
            for n in names:
                os.environ.pop(n, None)

    def cisco_plant_client(self, name):
        """Creates a Cisco client named like one of rekey's, as another integration of the org
        would; returns (client id, password)."""
        tr = ThreatResponse(*self.cisco_admin, environment=self.cisco_env, timeout=10)
        made = tr.profile._post(CISCO_CLIENTS, json={
            "name": name, "description": "not rekey's", "scopes": ["enrich:read"],
            "grants": ["client-creds"], "availability": "org"})
        return made["clientId"] if "clientId" in made else made["id"], made.get("password", "")

    def cisco_login_ok(self, client_id, password):
        try:
            ThreatResponse(client_id, password, environment=self.cisco_env, timeout=10)
            return True
        except requests.exceptions.HTTPError as e:
            if e.response is not None and e.response.status_code == 401:
                return False
            raise RuntimeError(f"Cisco login: HTTP {getattr(e.response, 'status_code', None)}") from None

    def cisco_clients(self):
        tr = ThreatResponse(*self.cisco_admin, environment=self.cisco_env, timeout=10)
        listed = tr.profile._get(CISCO_CLIENTS, params={"limit": 1000})
        return {c["id"]: c["name"] for c in listed if c["name"].startswith(MANAGED_PREFIX)}


# ---- the check --------------------------------------------------------------------------------

def pairs_of(record):
    """(role, credential) for every pair a record holds."""
    out = []
    if record.get("current"):
        out.append(("current", record["current"]))
    if record.get("pending"):
        out.append(("pending", record["pending"]))
    for d in record.get("draining") or []:
        out.append(("draining", d["credential"]))
    return out


def check_world(world, reader, platform, before, expect_rotation, secrets, foreign=None, extra=None):
    """Checks every slot of `world` against the backend and the platform.

    before: {slot: {"gen": n, "current": (client_id, secret), "draining": [(id, secret)]}} from
      the previous check (empty at the start).
    expect_rotation: every slot was due in this scenario, so its generation must be exactly one
      more than before (more is a double rotation; the same is a rotation lost).
    secrets: a set; every secret read is added, for the output scan.
    foreign: {client_id: name} of clients rekey did not make (planted with rekey's name prefix,
      or another deployment's on the same tenant): each must still exist, and none is an orphan.
    extra: {"slots": set, "clients": set, "drained": set} of backend entries and clients the
    campaign knows of, and previous clients it saw deleted after their grace
      outside the world's slots (a slot being retired), checked by the campaign itself.
    Returns (failures, snapshot, slots_checked).
    """
    foreign = foreign or {}
    extra = extra or {"slots": set(), "clients": set()}
    failures = []
    platform.fresh_home()
    stored = reader.read_all()
    for slot, (rec, _view) in stored.items():
        for _role, c in pairs_of(rec):
            secrets.add(c["secret"])
    taegis_listed = platform.taegis_clients()
    cisco_listed = platform.cisco_clients()
    snapshot = {}
    referenced = set()
    for slot in world.slots:
        name, kind, strategy = slot["name"], slot["kind"], slot["strategy"]
        where = f"{world.name}/{name}"
        if name not in stored:
            failures.append(f"{where}: no record in the backend (pair lost)")
            continue
        rec, view = stored[name]
        cur = rec.get("current")
        if rec.get("managed_by") != "rekey" or rec.get("slot") != name:
            failures.append(f"{where}: record not rekey's own")
        if not cur:
            failures.append(f"{where}: no current pair")
            continue
        if rec.get("op") is not None:
            failures.append(f"{where}: an operation is still in flight after a normal run")
        if rec.get("pending") is not None:
            failures.append(f"{where}: a pending pair is left after a normal run")
        if cur["generation"] != rec["generation"]:
            failures.append(f"{where}: current is g{cur['generation']}, record says g{rec['generation']}")
        if view is not None and (view.get("client_id") != cur["client_id"]
                                 or view.get("client_secret") != cur["secret"]):
            failures.append(f"{where}: the consumer entry does not hold the current pair "
                            f"(consumer g{view.get('generation')}, record g{cur['generation']})")
        login = platform.cisco_login_ok if kind == "cisco" else platform.taegis_login_ok
        if not login(cur["client_id"], cur["secret"]):
            failures.append(f"{where}: the current pair g{cur['generation']} does not log in")
        draining = [d["credential"] for d in rec.get("draining") or []]
        for d in draining:
            # Old dies last: inside its grace period a previous pair must still work.
            if not login(d["client_id"], d["secret"]):
                failures.append(f"{where}: draining pair g{d['generation']} died inside its grace period")
        for _role, c in pairs_of(rec):
            referenced.add(c["client_id"])
        listed = cisco_listed if kind == "cisco" else taegis_listed
        for _role, c in pairs_of(rec):
            if c.get("owned") and c["client_id"] not in listed:
                failures.append(f"{where}: client of g{c['generation']} is gone at the platform")

        prev = before.get(name)
        if prev is not None:
            want = prev["gen"] + (1 if expect_rotation else 0)
            if rec["generation"] > want:
                failures.append(f"{where}: rotated more than once (g{prev['gen']} -> g{rec['generation']}, "
                                f"expected g{want})")
            elif rec["generation"] < want:
                failures.append(f"{where}: expected g{want}, found g{rec['generation']} (a rotation was lost "
                                "or the generation went back)")
            if expect_rotation and strategy == "alternate":
                ids = [d["client_id"] for d in draining]
                # The drain scenario deletes an unused previous client after its grace (it
                # checks that itself): then nothing is left draining.
                drained = not ids and prev["current"][0] in extra.get("drained", set())
                if ids != [prev["current"][0]] and not drained:
                    failures.append(f"{where}: after one rotation the draining list should be exactly the "
                                    f"previous current client; has {len(ids)} entries")
            if strategy == "in-place" and cur["client_id"] != prev["current"][0]:
                failures.append(f"{where}: in-place rotation changed the client id")
            if not expect_rotation and (cur["client_id"], cur["secret"]) != prev["current"]:
                failures.append(f"{where}: the current pair changed although nothing was due")
        snapshot[name] = {
            "gen": rec["generation"],
            "current": (cur["client_id"], cur["secret"]),
            "draining": [(d["client_id"], d["secret"]) for d in draining],
        }
    # Never another's: every client rekey did not make is still there.
    every = dict(taegis_listed)
    every.update(cisco_listed)
    for cid, cname in foreign.items():
        if cid not in every:
            failures.append(f"{world.name}: foreign client {cname} was deleted")
    # Orphans: every rekey-named client at the platform is one a record holds.
    for cid, cname in every.items():
        if cid not in referenced and cid not in foreign and cid not in extra["clients"]:
            failures.append(f"{world.name}: orphaned client {cname} at the platform")
    for slot in stored:
        if slot not in {s["name"] for s in world.slots} and slot not in extra["slots"]:
            failures.append(f"{world.name}: unexpected backend entry {slot}")
    return failures, snapshot, len(world.slots)


def listed_ids(platform):
    """Every rekey-named client id at the platform (both platforms)."""
    out = dict(platform.taegis_clients())
    out.update(platform.cisco_clients())
    return out
