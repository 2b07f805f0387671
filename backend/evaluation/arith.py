"""The built-in arithmetic suite (dataset name ``arith``): seeded problems with their answers.

Problems are seeded chains of additions and subtractions read left to right, such as
"Compute 37 + 48 - 12 + 5.", with 1 to 6 operations and operands of one or two digits; running
totals never go below zero (a subtraction that would is turned into an addition), so answers are
whole numbers. Everything depends only on the arguments (``random.Random(seed)``), so a suite is
fully described by ``(seed, n, min_ops, max_ops)`` and problem ids (``arith-{seed}-{i}``) are
stable. Sweeps and the Compare tab's examples read it here; training (`training.traces`) writes
the thinking traces the tiny models learn from these problems.

    make_problems(seed=0, n=3)      # [ArithProblem(id='arith-0-0', question='Compute ...', answer=..., n_ops=...), ...]
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass


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


ARITH_QUESTION = re.compile(r"^Compute \d{1,2}( [+-] \d{1,2})+\.$")


def is_arith_question(question: str) -> bool:
    """Whether `question` is of the built-in suite's form, "Compute 37 + 48 - 12 + 5." (whole numbers 0-99)."""
    return bool(ARITH_QUESTION.match(question.strip()))


def apply_op(acc: int, op: str, b: int) -> int:
    return acc + b if op == "+" else acc - b


def evaluate(question: str) -> int:
    """The value of a question, left to right."""
    acc, ops = parse_question(question)
    for op, b in ops:
        acc = apply_op(acc, op, b)
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
            if op == "-" and acc - b < 0:
                op = "+"  # column subtraction below needs a >= b
            acc = apply_op(acc, op, b)
            parts += [op, str(b)]
        question = f"Compute {' '.join(parts)}."
        problems.append(ArithProblem(id=f"arith-{seed}-{i}", question=question, answer=acc, n_ops=n_ops))
    return problems
