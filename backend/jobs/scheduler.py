"""The Train tab's engine room: a persistent scheduler of training jobs.

`TrainingJobs` owns an APScheduler `BackgroundScheduler` whose job store is a SQLite file (not the
DuckDB file, which the app's writer holds), with one worker: at most one fine-tune runs at a time
and the others queue in submission order. A job runs `backend.jobs.run_job` (by import path), which
starts ``python app.py train`` as a child process; a `JobFollower` copies each job folder's state
and metrics.jsonl into the store every ``poll_s`` seconds.

    jobs = TrainingJobs(config, store, registry)     # backend.factory builds it from the settings
    jobs.start()                                     # reconciles what an earlier app left
    job_id = jobs.submit(training.jobs.parse_job_request(form_values, "nightly", "my-l1", "now", registry=...))
    jobs.cancel(job_id); jobs.resume(job_id); jobs.retry(job_id)
    jobs.shutdown()                                  # a running job is marked interrupted

What a job trains is not this module's business: a submission carries its job file as text
(`JobSubmission`; `training.jobs` checks a request and makes one). A finished job's model is
exported to ``trained_models_dir/<model_name>``, which the model registry scans, so Compare and
Sweep can pick it at once.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from backend.evaluation.datasets import DatasetPolicy
from backend.jobs import disk
from backend.jobs.follower import JobFollower, last_step
from backend.jobs.sweeps import SweepJobs, SweepRunner, next_run_iso, remove_aps_job
from backend.serving.registry import ModelRegistry
from store import training as store_training

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # no dots or slashes: an id never leaves the jobs folder
KILL_GRACE_S = 10.0


class JobStateError(ValueError):
    """An action that does not apply to the job in its state (resume a running job, ...)."""


@dataclass(frozen=True)
class JobsConfig:
    jobs_dir: Path
    scheduler_db: Path
    trained_models_dir: Path
    train_command: tuple[str, ...]  # `python app.py train` with the app's model folders
    poll_s: float
    dataset_policy: DatasetPolicy  # the dataset files a submitted job may name


class JobSubmission(Protocol):
    """A checked job request (`training.jobs.JobRequest` is one)."""

    name: str
    model_name: str
    schedule: str  # "now", "at" or "cron"
    run_at: dt.datetime | None  # naive UTC, for "at"
    cron: str  # crontab expression (UTC), for "cron"

    @property
    def job_yaml(self) -> str: ...

    @property
    def max_steps(self) -> int: ...


class TrainingJobs:
    """The app's jobs: fine-tunes (this class) and, on the same scheduler, sweeps (`sweeps`, run by ``sweep_runner``)."""

    def __init__(self, config: JobsConfig, store, registry: ModelRegistry, sweep_runner: SweepRunner | None = None) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self._scheduler = None
        self._follower = JobFollower(store, config.jobs_dir, config.poll_s)
        self.sweeps = SweepJobs(config.jobs_dir, sweep_runner)

    # --- lifecycle
    def start(self) -> None:
        from apscheduler.events import EVENT_JOB_SUBMITTED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        self.config.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.config.scheduler_db.parent.mkdir(parents=True, exist_ok=True)
        disk.close_folder(self.config.jobs_dir, closed=False)
        self._scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{self.config.scheduler_db}")},
            # One worker: one fine-tune at a time, the rest wait in order; sweeps the same, on their
            # own worker. No misfire grace limit: a job waiting behind a long one (or behind a
            # restart) still runs, late.
            executors={"default": ThreadPoolExecutor(1), "sweeps": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.timezone.utc,
        )
        self._scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._scheduler.start(paused=True)
        self._reconcile()
        self.sweeps.attach(self._scheduler, {job.id for job in self._scheduler.get_jobs()})
        self._scheduler.resume()
        self._follower.start()

    def shutdown(self) -> None:
        """Stop the scheduler; a job still running is stopped and marked interrupted (resumable)."""
        if self._scheduler is None:
            return  # never started: the folders belong to whoever ran them
        disk.close_folder(self.config.jobs_dir)  # a job the worker picks up from now on stays queued for the next start
        self.sweeps.shutdown()
        for paths in disk.run_folders(self.config.jobs_dir):
            state = disk.transition(paths, (disk.RUNNING,), state=disk.INTERRUPTED, finished_at=disk.now_iso(),
                                    error="the app stopped while this job ran; Resume continues from its last checkpoint")
            if state and state.get("pid"):
                disk.kill_group(state["pid"])
        self._scheduler.shutdown(wait=False)
        self._follower.stop()

    # --- actions
    def submit(self, request: JobSubmission) -> str:
        """Schedule a checked request; returns the run's id (a schedule's id for a recurring one)."""
        name_state = {"name": request.name, "model_name": request.model_name, "max_steps": request.max_steps}
        if request.schedule == "cron":
            return self._add_schedule(request, name_state)
        paths = disk.JobPaths.run(self.config.jobs_dir, disk.new_id("job"))
        when = request.run_at if request.schedule == "at" else None
        disk.create_run(paths, request.job_yaml, schedule=request.schedule, state=disk.SCHEDULED if when else disk.QUEUED,
                        run_at=when.isoformat() if when else None, **name_state)
        self._add_run(paths.job_id, request.name, when)
        self.sync()
        return paths.job_id

    def cancel(self, job_id: str) -> str:
        if (disk.JobPaths.schedule(self.config.jobs_dir, job_id).schedule_file).exists():
            return self._stop_schedule(job_id)
        paths = self._existing(job_id)
        paths.cancel_flag.touch()
        if disk.transition(paths, disk.WAITING, state=disk.CANCELLED, finished_at=disk.now_iso(), error="cancelled before it started"):
            self._remove_aps_job(job_id)
            self.sync()
            return f"{job_id}: cancelled before it started"
        state = disk.read_state(paths) or {}
        if state.get("state") == disk.RUNNING and state.get("pid"):
            pid = state["pid"]
            disk.kill_group(pid, signal.SIGTERM)
            timer = threading.Timer(KILL_GRACE_S, lambda: disk.pid_runs_job(pid, paths) and disk.kill_group(pid, signal.SIGKILL))
            timer.daemon = True
            timer.start()
            return f"{job_id}: stopping (SIGTERM to its process group; SIGKILL after {KILL_GRACE_S:.0f} s)"
        raise JobStateError(f"{job_id} is {state.get('state')}: nothing to cancel")

    def resume(self, job_id: str) -> str:
        paths = self._existing(job_id)
        paths.cancel_flag.unlink(missing_ok=True)
        state = disk.transition(paths, disk.RESUMABLE, state=disk.QUEUED, finished_at=None, exit_code=None, error=None)
        if state is None:
            current = (disk.read_state(paths) or {}).get("state")
            raise JobStateError(f"{job_id} is {current}: only a failed, cancelled or interrupted job can be resumed")
        self._add_run(job_id, state.get("name", job_id), None)
        checkpoint = self.last_checkpoint(job_id)
        self.sync()
        return f"{job_id}: queued to resume " + (f"from {checkpoint}" if checkpoint else "from the start (no checkpoint yet)")

    def retry(self, job_id: str) -> str:
        """Run an ended job's config again from scratch, as a new job; returns the new id."""
        source = self._existing(job_id)
        state = disk.read_state(source) or {}
        if state.get("state") not in disk.ENDED:
            raise JobStateError(f"{job_id} is {state.get('state')}: retry a job once it has ended")
        paths = disk.JobPaths.run(self.config.jobs_dir, disk.new_id("job"))
        disk.create_run(paths, source.job_file.read_text(), schedule="now", state=disk.QUEUED, name=state.get("name", job_id),
                        model_name=state.get("model_name"), max_steps=state.get("max_steps"), retry_of=job_id)
        self._add_run(paths.job_id, state.get("name", job_id), None)
        self.sync()
        return paths.job_id

    # --- reading
    def jobs(self) -> list[dict[str, Any]]:
        """Recurring schedules (with their next run), then runs, newest first."""
        rows = []
        for folder in sorted((self.config.jobs_dir / "schedules").glob("*/schedule.json"), reverse=True):
            schedule = json.loads(folder.read_text())
            if schedule.get("removed"):
                continue
            next_run = next_run_iso(self._scheduler, folder.parent.name)
            rows.append({**schedule, "job_id": folder.parent.name, "state": "recurring", "schedule": "cron", "run_at": next_run})
        runs = [disk.read_state(paths) or {} for paths in disk.run_folders(self.config.jobs_dir)]
        for run in runs:
            run["step"] = self._last_step(disk.JobPaths.run(self.config.jobs_dir, run.get("job_id", "")))
        return rows + sorted(runs, key=lambda r: (r.get("created_at") or "", r.get("job_id", "")), reverse=True)

    def all_jobs(self) -> list[dict[str, Any]]:
        """Every job of both kinds (``kind``: "fine-tune" or "sweep"): recurring schedules first, then runs, newest first."""
        rows = [{**job, "kind": "fine-tune"} for job in self.jobs()] + self.sweeps.jobs()
        return sorted(rows, key=lambda r: (r.get("state") == "recurring", r.get("created_at") or "", r.get("job_id") or ""), reverse=True)

    def stop(self, job_id: str) -> str:
        """Cancel a job of either kind (a sweep keeps what it stored)."""
        return self.sweeps.cancel(job_id) if self.sweeps.owns(job_id) else self.cancel(job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        paths = self._existing(job_id)
        state = disk.read_state(paths) or {}
        state["step"] = self._last_step(paths)
        state["log_tail"] = disk.tail(paths.log, disk.LOG_TAIL_LINES)
        return state

    def metrics(self, job_id: str):
        """The job's metrics per step, from the store (pandas)."""
        with self.store.reader() as cur:
            return store_training.job_metrics(cur, job_id)

    def last_checkpoint(self, job_id: str) -> str | None:
        """Name of the newest complete checkpoint (what a resume starts from), or None."""
        folder = disk.last_complete_checkpoint(self._existing(job_id).out)
        return folder.name if folder else None

    def model_dir(self, job_id: str) -> Path | None:
        state = disk.read_state(self._existing(job_id)) or {}
        folder = self.config.trained_models_dir / (state.get("model_name") or "")
        return folder if state.get("state") == disk.FINISHED and (folder / "config.json").is_file() else None

    def sync(self) -> None:
        """Copy every job folder that changed since the last look into the store; waits for the writes."""
        self._follower.sync()

    # --- internals
    def _existing(self, job_id: str) -> disk.JobPaths:
        paths = disk.JobPaths.run(self.config.jobs_dir, job_id or "")
        if not JOB_ID.fullmatch(job_id or "") or not paths.state_file.is_file():
            raise JobStateError(f"no job {job_id!r}: pick one from the job list")
        return paths

    def _last_step(self, paths: disk.JobPaths) -> int | None:
        return last_step(self.store, paths.job_id)

    def _add_run(self, job_id: str, name: str, when: dt.datetime | None) -> None:
        run_date = (when or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).replace(tzinfo=dt.timezone.utc)
        self._scheduler.add_job("backend.jobs:run_job", trigger="date", run_date=run_date, id=job_id, name=name, replace_existing=True,
                                kwargs={"jobs_dir": str(self.config.jobs_dir), "job_id": job_id, "command": list(self.config.train_command)})

    def _add_schedule(self, request: JobSubmission, name_state: dict[str, Any]) -> str:
        from apscheduler.triggers.cron import CronTrigger

        paths = disk.JobPaths.schedule(self.config.jobs_dir, disk.new_id("schedule"))
        paths.folder.mkdir(parents=True)
        paths.job_file.write_text(request.job_yaml)
        paths.schedule_file.write_text(json.dumps({**name_state, "cron": request.cron, "created_at": disk.now_iso()}))
        self._scheduler.add_job("backend.jobs:run_schedule", CronTrigger.from_crontab(request.cron, timezone=dt.timezone.utc),
                                id=paths.job_id, name=request.name, replace_existing=True,
                                kwargs={"jobs_dir": str(self.config.jobs_dir), "schedule_id": paths.job_id, "command": list(self.config.train_command)})
        return paths.job_id

    def _stop_schedule(self, schedule_id: str) -> str:
        paths = disk.JobPaths.schedule(self.config.jobs_dir, schedule_id)
        schedule = json.loads(paths.schedule_file.read_text())
        paths.schedule_file.write_text(json.dumps({**schedule, "removed": disk.now_iso()}))
        self._remove_aps_job(schedule_id)
        return f"{schedule_id}: recurring schedule removed (runs it started are kept)"

    def _remove_aps_job(self, job_id: str) -> None:
        remove_aps_job(self._scheduler, job_id)

    def _on_submitted(self, event) -> None:
        for paths in (disk.JobPaths.run(self.config.jobs_dir, event.job_id), disk.JobPaths.sweep(self.config.jobs_dir, event.job_id)):
            if paths.state_file.is_file():
                disk.transition(paths, (disk.SCHEDULED,), state=disk.QUEUED)

    def _reconcile(self) -> None:
        """What an earlier app left: a run it was running is interrupted (its child is stopped if
        it outlived the app); a run it had queued or whose time came while it was down runs now."""
        pending = {job.id for job in self._scheduler.get_jobs()}
        for paths in disk.run_folders(self.config.jobs_dir):
            state = disk.read_state(paths) or {}
            if state.get("state") == disk.RUNNING:
                if disk.pid_runs_job(state.get("pid"), paths):
                    disk.kill_group(state["pid"], signal.SIGKILL)
                disk.write_state(paths, state=disk.INTERRUPTED, finished_at=disk.now_iso(), pid=None,
                                 error="the app stopped while this job ran; Resume continues from its last checkpoint")
            elif state.get("state") in disk.WAITING and paths.job_id not in pending:
                self._add_run(paths.job_id, state.get("name", paths.job_id), None)
