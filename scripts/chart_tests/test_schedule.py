"""schedule: five cron fields or a macro (@hourly, @daily, ...), the same in mode cronjob (the
CronJob reads it) and mode run (`rekey run --schedule` reads it: src/schedule.rs, MACROS)."""

import json
import re

from helmchart import ROOT, fails, one, render


def test_macros_accepted():
    for s in ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"):
        assert one(render({"schedule": s}), "CronJob")["spec"]["schedule"] == s


def test_mode_run_passes_every_macro_to_rekey_run():
    for s in ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"):
        pod = one(render({"mode": "run", "schedule": s}), "Deployment")["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        assert args[args.index("--schedule") + 1] == s


def test_the_schemas_macros_are_the_ones_rekey_run_reads():
    src = (ROOT / "src" / "schedule.rs").read_text()
    table = src[src.index("pub const MACROS"):]
    table = table[: table.index("];")]
    rekey = set(re.findall(r'\("(@[a-z]+)", "', table))
    schema = json.loads((ROOT / "helm" / "rekey" / "values.schema.json").read_text())
    pattern = schema["properties"]["schedule"]["pattern"]
    chart = {"@" + m for m in re.search(r"@\(([a-z|]+)\)", pattern).group(1).split("|")}
    assert rekey == chart, (rekey, chart)


def test_cron_fields():
    assert one(render({"schedule": "*/15 * * * *"}), "CronJob")["spec"]["schedule"] == "*/15 * * * *"


def test_bad_schedules_refused():
    for s in ("", "hourly", "@every 5m", "* * * *"):
        fails({"schedule": s}, "schedule")
