"""LCPO rewards: hand-computed values, TRL's calling convention, and the errors a bad setup gets.

Golds are integers only, so grading stays on the grader's in-process fast path (no math-verify
worker is started) and the whole file runs in well under a second.
"""

from __future__ import annotations

import doctest

import pytest

import training.rewards as rewards_module
from training.rewards import (
    answer_after_thinking,
    completion_text,
    exact_reward,
    is_correct,
    length_stats,
    make_lcpo_reward,
    max_reward,
)
from training.traces import format_completion

# Completions in the tiny model's format: they start inside the thinking (the prompt opened <think>).
RIGHT = format_completion("Let me compute step by step.\n37 + 48 = 85.\nSo the answer is 85.", 85)
WRONG = format_completion("Let me compute step by step.\n37 + 48 = 84.\nSo the answer is 84.", 84)
UNFINISHED = "Let me compute step by step.\n37 + 48 = 85.\nSo the answer is \\boxed{85}. Wait, let me"


def ids(n: int) -> list[int]:
    return [7] * n


def trl_call(reward, completions, lengths, **columns):
    """Call ``reward`` the way GRPOTrainer does, extra keyword arguments included."""
    return reward(
        prompts=["Compute 37 + 48."] * len(completions),
        completions=completions,
        completion_ids=[ids(n) for n in lengths],
        trainer_state=object(),
        log_extra=lambda *a, **k: None,
        log_metric=lambda *a, **k: None,
        **columns,
    )


# --------------------------------------------------------------------------------------------
# Scalar rewards
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "n_y", "n_gold", "alpha", "expected"),
    [
        (True, 1100, 1000, 0.0003, 0.97),  # 1 - 0.0003 * 100
        (False, 1100, 1000, 0.0003, -0.03),  # 0 - 0.0003 * 100
        (True, 900, 1000, 0.0003, 0.97),  # undershooting costs the same as overshooting
        (True, 1000, 1000, 0.0003, 1.0),
        (False, 1000, 1000, 0.0003, 0.0),
        (True, 4000, 1000, 0.0003, 0.1),  # 1 - 0.9
        (False, 4000, 1000, 0.0003, -0.9),  # unbounded below: a wrong answer can go negative
        (True, 1500, 1000, 0.001, 0.5),  # 1 - 0.001 * 500
        (True, 5000, 1000, 0.0, 1.0),  # alpha 0: plain correctness reward
    ],
)
def test_exact_reward(correct, n_y, n_gold, alpha, expected):
    assert exact_reward(correct, n_y, n_gold, alpha=alpha) == pytest.approx(expected)


def test_exact_reward_default_alpha_is_0_0003():
    assert exact_reward(True, n_y=1100, n_gold=1000) == pytest.approx(0.97)


@pytest.mark.parametrize(
    ("n_y", "expected"),
    [
        (800, 0.7),  # clip(0.001 * 200 + 0.5)
        (1000, 0.5),  # at the target: delta
        (1100, 0.4),  # clip(-0.1 + 0.5)
        (500, 1.0),  # clip(1.0): exactly the top
        (100, 1.0),  # clip(1.4) -> 1.0
        (1500, 0.0),  # clip(0.0): exactly the bottom
        (1600, 0.0),  # clip(-0.1) -> 0.0
    ],
)
def test_max_reward_correct(n_y, expected):
    assert max_reward(True, n_y=n_y, n_gold=1000) == pytest.approx(expected)


@pytest.mark.parametrize("n_y", [1, 100, 800, 1000, 1600, 10_000])
def test_max_reward_wrong_is_zero_at_any_length(n_y):
    assert max_reward(False, n_y=n_y, n_gold=1000) == 0.0


def test_max_reward_custom_alpha_and_delta():
    # clip(0.002 * 100 + 0.3) = 0.5; clip(0.002 * -100 + 0.3) = 0.1
    assert max_reward(True, n_y=900, n_gold=1000, alpha=0.002, delta=0.3) == pytest.approx(0.5)
    assert max_reward(True, n_y=1100, n_gold=1000, alpha=0.002, delta=0.3) == pytest.approx(0.1)


# --------------------------------------------------------------------------------------------
# Completions and correctness
# --------------------------------------------------------------------------------------------


def test_answer_after_thinking_takes_the_text_after_the_last_think_end():
    assert answer_after_thinking("a</think>b</think> c") == " c"
    assert answer_after_thinking(RIGHT) == "\n\nThe answer is \\boxed{85}."
    assert answer_after_thinking("x</think>") == ""
    assert answer_after_thinking(UNFINISHED) is None
    assert answer_after_thinking("") is None


@pytest.mark.parametrize(
    ("text", "gold", "expected"),
    [
        (RIGHT, "85", True),
        (RIGHT, 85, True),  # integer gold column
        (WRONG, "85", False),  # wrong boxed answer
        (UNFINISHED, "85", False),  # right box, but inside unfinished thinking
        ("\\boxed{85}\n</think>\n\nThe answer is 85.", "85", False),  # box only in the thinking
        ("...\n</think>\n\nThe answer is 85.", "85", False),  # no box at all
        ("...\n</think>\n\n\\boxed{1,234}", "1234", True),  # thousands commas: fast integer path
        ("...\n</think>\n\n\\boxed{-7}", "-7", True),
        (RIGHT, None, False),  # no gold: undecided -> not correct
        (RIGHT, "", False),
    ],
)
def test_is_correct(text, gold, expected):
    assert is_correct(text, gold) is expected


def test_completion_text_both_formats():
    assert completion_text(RIGHT) == RIGHT
    assert completion_text([{"role": "assistant", "content": RIGHT}]) == RIGHT
    parts = [{"type": "text", "text": "a</think>"}, {"type": "text", "text": "\\boxed{1}"}]
    assert completion_text([{"role": "assistant", "content": parts}]) == "a</think>\\boxed{1}"
    # Tool turns (TRL's tool loop) are not model output.
    msgs = [{"role": "assistant", "content": "a"}, {"role": "tool", "content": "zzz"}, {"role": "assistant", "content": "b"}]
    assert completion_text(msgs) == "ab"


@pytest.mark.parametrize("bad", [None, 42, ["not a message"], [{"role": "assistant", "content": 3}]])
def test_completion_text_rejects_other_shapes(bad):
    with pytest.raises(TypeError, match="string|content"):
        completion_text(bad)


# --------------------------------------------------------------------------------------------
# The TRL-shaped reward function
# --------------------------------------------------------------------------------------------


def test_names_for_trl_logging():
    for mode in ("exact", "max", "both"):
        assert make_lcpo_reward(mode).__name__ == f"lcpo_{mode}"


def test_exact_with_string_completions():
    reward = make_lcpo_reward("exact", alpha=0.0003)
    out = trl_call(
        reward,
        [RIGHT, RIGHT, WRONG, UNFINISHED],
        [1100, 1000, 1100, 1000],
        answer=["85"] * 4,
        target_tokens=[1000] * 4,
    )
    assert out == pytest.approx([0.97, 1.0, -0.03, 0.0])
    assert all(isinstance(r, float) for r in out)


def test_max_with_conversational_completions():
    reward = make_lcpo_reward("max", alpha=0.001, delta=0.5)
    completions = [[{"role": "assistant", "content": c}] for c in (RIGHT, RIGHT, RIGHT, RIGHT, WRONG, UNFINISHED)]
    out = trl_call(
        reward,
        completions,
        [800, 1000, 100, 1600, 100, 100],
        answer=["85"] * 6,
        target_tokens=[1000] * 6,
    )
    assert out == pytest.approx([0.7, 0.5, 1.0, 0.0, 0.0, 0.0])


def test_length_is_the_number_of_completion_ids_not_of_characters():
    reward = make_lcpo_reward("exact")
    # Same text, different token counts -> different rewards; per-row targets and golds.
    out = trl_call(reward, [RIGHT, RIGHT], [50, 150], answer=["85", "85"], target_tokens=[100, 200])
    assert out == pytest.approx([1 - 0.0003 * 50, 1 - 0.0003 * 50])


def test_default_alpha_per_mode():
    exact = trl_call(make_lcpo_reward("exact"), [RIGHT], [1100], answer=["85"], target_tokens=[1000])
    maxr = trl_call(make_lcpo_reward("max"), [RIGHT], [800], answer=["85"], target_tokens=[1000])
    assert exact == pytest.approx([0.97])  # alpha 0.0003
    assert maxr == pytest.approx([0.7])  # alpha 0.001, delta 0.5


def test_both_mode_uses_each_rows_mode():
    reward = make_lcpo_reward("both")
    out = trl_call(
        reward,
        [RIGHT, RIGHT, WRONG, WRONG],
        [800, 800, 1100, 1100],
        answer=["85"] * 4,
        target_tokens=[1000] * 4,
        mode=["exact", "max", "exact", "max"],
    )
    # exact: 1 - 0.0003 * 200; max: clip(0.2 + 0.5); wrong exact: -0.03; wrong max: 0
    assert out == pytest.approx([0.94, 0.7, -0.03, 0.0])


def test_both_mode_with_an_explicit_alpha_applies_it_to_every_row():
    reward = make_lcpo_reward("both", alpha=0.001, delta=0.5)
    out = trl_call(reward, [RIGHT, RIGHT], [800, 800], answer=["85"] * 2, target_tokens=[1000] * 2, mode=["exact", "max"])
    assert out == pytest.approx([0.8, 0.7])


def test_single_mode_ignores_a_mode_column():
    reward = make_lcpo_reward("max")
    out = trl_call(reward, [RIGHT], [800], answer=["85"], target_tokens=[1000], mode=["exact"])
    assert out == pytest.approx([0.7])


def test_both_mode_without_a_mode_column():
    reward = make_lcpo_reward("both")
    with pytest.raises(ValueError, match="column 'mode'"):
        trl_call(reward, [RIGHT], [800], answer=["85"], target_tokens=[1000])


def test_both_mode_with_an_unknown_row_mode():
    reward = make_lcpo_reward("both")
    with pytest.raises(ValueError, match=r"mode\[1\] must be \"exact\" or \"max\""):
        trl_call(reward, [RIGHT, RIGHT], [8, 8], answer=["85"] * 2, target_tokens=[10] * 2, mode=["max", "both"])


@pytest.mark.parametrize("missing", ["answer", "target_tokens"])
def test_missing_columns(missing):
    columns = {"answer": ["85"], "target_tokens": [1000]}
    del columns[missing]
    with pytest.raises(ValueError, match=f"column '{missing}'"):
        trl_call(make_lcpo_reward("exact"), [RIGHT], [800], **columns)


def test_mismatched_lengths():
    reward = make_lcpo_reward("exact")
    with pytest.raises(ValueError, match="2 values for 1 completions"):
        trl_call(reward, [RIGHT], [800], answer=["85", "85"], target_tokens=[1000])
    with pytest.raises(ValueError, match="completion_ids"):
        reward(completions=[RIGHT], completion_ids=[], answer=["85"], target_tokens=[1000])


@pytest.mark.parametrize("bad", [0, -5, 1000.0, "1000", True, None])
def test_bad_target_tokens(bad):
    with pytest.raises(ValueError, match=r"target_tokens(\[0\])?"):
        trl_call(make_lcpo_reward("exact"), [RIGHT], [800], answer=["85"], target_tokens=[bad])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "exactly"}, "unknown LCPO mode 'exactly'; use one of exact, max, both"),
        ({"mode": "exact", "alpha": -0.1}, "alpha must be a finite number >= 0"),
        ({"mode": "exact", "alpha": float("nan")}, "alpha must be"),
        ({"mode": "max", "alpha": float("inf")}, "alpha must be"),
        ({"mode": "max", "delta": 1.5}, r"delta must be in \[0, 1\]"),
        ({"mode": "max", "delta": -0.1}, r"delta must be in \[0, 1\]"),
        ({"mode": "max", "delta": float("nan")}, r"delta must be in \[0, 1\]"),
        ({"mode": "max", "grade_timeout_s": 0}, "grade_timeout_s must be > 0"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_lcpo_reward(**kwargs)


def test_edge_parameters_are_allowed():
    make_lcpo_reward("exact", alpha=0.0)
    make_lcpo_reward("max", delta=0.0)
    make_lcpo_reward("max", delta=1.0)


# --------------------------------------------------------------------------------------------
# Length metrics
# --------------------------------------------------------------------------------------------


def test_length_stats():
    stats = length_stats([ids(800), ids(1000), ids(1200), ids(300)], [1000, 1000, 1000, 200])
    assert stats["mean_length"] == pytest.approx(825.0)
    # |800-1000|/1000 = 0.2, 0, 0.2, |300-200|/200 = 0.5 -> mean 0.225
    assert stats["mean_abs_rel_dev"] == pytest.approx(0.225)
    assert stats["over_target"] == pytest.approx(0.5)  # 1200 > 1000 and 300 > 200; 1000 is not over
    assert set(stats) == {"mean_length", "mean_abs_rel_dev", "over_target"}


def test_length_stats_errors():
    with pytest.raises(ValueError, match="at least one"):
        length_stats([], [])
    with pytest.raises(ValueError, match="2 target_tokens for 1 completions"):
        length_stats([ids(3)], [4, 5])
    with pytest.raises(ValueError, match=r"target_tokens\[0\] must be > 0"):
        length_stats([ids(3)], [0])


# --------------------------------------------------------------------------------------------
# The worked examples in the docstrings are correct
# --------------------------------------------------------------------------------------------


def test_docstring_examples():
    result = doctest.testmod(rewards_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 15
    assert result.failed == 0
