"""The terminal face of the app: the `sweep`, `audit` and `report` commands of app.py.

A sweep from the shell, and its summary read back; like the dashboard's tabs, they open the app
with `backend.factory.open_app` and call the service.

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

from tqdm import tqdm

from backend.errors import InputError
from backend.factory import StoreUnavailable, open_app
from backend.service.sweep_plan import SweepProgress, SweepRequest
from backend.serving.engine import EngineUnavailable
from backend.serving.registry import UnknownModelError
from backend.settings import AppSettings

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
TABLE_COLUMNS = ("model", "controller", "budget", "k", "questions", "samples", "pass_at_1", "pass_at_k", "mean_tokens", "mean_probe_tokens", "mean_rel_dev", "violation_rate", "tokens_per_s", "wall_s",
                 "outside_trained_range")


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


def sweep_command(settings: AppSettings, request: SweepRequest, env: Mapping[str, str], as_json: bool, audit: bool = False) -> int:
    """``app.py sweep``; with `audit`, ``app.py audit``: the same sweep, then its verdict per knob instead of the summary."""
    bar = ProgressBar(sys.stderr)
    try:
        with open_app(settings, env, shell=True) as app:  # a Ctrl-C while it closes is delivered once the store is closed
            try:
                outcome = asyncio.run(app.service.sweep(request, bar))
            finally:
                bar.close()
            report = app.service.audit(outcome.run_id) if audit else None
    except (StoreUnavailable, InputError, UnknownModelError) as exc:
        return _refuse(str(exc))
    except EngineUnavailable as exc:  # e.g. a model folder vLLM cannot load: its log tail says why
        print(f"app.py sweep: stopped, the engine is not available: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"app.py sweep: interrupted; what finished is stored: run it again with --run {bar.run_id or request.run} to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if report is not None:
        print_audit(report, as_json)
    else:
        print_summary(outcome.summary, as_json)
    return _sweep_verdict(outcome)


def _sweep_verdict(outcome) -> int:
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
    """List the runs, or print one's summary, from the store opened read-only (no engine)."""
    try:
        with open_app(settings, env={}, read_only=True) as app:
            if run_id is None:
                runs = app.service.runs()
                print(json.dumps(runs, default=str) if as_json else "\n".join(f"{r['run_id']}\t{r['kind']}\t{r['status']}\t{r['created_at']:%Y-%m-%d %H:%M}" for r in runs))
                return 0
            summary = app.service.run_report(run_id)
    except StoreUnavailable as exc:
        return _refuse(str(exc))
    if summary is None:
        return _refuse(f"no run {run_id!r} in {settings.db}: `python app.py report` lists the runs")
    print_summary(summary, as_json)
    return 0


def print_summary(summary: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    rows = [[_cell(group.get(c)) for c in TABLE_COLUMNS] for group in summary]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(TABLE_COLUMNS)]
    for line in [list(TABLE_COLUMNS), *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
    for group in summary:  # what "below" / "above" means, in words
        if group.get("trained_range_note"):
            print(f"{group['model']} {group['controller']} N={group['budget']}: {group['trained_range_note']}")


def print_audit(report: dict, as_json: bool) -> None:
    """The audit's verdicts (one line per model and controller, then why), or with --json the whole report."""
    if as_json:
        print(json.dumps(report, default=str))
        return
    columns = ("model", "controller", "verdict", "budgets", "generations", "over_share", "empty_share", "slope", "token_counts")
    rows = [[",".join(map(str, v["budgets"])) if c == "budgets" else _cell(v[c]) for c in columns] for v in report["verdicts"]]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    for line in [list(columns), *rows]:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
    for v in report["verdicts"]:
        print(f"{v['model']} {v['controller']}: {v['verdict']}: {v['why']}")


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _refuse(message: str) -> int:
    print(f"app.py: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
