"""Which of K parallel samples answers: classes of equivalent answers, the majority vote, best-of.

Pure functions over what the samples gave (answers, confidences); the service grades the samples
first and calls them (`backend.service.records.settle`). The same rules, in SQL over stored rows,
recompute maj@k for every k <= K (`store.analytics.vote_curves`), so they are kept simple:

- `answer_classes`: sample i joins the class of the first earlier sample whose answer is
  equivalent to its own (its class id is that sample's index), else opens its own; a sample with
  no answer has no class. The classes of the first k samples do not depend on later ones.
- `majority_vote`: the largest class wins; a tie goes to the class whose first sample came first
  (the smallest class id); the winning class's first sample gives the answer.
- `best_of`: the sample with the highest confidence among those with an answer; a tie goes to
  the earliest.

    classes = answer_classes(["42", "42.0", None, "7"], same=lambda a, b: float(a) == float(b))   # [0, 0, None, 3]
    majority_vote(classes)                     # 0
    best_of([-0.3, -0.1, None, -0.1])          # 1
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence


def answer_classes(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> list[int | None]:
    """Each sample's class: the index of the first sample with an equivalent answer (None: no answer)."""
    firsts: list[int] = []
    classes: list[int | None] = []
    for index, answer in enumerate(answers):
        if not answer:
            classes.append(None)
            continue
        match = next((first for first in firsts if same(answers[first], answer)), None)
        if match is None:
            firsts.append(index)
            match = index
        classes.append(match)
    return classes


def majority_vote(classes: Sequence[int | None]) -> int | None:
    """The index of the sample that answers for the group (None when no sample has an answer)."""
    counts = collections.Counter(c for c in classes if c is not None)
    if not counts:
        return None
    top = max(counts.values())
    return min(c for c, n in counts.items() if n == top)


def weighted_vote(classes: Sequence[int | None], weights: Sequence[float]) -> int | None:
    """Like `majority_vote`, each sample counting its weight (a verifier's score) instead of one."""
    totals: dict[int, float] = collections.defaultdict(float)
    for answer_class, weight in zip(classes, weights):
        if answer_class is not None:
            totals[answer_class] += weight
    if not totals:
        return None
    top = max(totals.values())
    return min(c for c, w in totals.items() if w == top)


def best_of(confidences: Sequence[float | None]) -> int | None:
    """The index of the most confident sample (None for a sample without an answer); ties: the earliest."""
    best = None
    for index, confidence in enumerate(confidences):
        if confidence is not None and (best is None or confidence > confidences[best]):
            best = index
    return best
