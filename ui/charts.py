"""Chart builders: pure functions from a pandas frame to an Altair chart (gr.Plot shows them).

    chart = training_curves_chart(store_training.job_metrics(cur, "job-..."), "nightly")
"""

from __future__ import annotations

import altair as alt
import pandas as pd

# Column of store.training.job_metrics -> panel title, in panel order.
TRAINING_PANELS = {
    "reward": "reward",
    "correct": "accuracy (share correct)",
    "mean_length": "mean length (tokens)",
    "mean_abs_rel_dev": "mean |n - N| / N",
}


def training_curves_chart(metrics: pd.DataFrame, title: str = "") -> alt.Chart:
    """Four small panels (reward, accuracy, mean length, length deviation) per logged step."""
    present = [c for c in TRAINING_PANELS if c in metrics.columns]
    if metrics.empty or not present:
        return _empty(f"{title}: no metrics yet" if title else "no metrics yet")
    long = metrics.melt(id_vars=["step"], value_vars=present, var_name="metric", value_name="value").dropna(subset=["value"])
    long["metric"] = long["metric"].map(TRAINING_PANELS)
    base = alt.Chart(long).encode(
        x=alt.X("step:Q", title="step", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        tooltip=["step:Q", "metric:N", alt.Tooltip("value:Q", format=".4g")],
    )
    panel = (base.mark_line() + base.mark_point(size=24)).properties(width=260, height=150)
    return panel.facet(facet=alt.Facet("metric:N", title=None, sort=list(TRAINING_PANELS.values())), columns=2).resolve_scale(y="independent").properties(title=title)


def _empty(message: str) -> alt.Chart:
    return alt.Chart(pd.DataFrame({"text": [message]})).mark_text(size=14, color="#666").encode(text="text:N").properties(width=540, height=60)
