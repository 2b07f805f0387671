"""The Train tab's engine room: a persistent scheduler of LCPO jobs, and the copy of their progress into DuckDB.

`TrainingJobs` owns an APScheduler `BackgroundScheduler` whose job store is a SQLite file (not the
DuckDB file, which the app's writer holds), with one worker: at most one fine-tune runs at a time
and the others queue in submission order. A job runs `backend.jobs.run_job` (by import path), which
starts ``python app.py train`` as a child process; a follower thread copies each job folder's
state and metrics.jsonl into the store (training_jobs, training_metrics) every ``poll_s`` seconds.

    jobs = TrainingJobs(jobs_config(settings), store, settings.model_registry())
    jobs.start()                                   # reconciles what an earlier app left
    job_id = jobs.submit(parse_job_request(form_values, "nightly", "my-l1", "now", registry=...))
    jobs.cancel(job_id); jobs.resume(job_id); jobs.retry(job_id)
    jobs.shutdown()                                # a running job is marked interrupted

A finished job's model is exported to ``trained_models_dir/<model_name>``, which the model
registry scans, so Compare and Sweep can pick it at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from backend import jobs as disk
from backend.datasets import DatasetError, DatasetPolicy
from backend.models import ModelRegistry, UnknownModelError, context_length
from backend.settings import REPO_ROOT, AppSettings
from store import training as store_training
from training.lcpo import ConfigError, LCPOConfig, config_from_dict, last_complete_checkpoint

SCHEDULE_KINDS = ("now", "at", "cron")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # no dots or slashes: an id never leaves the jobs folder
KILL_GRACE_S = 10.0
# metrics.jsonl key -> training_metrics column (the LCPO trainer's and TRL's names).
METRIC_KEYS = {
    "reward": "reward", "reward_std": "reward_std", "lcpo/correct": "correct", "lcpo/mean_length": "mean_length",
    "lcpo/mean_abs_rel_dev": "mean_abs_rel_dev", "lcpo/over_target": "over_target",
    "completions/clipped_ratio": "clipped_ratio", "loss": "loss", "grad_norm": "grad_norm", "learning_rate": "learning_rate",
}
# Fields the app sets itself: the output folder is the job's own, the export is the model name's.
MANAGED_FIELDS = ("output_dir", "export_dir", "max_context")


class JobInputError(ValueError):
    """A job request that cannot be scheduled; ``problems`` pairs each message with its form field."""

    def __init__(self, problems: tuple[tuple[str, str], ...]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


class JobStateError(ValueError):
    """An action that does not apply to the job in its state (resume a running job, ...)."""


@dataclass(frozen=True)
class JobsConfig:
    jobs_dir: Path
    scheduler_db: Path
    trained_models_dir: Path
    train_command: tuple[str, ...]  # `python app.py train` with the app's model folders
    poll_s: float = 1.0
    dataset_policy: DatasetPolicy = DatasetPolicy(roots=())  # the dataset files a submitted job may name


def jobs_config(settings: AppSettings) -> JobsConfig:
    command = (sys.executable, str(REPO_ROOT / "app.py"), "train",
               "--models-dir", str(settings.resolve_path(settings.models_dir)),
               "--trained-models-dir", str(settings.resolve_path(settings.trained_models_dir)),
               "--dataset-max-mb", str(settings.dataset_max_mb))
    return JobsConfig(settings.resolve_path(settings.jobs_dir), settings.resolve_path(settings.scheduler_db),
                      settings.resolve_path(settings.trained_models_dir), command, settings.training_poll_s, settings.dataset_policy())


@dataclass(frozen=True)
class JobRequest:
    name: str
    model_name: str
    config: LCPOConfig
    schedule: str = "now"
    run_at: dt.datetime | None = None  # naive UTC, for schedule "at"
    cron: str = ""  # crontab expression (UTC), for schedule "cron"


def parse_job_request(values: dict[str, Any], name: str, model_name: str, schedule: str, run_at: Any = None, cron: str = "",
                      registry: ModelRegistry | None = None, trained_models_dir: Path | None = None,
                      dataset_policy: DatasetPolicy | None = None) -> JobRequest:
    """Check a form's values; raise `JobInputError` listing every problem with its field. With
    ``dataset_policy`` (a web request) a dataset file must be one it allows; it is then named by
    its resolved path, so the job opens the file that was checked."""
    problems: list[tuple[str, str]] = []
    name = (name or "").strip()
    model_name = (model_name or "").strip()
    if not name:
        problems.append(("name", "job name is empty: give the job a name (e.g. nightly-l1)"))
    if not MODEL_NAME.match(model_name):
        problems.append(("model_name", f"model name {model_name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"))
    elif registry is not None and any(m.name == model_name for m in ModelRegistry(registry.models_dir).local_models()):
        problems.append(("model_name", f"model name {model_name!r}: a shipped model has it; pick another name"))
    config, config_problems = _config(values, registry, model_name, trained_models_dir, dataset_policy)
    problems += config_problems
    when, schedule_problems = _schedule(schedule, run_at, cron)
    problems += schedule_problems
    if problems:
        raise JobInputError(tuple(problems))
    return JobRequest(name, model_name, config, schedule, when, (cron or "").strip())


def _config(values: dict[str, Any], registry: ModelRegistry | None, model_name: str, trained_models_dir: Path | None,
            dataset_policy: DatasetPolicy | None):
    fields = {f.name: f for f in dataclasses.fields(LCPOConfig)}
    data: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    unknown = sorted(str(key) for key in values if key not in fields)
    if unknown:  # a misspelt field would otherwise be dropped, and the job run with the default
        known = ", ".join(f for f in fields if f not in MANAGED_FIELDS)
        problems.append(("config", f"unknown field {unknown[0]!r}; the fields are {known}"))
    for key, value in values.items():
        if key in MANAGED_FIELDS or key not in fields or value is None:
            continue
        kind = type(fields[key].default)
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # number inputs send floats
        if kind is str:
            value = str(value).strip()
        data[key] = value
    base = data.get("base_model", "")
    if registry is not None and base:
        try:
            spec = registry.resolve(base, allow_paths=False)  # a form never names a folder to load
            data["max_context"] = context_length(Path(spec.source)) if spec.is_local else 0
        except UnknownModelError as exc:
            problems.append(("base_model", str(exc)))
    if trained_models_dir is not None and model_name:
        data["export_dir"] = str(trained_models_dir / model_name)
    if dataset_policy is not None and isinstance(data.get("dataset"), str) and data["dataset"] not in ("", "arith"):
        try:
            path = dataset_policy.locate(data["dataset"])
            data["dataset"] = str(path) if path is not None else data["dataset"]
        except DatasetError as exc:
            problems.append(("dataset", str(exc)))
    try:
        return config_from_dict(data, where="job"), problems
    except ConfigError as exc:
        return None, problems + list(exc.problems or (("config", str(exc)),))


def _schedule(schedule: str, run_at: Any, cron: str):
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


def form_defaults(registry: ModelRegistry) -> dict[str, Any]:
    """A job's fields as the form first shows them: the config's defaults on the shipped base model."""
    names = {m.name for m in registry.local_models()}
    values = {f.name: f.default for f in dataclasses.fields(LCPOConfig) if f.name not in MANAGED_FIELDS}
    values["base_model"] = "tiny-r1-base" if "tiny-r1-base" in names else ""
    return values


def recipes(folder: Path = REPO_ROOT / "training" / "configs") -> dict[str, Path]:
    """The LCPO job files in the repo (base-model jobs are not fine-tunes), by file name."""
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        if (yaml.safe_load(path.read_text()) or {}).get("job", "lcpo") == "lcpo":
            found[path.stem] = path
    return found


def recipe_values(path: Path) -> dict[str, Any]:
    """A job file's fields (the form fields only), for prefilling the form."""
    from training.lcpo import load_config

    values = dataclasses.asdict(load_config(path))
    return {k: v for k, v in values.items() if k not in MANAGED_FIELDS}


def job_yaml(config: LCPOConfig) -> str:
    """The job file of a run: every field but the output folder, which the run passes itself."""
    values = {k: v for k, v in dataclasses.asdict(config).items() if k != "output_dir"}
    return yaml.safe_dump(values, sort_keys=False)


class TrainingJobs:
    def __init__(self, config: JobsConfig, store, registry: ModelRegistry) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self._scheduler = None
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._seen: dict[str, tuple[float, int]] = {}  # job_id -> (state.json mtime, metrics bytes read)
        self._sync_lock = threading.Lock()

    # --- lifecycle
    def start(self) -> None:
        from apscheduler.events import EVENT_JOB_SUBMITTED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        self.config.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.config.scheduler_db.parent.mkdir(parents=True, exist_ok=True)
        self._scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{self.config.scheduler_db}")},
            # One worker: one fine-tune at a time, the rest wait in order. No misfire grace limit:
            # a job waiting behind a long one (or behind a restart) still runs, late.
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.timezone.utc,
        )
        self._scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._scheduler.start(paused=True)
        self._reconcile()
        self._scheduler.resume()
        self.sync()
        self._follower = threading.Thread(target=self._follow, name="training-jobs-follower", daemon=True)
        self._follower.start()

    def shutdown(self) -> None:
        """Stop the scheduler; a job still running is stopped and marked interrupted (resumable)."""
        if self._scheduler is None:
            return  # never started: the folders belong to whoever ran them
        self._stop.set()
        for paths in self._runs():
            state = disk.transition(paths, (disk.RUNNING,), state=disk.INTERRUPTED, finished_at=disk.now_iso(),
                                    error="the app stopped while this job ran; Resume continues from its last checkpoint")
            if state and state.get("pid"):
                disk.kill_group(state["pid"])
        self._scheduler.shutdown(wait=False)
        if self._follower is not None:
            self._follower.join(timeout=10)
        self.sync()

    # --- actions
    def submit(self, request: JobRequest) -> str:
        """Schedule a checked request; returns the run's id (a schedule's id for a recurring one)."""
        name_state = {"name": request.name, "model_name": request.model_name, "max_steps": request.config.max_steps}
        if request.schedule == "cron":
            return self._add_schedule(request, name_state)
        paths = disk.JobPaths.run(self.config.jobs_dir, disk.new_id("job"))
        when = request.run_at if request.schedule == "at" else None
        disk.create_run(paths, job_yaml(request.config), schedule=request.schedule, state=disk.SCHEDULED if when else disk.QUEUED,
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
            aps = self._scheduler.get_job(folder.parent.name) if self._scheduler else None
            next_run = aps.next_run_time.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat() if aps and aps.next_run_time else None
            rows.append({**schedule, "job_id": folder.parent.name, "state": "recurring", "schedule": "cron", "run_at": next_run})
        runs = [disk.read_state(paths) or {} for paths in self._runs()]
        for run in runs:
            run["step"] = self._last_step(disk.JobPaths.run(self.config.jobs_dir, run.get("job_id", "")))
        return rows + sorted(runs, key=lambda r: (r.get("created_at") or "", r.get("job_id", "")), reverse=True)

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
        folder = last_complete_checkpoint(self._existing(job_id).out)
        return folder.name if folder else None

    def model_dir(self, job_id: str) -> Path | None:
        state = disk.read_state(self._existing(job_id)) or {}
        folder = self.config.trained_models_dir / (state.get("model_name") or "")
        return folder if state.get("state") == disk.FINISHED and (folder / "config.json").is_file() else None

    # --- the copy into DuckDB
    def sync(self) -> None:
        """Copy every job folder that changed since the last look into the store; waits for the writes."""
        with self._sync_lock:
            futures = []
            for paths in self._runs():
                futures += self._sync_one(paths)
            for future in futures:
                future.result(timeout=30)

    def _sync_one(self, paths: disk.JobPaths) -> list:
        try:
            mtime = paths.state_file.stat().st_mtime
        except FileNotFoundError:
            return []
        seen_mtime, offset = self._seen.get(paths.job_id, (0.0, 0))
        rows, offset_after = _read_metric_lines(paths.metrics, offset)
        if mtime == seen_mtime and not rows:
            return []
        futures = []
        if rows:
            futures.append(store_training.upsert_metrics(self.store, paths.job_id, rows))
        state = disk.read_state(paths) or {}
        futures.append(store_training.upsert_job(self.store, self._job_record(paths, state)))
        self._seen[paths.job_id] = (mtime, offset_after)
        return futures

    def _job_record(self, paths: disk.JobPaths, state: dict[str, Any]) -> dict[str, Any]:
        try:
            config = yaml.safe_load(paths.job_file.read_text())
        except (OSError, yaml.YAMLError):
            config = None
        record = {k: state.get(k) for k in store_training.JOB_COLUMNS if k in state}
        for key in ("created_at", "run_at", "started_at", "finished_at"):
            record[key] = dt.datetime.fromisoformat(state[key]) if state.get(key) else None
        record.update(job_id=paths.job_id, name=state.get("name") or paths.job_id, state=state.get("state") or "unknown",
                      step=self._last_step(paths), output_dir=str(paths.out), config=config)
        return record

    def _follow(self) -> None:
        while not self._stop.wait(self.config.poll_s):
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - the follower must outlive one bad folder or a busy store
                print(f"budgetlab: training jobs follower: {type(exc).__name__}: {exc}", file=sys.stderr)

    # --- internals
    def _runs(self) -> list[disk.JobPaths]:
        root = self.config.jobs_dir / "runs"
        return [disk.JobPaths(d) for d in sorted(root.iterdir()) if (d / "state.json").is_file()] if root.is_dir() else []

    def _existing(self, job_id: str) -> disk.JobPaths:
        paths = disk.JobPaths.run(self.config.jobs_dir, job_id or "")
        if not JOB_ID.fullmatch(job_id or "") or not paths.state_file.is_file():
            raise JobStateError(f"no job {job_id!r}: pick one from the job list")
        return paths

    def _last_step(self, paths: disk.JobPaths) -> int | None:
        with self.store.reader() as cur:
            return store_training.last_step(cur, paths.job_id)

    def _add_run(self, job_id: str, name: str, when: dt.datetime | None) -> None:
        run_date = (when or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).replace(tzinfo=dt.timezone.utc)
        self._scheduler.add_job("backend.jobs:run_job", trigger="date", run_date=run_date, id=job_id, name=name, replace_existing=True,
                                kwargs={"jobs_dir": str(self.config.jobs_dir), "job_id": job_id, "command": list(self.config.train_command)})

    def _add_schedule(self, request: JobRequest, name_state: dict[str, Any]) -> str:
        from apscheduler.triggers.cron import CronTrigger

        paths = disk.JobPaths.schedule(self.config.jobs_dir, disk.new_id("schedule"))
        paths.folder.mkdir(parents=True)
        paths.job_file.write_text(job_yaml(request.config))
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
        from apscheduler.jobstores.base import JobLookupError

        try:
            self._scheduler.remove_job(job_id)
        except JobLookupError:
            pass  # already fired (it then finds the job cancelled and does nothing)

    def _on_submitted(self, event) -> None:
        paths = disk.JobPaths.run(self.config.jobs_dir, event.job_id)
        if paths.state_file.is_file():
            disk.transition(paths, (disk.SCHEDULED,), state=disk.QUEUED)

    def _reconcile(self) -> None:
        """What an earlier app left: a run it was running is interrupted (its child is stopped if
        it outlived the app); a run it had queued or whose time came while it was down runs now."""
        pending = {job.id for job in self._scheduler.get_jobs()}
        for paths in self._runs():
            state = disk.read_state(paths) or {}
            if state.get("state") == disk.RUNNING:
                if disk.pid_runs_job(state.get("pid"), paths):
                    disk.kill_group(state["pid"], signal.SIGKILL)
                disk.write_state(paths, state=disk.INTERRUPTED, finished_at=disk.now_iso(), pid=None,
                                 error="the app stopped while this job ran; Resume continues from its last checkpoint")
            elif state.get("state") in disk.WAITING and paths.job_id not in pending:
                self._add_run(paths.job_id, state.get("name", paths.job_id), None)


def _read_metric_lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Step rows from the complete lines of metrics.jsonl after byte ``offset``, and the new offset."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next look
    rows = []
    for line in chunk[:end].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "reward" not in record or "step" not in record:
            continue  # the end-of-training summary line
        row = {column: _number(record.get(key)) for key, column in METRIC_KEYS.items()}
        if row["mean_length"] is None:
            row["mean_length"] = _number(record.get("completions/mean_length"))
        logged = record.get("time")
        row.update(step=int(record["step"]), elapsed_s=_number(record.get("elapsed_s")), raw=json.dumps(record),
                   logged_at=dt.datetime.fromtimestamp(logged, dt.timezone.utc).replace(tzinfo=None) if isinstance(logged, (int, float)) else None)
        rows.append(row)
    return rows, offset + end


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

