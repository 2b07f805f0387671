"""The equal-token table of sweep `search-eq` (issue 33; `scripts/search_eq_sweep.sh` runs it).

Per budget N and controller: answers, accuracy, accuracy on the hardest questions (5-6 operations),
policy tokens per answer (mean and max: a search's whole tree), verifier tokens read per answer and
seconds per answer. Reads a copy of the sweep's store (the sweep may still hold the file)::

    .venv/bin/python scripts/search_eq_table.py                      # print the table
    .venv/bin/python scripts/search_eq_table.py --write README.md    # and put it between the search-eq-table markers
    .venv/bin/python scripts/search_eq_table.py --run search-eq16 --write README.md   # the search-eq16-table block
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from store.search import OPERATIONS_SQL  # noqa: E402
from store.units import units_sql  # noqa: E402

HARDEST = 5  # operations and more


def rows(db: Path, run: str) -> list[tuple]:
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in ("", ".wal"):
            if Path(f"{db}{suffix}").exists():
                shutil.copy(f"{db}{suffix}", f"{tmp}/copy.duckdb{suffix}")
        con = duckdb.connect(f"{tmp}/copy.duckdb")
        units, params = units_sql("run_id = ?", [run])
        sql = f"""
            SELECT u.budget, u.controller, count(*), avg(u.ok), sum(u.ok * (q.ops >= {HARDEST})::INTEGER), sum((q.ops >= {HARDEST})::INTEGER),
                   avg(u.cost_tokens), max(u.cost_tokens), avg(u.verifier_tokens), avg(u.t_end - u.t_start)
            FROM ({units}) u JOIN (SELECT DISTINCT question_id, {OPERATIONS_SQL} AS ops FROM generations WHERE run_id = ?) q
              ON u.question_id = q.question_id
            GROUP BY ALL ORDER BY u.budget, min(u.t_start)"""
        result = con.execute(sql, [*params, run]).fetchall()
        con.close()
        return result


def table(result: list[tuple]) -> str:
    lines = ["| N | controller | answers | accuracy | hardest (5-6 ops) | policy tokens per answer (max) | verifier tokens per answer | s per answer |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for budget, controller, n, acc, hard_ok, hard_n, cost, cost_max, verifier, seconds in result:
        lines.append(f"| {budget} | `{controller}` | {n} | {acc:.0%} | {hard_ok / hard_n if hard_n else 0:.0%} (of {hard_n}) | {cost:.0f} ({cost_max}) "
                     f"| {verifier:.0f} | {seconds:.0f} |")
    return "\n".join(lines)


def write_between_markers(path: Path, text: str, block: str) -> None:
    start, end = f"<!-- {block}:start -->", f"<!-- {block}:end -->"
    content = path.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{path}: no {start} ... {end} block to replace")
    path.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{text}\n{end}", content, flags=re.S))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("data/search/search.duckdb"))
    parser.add_argument("--run", default="search-eq")
    parser.add_argument("--write", type=Path, action="append", default=[], help="a file whose RUN-table block is replaced")
    args = parser.parse_args()
    text = table(rows(args.db, args.run))
    print(text)
    for path in args.write:
        write_between_markers(path, text, f"{args.run}-table")


if __name__ == "__main__":
    main()
