"""Chart builders are pure: they build for empty and non-empty frames, and draw what they are given."""

from __future__ import annotations

import pandas as pd
import pytest

from ui.charts import TRAINING_PANELS, training_curves_chart


def test_training_curves_draw_four_panels_per_step():
    frame = pd.DataFrame({"step": [1, 2, 3], "reward": [0.1, 0.2, 0.4], "correct": [0.5, 0.5, 0.75],
                          "mean_length": [120.0, 110.0, 90.0], "mean_abs_rel_dev": [0.4, None, 0.2], "loss": [0.0, 0.0, 0.0]})
    spec = training_curves_chart(frame, "nightly").to_dict()
    panels = spec["concat"]  # a panel per metric, each with its own axis range and tick format
    assert [panel["title"]["text"] for panel in panels] == list(TRAINING_PANELS.values())
    rows = {panel["layer"][0]["encoding"]["y"]["field"]: len(spec["datasets"][panel["data"]["name"]]) for panel in panels}
    assert rows == {"reward": 3, "correct": 3, "mean_length": 3, "mean_abs_rel_dev": 2}  # the missing deviation left out
    assert spec["title"]["text"] == "nightly" and spec["columns"] == 2


def test_a_one_step_curve_gets_room_around_its_point_and_short_tick_labels():
    frame = pd.DataFrame({"step": [7], "reward": [0.707137], "mean_length": [120.25]})
    panels = training_curves_chart(frame, "new").to_dict()["concat"]
    reward, length = (panel["layer"][0]["encoding"] for panel in panels)
    assert reward["y"]["scale"]["domain"] == pytest.approx([0.707137 * 0.9, 0.707137 * 1.1])
    assert reward["y"]["axis"]["format"] == ",.2~f"  # "0.7", "0.75": not "0.707137"
    assert length["y"]["axis"]["format"] == ",.0~f"
    assert reward["x"]["scale"]["domain"] == [6.3, 7.7] and reward["x"]["axis"]["format"] == "d"


def test_tick_formats_follow_the_value_range():
    from ui.charts import _tick_format

    assert _tick_format([0, 1]) == ",.1~f"
    assert _tick_format([60, 400]) == ",.0~f"
    assert _tick_format([0.0301, 0.0342]) == ",.4~f"
    assert _tick_format([0, 0.02], percent=True) == ".1~%"
    assert _tick_format([0, 30], [0, 2]) == ",.1~f"  # panels sharing a format: the narrowest range decides
    assert _tick_format([]) == ",.0~f"


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


def test_every_chart_is_svg_and_facets_only_series_with_counts():
    from ui import charts

    uncounted = {**POINT, "controller": "api_budget", "mean_thinking_tokens": None, "mean_answer_tokens": None}
    thinking = charts.thinking_answer_chart([POINT, uncounted, {**POINT, "controller": "s1"}]).to_dict()
    panels = {row["panel"] for row in next(iter(thinking["datasets"].values()))}
    assert panels == {"l1_exact", "s1"} and thinking["columns"] == 2  # no panel for the series without counts
    built = [thinking, charts.tradeoff_chart([POINT]).to_dict(), charts.vote_chart([]).to_dict(), charts.audit_chart([]).to_dict(),
             charts.training_curves_chart(pd.DataFrame()).to_dict(), charts.keyword_chart([WORDS]).to_dict()]
    assert all(spec["usermeta"]["embedOptions"]["renderer"] == "svg" for spec in built)
    assert charts.tradeoff_chart([POINT]).to_dict()["width"] == "container"


def test_legends_take_the_columns_their_labels_fit():
    from ui import charts

    short = [{**POINT, "controller": f"c{i}"} for i in range(10)]
    long = [{**POINT, "model": "l3lab/L1-Qwen-1.5B-Exact", "controller": f"maj4:thinking_cap_{i}"} for i in range(10)]
    for rows, columns in ((short, 4), (long, 1)):
        legend = charts.cost_chart(rows, []).to_dict()["encoding"]["color"]["legend"]
        assert legend["columns"] == columns and legend["columns"] * (legend["labelLimit"] + charts.ENTRY_PX) <= charts.HALF
