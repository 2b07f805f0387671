"""Thinking traces for the built-in arithmetic suite (`backend.evaluation.arith`): what the tiny models learn.

The thinking traces that the tiny base model (``training/tiny/``) is fine-tuned on, in four
styles whose lengths differ a lot, so that thinking longer buys accuracy. The working is a chain
that rewrites the expression, folding one operation per line ("37 + 48 - 12 + 5", "= 85 - 12 + 5",
"= 73 + 5", "= 78"): each line copies the previous one and adds two numbers, which a model of a
few million parameters learns quickly.

* ``terse``: the result only ("The result is 78."), computed in one shot;
* ``brief``: the chain with no preamble, often folding two or three operations
  in one line (shorter, less reliable), then "So it is 78.";
* ``steps``: "Let me compute step by step.", the whole chain with each operation
  worked digit by digit ("37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85."), then
  "So the answer is 78.";
* ``checked``: "Let me compute step by step and check my work.", the worked chain with
  re-checks ("Wait, let me check: 85 - 48 = 37. Yes.") and sometimes a second
  pass over the whole chain: tens to a few hundred tokens.

Print a few problems with their traces and completions:

    python -m training.traces --seed 0 -n 3
"""

from __future__ import annotations

import argparse
import random

from backend.evaluation.arith import ArithProblem, apply_op, make_problems, parse_question

STYLES = ("terse", "brief", "steps", "checked")
# First lines of the thinking: a style is chosen by the first tokens, so a greedy decoder
# (which would always pick the most likely first token) follows one style to the end, and an
# eval can force a style by prefilling its opening.
TERSE_OPENING = "The result is"
STEPS_OPENING = "Let me compute step by step."
CHECKED_OPENING = "Let me compute step by step and check my work."
OPENINGS = {"terse": TERSE_OPENING, "steps": STEPS_OPENING, "checked": CHECKED_OPENING}  # brief has none


def _chain(problem: ArithProblem, jump_p: float, rng: random.Random, work: bool = False, column_style: str = "compact") -> list[str]:
    """The expression rewritten line by line: each line folds the first operation into its
    result ("37 + 48 - 12 + 5", "= 85 - 12 + 5", "= 73 + 5", "= 78"). With ``jump_p``, a line
    sometimes folds two or three operations at once (shorter, and harder to get right in one
    shot); ``work`` puts each operation's column working (`column_work`) before its line."""
    acc, ops = parse_question(problem.question)
    lines = [problem.question.removeprefix("Compute ").removesuffix(".")]
    i = 0
    while i < len(ops):
        fold = 1
        while fold < 3 and i + fold < len(ops) and rng.random() < jump_p:
            fold += 1
        for op, b in ops[i : i + fold]:
            if work:
                lines.append(column_work(acc, op, b, column_style))
            acc = apply_op(acc, op, b)
        i += fold
        rest = "".join(f" {op} {b}" for op, b in ops[i:])
        lines.append(f"= {acc}{rest}")
    return lines


COLUMN_STYLES = ("compact", "explicit")


def column_work(a: int, op: str, b: int, style: str = "compact") -> str:
    """Schoolbook working of ``a op b`` (``a >= 0``, and ``a >= b`` for "-"), units first:
    "37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85." and "73 - 18: 13 - 8 = 5, 7 - 1 - 1 = 5, so 55."
    Each step is one-digit arithmetic with a carry or borrow, which a tiny model gets right
    far more often than a whole two-digit sum in one shot.

    ``style="explicit"`` writes a column before deciding to borrow ("2 - 3 - 1 < 0, 12 - 3 - 1 = 8":
    the compact "12" must be chosen from digits read far back, the commonest slip of l1-tiny, I30-8)
    and carries the digits no operand touches ("2 = 2"), so that "so 225" only reads back the steps."""
    if style not in COLUMN_STYLES:
        raise ValueError(f"column style {style!r}: choose {' or '.join(COLUMN_STYLES)}")
    explicit = style == "explicit"
    da, db = str(a)[::-1], str(b)[::-1]
    steps, carry, i = [], 0, 0
    while i < len(db) or (carry and i < len(da)) or (explicit and i < len(da)):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else None
        if op == "+":
            parts = [str(x)] + ([str(y)] if y is not None else []) + (["1"] if carry else [])
            total = x + (y or 0) + carry
            steps.append(f"{' + '.join(parts)} = {total}")
            carry = total // 10
        else:
            need = x - (y or 0) - carry < 0
            rest = ([str(y)] if y is not None else []) + (["1"] if carry else [])
            digit = x + 10 * need - (y or 0) - carry
            if explicit and need:
                plain = " - ".join([str(x), *rest])
                steps.append(f"{plain} < 0, 1{plain} = {digit}")
            else:
                steps.append(f"{' - '.join([f'1{x}' if need else str(x), *rest])} = {digit}")
            carry = int(need)
        i += 1
    result = a + b if op == "+" else a - b
    return f"{a} {op} {b}: {', '.join(steps)}, so {result}."


def _steps(problem: ArithProblem) -> list[tuple[int, str, int, int]]:
    """(a, op, b, a op b) for each operation, left to right."""
    acc, ops = parse_question(problem.question)
    out = []
    for op, b in ops:
        new = apply_op(acc, op, b)
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


def make_trace(problem: ArithProblem, style: str, rng: random.Random, column_style: str = "compact") -> str:
    """The thinking (the text inside the think block) in one of ``STYLES``; it ends with the answer;
    ``column_style``: how each operation is worked (`column_work`)."""
    ans = problem.answer
    if style == "terse":
        return f"The result is {ans}."
    if style == "brief":
        return "\n".join(_chain(problem, 0.4, rng) + [f"So it is {ans}."])
    if style == "steps":
        return "\n".join([STEPS_OPENING] + _chain(problem, 0.0, rng, work=True, column_style=column_style) + [f"So the answer is {ans}."])
    if style == "checked":
        p_check = rng.choice([0.3, 0.6, 1.0])
        chain = _chain(problem, 0.0, rng)
        lines = [CHECKED_OPENING, chain[0]]
        for line, (a, op, b, c) in zip(chain[1:], _steps(problem)):
            lines += [column_work(a, op, b, column_style), line]
            if rng.random() < p_check:
                lines.append(_check_line(a, op, b, c, rng))
        lines.append(f"So the result is {ans}.")
        if rng.random() < 0.5:
            lines.append("Wait, let me check the whole computation again.")
            lines += chain
            lines.append(f"Yes, so it is {ans}.")
        lines.append(f"Therefore the answer is {ans}.")
        return "\n".join(lines)
    raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")


def format_completion(thinking: str, answer: int, final_answer_form: bool = False) -> str:
    """The assistant text after the generation prompt (which already opened ``<think>\\n``).

    ``final_answer_form`` answers "Final Answer: \\boxed{N}", the text that s1 budget forcing
    (backend/controllers/s1.py) inserts after closing the thinking, so that s1 is in distribution."""
    if final_answer_form:
        return f"{thinking}\n</think>\n\nFinal Answer: \\boxed{{{answer}}}"
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
            print(format_completion(make_trace(p, style, rng), p.answer, final_answer_form=style == "brief"))


if __name__ == "__main__":
    _main()
