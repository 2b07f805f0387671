"""Budgets outside the range a model was trained on, flagged wherever a result is shown.

An LCPO model (``l1-tiny``) learned to follow "Think for N tokens." for N in its trained range
(``n_min``..``n_max`` of its ``lcpo_config.json``, `ModelSpec.trained_budgets`); asked for less
or more, it overshoots or ignores N, and a result there says little about the method. What counts
is the budget each generation is asked for: N for a sequential controller, floor(N/K) for each
sample of ``majK:INNER`` / ``bestK:INNER``, so ``maj4:l1_exact`` at N = 128 asks for 32 tokens
per sample, below l1-tiny's 64-512. A model whose range is unknown (a base model, a hub id, a
chat endpoint's model) is never flagged.

    flag = range_flag("l1-tiny", (64, 512), "maj4:l1_exact", 128)
    flag.note      # "N/4 = 32 tokens per sample: below l1-tiny's trained range (64-512)"
    flag_rows(summary, service.trained_range_of)   # adds outside_trained_range, trained_range_note
    budgets_inside((64, 512), ["l1_exact", "maj4:l1_exact"], (64, 128, 256, 384, 512))   # (256, 384, 512)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from backend.controllers.registry import budget_split

TrainedBudgets = tuple[int, int]  # (n_min, n_max)
# The fields a card, a summary row or a chart point gets: which side of the range ("below" /
# "above", None inside or unknown) and the same in words for a viewer.
NOT_FLAGGED: dict[str, str | None] = {"outside_trained_range": None, "trained_range_note": None}


@dataclass(frozen=True)
class RangeFlag:
    """A budget whose generations are asked for `asked` tokens, outside `model`'s trained range."""

    model: str
    budget: int  # N, the answer's budget
    split: int  # K generations share N (1: sequential)
    asked: int  # what each generation is asked for: N, or floor(N/K)
    low: int
    high: int

    @property
    def side(self) -> str:
        return "below" if self.asked < self.low else "above"

    @property
    def note(self) -> str:
        asked = f"N/{self.split} = {self.asked} tokens per sample" if self.split > 1 else f"N = {self.asked} tokens"
        return f"{asked}: {self.side} {self.model}'s trained range ({self.low}-{self.high})"

    def fields(self) -> dict[str, str]:
        return {"outside_trained_range": self.side, "trained_range_note": self.note}


def range_flag(model: str, trained: TrainedBudgets | None, controller: str, budget: int) -> RangeFlag | None:
    """The flag of `controller` at budget N = `budget` on `model` (trained on `trained`), or None
    when it lies inside, the range is unknown, or the controller takes no budget."""
    split = budget_split(controller)
    if trained is None or split is None:
        return None
    low, high = trained
    asked = budget // split
    return None if low <= asked <= high else RangeFlag(model, budget, split, asked, low, high)


def flag_fields(model: str, trained: TrainedBudgets | None, controller: str, budget: int) -> dict[str, str | None]:
    flag = range_flag(model, trained, controller, budget)
    return flag.fields() if flag else dict(NOT_FLAGGED)


def flag_rows(rows: Iterable[dict[str, Any]], range_of: Callable[[str], TrainedBudgets | None]) -> list[dict[str, Any]]:
    """`rows` (each with model, controller, budget: cards, summary groups, chart points), each given the
    two fields in place; `range_of` (a model's trained budgets) is asked once per model."""
    ranges: dict[str, TrainedBudgets | None] = {}
    rows = list(rows)
    for row in rows:
        model = row.get("model") or ""
        if model not in ranges:
            ranges[model] = range_of(model)
        row.update(flag_fields(model, ranges[model], row["controller"], row["budget"]))
    return rows


def budgets_inside(trained: TrainedBudgets | None, controllers: Iterable[str], suggested: Sequence[int]) -> tuple[int, ...]:
    """Low, middle and high budgets N at which every controller's generations are asked for a budget
    inside `trained` (N in [n_min, n_max] for a sequential one, N in [K n_min, K n_max + K - 1] for
    majK / bestK): the suggested budgets that qualify, else the ends and middle of the interval.
    With no range known, or no N that suits every controller, the suggested budgets' spread."""
    interval = _common_interval(trained, controllers)
    if interval is None:
        return _spread(sorted(set(suggested)))
    low, high = interval
    inside = sorted({b for b in suggested if low <= b <= high})
    return _spread(inside if len(inside) >= 3 else sorted({low, (low + high) // 2, high}))


def _common_interval(trained: TrainedBudgets | None, controllers: Iterable[str]) -> TrainedBudgets | None:
    splits = {k for k in map(budget_split, controllers) if k}
    if trained is None or not splits:
        return None
    low = max(trained[0] * k for k in splits)
    high = min(trained[1] * k + k - 1 for k in splits)
    return (low, high) if low <= high else None


def _spread(budgets: Sequence[int]) -> tuple[int, ...]:
    """The lowest, middle and highest of sorted `budgets` (fewer when there are fewer)."""
    if not budgets:
        return ()
    return tuple(sorted({budgets[0], budgets[len(budgets) // 2], budgets[-1]}))
