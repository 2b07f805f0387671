"""The Analytics tab: every stored generation, aggregated live in DuckDB, for people deciding how much
thinking to pay for.

`build_analytics_tab(service, jobs, export_dir)` adds the tab. One set of filters (model,
controller, dataset, run, budget range) drives every view: accuracy against tokens, accuracy
against cost with the Pareto frontier and a recommender, length adherence, keywords, thinking
against answer tokens, and the fine-tunes' training curves. Handlers call `store.analytics` (the
SQL) and `backend.analytics` (prices, frontier); the charts come from `ui.charts`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import gradio as gr

from backend.analytics import KEYWORD_CATEGORIES, KEYWORDS_VERSION, Price, parse_prices, pareto_frontier, priced, recommend, recommendation_text
from backend.service import Budgetlab
from backend.training_jobs import TrainingJobs
from store import analytics, queries
from store.analytics import Filters
from ui import charts

AGGREGATE_COLUMNS = ("model", "controller", "budget", "n", "accuracy", "accuracy_low", "accuracy_high", "mean_tokens",
                     "mean_thinking_tokens", "mean_answer_tokens", "thinking_to_answer", "mean_abs_rel_dev", "violation_rate", "cost_per_1k")
GENERATION_COLUMNS = ("gen_id", "run_id", "model", "controller", "budget", "total_tokens", "correct", "question")


def build_analytics_tab(service: Budgetlab, jobs: TrainingJobs, export_dir: Path) -> None:
    default_price = Price(service.price_in_per_m, service.price_out_per_m)
    with service.store.reader() as cur:
        options = analytics.filter_options(cur)
    with gr.Tab("Analytics", id="analytics") as tab:
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
            target = gr.Slider(label="Target accuracy (%)", minimum=0, maximum=100, step=1, value=80, elem_id="bl-an-target")
            refresh = gr.Button("Refresh", variant="primary", elem_id="bl-an-refresh")
        with gr.Accordion("Prices per model ($ per 1M tokens; empty: the defaults)", open=False):
            prices = gr.Dataframe(headers=["model", "$ per 1M input", "$ per 1M output"], value=[], interactive=True, column_count=(3, "fixed"), elem_id="bl-an-prices")
        status = gr.Markdown("", elem_id="bl-an-status")
        recommendation = gr.Markdown("", elem_id="bl-an-recommendation")
        with gr.Row():
            tradeoff_plot = gr.Plot(label="Accuracy against tokens", elem_id="bl-an-tradeoff")
            cost_plot = gr.Plot(label="Accuracy against cost", elem_id="bl-an-cost")
        with gr.Row():
            adherence_plot = gr.Plot(label="Length adherence", elem_id="bl-an-adherence")
            thinking_plot = gr.Plot(label="Thinking and answer tokens", elem_id="bl-an-thinking")
        keyword_plot = gr.Plot(label="Keywords", elem_id="bl-an-keywords")
        aggregates = gr.Dataframe(headers=list(AGGREGATE_COLUMNS), label="Aggregates per (model, controller, budget)", interactive=False, elem_id="bl-an-aggregates")
        # Not in an accordion: a Dataframe filled while folded away shows no rows when unfolded.
        gr.Markdown("#### Generations: open one, or export the filtered ones")
        generations = gr.Dataframe(headers=list(GENERATION_COLUMNS), label="Newest 50 under the filters (select a row to open it)", interactive=False, elem_id="bl-an-generations")
        opened = gr.Markdown("", elem_id="bl-an-opened")
        with gr.Row():
            export_csv = gr.Button("Export CSV", elem_id="bl-an-export-csv")
            export_parquet = gr.Button("Export Parquet", elem_id="bl-an-export-parquet")
        exported = gr.File(label="Export", elem_id="bl-an-export-file")
        with gr.Accordion("Training curves of fine-tunes", open=False):
            job = gr.Dropdown(label="Fine-tune job", choices=[], elem_id="bl-an-job")
            curves = gr.Plot(label="Training curves", elem_id="bl-an-curves")

        filter_inputs = [models, controllers, datasets, runs, budget_min, budget_max]

        def views(models, controllers, datasets, runs, budget_min, budget_max, log_tokens, target, price_rows):
            try:
                filters = _filters(models, controllers, datasets, runs, budget_min, budget_max)
                price_table = parse_prices(_table_rows(price_rows), default_price)
            except ValueError as exc:
                return (f"**Not shown**: {exc}", *[gr.skip()] * 8)
            with service.store.reader() as cur:
                points = analytics.tradeoff(cur, filters)
                spread = analytics.adherence(cur, filters)
                words = analytics.keyword_rates(cur, filters, KEYWORD_CATEGORIES, KEYWORDS_VERSION)
                recent = analytics.list_generations(cur, filters)
            costed = priced(points, price_table, default_price)
            best = recommend(costed, target / 100.0)
            generations_total = sum(p["n"] for p in points)
            return (f"{generations_total:,} generations in {len(points)} (model, controller, budget) groups.",
                    recommendation_text(best, target / 100.0, costed),
                    charts.tradeoff_chart(points, bool(log_tokens)), charts.cost_chart(costed, pareto_frontier(costed)),
                    charts.adherence_chart(spread), charts.thinking_answer_chart(points), charts.keyword_chart(words),
                    _aggregate_rows(costed, spread), [_generation_row(g) for g in recent])

        view_outputs = [status, recommendation, tradeoff_plot, cost_plot, adherence_plot, thinking_plot, keyword_plot, aggregates, generations]
        view_inputs = [*filter_inputs, log_tokens, target, prices]
        refresh.click(views, inputs=view_inputs, outputs=view_outputs, api_visibility="private")
        for control in (log_tokens, target):
            control.change(views, inputs=view_inputs, outputs=view_outputs, api_visibility="private")

        def choices(price_rows):
            with service.store.reader() as cur:
                options = analytics.filter_options(cur)
            known = {row[0] for row in _table_rows(price_rows) if row and row[0]}
            rows = _table_rows(price_rows) + [[m, default_price.input_per_m, default_price.output_per_m] for m in options["models"] if m not in known]
            job_choices = [(f"{j.get('name')} · {j.get('job_id')}", j["job_id"]) for j in jobs.jobs() if j.get("state") != "recurring"]
            return (gr.update(choices=options["models"]), gr.update(choices=options["controllers"]), gr.update(choices=options["datasets"]),
                    gr.update(choices=options["runs"]), rows, gr.update(choices=job_choices))

        # Opening the tab refreshes what the filters offer, then every view.
        tab.select(choices, inputs=prices, outputs=[models, controllers, datasets, runs, prices, job], api_visibility="private").then(
            views, inputs=view_inputs, outputs=view_outputs, api_visibility="private")

        def open_generation(evt: gr.SelectData, table):
            gen_id = _selected_gen_id(evt, table)
            if not gen_id:
                return ""
            with service.store.reader() as cur:
                generation = queries.get_generation(cur, gen_id)
            return _generation_markdown(generation) if generation else f"no generation {gen_id}"

        generations.select(open_generation, inputs=generations, outputs=opened, api_visibility="private")

        def export(file_format: str):
            def handler(*values):
                try:
                    filters = _filters(*values)
                except ValueError as exc:
                    raise gr.Error(str(exc)) from None
                export_dir.mkdir(parents=True, exist_ok=True)
                path = export_dir / f"generations-{dt.datetime.now():%Y%m%d-%H%M%S}.{file_format}"
                with service.store.reader() as cur:
                    analytics.export_generations(cur, filters, path, file_format)
                return str(path)
            return handler

        export_csv.click(export("csv"), inputs=filter_inputs, outputs=exported, api_name="export_csv")
        export_parquet.click(export("parquet"), inputs=filter_inputs, outputs=exported, api_name="export_parquet")
        job.change(lambda job_id: charts.training_curves_chart(jobs.metrics(job_id), job_id) if job_id else None, inputs=job, outputs=curves, api_visibility="private")


def _filters(models, controllers, datasets, runs, budget_min, budget_max) -> Filters:
    # An empty number box arrives as 0: 0 means no bound (budgets are positive).
    return Filters(tuple(models or ()), tuple(controllers or ()), tuple(datasets or ()), tuple(runs or ()),
                   int(budget_min) if budget_min else None, int(budget_max) if budget_max else None)


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
