"""Validates TOML inventories against docs/schema/inventory.schema.json, as an editor would.

    python validate_inventory.py SCHEMA FILE...

Prints `valid FILE` or `invalid FILE: PATH: MESSAGE` per file; always exits 0 unless the schema
itself is broken (the test decides what each file should be).
"""

import json
import sys
import tomllib

from jsonschema import Draft7Validator


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    Draft7Validator.check_schema(schema)
    validator = Draft7Validator(schema)
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            e = errors[0]
            print(f"invalid {path}: {'/'.join(map(str, e.absolute_path))}: {e.message[:160]}")
        else:
            print(f"valid {path}")


if __name__ == "__main__":
    main()
