"""LCPO reward functions (L1 paper, "Length Controlled Policy Optimization") for TRL's GRPOTrainer.

A completion earns the reward of its mode against the target length ``n_gold`` (dataset column
``target_tokens``), where ``n_y`` is the number of generated tokens of the whole completion
(thinking and answer, ``len(completion_ids[i])``) and correctness is that of the boxed answer
after the last ``</think>`` against the dataset column ``answer``:

* L1-Exact: ``r = 1[correct] - alpha * |n_gold - n_y|`` (default ``alpha = 0.0003``);
* L1-Max:   ``r = 1[correct] * clip(alpha * (n_gold - n_y) + delta, 0, 1)``
  (defaults ``alpha = 0.001``, ``delta = 0.5``, as the L1 release's code computes it).

Usage::

    from trl import GRPOTrainer
    from training.rewards import make_lcpo_reward

    reward = make_lcpo_reward("exact")             # logged by TRL as "lcpo_exact"
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=ds, ...)
    # ds rows: {"prompt": ..., "answer": "73", "target_tokens": 512}
    # (and "mode": "exact" / "max" per row for make_lcpo_reward("both"))

Called directly, the way TRL calls it:

>>> reward = make_lcpo_reward("exact")
>>> done = "37 + 48 = 85.\\n</think>\\n\\nThe answer is \\\\boxed{85}."
>>> [round(r, 4) for r in reward(prompts=["p", "p"], completions=[done, "37 + 48 = 8"],
...                              completion_ids=[[0] * 110, [0] * 100],
...                              answer=["85", "85"], target_tokens=[100, 100])]
[0.997, 0.0]

The second completion never closed its thinking, so it is not correct; it hit the target
length exactly, so it loses nothing for length either.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from backend.controllers.prompts import THINK_END
from backend.evaluation.grading import grade

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_DELTA",
    "MODES",
    "answer_after_thinking",
    "completion_text",
    "exact_reward",
    "is_correct",
    "length_stats",
    "make_lcpo_reward",
    "max_reward",
]

MODES = ("exact", "max", "both")
# Per-mode defaults: the paper's alpha for Exact, the L1 release code's alpha for Max.
DEFAULT_ALPHA = {"exact": 0.0003, "max": 0.001}
DEFAULT_DELTA = 0.5

RewardFunc = Callable[..., list[float]]


# ---------------------------------------------------------------------------------------------
# Scalar rewards (pure arithmetic)
# ---------------------------------------------------------------------------------------------


def exact_reward(correct: bool, n_y: int, n_gold: int, alpha: float = 0.0003) -> float:
    """L1-Exact: ``1[correct] - alpha * |n_gold - n_y|``; overshooting and undershooting cost alike.

    >>> round(exact_reward(True, n_y=1100, n_gold=1000), 4)   # 1 - 0.0003 * 100
    0.97
    >>> round(exact_reward(False, n_y=1100, n_gold=1000), 4)  # 0 - 0.0003 * 100
    -0.03
    """
    return float(correct) - alpha * abs(n_gold - n_y)


def max_reward(correct: bool, n_y: int, n_gold: int, alpha: float = 0.001, delta: float = 0.5) -> float:
    """L1-Max: ``1[correct] * clip(alpha * (n_gold - n_y) + delta, 0, 1)``.

    A correct answer at the target earns ``delta``; every token under it earns ``alpha`` more
    (up to 1), every token over it ``alpha`` less (down to 0). A wrong answer earns 0 at any
    length, so the model is never paid for being short and wrong.

    >>> max_reward(True, n_y=800, n_gold=1000)    # clip(0.001 * 200 + 0.5) = 0.7
    0.7
    >>> max_reward(True, n_y=100, n_gold=1000)    # clip(1.4) = 1.0
    1.0
    >>> max_reward(True, n_y=1600, n_gold=1000)   # clip(-0.1) = 0.0
    0.0
    >>> max_reward(False, n_y=800, n_gold=1000)
    0.0
    """
    if not correct:
        return 0.0
    return min(max(alpha * (n_gold - n_y) + delta, 0.0), 1.0)


# ---------------------------------------------------------------------------------------------
# Completions and correctness
# ---------------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """A message's content as text: a string, or a list of parts (``{"type": "text", "text": ...}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if content is None:  # an assistant turn that only made tool calls
        return ""
    raise TypeError(f"message content must be a string or a list of parts, got {type(content).__name__}")


def completion_text(completion: str | Sequence[dict[str, Any]]) -> str:
    """The generated text of one completion, in TRL's standard or conversational format.

    Standard: the string itself. Conversational: the assistant messages' contents, joined (TRL
    gives one message, ``[{"role": "assistant", "content": "..."}]``; tool turns are skipped).

    >>> completion_text("4\\n</think>\\n\\n\\\\boxed{4}")
    '4\\n</think>\\n\\n\\\\boxed{4}'
    >>> completion_text([{"role": "assistant", "content": "4\\n</think>\\n\\n\\\\boxed{4}"}])
    '4\\n</think>\\n\\n\\\\boxed{4}'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, dict) for m in completion):
        return "".join(_content_text(m.get("content")) for m in completion if m.get("role", "assistant") == "assistant")
    raise TypeError(
        "a completion must be a string (standard format) or a list of message dicts "
        f"(conversational format), got {type(completion).__name__}"
    )


def answer_after_thinking(text: str) -> str | None:
    """The text after the last ``</think>``, or None if the thinking never ended.

    Completions start inside the thinking (the generation prompt opened ``<think>``), so a
    completion without ``</think>`` ran out of tokens or rambled on: it has no answer part.

    >>> answer_after_thinking("85 - 48 = 37.\\n</think>\\n\\nThe answer is 37.")
    '\\n\\nThe answer is 37.'
    >>> answer_after_thinking("85 - 48 = 37. Wait,") is None
    True
    """
    _, sep, tail = text.rpartition(THINK_END)
    return tail if sep else None


def is_correct(text: str, gold: str | int | None, timeout_s: float = 5.0) -> bool:
    """Whether the boxed answer after the thinking equals ``gold`` (project grader).

    Deliberately strict: no ``</think>`` -> False (it never finished thinking), and a box inside
    the thinking does not count (no ``full_text`` fallback), so a truncated completion cannot
    score by having boxed a guess mid-thought. No box, no gold or an undecided grade (math-verify
    past ``timeout_s``) -> False. An integer gold is accepted and compared as its string.

    >>> is_correct("48 + 25 = 73.\\n</think>\\n\\nThe answer is \\\\boxed{73}.", "73")
    True
    >>> is_correct("\\\\boxed{73} is my guess, let me check", "73")
    False
    """
    answer = answer_after_thinking(text)
    if answer is None or gold is None:
        return False
    return grade(answer, str(gold), timeout_s=timeout_s).correct is True


# ---------------------------------------------------------------------------------------------
# The TRL reward function
# ---------------------------------------------------------------------------------------------


def _check_params(mode: str, alpha: float | None, delta: float, grade_timeout_s: float) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown LCPO mode {mode!r}; use one of {', '.join(MODES)}")
    if alpha is not None and not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(
            f"alpha must be a finite number >= 0 (the reward per token of length error), got {alpha!r}; "
            f"the defaults are {DEFAULT_ALPHA['exact']} for exact and {DEFAULT_ALPHA['max']} for max"
        )
    if not (0.0 <= delta <= 1.0):  # also rejects NaN
        raise ValueError(
            f"delta must be in [0, 1] (the max-mode reward of a correct answer exactly at the target), "
            f"got {delta!r}; the default is {DEFAULT_DELTA}"
        )
    if not grade_timeout_s > 0:
        raise ValueError(f"grade_timeout_s must be > 0 seconds, got {grade_timeout_s!r}")


def _column(kwargs: dict[str, Any], name: str, n: int, why: str) -> list[Any]:
    """Dataset column ``name`` as TRL passes it (one value per completion), checked for length."""
    if name not in kwargs or kwargs[name] is None:
        raise ValueError(
            f"the LCPO reward needs a dataset column {name!r} ({why}); add it to the training dataset "
            f"(got columns: {', '.join(sorted(k for k in kwargs if k != 'trainer_state')) or 'none'})"
        )
    values = list(kwargs[name])
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def _target(value: Any, row: int) -> int:
    """A ``target_tokens`` value as a positive int (numpy ints welcome, bools and floats not)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"target_tokens[{row}] must be an integer token count, got {value!r}") from None
    if n <= 0:
        raise ValueError(f"target_tokens[{row}] must be > 0, got {n}")
    return n


def make_lcpo_reward(
    mode: str,
    alpha: float | None = None,
    delta: float = DEFAULT_DELTA,
    grade_timeout_s: float = 5.0,
    alpha_by_mode: Mapping[str, float] | None = None,
) -> RewardFunc:
    """A TRL reward function for LCPO ``mode`` ("exact", "max" or "both"), named ``lcpo_<mode>``.

    ``alpha=None`` takes each mode's default (0.0003 for exact, 0.001 for max; in "both" mode per
    row); a number applies to every row; ``alpha_by_mode`` (e.g. ``{"exact": 0.0003, "max": 0.002}``)
    sets each mode's own. ``delta`` is used by max rows only. When TRL passes ``log_metric``, the
    batch's share correct and its `length_stats` are logged as ``lcpo/correct``, ``lcpo/mean_length``,
    ``lcpo/mean_abs_rel_dev`` and ``lcpo/over_target``. In "both" mode every
    row names its own mode in a ``mode`` column ("exact" or "max"). Grading is sequential: integer
    golds take the grader's in-process fast path, so a batch costs microseconds per completion.

    >>> reward = make_lcpo_reward("max")
    >>> reward.__name__
    'lcpo_max'
    >>> done = "2 + 2 = 4.\\n</think>\\n\\n\\\\boxed{4}"
    >>> reward(completions=[done], completion_ids=[[0] * 800], answer=["4"], target_tokens=[1000])
    [0.7]
    """
    _check_params(mode, alpha, delta, grade_timeout_s)
    alphas = {**DEFAULT_ALPHA, **(alpha_by_mode or {})}
    for value in alphas.values():
        _check_params(mode, value, delta, grade_timeout_s)

    def row_reward(row_mode: str, correct: bool, n_y: int, n_gold: int) -> float:
        a = alphas[row_mode] if alpha is None else alpha
        if row_mode == "exact":
            return exact_reward(correct, n_y, n_gold, alpha=a)
        return max_reward(correct, n_y, n_gold, alpha=a, delta=delta)

    def lcpo_reward(
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        # prompts is unused: the target length comes from its own column, not from the prompt text.
        if completions is None or completion_ids is None:
            raise ValueError("the LCPO reward needs both `completions` and `completion_ids` (TRL passes them)")
        n = len(completions)
        if len(completion_ids) != n:
            raise ValueError(f"got {len(completion_ids)} completion_ids for {n} completions")
        golds = _column(kwargs, "answer", n, "the gold answer of each problem")
        targets = _column(kwargs, "target_tokens", n, "the target length N of each prompt")
        if mode == "both":
            modes = _column(kwargs, "mode", n, 'each row\'s LCPO mode, "exact" or "max", for mode "both"')
            for i, m in enumerate(modes):
                if m not in ("exact", "max"):
                    raise ValueError(f'mode[{i}] must be "exact" or "max", got {m!r}')
        else:
            modes = [mode] * n
        rewards, corrects = [], []
        for i in range(n):
            correct = is_correct(completion_text(completions[i]), golds[i], timeout_s=grade_timeout_s)
            corrects.append(correct)
            rewards.append(row_reward(modes[i], correct, len(completion_ids[i]), _target(targets[i], i)))
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and n:
            log_metric("lcpo/correct", sum(corrects) / n)
            for name, value in length_stats(completion_ids, [_target(t, i) for i, t in enumerate(targets)]).items():
                log_metric(f"lcpo/{name}", value)
        return rewards

    # TRL logs each reward under its function's __name__ ("rewards/lcpo_exact/mean").
    lcpo_reward.__name__ = lcpo_reward.__qualname__ = f"lcpo_{mode}"
    return lcpo_reward


# ---------------------------------------------------------------------------------------------
# Length metrics (for logging, not rewards)
# ---------------------------------------------------------------------------------------------


def length_stats(completion_ids: Sequence[Sequence[int]], target_tokens: Sequence[int]) -> dict[str, float]:
    """How well a batch hit its target lengths.

    ``mean_length``: mean ``n_y``; ``mean_abs_rel_dev``: mean ``|n_y - N| / N``; ``over_target``:
    share of completions with ``n_y > N``.

    >>> length_stats([[0] * 75, [0] * 150], [100, 100])   # (25/100 + 50/100) / 2
    {'mean_length': 112.5, 'mean_abs_rel_dev': 0.375, 'over_target': 0.5}
    """
    n = len(completion_ids)
    if n == 0:
        raise ValueError("length_stats needs at least one completion")
    if len(target_tokens) != n:
        raise ValueError(f"got {len(target_tokens)} target_tokens for {n} completions")
    lengths = [len(ids) for ids in completion_ids]
    targets = [_target(t, i) for i, t in enumerate(target_tokens)]
    return {
        "mean_length": sum(lengths) / n,
        "mean_abs_rel_dev": sum(abs(y - t) / t for y, t in zip(lengths, targets)) / n,
        "over_target": sum(y > t for y, t in zip(lengths, targets)) / n,
    }
