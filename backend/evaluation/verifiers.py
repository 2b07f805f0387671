"""Verifiers: what scores each step of a partial solution for a verifier-guided search (issue 33).

A verifier takes a question and the steps written so far (the policy's lines, as text and as the
policy's own token ids, `backend.evaluation.steps`) and returns one score in [0, 1] per step, the
probability that the solution is still right after it, with the verifier tokens it spent (billed
like probe tokens, apart from the policy's generated tokens). Two kinds share the interface:

* ``oracle``: the arith rule checker (`backend.evaluation.oracle`), exact and free (0 verifier
  tokens); only for the built-in arith questions. The upper bound a learned PRM is drawn against;
* a process reward model served by vLLM's pooling runner (`backend.serving.pooling`), which bills
  the tokens it read.

    verifier = OracleVerifier()
    scored = await verifier.score("Compute 37 + 48.", ["37 + 48: 7 + 8 = 15, 3 + 4 + 1 = 8, so 85.\\n"])
    scored.scores   # [1.0]; scored.tokens: 0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from backend.errors import InputError
from backend.evaluation.arith import is_arith_question
from backend.evaluation.oracle import label_steps

ORACLE = "oracle"


@dataclass(frozen=True)
class StepScores:
    scores: tuple[float, ...]  # one per step: P(the solution is still right after this step)
    tokens: int  # verifier tokens read to score them


class Verifier(Protocol):
    name: str

    async def score(self, question: str, steps: Sequence[str], step_ids: Sequence[Sequence[int]] | None = None) -> StepScores: ...


class OracleVerifier:
    """Exact labels of the arith oracle as scores: 1.0 up to the first wrong step, 0.0 from it on."""

    name = ORACLE

    def check(self, question: str) -> None:
        if not is_arith_question(question):
            raise InputError(f"verifier oracle: it checks the built-in arith questions only (\"Compute 37 + 48 - 12.\"), not {question[:60]!r}; "
                             "pick a PRM as the verifier")

    async def score(self, question: str, steps: Sequence[str], step_ids: Sequence[Sequence[int]] | None = None) -> StepScores:
        self.check(question)
        return StepScores(tuple(1.0 if good else 0.0 for good in label_steps(question, list(steps))), 0)
