"""The built-in arithmetic suite (dataset name ``arith``) and its thinking traces.

Problems are seeded chains of additions and subtractions read left to right,
such as "Compute 37 + 48 - 12 + 5.", with 1 to 6 operations and operands of one
or two digits; answers are integers and may be negative. Everything depends
only on the arguments (``random.Random(seed)``), so a suite is fully described
by ``(seed, n, min_ops, max_ops)`` and problem ids (``arith-{seed}-{i}``) are
stable.

The same module writes the thinking traces that the tiny base model
(``training/tiny_model.py``) is fine-tuned on, in three styles whose lengths
differ a lot, so that thinking longer buys accuracy:

* ``terse``: the result only ("The result is 73."), computed in one shot;
* ``steps``: "Let me compute step by step.", the expression restated
  ("We have 37 + 48 - 12 + 5."), one line per operation ("37 + 48 = 85."),
  then "So the answer is 73.";
* ``checked``: "Let me compute step by step and check my work.", the same lines
  with re-checks ("Wait, let me check: 85 - 48 = 37. Yes.") and sometimes a
  second pass over the whole chain: tens to a few hundred tokens.

Print a few problems with their traces and completions:

    python -m training.arith --seed 0 -n 3
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

STYLES = ("terse", "steps", "checked")
# First lines of the thinking: a style is chosen by the first tokens, so a greedy decoder
# (which would always pick the most likely first token) follows one style to the end, and an
# eval can force a style by prefilling its opening.
TERSE_OPENING = "The result is"
STEPS_OPENING = "Let me compute step by step."
CHECKED_OPENING = "Let me compute step by step and check my work."
OPENINGS = {"terse": TERSE_OPENING, "steps": STEPS_OPENING, "checked": CHECKED_OPENING}


@dataclass(frozen=True)
class ArithProblem:
    id: str
    question: str
    answer: int
    n_ops: int


def _operand(rng: random.Random) -> int:
    """One or two digits, 1 to 99 (difficulty varies with the operand size)."""
    if rng.random() < 0.5:
        return rng.randint(1, 9)
    return rng.randint(10, 99)


def parse_question(question: str) -> tuple[int, list[tuple[str, int]]]:
    """The first operand and the (op, operand) pairs of "Compute a + b - c."."""
    body = question.removeprefix("Compute ").removesuffix(".")
    tokens = body.split()
    first = int(tokens[0])
    ops = [(tokens[i], int(tokens[i + 1])) for i in range(1, len(tokens), 2)]
    return first, ops


def _apply(acc: int, op: str, b: int) -> int:
    return acc + b if op == "+" else acc - b


def evaluate(question: str) -> int:
    """The value of a question, left to right."""
    acc, ops = parse_question(question)
    for op, b in ops:
        acc = _apply(acc, op, b)
    return acc


def make_problems(seed: int, n: int, min_ops: int = 1, max_ops: int = 6) -> list[ArithProblem]:
    """``n`` problems with ``min_ops``..``max_ops`` operations, a function of the arguments only."""
    if not 1 <= min_ops <= max_ops:
        raise ValueError(f"need 1 <= min_ops <= max_ops, got {min_ops}, {max_ops}")
    rng = random.Random(seed)
    problems = []
    for i in range(n):
        n_ops = rng.randint(min_ops, max_ops)
        acc = _operand(rng)
        parts = [str(acc)]
        for _ in range(n_ops):
            op = rng.choice("+-")
            b = _operand(rng)
            if op == "-" and acc - b < 0 and rng.random() < 0.6:
                op = "+"  # keep negative results, but fewer of them
            acc = _apply(acc, op, b)
            parts += [op, str(b)]
        question = f"Compute {' '.join(parts)}."
        problems.append(ArithProblem(id=f"arith-{seed}-{i}", question=question, answer=acc, n_ops=n_ops))
    return problems


def _steps(problem: ArithProblem) -> list[tuple[int, str, int, int]]:
    """(a, op, b, a op b) for each operation, left to right."""
    acc, ops = parse_question(problem.question)
    out = []
    for op, b in ops:
        new = _apply(acc, op, b)
        out.append((acc, op, b, new))
        acc = new
    return out


def _check_line(a: int, op: str, b: int, c: int, rng: random.Random) -> str:
    """A re-check of ``a op b = c`` by the inverse operation or by recomputing."""
    inverse = f"{c} - {b} = {a}" if op == "+" else f"{c} + {b} = {a}"
    kind = rng.random()
    if kind < 0.45:
        return f"Wait, let me check: {inverse}. Yes."
    if kind < 0.7:
        return f"Let me check: {inverse}, so {a} {op} {b} = {c} is right."
    if kind < 0.85:
        return f"Wait, {a} {op} {b}... check: {inverse}. So it is {c}."
    return f"Check again: {a} {op} {b} = {c}. Therefore {c}."


def make_trace(problem: ArithProblem, style: str, rng: random.Random) -> str:
    """The thinking (the text inside the think block) in one of ``STYLES``; it ends with the answer."""
    ans = problem.answer
    if style == "terse":
        return f"The result is {ans}."
    steps = _steps(problem)
    restated = f"We have {problem.question.removeprefix('Compute ')}"
    if style == "steps":
        lines = [STEPS_OPENING, restated] + [f"{a} {op} {b} = {c}." for a, op, b, c in steps]
        return "\n".join(lines + [f"So the answer is {ans}."])
    if style == "checked":
        p_check = rng.choice([0.3, 0.6, 1.0])
        lines = [CHECKED_OPENING, restated]
        for a, op, b, c in steps:
            lines.append(f"{a} {op} {b} = {c}.")
            if rng.random() < p_check:
                lines.append(_check_line(a, op, b, c, rng))
        lines.append(f"So the result is {ans}.")
        if rng.random() < 0.5:
            lines.append("Wait, let me check the whole computation again.")
            lines += [f"{a} {op} {b} = {c}." for a, op, b, c in steps]
            lines.append(f"Yes, so it is {ans}.")
        lines.append(f"Therefore the answer is {ans}.")
        return "\n".join(lines)
    raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")


def format_completion(thinking: str, answer: int) -> str:
    """The assistant text after the generation prompt (which already opened ``<think>\\n``)."""
    return f"{thinking}\n</think>\n\nThe answer is \\boxed{{{answer}}}."


def _main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-n", type=int, default=3)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    for p in make_problems(args.seed, args.n):
        print(f"== {p.id} ({p.n_ops} ops): {p.question} -> {p.answer}")
        for style in STYLES:
            print(f"-- {style}:")
            print(format_completion(make_trace(p, style, rng), p.answer))


if __name__ == "__main__":
    _main()
