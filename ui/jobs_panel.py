"""The jobs panel at the top of every page: fine-tunes and sweeps, running and finished, with live progress and Stop.

A sweep or a fine-tune is a job of the app (`backend.jobs`), not of the page that started it: any
page of any session lists it here, with its progress, and can stop or resume it; closing a page
changes nothing. `build_jobs_panel(jobs)` adds the panel (an accordion whose title counts what is
running) and returns its refresh, which the app's status timer calls. `follow_job` is how a tab
that started a job shows it: it polls the job's state until the job ends.

Named API endpoints for scripts: ``/jobs`` (every job of both kinds), ``/job_stop``, ``/job_resume``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from backend.jobs.scheduler import JobStateError, TrainingJobs
from backend.jobs.sweeps import SweepStateError

PANEL_COLUMNS = ("kind", "name", "state", "progress", "started (UTC)", "finished (UTC)", "note", "job")
ENDED = ("finished", "failed", "cancelled", "interrupted")
ACTIVE = ("scheduled", "queued", "running")
SHOWN_JOBS = 12  # the panel lists the active jobs and the newest ended ones, up to this many rows
POLL_S = 0.5


@dataclass
class JobsPanel:
    """The panel's components that the status timer refreshes (`refresh` gives their values)."""

    box: gr.Accordion
    table: gr.Dataframe
    picked: gr.Dropdown

    @property
    def outputs(self) -> list:
        return [self.box, self.table, self.picked]


def build_jobs_panel(jobs: TrainingJobs):
    """The panel; returns it and its refresh function (no inputs; outputs `JobsPanel.outputs`)."""
    listed = jobs.all_jobs()
    with gr.Accordion(panel_title(listed), open=False, elem_id="bl-jobs") as box:
        table = gr.Dataframe(headers=list(PANEL_COLUMNS), value=panel_rows(listed), interactive=False, wrap=True, elem_id="bl-jobs-table")
        with gr.Row():
            picked = gr.Dropdown(label="Job", choices=panel_choices(listed), value=None, allow_custom_value=True, scale=3, elem_id="bl-jobs-picked")
            stop = gr.Button("Stop", variant="stop", scale=1, elem_id="bl-jobs-stop")
            resume = gr.Button("Resume", scale=1, elem_id="bl-jobs-resume")
        message = gr.Markdown("", elem_id="bl-jobs-message")
    panel = JobsPanel(box, table, picked)

    def refresh():
        now = jobs.all_jobs()
        return gr.update(label=panel_title(now)), panel_rows(now), gr.update(choices=panel_choices(now))

    stop.click(lambda job_id: job_action(jobs, "stop", job_id), inputs=picked, outputs=message, api_visibility="private")
    resume.click(lambda job_id: job_action(jobs, "resume", job_id), inputs=picked, outputs=message, api_visibility="private")
    _api(jobs)
    return panel, refresh


def job_action(jobs: TrainingJobs, kind: str, job_id: str | None) -> str:
    """Stop or resume a job of either kind: what happened, or why not."""
    job_id = (job_id or "").strip()
    if not job_id:
        return f"**{kind}**: pick a job in the list first"
    try:
        if kind == "stop":
            return jobs.stop(job_id)
        return jobs.sweeps.resume(job_id) if jobs.sweeps.owns(job_id) else jobs.resume(job_id)
    except (JobStateError, SweepStateError) as exc:
        return f"**{kind}**: {exc}"


def panel_title(listed: list[dict]) -> str:
    running = [j for j in listed if j.get("state") == "running"]
    waiting = sum(j.get("state") in ("scheduled", "queued") for j in listed)
    parts = [f"{j['kind']} {j.get('name')}: {job_progress(j)}" for j in running]
    if waiting:
        parts.append(f"{waiting} waiting")
    return "Jobs: " + ("; ".join(parts) if parts else "none running")


def job_progress(job: dict) -> str:
    """How far a job is: a sweep's generations stored (and which of its sweeps), a fine-tune's step."""
    if job.get("state") == "recurring":
        return f"next {_short_time(job.get('run_at'))}"
    if job.get("kind") == "sweep":
        progress = job.get("progress") or {}
        if not progress.get("total"):
            return "starting" if job.get("state") == "running" else ""
        share = progress.get("complete", 0) / progress["total"]
        part = f" (sweep {progress['sweep']} of {progress['sweeps']})" if progress.get("sweeps", 1) > 1 else ""
        return f"{progress.get('complete', 0)}/{progress['total']} stored ({share:.0%}){part}"
    return f"step {job.get('step') or 0}/{job.get('max_steps') or '?'}"


def panel_rows(listed: list[dict]) -> list[list[Any]]:
    active = [j for j in listed if j.get("state") in (*ACTIVE, "recurring")]
    ended = [j for j in listed if j not in active]
    rows = []
    for job in (active + ended)[:max(SHOWN_JOBS, len(active))]:
        note = (job.get("error") or "").splitlines()[0] if job.get("error") else ""
        rows.append([job.get("kind"), job.get("name"), job.get("state"), job_progress(job), _short_time(job.get("started_at")),
                     _short_time(job.get("finished_at")), note, job.get("job_id")])
    return rows


def panel_choices(listed: list[dict]) -> list[tuple[str, str]]:
    return [(f"{j.get('kind')} · {j.get('name')} · {j.get('state')} · {j.get('job_id')}", j.get("job_id")) for j in listed]


def _short_time(iso: str | None) -> str:
    """'2026-11-27T21:05:09' -> '11-27 21:05:09' (the table is narrow)."""
    return iso[5:].replace("T", " ") if iso else ""


async def follow_job(jobs: TrainingJobs, job_id: str) -> AsyncIterator[dict]:
    """The sweep job's state every POLL_S until it has ended (the last one yielded is the end).
    Stopping this generator (a closed page) leaves the job running."""
    while True:
        job = await asyncio.to_thread(jobs.sweeps.job, job_id)
        yield job
        if job.get("state") in ENDED:
            return
        await asyncio.sleep(POLL_S)


def _api(jobs: TrainingJobs) -> None:
    def all_jobs() -> list[dict]:
        """Every job of both kinds (kind: fine-tune or sweep) with its state and progress: recurring schedules, then runs, newest first."""
        return jobs.all_jobs()

    def job_stop(job_id: str) -> str:
        """Stop a sweep (what it stored is kept) or cancel a fine-tune, or remove a recurring schedule."""
        return _raising(job_action(jobs, "stop", job_id))

    def job_resume(job_id: str) -> str:
        """Queue a stopped, failed or interrupted job again (a sweep skips what it stored; a fine-tune continues from its checkpoint)."""
        return _raising(job_action(jobs, "resume", job_id))

    gr.api(all_jobs, api_name="jobs")
    gr.api(job_stop, api_name="job_stop")
    gr.api(job_resume, api_name="job_resume")


def _raising(message: str) -> str:
    if message.startswith("**"):
        raise gr.Error(message.replace("**", ""))
    return message
