"""Checks that verify and slips they catch, for the budget-aware traces (`training.budget_traces`).

A one-shot re-check ("Check again: 37 + 48 = 85.") mostly copies the result; a check by the inverse
operation worked in columns ("Check 85 - 48: 15 - 8 = 7, 8 - 1 - 4 = 3, so 37. Yes.") is worked
as reliably as the work itself and can disagree with it. A slip is one operation's column work
with a digit off (the carries as they were): its check disagrees ("No, not 37."), the operation
is worked again, and the slipped line is kept out of the loss, so that a model learns to catch a
slip, not to make one. `word_prefixes` gives a line stopped part way, where a countdown closes.

    text, wrong = slipped_work(37, "+", 48, random.Random(0))
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from backend.evaluation.arith import apply_op
from training.traces import column_work

CHECK_LEADS = ("Check", "Let me check", "Wait, let me check")
CHECK_AGREES = ("Yes.", "Yes, right.", "Good.")
CHECK_DISAGREES = ("No, not {a}.", "That is not {a}.")


def word_prefixes(line: str) -> tuple[str, ...]:
    """``line`` stopped before each of its words after the first (never inside a number)."""
    return tuple(line[:i] for i, ch in enumerate(line) if ch == " " and i > 0 and line[i - 1] != " ")


def column_checks(a: int, op: str, b: int, c: int, style: str = "compact") -> tuple[str, ...]:
    """Re-checks of ``a op b = c`` by the inverse operation worked in columns, which a small model
    gets right as often as the work itself (a one-shot check mostly copies): "Check 85 - 48: ..., so 37. Yes."."""
    inverse = "-" if op == "+" else "+"
    return tuple(f"{lead} {column_work(c, inverse, b, style)} {end}" for lead in CHECK_LEADS for end in CHECK_AGREES)


def slipped_work(a: int, op: str, b: int, rng: random.Random) -> tuple[str, int] | None:
    """The column work of ``a op b`` with one digit step off by one or two (the carries as they
    were), and the wrong result it assembles; None if no step can slip that way."""
    c = apply_op(a, op, b)
    head, _, rest = column_work(a, op, b).partition(": ")
    steps = rest.removesuffix(f", so {c}.").split(", ")
    choices = []
    for k, step in enumerate(steps):
        printed = int(step.rsplit("= ", 1)[1])
        for d in (-2, -1, 1, 2):
            new = printed + d
            same_carry = new >= 0 and (new // 10 == printed // 10 if op == "+" else new <= 9)
            wrong = c + d * 10 ** k
            if same_carry and wrong >= 0 and (op == "-" or wrong >= b):  # the inverse check needs wrong >= b
                choices.append((k, new, wrong))
    if not choices:
        return None
    k, new, wrong = rng.choice(choices)
    steps[k] = f"{steps[k].rsplit('= ', 1)[0]}= {new}"
    return f"{head}: {', '.join(steps)}, so {wrong}.", wrong


def caught_slip(a: int, op: str, b: int, wrong: int) -> tuple[tuple[str, ...], str]:
    """The inverse checks of a slipped result, which disagree, and the operation worked again."""
    inverse = "-" if op == "+" else "+"
    checks = tuple(f"{lead} {column_work(wrong, inverse, b)} {end.format(a=a)}" for lead in CHECK_LEADS for end in CHECK_DISAGREES)
    return checks, f"Let me redo {column_work(a, op, b)}"


@dataclass(frozen=True)
class Slip:
    """One operation of a trace worked wrong, caught by its check and worked again; the wrong work
    is in the context but out of the loss (the model learns to catch a slip, not to make one)."""

    op_index: int
    work: str  # the slipped column work: masked
    checks: tuple[str, ...]  # the inverse check that disagrees, in its phrasings
    redo: str
