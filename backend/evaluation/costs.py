"""Cost and choice over the store's aggregates: price each (model, controller, budget) point, find
the Pareto frontier of cost against accuracy, and recommend the cheapest setting for a target.

The inputs are `store.analytics.tradeoff` rows (a few per model, controller and budget, never
generation rows); everything here is a small pure function::

    points = priced(tradeoff_rows, {"l1-tiny": Price(0.5, 2.0)}, default=Price(0.5, 2.0))
    best = recommend(points, min_accuracy=0.8)
    print(recommendation_text(best, 0.8))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Price:
    """Dollars per 1M input (prompt) tokens and per 1M output tokens."""

    input_per_m: float
    output_per_m: float

    def __post_init__(self) -> None:
        if self.input_per_m < 0 or self.output_per_m < 0:
            raise ValueError(f"price {self.input_per_m}/{self.output_per_m} per 1M tokens: prices must be 0 or more")


def estimate_cost(prompt_tokens: int, output_tokens: int, price_in_per_m: float, price_out_per_m: float) -> float:
    """Dollars for one generation at per-1M-token prices."""
    return (prompt_tokens * price_in_per_m + output_tokens * price_out_per_m) / 1_000_000


def billed_tokens(tokens: Mapping[str, Any], prefix: str = "") -> tuple[float, float]:
    """(input, output) tokens an answer is billed for: of one generation, or with ``prefix="mean_"`` an
    aggregate's means (`store.analytics.tradeoff`). Input: the prompt, plus what a verifier read to score
    its steps (a verifier reads, it does not generate: billed as input at the model's price). Output:
    what the policy generated, its probes included (``cost_tokens``, the equal-token axis)."""
    def count(name: str) -> float:
        return float(tokens.get(prefix + name) or 0.0)

    if prefix:
        output = count("cost_tokens") if tokens.get(prefix + "cost_tokens") is not None else count("tokens")
    else:
        output = count("total_tokens") + count("probe_tokens")
    return count("prompt_tokens") + count("verifier_tokens"), output


def cost_per_1k_questions(mean_prompt_tokens: float | None, mean_output_tokens: float | None, price: Price) -> float:
    """Dollars for 1,000 questions at these mean token counts."""
    return 1000.0 * ((mean_prompt_tokens or 0.0) * price.input_per_m + (mean_output_tokens or 0.0) * price.output_per_m) / 1e6


def priced(points: Sequence[Mapping[str, Any]], prices: Mapping[str, Price], default: Price) -> list[dict[str, Any]]:
    """The points with ``cost_per_1k`` (dollars per 1,000 questions) at their model's price (`billed_tokens`)."""
    return [{**p, "cost_per_1k": cost_per_1k_questions(*billed_tokens(p, "mean_"), prices.get(p["model"], default))} for p in points]


def pareto_frontier(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point beats on both cost and accuracy, cheapest first: walking up in
    cost, a point is kept when it is more accurate than every cheaper one."""
    frontier: list[dict[str, Any]] = []
    best = float("-inf")
    for point in sorted(points, key=lambda p: (p["cost_per_1k"], -p["accuracy"])):
        if point["accuracy"] > best:
            frontier.append(dict(point))
            best = point["accuracy"]
    return frontier


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured over `n` answers (sound at 0%, 100% and small n)."""
    if n <= 0:
        return 0.0, 1.0
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def recommend(points: Sequence[Mapping[str, Any]], min_accuracy: float, min_answers: int = 1) -> dict[str, Any] | None:
    """The cheapest point with accuracy >= ``min_accuracy`` (ties: the more accurate) among those
    measured over at least ``min_answers`` answers, or None."""
    if not 0.0 <= min_accuracy <= 1.0:
        raise ValueError(f"target accuracy {min_accuracy}: must be between 0 and 1 (e.g. 0.8 for 80%)")
    good = [p for p in points if p["accuracy"] >= min_accuracy and p["n"] >= min_answers]
    return dict(min(good, key=lambda p: (p["cost_per_1k"], -p["accuracy"]))) if good else None


def recommendation_text(best: Mapping[str, Any] | None, min_accuracy: float, points: Sequence[Mapping[str, Any]] = (),
                        min_answers: int = 1) -> str:
    """What the recommender says, with the number of answers it rests on and their interval; below
    ``min_answers`` answers a setting is not judged, and the text says so."""
    judged = [p for p in points if p["n"] >= min_answers]
    too_few = len(points) - len(judged)
    skipped = (f" ({too_few} setting{'s' if too_few != 1 else ''} with fewer than {min_answers} answers not judged)"
               if too_few and min_answers > 1 else "")
    if best is None:
        if points and not judged:
            most = max(p["n"] for p in points)
            return (f"Not enough answers to recommend a setting: the most any setting has is {most}, and at least {min_answers} "
                    "are needed (sweep more questions or samples).")
        top = max((p["accuracy"] for p in judged), default=None)
        reach = f"; the best judged reaches {top:.1%}" if top is not None else "; there is no data under these filters"
        return f"No setting reaches {min_accuracy:.0%} accuracy{reach}{skipped}."
    low, high = wilson_interval(best["accuracy"], best["n"])
    return (f"For at least {min_accuracy:.0%} accuracy, the cheapest setting is **{best['model']}** with **{best['controller']}** "
            f"at a budget of **{best['budget']}** tokens: {best['accuracy']:.1%} accuracy over {best['n']} answers "
            f"(95% interval {low:.1%}-{high:.1%}), {best.get('mean_cost_tokens', best['mean_tokens']):.0f} generated tokens per answer, "
            f"**${best['cost_per_1k']:.4f} per 1,000 questions**{skipped}.")


def parse_prices(table: Sequence[Sequence[Any]], default: Price) -> dict[str, Price]:
    """Prices per model from the tab's table rows ``[model, $ per 1M input, $ per 1M output]``;
    an empty cell takes the default, anything else that is not a number 0 or more is refused."""
    prices = {}
    for row in table:
        cells = [*(row or []), None, None, None]
        model = str(cells[0] or "").strip()
        if not model:
            continue
        try:
            price_in = default.input_per_m if _blank(cells[1]) else float(cells[1])
            price_out = default.output_per_m if _blank(cells[2]) else float(cells[2])
            prices[model] = Price(price_in, price_out)
        except (TypeError, ValueError):
            raise ValueError(f"price of {model}: {cells[1]!r}, {cells[2]!r} is not two amounts in dollars per 1M tokens, 0 or more") from None
    return prices


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and value != value)
