"""The arith suite: seeded problems, correct answers, traces in four styles."""

from __future__ import annotations

import random
import re

import pytest

from backend.evaluation.arith import ArithProblem, make_problems, parse_question
from training.traces import STYLES, column_work, format_completion, make_trace


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
    assert all(p.answer >= 0 for p in problems)
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
        s1_form = format_completion(trace, p.answer, final_answer_form=True)
        assert s1_form.endswith(f"\n</think>\n\nFinal Answer: \\boxed{{{p.answer}}}")
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
            # every "x op y (op z) = r" written anywhere (steps, digit columns, checks) is right
            for expr, result in re.findall(r"((?:\d+ [+-] )+\d+) = (\d+)", trace):
                assert eval(expr, {"__builtins__": {}}) == int(result), (expr, result, trace)
    assert lengths["terse"] < lengths["brief"] < lengths["steps"] < lengths["checked"]
    assert lengths["checked"] > 3 * lengths["terse"]
    checked = [make_trace(p, "checked", rng) for p in problems]
    assert sum("Wait" in t for t in checked) > len(checked) // 2


@pytest.mark.parametrize(("a", "op", "b", "expected"), [
    (37, "+", 48, "37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85."),
    (73, "-", 18, "73 - 18: 13 - 8 = 5, 7 - 1 - 1 = 5, so 55."),
    (185, "+", 8, "185 + 8: 5 + 8 = 13, 8 + 1 = 9, so 193."),
    (105, "-", 98, "105 - 98: 15 - 8 = 7, 10 - 9 - 1 = 0, 1 - 1 = 0, so 7."),
    (999, "+", 5, "999 + 5: 9 + 5 = 14, 9 + 1 = 10, 9 + 1 = 10, so 1004."),
])
def test_column_work_carries_and_borrows(a, op, b, expected):
    assert column_work(a, op, b) == expected


@pytest.mark.parametrize(("a", "op", "b", "expected"), [
    (225, "-", 36, "225 - 36: 5 - 6 < 0, 15 - 6 = 9, 2 - 3 - 1 < 0, 12 - 3 - 1 = 8, 2 - 1 = 1, so 189."),
    (219, "+", 6, "219 + 6: 9 + 6 = 15, 1 + 1 = 2, 2 = 2, so 225."),
    (133, "-", 5, "133 - 5: 3 - 5 < 0, 13 - 5 = 8, 3 - 1 = 2, 1 = 1, so 128."),
    (100, "-", 1, "100 - 1: 0 - 1 < 0, 10 - 1 = 9, 0 - 1 < 0, 10 - 1 = 9, 1 - 1 = 0, so 99."),
    (999, "+", 5, "999 + 5: 9 + 5 = 14, 9 + 1 = 10, 9 + 1 = 10, so 1004."),
])
def test_explicit_column_work_writes_the_column_before_the_borrow_and_carries_untouched_digits(a, op, b, expected):
    """The explicit style (l1-tiny's traces, I30-8): a borrow is decided right after the column it
    depends on is written, and "so R" only reads the steps back."""
    assert column_work(a, op, b, "explicit") == expected


def test_an_unknown_column_style_is_refused():
    with pytest.raises(ValueError, match="column style 'wide'"):
        column_work(1, "+", 2, "wide")


def test_running_totals_never_go_below_zero():
    for p in make_problems(12, 300):
        acc, ops = parse_question(p.question)
        for op, b in ops:
            acc = acc + b if op == "+" else acc - b
            assert acc >= 0, p


def test_chain_lines_fold_operations_and_keep_the_rest():
    """Each "= ..." line is the previous expression with its first one (brief: one or two)
    operations folded: its value is unchanged and it has fewer operations."""
    rng = random.Random(2)
    folded_two = 0
    for p in make_problems(6, 200):
        for style in ("brief", "steps"):
            lines = [line for line in make_trace(p, style, rng).splitlines() if re.fullmatch(r"(= )?-?\d+( [+-] \d+)*", line)]
            exprs = [line.removeprefix("= ") for line in lines]
            assert exprs[0] == p.question.removeprefix("Compute ").removesuffix(".")
            assert exprs[-1] == str(p.answer)
            for before, after in zip(exprs, exprs[1:]):
                assert _independent_value(f"Compute {after} + 0.") == _independent_value(f"Compute {before} + 0.")
                dropped = before.count(" ") // 2 - after.count(" ") // 2
                assert dropped in ((1, 2, 3) if style == "brief" else (1,))
                folded_two += dropped == 2
    assert folded_two > 20
