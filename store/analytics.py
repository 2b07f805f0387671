"""The Analytics tab's aggregates, computed in DuckDB over every stored generation.

Every view is one SQL query grouped by (model, controller, budget) under the same `Filters`, so
the numbers of one view agree with the others' and no generation row travels to Python::

    filters = Filters(models=("l1-tiny",), budget_min=64)
    with store.reader() as cur:
        points = tradeoff(cur, filters)                 # accuracy with a 95% band, tokens
        spread = adherence(cur, filters)                # length quantiles, deviation, violations
        words = keyword_rates(cur, filters, KEYWORD_CATEGORIES)

Definitions (n: an answer's output tokens, thinking + delimiter + answer; N: its budget). The
accuracy, token and adherence views count answers (`store.units`): a parallel method's K samples
are one answer, at the sum of their tokens, so every method sits on one equal-token axis.
``accuracy`` is the share of answers graded correct (pass@1; not graded counts as wrong),
with a Wilson 95% interval; ``mean_abs_rel_dev`` is the mean of |n - N| / N; ``violation_rate``
the share with n > N; keyword rates are matches per 1,000 output tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from store.units import units_sql

GROUP = "model, controller, budget"
Z_95 = 1.959964
NO_DATASET = "(ad hoc)"  # what the filters call the dataset of a Compare-tab question


@dataclass(frozen=True)
class Filters:
    """What the views look at; an empty tuple means all, a None bound means open."""

    models: tuple[str, ...] = ()
    controllers: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    budget_min: int | None = None
    budget_max: int | None = None

    def __post_init__(self) -> None:
        for name in ("budget_min", "budget_max"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} {value!r}: must be a whole number of tokens, 0 or more")
        if self.budget_min is not None and self.budget_max is not None and self.budget_min > self.budget_max:
            raise ValueError(f"budget range {self.budget_min}-{self.budget_max}: the minimum is above the maximum")

    def where(self) -> tuple[str, list[Any]]:
        """A WHERE clause and its parameters (values are never spliced into the SQL)."""
        clauses, params = ["TRUE"], []
        for column, values in (("model", self.models), ("controller", self.controllers), ("run_id", self.runs),
                               (f"coalesce(dataset, '{NO_DATASET}')", self.datasets)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params += list(values)
        if self.budget_min is not None:
            clauses.append("budget >= ?")
            params.append(self.budget_min)
        if self.budget_max is not None:
            clauses.append("budget <= ?")
            params.append(self.budget_max)
        return " AND ".join(clauses), params


def filter_options(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """What the filters can choose from: the distinct models, controllers, datasets, runs, budgets."""
    options = {}
    for key, expression in (("models", "model"), ("controllers", "controller"), ("datasets", f"coalesce(dataset, '{NO_DATASET}')"),
                            ("runs", "run_id"), ("budgets", "budget")):
        options[key] = [row[0] for row in cur.execute(f"SELECT DISTINCT {expression} AS v FROM generations ORDER BY v").fetchall()]
    return options


def tradeoff(cur: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per (model, controller, budget): answers, accuracy and its Wilson 95% band, mean tokens per
    answer (prompt, output, thinking, answer, probe, and cost: output + probe, the equal-token
    axis; and the tokens a verifier read, apart), samples per answer, the budget's kind, thinking tokens per answer token, and where the
    counts come from (counted from token ids, or reported / estimated from a chat endpoint's usage)."""
    units, params = units_sql(*filters.where())
    z, z2 = Z_95, Z_95 * Z_95  # constants of the code, not user values
    sql = f"""
        WITH g AS (
            SELECT {GROUP}, count(*) AS n, avg(ok) AS p, any_value(budget_kind) AS budget_kind, max(samples) AS samples,
                   avg(prompt_tokens) AS mean_prompt_tokens, avg(total_tokens) AS mean_tokens,
                   avg(thinking_tokens) AS mean_thinking_tokens, avg(answer_tokens) AS mean_answer_tokens,
                   avg(probe_tokens) AS mean_probe_tokens, avg(cost_tokens) AS mean_cost_tokens,
                   avg(verifier_tokens) AS mean_verifier_tokens,
                   sum(thinking_tokens) / nullif(sum(answer_tokens), 0) AS thinking_to_answer,
                   string_agg(DISTINCT token_counts, ',' ORDER BY token_counts) AS token_counts
            FROM ({units}) GROUP BY {GROUP}
        )
        SELECT {GROUP}, n, budget_kind, samples, p AS accuracy,
               (p + {z2} / (2 * n) - {z} * sqrt(p * (1 - p) / n + {z2} / (4 * n * n))) / (1 + {z2} / n) AS accuracy_low,
               (p + {z2} / (2 * n) + {z} * sqrt(p * (1 - p) / n + {z2} / (4 * n * n))) / (1 + {z2} / n) AS accuracy_high,
               mean_prompt_tokens, mean_tokens, mean_thinking_tokens, mean_answer_tokens, mean_probe_tokens, mean_cost_tokens,
               mean_verifier_tokens, thinking_to_answer, token_counts
        FROM g ORDER BY {GROUP}"""
    return _rows(cur, sql, params)


def adherence(cur: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per (model, controller, budget): the budget's kind (hint or guaranteed), output-length
    quantiles of its answers (for box plots), mean |n - N| / N, mean (n - N) / N and the share of
    answers over budget."""
    units, params = units_sql(*filters.where())
    sql = f"""
        SELECT {GROUP}, count(*) AS n, any_value(budget_kind) AS budget_kind,
               min(total_tokens) AS min_tokens, quantile_cont(total_tokens, 0.25) AS q1_tokens,
               median(total_tokens) AS median_tokens, quantile_cont(total_tokens, 0.75) AS q3_tokens,
               max(total_tokens) AS max_tokens, avg(total_tokens) AS mean_tokens,
               avg(abs(total_tokens - budget) / budget) AS mean_abs_rel_dev,
               avg((total_tokens - budget) / budget) AS mean_rel_dev,
               avg((total_tokens > budget)::INTEGER) AS violation_rate
        FROM ({units}) WHERE budget > 0 GROUP BY {GROUP} ORDER BY {GROUP}"""
    return _rows(cur, sql, params)


def vote_curves(cur: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per (model, controller, budget, k) of majority-vote methods: accuracy of a vote over each
    group's first k samples, k = 1..K, from the stored samples alone (no generation again).

    The rules of `backend.evaluation.voting`: the samples' stored answer classes vote, the largest
    class wins, a tie goes to the smallest class id (the class whose first sample came first), and
    the answer is that first sample's; a group whose first k samples have no answer is wrong."""
    where, params = filters.where()
    sql = f"""
        WITH s AS (
            SELECT {GROUP}, group_id, group_idx, answer_class, coalesce(correct, false)::INTEGER AS ok
            FROM generations WHERE group_id IS NOT NULL AND controller LIKE 'maj%' AND {where}
        ),
        grid AS (
            SELECT {GROUP}, group_id, unnest(range(1, size + 1)) AS k
            FROM (SELECT {GROUP}, group_id, count(*) AS size FROM s GROUP BY ALL)
        ),
        votes AS (
            SELECT grid.group_id, grid.k, s.answer_class, count(*) AS n
            FROM grid JOIN s ON s.group_id = grid.group_id AND s.group_idx < grid.k
            WHERE s.answer_class IS NOT NULL GROUP BY ALL
        ),
        winners AS (
            SELECT group_id, k, answer_class,
                   row_number() OVER (PARTITION BY group_id, k ORDER BY n DESC, answer_class) AS place
            FROM votes
        ),
        outcome AS (
            SELECT w.group_id, w.k, s.ok FROM winners w
            JOIN s ON s.group_id = w.group_id AND s.group_idx = w.answer_class WHERE w.place = 1
        )
        SELECT grid.model, grid.controller, grid.budget, grid.k, count(*) AS groups, avg(coalesce(outcome.ok, 0)) AS accuracy
        FROM grid LEFT JOIN outcome USING (group_id, k)
        GROUP BY ALL ORDER BY grid.model, grid.controller, grid.budget, grid.k"""
    return _rows(cur, sql, params)


def settling(cur: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per (model, controller, budget) of probed generations (those that stored probes: ``early_exit``): how many thinking
    tokens were spent after the answer had settled on the final one (the early-exit papers'
    "overthinking"): its mean share of the thinking, the share of generations that stopped
    before N, and the mean probe tokens. A generation whose last probe was not its final answer
    spent nothing after settling."""
    where, params = filters.where()
    sql = f"""
        SELECT {GROUP}, count(*) AS n,
               avg(CASE WHEN settled_at IS NULL OR thinking_tokens = 0 THEN 0.0
                        ELSE (thinking_tokens - settled_at) / thinking_tokens END) AS after_settled_share,
               avg((settled_at IS NOT NULL)::INTEGER) AS settled_rate,
               avg((thinking_tokens < coalesce(inner_budget, budget))::INTEGER) AS stopped_early_rate,
               avg(thinking_tokens) AS mean_thinking_tokens, avg(probe_tokens) AS mean_probe_tokens
        FROM generations WHERE probes IS NOT NULL AND {where}
        GROUP BY {GROUP} ORDER BY {GROUP}"""
    return _rows(cur, sql, params)


def keyword_pattern(words: Sequence[str]) -> str:
    """A case-insensitive whole-word pattern (RE2, which DuckDB uses) for a category's words."""
    cleaned = sorted({w.strip().lower() for w in words if w and w.strip()}, key=len, reverse=True)
    if not cleaned:
        raise ValueError("a keyword category needs at least one word")
    return r"(?i)\b(?:" + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in cleaned) + r")\b"


def keyword_rates(cur: duckdb.DuckDBPyConnection, filters: Filters, categories: Mapping[str, Sequence[str]],
                  version: str | None = None) -> list[dict[str, Any]]:
    """Per (model, controller, budget, category): matches of the category's words in the output text
    (thinking and answer), and matches per 1,000 output tokens.

    A row whose ``keywords_version`` is ``version`` contributes its stored ``keyword_counts`` (made
    with these categories, in this order); any other row is counted here with a regular expression,
    which is correct but scans its text."""
    where, params = filters.where()
    names = list(categories)
    counts = ", ".join(
        f"sum(CASE WHEN keywords_version = ? THEN keyword_counts[{i + 1}] ELSE len(regexp_extract_all(full_text, ?)) END) AS c{i}"
        for i in range(len(names)))
    sql = f"SELECT {GROUP}, sum(total_tokens) AS tokens, {counts} FROM generations WHERE {where} GROUP BY {GROUP} ORDER BY {GROUP}"
    count_params = [value for name in names for value in (version, keyword_pattern(categories[name]))]
    out = []
    for row in _rows(cur, sql, [*count_params, *params]):  # the counts' ? come first in the SQL
        for i, name in enumerate(names):
            matches = int(row[f"c{i}"] or 0)
            rate = 1000.0 * matches / row["tokens"] if row["tokens"] else None
            out.append({"model": row["model"], "controller": row["controller"], "budget": row["budget"], "category": name,
                        "matches": matches, "tokens": int(row["tokens"] or 0), "per_1k_tokens": rate})
    return out


def list_generations(cur: duckdb.DuckDBPyConnection, filters: Filters, limit: int = 50) -> list[dict[str, Any]]:
    """The newest generations under the filters, without their texts (for picking one to open)."""
    where, params = filters.where()
    sql = (f"SELECT gen_id, run_id, model, controller, budget, total_tokens, correct, question FROM generations "
           f"WHERE {where} ORDER BY created_at DESC, gen_id LIMIT ?")
    return _rows(cur, sql, [*params, int(limit)])


def export_generations(cur: duckdb.DuckDBPyConnection, filters: Filters, path: Path, file_format: str) -> int:
    """Write the filtered generations to ``path`` (csv or parquet) with DuckDB's COPY; returns the row count."""
    if file_format not in ("csv", "parquet"):
        raise ValueError(f"format {file_format!r}: choose csv or parquet")
    where, params = filters.where()
    relation = cur.sql(f"SELECT * FROM generations WHERE {where} ORDER BY created_at, gen_id", params=params)
    if file_format == "csv":
        relation.write_csv(str(path))
    else:
        relation.write_parquet(str(path))
    ((count,),) = cur.execute(f"SELECT count(*) FROM generations WHERE {where}", params).fetchall()
    return int(count)


def _rows(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    result = cur.execute(sql, params)
    names = [c[0] for c in result.description]
    return [dict(zip(names, values)) for values in result.fetchall()]
