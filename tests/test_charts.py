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
