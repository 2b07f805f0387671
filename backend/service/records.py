"""The one place a finished generation is graded and becomes store rows (Compare and Sweep alike).

    await settle(live, gold="5", timeout_s=10)         # graded; a parallel group's answer chosen
    rows = generation_rows(live, gen_id=new_gen_id(), run_id="compare-1a2b", created_at=utc_now(),
                           model="l1-tiny", question="Compute 2 + 3.", gold="5", sampling=sampling)
    store.insert_generations(rows)                       # in one batch: a group is stored whole or not at all

The live record (`LiveGeneration`) carries what happened; the caller adds where it belongs: its
key, its run, its question and, for a sweep, its dataset, question id and sample. A sequential
controller's generation is one row; a parallel one's (``maj4:l1_exact``) is one row per sample,
with the group's key as ``group_id``, the sample's index, its answer class and whether it is the
sample whose answer the group gives (``chosen``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from backend.controllers.config import ControllerConfig
from backend.controllers.live import LiveGeneration
from backend.controllers.parallel import sample_seeds
from backend.controllers.registry import make_controller
from backend.evaluation.grading import grade, same_answer
from backend.evaluation.keywords import KEYWORDS_VERSION, keyword_counts
from backend.evaluation.voting import answer_classes, best_of, majority_vote, weighted_vote
from backend.service.verifying import label_tree
from backend.serving.sampling import Sampling

# Columns copied as they are from the live record (see store/schema.py for their meaning).
LIVE_COLUMNS = ("controller", "budget", "prompt", "full_text", "thinking_text", "answer_text", "extracted_answer", "correct",
                "prompt_tokens", "thinking_tokens", "answer_tokens", "total_tokens", "finish_reason", "waits_used", "ttft_s", "latency_s",
                "budget_kind", "probe_tokens", "settled_at", "answer_logprob", "group_idx", "inner_budget", "answer_class", "chosen",
                "token_counts", "verifier_tokens", "verifier_score")


async def settle(live: LiveGeneration, gold: str | None, timeout_s: float, question: str = "") -> None:
    """Grade a finished generation (each sample of a parallel one) and, for a group, choose the
    sample that answers: its answer, grade and answer text become the group's. A search tree's
    nodes (or a scored sample's steps) get the arith oracle's verdicts when `question` is arith."""
    controller = make_controller(live.controller, ControllerConfig())  # what it declares: after_grading, selection
    for one in live.samples or [live]:
        result = await asyncio.to_thread(grade, one.answer_text, gold, one.full_text, timeout_s)
        one.extracted_answer, one.correct = result.extracted, result.correct
        controller.after_grading(one)
        if one.search_tree:
            await asyncio.to_thread(label_tree, question, one.search_tree)
    if not live.samples:
        return
    samples = live.samples
    answers = [s.extracted_answer for s in samples]
    classes = await asyncio.to_thread(answer_classes, answers, lambda a, b: same_answer(a, b, timeout_s))
    chosen = _choose(controller.selection, samples, classes)
    for sample, answer_class in zip(samples, classes):
        sample.answer_class = answer_class
        sample.chosen = sample.group_idx == chosen
    if chosen is None:
        live.extracted_answer, live.correct = None, (None if gold is None or not gold.strip() else False)
        return
    pick = samples[chosen]
    live.extracted_answer, live.correct, live.answer_text = pick.extracted_answer, pick.correct, pick.answer_text


def _choose(selection: str | None, samples: list[LiveGeneration], classes: list[int | None]) -> int | None:
    """The sample whose answer the group gives, by the controller's rule (`Controller.selection`): the vote,
    the answer's confidence, the verifier's score, or the vote with each sample weighted by that score."""
    if selection == "vote":
        return majority_vote(classes)
    if selection == "score":
        return best_of([s.verifier_score if s.extracted_answer else None for s in samples])
    if selection == "score_vote":
        return weighted_vote(classes, [s.verifier_score or 0.0 for s in samples])
    # A sample with an answer but no generated answer tokens (its box was in the thinking) may
    # still be chosen, after every sample that has a confidence.
    return best_of([(s.answer_logprob if s.answer_logprob is not None else float("-inf")) if s.extracted_answer else None for s in samples])


def sample_gen_id(group_id: str, index: int) -> str:
    """The key of a parallel group's sample: the group's own key for the first, suffixed for the others
    (stored in one batch, so the first sample's key stands for the group when a sweep resumes)."""
    return group_id if index == 0 else f"{group_id}.{index}"


def generation_rows(live: LiveGeneration, *, gen_id: str, run_id: str, created_at: dt.datetime, model: str, question: str,
                    gold: str | None, sampling: Sampling, dataset: str | None = None, question_id: str | None = None,
                    sample_idx: int = 0) -> list[dict]:
    """The store rows of a settled generation: one, or one per sample of a parallel group.
    ``created_at``: when generation ended (a sweep's summary measures busy time with it)."""
    where = {"run_id": run_id, "created_at": created_at, "model": model, "dataset": dataset, "question_id": question_id,
             "question": question, "gold": gold, "sample_idx": sample_idx, "temperature": sampling.temperature, "top_p": sampling.top_p}
    if not live.samples:
        return [_row(live, gen_id=gen_id, seed=sampling.seed, group_id=None, **where)]
    seeds = sample_seeds(sampling.seed, len(live.samples))
    last_end = max((s.ended_at for s in live.samples if s.ended_at is not None), default=None)
    rows = []
    for sample in live.samples:
        # Each sample's own end (`created_at` is when the last one ended): a sweep's busy time
        # is the union of [created_at - latency_s, created_at] over rows.
        early = (last_end - sample.ended_at) if last_end is not None and sample.ended_at is not None else 0.0
        ended = {**where, "created_at": created_at - dt.timedelta(seconds=early)}
        rows.append(_row(sample, gen_id=sample_gen_id(gen_id, sample.group_idx), seed=seeds[sample.group_idx], group_id=gen_id, **ended))
    return rows


def _row(live: LiveGeneration, *, gen_id: str, seed: int | None, group_id: str | None, **where) -> dict:
    row = {"gen_id": gen_id, "group_id": group_id, "seed": seed, **where}
    row.update({column: getattr(live, column) for column in LIVE_COLUMNS})
    row["probes"] = json.dumps(live.probes) if live.probes else None
    row["search_tree"] = json.dumps(live.search_tree, separators=(",", ":")) if live.search_tree else None
    row["keyword_counts"] = keyword_counts(live.full_text)
    row["keywords_version"] = KEYWORDS_VERSION
    return row
