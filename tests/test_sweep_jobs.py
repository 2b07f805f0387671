"""Sweeps as jobs of the app (`backend.jobs.sweeps`): they run to the end without a page, stop, resume,
outlive an app restart and store every generation once. Real parts: the shared vLLM engine, DuckDB in
a temp dir, APScheduler with its SQLite store. The browser's side (a page closed, another one stops
the job) is in tests/test_browser_jobs.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from backend.factory import open_app
from backend.jobs import disk
from backend.jobs.sweeps import SweepStateError, SweepSubmission
from backend.service.sweep_plan import parse_sweep_request
from tests.conftest import run, wait_for


def _request(service, name: str, limit: int = 6, samples: int = 2):
    request = parse_sweep_request(["l1-tiny"], "arith", ["l1_exact", "hard_cap"], [32, 64], samples, limit, 5, 2, name)
    return run(service.check_sweep(request))


def _counts(store, run_id: str) -> tuple[int, int]:
    """(rows, distinct generation ids) of a run: equal when nothing was stored twice."""
    with store.reader() as cur:
        cur.execute("SELECT count(*), count(DISTINCT gen_id) FROM generations WHERE run_id = ?", [run_id])
        return tuple(cur.fetchall()[0])


def _ended(jobs, job_id: str, timeout_s: float = 240) -> dict:
    return wait_for(lambda: (job := jobs.sweeps.job(job_id)).get("state") in disk.ENDED and job, timeout_s, 0.2)


def test_a_sweep_job_runs_to_the_end_and_its_progress_is_in_its_folder(service, training_jobs, store):
    request = _request(service, "job-to-the-end")
    job_id = training_jobs.sweeps.submit(SweepSubmission("to the end", (request.to_json(),)))
    job = _ended(training_jobs, job_id)
    assert job["state"] == "finished", job
    assert job["progress"]["complete"] == job["progress"]["total"] == 2 * 2 * 6 * 2
    assert _counts(store, "job-to-the-end") == (48, 48)
    listed = {j["job_id"]: j for j in training_jobs.all_jobs()}
    assert listed[job_id]["kind"] == "sweep" and listed[job_id]["runs"] == ["job-to-the-end"]
    # The same run again is a new job that finds everything stored.
    again = training_jobs.sweeps.submit(SweepSubmission("again", (request.to_json(),)))
    job = _ended(training_jobs, again)
    assert (job["state"], job["progress"]["stored_before"], job["progress"]["done"]) == ("finished", 48, 0)
    assert _counts(store, "job-to-the-end") == (48, 48)


def test_stop_keeps_what_was_stored_and_resume_completes_each_generation_once(service, training_jobs, store):
    request = _request(service, "job-stopped", limit=20)
    jobs = training_jobs.sweeps
    job_id = jobs.submit(SweepSubmission("stopped", (request.to_json(),)))
    wait_for(lambda: (jobs.job(job_id).get("progress") or {}).get("complete", 0) >= 8, 240, 0.1)
    assert "stopping" in jobs.cancel(job_id)
    job = _ended(training_jobs, job_id)
    stored = _counts(store, "job-stopped")
    assert job["state"] == "cancelled" and 8 <= stored[0] < 160 and stored[0] == stored[1], (job, stored)
    with pytest.raises(SweepStateError, match="nothing to stop"):
        jobs.cancel(job_id)
    assert "queued to resume job-stopped" in jobs.resume(job_id)
    job = _ended(training_jobs, job_id)
    assert job["state"] == "finished" and job["progress"]["stored_before"] == stored[0], job
    assert _counts(store, "job-stopped") == (160, 160)


def test_a_waiting_job_is_cancelled_before_it_starts_and_a_bad_id_is_refused(service, training_jobs, app_settings):
    request = _request(service, "job-later")
    later = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(hours=3)
    job_id = training_jobs.sweeps.submit(SweepSubmission("later", (request.to_json(),), schedule="at", run_at=later))
    assert training_jobs.sweeps.job(job_id)["state"] == "scheduled"
    assert training_jobs.stop(job_id) == f"{job_id}: cancelled before it started"
    assert training_jobs.sweeps.job(job_id)["state"] == "cancelled"
    with pytest.raises(SweepStateError, match="no sweep job '../x'"):
        training_jobs.sweeps.job("../x")


def test_a_recurring_sweep_is_listed_with_its_next_run_and_removed(service, training_jobs):
    request = _request(service, "nightly")
    schedule_id = training_jobs.sweeps.submit(SweepSubmission("nightly", (request.to_json(),), schedule="cron", cron="0 2 * * *"))
    listed = {j["job_id"]: j for j in training_jobs.all_jobs()}
    assert listed[schedule_id]["state"] == "recurring" and listed[schedule_id]["run_at"].endswith("T02:00:00")
    assert "recurring sweep removed" in training_jobs.stop(schedule_id)
    assert schedule_id not in {j["job_id"] for j in training_jobs.all_jobs()}


def test_a_firing_of_a_recurring_sweep_stores_a_new_run(service, training_jobs, store):
    request = _request(service, "fired", limit=2, samples=1)
    schedule_id = training_jobs.sweeps.submit(SweepSubmission("fired", (request.to_json(),), schedule="cron", cron="0 3 1 1 *"))
    training_jobs._scheduler.modify_job(schedule_id, next_run_time=dt.datetime.now(dt.timezone.utc))
    fired = wait_for(lambda: next((j for j in training_jobs.sweeps.jobs() if j.get("schedule_id") == schedule_id), None), 60, 0.2)
    job = _ended(training_jobs, fired["job_id"])
    run_id = job["runs"][0]
    assert job["state"] == "finished" and run_id.startswith("fired-") and _counts(store, run_id) == (8, 8)
    training_jobs.stop(schedule_id)


def test_an_app_stopped_mid_sweep_resumes_the_job_when_it_starts_again(engine, app_settings, tmp_path):
    """Closed in the middle (Ctrl-C's path: the job is marked to resume), opened again on the same
    folders: the job resumes by itself and every generation is stored once. (A kill -9 of the app
    is the browser test's.)"""
    settings = dataclasses.replace(app_settings, db=str(tmp_path / "db.duckdb"), jobs_dir=str(tmp_path / "jobs"),
                                   scheduler_db=str(tmp_path / "scheduler.sqlite"), data_dir=str(tmp_path))
    with open_app(settings, env={}, engine=engine, jobs=True) as app:
        request = _request(app.service, "restarted", limit=20)
        job_id = app.jobs.sweeps.submit(SweepSubmission("restarted", (request.to_json(),)))
        wait_for(lambda: (app.jobs.sweeps.job(job_id).get("progress") or {}).get("complete", 0) >= 8, 240, 0.1)
    state = disk.read_state(disk.JobPaths.sweep(Path(settings.jobs_dir), job_id))
    assert state["state"] == "interrupted" and state["resume_on_start"], state
    with open_app(settings, env={}, engine=engine, jobs=True) as app:
        job = _ended(app.jobs, job_id)
        assert job["state"] == "finished" and 8 <= job["progress"]["stored_before"] < 160, job
        assert _counts(app.store, "restarted") == (160, 160)
