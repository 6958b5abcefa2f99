"""Parses rekey's `--webhook-format cloudevents` messages with the official CloudEvents SDK.

    python validate_cloudevents.py < messages   # one JSON object a line: {"content_type", "body"}

Each message goes through the SDK's `from_http` (structured content mode) exactly as a receiver
would parse it; on top of what the SDK checks (required attributes, specversion, types), the
spec's rules it leaves to senders are checked here: the structured-mode Content-Type, `time` in
RFC 3339, extension names, `datacontenttype` of a JSON `data`. Prints each event as one JSON
line (its attributes and data) and exits 0, or prints what is wrong and exits 1.
"""

import json
import re
import sys

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

# RFC 3339 date-time (section 5.6), as the CloudEvents spec requires of `time`.
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)
# Context attribute names: lower-case ASCII letters and digits (spec, "Attribute Naming").
NAME = re.compile(r"^[a-z0-9]{1,20}$")


def check(message):
    problems = []
    content_type = message["content_type"]
    if content_type.split(";")[0].strip() != "application/cloudevents+json":
        problems.append(f"Content-Type {content_type!r} is not structured mode")
    raw = json.loads(message["body"])
    for name in raw:
        if name not in ("data", "data_base64") and not NAME.match(name):
            problems.append(f"attribute name {name!r} breaks the naming rule")
    if not RFC3339.match(raw.get("time", "")):
        problems.append(f"time {raw.get('time')!r} is not RFC 3339")
    event = from_http(
        HTTPMessage(headers={"content-type": content_type}, body=message["body"].encode()),
        JSONFormat(),
        CloudEvent,
    )
    if event.get_specversion() != "1.0":
        problems.append(f"specversion {event.get_specversion()!r}")
    if event.get_datacontenttype() != "application/json" or not isinstance(
        event.get_data(), dict
    ):
        problems.append("data is not a JSON object declared application/json")
    attributes = {
        k: (v.isoformat() if hasattr(v, "isoformat") else v)
        for k, v in event.get_attributes().items()
    }
    return problems, {"attributes": attributes, "data": event.get_data()}


def main():
    bad = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            problems, event = check(json.loads(line))
        except Exception as e:  # the SDK's validation errors, bad JSON
            problems, event = [f"{type(e).__name__}: {e}"], None
        if problems:
            bad += 1
            print("invalid: " + "; ".join(problems))
        else:
            print(json.dumps(event))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
