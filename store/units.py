"""Answers, not rows: one unit per answer a method gives, whatever number of generations it took.

A sequential controller's generation is one answer. A parallel controller's (``maj4:l1_exact``)
samples are one answer together: it is correct when the sample chosen for the group
(``chosen``) is, and it costs the sum of their tokens. The summaries (`store.summary`) and the
analytics (`store.analytics`) aggregate these units, so that a parallel method's point sits at
what its answer cost: equal-token comparisons across methods.

Each unit has: run_id, model, controller, budget, dataset, question_id, sample_idx, budget_kind,
ok (0/1), samples (K, 1 for a sequential one), prompt_tokens, total_tokens, thinking_tokens,
answer_tokens, probe_tokens (0 when none), cost_tokens (total + probe tokens: what the policy generated;
a search's whole tree), verifier_tokens (0 when none: what a verifier read, another model's compute),
t_start and t_end (epoch seconds of its first start and last end), created_at, token_counts
(counted, reported or estimated: where its counts come from, see store/schema.py).
"""

from __future__ import annotations

from typing import Any


def units_sql(where: str, params: list[Any]) -> tuple[str, list[Any]]:
    """A SELECT of the units of the generations matching ``where`` (its ``?`` take ``params``)."""
    sql = f"""
        SELECT run_id, model, controller, budget, dataset, question_id, sample_idx, budget_kind,
               coalesce(correct, false)::INTEGER AS ok, 1 AS samples,
               prompt_tokens, total_tokens, thinking_tokens, answer_tokens,
               coalesce(probe_tokens, 0) AS probe_tokens, total_tokens + coalesce(probe_tokens, 0) AS cost_tokens,
               coalesce(verifier_tokens, 0) AS verifier_tokens,
               epoch(created_at) - coalesce(latency_s, 0) AS t_start, epoch(created_at) AS t_end, created_at,
               coalesce(token_counts, 'counted') AS token_counts
        FROM generations WHERE group_id IS NULL AND {where}
        UNION ALL
        SELECT any_value(run_id), any_value(model), any_value(controller), any_value(budget), any_value(dataset),
               any_value(question_id), any_value(sample_idx), any_value(budget_kind),
               max((coalesce(chosen, false) AND coalesce(correct, false))::INTEGER), count(*),
               sum(prompt_tokens), sum(total_tokens), sum(thinking_tokens), sum(answer_tokens),
               sum(coalesce(probe_tokens, 0)), sum(total_tokens + coalesce(probe_tokens, 0)), sum(coalesce(verifier_tokens, 0)),
               min(epoch(created_at) - coalesce(latency_s, 0)), max(epoch(created_at)), max(created_at),
               min(coalesce(token_counts, 'counted'))
        FROM generations WHERE group_id IS NOT NULL AND {where} GROUP BY group_id"""
    return sql, [*params, *params]


# The inner controller of a composite one, from the form NAME:INNER[@VERIFIER] that every composite
# name has ("maj4:l1_exact" -> l1_exact, "beam4x4:l1_exact@oracle" -> l1_exact); NULL for a sequential one.
INNER_SQL = "nullif(regexp_extract(controller, '^[^:@]+:([^@]+)', 1), '')"
