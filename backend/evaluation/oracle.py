"""The arith oracle: exact labels for every step of a thinking trace on a built-in arith problem.

A step is a line of the trace (`backend.steps` splits a generation on token ids). Each
line's claims are checked mechanically against the problem (`backend.evaluation.arith`):

* column work, "37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85.": every digit step's sum or difference
  is right, the result is ``a op b``, and ``a op b`` is an operation of the problem (the running
  value and the next operand) or the inverse check of one ("Check 85 - 48: ..., so 37. Yes.");
* a chain line, "= 73 + 5": the running value after the operations it has folded, followed by
  exactly the operations left; the restated expression "37 + 48 - 12 + 5" is the question's;
* a one-line equation, "Wait, let me check: 85 - 48 = 37. Yes.": true, and about the problem;
* a conclusion, "So the answer is 78." or ``\\boxed{78}``: the problem's answer; "So it is 85."
  inside a line that made a claim refers to that claim's result.

A line with no claim ("Let me compute step by step.", a countdown tick) is neither right nor wrong
(None). `label_steps` gives the process reward model's training labels: good until the first
wrong step, bad from there on (a wrong step poisons what follows, even a later correct line).
The same checker is the ``oracle`` verifier the app can select for arith questions: the upper
bound any learned PRM is drawn against.

    label_steps("Compute 37 + 48 - 12.", ["37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85.", "= 85 - 12", ...])
    # [True, True, ...]; first_error(...) -> the index of the first wrong step, or None
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.evaluation.arith import apply_op, parse_question

TICK = re.compile(r"‹[0-9]+›")
# "a op b:" then its digit steps, then ", so c"; a line the countdown cut part way has no result yet.
COLUMN = re.compile(r"(\d+) ([+-]) (\d+):((?: \d+(?: [+-] \d+)+ = \d+,?)*)(?: so (\d+)\b)?")
EQUATION = re.compile(r"(?<!\d)(\d+(?: [+-] \d+)+) = (\d+)\b")
CHAIN = re.compile(r"^= (\d+)((?: [+-] \d+)*)\s*$")
EXPRESSION = re.compile(r"^(\d+(?: [+-] \d+)+)\s*$")
CONCLUSION = re.compile(r"(?:answer is|result is|it is|Therefore,?(?: the final answer is)?|boxed\{)\s*(\d+)")


@dataclass(frozen=True)
class Problem:
    """What the oracle checks a step against: the operations left to right and each running value."""

    first: int
    ops: tuple[tuple[str, int], ...]
    values: tuple[int, ...]  # values[i]: the running value after i operations

    @classmethod
    def of(cls, question: str) -> Problem:
        first, ops = parse_question(question.strip())
        values = [first]
        for op, b in ops:
            values.append(apply_op(values[-1], op, b))
        return cls(first, tuple(ops), tuple(values))

    @property
    def answer(self) -> int:
        return self.values[-1]

    def relevant(self, a: int, op: str, b: int) -> bool:
        """Whether ``a op b`` is one of the problem's operations, or the inverse check of one."""
        for i, (step_op, operand) in enumerate(self.ops):
            before, after = self.values[i], self.values[i + 1]
            if (a, op, b) == (before, step_op, operand) or (a, op, b) == (after, "-" if step_op == "+" else "+", operand):
                return True
        return False


def _left_to_right(expression: str) -> int:
    tokens = expression.split()
    value = int(tokens[0])
    for i in range(1, len(tokens), 2):
        value = apply_op(value, tokens[i], int(tokens[i + 1]))
    return value


def check_step(problem: Problem, step: str) -> bool | None:
    """Whether every claim of one line is right (None: the line claims nothing)."""
    line = re.sub(r" {2,}", " ", TICK.sub("", step)).strip()
    if not line:
        return None
    claimed, results = False, []
    for match in COLUMN.finditer(line):
        claimed = True
        a, op, b, work = int(match[1]), match[2], int(match[3]), match[4]
        parts = [part.strip() for part in work.split(",") if part.strip()]
        digit_steps_right = all(_left_to_right(lhs) == int(rhs) for lhs, rhs in (part.split(" = ") for part in parts))
        c = int(match[5]) if match[5] else None
        if not (digit_steps_right and c in (None, apply_op(a, op, b)) and problem.relevant(a, op, b)):
            return False
        results += [a, b] + ([c] if c is not None else [])
    outside = COLUMN.sub(" ", line)
    for match in EQUATION.finditer(outside):
        claimed = True
        tokens = match[1].split()
        if _left_to_right(match[1]) != int(match[2]) or (len(tokens) == 3 and not problem.relevant(int(tokens[0]), tokens[1], int(tokens[2]))):
            return False
        results += [int(tokens[0]), int(match[2])]
    verdict = _chain_or_expression(problem, line)
    if verdict is not None:
        return verdict
    return _conclusions(problem, EQUATION.sub(" ", outside), results, claimed)


def _chain_or_expression(problem: Problem, line: str) -> bool | None:
    chain = CHAIN.match(line)
    if chain:
        value, rest = int(chain[1]), chain[2].split()
        verdict = False
        for done in range(1, len(problem.ops) + 1):  # after `done` operations: their value, then the operations left
            expected = [part for op, b in problem.ops[done:] for part in (op, str(b))]
            if value == problem.values[done] and rest == expected:
                return True
            if value == problem.values[done] and rest == expected[:len(rest)]:
                verdict = None  # the right line, stopped part way (where a countdown closed it)
        return verdict
    expression = EXPRESSION.match(line)
    if expression:
        return expression[1].split() == [str(problem.first), *(part for op, b in problem.ops for part in (op, str(b)))]
    return None


def _conclusions(problem: Problem, text: str, results: list[int], claimed: bool) -> bool | None:
    """"So it is X" after a claim names one of that claim's numbers (its result, or the value an inverse check
    restores); on its own it names the answer."""
    for match in CONCLUSION.finditer(text):
        claimed = True
        value = int(match[1])
        if value not in (results or [problem.answer]):
            return False
    return True if claimed else None


def step_verdicts(question: str, steps: list[str]) -> list[bool | None]:
    """Each step's own verdict: True (its claims are right), False (one is wrong), None (no claim)."""
    problem = Problem.of(question)
    return [check_step(problem, step) for step in steps]


def first_error(question: str, steps: list[str]) -> int | None:
    """The index of the first wrong step, or None when none is wrong."""
    return next((i for i, verdict in enumerate(step_verdicts(question, steps)) if verdict is False), None)


def label_steps(question: str, steps: list[str]) -> list[bool]:
    """The PRM's labels: True up to the first wrong step, False from it on."""
    wrong_at = first_error(question, steps)
    return [wrong_at is None or i < wrong_at for i in range(len(steps))]
