"""The Sweep tab: the paper's evaluation from a form, with a live progress bar and a results table.

`build_sweep_tab(service, jobs)` adds the tab to the enclosing Blocks. The handler parses and checks
the form (backend.service.sweep_plan, `Budgetlab.check_sweep`), starts the sweep as a job of the
app (`backend.jobs.sweeps`: it outlives the page, any page lists it, a restarted app resumes it)
and shows the job's progress until it ends; Stop stops the job (what finished is stored, and
Resume or the same run name continues it). "Run later or every night" schedules the same sweep at a
time or on a cron line. The same sweep is the named API endpoint ``/sweep`` (form values in, the
summary as JSON out, once its job has ended).

The preset "sequential vs parallel at equal tokens" fills the form with the test-time-compute
comparison (one long thought, votes over shorter ones, no thinking, budget forcing, early exit,
the engine's thinking cap) at budgets where every method's generations (N, or N/K per sample)
lie inside the default model's trained range (`preset_form`) and, once its sweep is done, opens the
Analytics tab on its run (`ui.app` wires that with the handles this factory returns).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import gradio as gr

from backend.controllers.registry import controller_names
from backend.errors import InputError
from backend.evaluation.datasets import BUILTIN_DATASETS
from backend.jobs.scheduler import TrainingJobs
from backend.jobs.sweeps import SweepStateError, SweepSubmission
from backend.jobs.when import parse_when
from backend.service.budgetlab import Budgetlab
from backend.service.sweep_plan import parse_sweep_request
from backend.serving.engine import EngineUnavailable
from backend.serving.registry import UnknownModelError
from ui.jobs_panel import follow_job
from ui.render import SUMMARY_COLUMNS, render_sweep_job, summary_rows

DEFAULT_CONTROLLERS = ["l1_exact", "l1_max", "s1"]
REFRESH_S = 1.0  # how often the tab, while shown, looks at the sweep job it shows
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
    timer: gr.Timer  # inactive: the app turns it on while the tab is shown


def build_sweep_tab(service: Budgetlab, jobs: TrainingJobs) -> SweepHandles:
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
                when, run_at, cron, schedule = _schedule_controls()
        gr.Markdown("A sweep runs as a job of the app: closing this page does not stop it, any page shows it (Jobs, at the top), "
                    "and an app restarted in the middle of one resumes it.", elem_classes=["bl-muted"])
        progress_html = gr.HTML(render_sweep_job(None), elem_id="bl-sweep-progress")
        results = gr.Dataframe(headers=list(SUMMARY_COLUMNS), label="Results per (model, controller, budget)", interactive=False, elem_id="bl-sweep-results")
        note = gr.Markdown("", elem_id="bl-sweep-note")
        finished_run = gr.State("")
        open_analytics = gr.State(False)
        followed = gr.State("")  # the sweep job this page shows

        preset.click(lambda: preset_form(service), outputs=[models, dataset, controllers, budgets, limit, samples, run_name, open_analytics], api_visibility="private")
        form = [models, dataset, controllers, budgets, limit, samples, seed, parallel, run_name, skip_bad]
        event = start.click(_stream_handler(service, jobs), inputs=form, outputs=[progress_html, results, note, finished_run, followed], api_name="sweep_stream")
        stop.click(lambda job_id: _stop(jobs, job_id), inputs=followed, outputs=note, api_visibility="private")
        schedule.click(_schedule_handler(service, jobs), inputs=[*form, when, run_at, cron], outputs=note, api_visibility="private")

        # Opening the tab shows the sweep running now (started from any page), then follows it while the tab is shown.
        tab.select(lambda job_id: (gr.update(choices=service.model_names()), gr.update(choices=_dataset_choices(service)), *shown_sweep(jobs, job_id)),
                   inputs=followed, outputs=[models, dataset, progress_html, followed], api_visibility="private", queue=False)
        timer = gr.Timer(REFRESH_S, active=False)
        timer.tick(lambda job_id: shown_sweep(jobs, job_id), inputs=followed, outputs=[progress_html, followed], api_visibility="private", queue=False)
        _api(service, jobs)
    return SweepHandles(event, finished_run, open_analytics, timer)


def _stream_handler(service: Budgetlab, jobs: TrainingJobs):
    async def sweep_stream(models, dataset, controllers, budgets, limit, samples, seed, parallel, run_name, skip_bad):
        """Start the sweep as a job (or follow the one already running that run), then show it until it ends."""
        try:
            request = parse_sweep_request(models, dataset, controllers, budgets, samples, limit, seed, parallel, run_name, skip_bad=bool(skip_bad))
            request = await service.check_sweep(request)
        except (InputError, UnknownModelError, EngineUnavailable) as exc:
            gr.Warning(str(exc))
            yield render_sweep_job(None, error=str(exc)), gr.skip(), gr.skip(), "", gr.skip()
            return
        job_id = start_sweep_job(jobs, request, "sweep")
        async for job in follow_job(jobs, job_id):
            yield render_sweep_job(job), gr.skip(), gr.skip(), gr.skip(), job_id
        if job.get("state") == "failed":
            gr.Warning(job.get("error") or "the sweep failed")
        yield render_sweep_job(job), summary_rows(service.sweep_summary(request.run)), _run_note(job), request.run, job_id
    return sweep_stream


def _schedule_handler(service: Budgetlab, jobs: TrainingJobs):
    async def schedule_sweep(models, dataset, controllers, budgets, limit, samples, seed, parallel, run_name, skip_bad, when, run_at, cron):
        """The form's sweep, run at a time or on a cron schedule (each firing a new run: the run name and the firing's time)."""
        at, problems = parse_when(when, run_at or None, cron)
        if problems:
            return "**Not scheduled**: " + "; ".join(message for _, message in problems)
        try:
            request = parse_sweep_request(models, dataset, controllers, budgets, samples, limit, seed, parallel, run_name, skip_bad=bool(skip_bad))
            request = await service.check_sweep(request)
        except (InputError, UnknownModelError, EngineUnavailable) as exc:
            return f"**Not scheduled**: {exc}"
        job_id = jobs.sweeps.submit(SweepSubmission(request.run, (request.to_json(),), when, at, (cron or "").strip()))
        if when == "cron":
            return f"Recurring sweep **{job_id}** (cron `{cron.strip()}`, UTC): each firing stores a new run named {request.run}-<time>. Jobs, at the top, lists it."
        return f"Sweep job **{job_id}** ({'at ' + f'{at:%Y-%m-%d %H:%M} UTC' if at else 'now'}): run **{request.run}**. Jobs, at the top, shows its progress."
    return schedule_sweep


def _schedule_controls():
    with gr.Accordion("Run later or every night", open=False):
        when = gr.Radio(label="When", choices=[("At a time (UTC)", "at"), ("Recurring (cron, UTC)", "cron")], value="cron", elem_id="bl-sweep-when")
        with gr.Row():
            run_at = gr.Textbox(label="At (YYYY-MM-DD HH:MM, UTC)", value="", placeholder="2027-01-01 02:00", elem_id="bl-sweep-run-at")
            cron = gr.Textbox(label="Cron line (minute hour day month weekday, UTC)", value="", placeholder="0 2 * * *", elem_id="bl-sweep-cron")
        button = gr.Button("Schedule", elem_id="bl-sweep-schedule")
    return when, run_at, cron, button


def start_sweep_job(jobs: TrainingJobs, request, purpose: str) -> str:
    """A job for a checked request, or the job already waiting for or running its run (two would generate the same items)."""
    return jobs.sweeps.active_for_run(request.run) or jobs.sweeps.submit(SweepSubmission(request.run, (request.to_json(),), purpose=purpose))


def shown_sweep(jobs: TrainingJobs, followed: str):
    """What the Sweep tab shows on any page: the sweep running now, else the one this page followed, else the newest."""
    listed = [j for j in jobs.sweeps.jobs() if j.get("state") != "recurring"]
    running = [j for j in listed if j.get("state") == "running"]
    mine = [j for j in listed if j.get("job_id") == followed]
    job = (running or mine or listed or [None])[0]
    return render_sweep_job(job), (job or {}).get("job_id", "")


def _stop(jobs: TrainingJobs, job_id: str) -> str:
    if not job_id:
        return "**Stop**: no sweep is running"
    try:
        return jobs.sweeps.cancel(job_id)
    except SweepStateError as exc:
        return f"**Stop**: {exc}"


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


def _api(service: Budgetlab, jobs: TrainingJobs) -> None:
    async def sweep(models: list[str], dataset: str, controllers: list[str], budgets: list[int], limit: int | None = None,
                    samples: int = 1, seed: int = 0, run: str = "") -> list[dict]:
        """Run (or resume) a sweep as a job and wait for it; returns its summary, one object per (model, controller, budget).
        A sweep in which some generations failed is an error that says how many and the last reason (what finished is
        stored; the same run name retries the rest). The job outlives the call: /jobs lists it, /job_stop stops it."""
        try:
            request = await service.check_sweep(parse_sweep_request(models, dataset, controllers, budgets, samples, limit, seed, None, run or None))
        except (InputError, UnknownModelError, EngineUnavailable) as exc:
            raise gr.Error(str(exc)) from None
        async for job in follow_job(jobs, start_sweep_job(jobs, request, "api")):
            pass
        if job.get("state") != "finished":
            raise gr.Error(f"job {job.get('job_id')} ({job.get('state')}): {job.get('error')}")
        return service.sweep_summary(request.run)

    gr.api(sweep, api_name="sweep")


def _run_note(job: dict) -> str:
    """What a finished (or stopped) sweep job stored, from its last progress."""
    progress = job.get("progress") or {}
    lines = [f"Run **{progress.get('run_id')}**: {progress.get('complete', 0)} of {progress.get('total', 0)} generations stored "
             f"({progress.get('stored_before', 0)} from before), dataset {progress.get('dataset', '?')} ({progress.get('questions', '?')} questions)."]
    if progress.get("skipped"):
        lines.append(f"Skipped {progress['skipped']} malformed records.")
    if progress.get("failed"):
        lines.append(f"{progress['failed']} generations failed (last: {progress.get('last_error')}); Resume the job (Jobs, at the top) to retry them.")
    if job.get("state") == "cancelled":
        lines.append("Stopped before the end: Resume it from Jobs, at the top, or run the same run name again.")
    lines.append(f"The same numbers from the store: `python app.py report --run {progress.get('run_id')} --json`.")
    return "\n\n".join(lines)


def _dataset_choices(service: Budgetlab) -> list[str]:
    return [*BUILTIN_DATASETS, *service.dataset_policy.files()]
