"""When a job runs, from a form's loose values: now, at a time (UTC), or on a cron schedule (UTC).

Fine-tunes (`training.jobs`) and sweeps (the Sweep tab) share it, so both forms take and refuse the same things.

    when, problems = parse_when("at", "2026-12-08 02:00", "")      # (datetime(2026, 12, 8, 2, 0), [])
    parse_when("cron", "", "0 2 * *")[1]                           # [("cron", "cron '0 2 * *': ...")]
"""

from __future__ import annotations

import datetime as dt
from typing import Any

SCHEDULE_KINDS = ("now", "at", "cron")


def parse_when(schedule: str, run_at: Any, cron: str) -> tuple[dt.datetime | None, list[tuple[str, str]]]:
    """When a job runs: "now", "at" a time (naive UTC, not in the past) or on a "cron" line (UTC). Returns
    (the time for "at", else None) and the problems, each paired with its form field (schedule, run_at, cron)."""
    if schedule not in SCHEDULE_KINDS:
        return None, [("schedule", f"schedule {schedule!r}: choose now, at or cron")]
    if schedule == "at":
        when = _parse_time(run_at)
        if when is None:
            return None, [("run_at", f"run at {run_at!r}: give a time as YYYY-MM-DD HH:MM (UTC)")]
        if when < dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=5):
            return None, [("run_at", f"run at {when:%Y-%m-%d %H:%M:%S} UTC: that is in the past; pick a later time or 'now'")]
        return when, []
    if schedule == "cron":
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab((cron or "").strip(), timezone=dt.timezone.utc)
        except ValueError as exc:
            return None, [("cron", f"cron {cron!r}: {exc}; e.g. '0 2 * * *' is every night at 02:00 UTC")]
    return None, []


def _parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # gr.DateTime sends a timestamp
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).replace(tzinfo=None)
    try:
        return _parse_time(dt.datetime.fromisoformat(str(value).strip()))
    except ValueError:
        return None
