"""Charts that fit (issue 32): measured in headless Chromium, at 1024, 1440 and 1920 px windows.

The Analytics tab of a fresh app, filled by a real sweep with ten series (ten controllers on the
embedded model, three budgets, a few questions), then its adherence audit; and, on a page of their
own, the charts drawn elsewhere (one-step and longer training curves, the empty-state messages).
For every chart: drawn by Vega's SVG renderer (its text is in the DOM), every text element's box
inside the chart's own SVG, the SVG inside its block, and no facet panel without data marks.
The first test saves the Analytics tab at the three widths (docs/analytics-1024.png, -1440, -1920).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pandas as pd
import pytest

from backend.factory import open_app
from backend.service.sweep_plan import parse_sweep_request
from backend.settings import REPO_ROOT, AppSettings
from tests.conftest import TINY_MODEL, free_port
from tests.test_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.browser

WIDTHS = (1024, 1440, 1920)
RUN = "chart-fit"
# Ten series: every single-pass method, early exit (probes) and three parallel ones (vote curves).
CONTROLLERS = "l1_exact,l1_max,s1,hard_cap,no_thinking,thinking_cap,early_exit,maj4:l1_exact,best4:l1_exact,maj2:hard_cap"
QUESTIONS = 8
VIEWS = ("tradeoff", "cost", "adherence", "thinking", "votes", "settling", "keywords")
CONTAINER_WIDE = ("tradeoff", "cost", "votes", "settling")  # single views: as wide as their block
TOLERANCE_PX = 2

# One chart, measured: {svg, canvas, block and svg boxes, texts outside the chart, facet panels without marks}.
MEASURE_JS = """(block) => {
  const box = (el) => { const b = el.getBoundingClientRect(); return {left: b.left, top: b.top, right: b.right, bottom: b.bottom}; };
  const svg = block.querySelector('.vega-embed svg.marks');
  const out = {svg: !!svg, canvas: !!block.querySelector('.vega-embed canvas'), block: box(block), outside: [], covered: [], empty_panels: 0, panels: 0, texts: 0};
  if (!svg) return out;
  out.chart = box(svg);
  const tol = %d;
  const inside = (b, c) => b.left >= c.left - tol && b.top >= c.top - tol && b.right <= c.right + tol && b.bottom <= c.bottom + tol;
  // What the page draws over a chart: the block's label, and the chart menu's button once it is opaque (it is faint until hovered).
  const overlays = [...block.querySelectorAll('[data-testid="block-label"], .vega-embed summary')]
    .filter((el) => el.checkVisibility({opacityProperty: true}) && +getComputedStyle(el).opacity >= 0.5)
    .map((el) => ({...box(el), what: el.getAttribute('data-testid') || el.tagName}));
  for (const text of svg.querySelectorAll('text')) {
    if (!text.textContent.trim()) continue;
    out.texts += 1;
    const b = box(text);
    if (!inside(b, out.chart) || !inside(b, out.block)) out.outside.push([text.textContent, [b.left, b.top, b.right, b.bottom].map(Math.round)]);
    const over = overlays.find((o) => b.left < o.right - tol && o.left < b.right - tol && b.top < o.bottom - tol && o.top < b.bottom - tol);
    if (over) out.covered.push([text.textContent, over.what]);
  }
  out.chart_inside_block = inside(out.chart, out.block);
  // Facet panels (Vega-Lite's "cell" groups) and concatenated ones: each with at least one drawn mark item.
  for (const scope of svg.querySelectorAll('g.mark-group.role-scope.cell, g.mark-group.role-scope[class*="concat_"]')) {
    for (const panel of scope.children) {
      out.panels += 1;
      const marks = [...panel.querySelectorAll('g.role-mark')].filter((g) => !g.closest('.role-axis, .role-legend, .role-title'));
      if (!marks.some((g) => g.children.length > 0)) out.empty_panels += 1;
    }
  }
  out.labels = [...svg.querySelectorAll('g.role-axis-label text')].map((t) => t.textContent);
  return out;
}""" % TOLERANCE_PX


@pytest.fixture(scope="module")
def swept_url(engine, tmp_path_factory):
    """A fresh app on the shared engine, its own store holding one sweep of ten series x 3 budgets x
    QUESTIONS questions; the recommender's and the audit's minimums lowered to what it holds."""
    from ui.app import build_app, launch_options

    root = tmp_path_factory.mktemp("chart-fit")
    settings = AppSettings(model=TINY_MODEL, db=str(root / "budgetlab.duckdb"), models_dir=str(REPO_ROOT / "models"), data_dir=str(root),
                           trained_models_dir=str(root / "trained"), jobs_dir=str(root / "jobs"), scheduler_db=str(root / "scheduler.sqlite"),
                           export_dir=str(root / "exports"), answer_max_tokens=64, recommend_min_answers=QUESTIONS, audit_min_generations=QUESTIONS)
    with open_app(settings, env={}, engine=engine, jobs=True) as opened:
        request = parse_sweep_request(models=TINY_MODEL, dataset="arith", controllers=CONTROLLERS, budgets="64,128,256", limit=QUESTIONS, seed=7, run=RUN)
        outcome = asyncio.run(opened.service.sweep(request))
        assert outcome.progress.failed == 0 and outcome.progress.complete == 10 * 3 * QUESTIONS, outcome.progress
        demo = build_app(opened.service, opened.jobs, export_dir=Path(settings.export_dir))
        demo.queue(default_concurrency_limit=16)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
        yield f"http://127.0.0.1:{port}/"
        demo.close()


def assert_fits(page, element_id: str, width: int, full_width: bool = False) -> dict:
    """The chart in ``#element_id`` is SVG, its texts inside it, it inside its block, every panel with marks."""
    block = page.locator(f"#{element_id}")
    block.scroll_into_view_if_needed()
    facts = block.evaluate(MEASURE_JS)
    where = f"{element_id} at {width} px"
    assert facts["svg"] and not facts["canvas"], f"{where}: not drawn as SVG"
    assert facts["texts"] > 0, f"{where}: no text"
    assert facts["chart_inside_block"], f"{where}: the chart {facts['chart']} overflows its block {facts['block']}"
    assert not facts["outside"], f"{where}: text outside the chart: {facts['outside']}"
    assert not facts["covered"], f"{where}: text covered: {facts['covered']}"
    assert facts["empty_panels"] == 0, f"{where}: {facts['empty_panels']} of {facts['panels']} panels without data"
    if full_width:
        chart, block = facts["chart"], facts["block"]
        assert chart["right"] - chart["left"] >= 0.9 * (block["right"] - block["left"]), f"{where}: narrower than its block"
    return facts


def test_every_analytics_chart_fits_at_three_widths_with_ten_series(swept_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for width in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.goto(swept_url, wait_until="load")
            page.get_by_role("tab", name="Analytics").click()
            page.wait_for_function("document.querySelector('#bl-an-status').innerText.includes('generations in')", timeout=60_000)
            for view in VIEWS:
                page.wait_for_function(f"document.querySelector('#bl-an-{view} svg.marks') !== null", timeout=30_000)
            page.evaluate("document.fonts.ready")
            page.wait_for_timeout(500)  # a view's second update (the link, the table) re-lays the page out
            status = page.locator("#bl-an-status").inner_text()
            assert status.startswith(f"{(7 + 4 + 4 + 2) * 3 * QUESTIONS:,} generations in 30 "), status  # parallel answers are K generations
            for view in VIEWS:
                facts = assert_fits(page, f"bl-an-{view}", width, full_width=view in CONTAINER_WIDE)
                if view == "thinking":
                    assert facts["panels"] == 10, facts  # a panel per series, none empty
            _audit(page, width)
            page.locator("#bl-an-tradeoff").scroll_into_view_if_needed()
            top = page.locator("#bl-an-tradeoff").bounding_box()
            bottom = page.locator("#bl-an-keywords").bounding_box()
            clip = {"x": 0, "y": top["y"] - 8, "width": width, "height": bottom["y"] + bottom["height"] - top["y"] + 16}
            page.screenshot(path=str(REPO_ROOT / "docs" / f"analytics-{width}.png"), full_page=True, clip=clip)
            if width == WIDTHS[-1]:
                _resized_while_hidden(page)
            page.close()
        browser.close()


def _resized_while_hidden(page) -> None:
    """A window made narrower while another tab is shown: back on the Analytics tab, its charts fit the new width
    (Vega measured their hidden blocks as 0 wide; showing the tab makes them measure again)."""
    page.get_by_role("tab", name="Compare").click()
    page.wait_for_timeout(300)
    page.set_viewport_size({"width": WIDTHS[0], "height": 1000})
    page.wait_for_timeout(300)
    page.get_by_role("tab", name="Analytics").click()
    page.wait_for_function("document.querySelector('#bl-an-tradeoff svg.marks').getBoundingClientRect().width > 300", timeout=30_000)
    page.wait_for_timeout(500)
    for view in VIEWS:
        assert_fits(page, f"bl-an-{view}", WIDTHS[0], full_width=view in CONTAINER_WIDE)


def _audit(page, width: int) -> None:
    """The adherence audit of the run, drawn in its panel, fits too."""
    page.get_by_text("Adherence audit: is each budget enforced, overrun, or ignored?").click()
    page.locator("#bl-an-audit-run input").fill(RUN)
    page.keyboard.press("Enter")
    page.locator("#bl-an-audit").click()
    page.wait_for_function("document.querySelector('#bl-an-audit-chart svg.marks') !== null", timeout=30_000)
    page.wait_for_timeout(300)
    assert_fits(page, "bl-an-audit-chart", width)


def _static_charts_app():
    """A page of the charts drawn outside the Analytics views: training curves (one logged step, and
    several) side by side as the Train tab's columns place them, and every empty-state message."""
    import gradio as gr

    from ui import charts

    one = pd.DataFrame({"step": [1], "reward": [0.707137], "correct": [0.5], "mean_length": [120.25], "mean_abs_rel_dev": [0.031416]})
    many = pd.DataFrame({"step": list(range(1, 41)), "reward": [0.1 + i / 57 for i in range(40)], "correct": [min(1.0, i / 30) for i in range(40)],
                         "mean_length": [400 - 7.5 * i for i in range(40)], "mean_abs_rel_dev": [1.2 / (i + 1) for i in range(40)]})
    drawn = {"one-step": charts.training_curves_chart(one, "a job that logged one step so far"),
             "forty-steps": charts.training_curves_chart(many, "nightly-l1-tiny-20250101-0200"),
             "no-metrics": charts.training_curves_chart(pd.DataFrame(), "fresh"),
             "no-audit": charts.audit_chart([]), "no-votes": charts.vote_chart([]), "no-points": charts.tradeoff_chart([])}
    with gr.Blocks() as demo:
        names = list(drawn)
        for left, right in zip(names[::2], names[1::2]):
            with gr.Row():
                with gr.Column(scale=3):
                    gr.Plot(value=drawn[left], label="Training curves", elem_id=f"chart-{left}")  # labelled, as in the Train tab
                with gr.Column(scale=4):
                    gr.Plot(value=drawn[right], label="Training curves", elem_id=f"chart-{right}")
    return demo, names


def test_training_curves_and_empty_states_fit_with_short_tick_labels():
    from playwright.sync_api import sync_playwright

    from ui.app import launch_options

    demo, names = _static_charts_app()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            for width in WIDTHS:
                page = browser.new_page(viewport={"width": width, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
                for name in names:
                    page.wait_for_function(f"document.querySelector('#chart-{name} svg.marks') !== null", timeout=30_000)
                page.wait_for_timeout(300)
                for name in names:
                    facts = assert_fits(page, f"chart-{name}", width)
                    # Tick labels with the decimals their range needs: "0.71", never "0.707137".
                    long = [label for label in facts["labels"] if len(re.sub(r"[^0-9]", "", label.lstrip("0.-"))) > 4]
                    assert not long, f"{name} at {width} px: tick labels {long}"
                    if name.endswith("steps") or name == "one-step":
                        assert facts["panels"] == 4, facts
                page.close()
            browser.close()
    finally:
        demo.close()
