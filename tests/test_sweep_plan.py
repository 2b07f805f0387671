"""Sweep planning, keys and the stored-rows summary, without an engine."""

from __future__ import annotations

import datetime as dt

import pytest

from backend.errors import InputError
from backend.evaluation.datasets import Question
from backend.service.sweep_plan import parse_sweep_request, plan_items, sample_seed, sweep_key
from store import queries
from store.summary import run_summary
from store.writer import StoreConfig, StoreWriter


def test_keys_are_stable_distinct_and_share_a_run_prefix():
    a = sweep_key("run", "m", "l1_exact", 64, "q1", 0)
    assert a == sweep_key("run", "m", "l1_exact", 64, "q1", 0)
    others = {sweep_key("run", "m", "l1_exact", 64, "q1", 1), sweep_key("run", "m", "l1_exact", 128, "q1", 0),
              sweep_key("run", "m", "s1", 64, "q1", 0), sweep_key("run", "m2", "l1_exact", 64, "q1", 0),
              sweep_key("run", "m", "l1_exact", 64, "q2", 0)}
    assert a not in others and len(others) == 5
    assert all(k[:12] == a[:12] for k in others)
    assert sweep_key("other", "m", "l1_exact", 64, "q1", 0)[:12] != a[:12]
    assert len(a) == 32 and int(a, 16) >= 0


def test_sample_seeds_depend_on_seed_question_and_sample_only():
    assert sample_seed(0, "q1", 0) == sample_seed(0, "q1", 0)
    assert len({sample_seed(0, "q1", s) for s in range(16)}) == 16
    assert sample_seed(1, "q1", 0) != sample_seed(0, "q1", 0)
    assert all(0 <= sample_seed(s, "q", 3) < 2**31 for s in range(100))


def test_plan_runs_group_after_group_with_samples_side_by_side():
    request = parse_sweep_request(models="m", dataset="arith", controllers="l1_exact,s1", budgets="128,64", samples=3, seed=7)
    questions = [Question("q1", "Compute 1 + 2.", "3"), Question("q2", "Compute 2 + 2.", "4")]
    items = plan_items("r", "m", request, questions)
    assert len(items) == 2 * 2 * 2 * 3
    assert [(i.controller, i.budget) for i in items[:6]] == [("l1_exact", 64)] * 6
    assert [(i.question.qid, i.sample_idx) for i in items[:6]] == [("q1", 0), ("q1", 1), ("q1", 2), ("q2", 0), ("q2", 1), ("q2", 2)]
    assert len({i.gen_id for i in items}) == len(items)
    # The same draw for every method: sample 1 of q2 has one seed across controllers and budgets.
    assert len({i.seed for i in items if (i.question.qid, i.sample_idx) == ("q2", 1)}) == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"samples": 0}, "--samples 0"),
    ({"samples": "two"}, "--samples 'two'"),
    ({"limit": 0}, "--limit 0"),
    ({"limit": "1.5"}, "--limit 1.5"),
    ({"concurrency": 0}, "--concurrency 0"),
    ({"budgets": "64,-1"}, "budget -1"),
    ({"controllers": "l1_exact,magic"}, "unknown controller 'magic'"),
    ({"models": " , "}, "no model given"),
    ({"dataset": " "}, "no dataset given"),
    ({"run": "  "}, None),  # blank means: name it automatically
])
def test_bad_sweep_requests_say_what_to_fix(kwargs, message):
    args = {"models": "m", "dataset": "arith", "controllers": "l1_exact", "budgets": "64", **kwargs}
    if message is None:
        assert parse_sweep_request(**args).run is None
        return
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        parse_sweep_request(**args)


def test_models_are_repeatable_or_comma_separated():
    request = parse_sweep_request(models=["a,b", "c", "a"], dataset="arith", controllers="s1", budgets=[64])
    assert request.models == ("a", "b", "c")


BASE = dt.datetime(2026, 1, 1)


def _row(gen_id, budget, qid, sample, correct, tokens, start, end, controller="l1_exact"):
    return {"gen_id": gen_id, "run_id": "r", "created_at": BASE + dt.timedelta(seconds=end), "model": "m",
            "controller": controller, "budget": budget, "question": qid, "question_id": qid, "sample_idx": sample,
            "correct": correct, "total_tokens": tokens, "thinking_tokens": tokens - 10, "answer_tokens": 9,
            "latency_s": end - start}


def test_summary_numbers_from_stored_rows(tmp_path):
    rows = [
        _row("a", 100, "q1", 0, True, 90, 0, 2), _row("b", 100, "q1", 1, False, 110, 1, 3),
        _row("c", 100, "q2", 0, None, 150, 10, 11), _row("d", 100, "q2", 1, False, 50, 10.5, 12),
        _row("e", 1000, "q1", 0, True, 1600, 0, 4, controller="s1"),
    ]
    with StoreWriter(StoreConfig(tmp_path / "s.duckdb")) as store:
        store.insert_generations(rows).result()
        with store.reader() as cur:
            exact, s1 = run_summary(cur, "r")
            assert run_summary(cur, "missing") == []
            assert queries.stored_gen_ids(cur, "r") == set("abcde")
    assert (exact["controller"], exact["budget"], exact["questions"], exact["samples"], exact["generations"]) == ("l1_exact", 100, 2, 2, 4)
    assert exact["pass_at_1"] == 0.25  # q1: 1/2, q2: 0/2 (ungraded counts as not correct)
    assert exact["pass_at_k"] == 0.5
    assert exact["mean_tokens"] == 100 and exact["mean_thinking_tokens"] == 90 and exact["mean_answer_tokens"] == 9
    assert exact["mean_rel_dev"] == 0.0 and exact["mean_abs_rel_dev"] == 0.3
    assert exact["violation_rate"] == 0.5 and exact["violation_rate_500"] == 0.0
    assert exact["wall_s"] == 5.0  # [0,3] and [10,12]: the gap between them is not counted
    assert exact["tokens_per_s"] == 80.0
    assert (s1["violation_rate"], s1["violation_rate_500"], s1["mean_rel_dev"]) == (1.0, 1.0, 0.6)


def test_rows_count_as_done_only_once_the_store_has_them(tmp_path):
    """What the progress bar shows as stored is acknowledged by the store; a refused batch counts as failed."""
    import asyncio
    from types import SimpleNamespace

    from backend.service.sweep_plan import SweepProgress
    from backend.service.sweep_worker import ModelWorker

    store = StoreWriter(StoreConfig(tmp_path / "closed.duckdb"))
    store.close()  # a real store that refuses every write
    progress = SweepProgress("r", total=3, output_tokens=30)
    worker = ModelWorker(SimpleNamespace(store=store), None, 8, None, None, progress, lambda p: None)
    worker.rows = [{"total_tokens": 10}, {"total_tokens": 20}]
    asyncio.run(worker._flush())
    assert (progress.done, progress.failed, progress.output_tokens, progress.complete) == (0, 2, 0, 0)
    assert progress.last_error.startswith("storing the batch failed: ")


def test_rows_finished_while_a_flush_waits_for_the_store_are_all_stored(tmp_path):
    """The last generation ends while the periodic flush's batch is still queued behind the writer:
    ending the sweep must wait for that batch, not cancel it (which dropped its rows, once in a while)."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from backend.service.sweep_plan import SweepProgress
    from backend.service.sweep_worker import FLUSH_EVERY_S, ModelWorker
    from tests.test_store import block_writer, make_row

    store = StoreWriter(StoreConfig(tmp_path / "slow.duckdb"))
    progress = SweepProgress("r", total=2)
    from backend.controllers.config import ControllerConfig

    worker = ModelWorker(SimpleNamespace(store=store, controller_config=ControllerConfig()), None, 2, None, None, progress, lambda p: None)

    async def generate(item, session):  # stands in for the engine: one fast item, one that ends mid-flush
        if item.gen_id == "slow":
            await asyncio.sleep(FLUSH_EVERY_S + 0.3)
        return [make_row(0 if item.gen_id == "fast" else 1, run_id="r", total_tokens=10)]

    worker._generate = generate
    gate = block_writer(store)  # the flush at FLUSH_EVERY_S waits in the writer's queue...
    threading.Timer(FLUSH_EVERY_S + 1.0, gate.set).start()  # ...until after the slow item has ended
    try:
        asyncio.run(worker.run([SimpleNamespace(gen_id=name, controller="l1_exact") for name in ("fast", "slow")]))
        with store.reader() as cur:
            assert queries.count_generations(cur, "r") == 2
        assert (progress.done, progress.failed) == (2, 0)
    finally:
        gate.set()
        store.close()
