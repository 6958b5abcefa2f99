"""Validates rekey's `--output json` documents against docs/schema/report.schema.json.

    python validate_report.py SCHEMA < documents     # one JSON document per line

Prints one line per document that fails (its command and the first errors) and exits 1 if any
does; exits 0 and prints `N valid` otherwise.
"""

import json
import sys

from jsonschema import Draft202012Validator, FormatChecker


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    bad = 0
    n = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        n += 1
        doc = json.loads(line)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            bad += 1
            shown = "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors[:3])
            print(f"invalid {doc.get('command')}: {shown}")
    if bad:
        sys.exit(1)
    print(f"{n} valid")


if __name__ == "__main__":
    main()
