"""The adherence audit: does a budget knob hold? A verdict per (model, controller) from what was measured.

Servers document thinking-budget knobs that some versions and set-ups silently ignore (a vLLM
budget passed the wrong way, speculative decoding, llama.cpp and SGLang budgets that only hint).
An audit is a sweep like any other (stored, so audits of one server before and after an upgrade
can be compared); this module reads its generations back and judges each knob:

- **enforced**: (almost) no generation thinks past N (``MAX_OVER_SHARE``), and N was reached
  somewhere (a model that never came near N says nothing about the knob: **not reached**);
- **ignored**: generations go past N and the thinking does not follow N: the least-squares
  slope of mean thinking tokens against N is under ``MIN_FOLLOW_SLOPE`` (over two budgets at least);
- **overrun, follows N**: past N often, yet the thinking grows with N (the L1 prompts: the model tries);
- **no budget**: the controller asks for none (``unconstrained``);
- **too few**: some budget has fewer generations than the minimum (``audit_min_generations``, 20
  by default): nothing is judged, and the reason gives the count.

These are what was *observed*; what a controller *promises* (its ``budget_kind``: a hint the
model may overrun, a guarantee the controller enforces, none) is the controller table's, in other
words on purpose: "hint" is a promise, never a verdict.

    report = audit_report(rows)   # rows: store.audit.audit_rows
    report["verdicts"]            # [{"model": ..., "controller": "api_budget", "verdict": "ignored", "why": "..."}]
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

# A generation is over budget when it thinks past N by more than max(TOLERANCE_TOKENS, TOLERANCE_SHARE x N):
# providers count a delimiter or two differently, and that is not a knob failing.
TOLERANCE_TOKENS = 2
TOLERANCE_SHARE = 0.02
MAX_OVER_SHARE = 0.02  # at most this share over budget to call a knob enforced
MIN_FOLLOW_SLOPE = 0.1  # thinking tokens gained per token of N below which the thinking does not follow N
REACHED_SHARE = 0.5  # a budget counts as reached when some generation thought at least this share of it
FOLLOWS = "overrun, follows N"
VERDICTS = ("enforced", FOLLOWS, "ignored", "not reached", "no budget", "too few")


def audit_report(rows: list[dict[str, Any]], min_generations: int = 1) -> dict[str, list[dict[str, Any]]]:
    """``{"budgets": rows, "verdicts": one per (model, controller)}`` from `store.audit.audit_rows`'s rows;
    a knob with fewer than `min_generations` generations at some budget is not judged ("too few")."""
    by_knob: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_knob[(row["model"], row["controller"])].append(row)
    verdicts = []
    for (model, controller), group in by_knob.items():
        verdict, why = too_few(group, min_generations) or judge(group)
        verdicts.append({"model": model, "controller": controller, "verdict": verdict, "why": why,
                         "budgets": [row["budget"] for row in group], "generations": sum(row["n"] for row in group),
                         "over_share": _weighted(group, "over_share"), "empty_share": _weighted(group, "empty_share"),
                         "slope": follow_slope(group), "token_counts": ",".join(sorted({c for row in group for c in (row["token_counts"] or "").split(",") if c}))})
    return {"budgets": rows, "verdicts": verdicts}


def too_few(group: list[dict[str, Any]], min_generations: int) -> tuple[str, str] | None:
    """("too few", why) when some budget of the knob has fewer than `min_generations` generations."""
    fewest = min(group, key=lambda row: row["n"])
    if fewest["n"] >= min_generations:
        return None
    return "too few", (f"{fewest['n']} generation{'s' if fewest['n'] != 1 else ''} at N = {fewest['budget']}: at least {min_generations} "
                       "per budget are needed to judge (a larger sweep, or app.py audit with more --limit)")


def judge(group: list[dict[str, Any]]) -> tuple[str, str]:
    """The verdict on one knob from its rows (one per budget), and why, in numbers."""
    if all(row.get("budget_kind") == "none" for row in group):
        return "no budget", "the controller asks for no budget"
    over = _weighted(group, "over_share")
    slope = follow_slope(group)
    if over <= MAX_OVER_SHARE:
        if not any(row["max_thinking"] >= REACHED_SHARE * row["asked"] for row in group):
            return "not reached", f"no generation thought even {REACHED_SHARE:.0%} of N: lower the budgets to test the knob"
        return "enforced", f"{over:.0%} of generations over N"
    slope_text = f"thinking grows by {slope:.2f} tokens per token of N" if slope is not None else "one budget only: whether thinking follows N is not tested"
    if slope is not None and slope < MIN_FOLLOW_SLOPE:
        return "ignored", f"{over:.0%} over N and {slope_text}"
    return FOLLOWS, f"{over:.0%} over N; {slope_text}"


def follow_slope(group: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of mean thinking tokens against the budget each generation was given; None under two budgets."""
    points = [(float(row["asked"]), float(row["mean_thinking"])) for row in group]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def _weighted(group: list[dict[str, Any]], key: str) -> float:
    total = sum(row["n"] for row in group)
    return sum(row[key] * row["n"] for row in group) / total if total else 0.0
