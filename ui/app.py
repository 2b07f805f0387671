"""The dashboard's Blocks, built by a factory; nothing launches at import.

    demo = build_app(service, jobs, export_dir=Path("data/exports"))
    demo.queue().launch(server_name="127.0.0.1", server_port=7860, **launch_options())

The engine status line at the top refreshes every two seconds, one line per engine, so a user
sees each model loading, ready (with its memory and who uses it), restarting after a crash, or
failed with the reason. Below it, the jobs panel (`ui.jobs_panel`) lists the app's fine-tunes and
sweeps with their progress, on every page, and stops or resumes one.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from backend.jobs.scheduler import TrainingJobs
from backend.service.budgetlab import Budgetlab
from backend.serving.engine import State
from ui.analytics_tab import AnalyticsHandles, build_analytics_tab, filters_from_link
from ui.compare_tab import CompareHandles, build_compare_tab
from ui.jobs_panel import build_jobs_panel
from ui.render import CSS
from ui.sweep_tab import build_sweep_tab
from ui.train_tab import build_train_tab

# A coloured dot drawn by CSS, not an emoji: a machine without an emoji font shows a box instead.
STATE_COLOURS = {State.READY: "#2e7d32", State.STARTING: "#f9a825", State.FAILED: "#c62828", State.STOPPED: "#9e9e9e"}
# Ctrl+Enter (Cmd+Enter on a Mac) in the question box runs the comparison.
JS = """() => {
  document.addEventListener('keydown', (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === 'Enter' && event.target.closest && event.target.closest('#bl-question')) {
      event.preventDefault();
      document.querySelector('#bl-run')?.click();
    }
  });
}"""


def launch_options() -> dict:
    """What every launch of the dashboard passes (app.py serve and the tests): styles, scripts, no SSR."""
    return {"css": CSS, "js": JS, "ssr_mode": False}


def engine_status_markdown(service: Budgetlab) -> str:
    """One line per engine: its state, model, memory and who holds it; a failure's log tail below."""
    views = service.engine_views()
    if not views:
        return f"{_dot(State.STOPPED)} **No engine running**: one starts when a model is asked for."
    lines, tails = [], []
    for view in views:
        first, _, rest = view.message.partition("\n")
        facts = [first]
        if view.replicas > 1:
            facts.append(f"{view.replicas} replicas")
        if view.memory_gib:
            facts.append(f"{view.memory_gib:.1f} GiB")
        if view.holders:
            facts.append("in use: " + ", ".join(f"{n} {h}{'s' if n > 1 else ''}" for h, n in view.holders.items()))
        role = "" if view.role == "generate" else f" ({view.role})"
        lines.append(f"{_dot(view.state)} **{view.model}{role} {view.state.value}**: " + " · ".join(facts))
        if rest:
            tails.append(f"```\n{rest}\n```")
    return "<br>".join(lines) + "".join(f"\n\n{t}" for t in tails)


def _dot(state: State) -> str:
    return (f'<span class="bl-dot" role="img" aria-label="{state.value}" '
            f'style="background:{STATE_COLOURS.get(state, "#9e9e9e")}"></span>')


def build_app(service: Budgetlab, jobs: TrainingJobs, export_dir: Path, concurrency_limit: int = 32) -> gr.Blocks:
    """`export_dir`: the only folder the Analytics tab writes its exports into."""
    with gr.Blocks(title="budgetlab", analytics_enabled=False) as demo:
        gr.Markdown("# budgetlab\nMake a reasoning model think for as many tokens as you ask, and see what that buys.")
        engine_status = gr.Markdown(engine_status_markdown(service), elem_id="bl-engine-status")
        jobs_panel, refresh_jobs = build_jobs_panel(jobs)
        timer = gr.Timer(2.0)
        timer.tick(lambda: (engine_status_markdown(service), *refresh_jobs()), outputs=[engine_status, *jobs_panel.outputs],
                   api_visibility="private", queue=False)
        with gr.Tabs() as tabs:
            compare = build_compare_tab(service, concurrency_limit)
            sweep = build_sweep_tab(service, jobs)
            train_timer = build_train_tab(jobs)
            analytics = build_analytics_tab(service, jobs, export_dir)
        # A tab's own refresh (its job, its progress) runs only while the tab is shown.
        tab_timers = {"Sweep": sweep.timer, "Train": train_timer, "Analytics": analytics.timer}
        tabs.select(_timers_of_shown_tab(tab_timers), outputs=list(tab_timers.values()), api_visibility="private", queue=False)
        # The Sweep tab's preset ends in the Analytics tab, on its run's equal-token view.
        sweep.finished.then(_open_analytics, inputs=[sweep.open_analytics, sweep.run], outputs=[tabs, analytics.runs, sweep.open_analytics],
                            api_visibility="private").then(analytics.draw, inputs=analytics.inputs, outputs=analytics.outputs, api_visibility="private")
        _open_shared_links(demo, tabs, compare, analytics)
        _status_api(service)
    return demo


def _status_api(service: Budgetlab) -> None:
    def engine_status() -> dict:
        """The engines' state (ready when every engine is), the models they serve, and why; ``engines``: one
        entry per engine (model, role, state, message, memory in GiB, who holds it): the page's status line, for scripts."""
        status = service.engine_status()
        engines = [{"model": v.model, "role": v.role, "state": v.state.value, "message": v.message, "memory_gib": v.memory_gib,
                    "holders": v.holders, "replicas": v.replicas, "restarts": v.restarts} for v in service.engine_views()]
        return {"state": status.state.value, "ready": status.ready, "model": status.model, "message": status.message,
                "restarts": status.restarts, "engines": engines}

    gr.api(engine_status, api_name="engine_status")


def _open_shared_links(demo: gr.Blocks, tabs: gr.Tabs, compare: CompareHandles, analytics: AnalyticsHandles) -> None:
    """A page opened from a shared link: ``?run=compare-...`` shows that stored comparison read-only
    (nothing generated), ``?view=analytics&...`` the Analytics tab under those filters."""
    draw_analytics = gr.State(False)

    def open_link(request: gr.Request):
        params = request.query_params
        skip_compare, skip_analytics = [gr.skip()] * len(compare.outputs), [gr.skip()] * len(analytics.link_inputs)
        if params.get("run"):
            return gr.Tabs(selected="compare"), *compare.reopen(params["run"]), *skip_analytics, False
        if params.get("view") == "analytics":
            return gr.Tabs(selected="analytics"), *skip_compare, *filters_from_link(params), True
        return gr.skip(), *skip_compare, *skip_analytics, False

    def draw_if_asked(asked: bool, *values):
        return analytics.draw(*values) if asked else [gr.skip()] * len(analytics.outputs)

    demo.load(open_link, outputs=[tabs, *compare.outputs, *analytics.link_inputs, draw_analytics], api_visibility="private", queue=False).then(
        draw_if_asked, inputs=[draw_analytics, *analytics.inputs], outputs=analytics.outputs, api_visibility="private")


def _open_analytics(wanted: bool, run: str):
    if not (wanted and run):
        return gr.skip(), gr.skip(), wanted
    return gr.Tabs(selected="analytics"), gr.update(value=[run]), False


def _timers_of_shown_tab(tab_timers: dict[str, gr.Timer]):
    def shown(evt: gr.SelectData):
        return [gr.Timer(active=evt.value == name) for name in tab_timers]
    return shown


__all__ = ["CSS", "JS", "build_app", "launch_options"]
