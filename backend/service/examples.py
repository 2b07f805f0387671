"""Built-in example questions for the Compare tab, with gold answers.

The default question comes first, then arithmetic problems from the built-in suite
(what the tiny models are trained on, seeded apart from training), then a few short
competition-style questions, written here, for real reasoning models.
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


# The Compare tab's default question, the first comparison a newcomer sees. With the tab's default
# budgets (128 / 256 / 384), controllers (l1_exact, s1, hard_cap) and seed 0 on the shipped l1-tiny,
# every card is right and each l1_exact card lands within 10% of N (tests/test_browser.py checks it).
# Chosen among 37 fresh arith problems of 1-3 operations as the one where all nine cards were right:
# at N = 128 most longer problems overshoot or the plain-prompt methods miss on l1-tiny
# (models/l1-tiny/EXPERIMENTS.md, I30-5).
DEFAULT_EXAMPLE = Example("arith (1 op): Compute 9 - 6.", "Compute 9 - 6.", "3")

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
    return [DEFAULT_EXAMPLE] + arith + [Example(f"{e.label} (for real reasoning models)", e.question, e.gold) for e in WORD_PROBLEMS]
