"""The `sweep` and `report` commands of app.py: a sweep from the shell, and its summary read back.

    python app.py sweep --model l1-tiny --dataset arith --limit 50 \\
        --controllers l1_exact,l1_max,s1 --budgets 64,128,256 --samples 4 --run demo --json
    python app.py report --run demo --json

A tqdm bar goes to stderr; the summary (a table, or with --json one JSON list) to stdout. Bad
input exits 2 with one line; failed generations exit 1 after the summary; an engine that cannot
start exits 1 with its log tail; Ctrl-C keeps what was stored and exits 130 (the same command resumes).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from typing import TextIO

import duckdb
from tqdm import tqdm

from backend.compare import InputError
from backend.engine import EngineUnavailable
from backend.interrupts import interrupts_held
from backend.models import UnknownModelError
from backend.settings import AppSettings
from backend.sweep import SweepProgress, SweepRequest, run_sweep
from store import queries
from store.summary import run_summary

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
TABLE_COLUMNS = ("model", "controller", "budget", "questions", "samples", "pass_at_1", "pass_at_k", "mean_tokens", "mean_rel_dev", "violation_rate", "tokens_per_s", "wall_s")


class ProgressBar:
    """Feeds SweepProgress updates into a tqdm bar on stderr, made at the first update (so that
    input refused before any work leaves stderr to its one-line reason)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar: tqdm | None = None
        self.shown = 0
        self.run_id: str | None = None

    def __call__(self, progress: SweepProgress) -> None:
        self.run_id = progress.run_id
        if self.bar is None:
            self.bar = tqdm(total=progress.total, unit="gen", file=self.stream, mininterval=0.5, dynamic_ncols=True)
        if self.bar.total != progress.total:
            self.bar.total = progress.total
        reached = progress.complete + progress.failed
        self.bar.set_description_str(progress.message[:60], refresh=False)
        self.bar.set_postfix_str(f"{progress.output_tokens / max(progress.elapsed_s, 1e-9):,.0f} tok/s" + (f", {progress.failed} failed" if progress.failed else ""), refresh=False)
        if reached > self.shown:
            self.bar.update(reached - self.shown)
            self.shown = reached

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sweep_command(settings: AppSettings, request: SweepRequest, env: Mapping[str, str], as_json: bool) -> int:
    from backend.service import Budgetlab  # imported here so that --help stays fast
    from store.writer import StoreConfig, StoreWriter

    try:
        store = StoreWriter(StoreConfig(settings.resolve_path(settings.db)))
    except duckdb.IOException as exc:
        return _refuse(f"cannot open {settings.db}: {queries.busy_reason(exc)}")
    except ValueError as exc:
        return _refuse(str(exc))
    # The shell user may read any path they name (within the size limit); the dashboard may not.
    service = Budgetlab.from_settings(settings, store, env=env, dataset_policy=settings.dataset_policy(any_path=True), model_paths=True)
    bar = ProgressBar(sys.stderr)
    try:
        try:
            outcome = asyncio.run(run_sweep(service, request, bar))
        finally:
            with interrupts_held():  # a Ctrl-C now is delivered once the store is closed
                bar.close()
                service.close()
                store.close()
    except (InputError, UnknownModelError) as exc:
        return _refuse(str(exc))
    except EngineUnavailable as exc:  # e.g. a model folder vLLM cannot load: its log tail says why
        print(f"app.py sweep: stopped, the engine is not available: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"app.py sweep: interrupted; what finished is stored: run it again with --run {bar.run_id or request.run} to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print_summary(outcome.summary, as_json)
    progress = outcome.progress
    if outcome.dataset.skipped:
        print(f"app.py sweep: skipped {len(outcome.dataset.skipped)} malformed records of {outcome.dataset.source}", file=sys.stderr)
    if outcome.aborted:
        print(f"app.py sweep: stopped: {outcome.aborted}", file=sys.stderr)
        return EXIT_FAILED
    if progress.failed:
        print(f"app.py sweep: {progress.failed} generations failed (last: {progress.last_error}); run the same command with --run {outcome.run_id} to retry them", file=sys.stderr)
        return EXIT_FAILED
    print(f"app.py sweep: run {outcome.run_id}: {progress.complete} generations stored ({progress.stored_before} from before), {progress.elapsed_s:.1f} s", file=sys.stderr)
    return 0


def report_command(settings: AppSettings, run_id: str | None, as_json: bool) -> int:
    try:
        con = queries.open_readonly(settings.resolve_path(settings.db))
    except (FileNotFoundError, queries.StoreBusyError) as exc:
        return _refuse(str(exc))
    with con:
        if run_id is None:
            runs = queries.list_runs(con)
            print(json.dumps(runs, default=str) if as_json else "\n".join(f"{r['run_id']}\t{r['kind']}\t{r['status']}\t{r['created_at']:%Y-%m-%d %H:%M}" for r in runs))
            return 0
        if queries.get_run(con, run_id) is None:
            return _refuse(f"no run {run_id!r} in {settings.db}: `python app.py report` lists the runs")
        print_summary(run_summary(con, run_id), as_json)
    return 0


def print_summary(summary: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    rows = [[_cell(group[c]) for c in TABLE_COLUMNS] for group in summary]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(TABLE_COLUMNS)]
    for line in [list(TABLE_COLUMNS), *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _refuse(message: str) -> int:
    print(f"app.py: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
