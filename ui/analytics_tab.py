"""The Analytics tab: every stored generation, aggregated live in DuckDB, for people deciding how much
thinking to pay for.

`build_analytics_tab(service, jobs, export_dir)` adds the tab. One set of filters (model,
controller, dataset, run, budget range) drives every view: accuracy against tokens, accuracy
against cost with the Pareto frontier and a recommender, then the registered chart views
(`ui.analytics_views`: adherence, thinking against answer tokens, vote curves, early exit, a
verifier's calibration, accuracy by difficulty, keywords), and the fine-tunes' training curves. Handlers ask the service's
`Analytics` (`backend.service.analytics`: the aggregates, priced) and draw with `ui.charts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from backend.errors import InputError
from backend.jobs.scheduler import TrainingJobs
from backend.service.analytics import Analytics, AnalyticsView, filters_from_form
from backend.service.budgetlab import Budgetlab
from backend.service.first_run import first_run_plan
from backend.jobs.sweeps import SweepSubmission
from backend.serving.engine import EngineUnavailable
from backend.serving.registry import UnknownModelError
from ui import charts
from ui.analytics_views import CHART_VIEWS, DrawOptions, rows_of_views
from ui.jobs_panel import follow_job
from ui.render import render_sweep_job

# The link to the Analytics view under the current filters, built in the browser (it knows its own address).
VIEW_LINK_JS = """(models, controllers, datasets, runs, from, to, log) => {
  const params = new URLSearchParams({view: 'analytics'});
  for (const [key, value] of [['models', models], ['controllers', controllers], ['datasets', datasets], ['runs', runs]]) {
    if (value && value.length) params.set(key, value.join(','));
  }
  if (from) params.set('from', from);
  if (to) params.set('to', to);
  if (log) params.set('log', '1');
  return location.origin + location.pathname + '?' + params.toString();
}"""
FIRST_RUN_REFRESH_S = 1.0
AGGREGATE_COLUMNS = ("model", "controller", "budget", "budget_kind", "samples", "n", "accuracy", "accuracy_low", "accuracy_high", "mean_tokens",
                     "mean_probe_tokens", "mean_thinking_tokens", "mean_answer_tokens", "thinking_to_answer", "mean_abs_rel_dev", "violation_rate",
                     "cost_per_1k", "token_counts", "outside_trained_range")
GENERATION_COLUMNS = ("gen_id", "run_id", "model", "controller", "budget", "total_tokens", "correct", "question")


@dataclass
class _Views:
    """The output components: the fixed ones, then one plot per registered chart view (ui/analytics_views.py), in the order `_draw` fills them."""

    status: gr.Markdown
    recommendation: gr.Markdown
    tradeoff: gr.Plot
    series: gr.Markdown
    charts: list  # one gr.Plot per CHART_VIEWS entry, in its order
    aggregates: gr.Dataframe
    generations: gr.Dataframe

    def outputs(self) -> list:
        return [self.status, self.recommendation, self.tradeoff, self.series, *self.charts, self.aggregates, self.generations]


@dataclass
class AnalyticsHandles:
    """What another tab needs to open this one on a run: its filters, and a draw function
    taking the filter values (`inputs`) and filling `outputs`."""

    runs: gr.Dropdown
    inputs: list
    outputs: list
    draw: object
    link_inputs: list  # the filters and the log-axis box: what a link to this view sets (`filters_from_link`)
    timer: gr.Timer  # the first-run box's refresh, inactive: the app turns it on while the tab is shown


def filters_from_link(params) -> list:
    """A shared link's query parameters (?view=analytics&models=a,b&runs=r&from=64&to=512&log=1) as the
    values of `AnalyticsHandles.link_inputs`."""
    def names(key: str) -> list[str]:
        return [part for part in (params.get(key) or "").split(",") if part]

    def bound(key: str) -> int:
        value = params.get(key) or "0"
        return int(value) if value.isdigit() else 0

    return [names("models"), names("controllers"), names("datasets"), names("runs"), bound("from"), bound("to"), params.get("log") == "1"]


def build_analytics_tab(service: Budgetlab, jobs: TrainingJobs, export_dir: Path) -> AnalyticsHandles:
    analytics = service.analytics
    with gr.Tab("Analytics", id="analytics") as tab:
        first_run, reproduce, first_progress = _first_run_box(service, jobs)
        filters, log_tokens, with_verifier, target, refresh = _filter_controls(analytics.filter_options())
        share = gr.Textbox(label="Link to this view (these filters; opens the Analytics tab on them)", interactive=False, buttons=["copy"],
                           elem_id="bl-an-share-link")
        with gr.Accordion("Prices per model ($ per 1M tokens; empty: the defaults)", open=False):
            prices = gr.Dataframe(headers=["model", "$ per 1M input", "$ per 1M output"], value=[], interactive=True, column_count=(3, "fixed"), elem_id="bl-an-prices")
        views = _view_components()
        opened = gr.Markdown("", elem_id="bl-an-opened")
        with gr.Row():
            export_csv = gr.Button("Export CSV", elem_id="bl-an-export-csv")
            export_parquet = gr.Button("Export Parquet", elem_id="bl-an-export-parquet")
        exported = gr.File(label="Export", elem_id="bl-an-export-file")
        audit_run, audit_button, audit_verdicts, audit_plot = _audit_panel(service.auditable_runs(), service.audit_min_generations)
        with gr.Accordion("Training curves of fine-tunes", open=False):
            job = gr.Dropdown(label="Fine-tune job", choices=[], elem_id="bl-an-job")
            curves = gr.Plot(label="Training curves", show_label=False, elem_id="bl-an-curves")

        def draw(*values):
            return _draw(analytics, *values)

        view_inputs = [*filters, log_tokens, with_verifier, target, prices]
        link = {"fn": None, "inputs": [*filters, log_tokens], "outputs": share, "js": VIEW_LINK_JS}
        refresh.click(draw, inputs=view_inputs, outputs=views.outputs(), api_visibility="private").then(**link)
        for control in (log_tokens, with_verifier, target):
            control.change(draw, inputs=view_inputs, outputs=views.outputs(), api_visibility="private").then(**link)

        def choices(price_rows):
            options = analytics.filter_options()
            known = {row[0] for row in _table_rows(price_rows) if row and row[0]}
            rows = _table_rows(price_rows) + [[m, analytics.price_of(m).input_per_m, analytics.price_of(m).output_per_m]
                                              for m in options["models"] if m not in known]
            job_choices = [(f"{j.get('name')} · {j.get('job_id')}", j["job_id"]) for j in jobs.jobs() if j.get("state") != "recurring"]  # fine-tunes
            return (*(gr.update(choices=options[key]) for key in ("models", "controllers", "datasets", "runs")), rows, gr.update(choices=job_choices),
                    gr.update(choices=service.auditable_runs()), *_first_run_state(service, jobs))

        first_run_outputs = [first_progress, filters[3], first_run, reproduce]
        reproduce.click(_reproducer(service, jobs), outputs=first_run_outputs, api_visibility="private").then(
            draw, inputs=view_inputs, outputs=views.outputs(), api_visibility="private").then(**link)
        timer = gr.Timer(FIRST_RUN_REFRESH_S, active=False)
        timer.tick(lambda: _first_run_state(service, jobs), outputs=[first_run, reproduce, first_progress], api_visibility="private", queue=False)

        # Opening the tab refreshes what the filters offer, then every view.
        tab.select(choices, inputs=prices, outputs=[*filters[:4], prices, job, audit_run, first_run, reproduce, first_progress], api_visibility="private").then(
            draw, inputs=view_inputs, outputs=views.outputs(), api_visibility="private").then(**link)

        def open_generation(evt: gr.SelectData, table) -> str:  # the annotation is how Gradio passes the selection
            return _open_generation(analytics, evt, table)

        views.generations.select(open_generation, inputs=views.generations, outputs=opened, api_visibility="private")
        export_csv.click(_exporter(analytics, export_dir, "csv"), inputs=filters, outputs=exported, api_name="export_csv")
        export_parquet.click(_exporter(analytics, export_dir, "parquet"), inputs=filters, outputs=exported, api_name="export_parquet")
        audit_button.click(lambda run_id: _audit(service, run_id), inputs=audit_run, outputs=[audit_verdicts, audit_plot], api_visibility="private")

        def audit(run_id: str) -> dict:
            """The adherence audit of a stored run: per (model, controller), what was observed of its budget (enforced, overrun but follows N, ignored; too few generations to judge), and the per-budget measurements."""
            try:
                return service.audit(run_id)
            except InputError as exc:
                raise gr.Error(str(exc)) from None

        gr.api(audit, api_name="audit")
        job.change(lambda job_id: charts.training_curves_chart(jobs.metrics(job_id), job_id) if job_id else None, inputs=job, outputs=curves,
                   api_visibility="private")
    return AnalyticsHandles(filters[3], view_inputs, views.outputs(), draw, [*filters, log_tokens], timer)


def _first_run_box(service: Budgetlab, jobs: TrainingJobs):
    """One button that reproduces the L1 figures on the embedded model: offered while no sweep is stored, and
    again (it then resumes) if its job was stopped unfinished; its job's progress wherever the tab is opened."""
    plan = first_run_plan(service, stamp="preview")  # for its description: the button makes its own
    box_visible, button_visible, progress_html = _first_run_state(service, jobs)
    with gr.Group(visible=box_visible, elem_id="bl-an-first-run") as box:
        gr.Markdown(f"### Nothing to draw yet\nOne button reproduces the L1 paper's figures on the embedded model: {plan.description} "
                    "A few minutes on 2 cores, as a job of the app (closing the page does not stop it); the charts below are drawn when it is done.")
        button = gr.Button("Reproduce the L1 figures on the embedded model", variant="primary", visible=button_visible, elem_id="bl-an-reproduce")
        progress = gr.HTML(progress_html, elem_id="bl-an-first-progress")
    return box, button, progress


def _reproducer(service: Budgetlab, jobs: TrainingJobs):
    async def reproduce_figures():
        """The first-run job (started, or resumed if it was stopped), followed until it ends; then the views on its runs."""
        try:
            job_id = await _start_first_run(service, jobs)
        except (InputError, UnknownModelError, EngineUnavailable) as exc:
            yield render_sweep_job(None, error=str(exc)), gr.skip(), gr.skip(), gr.skip()
            return
        async for job in follow_job(jobs, job_id):
            yield render_sweep_job(job), gr.skip(), gr.skip(), gr.update(visible=False)
        if job.get("state") != "finished":
            yield render_sweep_job(job), gr.skip(), gr.skip(), gr.update(visible=True)
            return
        yield gr.skip(), gr.update(choices=service.analytics.filter_options()["runs"], value=job.get("runs")), gr.update(visible=False), gr.skip()
    return reproduce_figures


def _first_run_job(jobs: TrainingJobs) -> dict | None:
    """The newest first-run job, if there is one."""
    return next((j for j in jobs.sweeps.jobs() if j.get("purpose") == "first-run" and j.get("state") != "recurring"), None)


def _first_run_state(service: Budgetlab, jobs: TrainingJobs):
    """(box shown, button shown, progress): the box while nothing is stored or the first-run job has not finished;
    the button unless that job is waiting or running; the job's progress bar."""
    job = _first_run_job(jobs)
    state = job.get("state") if job else None
    unfinished = job is not None and state != "finished"
    box = gr.update(visible=service.sweeps_stored() == 0 or unfinished)
    button = gr.update(visible=state not in ("scheduled", "queued", "running"))
    return box, button, render_sweep_job(job) if job else ""


async def _start_first_run(service: Budgetlab, jobs: TrainingJobs) -> str:
    """The first-run job to follow: the one waiting or running, the newest resumed if it was stopped, else a new one."""
    job = _first_run_job(jobs)
    if job and job.get("state") in ("scheduled", "queued", "running"):
        return job["job_id"]
    if job and job.get("state") in ("failed", "cancelled", "interrupted"):
        jobs.sweeps.resume(job["job_id"])
        return job["job_id"]
    requests = [await service.check_sweep(request) for request in first_run_plan(service).requests]
    return jobs.sweeps.submit(SweepSubmission("L1 figures (first run)", tuple(r.to_json() for r in requests), purpose="first-run"))


def _audit_panel(runs: list[str], min_generations: int):
    """The adherence audit: a run (``app.py audit`` makes one; any sweep large enough will do), what it observed and its chart."""
    with gr.Accordion("Adherence audit: is each budget enforced, overrun, or ignored?", open=False):
        with gr.Row():
            run = gr.Dropdown(label=f"Run to audit (app.py audit makes one; listed: runs with at least {min_generations} generations per budget)",
                              choices=runs, allow_custom_value=True, elem_id="bl-an-audit-run")
            button = gr.Button("Audit", elem_id="bl-an-audit")
        verdicts = gr.Markdown("", elem_id="bl-an-audit-verdicts")
        plot = gr.Plot(label="Thinking against the budget", show_label=False, elem_id="bl-an-audit-chart")
    return run, button, verdicts, plot


def _audit(service: Budgetlab, run_id: str):
    try:
        report = service.audit((run_id or "").strip())
    except InputError as exc:
        return f"**Not audited**: {exc}", None
    lines = ["| model | controller | observed | why | budgets | generations | over N | empty answers | counts |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {v['model']} | {v['controller']} | **{v['verdict']}** | {v['why']} | {', '.join(map(str, v['budgets']))} | {v['generations']} | "
              f"{v['over_share']:.0%} | {v['empty_share']:.0%} | {v['token_counts']} |" for v in report["verdicts"]]
    return "\n".join(lines), charts.audit_chart(report["budgets"])


def _filter_controls(options: dict) -> tuple[list, gr.Checkbox, gr.Checkbox, gr.Slider, gr.Button]:
    """The filters (models, controllers, datasets, runs, budget from, budget to), the log-axis box, the
    box that adds verifier tokens to the token axis, the target accuracy and the refresh button."""
    with gr.Row():
        # Custom values allowed: a script may name a run that the page has not listed yet.
        pick = {"multiselect": True, "allow_custom_value": True}
        models = gr.Dropdown(label="Models", choices=options["models"], elem_id="bl-an-models", **pick)
        controllers = gr.Dropdown(label="Controllers", choices=options["controllers"], elem_id="bl-an-controllers", **pick)
        datasets = gr.Dropdown(label="Datasets", choices=options["datasets"], elem_id="bl-an-datasets", **pick)
        runs = gr.Dropdown(label="Runs", choices=options["runs"], elem_id="bl-an-runs", **pick)
    with gr.Row():
        budget_min = gr.Number(label="Budget from (0: any)", value=0, precision=0, minimum=0, elem_id="bl-an-budget-min")
        budget_max = gr.Number(label="Budget to (0: any)", value=0, precision=0, minimum=0, elem_id="bl-an-budget-max")
        log_tokens = gr.Checkbox(label="Log token axis", value=False, elem_id="bl-an-log")
        with_verifier = gr.Checkbox(label="Add verifier tokens to the token axis", value=False, elem_id="bl-an-with-verifier")
        target = gr.Slider(label="Target accuracy (%)", minimum=0, maximum=100, step=1, value=80, elem_id="bl-an-target")
        refresh = gr.Button("Refresh", variant="primary", elem_id="bl-an-refresh")
    return [models, controllers, datasets, runs, budget_min, budget_max], log_tokens, with_verifier, target, refresh


def _view_components() -> _Views:
    gr.HTML("", js_on_load=charts.RESIZE_WHEN_SHOWN_JS, elem_id="bl-an-resize")  # charts re-measure their blocks when the tab is shown
    status = gr.Markdown("", elem_id="bl-an-status")
    recommendation = gr.Markdown("", elem_id="bl-an-recommendation")
    tradeoff = gr.Plot(label="Accuracy at equal tokens", show_label=False, elem_id="bl-an-tradeoff")
    series = gr.Markdown("", elem_id="bl-an-series")
    plots: dict[str, gr.Plot] = {}
    for row in rows_of_views():
        with gr.Row():
            for view in row:
                plots[view.name] = gr.Plot(label=view.label, show_label=False, elem_id=view.elem_id)
    aggregates = gr.Dataframe(headers=list(AGGREGATE_COLUMNS), label="Aggregates per (model, controller, budget)", interactive=False, elem_id="bl-an-aggregates")
    # Not in an accordion: a Dataframe filled while folded away shows no rows when unfolded.
    gr.Markdown("#### Generations: open one, or export the filtered ones")
    generations = gr.Dataframe(headers=list(GENERATION_COLUMNS), label="Newest 50 under the filters (select a row to open it)", interactive=False, elem_id="bl-an-generations")
    return _Views(status, recommendation, tradeoff, series, [plots[v.name] for v in CHART_VIEWS], aggregates, generations)


def _draw(analytics: Analytics, models, controllers, datasets, runs, budget_min, budget_max, log_tokens, with_verifier, target, price_rows):
    try:
        filters = filters_from_form(models, controllers, datasets, runs, budget_min, budget_max)
        prices = analytics.prices(_table_rows(price_rows))
    except ValueError as exc:
        return (f"**Not shown**: {exc}", *[gr.skip()] * (5 + len(CHART_VIEWS)))
    view: AnalyticsView = analytics.view(filters, prices, target / 100.0)
    options = DrawOptions(bool(log_tokens), bool(with_verifier))
    return (f"{view.generations:,} generations in {len(view.points)} (model, controller, budget) groups ({view.answers:,} answers).",
            view.recommendation, charts.tradeoff_chart(view.points, options.log_tokens, options.with_verifier), _series_markdown(view.series),
            *(chart.draw(view, options) for chart in CHART_VIEWS),
            _aggregate_rows(view.costed, view.spread), [_generation_row(g) for g in view.recent])


def _series_markdown(series: list[dict]) -> str:
    """The equal-token view's lines in words: which are sequential, which parallel, which budgets are hints,
    and which points (ringed) were asked for budgets outside the model's trained range."""
    if not series:
        return ""
    lines = [f"`{s['model']} · {s['controller']}`: {s['shape']}, budget {s['budget_kind'] or 'unknown'}" + (", probe tokens included" if s["probed"] else "")
             + ("" if s.get("token_counts", "counted") == "counted" else f", tokens {s['token_counts']} by a chat endpoint")
             + "".join(f", **outside the trained range at N = {budget}** ({note})" for budget, note in s.get("outside", ()))
             for s in series]
    return "Lines: " + "; ".join(lines) + "."


def _exporter(analytics: Analytics, export_dir: Path, file_format: str):
    def export(*filter_values) -> str:
        try:
            filters = filters_from_form(*filter_values)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None
        return str(analytics.export(filters, export_dir, file_format))
    return export


def _open_generation(analytics: Analytics, evt: gr.SelectData, table) -> str:
    gen_id = _selected_gen_id(evt, table)
    if not gen_id:
        return ""
    generation = analytics.generation(gen_id)
    return _generation_markdown(generation) if generation else f"no generation {gen_id}"


def _table_rows(value) -> list[list]:
    """A Dataframe's value as a list of rows (Gradio hands over a pandas frame)."""
    if value is None:
        return []
    if hasattr(value, "values"):
        return [list(row) for row in value.values.tolist()]
    return [list(row) for row in value]


def _aggregate_rows(costed, spread) -> list[list]:
    by_key = {(r["model"], r["controller"], r["budget"]): r for r in spread}
    rows = []
    for point in costed:
        merged = {**point, **by_key.get((point["model"], point["controller"], point["budget"]), {})}
        rows.append([_rounded(merged.get(c)) for c in AGGREGATE_COLUMNS])
    return rows


def _generation_row(g: dict) -> list:
    # Text, not booleans: the table draws no rows at all for a column of True/False/None.
    verdict = {True: "correct", False: "wrong", None: "not graded"}[g["correct"]]
    return [verdict if c == "correct" else g[c] for c in GENERATION_COLUMNS]


def _rounded(value):
    return round(value, 4) if isinstance(value, float) else value


def _selected_gen_id(evt: gr.SelectData, table) -> str | None:
    rows = _table_rows(table)
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    return rows[row][0] if isinstance(row, int) and 0 <= row < len(rows) else None


def _generation_markdown(g: dict) -> str:
    verdict = {True: "correct", False: "wrong", None: "not graded"}[g.get("correct")]
    return (f"**{g['gen_id']}** · {g['model']} · {g['controller']} · budget {g['budget']} · {g.get('total_tokens')} tokens · {verdict}\n\n"
            f"**Question**: {g['question']}\n\n**Output**:\n\n```\n{g.get('full_text') or ''}\n```")
