"""Built-in example questions for the Compare tab, with gold answers.

Arithmetic problems from the built-in suite (what the tiny models are trained
on, seeded apart from training) come first, then a few short competition-style
questions, written here, for real reasoning models.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.evaluation.arith import make_problems

EXAMPLE_SEED = 20_241_123  # not a training seed: examples are fresh problems


@dataclass(frozen=True)
class Example:
    label: str
    question: str
    gold: str


WORD_PROBLEMS = (
    Example("word: apples", "Tom has 3 boxes with 12 apples each. He gives away 7 apples. How many apples does he have left?", "29"),
    Example("word: primes", "What is the sum of all prime numbers less than 20?", "77"),
    Example("algebra: linear", "If 3x + 7 = 25, what is the value of x?", "6"),
    Example("geometry: triangle", "A right triangle has legs of length 6 and 8. What is the length of its hypotenuse?", "10"),
    Example("fractions", "What is $\\frac{1}{2} + \\frac{1}{3}$? Express your answer as a common fraction.", "\\frac{5}{6}"),
)


def builtin_examples(n_arith: int = 6) -> list[Example]:
    problems = make_problems(EXAMPLE_SEED, n_arith, min_ops=1, max_ops=6)
    arith = [Example(f"arith ({p.n_ops} ops): {p.question}", p.question, str(p.answer)) for p in problems]
    # The tiny models know arithmetic chains only: the others are for real reasoning models, and say so.
    return arith + [Example(f"{e.label} (for real reasoning models)", e.question, e.gold) for e in WORD_PROBLEMS]
