"""The arith suite: seeded problems, correct answers, traces in three styles."""

from __future__ import annotations

import random
import re

import pytest

from training.arith import (
    STYLES,
    ArithProblem,
    format_completion,
    make_problems,
    make_trace,
)


def _independent_value(question: str) -> int:
    """Evaluate "Compute a + b - c." without the module's parser (+/- are left-associative)."""
    m = re.fullmatch(r"Compute (-?\d+(?: [+-] \d+)+)\.", question)
    assert m, question
    return eval(m.group(1), {"__builtins__": {}})  # only digits, spaces, + and -


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = make_problems(3, 40)
    assert a == make_problems(3, 40)
    assert [p.question for p in a] != [p.question for p in make_problems(4, 40)]
    assert [p.id for p in a[:3]] == ["arith-3-0", "arith-3-1", "arith-3-2"]
    assert all(isinstance(p, ArithProblem) for p in a)


def test_answers_are_correct_and_difficulty_varies():
    problems = make_problems(11, 300)
    for p in problems:
        assert p.answer == _independent_value(p.question)
        assert p.question.count(" + ") + p.question.count(" - ") == p.n_ops
    assert {p.n_ops for p in problems} == set(range(1, 7))
    assert any(p.answer < 0 for p in problems)
    assert all(2 <= p.n_ops <= 3 for p in make_problems(1, 50, min_ops=2, max_ops=3))
    with pytest.raises(ValueError):
        make_problems(0, 1, min_ops=0)


@pytest.mark.parametrize("style", STYLES)
def test_traces_end_with_the_right_answer(style):
    rng = random.Random(0)
    for p in make_problems(5, 100):
        trace = make_trace(p, style, rng)
        last = re.findall(r"-?\d+", trace.strip().splitlines()[-1])
        assert int(last[-1]) == p.answer, (style, p, trace)
        completion = format_completion(trace, p.answer)
        assert completion.endswith(f"\n</think>\n\nThe answer is \\boxed{{{p.answer}}}.")
    with pytest.raises(ValueError):
        make_trace(p, "verbose", rng)


def test_step_lines_are_correct_and_checked_is_longer():
    rng = random.Random(1)
    problems = make_problems(9, 200)
    lengths = {s: 0 for s in STYLES}
    for p in problems:
        for s in STYLES:
            trace = make_trace(p, s, rng)
            lengths[s] += len(trace.split())
            for a, op, b, c in re.findall(r"(-?\d+) ([+-]) (\d+) = (-?\d+)", trace):
                assert int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b)), trace
    assert lengths["terse"] < lengths["steps"] < lengths["checked"]
    assert lengths["checked"] > 3 * lengths["terse"]
    checked = [make_trace(p, "checked", rng) for p in problems]
    assert sum("Wait" in t for t in checked) > len(checked) // 2
