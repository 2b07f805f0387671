"""The adherence audit's measurements, in SQL: requested N against the thinking each generation did.

    rows = audit_rows(cur, Filters(runs=("audit-l1-tiny-20261203",)))
    # [{"model": "l1-tiny", "controller": "thinking_cap", "budget": 16, "n": 20, "mean_thinking": 16.0, ...}, ...]

Every stored generation counts on its own, a parallel group's samples included, each against
the budget it was given (``inner_budget``, floor(N / K)); ``backend.service.audit`` turns these
rows into a verdict per knob.
"""

from __future__ import annotations

from typing import Any

import duckdb

from store.analytics import Filters, _rows


def audit_rows(cur: duckdb.DuckDBPyConnection, filters: Filters, tolerance_tokens: int, tolerance_share: float) -> list[dict[str, Any]]:
    """Per (model, controller, budget): generations, thinking tokens (mean, max), the share over
    the budget by more than max(`tolerance_tokens`, `tolerance_share` x N), the share of empty
    answers (cut off by the length limit with no answer), and where the counts came from."""
    where, params = filters.where()
    sql = f"""
        WITH g AS (
            SELECT model, controller, budget, coalesce(inner_budget, budget) AS asked, thinking_tokens, budget_kind,
                   coalesce(token_counts, 'counted') AS token_counts,
                   finish_reason = 'length' AND coalesce(trim(answer_text), '') = '' AS empty
            FROM generations WHERE {where} AND budget > 0 AND thinking_tokens IS NOT NULL)
        SELECT model, controller, budget, any_value(asked) AS asked, count(*) AS n, any_value(budget_kind) AS budget_kind,
               avg(thinking_tokens) AS mean_thinking, median(thinking_tokens) AS median_thinking, max(thinking_tokens) AS max_thinking,
               avg((thinking_tokens > asked + greatest(?, ceil(? * asked)))::INTEGER) AS over_share,
               avg(empty::INTEGER) AS empty_share,
               string_agg(DISTINCT token_counts, ',' ORDER BY token_counts) AS token_counts
        FROM g GROUP BY model, controller, budget ORDER BY model, controller, budget"""
    return _rows(cur, sql, [*params, tolerance_tokens, tolerance_share])


def auditable_runs(cur: duckdb.DuckDBPyConnection, min_generations: int) -> list[str]:
    """Runs, newest first, in which every (model, controller, budget) with a budget has at least
    `min_generations` generations with a thinking count: those the audit can judge."""
    sql = """
        WITH groups AS (
            SELECT run_id, count(*) AS n, max(created_at) AS newest FROM generations
            WHERE budget > 0 AND thinking_tokens IS NOT NULL GROUP BY run_id, model, controller, budget)
        SELECT run_id FROM groups GROUP BY run_id HAVING min(n) >= ? ORDER BY max(newest) DESC, run_id"""
    return [row[0] for row in cur.execute(sql, [min_generations]).fetchall()]
