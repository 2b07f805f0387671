"""Fine-tune jobs in the store: the ``training_jobs`` and ``training_metrics`` tables.

The jobs' own folders are the truth (backend/jobs/disk.py); the app copies them here through the single
writer so that the analytics can plot them next to the generations. Writes are upserts, so copying
the same folder again changes nothing::

    upsert_job(store, {"job_id": "j1", "name": "nightly", "state": "running", ...}).result()
    upsert_metrics(store, "j1", [{"step": 1, "reward": 0.4, ...}]).result()
    with store.reader() as cur:
        frame = job_metrics(cur, "j1")        # pandas, one row per step
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from store.schema import utc_now
from store.writer import TABLE_VIEW

JOB_COLUMNS = ("job_id", "name", "model_name", "state", "schedule", "schedule_id", "created_at", "run_at", "started_at",
               "finished_at", "exit_code", "error", "step", "max_steps", "output_dir", "config", "updated_at")
METRIC_VALUE_COLUMNS = ("reward", "reward_std", "correct", "mean_length", "mean_abs_rel_dev", "over_target",
                        "clipped_ratio", "loss", "grad_norm", "learning_rate")
METRICS_ARROW_SCHEMA = pa.schema(
    [pa.field("job_id", pa.string(), nullable=False), pa.field("step", pa.int32(), nullable=False),
     pa.field("logged_at", pa.timestamp("us")), pa.field("elapsed_s", pa.float64())]
    + [pa.field(name, pa.float64()) for name in METRIC_VALUE_COLUMNS]
    + [pa.field("raw", pa.string())]
)

_UPSERT_JOB_SQL = (
    f"INSERT INTO training_jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' for _ in JOB_COLUMNS)}) "
    "ON CONFLICT (job_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in JOB_COLUMNS if c != "job_id")
)
_UPSERT_METRICS_SQL = f"INSERT OR REPLACE INTO training_metrics SELECT * FROM {TABLE_VIEW}"


def upsert_job(store, record: Mapping[str, Any]):
    """Create or update one job's row; missing keys are stored as NULL. Returns the writer's Future."""
    if not record.get("job_id") or not record.get("name") or not record.get("state"):
        raise ValueError(f"a training job needs job_id, name and state, got {dict(record)!r}")
    values = dict(record, updated_at=utc_now())
    if values.get("config") is not None and not isinstance(values["config"], str):
        values["config"] = json.dumps(values["config"], sort_keys=True)
    return store.execute(_UPSERT_JOB_SQL, tuple(values.get(c) for c in JOB_COLUMNS))


def upsert_metrics(store, job_id: str, rows: Sequence[Mapping[str, Any]]):
    """Store metric rows (``step``, optional ``logged_at``, ``elapsed_s``, the value columns and
    ``raw``) of one job in one Arrow insert; a step stored before is replaced."""
    columns: dict[str, list[Any]] = {field.name: [] for field in METRICS_ARROW_SCHEMA}
    for row in rows:
        columns["job_id"].append(job_id)
        for name in columns:
            if name != "job_id":
                columns[name].append(row.get(name))
    # A resumed job logs some steps twice in one batch: keep the last line of each step.
    last = {step: i for i, step in enumerate(columns["step"])}
    keep = sorted(last.values())
    table = pa.table({name: [values[i] for i in keep] for name, values in columns.items()}, schema=METRICS_ARROW_SCHEMA)
    return store.write_table(_UPSERT_METRICS_SQL, table)


def list_jobs(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every job, newest first."""
    result = cur.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM training_jobs ORDER BY created_at DESC, job_id DESC")
    return [dict(zip(JOB_COLUMNS, row)) for row in result.fetchall()]


def get_job(cur: duckdb.DuckDBPyConnection, job_id: str) -> dict[str, Any] | None:
    row = cur.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM training_jobs WHERE job_id = ?", [job_id]).fetchone()
    return dict(zip(JOB_COLUMNS, row)) if row else None


def job_metrics(cur: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """One job's metrics, one row per step in step order (empty frame with the columns if none)."""
    names = ("step", "elapsed_s", *METRIC_VALUE_COLUMNS)
    return cur.execute(f"SELECT {', '.join(names)} FROM training_metrics WHERE job_id = ? ORDER BY step", [job_id]).df()


def last_step(cur: duckdb.DuckDBPyConnection, job_id: str) -> int | None:
    """The highest step a job has logged, or None before its first."""
    row = cur.execute("SELECT max(step) FROM training_metrics WHERE job_id = ?", [job_id]).fetchone()
    return int(row[0]) if row and row[0] is not None else None
