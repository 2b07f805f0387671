"""Pure rendering: comparison columns (one card per controller and budget) and sweep progress.

Kept free of Gradio so it can be tested on plain data: `render_columns` takes
the generations as dicts (``LiveGeneration.as_dict()``) and returns HTML with
every model text escaped; `render_sweep_progress` and `summary_rows` do the
same for the Sweep tab.
"""

from __future__ import annotations

import re
from html import escape

from backend.service.sweep_plan import SweepProgress
from ui.tree import TREE_CSS, tree_html

# A model's self-emitted countdown ("‹24›": about 240 tokens left), shown muted: it is part of the
# thinking (and counted in it), but not reasoning to read.
TICK = re.compile(r"‹\d+›")

CSS = """
.bl-grid {display:grid; grid-template-columns:repeat(auto-fill,minmax(300px,1fr)); gap:12px;}
.bl-card {border:1px solid var(--border-color-primary,#ddd); border-radius:8px; padding:10px; background:var(--block-background-fill,#fff);}
.bl-card h4 {margin:0 0 6px 0; font-size:15px;}
.bl-meter {height:6px; background:#eee; border-radius:3px; overflow:hidden; margin:4px 0 8px 0;}
.bl-meter > div {height:100%; background:#4c78a8;}
.bl-meter > div.over {background:#e45756;}
.bl-stats {font-size:12px; color:var(--body-text-color-subdued,#555); margin-bottom:6px; line-height:1.5;}
.bl-think {font-family:monospace; font-size:12px; white-space:pre-wrap; max-height:260px; overflow:auto; background:var(--background-fill-secondary,#f6f6f6); padding:6px; border-radius:4px;}
.bl-answer {font-family:monospace; font-size:13px; white-space:pre-wrap; margin-top:6px; padding:6px; border-left:3px solid #54a24b;}
.bl-badge {display:inline-block; padding:1px 6px; border-radius:8px; font-size:12px; margin-left:4px;}
.bl-ok {background:#d8f0d2; color:#1b5e20;} .bl-bad {background:#fbd5d5; color:#8b1a1a;} .bl-na {background:#eee; color:#555;}
.bl-error {color:#b00020; font-size:13px; white-space:pre-wrap;}
.bl-range {font-size:12px; color:#7a4f00; background:#fdf3e1; border-left:3px solid #e0a030; padding:2px 6px; margin:0 0 6px 0; border-radius:3px;}
.bl-progress {font-size:13px;} .bl-progress .bl-meter {height:10px;}
.bl-tick {color:var(--body-text-color-subdued,#999); font-size:10px; opacity:0.7;}
.bl-kind {background:#e8eef7; color:#234;} .bl-samples {font-size:12px; margin:0 0 6px 0; padding-left:18px;}
.bl-model {font-size:12px; color:#555; margin:-4px 0 4px 0;}
.bl-train-field [data-testid="block-info"], .bl-train-field label > span {white-space: normal !important; overflow: visible !important; text-overflow: clip !important; overflow-wrap: anywhere;}
.bl-dot {display:inline-block; width:10px; height:10px; border-radius:50%; margin-right:4px; vertical-align:middle;}
.bl-invalid {outline:2px solid #e45756; border-radius:6px;} .bl-invalid [data-testid="block-info"] {color:#b00020; font-weight:600;}
/* Charts (ui/charts.py) as wide as their block: a chart of width "container" reads its width from here. */
[data-testid="altair"] > .vega-embed {width:100%; align-self:stretch;}
#bl-an-resize {height:0; min-height:0; overflow:hidden; margin-bottom:calc(-1 * var(--layout-gap));}
""" + TREE_CSS

# Columns of the sweep results table, in order (keys of store.summary.run_summary's dicts).
SUMMARY_COLUMNS = ("model", "controller", "budget", "k", "questions", "samples", "pass_at_1", "pass_at_k", "mean_tokens",
                   "mean_thinking_tokens", "mean_answer_tokens", "mean_probe_tokens", "mean_rel_dev", "mean_abs_rel_dev", "violation_rate",
                   "tokens_per_s", "wall_s", "trained_range_note")
# Under a budget outside the trained range: why its result says little (the card's tooltip).
RANGE_WHY = "the model learned to follow budgets inside this range only; here it tends to overshoot or ignore N"

PHASE_LABELS = {
    "queued": "queued",
    "thinking": "thinking…",
    "answering": "answering…",
    "saving": "grading and saving…",
    "done": "done",
    "error": "error",
}


def correctness_badge(generation: dict) -> str:
    if generation.get("phase") != "done":
        return ""
    correct = generation.get("correct")
    if correct is True:
        return '<span class="bl-badge bl-ok">correct</span>'
    if correct is False:
        return '<span class="bl-badge bl-bad">wrong</span>'
    return '<span class="bl-badge bl-na">not graded</span>'


def render_card(generation: dict, cost_usd: float | None = None) -> str:
    budget = generation["budget"]
    thinking = generation["thinking_tokens"]
    share = min(100.0, 100.0 * thinking / budget) if budget else 0.0
    over = " over" if thinking > budget else ""
    title = f'{escape(generation["controller"])} · N={budget}{kind_badge(generation.get("budget_kind"))}'
    stats = [
        f'{PHASE_LABELS.get(generation["phase"], generation["phase"])}',
        f'thinking <b>{thinking}</b>/{budget}',
        f'answer <b>{generation["answer_tokens"]}</b>',
        f'total <b>{generation["total_tokens"]}</b> tokens',
    ]
    if generation.get("waits_used"):
        stats.append(f'waits {generation["waits_used"]}')
    if generation.get("probes") or generation.get("probe_tokens"):
        stats.append(f'{len(generation.get("probes") or [])} probes, <b>{generation.get("probe_tokens", 0)}</b> probe tokens')
    if generation.get("samples"):
        stats.append(f'{len(generation["samples"])} samples × {generation.get("inner_budget")} tokens')
    elif generation.get("search_tree"):
        stats.append(f'paths of at most {generation.get("inner_budget")} tokens')
    if generation.get("verifier_tokens"):
        stats.append(f'verifier read <b>{generation["verifier_tokens"]}</b> tokens')
    if generation.get("ttft_s") is not None:
        stats.append(f'TTFT {generation["ttft_s"]:.2f} s')
    if generation.get("latency_s") is not None:
        stats.append(f'latency {generation["latency_s"]:.2f} s')
    if generation.get("finish_reason"):
        stats.append(f'finish {escape(str(generation["finish_reason"]))}')
    if generation.get("token_counts") in ("reported", "estimated"):
        stats.append(f'tokens {generation["token_counts"]} by the endpoint' if generation["token_counts"] == "reported"
                     else "tokens estimated (the endpoint reports no thinking count)")
    if cost_usd is not None:
        stats.append(f"cost ${cost_usd:.6f}")
    if generation.get("extracted_answer") is not None:
        stats.append(f'answer: <code>{escape(generation["extracted_answer"])}</code>')
    body = [
        f'<div class="bl-card" data-model="{escape(generation.get("model") or "")}" data-controller="{escape(generation["controller"])}" '
        f'data-budget="{budget}" data-phase="{escape(generation["phase"])}" data-outside-range="{escape(generation.get("outside_trained_range") or "")}" '
        f'data-total-tokens="{generation.get("total_tokens") or 0}" data-correct="{_correct_attr(generation.get("correct"))}">',
        f"<h4>{title}{correctness_badge(generation)}</h4>",
        f'<div class="bl-model">{escape(generation.get("model") or "")}</div>',
        f'<div class="bl-meter" title="thinking tokens against the budget"><div class="{over.strip()}" style="width:{share:.1f}%"></div></div>',
        f'<div class="bl-stats">{" · ".join(stats)}</div>',
    ]
    if generation.get("trained_range_note"):
        body.append(f'<div class="bl-range" title="{escape(RANGE_WHY)}">{escape(generation["trained_range_note"])}</div>')
    if generation.get("error"):
        body.append(f'<div class="bl-error">{escape(generation["error"])}</div>')
    if generation.get("samples"):
        body.append(samples_html(generation["samples"]))
    if generation.get("search_tree") and not generation.get("samples"):
        body.append(tree_html(generation["search_tree"]))
    body.append(f'<div class="bl-think">{thinking_html(generation["thinking_text"]) or "<i>no thinking</i>"}</div>')
    if generation.get("answer_text"):
        body.append(f'<div class="bl-answer">{escape(generation["answer_text"])}</div>')
    body.append("</div>")
    return "\n".join(body)


def _correct_attr(correct: bool | None) -> str:
    """The grade as a data attribute: "true", "false", or "" (not graded)."""
    return "" if correct is None else str(bool(correct)).lower()


KIND_TITLES = {"hint": "the model may overrun N", "guaranteed": "the controller enforces N", "none": "no budget"}


def kind_badge(kind: str | None) -> str:
    """Whether the budget is a hint (L1 prompts) or guaranteed (caps, forcing), on the card's title line."""
    if not kind:
        return ""
    return f'<span class="bl-badge bl-kind" title="{escape(KIND_TITLES.get(kind, kind))}">{escape(kind)}</span>'


def samples_html(samples: list[dict]) -> str:
    """A parallel group's samples in one line each: answer, tokens, and which one answers for the group."""
    rows = []
    for s in samples:
        answer = s.get("extracted_answer")
        mark = " ← chosen" if s.get("chosen") else ""
        if s.get("verifier_score") is not None:
            mark = f" · score {s['verifier_score']:.2f}{mark}"
        rows.append(f'<li data-chosen="{str(bool(s.get("chosen"))).lower()}">#{(s.get("group_idx") or 0) + 1}: '
                    f'{"<code>" + escape(answer) + "</code>" if answer is not None else "<i>no answer</i>"} · {s.get("total_tokens", 0)} tokens{mark}</li>')
    return f'<ul class="bl-samples">{"".join(rows)}</ul>'


def thinking_html(text: str) -> str:
    """The thinking, escaped, with countdown ticks muted (`TICK`)."""
    return TICK.sub(lambda m: f'<span class="bl-tick">{m.group(0)}</span>', escape(text))


def render_columns(generations: list[dict], costs: list[float] | None = None) -> str:
    if not generations:
        return '<div class="bl-grid"></div>'
    costs = costs or [None] * len(generations)
    cards = "\n".join(render_card(g, c) for g, c in zip(generations, costs))
    return f'<div class="bl-grid">{cards}</div>'


def render_status(message: str, error: str | None = None) -> str:
    if error:
        return f"**Error:** {error}"
    return message


def render_sweep_progress(progress, error: str | None = None, state: str | None = None) -> str:
    """A bar and a line of counts for a `backend.service.sweep_plan.SweepProgress` (None: nothing started);
    ``state`` (data-state) defaults to what the counts and the error say."""
    if progress is None:
        body = "No sweep running." if error is None else ""
        return f'<div class="bl-progress" id="bl-sweep-state" data-state="{"error" if error else "idle"}">{body}{_error_line(error)}</div>'
    share = progress.complete / progress.total if progress.total else 0.0
    finished = progress.total > 0 and progress.complete + progress.failed >= progress.total
    state = state or ("error" if error else "done" if finished else "running")
    rate = progress.output_tokens / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
    counts = (f"{progress.complete} / {progress.total} generations stored ({share:.0%})"
              + (f", {progress.stored_before} from before" if progress.stored_before else "")
              + (f", {progress.failed} failed" if progress.failed else "")
              + f" &middot; {rate:,.0f} tokens/s &middot; {progress.elapsed_s:,.0f} s")
    return (f'<div class="bl-progress" id="bl-sweep-state" data-state="{state}" data-complete="{progress.complete}" data-total="{progress.total}">'
            f'<div><b>{escape(progress.run_id)}</b>: {escape(progress.message)}</div>'
            f'<div class="bl-meter"><div style="width:{share * 100:.1f}%"></div></div>'
            f"<div>{counts}</div>{_error_line(error or (progress.last_error and f'last failure: {progress.last_error}'))}</div>")


# A sweep job's state (backend.jobs) -> the bar's data-state.
JOB_BAR_STATES = {"scheduled": "queued", "queued": "queued", "running": "running", "finished": "done", "failed": "error",
                  "cancelled": "stopped", "interrupted": "stopped"}


def render_sweep_job(job: dict | None, error: str | None = None) -> str:
    """The progress bar of a sweep job (a dict from `backend.jobs.sweeps`; None: none yet), which any page can draw:
    its progress as last written, the job's state, and its error once it has ended."""
    if job is None:
        return render_sweep_progress(None, error=error)
    state = job.get("state")
    error = error or (job.get("error") if state in ("failed", "cancelled", "interrupted") else None)
    bar = JOB_BAR_STATES.get(state, "running")
    progress = SweepProgress.from_json(job["progress"]) if job.get("progress") else SweepProgress(", ".join(job.get("runs") or ()))
    if state in ("scheduled", "queued"):
        progress.message = f"{state}: " + (f"at {job['run_at']} UTC" if job.get("run_at") else "starts when the sweep before it ends")
    elif not job.get("progress"):
        progress.message = "starting"
    if (job.get("progress") or {}).get("sweeps", 1) > 1:
        progress.message += f" (sweep {job['progress']['sweep']} of {job['progress']['sweeps']})"
    return render_sweep_progress(progress, error=error, state=bar).replace(
        'id="bl-sweep-state"', f'id="bl-sweep-state" data-job="{escape(job.get("job_id", ""))}" data-job-state="{escape(str(state))}"', 1)


def _error_line(error: str | None) -> str:
    return f'<div class="bl-error">{escape(error)}</div>' if error else ""


def summary_rows(summary: list[dict]) -> list[list]:
    """The summary as table rows in SUMMARY_COLUMNS order, floats rounded for reading (a budget inside the trained range: no note)."""
    return [[round(v, 3) if isinstance(v := group.get(c), float) else v for c in SUMMARY_COLUMNS] for group in summary]
