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

from backend.evaluation.verifier import GRADE_TIMEOUT_S, verify_equivalent

__all__ = ["GRADE_TIMEOUT_S", "Grade", "extract_boxed", "gold_answer", "grade"]

# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_BOX_ARG_RE = re.compile(r"[^\s$]+")


def _match_brace(text: str, open_at: int) -> int | None:
    """Index just past the ``}`` matching the ``{`` at ``open_at``; None if unbalanced.

    Escaped characters (``\\{``, ``\\}``, ``\\\\``) are skipped, so they never count as braces.
    """
    depth = 0
    i = open_at
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _box_argument(text: str, pos: int) -> tuple[str | None, int]:
    """The argument of a box command ending at ``pos``, and where scanning should resume."""
    i = pos
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        end = _match_brace(text, i)
        if end is None:
            return None, len(text)
        return text[i + 1 : end - 1].strip(), end
    # "\boxed 5" (no braces): the following run of non-space characters, up to a "$".
    m = _BARE_BOX_ARG_RE.match(text, i)
    if m is None:
        return None, len(text)
    return m.group(0).rstrip(".,;") or None, m.end()


def extract_boxed(text: str) -> str | None:
    """Content of the last top-level ``\\boxed{...}`` / ``\\boxed ...`` / ``\\fbox{...}`` in ``text``.

    Braces nest (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``). Returns None when there is no box
    or when the last box is never closed (e.g. a truncated generation).
    """
    result: str | None = None
    pos = 0
    while (m := _BOX_RE.search(text, pos)) is not None:
        result, pos = _box_argument(text, m.end())
    return result


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
    m = _BOX_RE.match(s)
    if m is not None:
        inner, end = _box_argument(s, m.end())
        if inner is not None and end == len(s):
            s = inner
    return s


# ---------------------------------------------------------------------------------------------
# Fast path (pure string work, no sympy)
# ---------------------------------------------------------------------------------------------

_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_DFRAC_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")
_DISPLAYSTYLE_RE = re.compile(r"\\displaystyle(?![A-Za-z])")
_SPACING_RE = re.compile(r"\\[,;: ]")
# A single space matters only between two word characters ("\cot x") or after a comma
# ("1, 234" is a list, "1,234" a number); anywhere else it is dropped.
_DROP_SPACE_RE = re.compile(r"(?<![A-Za-z0-9,]) | (?![A-Za-z0-9])")
_INT_RE = re.compile(r"[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)")


def _unwrap_dollars(s: str) -> str:
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s[-2] != "\\":
        return s.strip("$")
    return s


def _normalize(s: str) -> str:
    """Trivial normalisation for the string-equality fast path."""
    t = _unwrap_dollars(s.strip())
    t = t.replace("{,}", ",").replace("\\!", "")
    t = _LEFT_RIGHT_RE.sub("", t)
    t = _DFRAC_RE.sub(r"\\frac", t)
    t = _DISPLAYSTYLE_RE.sub("", t)
    t = _SPACING_RE.sub(" ", t)
    t = " ".join(t.split())
    t = _DROP_SPACE_RE.sub("", t)
    if t.endswith(".") and not t.endswith("\\."):
        t = t[:-1]
    return t


def _as_int(s: str) -> int | None:
    """``s`` as an integer if it is one ("1,234", "10,\\!080", "-7"); otherwise None."""
    t = _unwrap_dollars(s.strip()).replace("{,}", ",")
    t = re.sub(r"\\!\s*|\\,", "", t).strip()
    if _INT_RE.fullmatch(t) is None:
        return None
    return int(t.replace(",", ""))


def _fast_verdict(pred: str, gold: str) -> bool | None:
    """True/False when trivially decidable, None when math-verify must decide."""
    if _normalize(pred) == _normalize(gold):
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
