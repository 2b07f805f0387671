"""A comparison through the service: streams live, grades, and stores every generation in DuckDB."""

from __future__ import annotations

import pytest

from backend.errors import InputError
from backend.service.compare import parse_compare_request
from store import queries
from tests.conftest import run

pytestmark = pytest.mark.engine


async def collect(service, request, watch=None):
    """All snapshots; `watch` (controller, budget) also records that column's thinking count as each arrives."""
    snapshots, seen = [], []
    async for snapshot in service.compare_stream(request):
        snapshots.append(snapshot)
        seen += [g.thinking_tokens for g in snapshot.generations if (g.controller, g.budget) == watch]
    return (snapshots, seen) if watch else snapshots


def test_compare_streams_and_stores_every_generation(service, store):
    # s1 at 1024 is forced to think 1024 tokens, long enough (seconds) to be seen streaming.
    request = parse_compare_request("Compute 12 + 7 - 3.", "l1-tiny", "32 128 1024", ["l1_exact", "s1", "hard_cap"], gold="16", seed=11, max_columns=24)
    snapshots, s1_counts = run(collect(service, request, watch=("s1", 1024)))
    final = snapshots[-1]
    assert final.done and len(final.generations) == 9
    # Live: token counters were seen growing before the end.
    assert any(0 < count < 1024 for count in s1_counts), s1_counts
    assert s1_counts == sorted(s1_counts)
    assert all(g.phase == "done" for g in final.generations), [g.error for g in final.generations]
    assert all(g.correct is not None for g in final.generations)  # graded against the gold
    with store.reader() as cur:
        rows = queries.get_generations(cur, final.run_id)
    assert len(rows) == 9
    by_column = {(r["controller"], r["budget"]): r for r in rows}
    for live in final.generations:
        row = by_column[(live.controller, live.budget)]
        assert row["total_tokens"] == live.total_tokens
        assert row["thinking_text"] == live.thinking_text
        assert row["correct"] == live.correct
        assert row["seed"] == 11 and row["gold"] == "16"
        assert row["model"] == "l1-tiny"


def test_a_model_called_by_its_alias_compares_and_is_stored_under_its_name(service, store):
    request = parse_compare_request("Compute 9 - 6.", "l1-tiny-exact", "64", ["l1_exact"], gold="3", seed=3, max_columns=24)
    final = run(collect(service, request))[-1]
    assert final.done and [g.phase for g in final.generations] == ["done"], [g.error for g in final.generations]
    with store.reader() as cur:
        assert [r["model"] for r in queries.get_generations(cur, final.run_id)] == ["l1-tiny"]


def test_budget_over_the_context_writes_nothing(service, store):
    with store.reader() as cur:
        before = queries.count_generations(cur)
    request = parse_compare_request("Compute 1 + 1.", "l1-tiny", "64 5000", ["hard_cap"], max_columns=24)
    with pytest.raises(InputError, match="budget 5000: larger than the model's context"):
        run(collect(service, request))
    with store.reader() as cur:
        assert queries.count_generations(cur) == before


def test_unknown_model_is_refused_before_anything_runs(service):
    request = parse_compare_request("Compute 1 + 1.", "no-such-model", "64", ["hard_cap"], max_columns=24)
    with pytest.raises(InputError, match="unknown model 'no-such-model'"):
        run(collect(service, request))


def test_l1_on_the_l1_model_streams_next_to_s1_on_its_base_in_one_stored_run(service, store):
    """The paper's comparison side by side: two served models, each on its own engine (the pool), each
    method on the model it is meant for; both engines stay up afterwards (memory allows two here)."""
    request = parse_compare_request("Compute 9 - 6.", "l1-tiny", "128 256", ["l1_exact", "s1"], gold="3", seed=0,
                                    other_model="tiny-r1-base", max_columns=24)
    final = run(collect(service, request))[-1]
    assert final.done
    assert sorted((g.model, g.controller, g.budget) for g in final.generations) == [
        ("l1-tiny", "l1_exact", 128), ("l1-tiny", "l1_exact", 256), ("tiny-r1-base", "s1", 128), ("tiny-r1-base", "s1", 256)]
    assert all(g.phase == "done" for g in final.generations), [g.error for g in final.generations]
    stored = service.stored_comparison(final.run_id)
    assert stored["models"] == ["l1-tiny", "tiny-r1-base"]
    assert sorted((g["model"], g["controller"]) for g in stored["generations"]) == sorted((g.model, g.controller) for g in final.generations)
    engines = {v.model: v for v in service.engine_views()}
    assert {m: v.state.value for m, v in engines.items()} == {"l1-tiny": "ready", "tiny-r1-base": "ready"}
    assert not any(v.holders for v in engines.values())  # the comparison gave its leases back

    # Every method on both models, when asked.
    everywhere = parse_compare_request("Compute 9 - 6.", "l1-tiny", "128", ["l1_exact", "s1"], gold="3", seed=0,
                                       other_model="tiny-r1-base", each_on_its_model=False, max_columns=24)
    final = run(collect(service, everywhere))[-1]
    assert sorted((g.model, g.controller) for g in final.generations) == [
        ("l1-tiny", "l1_exact"), ("l1-tiny", "s1"), ("tiny-r1-base", "l1_exact"), ("tiny-r1-base", "s1")]
