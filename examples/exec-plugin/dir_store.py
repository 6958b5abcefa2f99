#!/usr/bin/env python3
"""An example rekey `exec` backend plugin: protocol rekey-backend/1 over stdin/stdout.

rekey runs this program once per call, writes one JSON request to its stdin and reads one JSON
response from its stdout. This example keeps each slot's record as a JSON file in a directory
(mode 0600, written atomically, compare-and-set under a lock). It shows the protocol; it does
NOT encrypt: a real plugin writes to your organisation's secret store instead.

    [backends.corp]
    type = "exec"
    command = ["./examples/exec-plugin/dir_store.py", "--dir", "/var/lib/rekey-plugin"]
    timeout = "30s"

Requests:  {"protocol": "rekey-backend/1", "op": "read" | "write" | "delete" | "list" | "check",
            "slot": "...", "record": {...}, "expected_version": N | null}
Responses: {"protocol": "rekey-backend/1", "ok": true, "version": N, "record": {...} | null, "slots": [...]}
           {"protocol": "rekey-backend/1", "ok": false, "error": {"kind": "conflict", "message": "..."}}
"""
import argparse, fcntl, json, os, re, sys, tempfile, time

PROTOCOL = "rekey-backend/1"
SLOT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class Failure(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def answer(**fields):
    sys.stdout.write(json.dumps({"protocol": PROTOCOL, **fields}))
    sys.stdout.flush()


def path_of(store, slot):
    if not isinstance(slot, str) or not SLOT.match(slot):
        raise Failure("invalid", "bad slot name")
    return os.path.join(store, slot + ".json")


def load(path):
    """(version, record) of an entry, or None; Failure(conflict) if it is not rekey's."""
    try:
        with open(path) as f:
            entry = json.load(f)
    except FileNotFoundError:
        return None
    record = entry.get("record") if isinstance(entry, dict) else None
    if not isinstance(record, dict) or record.get("managed_by") != "rekey":
        raise Failure("conflict", "the entry exists but was not written by rekey")
    return entry["version"], record


def save(store, path, version, record):
    fd, tmp = tempfile.mkstemp(dir=store, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": version, "record": record}, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        dfd = os.open(store, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def handle(store, req):
    op = req.get("op")
    if op == "check":
        if not os.access(store, os.W_OK):
            raise Failure("forbidden", "the store directory is not writable")
        return {}
    if op == "list":
        slots = []
        for name in sorted(os.listdir(store)):
            if name.endswith(".json") and not name.startswith("."):
                try:
                    if load(os.path.join(store, name)) is not None:
                        slots.append(name[: -len(".json")])
                except Failure:
                    pass  # not rekey's: not listed
        return {"slots": slots}
    path = path_of(store, req.get("slot"))
    if op == "read":
        found = load(path)
        return {"record": None} if found is None else {"version": found[0], "record": found[1]}
    with open(os.path.join(store, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = load(path)
        expected = req.get("expected_version")
        current = None if found is None else found[0]
        if op == "write":
            if current != expected:
                raise Failure("conflict", f"version is {current}, the write expected {expected}")
            # A re-created entry starts from the clock, so a writer holding a version from before a
            # delete can never match it.
            version = (current if current is not None else int(time.time() * 1e6)) + 1
            save(store, path, version, req["record"])
            return {"version": version}
        if op == "delete":
            if current is None:
                raise Failure("not_found", "no such entry")
            if current != expected:
                raise Failure("conflict", f"version is {current}, the delete expected {expected}")
            os.unlink(path)
            return {}
    raise Failure("invalid", f"unknown op {op!r}")


def main():
    ap = argparse.ArgumentParser(description="rekey exec backend example: records as JSON files")
    ap.add_argument("--dir", required=True, help="directory holding the records (created 0700)")
    args = ap.parse_args()
    os.makedirs(args.dir, mode=0o700, exist_ok=True)
    try:
        req = json.load(sys.stdin)
        if req.get("protocol") != PROTOCOL:
            raise Failure("invalid", f"this plugin speaks {PROTOCOL}")
        answer(ok=True, **handle(args.dir, req))
    except Failure as f:
        answer(ok=False, error={"kind": f.kind, "message": str(f)})
    except (ValueError, KeyError) as e:
        answer(ok=False, error={"kind": "invalid", "message": f"bad request: {type(e).__name__}"})


if __name__ == "__main__":
    main()
