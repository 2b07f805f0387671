"""Charts of verifier-guided methods (issue 33): a verifier's calibration against the arith oracle,
and which method wins at which difficulty. Drawn from `store.search`'s aggregates.

    calibration_chart(view.data["calibration"])
    difficulty_chart(view.data["difficulty"])
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from ui.charts import _empty, _fit, _frame, _title, series_color


def calibration_chart(rows) -> alt.Chart:
    """Per verifier, its mean step score against the share of those steps the oracle calls right, by score
    decile (point size: steps); on the diagonal, a score means what it says."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return _empty("no scored steps of arith questions under these filters (a prmK, beamWxM or particlesP sweep)")
    diagonal = alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]})).mark_line(color="#999", strokeDash=[4, 3]).encode(x="x:Q", y="y:Q")
    points = alt.Chart(frame).mark_circle(opacity=0.85).encode(
        x=alt.X("mean_score:Q", title="verifier's mean score of the steps (P right)", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".1~f")),
        y=alt.Y("right_share:Q", title="share the oracle calls right", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".1~f")),
        size=alt.Size("steps:Q", title="steps", legend=alt.Legend(orient="bottom", direction="horizontal")),
        color=alt.Color("verifier:N", title="verifier", legend=alt.Legend(orient="bottom", direction="horizontal")),
        tooltip=["verifier:N", "bin:Q", "steps:Q", alt.Tooltip("mean_score:Q", format=".3f"), alt.Tooltip("right_share:Q", format=".3f")])
    line = points.mark_line(opacity=0.6).encode(size=alt.value(1.5), order="bin:Q")
    title = _title("Verifier calibration against the oracle", "steps of the stored searches and scored samples, by score decile; the diagonal is calibrated")
    return _fit((diagonal + line + points).properties(width="container", height=260, title=title))


def difficulty_chart(rows) -> alt.Chart:
    """Accuracy by the number of operations of the arith question, a line per method (colour) and budget (dash):
    which method wins where (Snell et al. 2024)."""
    frame = _frame(rows)
    if frame.empty:
        return _empty("no arith answers under these filters")
    base = alt.Chart(frame).encode(
        x=alt.X("operations:Q", title="operations in the question (difficulty)", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("accuracy:Q", title="accuracy (pass@1)", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".1~f")),
        color=series_color(frame, title="model · method"), detail="budget:O",
        tooltip=["series:N", "budget:Q", "operations:Q", "n:Q", alt.Tooltip("accuracy:Q", format=".1%"),
                 alt.Tooltip("mean_cost_tokens:Q", format=".0f", title="tokens per answer")])
    line = base.mark_line().encode(strokeDash=alt.StrokeDash("budget:O", title="budget N", legend=alt.Legend(orient="top", direction="horizontal", labelLimit=80)))
    title = _title("Accuracy by difficulty", "arith questions by number of operations; a line per method and budget")
    return _fit((line + base.mark_point(filled=True)).properties(width="container", height=260, title=title))
