"""Reading a final answer out of model text: the last ``\\boxed{...}``, and a trivial normal form.

A light module (standard library only) shared by the grader (`backend.evaluation.grading`) and
the controllers that read answers while generating (`early_exit`'s probes), which may not import
the evaluation package.

    extract_boxed("so \\boxed{\\frac{1}{2}}.")     # '\\frac{1}{2}'
    normalize_answer("$ \\dfrac{1}{2} $")           # '\\frac{1}{2}'
"""

from __future__ import annotations

import re

BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
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


def box_argument(text: str, pos: int) -> tuple[str | None, int]:
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
    while (m := BOX_RE.search(text, pos)) is not None:
        result, pos = box_argument(text, m.end())
    return result



_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_DFRAC_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")
_DISPLAYSTYLE_RE = re.compile(r"\\displaystyle(?![A-Za-z])")
_SPACING_RE = re.compile(r"\\[,;: ]")
# A single space matters only between two word characters ("\cot x") or after a comma
# ("1, 234" is a list, "1,234" a number); anywhere else it is dropped.
_DROP_SPACE_RE = re.compile(r"(?<![A-Za-z0-9,]) | (?![A-Za-z0-9])")


def unwrap_dollars(s: str) -> str:
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$" and s[-2] != "\\":
        return s.strip("$")
    return s


def normalize_answer(s: str) -> str:
    """Trivial normalisation: two answers equal after it are the same answer (no sympy needed)."""
    t = unwrap_dollars(s.strip())
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


