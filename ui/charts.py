"""Chart builders: pure functions from a pandas frame to an Altair chart (gr.Plot shows them).

    chart = training_curves_chart(store_training.job_metrics(cur, "job-..."), "nightly")

Every chart fits the narrowest view it is drawn in, with up to ten series: a half-width view of the
Analytics tab in a 1024 px window is about ``HALF`` pixels wide, a full-width one ``FULL``. Single
views take their container's width; faceted ones (which cannot) get sizes that add up to it, with
panels only for what has data. Titles start at the left edge, their explanations in subtitle lines;
legends sit under the plot in as many columns as fit; tick labels show the decimals their range
needs. Charts are drawn as SVG (``EMBED``), so their text is in the page: tests/test_chart_fit.py
measures every label against its chart at 1024, 1440 and 1920 px.
"""

from __future__ import annotations

import hashlib
import math

import altair as alt
import pandas as pd

# Column of store.training.job_metrics -> panel title, in panel order.
TRAINING_PANELS = {
    "reward": "reward",
    "correct": "accuracy (share correct)",
    "mean_length": "mean length (tokens)",
    "mean_abs_rel_dev": "mean |n - N| / N",
}

HALF = 430  # pixels: the narrowest a half-width view is drawn (a 1024 px window, less the block's padding)
FULL = 880  # pixels: the same for a full-width view
CHAR_PX = 6.2  # a generous mean width of one character of a 10-11 px label
ENTRY_PX = 34  # a legend entry's symbol, its gap and the padding between columns

# Vega-Embed's options, read from the spec's usermeta: the SVG renderer (text in the DOM, crisp
# screenshots) and its own menu on each chart, to save it as PNG or SVG.
EMBED = {"embedOptions": {"renderer": "svg", "actions": {"export": True, "source": False, "compiled": False, "editor": False}}}

# Vega sizes a chart of width "container" from its block, and again on each window resize: one while the
# Analytics tab was hidden left its charts 0 wide. This script (gr.HTML's js_on_load, in the tab) makes
# the tab being shown such a resize, so they measure their blocks again.
RESIZE_WHEN_SHOWN_JS = """let shown = 0;
new ResizeObserver((entries) => {
  const width = entries[0].contentRect.width;
  if (width > 0 && width !== shown) { shown = width; window.dispatchEvent(new Event('resize')); }
}).observe(element);"""


def _empty(message: str) -> alt.Chart:
    return _fit(alt.Chart(pd.DataFrame({"text": [message]})).mark_text(size=13, color="#666", align="left", x=4, limit=HALF - 50).encode(text="text:N")
                .properties(width=HALF - 40, height=60))


def _fit(chart):
    """The configuration every chart shares: legends under the plot, titles from the left edge (a centred
    title wider than its plot was cut on both sides: "ords by budget"), drawn as SVG."""
    return (chart.configure_legend(orient="bottom", titleLimit=HALF - 20)
            .configure_title(anchor="start", fontSize=14, subtitleFontSize=11, subtitleColor="#555")
            .configure_header(labelFontSize=11, titleFontSize=11)
            .properties(usermeta=EMBED))


def _title(text: str, *notes: str, width: int = HALF) -> alt.TitleParams:
    """A short title, its explanations one subtitle line each; nothing drawn past ``width`` pixels."""
    return alt.TitleParams(text, subtitle=list(notes) if notes else alt.Undefined, anchor="start", limit=width - 10)


def _legend(labels, title, width: int = HALF, **options) -> alt.Legend:
    """Under the plot, in as many columns as the longest label lets fit in ``width`` pixels."""
    longest = max((len(str(label)) for label in labels), default=1) * CHAR_PX
    columns = int(max(1, min(4, (width - 10) // (longest + ENTRY_PX))))
    return alt.Legend(orient="bottom", columns=columns, labelLimit=int((width - 10) / columns - ENTRY_PX), title=title, symbolOpacity=1, **options)


def _numbers(values) -> list[float]:
    return [float(v) for v in values if v is not None and not pd.isna(v) and math.isfinite(float(v))]


def _tick_format(*groups, percent: bool = False) -> str:
    """A d3 format for ticks over each group of values (one per panel of a shared axis format): the
    decimals that ticks about a tenth of the narrowest range apart need, no trailing zeros; whole
    numbers without decimals. One value alone is read with the padding `_domain` gives it."""
    decimals = 0
    for values in groups:
        numbers = _numbers(values)
        if not numbers:
            continue
        span = (max(numbers) - min(numbers)) or 2 * _pad(numbers[0])
        decimals = max(decimals, -math.floor(math.log10(span / 10)) - (2 if percent else 0))
    return f".{max(decimals, 0)}~%" if percent else f",.{max(decimals, 0)}~f"


def _pad(value: float) -> float:
    return abs(value) * 0.1 or 0.5


def _domain(values, log: bool = False):
    """A scale domain around a single value (a one-point curve); Undefined (the data's own) otherwise."""
    numbers = _numbers(values)
    if not numbers or max(numbers) != min(numbers):
        return alt.Undefined
    value = numbers[0]
    return [value / 2, value * 2] if log and value > 0 else [value - _pad(value), value + _pad(value)]


def training_curves_chart(metrics: pd.DataFrame, title: str = "") -> alt.Chart:
    """Four small panels (reward, accuracy, mean length, length deviation) per logged step, each with
    its own axis range and tick format (a one-step curve reads "0.71", not "0.707137")."""
    present = [c for c in TRAINING_PANELS if c in metrics.columns and metrics[c].notna().any()]
    if metrics.empty or not present:
        return _empty(f"{title}: no metrics yet" if title else "no metrics yet")
    steps = metrics["step"]
    x = alt.X("step:Q", title="step", scale=alt.Scale(domain=_domain(steps)), axis=alt.Axis(tickMinStep=1, format="d"))
    panels = []
    for column in present:
        values = metrics[column].dropna()
        y = alt.Y(f"{column}:Q", title=None, scale=alt.Scale(zero=False, domain=_domain(values)), axis=alt.Axis(format=_tick_format(values)))
        base = alt.Chart(metrics[["step", column]].dropna()).encode(x=x, y=y, tooltip=["step:Q", alt.Tooltip(f"{column}:Q", format=".4g")])
        panels.append((base.mark_line() + base.mark_point(size=24)).properties(width=150, height=100, title=alt.TitleParams(TRAINING_PANELS[column], fontSize=11)))
    # Room at the top for a block's label (the Train tab's gr.Plot shows one over the chart's corner).
    return _fit(alt.concat(*panels, columns=2).properties(title=_title(title) if title else alt.Undefined, padding={"top": 32, "left": 5, "right": 5, "bottom": 5}))


# --- Analytics views: each takes the rows of one store.analytics query (aggregates, not generations).

def series_name(row) -> str:
    return f"{row['model']} · {row['controller']}"


# Each series keeps its colour in every chart (and every session): picked by a hash of its name.
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac", "#eeca3b",
           "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f", "#e377c2", "#ff7f0e")


def series_color(frame: pd.DataFrame, field: str = "series", title: str | None = "model · controller", width: int = HALF) -> alt.Color:
    """A colour encoding whose colours depend on the series' names only, not on their order in this
    chart's rows; its legend under the plot, in columns that fit ``width`` pixels."""
    names = sorted(frame[field].unique()) if not frame.empty else []
    taken: set[int] = set()
    colours = []
    for name in names:
        slot = int.from_bytes(hashlib.sha1(str(name).encode()).digest()[:4], "big") % len(PALETTE)
        while slot in taken and len(taken) < len(PALETTE):
            slot = (slot + 1) % len(PALETTE)  # another series has it in this chart: the next free one
        taken.add(slot)
        colours.append(PALETTE[slot])
    return alt.Color(f"{field}:N", title=title, scale=alt.Scale(domain=names, range=colours or list(PALETTE)), legend=_legend(names, title, width))


def _frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    if not frame.empty:
        frame["series"] = [series_name(r) for r in frame.to_dict("records")]
    return frame


def _panel_names(frame: pd.DataFrame) -> pd.Series:
    """What a panel per series is headed: the controller alone when every series is of one model."""
    return frame["controller"] if frame["model"].nunique() == 1 else frame["series"]


OUTSIDE_RANGE = "outside the trained range"
KEY = {"orient": "top", "direction": "vertical", "title": None, "labelLimit": 140}  # a small key of line and point styles above the plot


FAMILY_DASHES = {"sequential": [1, 0], "parallel": [6, 3], "verified": [2, 2], "search": [8, 2, 2, 2]}


def tradeoff_chart(points, log_tokens: bool = False, with_verifier: bool = False) -> alt.Chart:
    """Accuracy (pass@1, Wilson 95% band) against the mean tokens generated per answer (probe
    tokens included): a line per model x method, a point per budget (the L1 paper's Figures 1-2),
    dashed by how the method spends N (sequential solid; parallel, verifier-chosen and search
    dashed: ``family``), probed points (early exit) as triangles: every method at equal tokens.
    ``with_verifier``: the tokens a verifier read are added to the x axis. A point whose generations
    were asked for a budget outside the model's trained range (``outside_trained_range``) is faded and ringed."""
    frame = _frame(points)
    if frame.empty:
        return _empty("no generations under these filters")
    if "mean_cost_tokens" not in frame:
        frame["mean_cost_tokens"] = frame["mean_tokens"]
    for column in ("outside_trained_range", "trained_range_note", "family"):  # absent: no range known, nothing marked
        if column not in frame:
            frame[column] = None
    frame["verifier_tokens"] = frame.get("mean_verifier_tokens", pd.Series([0.0] * len(frame))).fillna(0.0)
    frame["x_tokens"] = frame["mean_cost_tokens"] + (frame["verifier_tokens"] if with_verifier else 0.0)
    samples = frame.get("samples", pd.Series([1] * len(frame)))
    frame["shape"] = [f if f else ("parallel" if (s or 1) > 1 else "sequential") for f, s in zip(frame["family"], samples)]
    frame["probed"] = ["probe tokens included" if p else "no probes" for p in frame.get("mean_probe_tokens", pd.Series([0] * len(frame))).fillna(0)]
    tokens = frame["x_tokens"]
    x_title = "mean tokens generated per answer" + (" + verifier tokens read" if with_verifier else "")
    x = alt.X("x_tokens:Q", title=x_title, axis=alt.Axis(format=_tick_format(tokens)),
              scale=alt.Scale(type="log" if log_tokens else "linear", zero=False, domain=_domain(tokens, log_tokens)))
    base = alt.Chart(frame).encode(x=x, color=series_color(frame, title="model · method"))
    band = base.mark_area(opacity=0.12).encode(y=alt.Y("accuracy_low:Q", title="accuracy (pass@1)", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".1~f")),
                                               y2="accuracy_high:Q")
    families = [f for f in FAMILY_DASHES if (frame["shape"] == f).any()]
    line = base.mark_line().encode(y="accuracy:Q", order="budget:Q", strokeDash=alt.StrokeDash(
        "shape:N", title="method", scale=alt.Scale(domain=families, range=[FAMILY_DASHES[f] for f in families]),
        legend=alt.Legend(**KEY) if families != ["sequential"] else None))
    dots = base.mark_point(filled=True, size=60).encode(
        y="accuracy:Q", shape=alt.Shape("probed:N", title=None, scale=alt.Scale(domain=["no probes", "probe tokens included"], range=["circle", "triangle-up"]),
                                        legend=alt.Legend(**KEY) if (frame["probed"] != "no probes").any() else None),
        opacity=alt.condition("isValid(datum.outside_trained_range)", alt.value(0.35), alt.value(1.0)),
        tooltip=["model:N", "controller:N", "budget:Q", "n:Q", "shape:N", alt.Tooltip("accuracy:Q", format=".1%"),
                 alt.Tooltip("accuracy_low:Q", format=".1%"), alt.Tooltip("accuracy_high:Q", format=".1%"),
                 alt.Tooltip("mean_cost_tokens:Q", format=".1f", title="tokens per answer"), alt.Tooltip("mean_probe_tokens:Q", format=".1f", title="of which probes"),
                 alt.Tooltip("verifier_tokens:Q", format=".1f", title="verifier tokens read"), alt.Tooltip("trained_range_note:N", title=OUTSIDE_RANGE)])
    layers = band + line + dots
    if frame["outside_trained_range"].notna().any():
        layers += _outside_range_rings(base)
    title = _title("Accuracy at equal tokens", "pass@1 and its 95% interval (the band), a point per budget N"
                   + ("; x includes the verifier's tokens" if with_verifier else ""))
    return _fit(layers.properties(width="container", height=300, title=title))


def _outside_range_rings(base: alt.Chart) -> alt.Chart:
    """A hollow ring around each point asked for a budget outside its model's trained range, with its legend entry and reason."""
    return base.transform_filter("isValid(datum.outside_trained_range)").transform_calculate(trained_range=f"'{OUTSIDE_RANGE}'").mark_point(
        filled=False, size=220, strokeWidth=1.5).encode(
        y="accuracy:Q", stroke=alt.Stroke("trained_range:N", title=None, scale=alt.Scale(domain=[OUTSIDE_RANGE], range=["#555"]), legend=alt.Legend(**KEY)),
        tooltip=["model:N", "controller:N", "budget:Q", alt.Tooltip("trained_range_note:N", title=OUTSIDE_RANGE)])


def vote_chart(rows) -> alt.Chart:
    """Majority-vote accuracy over a group's first k samples, k = 1..K, a line per parallel method
    (its colour) and budget (its dash), recomputed from the stored samples."""
    frame = _frame(rows)
    if frame.empty:
        return _empty("no parallel methods (majK / bestK) under these filters")
    base = alt.Chart(frame).encode(
        x=alt.X("k:Q", title="samples voting (k)", scale=alt.Scale(domain=_domain(frame["k"])), axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("accuracy:Q", title="maj@k accuracy", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".1~f")),
        color=series_color(frame, title="model · method"), detail="budget:O",
        tooltip=["series:N", "budget:Q", "k:Q", "groups:Q", alt.Tooltip("accuracy:Q", format=".1%")])
    line = base.mark_line().encode(strokeDash=alt.StrokeDash("budget:O", title="budget N", legend=alt.Legend(orient="top", direction="horizontal", labelLimit=80)))
    return _fit((line + base.mark_point(filled=True)).properties(width="container", height=260, title=_title("Vote curves: maj@k from stored samples")))


def settling_chart(rows) -> alt.Chart:
    """Early exit: the share of thinking spent after the answer had settled on the final one, per budget."""
    frame = _frame(rows)
    if frame.empty:
        return _empty("no probed generations (early_exit) under these filters")
    share = frame["after_settled_share"]
    base = alt.Chart(frame).encode(
        x=alt.X("budget:O", title="budget N", axis=alt.Axis(labelAngle=0)), xOffset="series:N",
        y=alt.Y("after_settled_share:Q", title="share of thinking after it settled", axis=alt.Axis(format=_tick_format([0, *share], percent=True))),
        color=series_color(frame),
        tooltip=["series:N", "budget:Q", "n:Q", alt.Tooltip("after_settled_share:Q", format=".1%"), alt.Tooltip("settled_rate:Q", format=".1%", title="settled"),
                 alt.Tooltip("stopped_early_rate:Q", format=".1%", title="stopped before N"), alt.Tooltip("mean_probe_tokens:Q", format=".1f")])
    title = _title("Where the answer settled", "share of the thinking spent after the probes had settled on the final answer")
    return _fit(base.mark_bar().properties(width="container", height=260, title=title))


def adherence_chart(rows) -> alt.Chart:
    """Box plots of output length per budget (whiskers min-max, box q1-q3, median tick), one per
    model x controller side by side, with the budget marked in red (the paper's Figure 4); hint and
    guaranteed budgets in panels of their own, each with only its own series."""
    frame = _frame(rows)
    if frame.empty:
        return _empty("no generations under these filters")
    kinds = frame["budget_kind"].dropna().nunique() if "budget_kind" in frame else 0
    per_panel = frame.groupby(frame["budget_kind"].fillna("unknown")) if kinds else [("", frame)]
    slots = max(part["budget"].nunique() * part["series"].nunique() for _, part in per_panel)
    width = (HALF - 75) // 2 if kinds > 1 else HALF - 60  # what one panel gets, at the narrowest
    box = max(2.0, min(14.0, 0.7 * width / slots))
    base = alt.Chart(frame).encode(x=alt.X("budget:O", title="budget N (tokens)", axis=alt.Axis(labelAngle=0)), xOffset="series:N", color=series_color(frame))
    tokens = [*frame["min_tokens"], *frame["max_tokens"], *frame["budget"]]
    whisker = base.mark_rule().encode(y=alt.Y("min_tokens:Q", title="output tokens", axis=alt.Axis(format=_tick_format(tokens))), y2="max_tokens:Q")
    boxes = base.mark_bar(size=box, opacity=0.6).encode(
        y="q1_tokens:Q", y2="q3_tokens:Q",
        tooltip=["series:N", "budget:Q", "n:Q", "min_tokens:Q", "q1_tokens:Q", "median_tokens:Q", "q3_tokens:Q", "max_tokens:Q",
                 alt.Tooltip("mean_abs_rel_dev:Q", format=".1%", title="mean |n-N|/N"), alt.Tooltip("violation_rate:Q", format=".1%", title="share n > N")])
    median = base.mark_tick(color="black", size=box, thickness=2).encode(y="median_tokens:Q")
    # The budget across its whole band (no offset per series: centred on the band).
    target = alt.Chart(frame).mark_tick(color="#e45756", thickness=3, size=0.8 * width / frame["budget"].nunique()).encode(x="budget:O", y="budget:Q")
    layers = whisker + boxes + median + target
    title = _title("Output length per budget", "boxes: quartiles; whiskers: min to max; red: the budget")
    if not kinds:
        return _fit(layers.properties(width="container", height=300, title=title))
    # Hint budgets (the model may overrun) and guaranteed ones (the controller enforces them) apart.
    frame["budget_kind"] = frame["budget_kind"].fillna("unknown")
    panels = layers.properties(width=width, height=300).facet(column=alt.Column("budget_kind:N", title=None, header=alt.Header(labelFontWeight="bold")))
    return _fit(panels.resolve_scale(x="independent", xOffset="independent").properties(title=title))


def keyword_chart(rows) -> alt.Chart:
    """Keyword matches per 1,000 output tokens by budget, a panel per category (the paper's Figure 5)."""
    frame = _frame(rows)
    if frame.empty:
        return _empty("no generations under these filters")
    spans = [part["per_1k_tokens"] for _, part in frame.groupby("category")]
    base = alt.Chart(frame).encode(
        x=alt.X("budget:Q", title="budget N", axis=alt.Axis(format=_tick_format(frame["budget"]))),
        y=alt.Y("per_1k_tokens:Q", title="per 1,000 tokens", axis=alt.Axis(format=_tick_format(*spans))), color=series_color(frame, width=FULL),
        tooltip=["series:N", "category:N", "budget:Q", "matches:Q", alt.Tooltip("per_1k_tokens:Q", format=".2f")])
    panel = (base.mark_line() + base.mark_point(filled=True)).properties(width=(FULL - 150) // 2, height=140)
    facets = panel.facet(facet=alt.Facet("category:N", title=None, header=alt.Header(labelFontWeight="bold")), columns=2)
    return _fit(facets.resolve_scale(y="independent").properties(title=_title("Keywords by budget", "matches per 1,000 output tokens, a panel per category",
                                                                              width=FULL)))


def thinking_answer_chart(points) -> alt.Chart:
    """Mean thinking and answer tokens per budget, stacked, a panel per model x controller that has
    counts (a chat endpoint's uncounted series has none, and no panel)."""
    frame = _frame(points)
    if frame.empty:
        return _empty("no generations under these filters")
    frame["panel"] = _panel_names(frame)
    long = frame.melt(id_vars=["series", "panel", "budget"], value_vars=["mean_thinking_tokens", "mean_answer_tokens"], var_name="part", value_name="tokens")
    long = long.dropna(subset=["tokens"])
    long = long[long.groupby("series")["tokens"].transform("sum") > 0]
    if long.empty:
        return _empty("no token counts under these filters")
    long["part"] = long["part"].map({"mean_thinking_tokens": "thinking", "mean_answer_tokens": "answer"})
    columns = min(3, long["series"].nunique())
    width = (HALF - 60 - 10 * (columns - 1)) // columns
    bars = alt.Chart(long).mark_bar().encode(
        x=alt.X("budget:O", title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("tokens:Q", title="mean tokens", stack="zero", axis=alt.Axis(format=_tick_format([0, *long["tokens"]]))),
        color=alt.Color("part:N", title=None, scale=alt.Scale(domain=["thinking", "answer"], range=["#4c78a8", "#54a24b"]),
                        legend=alt.Legend(orient="top", direction="horizontal")),
        tooltip=["series:N", "budget:Q", "part:N", alt.Tooltip("tokens:Q", format=".1f")]).properties(width=width, height=100)
    header = alt.Header(labelLimit=width + 8, labelFontSize=10)
    # Every panel its own budget axis: a shared one is drawn under each column's last row, and under an empty slot it looked like a panel.
    facets = bars.facet(facet=alt.Facet("panel:N", title=None, header=header), columns=columns, spacing=10).resolve_axis(x="independent")
    title = _title("Thinking and answer tokens", "mean per answer at each budget N" + (f", {frame['model'].iloc[0]}" if frame["model"].nunique() == 1 else ""))
    return _fit(facets.properties(title=title))


def cost_chart(points, frontier) -> alt.Chart:
    """Accuracy against dollars per 1,000 questions, every setting a point, the Pareto frontier a line."""
    frame = _frame(points)
    if frame.empty:
        return _empty("no generations under these filters")
    dots = alt.Chart(frame).mark_point(filled=True, size=70).encode(
        x=alt.X("cost_per_1k:Q", title="$ per 1,000 questions", axis=alt.Axis(format="$" + _tick_format([0, *frame["cost_per_1k"]]))),
        y=alt.Y("accuracy:Q", title="accuracy (pass@1)", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".1~f")),
        color=series_color(frame),
        tooltip=["model:N", "controller:N", "budget:Q", alt.Tooltip("accuracy:Q", format=".1%"), alt.Tooltip("cost_per_1k:Q", format="$.4f")])
    layers = dots
    if frontier:
        line = alt.Chart(pd.DataFrame(list(frontier))).mark_line(color="black", strokeDash=[4, 3]).encode(x="cost_per_1k:Q", y="accuracy:Q", order="cost_per_1k:Q")
        layers = line + dots
    return _fit(layers.properties(width="container", height=300, title=_title("Accuracy against cost", "dashed: the Pareto frontier")))


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
        color=series_color(frame, title=None),
        tooltip=["series:N", alt.Tooltip("asked:Q", title="N"), alt.Tooltip("mean_thinking:Q", format=".1f"), "max_thinking:Q",
                 alt.Tooltip("over_share:Q", format=".0%", title="over N"), alt.Tooltip("empty_share:Q", format=".0%", title="empty answers"),
                 "token_counts:N"],
    )
    mean = base.mark_line(point=True).encode(y=alt.Y("mean_thinking:Q", title="thinking tokens (mean; ticks: most)", axis=alt.Axis(format="d")))
    most = base.mark_tick(thickness=2, size=14).encode(y="max_thinking:Q")
    # A fixed width: the chart sits in a folded accordion, where a container's width reads 0.
    return _fit((diagonal + mean + most).properties(width=HALF - 60, height=260, title=_title("Does the budget hold?", "dashed: thinking = N")))
