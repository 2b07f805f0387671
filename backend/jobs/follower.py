"""The copy of training jobs into DuckDB: each job folder's state and metrics.jsonl, as they change.

`JobFollower` looks at every run folder every ``poll_s`` seconds (in a thread), and copies what
changed since the last look into the store's ``training_jobs`` and ``training_metrics`` tables
(only complete metric lines; a line still being written waits for the next look), so the
dashboard and the Analytics tab read training curves with SQL like everything else.

    follower = JobFollower(store, jobs_dir=Path("data/jobs"), poll_s=1.0)
    follower.start(); ...; follower.stop()
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from backend.jobs import disk
from store import training as store_training

# metrics.jsonl key -> training_metrics column (the LCPO trainer's and TRL's names).
METRIC_KEYS = {
    "reward": "reward", "reward_std": "reward_std", "lcpo/correct": "correct", "lcpo/mean_length": "mean_length",
    "lcpo/mean_abs_rel_dev": "mean_abs_rel_dev", "lcpo/over_target": "over_target",
    "completions/clipped_ratio": "clipped_ratio", "loss": "loss", "grad_norm": "grad_norm", "learning_rate": "learning_rate",
}
# Fields the app sets itself: the output folder is the job's own, the export is the model name's.


def last_step(store, job_id: str) -> int | None:
    """The newest step of a job's metrics in the store."""
    with store.reader() as cur:
        return store_training.last_step(cur, job_id)


class JobFollower:
    def __init__(self, store, jobs_dir: Path, poll_s: float) -> None:
        self.store = store
        self.jobs_dir = jobs_dir
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: dict[str, tuple[float, int]] = {}  # job_id -> (state.json mtime, metrics bytes read)
        self._sync_lock = threading.Lock()

    def start(self) -> None:
        self.sync()
        self._thread = threading.Thread(target=self._follow, name="training-jobs-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following, after one last copy of what changed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sync()

    def sync(self) -> None:
        """Copy every job folder that changed since the last look into the store; waits for the writes."""
        with self._sync_lock:
            futures = []
            for paths in disk.run_folders(self.jobs_dir):
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
                      step=last_step(self.store, paths.job_id), output_dir=str(paths.out), config=config)
        return record

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - the follower must outlive one bad folder or a busy store
                print(f"budgetlab: training jobs follower: {type(exc).__name__}: {exc}", file=sys.stderr)


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
