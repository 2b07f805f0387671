"""A run's summary per (model, controller, budget), computed from its stored generations alone.

The sweep prints this at its end and ``python app.py report`` prints it again later; both call
``run_summary``, so the numbers agree by construction and can be recomputed at any time::

    with store.reader() as cur:
        for group in run_summary(cur, "sweep-arith"):
            print(group["controller"], group["budget"], group["pass_at_1"])

Definitions (n_y: the output tokens of a generation, thinking + delimiter + answer; N: its budget):

- ``pass_at_1``: per question, the share of its samples graded correct, averaged over questions;
  ``pass_at_k``: the share of questions with at least one correct sample, k = its samples.
  An answer that could not be graded (no gold, grader timed out) counts as not correct.
- A parallel method's (``maj4:l1_exact``) unit is its group of K samples (`store.units`): its
  answer is the chosen sample's, its n_y the sum over the samples. ``generations`` counts stored
  rows (K per answer); ``k``: the stored generations per answer (K of a group, 1 otherwise; a search is one row), ``inner``: a composite name's inner controller (None when sequential).
- ``mean_probe_tokens``: tokens spent probing for the answer (``early_exit``), not in n_y.
- ``mean_verifier_tokens``: tokens a verifier read to score steps (prmK, pvoteK, beamWxM, particlesP), not in n_y.
- ``mean_rel_dev``: mean of ``(n_y - N) / N``; ``mean_abs_rel_dev``: mean of its absolute value.
- ``violation_rate``: share of generations with ``n_y > N``; ``violation_rate_500``: share with
  ``|n_y - N| > 500``, the L1 paper's criterion for large budgets.
- ``wall_s``: the time during which at least one of the group's generations was in flight (each
  spans ``created_at - latency_s`` to ``created_at``), so a run resumed after a crash does not
  count the hours it lay dead; ``tokens_per_s``: the group's output tokens over ``wall_s``.
"""

from __future__ import annotations

from typing import Any

import duckdb

from store.units import INNER_SQL, units_sql

GROUP_KEYS = ("model", "controller", "budget")

_SUMMARY_SQL = """
WITH g AS ({units}),
per_question AS (
    SELECT model, controller, budget, question_id,
           avg(ok) AS pass_1, max(ok) AS pass_k, count(*) AS n
    FROM g GROUP BY model, controller, budget, question_id
),
by_question AS (
    SELECT model, controller, budget, count(*) AS questions, max(n) AS samples,
           avg(pass_1) AS pass_at_1, avg(pass_k) AS pass_at_k
    FROM per_question GROUP BY model, controller, budget
),
-- Busy time as a union of intervals (gaps and islands): an interval opens a new island when it
-- starts after every earlier one has ended.
ordered AS (
    SELECT model, controller, budget, t_start, t_end,
           max(t_end) OVER (PARTITION BY model, controller, budget ORDER BY t_start, t_end
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach
    FROM g
),
islands AS (
    SELECT *, sum(CASE WHEN reach IS NULL OR t_start > reach THEN 1 ELSE 0 END)
                  OVER (PARTITION BY model, controller, budget ORDER BY t_start, t_end
                        ROWS UNBOUNDED PRECEDING) AS island
    FROM ordered
),
busy AS (
    SELECT model, controller, budget, sum(island_end - island_start) AS wall_s
    FROM (SELECT model, controller, budget, island, min(t_start) AS island_start, max(t_end) AS island_end
          FROM islands GROUP BY model, controller, budget, island)
    GROUP BY model, controller, budget
),
lengths AS (
    SELECT model, controller, budget, sum(samples) AS generations, max(samples) AS k,
           sum(total_tokens) AS output_tokens,
           avg(probe_tokens) AS mean_probe_tokens,
           avg(verifier_tokens) AS mean_verifier_tokens,
           avg(total_tokens) AS mean_tokens,
           avg(thinking_tokens) AS mean_thinking_tokens,
           avg(answer_tokens) AS mean_answer_tokens,
           avg((total_tokens - budget) / budget) AS mean_rel_dev,
           avg(abs(total_tokens - budget) / budget) AS mean_abs_rel_dev,
           avg((total_tokens > budget)::INTEGER) AS violation_rate,
           avg((abs(total_tokens - budget) > 500)::INTEGER) AS violation_rate_500
    FROM g GROUP BY model, controller, budget
)
SELECT l.model, l.controller, l.budget, l.k, {inner} AS inner, q.questions, q.samples, l.generations,
       q.pass_at_1, q.pass_at_k,
       l.mean_tokens, l.mean_thinking_tokens, l.mean_answer_tokens, l.mean_probe_tokens, l.mean_verifier_tokens,
       l.mean_rel_dev, l.mean_abs_rel_dev, l.violation_rate, l.violation_rate_500,
       l.output_tokens, l.output_tokens / nullif(b.wall_s, 0) AS tokens_per_s, b.wall_s
FROM lengths l
JOIN by_question q USING (model, controller, budget)
JOIN busy b USING (model, controller, budget)
ORDER BY l.model, l.controller, l.budget
"""

_INTEGER_KEYS = {"budget", "k", "questions", "samples", "generations", "output_tokens"}


def run_summary(cur: duckdb.DuckDBPyConnection, run_id: str, digits: int = 6) -> list[dict[str, Any]]:
    """One dict per (model, controller, budget) of the run, sorted; floats rounded to ``digits``."""
    units, params = units_sql("run_id = ?", [run_id])
    result = cur.execute(_SUMMARY_SQL.format(units=units, inner=INNER_SQL.replace("controller", "l.controller")), params)
    names = [column[0] for column in result.description]
    groups = []
    for values in result.fetchall():
        group = {}
        for name, value in zip(names, values):
            if value is None or isinstance(value, str):
                group[name] = value
            elif name in _INTEGER_KEYS:
                group[name] = int(value)
            else:
                group[name] = round(float(value), digits)
        groups.append(group)
    return groups
