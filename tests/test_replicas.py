"""Two CPU replicas of the tiny model behind a real router (vllm-router), as `engines_replicas`
starts them: a sweep is spread over both, and one replica killed with -9 in the middle of a sweep
costs nothing (every generation stored exactly once, the sweep finishes).

The same setup is what a multi-GPU user runs, one replica per GPU (README, "Scale-out").
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from backend.factory import open_app
from backend.service.sweep_plan import parse_sweep_request
from backend.serving.replicas import ReplicaSet
from backend.settings import REPO_ROOT, AppSettings
from store import queries

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    root = tmp_path_factory.mktemp("replicas")
    settings = AppSettings(model="l1-tiny", db=str(root / "budgetlab.duckdb"), data_dir=str(root), models_dir=str(REPO_ROOT / "models"),
                           trained_models_dir=str(root / "trained"), jobs_dir=str(root / "jobs"), scheduler_db=str(root / "scheduler.sqlite"),
                           export_dir=str(root / "exports"), engine_kv_cache_gib=1, engine_max_model_len=2048, engine_start_timeout_s=300,
                           engines_replicas="l1-tiny=2", answer_max_tokens=64)
    with open_app(settings, env=os.environ, shell=True) as app:
        spec = app.service.resolve_model("l1-tiny")
        app.service.engines.ensure(spec, 400)
        replicas = app.service.engines.engine_of("l1-tiny")
        assert isinstance(replicas, ReplicaSet) and len(replicas.replicas) == 2
        yield app, replicas


def sweep(app, run: str, limit: int, on_progress=None):
    request = parse_sweep_request("l1-tiny", "arith", "l1_exact", "64,128", samples=1, limit=limit, seed=31, concurrency=16, run=run)
    return asyncio.run(app.service.sweep(request, on_progress))


def stored_once(app, outcome) -> tuple[int, int]:
    with app.store.reader() as cur:
        rows = queries.get_generations(cur, outcome.run_id)
    return len(rows), len({r["gen_id"] for r in rows})


def test_a_sweep_is_spread_over_both_replicas(replicated):
    app, replicas = replicated
    before = replicas.request_counts()
    outcome = sweep(app, "spread", limit=40)
    assert outcome.progress.failed == 0 and outcome.progress.complete == 80
    served = [after - earlier for after, earlier in zip(replicas.request_counts(), before)]
    assert sum(served) >= 80, served
    assert all(n >= 0.3 * sum(served) for n in served), served  # round robin: about half each


def test_a_replica_killed_mid_sweep_costs_no_generation(replicated):
    app, replicas = replicated
    victim = replicas.replicas[0]
    killed = []

    def kill_once(progress):
        if not killed and progress.done >= 20:
            killed.append(progress.done)
            os.killpg(victim.pid(), signal.SIGKILL)

    outcome = sweep(app, "killed", limit=60, on_progress=kill_once)
    assert killed, "the sweep ended before a replica could be killed"
    assert outcome.aborted is None and outcome.progress.failed == 0, (outcome.aborted, outcome.progress.last_error)
    assert outcome.progress.complete == outcome.progress.total == 120
    assert stored_once(app, outcome) == (120, 120)  # every (question, budget, sample) stored exactly once
    with app.store.reader() as cur:
        assert queries.get_run(cur, outcome.run_id)["status"] == "finished"
    # The killed replica's own supervisor brings it back on its port, where the router finds it again.
    victim.wait_ready("l1-tiny", 300)
    assert victim.status().restarts == 1
