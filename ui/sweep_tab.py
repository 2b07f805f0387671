"""The Sweep tab: the paper's evaluation from a form, with a live progress bar and a results table.

`build_sweep_tab(service)` adds the tab to the enclosing Blocks. The handler parses the form with
backend.service.sweep_plan, runs the service's sweep as a task and shows its progress twice a second; Stop cancels it
(what finished is stored, and the same run name resumes it). The same sweep is the named API
endpoint ``/sweep`` (form values in, the summary as JSON out).

The preset "sequential vs parallel at equal tokens" fills the form with the test-time-compute
comparison (one long thought, votes over shorter ones, no thinking, budget forcing, early exit,
the engine's thinking cap) at budgets where every method's generations (N, or N/K per sample)
lie inside the default model's trained range (`preset_form`) and, once its sweep is done, opens the
Analytics tab on its run (`ui.app` wires that with the handles this factory returns).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import gradio as gr

from backend.controllers.registry import controller_names
from backend.errors import InputError
from backend.evaluation.datasets import BUILTIN_DATASETS
from backend.service.budgetlab import Budgetlab
from backend.service.sweep import SweepOutcome
from backend.service.sweep_plan import SweepProgress, parse_sweep_request
from backend.serving.engine import EngineUnavailable
from ui.render import SUMMARY_COLUMNS, render_sweep_progress, summary_rows

DEFAULT_CONTROLLERS = ["l1_exact", "l1_max", "s1"]
REFRESH_S = 0.5
# "Sequential vs parallel at equal tokens": every controller is given the same total N.
PRESET_CONTROLLERS = ["l1_exact", "maj4:l1_exact", "maj4:no_thinking", "s1", "early_exit", "thinking_cap"]
PRESET_QUESTIONS = 20


@dataclass
class SweepHandles:
    """The finished sweep (an event to chain on), the run it stored, and whether the preset asked
    for the Analytics tab to open on it."""

    finished: object
    run: gr.State
    open_analytics: gr.State


def build_sweep_tab(service: Budgetlab) -> SweepHandles:
    budgets_default = service.suggested_budgets()
    with gr.Tab("Sweep", id="sweep") as tab:
        with gr.Row():
            with gr.Column(scale=3):
                models = gr.Dropdown(label="Models", choices=service.model_names(), value=[service.default_model], multiselect=True, allow_custom_value=True, elem_id="bl-sweep-models")
                dataset = gr.Dropdown(
                    label="Dataset: a built-in name, a JSONL/Parquet/CSV file in the dataset folders, or a hub name",
                    info=f"Dataset folders (--dataset-dirs): {service.dataset_policy.roots_text()}",
                    choices=_dataset_choices(service), value=BUILTIN_DATASETS[0], allow_custom_value=True, elem_id="bl-sweep-dataset",
                )
                controllers = gr.CheckboxGroup(label="Controllers (majK:INNER / bestK:INNER: K samples of INNER at N/K tokens each, then a vote or the most confident)",
                                               choices=controller_names(), value=DEFAULT_CONTROLLERS, elem_id="bl-sweep-controllers")
                budgets = gr.Dropdown(label="Budgets (tokens)", choices=[str(b) for b in budgets_default], value=[str(b) for b in budgets_default[:3]],
                                      multiselect=True, allow_custom_value=True, elem_id="bl-sweep-budgets")
            with gr.Column(scale=2):
                with gr.Row():
                    limit = gr.Number(label="Questions (empty: all)", value=20, precision=0, minimum=1, elem_id="bl-sweep-limit")
                    samples = gr.Number(label="Samples per question", value=1, precision=0, minimum=1, elem_id="bl-sweep-samples")
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, elem_id="bl-sweep-seed")
                    parallel = gr.Number(label="Requests at once", value=service.sweep_concurrency, precision=0, minimum=1, elem_id="bl-sweep-concurrency")
                run_name = gr.Textbox(label="Run name (empty: automatic; an existing name resumes that run)", value="", elem_id="bl-sweep-run")
                skip_bad = gr.Checkbox(label="Skip malformed records instead of refusing the file", value=False)
                with gr.Row():
                    start = gr.Button("Run sweep", variant="primary", elem_id="bl-sweep-start")
                    stop = gr.Button("Stop", variant="stop", elem_id="bl-sweep-stop")
                preset = gr.Button("Preset: sequential vs parallel at equal tokens", size="sm", elem_id="bl-sweep-preset")
        tab.select(lambda: (gr.update(choices=service.model_names()), gr.update(choices=_dataset_choices(service))),
                   outputs=[models, dataset], api_visibility="private", queue=False)
        progress_html = gr.HTML(render_sweep_progress(None), elem_id="bl-sweep-progress")
        results = gr.Dataframe(headers=list(SUMMARY_COLUMNS), label="Results per (model, controller, budget)", interactive=False, elem_id="bl-sweep-results")
        note = gr.Markdown("", elem_id="bl-sweep-note")
        finished_run = gr.State("")
        open_analytics = gr.State(False)

        preset.click(lambda: preset_form(service), outputs=[models, dataset, controllers, budgets, limit, samples, run_name, open_analytics], api_visibility="private")

        async def sweep_stream(models, dataset, controllers, budgets, limit, samples, seed, parallel, run_name, skip_bad):
            try:
                request = parse_sweep_request(models, dataset, controllers, budgets, samples, limit, seed, parallel, run_name, skip_bad=bool(skip_bad))
            except InputError as exc:
                gr.Warning(str(exc))
                yield render_sweep_progress(None, error=str(exc)), gr.skip(), gr.skip(), ""
                return
            last = None
            try:
                async for last in follow_sweep(service, request):
                    if isinstance(last, SweepProgress):
                        yield render_sweep_progress(last), gr.skip(), gr.skip(), gr.skip()
            except (InputError, EngineUnavailable) as exc:
                gr.Warning(str(exc))
                yield render_sweep_progress(last if isinstance(last, SweepProgress) else None, error=str(exc)), gr.skip(), gr.skip(), ""
                return
            outcome = last
            yield render_sweep_progress(outcome.progress, error=outcome.aborted), summary_rows(outcome.summary), _run_note(outcome), outcome.run_id

        event = start.click(
            sweep_stream,
            inputs=[models, dataset, controllers, budgets, limit, samples, seed, parallel, run_name, skip_bad],
            outputs=[progress_html, results, note, finished_run],
            api_name="sweep_stream",
        )
        stop.click(None, cancels=[event], api_visibility="private")

        _api(service)
    return SweepHandles(event, finished_run, open_analytics)


def preset_form(service: Budgetlab) -> tuple:
    """The form as the preset "sequential vs parallel at equal tokens" fills it: models, dataset, controllers,
    budgets, questions, samples, run name, and that the Analytics tab opens on the run when it is done.
    Its budgets (low, middle, high) are ones at which every method's generations (N, or N/K per sample)
    are asked for a budget inside the default model's trained range. Its models: the default one and
    the base it was trained from, each method on the one it is meant for (`backend.service.pairing`)."""
    budgets = service.equal_token_budgets(PRESET_CONTROLLERS)
    choices = sorted({*service.suggested_budgets(), *budgets})
    return (service.equal_token_models(), "arith", PRESET_CONTROLLERS, gr.update(choices=[str(b) for b in choices], value=[str(b) for b in budgets]),
            PRESET_QUESTIONS, 1, f"equal-tokens-{dt.datetime.now():%Y%m%d-%H%M%S}", True)


async def follow_sweep(service: Budgetlab, request) -> AsyncIterator[SweepProgress | SweepOutcome]:
    """Run a sweep, yielding its progress every `REFRESH_S` and its outcome last. Closing the
    generator (Stop, a closed page) cancels the sweep; what finished is stored."""
    latest: list[SweepProgress] = []
    task = asyncio.create_task(service.sweep(request, latest.append))
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=REFRESH_S)
            if latest:
                yield latest[-1]
                del latest[:-1]
        yield task.result()
    finally:
        task.cancel()


def _api(service: Budgetlab) -> None:
    async def sweep(models: list[str], dataset: str, controllers: list[str], budgets: list[int], limit: int | None = None,
                    samples: int = 1, seed: int = 0, run: str = "") -> list[dict]:
        """Run (or resume) a sweep; returns its summary, one object per (model, controller, budget).
        A sweep in which some generations failed is an error that says how many and the last
        reason (what finished is stored; the same run name retries the rest)."""
        try:
            request = parse_sweep_request(models, dataset, controllers, budgets, samples, limit, seed, None, run or None)
            outcome = await service.sweep(request)
        except (InputError, EngineUnavailable) as exc:
            raise gr.Error(str(exc)) from None
        if outcome.progress.failed or outcome.aborted:
            raise gr.Error(f"run {outcome.run_id}: {outcome.progress.failed} of {outcome.progress.total} generations failed "
                           f"(last: {outcome.progress.last_error}); {outcome.progress.complete} are stored, and the same run name retries the rest")
        return outcome.summary

    gr.api(sweep, api_name="sweep")


def _run_note(outcome) -> str:
    progress = outcome.progress
    lines = [f"Run **{outcome.run_id}**: {progress.complete} of {progress.total} generations stored "
             f"({progress.stored_before} from before), dataset {outcome.dataset.name} ({len(outcome.dataset.questions)} questions)."]
    if outcome.dataset.skipped:
        lines.append(f"Skipped {len(outcome.dataset.skipped)} malformed records.")
    if progress.failed:
        lines.append(f"{progress.failed} generations failed (last: {progress.last_error}); run the same name again to retry them.")
    lines.append(f"The same numbers from the store: `python app.py report --run {outcome.run_id} --json`.")
    return "\n\n".join(lines)


def _dataset_choices(service: Budgetlab) -> list[str]:
    return [*BUILTIN_DATASETS, *service.dataset_policy.files()]
