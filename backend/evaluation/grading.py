"""Answer grader: is the model's final ``\\boxed{...}`` answer equal to the gold answer?

Usage::

    from backend.evaluation.grading import grade, gold_answer

    g = grade(answer_text, gold)                       # answer_text: the part after </think>
    g = grade(answer_text, gold, full_text=whole_output)  # fall back to the whole output
    g.extracted   # the last boxed answer, or None if the model boxed nothing
    g.correct     # True / False, or None when it could not be decided
                  # (no gold, or the comparison ran past ``timeout_s``)

    gold_answer("... #### 1,234")            # -> "1234" (GSM8K worked solution)
    gold_answer("\\left( 3, \\frac{\\pi}{2} \\right)")  # MATH answers come back stripped

How a grade is decided:

1. ``extract_boxed`` takes the last ``\\boxed{...}`` / ``\\boxed ...`` / ``\\fbox{...}`` of
   ``answer_text`` (or of ``full_text`` if the answer part has none). No box -> incorrect.
2. Fast path, in-process and sympy-free: the two strings are equal after trivial LaTeX
   normalisation (spacing, ``\\left``/``\\right``, ``\\dfrac``) -> correct; both are plain
   integers (thousands commas allowed) -> correct iff the numbers are equal.
3. Otherwise math-verify (``parse`` + ``verify``) compares them in a worker process, with both
   strings wrapped as ``\\boxed{...}`` (this parses all 500 MATH-500 golds as intended; the bare
   string does not: ``3\\sqrt{13}`` parses as ``3``). Every sympy call is in the worker.

math-verify runs in worker processes (`backend.evaluation.verifier`): it is safe to call from any
thread, and a comparison that runs past ``timeout_s`` is undecided (``correct=None``) instead of
hanging or being reported as wrong.

GSM8K conventions (all decided by math-verify, listed so nobody is surprised):
``\\boxed{18.0}``, ``\\boxed{\\$18}``, ``\\boxed{\\$18.00}``, ``\\boxed{18 \\text{ dollars}}``,
``\\boxed{18,000}`` (gold 18000) are correct; ``\\boxed{18.5}`` and ``\\boxed{17.999999}`` are
not. ``\\boxed{18\\%}`` is correct for gold 18 (math-verify accepts a percentage written with
or without the ``\\%``). A unit outside ``\\text{}`` (``18 dollars``) parses as a product of
letters and is judged incorrect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.answers import BOX_RE, box_argument, extract_boxed, normalize_answer, unwrap_dollars
from backend.evaluation.verifier import GRADE_TIMEOUT_S, verify_equivalent

__all__ = ["GRADE_TIMEOUT_S", "Grade", "extract_boxed", "gold_answer", "grade", "same_answer"]


def gold_answer(gold: str) -> str:
    """The gold answer as a plain string.

    GSM8K worked solutions (``"... #### 1,234"``) give the number after the last ``####`` with
    commas removed (``"1234"``). Anything else (MATH-style LaTeX, an integer string) is returned
    stripped, unwrapped from a surrounding ``$...$`` or ``\\boxed{...}`` if it has one.
    """
    if "####" in gold:
        return gold.rsplit("####", 1)[1].strip().replace(",", "")
    s = gold.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s[-2] != "\\":
        s = s.strip("$").strip()
    m = BOX_RE.match(s)
    if m is not None:
        inner, end = box_argument(s, m.end())
        if inner is not None and end == len(s):
            s = inner
    return s


# ---------------------------------------------------------------------------------------------
# Fast path (pure string work, no sympy)
# ---------------------------------------------------------------------------------------------

_INT_RE = re.compile(r"[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)")


def _as_int(s: str) -> int | None:
    """``s`` as an integer if it is one ("1,234", "10,\\!080", "-7"); otherwise None."""
    t = unwrap_dollars(s.strip()).replace("{,}", ",")
    t = re.sub(r"\\!\s*|\\,", "", t).strip()
    if _INT_RE.fullmatch(t) is None:
        return None
    return int(t.replace(",", ""))


def _fast_verdict(pred: str, gold: str) -> bool | None:
    """True/False when trivially decidable, None when math-verify must decide."""
    if normalize_answer(pred) == normalize_answer(gold):
        return True
    a, b = _as_int(pred), _as_int(gold)
    if a is not None and b is not None:
        return a == b
    return None


# ---------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grade:
    """``extracted``: the last boxed answer (None: none found). ``correct``: None = undecided."""

    extracted: str | None
    correct: bool | None


def grade(
    answer_text: str,
    gold: str | None,
    full_text: str | None = None,
    timeout_s: float = GRADE_TIMEOUT_S,
) -> Grade:
    """Grade the last boxed answer of ``answer_text`` (else of ``full_text``) against ``gold``.

    ``gold`` may be MATH-style LaTeX, an integer string or a GSM8K solution ending in ``#### N``.
    No gold -> ``correct=None``; no boxed answer -> ``correct=False``; math-verify running past
    ``timeout_s`` -> ``correct=None``. Safe to call from any thread.
    """
    extracted = extract_boxed(answer_text) if answer_text else None
    if extracted is None and full_text:
        extracted = extract_boxed(full_text)
    if gold is None or not gold.strip():
        return Grade(extracted, None)
    if not extracted:
        return Grade(extracted, False)
    gold_s = gold_answer(gold)
    verdict = _fast_verdict(extracted, gold_s)
    if verdict is None:
        verdict = verify_equivalent(extracted, gold_s, timeout_s)
    return Grade(extracted, verdict)


def same_answer(a: str, b: str, timeout_s: float = GRADE_TIMEOUT_S) -> bool:
    """Whether two extracted answers are the same answer (the fast path, then math-verify with
    ``a`` in the gold's place); undecided within ``timeout_s`` counts as different. Used to put
    parallel samples' answers in classes for a majority vote."""
    verdict = _fast_verdict(b, a)
    if verdict is None:
        verdict = verify_equivalent(b, a, timeout_s)
    return bool(verdict)
