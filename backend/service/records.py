"""The one place a finished generation becomes a store row (Compare and Sweep alike).

    row = generation_row(live, gen_id=new_gen_id(), run_id="compare-1a2b", created_at=utc_now(),
                         model="l1-tiny", question="Compute 2 + 3.", gold="5", sampling=sampling)
    store.insert_generations([row])

The live record (`LiveGeneration`) carries what happened; the caller adds where it belongs: its
key, its run, its question and, for a sweep, its dataset, question id and sample.
"""

from __future__ import annotations

import datetime as dt

from backend.controllers.live import LiveGeneration
from backend.evaluation.keywords import KEYWORDS_VERSION, keyword_counts
from backend.serving.sampling import Sampling

# Columns copied as they are from the live record (see store/schema.py for their meaning).
LIVE_COLUMNS = ("controller", "budget", "prompt", "full_text", "thinking_text", "answer_text", "extracted_answer", "correct",
                "prompt_tokens", "thinking_tokens", "answer_tokens", "total_tokens", "finish_reason", "waits_used", "ttft_s", "latency_s")


def generation_row(live: LiveGeneration, *, gen_id: str, run_id: str, created_at: dt.datetime, model: str, question: str,
                   gold: str | None, sampling: Sampling, dataset: str | None = None, question_id: str | None = None,
                   sample_idx: int = 0) -> dict:
    """``created_at``: when generation ended (a sweep's summary measures busy time with it)."""
    row = {
        "gen_id": gen_id,
        "run_id": run_id,
        "created_at": created_at,
        "model": model,
        "dataset": dataset,
        "question_id": question_id,
        "question": question,
        "gold": gold,
        "sample_idx": sample_idx,
        "seed": sampling.seed,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    row.update({column: getattr(live, column) for column in LIVE_COLUMNS})
    row["keyword_counts"] = keyword_counts(live.full_text)
    row["keywords_version"] = KEYWORDS_VERSION
    return row
