"""Verifiers: what scores each step of a partial solution for a verifier-guided search (issue 33).

A verifier takes a question and the steps written so far (the policy's lines, as text and as the
policy's own token ids, `backend.steps`) and returns one score in [0, 1] per step, the
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
from backend.serving.client import EngineRequestError
from backend.serving.engine import EngineUnavailable

ORACLE = "oracle"


class VerifierError(EngineRequestError):
    """The verifier could not score (its engine died, refused the request): the method's answer fails with
    this reason; it is not the policy's engine that was lost, so a sweep does not wait for that one."""


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


class PRMVerifier:
    """A process reward model served by vLLM's pooling runner (step pooling at its tag, `backend.serving.local.step_pooling`):
    the question's chat prompt, then each step's ids (the policy's own) followed by the tag; P(good) at each tag.

    ``client``: an `EngineClient` on the scoring engine; ``prompt_ids``: the question's chat prompt as ids
    (the PRM shares the policy's tokenizer, plus its tag)."""

    def __init__(self, name: str, client, step_tag_id: int, prompt_ids) -> None:
        self.name = name
        self.client = client
        self.step_tag_id = step_tag_id
        self.prompt_ids = prompt_ids

    async def score(self, question: str, steps: Sequence[str], step_ids: Sequence[Sequence[int]] | None = None) -> StepScores:
        if step_ids is None or len(step_ids) != len(steps):
            raise ValueError("a PRM scores the policy's own token ids: give step_ids, one list per step")
        try:
            ids = list(await self.prompt_ids(question))
            for step in step_ids:
                ids += [*step, self.step_tag_id]
            scores, tokens = await self.client.step_scores(ids)
        except (EngineUnavailable, EngineRequestError) as exc:
            raise VerifierError(f"verifier {self.name} failed: {exc}") from exc
        if len(scores) != len(steps):
            raise ValueError(f"verifier {self.name}: {len(scores)} scores for {len(steps)} steps (is it served with step pooling at id {self.step_tag_id}?)")
        return StepScores(tuple(scores), tokens)
