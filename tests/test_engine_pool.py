"""The engine pool with real engines: several models at once within a memory budget, an engine in
use never stopped for another model (the newcomer waits, saying for what, or is refused), and the
least recently used idle engine stopped to make room.

Three names for the base model (folders linked under a temp models dir) stand for three models:
each gets its own vLLM server, as three different models would. The budget holds two of them.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from backend.serving.engine import EngineConfig, EngineUnavailable, State
from backend.serving.pool import EnginePool, PoolConfig
from backend.serving.registry import ModelRegistry
from backend.settings import REPO_ROOT
from tests.conftest import wait_for

pytestmark = pytest.mark.engine

# A ready tiny engine with 1 GiB of KV cache holds about 2.4 GiB (PSS, measured): two fit, three do not.
TWO_ENGINES_GIB = 5.5


@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    models = tmp_path_factory.mktemp("pool-models")
    for name in ("alpha", "beta", "gamma"):
        (models / name).symlink_to(REPO_ROOT / "models" / "tiny-r1-base", target_is_directory=True)
    registry = ModelRegistry(models)
    return [registry.resolve(name) for name in ("alpha", "beta", "gamma")]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    config = EngineConfig(kv_cache_gib=1, max_model_len=2048, start_timeout_s=240)
    pool = EnginePool(config, PoolConfig(memory_gib=TWO_ENGINES_GIB), log_dir=tmp_path_factory.mktemp("pool-logs"), base_env=os.environ)
    yield pool
    pool.stop()


def acquire_in_thread(pool, spec, holder, **kwargs):
    """pool.acquire in a thread; returns (thread, result dict with 'endpoint' or 'error')."""
    result = {}

    def run():
        try:
            result["endpoint"] = pool.acquire(spec, holder, **kwargs)
        except EngineUnavailable as exc:
            result["error"] = str(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_two_models_side_by_side_then_a_third_waits_for_memory_and_takes_the_idle_ones_place(pool, three_models):
    alpha, beta, gamma = three_models
    # Both start together (one engine each) and stay up side by side.
    started = [acquire_in_thread(pool, alpha, "viewer"), acquire_in_thread(pool, beta, "sweep")]
    for thread, result in started:
        thread.join(300)
        assert "endpoint" in result, result
    for _ in range(2):
        pool.acquire(alpha, "viewer")  # three viewers on alpha in all
    views = {v.model: v for v in pool.views()}
    assert {m: v.state for m, v in views.items()} == {"alpha": State.READY, "beta": State.READY}
    # Resident memory is measured per engine (the README records it).
    assert all(1.0 < v.memory_gib < TWO_ENGINES_GIB / 2 for v in views.values()), views
    alpha_pid, beta_pid = pool.engine_of("alpha").pid(), pool.engine_of("beta").pid()

    # A third model while both are in use: it waits, and says for what.
    thread, result = acquire_in_thread(pool, gamma, "viewer")
    message = wait_for(lambda: pool.describe("gamma") if pool.describe("gamma").startswith("waiting") else None, timeout_s=10)
    assert message == "waiting for memory: 2 engines busy (alpha: 3 viewers, beta: sweep)"
    time.sleep(2)
    assert thread.is_alive() and pool.engine_of("beta").pid() == beta_pid  # nothing in use was stopped

    # The sweep ends: beta is idle, so it makes room; alpha, in use, keeps serving.
    pool.release(beta, "sweep")
    thread.join(300)
    assert "endpoint" in result, result
    assert pool.engine_of("beta") is None and pool.engine_of("alpha").pid() == alpha_pid
    assert {v.model for v in pool.views()} == {"alpha", "gamma"}

    # With both in use, a newcomer is refused after its timeout, with the reason.
    with pytest.raises(EngineUnavailable, match=r"beta: refused after .* waiting for memory: 2 engines busy \(alpha: 3 viewers, gamma: 1 viewer\)"):
        pool.acquire(beta, "sweep", timeout_s=3)

    # Nothing in flight: the least recently used engine is the one stopped.
    for _ in range(3):
        pool.release(alpha, "viewer")
    time.sleep(0.05)
    pool.release(gamma, "viewer")  # gamma used last
    with pool.lease(beta, "sweep"):
        assert pool.engine_of("alpha") is None
        assert pool.engine_of("gamma") is not None and pool.engine_of("gamma").status().ready
        assert {v.model for v in pool.views()} == {"beta", "gamma"}


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """A token-classification checkpoint on the tiny backbone (two labels, as a process reward
    model's head): what a scoring engine serves. Its head is untrained: only the serving is tested."""
    import shutil

    import torch
    from transformers import AutoConfig, Qwen2ForTokenClassification

    folder = tmp_path_factory.mktemp("scorer") / "tiny-scorer"
    config = AutoConfig.from_pretrained(REPO_ROOT / "models" / "tiny-r1-base", num_labels=2)
    config.architectures = ["Qwen2ForTokenClassification"]
    torch.manual_seed(0)
    Qwen2ForTokenClassification(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (REPO_ROOT / "models" / "tiny-r1-base" / name).exists():
            shutil.copy(REPO_ROOT / "models" / "tiny-r1-base" / name, folder / name)
    return ModelRegistry(folder.parent).resolve("tiny-scorer")


def test_a_scoring_engine_serves_next_to_a_generating_one(pool, three_models, scorer):
    """Role 'score' (a verifier): the same pool starts vLLM's pooling runner for it, as an engine of its own."""
    import httpx

    with pool.lease(three_models[1], "viewer") as generating, pool.lease(scorer, "request", role="score") as scoring:
        assert generating.base_url != scoring.base_url
        views = {(v.model, v.role): v for v in pool.views()}
        assert views[("tiny-scorer", "score")].state is State.READY and views[(three_models[1].name, "generate")].state is State.READY
        answer = httpx.post(f"{scoring.base_url}/pooling", headers={"Authorization": f"Bearer {scoring.api_key}"},
                            json={"model": "tiny-scorer", "input": "Compute 2 + 3.", "task": "token_classify"}, timeout=60)
        assert answer.status_code == 200, answer.text
        rows = answer.json()["data"][0]["data"]
        assert len(rows) > 1 and all(len(row) == 2 for row in rows)  # one [label 0, label 1] row per token
