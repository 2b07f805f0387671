"""Test-time compute methods on the real engine (vLLM on CPU, the shipped tiny model): the engine's
thinking cap, early exit, parallel samples with a vote, and what a sweep stores of them."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest

from backend.controllers.config import ControllerConfig
from backend.controllers.live import LiveGeneration
from backend.controllers.registry import make_controller
from backend.controllers.session import BudgetError, ModelSession
from backend.errors import InputError
from backend.service.compare import check_supported
from backend.service.sweep_plan import parse_sweep_request
from backend.serving.client import EngineClient
from backend.serving.local import LocalEngine
from backend.serving.sampling import Sampling
from backend.settings import AppSettings
from store.analytics import Filters, settling, vote_curves
from tests.conftest import run

pytestmark = pytest.mark.engine

QUESTION = "Compute 37 + 48 - 12 + 5."
CONFIG = ControllerConfig(answer_max_tokens=48)


async def generate(session_factory, controller: str, budget: int, seed: int = 0, config: ControllerConfig = CONFIG, question: str = QUESTION) -> LiveGeneration:
    live = LiveGeneration(controller=controller, budget=budget)
    async with session_factory() as session:
        await make_controller(controller, config).run(session, question, budget, Sampling(0.6, 0.95, seed), live)
    return live


@pytest.mark.parametrize("budget", [4, 9, 16])
def test_thinking_cap_stops_thinking_at_n_exactly(session_factory, budget):
    # The tiny model thinks for 18 tokens or more on this question: the engine must cut it at N.
    live = run(generate(session_factory, "thinking_cap", budget, seed=budget))
    assert live.error is None
    assert live.thinking_tokens == budget  # the model's </think> is the delimiter, counted apart
    assert live.delimiter_tokens == 1 and live.answer_tokens >= 1
    assert "</think>" not in live.thinking_text


def test_thinking_cap_leaves_a_shorter_thinking_alone(session_factory):
    live = run(generate(session_factory, "thinking_cap", 400, seed=1))
    assert 0 < live.thinking_tokens < 400 and live.delimiter_tokens == 1


def test_early_exit_stops_once_its_probes_agree_and_records_them(session_factory):
    config = replace(CONFIG, early_exit_chunk=4, early_exit_agree=2, early_exit_probe_tokens=16)
    # On this question the tiny model's probes read "1" at 16 and 20 thinking tokens, whatever the seed.
    live = run(generate(session_factory, "early_exit", 400, seed=0, config=config, question="Compute 12 + 7 + 30 - 4 + 9 - 11."))
    assert live.error is None
    assert len(live.probes) >= 2
    positions = [at for at, _ in live.probes]
    assert positions == list(range(4, 4 * len(positions) + 1, 4))  # one probe after each chunk
    assert live.probes[-1][1] is not None and live.probes[-1][1] == live.probes[-2][1]  # the last two agreed
    assert live.thinking_tokens == positions[-1] < 400  # and thinking stopped right there
    assert live.probe_tokens > 0 and live.total_tokens == live.thinking_tokens + live.delimiter_tokens + live.answer_tokens
    assert live.answer_text.startswith("\n\n" + config.s1_answer_prefix)


def test_a_parallel_group_runs_k_samples_at_n_over_k_and_sums_them(session_factory):
    live = run(generate(session_factory, "maj4:l1_exact", 257, seed=11))
    assert len(live.samples) == 4 and {s.inner_budget for s in live.samples} == {64}
    assert all(s.prompt.endswith("Think for 64 tokens.") for s in live.samples)
    assert live.total_tokens == sum(s.total_tokens for s in live.samples)
    assert live.thinking_tokens == sum(s.thinking_tokens for s in live.samples)
    # Common random numbers: sample 0 is the sequential controller's draw at the same seed.
    single = run(generate(session_factory, "l1_exact", 64, seed=11))
    assert (live.samples[0].thinking_text, live.samples[0].answer_text) == (single.thinking_text, single.answer_text)
    assert make_controller("maj4:l1_exact", CONFIG).budget_kind == "hint" and make_controller("maj4:hard_cap", CONFIG).budget_kind == "guaranteed"


def test_a_budget_smaller_than_k_is_refused(session_factory):
    with pytest.raises(BudgetError, match="budget 3: maj4:l1_exact splits it over 4 samples; give it at least 4 tokens"):
        run(generate(session_factory, "maj4:l1_exact", 3))


def test_a_sweep_stores_every_sample_and_its_vote_recomputes_from_the_rows(service, store):
    request = parse_sweep_request(models="l1-tiny", dataset="arith", controllers="maj4:l1_exact,best4:l1_exact,early_exit",
                                  budgets="128,256", samples=2, limit=6, seed=3, run="test-time-sweep")
    outcome = asyncio.run(service.sweep(request))
    assert outcome.progress.failed == 0 and outcome.progress.complete == 3 * 2 * 6 * 2
    by_key = {(g["controller"], g["budget"]): g for g in outcome.summary}
    for budget in (128, 256):
        parallel = by_key[("maj4:l1_exact", budget)]
        assert (parallel["k"], parallel["inner"], parallel["generations"]) == (4, "l1_exact", 4 * 6 * 2)
        assert by_key[("early_exit", budget)]["k"] == 1 and by_key[("early_exit", budget)]["mean_probe_tokens"] >= 0
    with store.reader() as cur:
        curves = vote_curves(cur, Filters(runs=("test-time-sweep",), controllers=("maj4:l1_exact",)))
        rows = cur.execute("SELECT group_id, count(*), sum(chosen::INTEGER), sum(total_tokens) FROM generations "
                           "WHERE run_id = 'test-time-sweep' AND group_id IS NOT NULL GROUP BY group_id").fetchall()
        settled = settling(cur, Filters(runs=("test-time-sweep",)))
    assert len(rows) == 2 * 2 * 6 * 2 and all(n == 4 and chosen <= 1 for _, n, chosen, _ in rows)
    for budget in (128, 256):
        at_k = {c["k"]: c for c in curves if c["budget"] == budget}
        assert sorted(at_k) == [1, 2, 3, 4] and at_k[4]["groups"] == 12
        # maj@K recomputed in SQL from the stored classes equals what the sweep's vote reported.
        assert at_k[4]["accuracy"] == pytest.approx(by_key[("maj4:l1_exact", budget)]["pass_at_1"], abs=1e-6)  # the summary rounds to 6 digits
    assert {s["controller"] for s in settled} <= {"early_exit"}


def test_a_controller_the_engine_cannot_run_is_refused_with_its_reason(tmp_path, tiny_spec):
    """A second real engine, started without a reasoning parser: vLLM refuses thinking budgets there."""
    settings = AppSettings(engine_kv_cache_gib=1, engine_max_model_len=1024, engine_reasoning_parser="")
    engine = LocalEngine(settings.engine_config(), log_dir=tmp_path, base_env=os.environ)
    engine.start(tiny_spec)
    try:
        endpoint = engine.wait_ready(tiny_spec.name, timeout_s=300)

        async def check():
            async with EngineClient(endpoint, timeout_s=120) as client:
                session = await ModelSession.open(client)
                with pytest.raises(InputError, match=r"thinking_cap: the engine does not enforce a thinking budget .*reasoning.parser"):
                    await check_supported(session, ["l1_exact", "thinking_cap"], CONFIG)
                with pytest.raises(InputError, match=r"maj4:thinking_cap: the engine does not enforce"):
                    await check_supported(session, ["maj4:thinking_cap"], CONFIG)
                live = LiveGeneration("thinking_cap", 32)
                with pytest.raises(BudgetError, match="thinking_cap: the engine does not enforce a thinking budget"):
                    await make_controller("thinking_cap", CONFIG).run(session, QUESTION, 32, Sampling(seed=0), live)
                await check_supported(session, ["l1_exact", "s1", "early_exit", "maj4:no_thinking"], CONFIG)  # the others run

        run(check())
    finally:
        engine.stop()


def test_a_comparison_shows_each_group_and_stores_each_sample(service, store):
    from backend.service.compare import parse_compare_request
    from store import queries

    request = parse_compare_request("Compute 12 + 7 - 3.", "l1-tiny", "64", ["maj2:l1_exact", "best2:hard_cap", "thinking_cap"], gold="16",
                                    seed=5, max_columns=24)
    result = run(service.compare(request))
    by_controller = {g["controller"]: g for g in result["generations"]}
    group = by_controller["maj2:l1_exact"]
    assert group["phase"] == "done" and group["budget_kind"] == "hint" and len(group["samples"]) == 2
    assert group["total_tokens"] == sum(s["total_tokens"] for s in group["samples"])
    assert sum(bool(s["chosen"]) for s in group["samples"]) <= 1
    assert by_controller["best2:hard_cap"]["budget_kind"] == "guaranteed" and by_controller["best2:hard_cap"]["total_tokens"] <= 64
    assert by_controller["thinking_cap"]["thinking_tokens"] <= 64
    with store.reader() as cur:
        rows = queries.get_generations(cur, result["run_id"])
    assert len(rows) == 2 + 2 + 1
    stored = [r for r in rows if r["controller"] == "maj2:l1_exact"]
    assert {r["group_idx"] for r in stored} == {0, 1} and len({r["group_id"] for r in stored}) == 1
    assert {r["inner_budget"] for r in stored} == {32} and {r["budget"] for r in stored} == {64}
