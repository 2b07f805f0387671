"""Sweeps as jobs: run inside the app (it holds the store's one writer), kept in a job folder like a fine-tune.

A sweep started from the Sweep tab, its preset, the Analytics tab's first-run button or the API is
a job: its requests are written to ``<jobs_dir>/sweeps/<job_id>/sweep.json``, the app's scheduler
(`TrainingJobs`' APScheduler, SQLite job store) runs it on an executor of its own (one sweep at a
time, next to one fine-tune), and its progress goes to the folder's state.json about once a
second. So any page of any session lists it with live progress and can stop it, closing a page
changes nothing, and an app killed (or stopped) in the middle of a sweep resumes it when it starts
again: a sweep resumes by run name and the store skips what it holds, so every generation is
stored once. A sweep can also run at a time, or on a cron schedule (each firing a new run).

    sweeps = jobs.sweeps                                    # TrainingJobs builds it with the app's runner
    job_id = sweeps.submit(SweepSubmission("equal tokens", (request_json,), purpose="preset"))
    sweeps.job(job_id)["progress"]                          # {"run_id": ..., "complete": 12, "total": 120, ...}
    sweeps.cancel(job_id); sweeps.resume(job_id)

What a sweep does is not this module's business: the app hands in a `SweepRunner`
(`backend.service.sweep_jobs.run_sweep_payload` bound to the service) that runs one request,
reporting its progress as a dict. APScheduler calls `run_sweep_job` and `run_sweep_schedule` by
import path with plain strings; they find the `SweepJobs` registered for that jobs folder.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.jobs import disk

# The runner: one request (a SweepRequest as JSON) and a progress callback -> the outcome as a dict
# ({"run_id", "complete", "total", "failed", "aborted", "last_error", ...}).
SweepRunner = Callable[[dict, Callable[[dict], None]], Awaitable[dict]]
PROGRESS_EVERY_S = 1.0  # state.json is rewritten at most this often while a sweep runs (and on each new message)
STOP_WAIT_S = 30.0  # how long an app on its way out waits for a stopped sweep to store what it finished
INTERRUPTED_BY_APP = "the app stopped while this sweep ran; it resumes when the app starts again"
STOPPED = "stopped: what was stored is kept, and Resume continues from there"
_REGISTERED: dict[str, SweepJobs] = {}  # jobs folder -> the SweepJobs of this process that runs its sweeps


class SweepStateError(ValueError):
    """An action that does not apply to the sweep job in its state (resume a running one, ...)."""


@dataclass(frozen=True)
class SweepSubmission:
    """Sweeps to run one after the other as one job: ``requests`` are `SweepRequest`s as JSON, each
    with its run name (a recurring job's names get each firing's time appended)."""

    name: str
    requests: tuple[dict, ...]
    schedule: str = "now"  # "now", "at" or "cron"
    run_at: dt.datetime | None = None  # naive UTC, for "at"
    cron: str = ""  # crontab expression (UTC), for "cron"
    purpose: str = "sweep"  # "sweep", "preset" or "first-run": what a page that follows one kind looks for

    def __post_init__(self) -> None:
        if not self.requests or not all(r.get("run") for r in self.requests):
            raise ValueError("a sweep job needs at least one request, each with its run name")


class SweepJobs:
    def __init__(self, jobs_dir: Path, runner: SweepRunner | None) -> None:
        self.jobs_dir = Path(jobs_dir)
        self.runner = runner
        self._scheduler = None
        self._lock = threading.Lock()
        self._active: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Task]] = {}
        self._ended: dict[str, threading.Event] = {}

    # --- lifecycle (called by TrainingJobs, which owns the scheduler)
    def attach(self, scheduler, pending: set[str]) -> None:
        """Take `scheduler` (paused) and requeue what an earlier app left: a sweep it was running
        (killed, or stopped with the app) resumes; a waiting one whose trigger is gone is queued again."""
        self._scheduler = scheduler
        _REGISTERED[_key(self.jobs_dir)] = self
        for paths in disk.run_folders(self.jobs_dir, "sweeps"):
            state = disk.read_state(paths) or {}
            left_running = state.get("state") == disk.RUNNING or (state.get("state") == disk.INTERRUPTED and state.get("resume_on_start"))
            if left_running and disk.transition(paths, (disk.RUNNING, disk.INTERRUPTED), state=disk.QUEUED, resume_on_start=None,
                                                error=None, resumed_at=disk.now_iso()):
                self._add_run(paths.job_id, state.get("name", paths.job_id), None)
            elif state.get("state") in disk.WAITING and paths.job_id not in pending:
                self._add_run(paths.job_id, state.get("name", paths.job_id), None)

    def shutdown(self) -> None:
        """Stop the sweeps running here; each is marked to resume when the app starts again, and is
        waited for (up to STOP_WAIT_S) so that what it finished reaches the store before it closes."""
        with self._lock:
            active = dict(self._active)
        for job_id, (loop, task) in active.items():
            disk.transition(disk.JobPaths.sweep(self.jobs_dir, job_id), (disk.RUNNING,), state=disk.INTERRUPTED, finished_at=disk.now_iso(),
                            error=INTERRUPTED_BY_APP, resume_on_start=True)
            loop.call_soon_threadsafe(task.cancel)
        for job_id in active:
            self._ended[job_id].wait(STOP_WAIT_S)
        if _REGISTERED.get(_key(self.jobs_dir)) is self:
            del _REGISTERED[_key(self.jobs_dir)]

    # --- actions
    def submit(self, submission: SweepSubmission) -> str:
        """Schedule the job; returns its id (a recurring schedule's id for a cron one)."""
        payload = {"name": submission.name, "purpose": submission.purpose, "requests": list(submission.requests)}
        if submission.schedule == "cron":
            return self._add_schedule(submission, payload)
        paths = disk.JobPaths.sweep(self.jobs_dir, disk.new_id("sweep"))
        when = submission.run_at if submission.schedule == "at" else None
        _create(paths, payload, schedule=submission.schedule, state=disk.SCHEDULED if when else disk.QUEUED,
                run_at=when.isoformat() if when else None)
        self._add_run(paths.job_id, submission.name, when)
        return paths.job_id

    def cancel(self, job_id: str) -> str:
        """Stop a sweep job (what it stored is kept), or remove a recurring schedule."""
        if disk.JobPaths.sweep_schedule(self.jobs_dir, job_id or "x").schedule_file.is_file():
            return self._remove_schedule(job_id)
        paths = self._existing(job_id)
        paths.cancel_flag.touch()
        if disk.transition(paths, disk.WAITING, state=disk.CANCELLED, finished_at=disk.now_iso(), error="cancelled before it started"):
            self._remove_aps_job(job_id)
            return f"{job_id}: cancelled before it started"
        with self._lock:
            active = self._active.get(job_id)
        if active is not None:
            loop, task = active
            loop.call_soon_threadsafe(task.cancel)
            return f"{job_id}: stopping (what is stored is kept; Resume continues)"
        if disk.transition(paths, (disk.RUNNING,), state=disk.CANCELLED, finished_at=disk.now_iso(), error=STOPPED):
            return f"{job_id}: stopped"  # marked running by an app that is gone
        state = (disk.read_state(paths) or {}).get("state")
        raise SweepStateError(f"{job_id} is {state}: nothing to stop")

    def resume(self, job_id: str) -> str:
        paths = self._existing(job_id)
        paths.cancel_flag.unlink(missing_ok=True)
        state = disk.transition(paths, disk.RESUMABLE, state=disk.QUEUED, finished_at=None, error=None, resume_on_start=None)
        if state is None:
            current = (disk.read_state(paths) or {}).get("state")
            raise SweepStateError(f"{job_id} is {current}: only a stopped, failed or interrupted sweep can be resumed")
        self._add_run(job_id, state.get("name", job_id), None)
        return f"{job_id}: queued to resume {', '.join(state.get('runs') or [])} (what is stored is skipped)"

    # --- reading
    def jobs(self) -> list[dict[str, Any]]:
        """Recurring sweep schedules (with their next run), then sweep jobs, newest first; each with kind "sweep"."""
        rows = []
        for paths in _folders(self.jobs_dir / "sweep-schedules", "schedule.json"):
            schedule = json.loads(paths.schedule_file.read_text())
            if not schedule.get("removed"):
                rows.append({**schedule, "kind": "sweep", "job_id": paths.job_id, "state": "recurring", "schedule": "cron",
                             "run_at": self._next_run(paths.job_id)})
        runs = [{**(disk.read_state(paths) or {}), "kind": "sweep"} for paths in disk.run_folders(self.jobs_dir, "sweeps")]
        return rows + sorted(runs, key=lambda r: (r.get("created_at") or "", r.get("job_id", "")), reverse=True)

    def job(self, job_id: str) -> dict[str, Any]:
        return {**(disk.read_state(self._existing(job_id)) or {}), "kind": "sweep"}

    def active_for_run(self, run_id: str) -> str | None:
        """The waiting or running job that holds run ``run_id``, if any (a second one would generate the same items)."""
        for job in self.jobs():
            if job.get("state") in (*disk.WAITING, disk.RUNNING) and run_id in (job.get("runs") or ()):
                return job["job_id"]
        return None

    def owns(self, job_id: str) -> bool:
        """Whether ``job_id`` names a sweep job or a recurring sweep schedule."""
        return bool(job_id) and (disk.JobPaths.sweep(self.jobs_dir, job_id).state_file.is_file()
                                 or disk.JobPaths.sweep_schedule(self.jobs_dir, job_id).schedule_file.is_file())

    # --- running (in the scheduler's sweep executor thread)
    def run(self, job_id: str) -> str:
        """Run a waiting job to its end (or until stopped); return its final state."""
        paths = disk.JobPaths.sweep(self.jobs_dir, job_id)
        if disk.transition(paths, disk.WAITING, state=disk.RUNNING, started_at=disk.now_iso(), finished_at=None, error=None) is None:
            return (disk.read_state(paths) or {}).get("state", "missing")
        ended = self._ended[job_id] = threading.Event()
        try:
            error = self._run_loop(paths)
            return _record_end(paths, error)
        finally:
            ended.set()

    def _run_loop(self, paths: disk.JobPaths) -> str | None:
        if self.runner is None:
            return "this app has no sweep runner (started without a service)"
        requests = json.loads(paths.sweep_file.read_text())["requests"]
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(self._run_requests(paths, requests))
            with self._lock:
                self._active[paths.job_id] = (loop, task)
            if paths.cancel_flag.exists():  # a stop that came before the task existed
                task.cancel()
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            return STOPPED
        except Exception as exc:  # noqa: BLE001 - a job's failure is recorded, never raised into the scheduler
            return str(exc) or type(exc).__name__
        finally:
            with self._lock:
                self._active.pop(paths.job_id, None)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _run_requests(self, paths: disk.JobPaths, requests: list[dict]) -> str | None:
        """Each request in turn; the reason the job did not complete, or None."""
        for index, request in enumerate(requests):
            report = _ProgressWriter(paths, index, len(requests))
            outcome = await self.runner(request, report)
            report.final(outcome)
            if outcome.get("aborted"):
                return outcome["aborted"]
            if outcome.get("failed"):
                return (f"run {outcome.get('run_id')}: {outcome['failed']} of {outcome.get('total')} generations failed "
                        f"(last: {outcome.get('last_error')}); Resume retries them")
        return None

    # --- internals
    def _existing(self, job_id: str) -> disk.JobPaths:
        paths = disk.JobPaths.sweep(self.jobs_dir, job_id or "x")
        if not job_id or "/" in job_id or job_id.startswith(".") or not paths.state_file.is_file():
            raise SweepStateError(f"no sweep job {job_id!r}: pick one from the job list")
        return paths

    def _add_run(self, job_id: str, name: str, when: dt.datetime | None) -> None:
        run_date = (when or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).replace(tzinfo=dt.timezone.utc)
        self._scheduler.add_job("backend.jobs:run_sweep_job", trigger="date", run_date=run_date, id=job_id, name=name, executor="sweeps",
                                replace_existing=True, kwargs={"jobs_dir": str(self.jobs_dir), "job_id": job_id})

    def _add_schedule(self, submission: SweepSubmission, payload: dict) -> str:
        from apscheduler.triggers.cron import CronTrigger

        paths = disk.JobPaths.sweep_schedule(self.jobs_dir, disk.new_id("sweeps"))
        paths.folder.mkdir(parents=True)
        paths.sweep_file.write_text(json.dumps(payload))
        paths.schedule_file.write_text(json.dumps({"name": submission.name, "purpose": submission.purpose, "cron": submission.cron,
                                                   "runs": [r["run"] for r in submission.requests], "created_at": disk.now_iso()}))
        self._scheduler.add_job("backend.jobs:run_sweep_schedule", CronTrigger.from_crontab(submission.cron, timezone=dt.timezone.utc),
                                id=paths.job_id, name=submission.name, executor="sweeps", replace_existing=True,
                                kwargs={"jobs_dir": str(self.jobs_dir), "schedule_id": paths.job_id})
        return paths.job_id

    def _remove_schedule(self, schedule_id: str) -> str:
        paths = disk.JobPaths.sweep_schedule(self.jobs_dir, schedule_id)
        schedule = json.loads(paths.schedule_file.read_text())
        paths.schedule_file.write_text(json.dumps({**schedule, "removed": disk.now_iso()}))
        self._remove_aps_job(schedule_id)
        return f"{schedule_id}: recurring sweep removed (the runs it made are kept)"

    def _remove_aps_job(self, job_id: str) -> None:
        remove_aps_job(self._scheduler, job_id)

    def _next_run(self, job_id: str) -> str | None:
        return next_run_iso(self._scheduler, job_id)

    def fire_schedule(self, schedule_id: str) -> str:
        """One firing of a recurring sweep: a new job whose run names carry the firing's time, run at once."""
        template = disk.JobPaths.sweep_schedule(self.jobs_dir, schedule_id)
        payload = json.loads(template.sweep_file.read_text())
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        payload["requests"] = [{**request, "run": f"{request['run']}-{stamp}"} for request in payload["requests"]]
        paths = disk.JobPaths.sweep(self.jobs_dir, disk.new_id(schedule_id))
        _create(paths, payload, schedule="cron", state=disk.QUEUED, schedule_id=schedule_id)
        return self.run(paths.job_id)


class _ProgressWriter:
    """The runner's progress callback: the latest progress into state.json, at most every PROGRESS_EVERY_S (and on a new message)."""

    def __init__(self, paths: disk.JobPaths, index: int, count: int) -> None:
        self.paths, self.index, self.count = paths, index, count
        self.written_at = 0.0
        self.message = None

    def __call__(self, progress: dict) -> None:
        now = time.monotonic()
        if now - self.written_at >= PROGRESS_EVERY_S or progress.get("message") != self.message:
            self.written_at, self.message = now, progress.get("message")
            disk.write_state(self.paths, progress={**progress, "sweep": self.index + 1, "sweeps": self.count})

    def final(self, outcome: dict) -> None:
        disk.write_state(self.paths, progress={**outcome, "sweep": self.index + 1, "sweeps": self.count})


def _create(paths: disk.JobPaths, payload: dict, **state: Any) -> None:
    paths.folder.mkdir(parents=True, exist_ok=False)
    paths.sweep_file.write_text(json.dumps(payload))
    disk.write_state(paths, created_at=disk.now_iso(), kind="sweep", name=payload["name"], purpose=payload["purpose"],
                     runs=[r["run"] for r in payload["requests"]], **state)


def _record_end(paths: disk.JobPaths, error: str | None) -> str:
    """The job's verdict, written only if it is still running (an app on its way out marked it interrupted first)."""
    if error is None:
        final = disk.FINISHED  # even if a stop came as its last generation was stored
    elif paths.cancel_flag.exists():
        final, error = disk.CANCELLED, STOPPED
    else:
        final = disk.FAILED
    state = disk.transition(paths, (disk.RUNNING,), state=final, finished_at=disk.now_iso(), error=error)
    return final if state is not None else (disk.read_state(paths) or {}).get("state", "missing")


def _folders(root: Path, marker: str) -> list[disk.JobPaths]:
    return [disk.JobPaths(d) for d in sorted(root.iterdir(), reverse=True) if (d / marker).is_file()] if root.is_dir() else []


def remove_aps_job(scheduler, job_id: str) -> None:
    """Take a job off the scheduler (fine-tunes and sweeps alike); one that already fired finds its job cancelled and does nothing."""
    from apscheduler.jobstores.base import JobLookupError

    try:
        scheduler.remove_job(job_id)
    except JobLookupError:
        pass


def next_run_iso(scheduler, job_id: str) -> str | None:
    """A scheduled job's next run, naive UTC ISO (the state files' convention), or None."""
    aps = scheduler.get_job(job_id) if scheduler else None
    return aps.next_run_time.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat() if aps and aps.next_run_time else None


def _key(jobs_dir: Path) -> str:
    return str(Path(jobs_dir).resolve())


def _registered(jobs_dir: str) -> SweepJobs:
    jobs = _REGISTERED.get(_key(Path(jobs_dir)))
    if jobs is None:
        raise RuntimeError(f"no app in this process runs the sweeps of {jobs_dir}")
    return jobs


# --- what the scheduler runs (by import path; arguments are plain strings, stored in SQLite)


def run_sweep_job(jobs_dir: str, job_id: str) -> str:
    return _registered(jobs_dir).run(job_id)


def run_sweep_schedule(jobs_dir: str, schedule_id: str) -> str:
    return _registered(jobs_dir).fire_schedule(schedule_id)
