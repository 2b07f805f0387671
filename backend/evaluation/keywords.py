"""The L1 paper's reasoning keywords (Figure 5), counted in each generation's text.

``KEYWORD_CATEGORIES`` holds the four word lists, the one place to edit them. Each generation
stores its counts (`keyword_counts`) with ``KEYWORDS_VERSION``, a hash of the lists: rows counted
with other lists are recounted in SQL (`store.analytics`), so editing the lists needs no migration.

    keyword_counts("Wait, let me check. So 5.")   # [2, 0, 1, 1]
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence

from store.analytics import keyword_pattern

# The L1 paper's four categories of reasoning words (Figure 5); matched as whole words, any case.
KEYWORD_CATEGORIES: dict[str, tuple[str, ...]] = {
    "self-correction and verification": ("wait", "but", "however", "check", "verify", "double-check", "actually", "mistake", "recheck"),
    "exploration and alternatives": ("alternatively", "maybe", "perhaps", "another way", "or", "try", "suppose", "what if"),
    "context setting": ("let", "given", "we need", "we have", "first", "the problem", "we are", "recall"),
    "conclusion drawing": ("therefore", "so", "thus", "hence", "finally", "in conclusion", "the answer is"),
}


def keywords_version(categories: Mapping[str, Sequence[str]]) -> str:
    """A short hash of the word lists: stored counts are used only when made with the same lists."""
    return hashlib.sha1(json.dumps({k: list(v) for k, v in categories.items()}, sort_keys=True).encode()).hexdigest()[:12]


KEYWORDS_VERSION = keywords_version(KEYWORD_CATEGORIES)


@functools.lru_cache(maxsize=64)
def _compiled(words: tuple[str, ...]) -> re.Pattern:
    return re.compile(keyword_pattern(words))  # the same pattern the SQL recount uses


def keyword_counts(text: str | None, categories: Mapping[str, Sequence[str]] = KEYWORD_CATEGORIES) -> list[int]:
    """Matches of each category's words in ``text``, in the categories' order (stored with each
    generation, so the keyword view sums numbers instead of scanning every text)."""
    return [len(_compiled(tuple(words)).findall(text or "")) for words in categories.values()]
