"""The Train tab: launch LCPO fine-tunes from a form, watch them learn, cancel, resume, retry.

`build_train_tab(jobs)` adds the tab to the enclosing Blocks. The form is generated from
`training.config.LCPOConfig`'s fields (help text as each field's info line), so a new config field
shows up here by itself; a refused form puts each reason under its field and schedules nothing.
Handlers are thin: they check a request with `training.jobs`, hand it to the scheduler
(`backend.jobs`) and render. Named API endpoints for scripts:
``/train_start`` (the form, as the button sends it), ``/train_submit`` (a dict of fields),
``/train_jobs``, ``/train_cancel``, ``/train_resume``, ``/train_retry``.
"""

from __future__ import annotations

import datetime as dt
import dataclasses
from typing import Any

import gradio as gr

from backend.jobs.scheduler import JobStateError, TrainingJobs
from backend.serving.registry import ModelRegistry
from training.config import LOSS_TYPES, MODES, LCPOConfig
from training.jobs import MANAGED_FIELDS, JobInputError, JobRequest, form_defaults, parse_job_request, recipe_values, recipes
from ui.charts import training_curves_chart

REFRESH_S = 2.0
# The fields shown first; every other config field is under "More settings".
MAIN_FIELDS = ("base_model", "dataset", "mode", "alpha_exact", "alpha_max", "delta", "n_min", "n_max", "num_generations",
               "per_device_train_batch_size", "learning_rate", "max_steps", "max_completion_length", "temperature")
CHOICES = {"mode": list(MODES), "loss_type": list(LOSS_TYPES), "precision": ["auto", "bf16", "fp32"]}
FORM_FIELDS = tuple(f.name for f in dataclasses.fields(LCPOConfig) if f.name not in MANAGED_FIELDS)
HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(LCPOConfig)}
# Non-config inputs of the form, in the order the start button sends them (before the fields).
JOB_INPUTS = ("name", "model_name", "schedule", "run_at", "cron")
SCHEDULES = [("Run now", "now"), ("Run at a time (UTC)", "at"), ("Recurring (cron, UTC)", "cron")]
JOB_COLUMNS = ("job", "name", "model", "state", "schedule", "step", "started (UTC)", "finished (UTC)", "note")
JOB_HELP = {
    "name": "What the job list calls it.",
    "model_name": "Name the finished model is registered under (Compare and Sweep list it); a later job with the same name replaces it.",
    "schedule": "Run now (after any job already running), once at a time, or on a cron schedule.",
    "run_at": "For 'Run at': YYYY-MM-DD HH:MM, in UTC.",
    # No asterisks here: Gradio renders the help as Markdown and turns "0 2 * * *" into "0 2 *"; the example is the box's placeholder.
    "cron": "For 'Recurring': a crontab line in UTC, five fields (minute hour day month weekday); the example in the box runs every night at 02:00.",
}


def build_train_tab(jobs: TrainingJobs) -> gr.Timer:
    """Returns the tab's refresh timer, inactive: the app turns it on while the tab is shown."""
    registry = jobs.registry
    defaults = form_defaults(registry)
    with gr.Tab("Train", id="train"):
        with gr.Row():
            with gr.Column(scale=3):
                gr.Markdown("### New LCPO fine-tune\nGRPO with the L1 length reward (`training/lcpo.py`); one job runs at a time, the others wait their turn.")
                recipe = gr.Dropdown(label="Start from", choices=["defaults", *recipes()], value="defaults", elem_id="bl-train-recipe")
                inputs = _job_inputs()
                fields = _config_fields(defaults, registry)
                start = gr.Button("Start", variant="primary", elem_id="bl-train-start")
                message = gr.Markdown("", elem_id="bl-train-message")
            with gr.Column(scale=4):
                gr.Markdown("### Jobs")
                table = gr.Dataframe(headers=list(JOB_COLUMNS), value=job_rows(jobs.jobs()), interactive=False, wrap=True, elem_id="bl-train-jobs")
                with gr.Row():
                    picked = gr.Dropdown(label="Job", choices=job_choices(jobs.jobs()), value=None, allow_custom_value=True, elem_id="bl-train-picked", scale=3)
                    cancel = gr.Button("Cancel", variant="stop", elem_id="bl-train-cancel", scale=1)
                    resume = gr.Button("Resume", elem_id="bl-train-resume", scale=1)
                    retry = gr.Button("Retry", elem_id="bl-train-retry", scale=1)
                action = gr.Markdown("", elem_id="bl-train-action")
                detail = gr.Markdown("", elem_id="bl-train-detail")
                curves = gr.Plot(label="Training curves", show_label=False, elem_id="bl-train-curves")
                log = gr.Code(label="Log (last lines)", language=None, lines=12, elem_id="bl-train-log")
        shown = gr.State(None)  # (job, step, state) last drawn, so an unchanged chart is not redrawn
        form = [inputs[name] for name in JOB_INPUTS] + [fields[name] for name in FORM_FIELDS]

        def start_job(*values):
            job_values, config_values = values[: len(JOB_INPUTS)], dict(zip(FORM_FIELDS, values[len(JOB_INPUTS):]))
            try:
                request = _parse(jobs, config_values, *job_values)
            except JobInputError as exc:
                marks = _field_marks(exc.problems)
                return (f"**Not scheduled**: {exc}", gr.skip(), *(marks.get(name, _clear(name)) for name in (*JOB_INPUTS, *FORM_FIELDS)))
            job_id = jobs.submit(request)
            # What was done, not a state: the job's state is the job list's and the line under it, which change.
            when = {"now": "to run now (after any job already running)", "at": f"to run at {request.run_at} UTC",
                    "cron": f"to recur on {request.cron} (UTC)"}[request.schedule]
            all_jobs = jobs.jobs()
            return (f"Submitted **{job_id}** {when}; its state is on the right.", gr.update(choices=job_choices(all_jobs), value=job_id),
                    *(_clear(name) for name in (*JOB_INPUTS, *FORM_FIELDS)))

        start.click(start_job, inputs=form, outputs=[message, picked, *form], api_name="train_start")

        def load_recipe(name: str):
            values = form_defaults(jobs.registry) if name == "defaults" else recipe_values(recipes()[name])
            return [gr.update(value=values.get(field)) for field in FORM_FIELDS]

        recipe.change(load_recipe, inputs=recipe, outputs=[fields[name] for name in FORM_FIELDS], api_visibility="private")

        def refresh(job_id: str | None, last):
            all_jobs = jobs.jobs()
            rows, choices = job_rows(all_jobs), gr.update(choices=job_choices(all_jobs))
            if not job_id and all_jobs:  # a page opened (or reloaded) shows the newest job, so Cancel has one to act on
                job_id = newest_job(all_jobs)
                choices = gr.update(choices=job_choices(all_jobs), value=job_id)
            if not job_id:
                return rows, choices, "", gr.skip(), "", None, gr.skip()
            try:
                job = jobs.job(job_id)
            except JobStateError:
                return rows, choices, "", gr.skip(), "", None, gr.skip()
            signature = (job_id, job.get("step"), job.get("state"))
            chart = gr.skip() if signature == last else training_curves_chart(jobs.metrics(job_id), str(job.get('name') or job_id))
            # A button's message ("stopping ...") goes once the job's state has moved on: one current state is shown.
            action_now = "" if last is not None and last[0] == job_id and last[2] != job.get("state") else gr.skip()
            return rows, choices, job_detail(job), chart, job.get("log_tail", ""), signature, action_now

        timer = gr.Timer(REFRESH_S, active=False)
        refresh_outputs = [table, picked, detail, curves, log, shown, action]
        timer.tick(refresh, inputs=[picked, shown], outputs=refresh_outputs, api_visibility="private", queue=False)
        picked.change(refresh, inputs=[picked, gr.State(None)], outputs=refresh_outputs, api_visibility="private")

        for button, kind in ((cancel, "cancel"), (resume, "resume"), (retry, "retry")):
            button.click(_action(jobs, kind), inputs=picked, outputs=action, api_visibility="private")
        _api(jobs)
    return timer


def _api(jobs: TrainingJobs) -> None:
    def train_submit(config: dict, name: str, model_name: str, schedule: str = "now", run_at: str = "", cron: str = "") -> str:
        """Schedule an LCPO job from a dict of LCPOConfig fields; returns the job's id (a schedule's id for cron)."""
        try:
            request = _parse(jobs, config, name, model_name, schedule, run_at or None, cron)
        except JobInputError as exc:
            raise gr.Error(str(exc)) from None
        return jobs.submit(request)

    def train_jobs() -> list[dict]:
        """Every job with its state, step and schedule (recurring schedules first, then runs, newest first)."""
        return jobs.jobs()

    def train_cancel(job_id: str) -> str:
        """Cancel a waiting or running job, or remove a recurring schedule."""
        return _checked(jobs.cancel, job_id)

    def train_resume(job_id: str) -> str:
        """Queue a failed, cancelled or interrupted job again; it continues from its last checkpoint."""
        return _checked(jobs.resume, job_id)

    def train_retry(job_id: str) -> str:
        """Run an ended job's config again from scratch as a new job; returns its id."""
        return _checked(jobs.retry, job_id)

    for fn in (train_submit, train_jobs, train_cancel, train_resume, train_retry):
        gr.api(fn, api_name=fn.__name__)


def _action(jobs: TrainingJobs, kind: str):
    """The handler of the Cancel, Resume or Retry button: what happened, or why not."""
    def handler(job_id: str | None) -> str:
        if not (job_id or "").strip():
            return f"**{kind}**: pick a job in the list above first"
        try:
            if kind == "retry":
                return f"retry queued as **{jobs.retry(job_id or '')}**"
            return getattr(jobs, kind)(job_id or "")
        except JobStateError as exc:
            return f"**{kind}**: {exc}"
    return handler


def _parse(jobs: TrainingJobs, config: dict, name: str, model_name: str, schedule: str, run_at, cron: str) -> JobRequest:
    """A request from the dashboard: registered base models only, dataset files the policy allows."""
    return parse_job_request(config, name, model_name, schedule, run_at, cron, registry=jobs.registry,
                             trained_models_dir=jobs.config.trained_models_dir, dataset_policy=jobs.config.dataset_policy)


def _checked(action, job_id: str) -> str:
    try:
        return action(job_id)
    except JobStateError as exc:
        raise gr.Error(str(exc)) from None


def _job_inputs() -> dict[str, gr.components.Component]:
    with gr.Row():
        name = gr.Textbox(label="name", value="lcpo", info=JOB_HELP["name"], elem_id="bl-train-name")
        model_name = gr.Textbox(label="model_name", value="my-l1", info=JOB_HELP["model_name"], elem_id="bl-train-model_name")
    schedule = gr.Radio(label="schedule", choices=SCHEDULES, value="now", info=JOB_HELP["schedule"], elem_id="bl-train-schedule")
    with gr.Row():
        tomorrow = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)  # a placeholder in the future, whenever the page is built
        run_at = gr.Textbox(label="run_at", value="", placeholder=f"{tomorrow:%Y-%m-%d} 02:00", info=JOB_HELP["run_at"], elem_id="bl-train-run_at")
        cron = gr.Textbox(label="cron", value="", placeholder="0 2 * * *", info=JOB_HELP["cron"], elem_id="bl-train-cron")
    return {"name": name, "model_name": model_name, "schedule": schedule, "run_at": run_at, "cron": cron}


def _config_fields(defaults: dict[str, Any], registry: ModelRegistry) -> dict[str, gr.components.Component]:
    fields: dict[str, gr.components.Component] = {}
    _field_rows(MAIN_FIELDS, defaults, registry, fields)
    with gr.Accordion("More settings", open=False):
        _field_rows([name for name in FORM_FIELDS if name not in MAIN_FIELDS], defaults, registry, fields)
    return fields


def _field_rows(names, defaults: dict[str, Any], registry: ModelRegistry, fields: dict, per_row: int = 3) -> None:
    names = list(names)
    for i in range(0, len(names), per_row):
        with gr.Row(equal_height=True):
            for name in names[i : i + per_row]:
                fields[name] = _field(name, defaults[name], registry)


def _field(name: str, default: Any, registry: ModelRegistry):
    common = {"label": name, "info": HELP[name], "elem_id": f"bl-train-{name}", "elem_classes": ["bl-train-field"]}
    if name == "base_model":
        return gr.Dropdown(choices=[m.name for m in registry.all() if not m.is_verifier], value=default, allow_custom_value=True, **common)
    if name == "dataset":
        return gr.Dropdown(choices=["arith"], value=default, allow_custom_value=True, **common)
    if name in CHOICES:
        return gr.Radio(choices=CHOICES[name], value=default, **common)
    if isinstance(default, bool):
        return gr.Checkbox(value=default, **common)
    if isinstance(default, int):
        return gr.Number(value=default, precision=0, **common)
    if isinstance(default, float):
        return gr.Number(value=default, **common)
    return gr.Textbox(value=default, **common)


def _field_marks(problems) -> dict[str, Any]:
    by_field: dict[str, list[str]] = {}
    for field, message in problems:
        by_field.setdefault(field, []).append(message)
    return {field: gr.update(info="⚠ " + "; ".join(messages), elem_classes=["bl-invalid"]) for field, messages in by_field.items()}


def _clear(name: str):
    return gr.update(info=JOB_HELP.get(name) or HELP.get(name), elem_classes=[])


def job_rows(all_jobs: list[dict]) -> list[list[Any]]:
    rows = []
    for job in all_jobs:
        schedule = {"at": f"at {job.get('run_at')}", "cron": f"cron {job.get('cron', '')}".strip()}.get(job.get("schedule"), job.get("schedule") or "")
        if job.get("state") == "recurring":
            schedule += f" (next {job.get('run_at')})"
        step = f"{job.get('step') or 0}/{job.get('max_steps') or '?'}" if job.get("state") != "recurring" else ""
        note = (job.get("error") or "").splitlines()[0] if job.get("error") else ""
        rows.append([job.get("job_id"), job.get("name"), job.get("model_name"), job.get("state"), schedule, step,
                     _short_time(job.get("started_at")), _short_time(job.get("finished_at")), note])
    return rows


def _short_time(iso: str | None) -> str:
    """'2026-11-27T21:05:09' -> '11-27 21:05:09' (the table is narrow)."""
    return iso[5:].replace("T", " ") if iso else ""


def newest_job(all_jobs: list[dict]) -> str | None:
    """The job submitted last (a recurring schedule is not a job), or None."""
    runs = [j for j in all_jobs if j.get("state") != "recurring"]
    return max(runs, key=lambda j: j.get("created_at") or "").get("job_id") if runs else None


def job_choices(all_jobs: list[dict]) -> list[tuple[str, str]]:
    return [(f"{j.get('name')} · {j.get('state')} · {j.get('job_id')}", j.get("job_id")) for j in all_jobs]


def job_detail(job: dict) -> str:
    lines = [f"**{job.get('name')}** (`{job.get('job_id')}`): **{job.get('state')}**, step {job.get('step') or 0} of {job.get('max_steps') or '?'}"]
    if job.get("state") == "finished":
        lines.append(f"Model **{job.get('model_name')}** is registered: pick it in Compare or Sweep.")
    if job.get("error") and job.get("state") not in ("cancelled", "finished"):
        lines.append(f"```\n{job['error']}\n```")
    return "\n\n".join(lines)
