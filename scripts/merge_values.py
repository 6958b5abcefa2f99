"""Writes each example values file merged over the chart's values.yaml (as `helm install -f`
does: maps merge key by key, anything else replaces, null removes) into OUTDIR/<name>."""

import pathlib
import sys

import yaml


def merge(base, over):
    if not isinstance(base, dict) or not isinstance(over, dict):
        return over
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(base.get(k), v)
    return out


defaults_path, outdir, *examples = sys.argv[1:]
defaults = yaml.safe_load(pathlib.Path(defaults_path).read_text())
for ex in examples:
    merged = merge(defaults, yaml.safe_load(pathlib.Path(ex).read_text()) or {})
    (pathlib.Path(outdir) / pathlib.Path(ex).name).write_text(yaml.safe_dump(merged, sort_keys=False))
