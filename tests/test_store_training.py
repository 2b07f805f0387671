"""store/training.py against a real DuckDB file: job rows and metric rows upserted, interleaved with
other writes, a re-logged step replacing the older line."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from store import training as store_training
from store.writer import StoreConfig, StoreWriter


@pytest.fixture()
def store(tmp_path):
    with StoreWriter(StoreConfig(tmp_path / "t.duckdb")) as writer:
        yield writer


def test_jobs_and_metrics_upsert_and_interleave_with_other_writes(store):
    started = dt.datetime(2026, 11, 27, 21, 0, 0)
    store_training.upsert_job(store, {"job_id": "j1", "name": "nightly", "state": "queued", "config": {"mode": "both"}}).result()
    store_training.upsert_metrics(store, "j1", [{"step": 1, "reward": 0.25, "mean_length": 120.0}, {"step": 2, "reward": 0.5}]).result()
    store.upsert_run("r1", "a run", "sweep", {}, "running").result()  # a plain statement between two table writes
    # A resumed job logs step 2 again: the newer line wins, in one batch and across batches.
    store_training.upsert_metrics(store, "j1", [{"step": 2, "reward": 0.75}, {"step": 3, "reward": 0.1}, {"step": 3, "reward": 0.9}]).result()
    store_training.upsert_job(store, {"job_id": "j1", "name": "nightly", "state": "running", "started_at": started, "step": 3}).result()
    with store.reader() as cur:
        frame = store_training.job_metrics(cur, "j1")
        job = store_training.get_job(cur, "j1")
        assert store_training.last_step(cur, "j1") == 3 and store_training.last_step(cur, "nope") is None
        assert [j["job_id"] for j in store_training.list_jobs(cur)] == ["j1"]
    assert frame["step"].tolist() == [1, 2, 3]
    assert frame["reward"].tolist() == [0.25, 0.75, 0.9]
    assert frame["mean_length"].tolist()[0] == 120.0 and frame["mean_length"].isna().tolist()[1:] == [True, True]
    assert (job["state"], job["started_at"], job["step"]) == ("running", started, 3)
    assert job["config"] is None  # the second upsert had no config: a job row is replaced whole


def test_a_job_row_needs_its_keys(store):
    with pytest.raises(ValueError, match="needs job_id, name and state"):
        store_training.upsert_job(store, {"job_id": "j2", "state": "queued"})
    store_training.upsert_job(store, {"job_id": "j2", "name": "x", "state": "queued", "config": {"a": [1, 2]}}).result()
    with store.reader() as cur:
        assert json.loads(store_training.get_job(cur, "j2")["config"]) == {"a": [1, 2]}
    with store.reader() as cur:
        assert store_training.job_metrics(cur, "j2").empty


def test_a_reopened_store_takes_table_writes_first_thing(tmp_path):
    # On a file already migrated, the writer's first operation used to meet the migration check's
    # unfinished result ("connection has an unfinished result") and fail.
    StoreWriter(StoreConfig(tmp_path / "r.duckdb")).close()
    with StoreWriter(StoreConfig(tmp_path / "r.duckdb")) as writer:
        store_training.upsert_metrics(writer, "j", [{"step": 1, "reward": 1.0}]).result()
        with writer.reader() as cur:
            assert store_training.last_step(cur, "j") == 1
