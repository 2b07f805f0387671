"""The arith oracle's step labels on hand-checked traces, and steps cut on the policy's token ids
(issue 33). No engine: the tokenizer is the shipped model's own file."""

from __future__ import annotations

import random

import pytest

from backend.evaluation.arith import make_problems
from backend.evaluation.oracle import Problem, first_error, label_steps, step_verdicts
from backend.steps import split_steps, step_end_ids
from backend.settings import REPO_ROOT
from training.trace_checks import slipped_work
from training.traces import STYLES, format_completion, make_trace

QUESTION = "Compute 37 + 48 - 12 + 5."  # 85, 73, 78

HAND_CHECKED = [
    # (line, its own verdict): checked by hand against 37 + 48 = 85, 85 - 12 = 73, 73 + 5 = 78
    ("Let me compute step by step.", None),
    ("37 + 48 - 12 + 5", True),
    ("37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85.", True),
    ("= 85 - 12 + 5", True),
    ("Check 85 - 48: 15 - 8 = 7, 8 - 1 - 4 = 3, so 37. Yes.", True),  # the inverse of 37 + 48, worked
    ("85 - 12: 5 - 2 = 3, 8 - 1 = 7, so 73.", True),
    ("= 73 + 5", True),
    ("Wait, 73 + 5... check: 78 - 5 = 73. So it is 78.", True),
    ("= 78", True),
    ("So the answer is 78.", True),
    ("</think>", None),
    ("The answer is \\boxed{78}.", True),
]
WRONG = [
    ("37 + 48: 7 + 8 = 14, 3 + 4 + 1 = 8, so 84.", "a digit step off"),
    ("37 + 48: 7 + 8 = 15, 3 + 4 = 7, so 75.", "a carry dropped"),
    ("37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 86.", "the result does not assemble its digits"),
    ("37 + 12: 7 + 2 = 9, 3 + 1 = 4, so 49.", "right sums, an operation the problem does not have"),
    ("= 86 - 12 + 5", "a chain value off"),
    ("= 85 + 5", "an operation skipped"),
    ("37 + 48 - 12 + 6", "the question misread"),
    ("So the answer is 79.", "the wrong answer"),
    ("The answer is \\boxed{79}.", "the wrong boxed answer"),
    ("Wait, let me check: 85 - 48 = 36. Yes.", "a wrong check"),
]


@pytest.mark.parametrize(("line", "verdict"), HAND_CHECKED)
def test_each_hand_checked_line_gets_its_verdict(line, verdict):
    assert step_verdicts(QUESTION, [line]) == [verdict]


@pytest.mark.parametrize(("line", "why"), WRONG)
def test_a_wrong_line_is_wrong(line, why):
    assert step_verdicts(QUESTION, [line]) == [False], why


def test_labels_are_good_until_the_first_wrong_step_and_bad_after_it():
    lines = [line for line, _ in HAND_CHECKED]
    assert first_error(QUESTION, lines) is None and all(label_steps(QUESTION, lines))
    slipped = lines[:5] + ["85 - 12: 5 - 2 = 3, 8 - 1 = 6, so 63.", "= 63 + 5", "= 68", "So the answer is 68."]
    assert first_error(QUESTION, slipped) == 5
    assert label_steps(QUESTION, slipped) == [True] * 5 + [False] * 4
    # A slip carried forward: the later lines are consistent with it, and still bad.
    assert step_verdicts(QUESTION, slipped)[6:] == [False, False, False]


def test_countdown_ticks_and_a_line_cut_part_way_are_not_errors():
    assert step_verdicts(QUESTION, ["‹37›37 +‹36› 48: 7 + 8‹35› = 15, 3 + 4 + 1 = 8, so 85."]) == [True]
    assert step_verdicts(QUESTION, ["‹4›85 - 12:‹3› 5 - 2 = 3,"]) == [True]  # the work so far is right
    assert step_verdicts(QUESTION, ["= 73"]) == [None]  # "= 73 + 5" stopped where the countdown closed


def test_every_line_of_the_generated_traces_is_right_and_every_slip_is_caught():
    """The base model's four styles on 200 problems hold no wrong line; every slipped operation
    that `training.trace_checks` writes is one."""
    problems = make_problems(seed=4321, n=200)
    for problem in problems:
        rng = random.Random(problem.id)
        for style in STYLES:
            lines = format_completion(make_trace(problem, style, rng), problem.answer).split("\n")
            assert first_error(problem.question, lines) is None, (problem.question, style)
    slips = 0
    for problem in problems:
        facts = Problem.of(problem.question)
        for i, (op, b) in enumerate(facts.ops):
            slipped = slipped_work(facts.values[i], op, b, random.Random(i))
            if slipped:
                slips += 1
                assert step_verdicts(problem.question, [slipped[0]]) == [False], slipped
    assert slips > 300


def test_steps_cut_on_token_ids_rejoin_to_the_exact_ids():
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(REPO_ROOT / "models" / "l1-tiny" / "tokenizer.json"))
    ends = step_end_ids({i: tokenizer.decode([i]) for i in range(tokenizer.get_vocab_size())})
    problem = make_problems(seed=99, n=1, min_ops=3, max_ops=3)[0]
    text = format_completion(make_trace(problem, "checked", random.Random(0)), problem.answer)
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    steps = split_steps(ids, ends)
    assert [token for step in steps for token in step] == ids
    assert all(step[-1] in ends for step in steps[:-1]) and all(not set(step[:-1]) & ends for step in steps)
    # The tokenizer merges ".\n" into one token: a step ends on it, not on a bare newline.
    assert any("\n" in tokenizer.decode([step[-1]]) and tokenizer.decode([step[-1]]) != "\n" for step in steps)
    # Each step decodes to its line (with the line's newline), and the oracle reads the lines.
    lines = [tokenizer.decode(step) for step in steps]
    assert "".join(lines) == text
    assert first_error(problem.question, lines) is None


def test_the_oracle_verifier_scores_steps_and_refuses_other_questions():
    import asyncio

    from backend.errors import InputError
    from backend.evaluation.verifiers import OracleVerifier

    verifier = OracleVerifier()
    lines = ["37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85.\n", "= 84 - 12 + 5\n", "= 72 + 5\n"]
    scored = asyncio.run(verifier.score(QUESTION, lines))
    assert scored.scores == (1.0, 0.0, 0.0) and scored.tokens == 0
    with pytest.raises(InputError, match="built-in arith questions only"):
        asyncio.run(verifier.score("What is 17 * 23?", ["17 * 23 = 391\n"]))
