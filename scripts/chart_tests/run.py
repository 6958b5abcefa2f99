"""Runs the chart tests (scripts/chart_tests/test_*.py), in the spirit of helm-unittest: each
test_* function renders helm/rekey with real Helm (helmchart.py) and asserts on the objects.
Prints one line per test; exits 1 if any fails or if none is found. Run by
scripts/validate-deploy.sh:  .venv/bin/python scripts/chart_tests/run.py [-k SUBSTRING]
"""

import importlib.util
import pathlib
import sys
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main():
    only = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "-k" else None
    passed, failed = 0, []
    for path in sorted(HERE.glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        tests = [(n, f) for n, f in vars(mod).items() if n.startswith("test_") and callable(f)]
        if not tests:
            failed.append(f"{path.name}: no test_* functions")
            print(f"FAIL {path.name}: no test_* functions")
        for name, fn in tests:
            label = f"{path.name}::{name}"
            if only and only not in label:
                continue
            t0 = time.monotonic()
            try:
                fn()
            except Exception:  # noqa: BLE001 - a test's failure, reported
                failed.append(label)
                print(f"FAIL {label}")
                traceback.print_exc(limit=-3, file=sys.stdout)
                continue
            passed += 1
            print(f"ok   {label} ({(time.monotonic() - t0) * 1000:.0f} ms)")
    if passed == 0 and not failed:
        print("FAIL chart tests: none ran")
        sys.exit(1)
    print(f"chart tests: {passed} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
