"""The dashboard's Blocks, built by a factory; nothing launches at import.

    demo = build_app(service, jobs, export_dir=Path("data/exports"))
    demo.queue().launch(server_name="127.0.0.1", server_port=7860, css=CSS)

The engine status line at the top refreshes every two seconds, so a user sees
the model loading, ready, restarting after a crash, or failed with the reason.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from backend.jobs.scheduler import TrainingJobs
from backend.service.budgetlab import Budgetlab
from backend.serving.engine import State
from ui.analytics_tab import build_analytics_tab
from ui.compare_tab import build_compare_tab
from ui.render import CSS
from ui.sweep_tab import build_sweep_tab
from ui.train_tab import build_train_tab

STATE_ICONS = {State.READY: "🟢", State.STARTING: "🟡", State.FAILED: "🔴", State.STOPPED: "⚪"}


def engine_status_markdown(service: Budgetlab) -> str:
    status = service.engine_status()
    first, _, rest = status.message.partition("\n")
    text = f"{STATE_ICONS.get(status.state, '')} **Engine {status.state.value}**: {first}"
    if rest:
        text += f"\n\n```\n{rest}\n```"
    return text


def build_app(service: Budgetlab, jobs: TrainingJobs, export_dir: Path, concurrency_limit: int = 32) -> gr.Blocks:
    """`export_dir`: the only folder the Analytics tab writes its exports into."""
    with gr.Blocks(title="budgetlab", analytics_enabled=False) as demo:
        gr.Markdown("# budgetlab\nMake a reasoning model think for as many tokens as you ask, and see what that buys.")
        engine_status = gr.Markdown(engine_status_markdown(service), elem_id="bl-engine-status")
        timer = gr.Timer(2.0)
        timer.tick(lambda: engine_status_markdown(service), outputs=engine_status, api_visibility="private", queue=False)
        with gr.Tabs() as tabs:
            build_compare_tab(service, concurrency_limit)
            sweep = build_sweep_tab(service)
            train_timer = build_train_tab(jobs)
            analytics = build_analytics_tab(service, jobs, export_dir)
        # The job list polls only while the Train tab is shown.
        tabs.select(_train_tab_shown, outputs=train_timer, api_visibility="private", queue=False)
        # The Sweep tab's preset ends in the Analytics tab, on its run's equal-token view.
        sweep.finished.then(_open_analytics, inputs=[sweep.open_analytics, sweep.run], outputs=[tabs, analytics.runs, sweep.open_analytics],
                            api_visibility="private").then(analytics.draw, inputs=analytics.inputs, outputs=analytics.outputs, api_visibility="private")
    return demo


def _open_analytics(wanted: bool, run: str):
    if not (wanted and run):
        return gr.skip(), gr.skip(), wanted
    return gr.Tabs(selected="analytics"), gr.update(value=[run]), False


def _train_tab_shown(evt: gr.SelectData) -> gr.Timer:
    return gr.Timer(active=evt.value == "Train")


__all__ = ["CSS", "build_app"]
