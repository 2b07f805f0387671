"""Training jobs on disk, and the functions the scheduler runs for them.

A job is a folder; everything about it is in the folder, so a job kept in the scheduler's SQLite
store survives an app restart, and the app can be killed without losing what a job did::

    <jobs_dir>/runs/<job_id>/
        job.yaml      the LCPO job file (training/lcpo.py), output_dir and export_dir filled in
        state.json    {"state": "running", "pid": 1234, ...}; read-modify-written under a file lock
        train.log     the child's stdout and stderr
        out/          checkpoints, metrics.jsonl, final/ (`python app.py train` writes them)
        cancel        exists once a cancel was asked for
    <jobs_dir>/schedules/<schedule_id>/
        job.yaml, schedule.json   a recurring job: each firing copies it into a new run folder
    <jobs_dir>/sweeps/<job_id>/, <jobs_dir>/sweep-schedules/<schedule_id>/
        sweep.json, state.json    a sweep job (`backend.jobs.sweeps`), run inside the app

APScheduler calls `run_job` and `run_schedule` by their import paths ("backend.jobs:run_job", kept
stable by the package's ``__init__``: the scheduler's SQLite store holds these strings). They
run ``<command> --config job.yaml --output-dir out`` (command: ``python app.py train`` with the
app's model folders) as a child in its own process group, so a cancel kills the whole group and a
crash of the child cannot take the app down, and record the outcome in state.json.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.processes import die_with_parent, tail

SCHEDULED, QUEUED, RUNNING = "scheduled", "queued", "running"
FINISHED, FAILED, CANCELLED, INTERRUPTED = "finished", "failed", "cancelled", "interrupted"
WAITING = (SCHEDULED, QUEUED)
ENDED = (FINISHED, FAILED, CANCELLED, INTERRUPTED)
RESUMABLE = (FAILED, CANCELLED, INTERRUPTED)
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class JobPaths:
    folder: Path

    @classmethod
    def run(cls, jobs_dir: str | Path, job_id: str) -> JobPaths:
        return cls(Path(jobs_dir) / "runs" / job_id)

    @classmethod
    def schedule(cls, jobs_dir: str | Path, schedule_id: str) -> JobPaths:
        return cls(Path(jobs_dir) / "schedules" / schedule_id)

    @classmethod
    def sweep(cls, jobs_dir: str | Path, job_id: str) -> JobPaths:
        """A sweep job's folder (`backend.jobs.sweeps`): apart from the fine-tunes', which the follower copies into the store."""
        return cls(Path(jobs_dir) / "sweeps" / job_id)

    @classmethod
    def sweep_schedule(cls, jobs_dir: str | Path, schedule_id: str) -> JobPaths:
        return cls(Path(jobs_dir) / "sweep-schedules" / schedule_id)

    @property
    def job_id(self) -> str:
        return self.folder.name

    @property
    def job_file(self) -> Path:
        return self.folder / "job.yaml"

    @property
    def state_file(self) -> Path:
        return self.folder / "state.json"

    @property
    def schedule_file(self) -> Path:
        return self.folder / "schedule.json"

    @property
    def log(self) -> Path:
        return self.folder / "train.log"

    @property
    def out(self) -> Path:
        return self.folder / "out"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def cancel_flag(self) -> Path:
        return self.folder / "cancel"

    @property
    def sweep_file(self) -> Path:
        """A sweep job's requests, as JSON."""
        return self.folder / "sweep.json"


def run_folders(jobs_dir: str | Path, kind: str = "runs") -> list[JobPaths]:
    """Every run folder under ``jobs_dir`` that has a state file, oldest id first (``kind`` "sweeps": the sweep jobs')."""
    root = Path(jobs_dir) / kind
    return [JobPaths(d) for d in sorted(root.iterdir()) if (d / "state.json").is_file()] if root.is_dir() else []


def now_iso() -> str:
    """UTC, to the second, without a zone: the convention of every time in state.json."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0).isoformat()


def new_id(prefix: str) -> str:
    return f"{prefix}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def read_state(paths: JobPaths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.state_file.read_text())
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _locked(paths: JobPaths) -> Iterator[None]:
    # The app and the runner both update state.json; a file lock keeps each update whole, even
    # across processes (a second app on the same jobs folder).
    with open(paths.folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _save(paths: JobPaths, state: dict[str, Any]) -> None:
    """Replace state.json atomically (a reader never sees half a file); call it holding `_locked`."""
    temporary = paths.state_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(temporary, paths.state_file)


def write_state(paths: JobPaths, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into state.json; return it."""
    paths.folder.mkdir(parents=True, exist_ok=True)
    with _locked(paths):
        state = {**(read_state(paths) or {"job_id": paths.job_id}), **changes}
        _save(paths, state)
    return state


def transition(paths: JobPaths, allowed_from: tuple[str, ...], **changes: Any) -> dict[str, Any] | None:
    """Like `write_state`, but only from one of ``allowed_from``; None (and nothing written) otherwise."""
    with _locked(paths):
        state = read_state(paths)
        if state is None or state.get("state") not in allowed_from:
            return None
        state.update(changes)
        _save(paths, state)
    return state


def kill_group(pid: int, sig: int = signal.SIGTERM) -> bool:
    """Signal a job's whole process group (the child made it its own); False if it is gone."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def pid_runs_job(pid: int | None, paths: JobPaths) -> bool:
    """Whether ``pid`` is alive and is this job's training child (not a recycled pid)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return str(paths.job_file) in cmdline


# --- what the scheduler runs (by import path; arguments are plain strings, stored in SQLite)


# Jobs folders whose app is shutting down in this process: the scheduler's worker may still pick up
# a job it had queued, which must then stay queued (the next start runs it), not start a child nobody stops.
_closed: set[str] = set()


def close_folder(jobs_dir: str | Path, closed: bool = True) -> None:
    """Mark ``jobs_dir`` closed (the app is stopping: `run_job` starts nothing) or open again."""
    key = str(Path(jobs_dir).resolve())
    (_closed.add if closed else _closed.discard)(key)


def _is_closed(jobs_dir: str | Path) -> bool:
    return str(Path(jobs_dir).resolve()) in _closed


def run_job(jobs_dir: str, job_id: str, command: list[str]) -> str:
    """Run a waiting job to its end; return its final state. A job no longer waiting (cancelled,
    already run) is left alone, so a stale trigger does nothing; so is one whose app is stopping."""
    paths = JobPaths.run(jobs_dir, job_id)
    if _is_closed(jobs_dir):
        return (read_state(paths) or {}).get("state", "missing")
    if transition(paths, WAITING, state=RUNNING, started_at=now_iso(), finished_at=None, exit_code=None, error=None, pid=None) is None:
        return (read_state(paths) or {}).get("state", "missing")
    if paths.cancel_flag.exists():
        write_state(paths, state=CANCELLED, finished_at=now_iso(), error="cancelled before it started")
        return CANCELLED
    argv = [*command, "--config", str(paths.job_file), "--output-dir", str(paths.out)]
    with paths.log.open("ab") as log:
        log.write(f"\n=== {now_iso()} UTC: {' '.join(argv)}\n".encode())
        log.flush()
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, preexec_fn=die_with_parent)
    write_state(paths, pid=child.pid)
    if paths.cancel_flag.exists() or _is_closed(jobs_dir):  # a cancel, or the app's shutdown, that came while the child started found no pid
        kill_group(child.pid)
    code = child.wait()
    return _record_exit(paths, code)


def _record_exit(paths: JobPaths, code: int) -> str:
    # Decided and written under one lock, so an app marking the job interrupted on its way out
    # (shutdown) is never overwritten by this thread's verdict.
    with _locked(paths):
        state = read_state(paths) or {"job_id": paths.job_id}
        if state.get("state") == INTERRUPTED:
            return INTERRUPTED
        if paths.cancel_flag.exists():
            final, error = CANCELLED, "cancelled while running"
        elif _is_closed(paths.folder.parent.parent):  # stopped by the app's shutdown as it started
            final, error = INTERRUPTED, "the app stopped while this job ran; Resume continues from its last checkpoint"
        elif code == 0:
            final, error = FINISHED, None
        else:
            final, error = FAILED, f"exit status {code}{_signal_name(code)}; log tail:\n{tail(paths.log, LOG_TAIL_LINES)}"
        _save(paths, {**state, "state": final, "exit_code": code, "finished_at": now_iso(), "error": error, "pid": None})
    return final


def _signal_name(code: int) -> str:
    if code >= 0:
        return ""
    try:
        return f" (killed by {signal.Signals(-code).name})"
    except ValueError:
        return f" (killed by signal {-code})"


def run_schedule(jobs_dir: str, schedule_id: str, command: list[str]) -> str:
    """One firing of a recurring schedule: a new run folder from its template, run at once."""
    template = JobPaths.schedule(jobs_dir, schedule_id)
    schedule = json.loads(template.schedule_file.read_text())
    paths = JobPaths.run(jobs_dir, new_id(schedule_id))
    create_run(paths, template.job_file.read_text(), name=schedule["name"], model_name=schedule["model_name"],
               schedule="cron", state=QUEUED, schedule_id=schedule_id, max_steps=schedule.get("max_steps"))
    return run_job(jobs_dir, paths.job_id, command)


def create_run(paths: JobPaths, job_yaml: str, **state: Any) -> dict[str, Any]:
    """A new run folder with its job file (its output folder is out/, given on the command line)."""
    paths.folder.mkdir(parents=True, exist_ok=False)
    paths.out.mkdir()
    paths.job_file.write_text(job_yaml)
    return write_state(paths, created_at=now_iso(), **state)


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint in a job's output folder whose save finished: the Trainer writes
    trainer_state.json last, so a job killed in the middle of a save leaves a folder without a
    readable one, which is skipped. A resumed job starts from it."""
    def step(folder: Path) -> int:
        suffix = folder.name.rpartition("-")[2]
        return int(suffix) if suffix.isdigit() else -1

    for folder in sorted(Path(output_dir).glob("checkpoint-*"), key=step, reverse=True):
        try:
            json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        return folder
    return None
