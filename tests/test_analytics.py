"""Analytics aggregates against numbers worked out by hand on a small fixed set of rows (real DuckDB
in a temp dir), keyword counting on known strings, exports read back, cost and the Pareto frontier."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow.parquet as pq
import pytest

from backend.evaluation.costs import Price, cost_per_1k_questions, pareto_frontier, priced, recommend, recommendation_text
from backend.evaluation.keywords import KEYWORD_CATEGORIES
from store import analytics
from store.analytics import Filters
from store.writer import StoreConfig, StoreWriter

T0 = dt.datetime(2026, 11, 27, 12, 0, 0)


def row(i, model, controller, budget, total, correct, run="r1", dataset="arith", text="", prompt=10):
    return {"gen_id": f"g{i:03d}", "run_id": run, "created_at": T0 + dt.timedelta(seconds=i), "model": model, "controller": controller,
            "budget": budget, "question": f"q{i}", "dataset": dataset, "correct": correct, "total_tokens": total, "prompt_tokens": prompt,
            "thinking_tokens": total - 10, "answer_tokens": 10, "full_text": text}


ROWS = [
    row(1, "A", "l1_exact", 100, 90, True, text="Wait, let me check. But wait: so the answer is 3."),
    row(2, "A", "l1_exact", 100, 100, True, text="Waiting is not a keyword; a double-check is one."),
    row(3, "A", "l1_exact", 100, 110, False),
    row(4, "A", "l1_exact", 100, 140, None),  # not graded: counts as wrong
    row(5, "A", "s1", 100, 100, False),
    row(6, "A", "s1", 100, 100, False),
    row(7, "B", "l1_exact", 200, 150, True, dataset=None, prompt=20),  # a Compare-tab question
    row(8, "A", "l1_exact", 50, 60, True, run="r2"),
]


@pytest.fixture(scope="module")
def cur(tmp_path_factory):
    with StoreWriter(StoreConfig(tmp_path_factory.mktemp("a") / "a.duckdb")) as store:
        assert store.insert_generations(ROWS).result() == len(ROWS)
        with store.reader() as cursor:
            yield cursor


def wilson(p, n, z=1.959964):
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return center - half, center + half


def by_key(rows):
    return {(r["model"], r["controller"], r["budget"]): r for r in rows}


def test_tradeoff_accuracy_band_and_tokens(cur):
    points = by_key(analytics.tradeoff(cur, Filters()))
    assert list(points) == [("A", "l1_exact", 50), ("A", "l1_exact", 100), ("A", "s1", 100), ("B", "l1_exact", 200)]
    exact = points[("A", "l1_exact", 100)]
    assert (exact["n"], exact["accuracy"], exact["mean_tokens"], exact["mean_prompt_tokens"]) == (4, 0.5, 110.0, 10.0)
    assert (exact["accuracy_low"], exact["accuracy_high"]) == pytest.approx(wilson(0.5, 4))
    assert (exact["mean_thinking_tokens"], exact["mean_answer_tokens"], exact["thinking_to_answer"]) == (100.0, 10.0, 10.0)
    s1 = points[("A", "s1", 100)]
    assert s1["accuracy"] == 0.0 and s1["accuracy_low"] == pytest.approx(0.0, abs=1e-12)
    assert s1["accuracy_high"] == pytest.approx(wilson(0.0, 2)[1])


def test_adherence_quantiles_deviation_and_violations(cur):
    exact = by_key(analytics.adherence(cur, Filters()))[("A", "l1_exact", 100)]
    # lengths 90, 100, 110, 140 against N = 100
    assert [exact[k] for k in ("min_tokens", "q1_tokens", "median_tokens", "q3_tokens", "max_tokens")] == [90, 97.5, 105, 117.5, 140]
    assert exact["mean_abs_rel_dev"] == pytest.approx((10 + 0 + 10 + 40) / 4 / 100)
    assert exact["mean_rel_dev"] == pytest.approx((-10 + 0 + 10 + 40) / 4 / 100)
    assert exact["violation_rate"] == 0.5


def test_filters_narrow_every_view_and_an_empty_match_gives_no_rows(cur):
    only = Filters(models=("A",), controllers=("l1_exact",), runs=("r1",), budget_min=60, budget_max=100)
    assert list(by_key(analytics.tradeoff(cur, only))) == [("A", "l1_exact", 100)]
    assert list(by_key(analytics.tradeoff(cur, Filters(datasets=(analytics.NO_DATASET,))))) == [("B", "l1_exact", 200)]
    nothing = Filters(budget_min=300)  # a budget range with no rows
    assert analytics.tradeoff(cur, nothing) == analytics.adherence(cur, nothing) == []
    assert analytics.keyword_rates(cur, nothing, KEYWORD_CATEGORIES) == []
    with pytest.raises(ValueError, match="the minimum is above the maximum"):
        Filters(budget_min=5, budget_max=4)
    options = analytics.filter_options(cur)
    assert options["models"] == ["A", "B"] and options["budgets"] == [50, 100, 200] and options["datasets"] == ["(ad hoc)", "arith"]


def test_keywords_count_whole_words_in_any_case(cur):
    categories = {"check": ("wait", "but", "check", "double-check"), "conclude": ("so", "the answer is"), "setup": ("we need",)}
    rates = {(r["model"], r["controller"], r["budget"], r["category"]): r for r in analytics.keyword_rates(cur, Filters(), categories)}
    check = rates[("A", "l1_exact", 100, "check")]
    # "Wait", "check", "But", "wait" in row 1; in row 2 "Waiting" is not a match and "double-check" counts once.
    assert check["matches"] == 5 and check["tokens"] == 440
    assert check["per_1k_tokens"] == pytest.approx(1000 * 5 / 440)
    assert rates[("A", "l1_exact", 100, "conclude")]["matches"] == 2  # "so", "the answer is"
    assert rates[("A", "s1", 100, "check")]["matches"] == 0
    assert analytics.keyword_pattern(["We need", "so"]) == r"(?i)\b(?:we\s+need|so)\b"
    with pytest.raises(ValueError, match="at least one word"):
        analytics.keyword_pattern([" "])


def test_export_writes_exactly_the_filtered_rows(cur, tmp_path):
    filters = Filters(models=("A",), runs=("r1",))
    count = analytics.export_generations(cur, filters, tmp_path / "out.parquet", "parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert count == table.num_rows == 6
    assert sorted(table.column("gen_id").to_pylist()) == [f"g{i:03d}" for i in range(1, 7)]
    exported = {r["gen_id"]: (r["controller"], r["budget"], r["total_tokens"], r["correct"], r["full_text"]) for r in table.to_pylist()}
    expected = {r["gen_id"]: (r["controller"], r["budget"], r["total_tokens"], r["correct"], r["full_text"])
                for r in ROWS if r["model"] == "A" and r["run_id"] == "r1"}
    assert exported == expected
    assert analytics.export_generations(cur, filters, tmp_path / "out.csv", "csv") == 6
    assert len((tmp_path / "out.csv").read_text().strip().splitlines()) == 7  # header + rows
    with pytest.raises(ValueError, match="choose csv or parquet"):
        analytics.export_generations(cur, filters, tmp_path / "out.xls", "xls")


def test_cost_frontier_and_recommendation():
    assert cost_per_1k_questions(100, 1000, Price(0.5, 2.0)) == pytest.approx(1000 * (100 * 0.5 + 1000 * 2.0) / 1e6)
    points = priced([
        {"model": "A", "controller": "l1_exact", "budget": 64, "n": 10, "accuracy": 0.40, "mean_prompt_tokens": 50, "mean_tokens": 60},
        {"model": "A", "controller": "l1_exact", "budget": 256, "n": 10, "accuracy": 0.80, "mean_prompt_tokens": 50, "mean_tokens": 250},
        {"model": "A", "controller": "s1", "budget": 256, "n": 10, "accuracy": 0.70, "mean_prompt_tokens": 50, "mean_tokens": 260},
        {"model": "B", "controller": "l1_max", "budget": 128, "n": 10, "accuracy": 0.85, "mean_prompt_tokens": 50, "mean_tokens": 120},
    ], {"B": Price(1.0, 4.0)}, default=Price(0.5, 2.0))
    cost = {(p["model"], p["budget"], p["controller"]): p["cost_per_1k"] for p in points}
    assert cost[("A", 64, "l1_exact")] == pytest.approx(0.145) and cost[("B", 128, "l1_max")] == pytest.approx(0.53)
    frontier = pareto_frontier(points)
    assert [(p["model"], p["budget"]) for p in frontier] == [("A", 64), ("A", 256), ("B", 128)]  # s1 at 0.545 for 0.70 is beaten
    best = recommend(points, 0.75)
    assert (best["model"], best["controller"], best["budget"]) == ("A", "l1_exact", 256)
    assert "$0.5250 per 1,000 questions" in recommendation_text(best, 0.75)
    assert recommend(points, 0.9) is None
    assert "best judged reaches 85.0%" in recommendation_text(None, 0.9, points)
    with pytest.raises(ValueError, match="between 0 and 1"):
        recommend(points, 80)


def test_the_recommender_judges_only_settings_with_enough_answers_and_shows_its_interval():
    points = priced([
        {"model": "A", "controller": "l1_exact", "budget": 64, "n": 2, "accuracy": 1.0, "mean_prompt_tokens": 50, "mean_tokens": 60},
        {"model": "A", "controller": "l1_exact", "budget": 256, "n": 29, "accuracy": 0.9, "mean_prompt_tokens": 50, "mean_tokens": 250},
    ], {}, default=Price(0.5, 2.0))
    # Below the minimum: nothing is recommended, and the text says how many answers there are.
    assert recommend(points, 0.8, min_answers=30) is None
    assert recommendation_text(None, 0.8, points, min_answers=30) == (
        "Not enough answers to recommend a setting: the most any setting has is 29, and at least 30 are needed (sweep more questions or samples).")
    # At the minimum: judged, with its count and 95% interval; the 2-answer setting at 100% is not.
    points.append(priced([{"model": "A", "controller": "l1_exact", "budget": 128, "n": 30, "accuracy": 0.9, "mean_prompt_tokens": 50,
                           "mean_tokens": 130}], {}, default=Price(0.5, 2.0))[0])
    best = recommend(points, 0.8, min_answers=30)
    assert best["budget"] == 128
    text = recommendation_text(best, 0.8, points, min_answers=30)
    assert "90.0% accuracy over 30 answers (95% interval 74.4%-96.5%)" in text
    assert "(2 settings with fewer than 30 answers not judged)" in text


def test_price_table_rows_parse_with_defaults_and_refuse_nonsense():
    from backend.evaluation.costs import parse_prices

    default = Price(0.5, 2.0)
    prices = parse_prices([["A", 1, "3.5"], ["B", "", None], ["", 9, 9], ["C", float("nan"), 0]], default)
    assert prices == {"A": Price(1.0, 3.5), "B": default, "C": Price(0.5, 0.0)}
    with pytest.raises(ValueError, match="price of A"):
        parse_prices([["A", "cheap", 1]], default)
    with pytest.raises(ValueError, match="price of A"):
        parse_prices([["A", -1, 1]], default)


def test_counts_stored_with_a_row_match_the_sql_count_and_are_used_when_current(tmp_path):
    from backend.evaluation.keywords import KEYWORDS_VERSION, keyword_counts

    texts = ["Wait, wait. Let me check: so we need 5. Therefore 5.", "Maybe try another way, or perhaps not. Hence 7.", "", "WAIT but HOWEVER"]
    rows = [{**row(i, "A", "l1_exact", 100, 40, True, text=t), "keyword_counts": keyword_counts(t), "keywords_version": KEYWORDS_VERSION}
            for i, t in enumerate(texts)]
    stale = {**row(9, "A", "l1_exact", 100, 40, True, text="so so so"), "keyword_counts": [50, 50, 50, 50], "keywords_version": "older-lists"}
    with StoreWriter(StoreConfig(tmp_path / "k.duckdb")) as store:
        store.insert_generations([*rows, stale]).result()
        with store.reader() as cur:
            stored = analytics.keyword_rates(cur, Filters(), KEYWORD_CATEGORIES, KEYWORDS_VERSION)
            scanned = analytics.keyword_rates(cur, Filters(), KEYWORD_CATEGORIES)
    assert [r["matches"] for r in stored] == [r["matches"] for r in scanned]  # Python and SQL count alike
    conclusion = next(r for r in stored if r["category"] == "conclusion drawing")
    assert conclusion["matches"] == 2 + 1 + 3  # "so", "therefore"; "hence"; the stale row recounted: "so" x 3
    assert keyword_counts("Wait, wait. Let me check") == [3, 0, 1, 0]


def test_stored_counts_are_what_the_view_sums_when_the_lists_match(tmp_path):
    from backend.evaluation.keywords import KEYWORDS_VERSION

    fake = {**row(1, "A", "s1", 64, 10, False, text="no keywords here"), "keyword_counts": [7, 0, 0, 0], "keywords_version": KEYWORDS_VERSION}
    with StoreWriter(StoreConfig(tmp_path / "f.duckdb")) as store:
        store.insert_generations([fake]).result()
        with store.reader() as cur:
            rates = analytics.keyword_rates(cur, Filters(), KEYWORD_CATEGORIES, KEYWORDS_VERSION)
    assert rates[0]["matches"] == 7  # the stored number, not a scan of the text


def test_an_answer_is_billed_for_its_probes_and_its_verifiers_reads():
    from backend.evaluation.costs import billed_tokens

    generation = {"prompt_tokens": 40, "total_tokens": 500, "probe_tokens": 30, "verifier_tokens": 2000}
    assert billed_tokens(generation) == (2040.0, 530.0)  # a verifier reads: input; probes are generated: output
    point = {"mean_prompt_tokens": 40.0, "mean_tokens": 500.0, "mean_cost_tokens": 530.0, "mean_verifier_tokens": None}
    assert billed_tokens(point, "mean_") == (40.0, 530.0)
    (costed,) = priced([{**point, "model": "m", "mean_verifier_tokens": 1000.0}], {}, Price(1.0, 2.0))
    assert costed["cost_per_1k"] == pytest.approx(1000 * (1040 * 1.0 + 530 * 2.0) / 1e6)
