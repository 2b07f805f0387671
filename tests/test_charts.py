"""Chart builders are pure: they build for empty and non-empty frames, and draw what they are given."""

from __future__ import annotations

import pandas as pd

from ui.charts import TRAINING_PANELS, training_curves_chart


def test_training_curves_draw_four_panels_per_step():
    frame = pd.DataFrame({"step": [1, 2, 3], "reward": [0.1, 0.2, 0.4], "correct": [0.5, 0.5, 0.75],
                          "mean_length": [120.0, 110.0, 90.0], "mean_abs_rel_dev": [0.4, None, 0.2], "loss": [0.0, 0.0, 0.0]})
    spec = training_curves_chart(frame, "nightly").to_dict()
    values = next(iter(spec["datasets"].values()))
    assert {v["metric"] for v in values} == set(TRAINING_PANELS.values())
    assert len(values) == 11  # 4 panels x 3 steps, less the one missing deviation
    assert spec["facet"]["field"] == "metric" and spec["resolve"]["scale"]["y"] == "independent"
    assert spec["title"] == "nightly"


def test_training_curves_say_so_when_there_is_nothing_yet():
    for frame in (pd.DataFrame(), pd.DataFrame({"step": [], "reward": []})):
        spec = training_curves_chart(frame, "fresh").to_dict()
        assert next(iter(spec["datasets"].values())) == [{"text": "fresh: no metrics yet"}]


POINT = {"model": "A", "controller": "l1_exact", "budget": 64, "n": 3, "accuracy": 0.5, "accuracy_low": 0.2, "accuracy_high": 0.8,
         "mean_tokens": 60.0, "mean_prompt_tokens": 10.0, "mean_thinking_tokens": 50.0, "mean_answer_tokens": 10.0, "cost_per_1k": 0.1}
SPREAD = {"model": "A", "controller": "l1_exact", "budget": 64, "n": 3, "min_tokens": 50, "q1_tokens": 55.0, "median_tokens": 60.0,
          "q3_tokens": 65.0, "max_tokens": 70, "mean_abs_rel_dev": 0.1, "violation_rate": 0.3}
WORDS = {"model": "A", "controller": "l1_exact", "budget": 64, "category": "conclusion drawing", "matches": 3, "tokens": 100, "per_1k_tokens": 30.0}


def test_analytics_charts_build_for_data_and_for_nothing():
    from ui import charts

    built = {
        "tradeoff": charts.tradeoff_chart([POINT], log_tokens=True),
        "cost": charts.cost_chart([POINT, {**POINT, "budget": 128, "cost_per_1k": 0.2, "accuracy": 0.7}], [POINT]),
        "adherence": charts.adherence_chart([SPREAD]),
        "keywords": charts.keyword_chart([WORDS]),
        "thinking": charts.thinking_answer_chart([POINT]),
    }
    tradeoff = built["tradeoff"].to_dict()
    assert tradeoff["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"
    assert any(row.get("series") == "A · l1_exact" for rows in tradeoff["datasets"].values() for row in rows)
    assert len(built["cost"].to_dict()["layer"]) == 2  # the frontier line under the points
    for name, chart in built.items():
        assert chart.to_dict()["config"]["legend"]["orient"] == "bottom", name
    for build in (charts.tradeoff_chart, charts.adherence_chart, charts.keyword_chart, charts.thinking_answer_chart):
        spec = build([]).to_dict()
        assert next(iter(spec["datasets"].values())) == [{"text": "no generations under these filters"}]
    assert charts.cost_chart([], []).to_dict()["mark"]["type"] == "text"
