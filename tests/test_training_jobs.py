"""Training jobs for real: APScheduler with its SQLite store in a temp dir, `python app.py train`
children running tiny LCPO jobs (a few GRPO steps on the shipped base model), their metrics copied
into DuckDB, cancel, kill -9 of the child, resume from a checkpoint, and a scheduler restart."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import threading
import time

import pytest

from backend.evaluation.datasets import DatasetPolicy
from backend.jobs import disk
from backend.jobs.scheduler import JobsConfig, JobStateError, TrainingJobs
from backend.serving.registry import ModelRegistry
from backend.settings import REPO_ROOT
from store import training as store_training
from store.writer import StoreConfig, StoreWriter
from tests.conftest import wait_for
from training.jobs import JobInputError, parse_job_request

# About 15 s a job on 2 cores, most of it imports: 2 GRPO steps of 8 short completions.
TINY_JOB = {
    "base_model": "tiny-r1-base", "num_examples": 16, "mode": "both", "n_min": 16, "n_max": 64, "num_generations": 4,
    "per_device_train_batch_size": 8, "learning_rate": 1e-4, "max_steps": 2, "max_completion_length": 96,
    "save_steps": 1, "logging_steps": 1, "precision": "fp32",
}


def make_jobs(root, store, poll_s=0.3) -> TrainingJobs:
    trained = root / "trained"
    command = (sys.executable, str(REPO_ROOT / "app.py"), "train", "--models-dir", str(REPO_ROOT / "models"), "--trained-models-dir", str(trained))
    config = JobsConfig(root / "jobs", root / "scheduler.sqlite", trained, command, poll_s, DatasetPolicy(roots=()))
    return TrainingJobs(config, store, ModelRegistry(REPO_ROOT / "models", (trained,)))


@pytest.fixture()
def store(tmp_path):
    writer = StoreWriter(StoreConfig(tmp_path / "budgetlab.duckdb"))
    yield writer
    writer.close()


@pytest.fixture()
def jobs(tmp_path, store):
    manager = make_jobs(tmp_path, store)
    manager.start()
    yield manager
    manager.shutdown()


def request(jobs, model_name="tiny-ft", schedule="now", run_at=None, cron="", **changes):
    return parse_job_request({**TINY_JOB, **changes}, "test job", model_name, schedule, run_at, cron,
                             registry=jobs.registry, trained_models_dir=jobs.config.trained_models_dir)


def wait_state(jobs, job_id, states, timeout_s=240):
    return wait_for(lambda: (s := jobs.job(job_id))["state"] in states and s, timeout_s, 0.3)


@pytest.mark.train
def test_a_job_runs_to_the_end_its_metrics_land_in_duckdb_and_its_model_is_registered(jobs, store):
    job_id = jobs.submit(request(jobs, "tiny-ft-a"))
    state = wait_state(jobs, job_id, disk.ENDED)
    assert state["state"] == disk.FINISHED, state
    assert state["exit_code"] == 0 and state["started_at"] <= state["finished_at"]
    jobs.sync()
    frame = jobs.metrics(job_id)
    assert frame["step"].tolist() == [1, 2]
    assert frame["reward"].notna().all() and frame["mean_length"].gt(0).all() and frame["correct"].between(0, 1).all()
    with store.reader() as cur:
        row = store_training.get_job(cur, job_id)
    assert (row["state"], row["step"], row["max_steps"], row["model_name"]) == ("finished", 2, 2, "tiny-ft-a")
    assert json.loads(row["config"])["export_dir"].endswith("trained/tiny-ft-a")
    # The registry scans the trained models folder: the fine-tune can be picked at once.
    spec = jobs.registry.resolve("tiny-ft-a")
    assert spec.source == str(jobs.model_dir(job_id).resolve())
    assert (jobs.model_dir(job_id) / "model.safetensors").is_file()


def test_bad_requests_are_refused_field_by_field_and_nothing_is_scheduled(jobs):
    with pytest.raises(JobInputError) as caught:
        parse_job_request({**TINY_JOB, "num_generations": 3, "n_max": 5000, "base_model": "nope-not-a-model"}, "", "l1-tiny", "cron", cron="every night",
                          registry=jobs.registry, trained_models_dir=jobs.config.trained_models_dir)
    fields = [field for field, _ in caught.value.problems]
    assert {"name", "model_name", "base_model", "per_device_train_batch_size", "cron"} <= set(fields), caught.value.problems
    assert "a shipped model has it" in str(caught.value)
    with pytest.raises(JobInputError, match="n_max 5000: must be below the model's context"):
        request(jobs, n_max=5000, max_completion_length=6000)
    with pytest.raises(JobInputError, match="in the past"):
        request(jobs, schedule="at", run_at="2020-01-01 00:00")
    assert jobs.jobs() == [] and not (jobs.config.jobs_dir / "runs").exists()
    with pytest.raises(JobStateError, match="no job"):
        jobs.cancel("../../etc")


def test_a_dataset_file_from_a_request_must_be_one_the_policy_allows_and_is_named_by_its_checked_path(tmp_path):

    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "train.jsonl").write_text('{"question": "Compute 1 + 1.", "answer": "2"}\n')
    (tmp_path / "secret.jsonl").write_text('{"question": "Compute 1 + 1.", "answer": "2"}\n')
    policy = DatasetPolicy((tmp_path / "datasets",))
    accepted = parse_job_request({**TINY_JOB, "dataset": "train.jsonl"}, "job", "ds-ft", "now", dataset_policy=policy)
    assert accepted.config.dataset == str((tmp_path / "datasets" / "train.jsonl").resolve())  # what the child opens is what was checked
    with pytest.raises(JobInputError, match="secret.jsonl: not inside a dataset folder the dashboard may read") as caught:
        parse_job_request({**TINY_JOB, "dataset": str(tmp_path / "secret.jsonl")}, "job", "ds-ft", "now", dataset_policy=policy)
    assert [field for field, _ in caught.value.problems] == ["dataset"]
    assert parse_job_request({**TINY_JOB, "dataset": "arith"}, "job", "ds-ft", "now", dataset_policy=policy).config.dataset == "arith"


@pytest.mark.train
def test_two_jobs_submitted_at_once_both_run_one_after_the_other(jobs):
    ids: list[str] = []
    threads = [threading.Thread(target=lambda name=name: ids.append(jobs.submit(request(jobs, name)))) for name in ("tiny-ft-b", "tiny-ft-c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 2
    states = [wait_state(jobs, job_id, disk.ENDED, 300) for job_id in ids]
    assert [s["state"] for s in states] == [disk.FINISHED, disk.FINISHED], states
    first, second = sorted(states, key=lambda s: s["started_at"])
    assert first["finished_at"] <= second["started_at"]  # never two at once


@pytest.mark.train
def test_cancel_kill_9_and_resume_from_the_last_checkpoint(jobs):
    job_id = jobs.submit(request(jobs, "tiny-ft-d", max_steps=40))
    wait_for(lambda: jobs.last_checkpoint(job_id), 240, 0.3)
    state = jobs.job(job_id)
    pid = state["pid"]
    os.kill(pid, signal.SIGKILL)  # the child dies mid-run
    failed = wait_state(jobs, job_id, disk.ENDED, 60)
    assert failed["state"] == disk.FAILED and failed["exit_code"] == -9
    assert "SIGKILL" in failed["error"] and "log tail" in failed["error"]
    checkpoint = jobs.last_checkpoint(job_id)
    done_before = int(checkpoint.split("-")[-1])
    assert jobs.resume(job_id).endswith(f"queued to resume from {checkpoint}")
    wait_for(lambda: (jobs.job(job_id)["step"] or 0) > done_before + 1, 240, 0.3)
    # Cancel while running: the whole process group goes, the job says cancelled.
    running = jobs.job(job_id)
    assert running["state"] == disk.RUNNING
    jobs.cancel(job_id)
    cancelled = wait_state(jobs, job_id, disk.ENDED, 60)
    assert cancelled["state"] == disk.CANCELLED
    assert not disk.pid_runs_job(running["pid"], disk.JobPaths.run(jobs.config.jobs_dir, job_id))
    jobs.sync()
    steps = jobs.metrics(job_id)["step"].tolist()
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] > done_before
    log = (disk.JobPaths.run(jobs.config.jobs_dir, job_id).log).read_text()
    assert log.count("=== ") == 2  # one start, one resume, in the same log
    # The cancelled run's log ends with what happened, not a traceback.
    last = wait_for(lambda: disk.JobPaths.run(jobs.config.jobs_dir, job_id).log.read_text().rstrip().splitlines()[-1], 10, 0.2)
    assert last.startswith("app.py train: cancelled (SIGTERM or Ctrl-C)"), log[-2000:]
    assert "Traceback" not in log.split("=== ")[-1]
    with pytest.raises(JobStateError, match="only a failed, cancelled or interrupted job"):
        jobs.resume(jobs.retry(job_id))


def test_a_scheduled_job_and_a_recurring_one_survive_a_restart(tmp_path, store):
    first = make_jobs(tmp_path, store)
    first.start()
    later = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0) + dt.timedelta(hours=3)
    job_id = first.submit(request(first, "tiny-ft-later", schedule="at", run_at=later.isoformat(sep=" ")))
    schedule_id = first.submit(request(first, "tiny-ft-nightly", schedule="cron", cron="0 2 * * *"))
    first.shutdown()

    again = make_jobs(tmp_path, store)
    again.start()
    try:
        listed = {row["job_id"]: row for row in again.jobs()}
        assert listed[job_id]["state"] == disk.SCHEDULED and listed[job_id]["run_at"] == later.isoformat()
        assert listed[schedule_id]["state"] == "recurring" and listed[schedule_id]["run_at"].endswith("T02:00:00")
        assert {job.id for job in again._scheduler.get_jobs()} == {job_id, schedule_id}
        assert again.cancel(job_id).endswith("cancelled before it started")
        assert "removed" in again.cancel(schedule_id)
        assert again._scheduler.get_jobs() == []
    finally:
        again.shutdown()


def test_a_job_left_running_by_a_dead_app_is_shown_interrupted(tmp_path, store):
    jobs = make_jobs(tmp_path, store)
    paths = disk.JobPaths.run(jobs.config.jobs_dir, "job-left-behind")
    disk.create_run(paths, "base_model: tiny-r1-base\n", name="left", model_name="x", schedule="now", state=disk.RUNNING, pid=2**22 + 1)
    jobs.start()
    try:
        state = jobs.job("job-left-behind")
        assert state["state"] == disk.INTERRUPTED and "Resume continues" in state["error"]
    finally:
        jobs.shutdown()


@pytest.mark.train
def test_a_job_at_a_time_and_a_recurring_firing_both_run(jobs):
    soon = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=3)
    at_id = jobs.submit(request(jobs, "tiny-ft-at", schedule="at", run_at=soon.isoformat(), max_steps=1))
    assert jobs.job(at_id)["state"] == disk.SCHEDULED
    schedule_id = jobs.submit(request(jobs, "tiny-ft-cron", schedule="cron", cron="0 3 * * *", max_steps=1))
    jobs._scheduler.get_job(schedule_id).modify(next_run_time=dt.datetime.now(dt.timezone.utc))  # 03:00 is now
    assert wait_state(jobs, at_id, disk.ENDED)["state"] == disk.FINISHED
    fired = wait_for(lambda: next((j for j in jobs.jobs() if j.get("schedule_id") == schedule_id), None), 60, 0.3)
    assert wait_state(jobs, fired["job_id"], disk.ENDED)["state"] == disk.FINISHED
    assert fired["name"] == "test job" and fired["model_name"] == "tiny-ft-cron"
    recurring = next(j for j in jobs.jobs() if j["job_id"] == schedule_id)
    assert recurring["state"] == "recurring" and recurring["run_at"].endswith("T03:00:00")  # and it stays scheduled


@pytest.mark.train
def test_a_job_queued_when_the_app_stops_stays_queued_and_starts_no_child(tmp_path, store):
    """The scheduler's worker may pick up a queued job after shutdown began; it must not start a child
    that nobody stops (it kept a test session alive until a 40-step job ended): it stays queued for the next start."""
    jobs = make_jobs(tmp_path, store)
    jobs.start()
    first = jobs.submit(request(jobs, "tiny-ft-first", max_steps=40))
    second = jobs.submit(request(jobs, "tiny-ft-second", max_steps=40))
    wait_state(jobs, first, (disk.RUNNING,), 120)
    pid = wait_for(lambda: jobs.job(first).get("pid"), 60, 0.2)
    jobs.shutdown()
    time.sleep(3)  # the worker, freed by the first job's end, takes the second
    assert jobs.job(first)["state"] == disk.INTERRUPTED and not disk.pid_runs_job(pid, disk.JobPaths.run(jobs.config.jobs_dir, first))
    second_state = jobs.job(second)
    assert second_state["state"] == disk.QUEUED and not second_state.get("pid"), second_state
