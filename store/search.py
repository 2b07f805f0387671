"""Aggregates of verifier-guided methods (issue 33), in DuckDB over the stored search trees.

A search's tree (``search_tree``: JSON nodes with the verifier's ``score`` and the arith oracle's
verdict ``oracle``), and a scored sample's steps, are unnested in SQL; nothing travels to Python but
the aggregates::

    with store.reader() as cur:
        bins = calibration(cur, filters)      # per verifier: mean score against the oracle's share of right steps, by score decile
        wins = by_difficulty(cur, filters)    # per (model, controller, budget, operations): accuracy of arith answers

The verifier is the part of the controller's name after ``@`` (``beam4x4:l1_exact@tiny-prm``); the
difficulty of an arith question is its number of operations (``Compute 7 - 3 + 8.``: 2).
"""

from __future__ import annotations

from typing import Any

import duckdb

from store.analytics import Filters, _rows
from store.units import units_sql

NODE_TYPE = '[{"score": "DOUBLE", "oracle": "BOOLEAN"}]'
BINS = 10


def calibration(cur: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per (verifier, score bin): steps, the verifier's mean score and the share the oracle calls right
    (a calibrated verifier has the two equal); only steps the oracle judged (arith questions)."""
    where, params = filters.where()
    sql = f"""
        WITH steps AS (
            SELECT regexp_extract(controller, '@(.+)$', 1) AS verifier, unnest(from_json(search_tree, '{NODE_TYPE}')) AS node
            FROM generations WHERE search_tree IS NOT NULL AND {where}
        )
        SELECT verifier, least(floor(node.score * {BINS}), {BINS - 1})::INTEGER AS bin, count(*) AS steps,
               avg(node.score) AS mean_score, avg(node.oracle::INTEGER) AS right_share
        FROM steps WHERE node.score IS NOT NULL AND node.oracle IS NOT NULL AND verifier <> ''
        GROUP BY ALL ORDER BY verifier, bin"""
    return _rows(cur, sql, params)


OPERATIONS_SQL = "(length(question) - length(replace(replace(question, ' + ', ''), ' - ', ''))) / 3"


def by_difficulty(cur: duckdb.DuckDBPyConnection, filters: Filters) -> list[dict[str, Any]]:
    """Per (model, controller, budget, operations) of arith answers: answers and accuracy; which method wins
    at which difficulty (Snell et al. 2024's compute-optimal view)."""
    units, params = units_sql(*filters.where())
    sql = f"""
        SELECT u.model, u.controller, u.budget, q.operations, count(*) AS n, avg(u.ok) AS accuracy, avg(u.cost_tokens) AS mean_cost_tokens
        FROM ({units}) u
        JOIN (SELECT DISTINCT question_id, dataset, {OPERATIONS_SQL} AS operations FROM generations WHERE dataset = 'arith') q
          ON u.question_id = q.question_id AND u.dataset = q.dataset
        GROUP BY ALL ORDER BY u.model, u.controller, u.budget, q.operations"""
    return _rows(cur, sql, params)
