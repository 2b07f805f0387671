"""Read queries over the store. Each takes a cursor from ``StoreWriter.reader()``.

All values travel as parameters, never spliced into SQL::

    with store.reader() as cur:
        total = count_generations(cur, run_id="r1")
        rows = get_generations(cur, "r1", limit=50)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
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


def count_sweeps_with_generations(cur: duckdb.DuckDBPyConnection) -> int:
    """Sweep runs that stored at least one generation (the Analytics tab's first run offers one while there is none)."""
    ((count,),) = cur.execute("SELECT count(*) FROM runs r WHERE r.kind = 'sweep' AND EXISTS "
                              "(SELECT 1 FROM generations g WHERE g.run_id = r.run_id)").fetchall()
    return int(count)


def count_runs(cur: duckdb.DuckDBPyConnection) -> int:
    """Number of stored runs (compare, sweep), whatever their status."""
    row = cur.execute("SELECT count(*) FROM runs").fetchone()
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


def get_run(cur: duckdb.DuckDBPyConnection, run_id: str) -> Row | None:
    """One run with ``config`` decoded from JSON, or None."""
    runs = _dicts(cur.execute(
        "SELECT run_id, name, kind, created_at, config, status FROM runs WHERE run_id = ?", [run_id]
    ))
    for run in runs:
        if run["config"] is not None:
            run["config"] = json.loads(run["config"])
    return runs[0] if runs else None


def stored_gen_ids(cur: duckdb.DuckDBPyConnection, run_id: str) -> set[str]:
    """The keys a run already has: what a resumed sweep skips."""
    return {row[0] for row in cur.execute("SELECT gen_id FROM generations WHERE run_id = ?", [run_id]).fetchall()}


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


def open_readonly(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection for a process that only reads (``app.py report``).

    DuckDB refuses it while another process has the file open for writing; the error says so.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no store at {path}: run a sweep first, or pass --db with the right file")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        raise StoreBusyError(f"cannot open {path}: {busy_reason(exc)}") from None


class ReadOnlyStore:
    """The store of a process that only reads (``app.py report``): cursors from one read-only
    connection and no writer thread, so it never holds the file for writing. Like `StoreWriter`,
    ``reader()`` hands out a cursor to use in a ``with`` block."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con = open_readonly(path)

    def reader(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    def close(self) -> None:
        self._con.close()


class StoreBusyError(RuntimeError):
    """The DuckDB file is held by another process (DuckDB allows one writer and no other reader)."""


def busy_reason(exc: Exception) -> str:
    """One line for a lock conflict, naming the other process when DuckDB tells it."""
    text = str(exc)
    pid = re.search(r"PID (\d+)", text)
    who = f"process {pid.group(1)}" if pid else "another process"
    return (f"{who} has it open (a running dashboard or sweep?); stop it, use another --db, "
            "or run this from the dashboard")


def _check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"limit must be an integer >= 0, got {limit!r}")
    return limit


def _dicts(result: duckdb.DuckDBPyConnection) -> list[Row]:
    names = [column[0] for column in result.description]
    return [dict(zip(names, values)) for values in result.fetchall()]
