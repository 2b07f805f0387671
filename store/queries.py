"""Read queries over the store. Each takes a cursor from ``StoreWriter.reader()``.

All values travel as parameters, never spliced into SQL::

    with store.reader() as cur:
        total = count_generations(cur, run_id="r1")
        rows = get_generations(cur, "r1", limit=50)
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

Row = dict[str, Any]


def count_generations(cur: duckdb.DuckDBPyConnection, run_id: str | None = None) -> int:
    """Number of stored generations, of one run or of all."""
    if run_id is None:
        row = cur.execute("SELECT count(*) FROM generations").fetchone()
    else:
        row = cur.execute("SELECT count(*) FROM generations WHERE run_id = ?", [run_id]).fetchone()
    return int(row[0]) if row else 0


def get_generations(cur: duckdb.DuckDBPyConnection, run_id: str,
                    limit: int | None = None) -> list[Row]:
    """A run's generations as dicts, oldest first (ties broken by question, sample, gen_id)."""
    sql = ("SELECT * FROM generations WHERE run_id = ? "
           "ORDER BY created_at, question_id, sample_idx, gen_id")
    params: list[Any] = [run_id]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(_check_limit(limit))
    return _dicts(cur.execute(sql, params))


def get_generation(cur: duckdb.DuckDBPyConnection, gen_id: str) -> Row | None:
    """One generation by its key, or None."""
    rows = _dicts(cur.execute("SELECT * FROM generations WHERE gen_id = ?", [gen_id]))
    return rows[0] if rows else None


def list_runs(cur: duckdb.DuckDBPyConnection, limit: int = 100) -> list[Row]:
    """The most recent runs first, with ``config`` decoded from JSON."""
    runs = _dicts(cur.execute(
        "SELECT run_id, name, kind, created_at, config, status FROM runs "
        "ORDER BY created_at DESC, run_id LIMIT ?",
        [_check_limit(limit)],
    ))
    for run in runs:
        if run["config"] is not None:
            run["config"] = json.loads(run["config"])
    return runs


def duplicate_gen_ids(cur: duckdb.DuckDBPyConnection) -> int:
    """How many gen_ids are stored more than once; the key guarantees 0 (a check for tests)."""
    row = cur.execute(
        "SELECT count(*) FROM (SELECT gen_id FROM generations GROUP BY gen_id HAVING count(*) > 1)"
    ).fetchone()
    return int(row[0]) if row else 0


def _check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"limit must be an integer >= 0, got {limit!r}")
    return limit


def _dicts(result: duckdb.DuckDBPyConnection) -> list[Row]:
    names = [column[0] for column in result.description]
    return [dict(zip(names, values)) for values in result.fetchall()]
