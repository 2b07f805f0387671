"""Chart builders: pure functions from a pandas frame to an Altair chart (gr.Plot shows them).

    chart = training_curves_chart(store_training.job_metrics(cur, "job-..."), "nightly")
"""

from __future__ import annotations

import hashlib

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


# --- Analytics views: each takes the rows of one store.analytics query (aggregates, not generations).

WIDE = 470  # pixels: two of these sit side by side on a laptop screen

def series_name(row) -> str:
    return f"{row['model']} · {row['controller']}"


# Each series keeps its colour in every chart (and every session): picked by a hash of its name.
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac", "#eeca3b",
           "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#ff7f0e")


def series_color(frame: pd.DataFrame, field: str = "series", title: str | None = "model · controller", **legend) -> alt.Color:
    """A colour encoding whose colours depend on the series' names only, not on their order in this chart's rows."""
    names = sorted(frame[field].unique()) if not frame.empty else []
    taken: set[int] = set()
    colours = []
    for name in names:
        slot = int.from_bytes(hashlib.sha1(str(name).encode()).digest()[:4], "big") % len(PALETTE)
        while slot in taken and len(taken) < len(PALETTE):
            slot = (slot + 1) % len(PALETTE)  # another series has it in this chart: the next free one
        taken.add(slot)
        colours.append(PALETTE[slot])
    return alt.Color(f"{field}:N", title=title, scale=alt.Scale(domain=names, range=colours or list(PALETTE)), **legend)


def _frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    if not frame.empty:
        frame["series"] = [series_name(r) for r in frame.to_dict("records")]
    return frame


OUTSIDE_RANGE = "outside the trained range"


def tradeoff_chart(points, log_tokens: bool = False) -> alt.Chart:
    """Accuracy (pass@1, Wilson 95% band) against the mean tokens generated per answer (probe
    tokens included): a line per model x method, a point per budget (the L1 paper's Figures 1-2),
    sequential methods solid, parallel ones (majK / bestK) dashed, probed points (early exit) as
    triangles: every method at equal tokens. A point whose generations were asked for a budget
    outside the model's trained range (``outside_trained_range``) is faded and ringed."""
    frame = _frame(points)
    if frame.empty:
        return _empty("no generations under these filters")
    if "mean_cost_tokens" not in frame:
        frame["mean_cost_tokens"] = frame["mean_tokens"]
    for column in ("outside_trained_range", "trained_range_note"):  # absent: no range known, nothing marked
        if column not in frame:
            frame[column] = None
    frame["shape"] = ["parallel" if (s or 1) > 1 else "sequential" for s in frame.get("samples", pd.Series([1] * len(frame)))]
    frame["probed"] = ["probe tokens included" if p else "no probes" for p in frame.get("mean_probe_tokens", pd.Series([0] * len(frame))).fillna(0)]
    x = alt.X("mean_cost_tokens:Q", title="mean tokens generated per answer", scale=alt.Scale(type="log" if log_tokens else "linear", zero=False))
    base = alt.Chart(frame).encode(x=x, color=series_color(frame, title="model · method"))
    band = base.mark_area(opacity=0.12).encode(y=alt.Y("accuracy_low:Q", title="accuracy (pass@1)", scale=alt.Scale(domain=[0, 1])), y2="accuracy_high:Q")
    line = base.mark_line().encode(y="accuracy:Q", order="budget:Q",
                                   strokeDash=alt.StrokeDash("shape:N", title="method", scale=alt.Scale(domain=["sequential", "parallel"], range=[[1, 0], [6, 3]])))
    dots = base.mark_point(filled=True, size=60).encode(
        y="accuracy:Q", shape=alt.Shape("probed:N", title=None, scale=alt.Scale(domain=["no probes", "probe tokens included"], range=["circle", "triangle-up"])),
        opacity=alt.condition("isValid(datum.outside_trained_range)", alt.value(0.35), alt.value(1.0)),
        tooltip=["model:N", "controller:N", "budget:Q", "n:Q", "shape:N", alt.Tooltip("accuracy:Q", format=".1%"),
                 alt.Tooltip("accuracy_low:Q", format=".1%"), alt.Tooltip("accuracy_high:Q", format=".1%"),
                 alt.Tooltip("mean_cost_tokens:Q", format=".1f", title="tokens per answer"), alt.Tooltip("mean_probe_tokens:Q", format=".1f", title="of which probes"),
                 alt.Tooltip("trained_range_note:N", title=OUTSIDE_RANGE)])
    layers = band + line + dots
    if frame["outside_trained_range"].notna().any():
        layers += _outside_range_rings(base)
    return _fit(layers.properties(width=WIDE, height=300, title="Accuracy at equal tokens (dashed: parallel samples; ringed: outside the trained range)"))


def _outside_range_rings(base: alt.Chart) -> alt.Chart:
    """A hollow ring around each point asked for a budget outside its model's trained range, with its legend entry and reason."""
    return base.transform_filter("isValid(datum.outside_trained_range)").transform_calculate(trained_range=f"'{OUTSIDE_RANGE}'").mark_point(
        filled=False, size=220, strokeWidth=1.5).encode(
        y="accuracy:Q", stroke=alt.Stroke("trained_range:N", title=None, scale=alt.Scale(domain=[OUTSIDE_RANGE], range=["#555"])),
        tooltip=["model:N", "controller:N", "budget:Q", alt.Tooltip("trained_range_note:N", title=OUTSIDE_RANGE)])


def vote_chart(rows) -> alt.Chart:
    """Majority-vote accuracy over a group's first k samples, k = 1..K, a line per parallel method
    and budget (recomputed from the stored samples)."""
    frame = _frame(rows)
    if frame.empty:
        return _empty("no parallel methods (majK / bestK) under these filters")
    frame["line"] = [f"{s} · N={b}" for s, b in zip(frame["series"], frame["budget"])]
    base = alt.Chart(frame).encode(
        x=alt.X("k:Q", title="samples voting (k)", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("accuracy:Q", title="maj@k accuracy", scale=alt.Scale(domain=[0, 1])), color=series_color(frame, "line", "method · budget"),
        tooltip=["series:N", "budget:Q", "k:Q", "groups:Q", alt.Tooltip("accuracy:Q", format=".1%")])
    return _fit((base.mark_line() + base.mark_point(filled=True)).properties(width=WIDE, height=260, title="Vote curves: maj@k from stored samples"))


def settling_chart(rows) -> alt.Chart:
    """Early exit: the share of thinking spent after the answer had settled on the final one, per budget."""
    frame = _frame(rows)
    if frame.empty:
        return _empty("no probed generations (early_exit) under these filters")
    base = alt.Chart(frame).encode(
        x=alt.X("budget:O", title="budget N"), xOffset="series:N", y=alt.Y("after_settled_share:Q", title="share of thinking after it settled", axis=alt.Axis(format="%")),
        color=series_color(frame),
        tooltip=["series:N", "budget:Q", "n:Q", alt.Tooltip("after_settled_share:Q", format=".1%"), alt.Tooltip("settled_rate:Q", format=".1%", title="settled"),
                 alt.Tooltip("stopped_early_rate:Q", format=".1%", title="stopped before N"), alt.Tooltip("mean_probe_tokens:Q", format=".1f")])
    return _fit(base.mark_bar().properties(width=WIDE, height=260, title="Where the answer settled (thinking spent after)"))


def adherence_chart(rows) -> alt.Chart:
    """Box plots of output length per budget (whiskers min-max, box q1-q3, median tick), one per
    model x controller side by side, with the budget marked in red (the paper's Figure 4)."""
    frame = _frame(rows)
    if frame.empty:
        return _empty("no generations under these filters")
    base = alt.Chart(frame).encode(x=alt.X("budget:O", title="budget N (tokens)"), xOffset="series:N", color=series_color(frame))
    whisker = base.mark_rule().encode(y=alt.Y("min_tokens:Q", title="output tokens"), y2="max_tokens:Q")
    box = base.mark_bar(size=14, opacity=0.6).encode(
        y="q1_tokens:Q", y2="q3_tokens:Q",
        tooltip=["series:N", "budget:Q", "n:Q", "min_tokens:Q", "q1_tokens:Q", "median_tokens:Q", "q3_tokens:Q", "max_tokens:Q",
                 alt.Tooltip("mean_abs_rel_dev:Q", format=".1%", title="mean |n-N|/N"), alt.Tooltip("violation_rate:Q", format=".1%", title="share n > N")])
    median = base.mark_tick(color="black", size=14, thickness=2).encode(y="median_tokens:Q")
    target = base.mark_tick(color="#e45756", thickness=3, size=40).encode(y="budget:Q", xOffset=alt.value(0), color=alt.value("#e45756"))
    kinds = frame["budget_kind"].dropna().nunique() if "budget_kind" in frame else 0
    layers = (whisker + box + median + target).properties(width=WIDE // 2 if kinds > 1 else WIDE, height=300)
    if kinds:
        # Hint budgets (the model may overrun) and guaranteed ones (the controller enforces them) apart.
        frame["budget_kind"] = frame["budget_kind"].fillna("unknown")
        layers = layers.facet(column=alt.Column("budget_kind:N", title="budget")).resolve_scale(x="independent")
    return _fit(layers.properties(title="Output length per budget (red: the budget)"))


def keyword_chart(rows) -> alt.Chart:
    """Keyword matches per 1,000 output tokens by budget, a panel per category (the paper's Figure 5)."""
    frame = _frame(rows)
    if frame.empty:
        return _empty("no generations under these filters")
    base = alt.Chart(frame).encode(
        x=alt.X("budget:Q", title="budget N"), y=alt.Y("per_1k_tokens:Q", title="per 1,000 tokens"), color=series_color(frame),
        tooltip=["series:N", "category:N", "budget:Q", "matches:Q", alt.Tooltip("per_1k_tokens:Q", format=".2f")])
    panel = (base.mark_line() + base.mark_point(filled=True)).properties(width=220, height=150)
    return _fit(panel.facet(facet=alt.Facet("category:N", title=None), columns=4).resolve_scale(y="independent").properties(title="Keywords by budget"))


def thinking_answer_chart(points) -> alt.Chart:
    """Mean thinking and answer tokens per budget, stacked, a panel per model x controller."""
    frame = _frame(points)
    if frame.empty:
        return _empty("no generations under these filters")
    long = frame.melt(id_vars=["series", "budget"], value_vars=["mean_thinking_tokens", "mean_answer_tokens"], var_name="part", value_name="tokens")
    long["part"] = long["part"].map({"mean_thinking_tokens": "thinking", "mean_answer_tokens": "answer"})
    bars = alt.Chart(long).mark_bar().encode(
        x=alt.X("budget:O", title="budget N"), y=alt.Y("tokens:Q", title="mean tokens", stack="zero"),
        color=alt.Color("part:N", scale=alt.Scale(domain=["thinking", "answer"], range=["#4c78a8", "#54a24b"])),
        tooltip=["series:N", "budget:Q", "part:N", alt.Tooltip("tokens:Q", format=".1f")]).properties(width=130, height=150)
    return _fit(bars.facet(facet=alt.Facet("series:N", title=None), columns=3).properties(title="Thinking and answer tokens"))


def cost_chart(points, frontier) -> alt.Chart:
    """Accuracy against dollars per 1,000 questions, every setting a point, the Pareto frontier a line."""
    frame = _frame(points)
    if frame.empty:
        return _empty("no generations under these filters")
    dots = alt.Chart(frame).mark_point(filled=True, size=70).encode(
        x=alt.X("cost_per_1k:Q", title="$ per 1,000 questions"), y=alt.Y("accuracy:Q", title="accuracy (pass@1)", scale=alt.Scale(domain=[0, 1])),
        color=series_color(frame),
        tooltip=["model:N", "controller:N", "budget:Q", alt.Tooltip("accuracy:Q", format=".1%"), alt.Tooltip("cost_per_1k:Q", format="$.4f")])
    layers = dots
    if frontier:
        line = alt.Chart(pd.DataFrame(list(frontier))).mark_line(color="black", strokeDash=[4, 3]).encode(x="cost_per_1k:Q", y="accuracy:Q", order="cost_per_1k:Q")
        layers = line + dots
    return _fit(layers.properties(width=WIDE, height=300, title="Accuracy against cost (dashed: the Pareto frontier)"))


# Vega-Embed's own menu on each chart: save it as PNG or SVG (vega-embed reads it from the spec's usermeta).
EXPORT_MENU = {"embedOptions": {"actions": {"export": True, "source": False, "compiled": False, "editor": False}}}


def _fit(chart):
    """Legends under the plot, so two charts fit side by side; titles from the left edge (a centred title
    wider than its plot was clipped on both sides: "ords by budget"); no "0.000000" on an all-zero axis."""
    return (chart.configure_legend(orient="bottom", columns=2, labelLimit=260)
            .configure_title(anchor="start", fontSize=14, limit=WIDE + 150)
            .configure_axisQuantitative(format=",~r")
            .properties(usermeta=EXPORT_MENU))


def audit_chart(budget_rows) -> alt.Chart:
    """The adherence audit: mean (line) and most (ticks) thinking tokens against the N each generation
    was given, per model x controller, over the line thinking = N: an enforced knob stays on or
    under it, a hint follows it loosely, an ignored one runs flat."""
    frame = _frame(budget_rows)
    if frame.empty:
        return _empty("no audit yet: pick a run and press Audit")
    top = float(max(frame["asked"].max(), frame["max_thinking"].max()))
    diagonal = alt.Chart(pd.DataFrame({"asked": [0.0, top], "thinking": [0.0, top]})).mark_line(color="#999", strokeDash=[4, 4]).encode(
        x="asked:Q", y="thinking:Q")
    base = alt.Chart(frame).encode(
        x=alt.X("asked:Q", title="budget N given (tokens)", axis=alt.Axis(format="d")),
        color=series_color(frame, title=None, legend=alt.Legend(orient="bottom", columns=1, labelLimit=400)),
        tooltip=["series:N", alt.Tooltip("asked:Q", title="N"), alt.Tooltip("mean_thinking:Q", format=".1f"), "max_thinking:Q",
                 alt.Tooltip("over_share:Q", format=".0%", title="over N"), alt.Tooltip("empty_share:Q", format=".0%", title="empty answers"),
                 "token_counts:N"],
    )
    mean = base.mark_line(point=True).encode(y=alt.Y("mean_thinking:Q", title="thinking tokens (mean; ticks: most)", axis=alt.Axis(format="d")))
    most = base.mark_tick(thickness=2, size=14).encode(y="max_thinking:Q")
    return (diagonal + mean + most).properties(width=WIDE, height=260, title=alt.TitleParams("Does the budget hold? (dashed: thinking = N)", anchor="start"))
