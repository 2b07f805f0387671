"""Claims with their evidence: the adherence audit judges a knob only from enough generations per
budget, and offers only runs it can judge (real DuckDB in a temp dir); the recommender's minimum
is tested with the other cost functions (tests/test_analytics.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from backend.service.audit import FOLLOWS, audit_report
from store.audit import auditable_runs
from store.writer import StoreConfig, StoreWriter

T0 = dt.datetime(2026, 12, 7, 12, 0, 0)


def budget_row(budget: int, n: int, mean_thinking: float, over_share: float, controller: str = "l1_exact") -> dict:
    """One row as store.audit.audit_rows gives it."""
    return {"model": "m", "controller": controller, "budget": budget, "asked": budget, "n": n, "budget_kind": "hint",
            "mean_thinking": mean_thinking, "median_thinking": mean_thinking, "max_thinking": 2 * mean_thinking,
            "over_share": over_share, "empty_share": 0.0, "token_counts": "counted"}


@pytest.mark.parametrize("n, verdict", [(19, "too few"), (20, FOLLOWS)])
def test_the_audit_judges_a_knob_only_from_enough_generations_per_budget(n, verdict):
    rows = [budget_row(64, 25, 80.0, 0.4), budget_row(128, n, 150.0, 0.4)]  # thinking follows N, often over it
    (judged,) = audit_report(rows, min_generations=20)["verdicts"]
    assert judged["verdict"] == verdict
    if verdict == "too few":
        assert judged["why"].startswith("19 generations at N = 128: at least 20 per budget are needed to judge")
    else:
        assert judged["why"] == "40% over N; thinking grows by 1.09 tokens per token of N"


def test_the_audit_verdicts_never_use_the_words_of_what_a_controller_promises():
    """The controller table says what is promised (a hint, a guarantee); the audit what was observed."""
    from backend.service.audit import VERDICTS
    from ui.compare_tab import PROMISES

    promised = {word.split(":")[0] for word in PROMISES.values()} | set(PROMISES)
    promised -= {"none", "no budget"}  # a controller that asks for no budget: the same fact either way, not a verdict on a knob
    assert promised == {"hint", "a hint", "guaranteed", "a guarantee"}
    assert not any(word in verdict.split(", ") or verdict.startswith(word) for word in promised for verdict in VERDICTS)


def test_only_runs_with_enough_generations_per_budget_are_offered_to_the_audit(tmp_path):
    def rows(run: str, per_budget: int, start: int) -> list[dict]:
        return [{"gen_id": f"{run}-{b}-{i}", "run_id": run, "created_at": T0 + dt.timedelta(seconds=start + i), "model": "m",
                 "controller": "l1_exact", "budget": b, "question": f"q{i}", "total_tokens": b, "prompt_tokens": 5,
                 "thinking_tokens": b - 5, "answer_tokens": 5} for b in (64, 128) for i in range(per_budget)]

    with StoreWriter(StoreConfig(tmp_path / "s.duckdb")) as store:
        store.insert_generations(rows("compare-small", 3, 0) + rows("sweep-big", 20, 100) + rows("sweep-bigger", 25, 200)).result()
        with store.reader() as cur:
            assert auditable_runs(cur, 20) == ["sweep-bigger", "sweep-big"]
            assert auditable_runs(cur, 3) == ["sweep-bigger", "sweep-big", "compare-small"]
