"""schedule: five cron fields or a macro (@hourly, @daily, ...)."""

from helmchart import fails, one, render


def test_macros_accepted():
    for s in ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight"):
        assert one(render({"schedule": s}), "CronJob")["spec"]["schedule"] == s


def test_cron_fields():
    assert one(render({"schedule": "*/15 * * * *"}), "CronJob")["spec"]["schedule"] == "*/15 * * * *"


def test_bad_schedules_refused():
    for s in ("", "hourly", "@every 5m", "* * * *"):
        fails({"schedule": s}, "schedule")
