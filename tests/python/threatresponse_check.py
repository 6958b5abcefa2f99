"""Holds rekey's emulator to Cisco's official `threatresponse` module, with clients rekey made.

Usage: threatresponse_check.py

Reads everything from the JSON file named by REKEY_CISCO_CHECK_FILE (mode 0600, written by the
Rust test; secrets never travel on the command line):

  {"url": ..., "org": ...,
   "new_id": ..., "new_password": ...,   the slot's current pair (made by rekey)
   "old_id": ..., "old_password": ...}   the pair rekey rotated away from and has deleted

Uses the module as documented, changed only by environment={...} pointing at the emulator.
Prints one `ok - ...` line per check and exits non-zero at the first failure. Never prints a
secret or a token: every message goes through redact().
"""

import json
import os
import sys

import requests
from threatresponse import ThreatResponse

SENSITIVE = set()


def redact(text):
    text = str(text)
    for s in SENSITIVE:
        if s:
            text = text.replace(s, "[redacted]")
    return text


def fail(msg):
    print("not ok - " + redact(msg))
    sys.exit(1)


def ok(msg):
    print("ok - " + redact(msg))


def main():
    path = os.environ.get("REKEY_CISCO_CHECK_FILE")
    if not path:
        fail("REKEY_CISCO_CHECK_FILE is not set")
    with open(path) as f:
        cfg = json.load(f)
    SENSITIVE.update([cfg["new_password"], cfg["old_password"]])
    url = cfg["url"]
    env = {"visibility": url, "private_intel": url, "global_intel": url}

    # 1. The new pair: the module fetches a token at construction.
    try:
        tr = ThreatResponse(cfg["new_id"], cfg["new_password"], environment=env)
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        fail("token with the new client: %s" % type(e).__name__)
    ok("ThreatResponse got a token with the client rekey created")

    # 2. whoami with that token.
    try:
        me = tr.profile.whoami()
    except Exception as e:  # noqa: BLE001
        fail("profile.whoami(): %s %s" % (type(e).__name__, getattr(e, "response", "")))
    if not isinstance(me, dict):
        fail("profile.whoami() returned %s" % type(me).__name__)
    org = (me.get("org") or {}).get("id") or (me.get("user") or {}).get("org-id")
    if org != cfg["org"]:
        fail("profile.whoami() names org %r, expected %r" % (org, cfg["org"]))
    ok("profile.whoami() names the org")

    # 3. The old pair, deleted by rekey after grace: 401 at the token endpoint.
    try:
        ThreatResponse(cfg["old_id"], cfg["old_password"], environment=env)
    except requests.exceptions.HTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status != 401:
            fail("old client: expected HTTP 401, got %s" % status)
        ok("the deleted client's password gets a 401")
    except Exception as e:  # noqa: BLE001
        fail("old client: unexpected %s" % type(e).__name__)
    else:
        fail("old client: a token was issued for a deleted client")


if __name__ == "__main__":
    main()
