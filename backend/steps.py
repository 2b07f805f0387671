"""Reasoning steps on token ids: a generation cut at the tokens that end a line.

A verifier scores a partial solution step by step, and a search expands it a step at a time, so
both need the same steps, and they must be the policy's own tokens: re-tokenizing the decoded text
gives other ids (the tiny models' tokenizer merges ".\\n" into one token and has "\\n\\n" tokens), so
a step's score would belong to a text the policy never produced. A step ends with the first token
whose text holds a newline (that token included); the last step may end without one. Joined
again, the steps are the generation's ids exactly.

    ends = step_end_ids(token_texts)          # {id: True for "\\n", ".\\n", "\\n\\n", ...}
    steps = split_steps(ids, ends)            # [[...ids of line 1 with its newline], [...], ...]
    assert [i for step in steps for i in step] == ids
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def step_end_ids(token_texts: Mapping[int, str] | Iterable[tuple[int, str]]) -> frozenset[int]:
    """The ids whose text holds a newline: where a step ends. ``token_texts``: id -> decoded text (the vocabulary)."""
    items = token_texts.items() if isinstance(token_texts, Mapping) else token_texts
    return frozenset(token_id for token_id, text in items if "\n" in text)


def split_steps(ids: Sequence[int], ends: frozenset[int]) -> list[list[int]]:
    """``ids`` cut after each step-ending token; no empty step; the pieces rejoin to ``ids``."""
    steps, current = [], []
    for token_id in ids:
        current.append(token_id)
        if token_id in ends:
            steps.append(current)
            current = []
    if current:
        steps.append(current)
    return steps
