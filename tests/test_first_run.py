"""A new install's first five minutes: on a fresh store, the Analytics tab offers one button that
reproduces the L1 figures on the embedded model; pressed in a real browser, it runs the sweeps and
draws the charts (screenshots for the README at the dashboard's two usual widths)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from backend.factory import open_app
from backend.settings import REPO_ROOT
from tests.conftest import free_port
from tests.test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.engine, pytest.mark.browser]


@pytest.fixture(scope="module")
def fresh_url(engine, app_settings, tmp_path_factory):
    """The dashboard over the shared engine with a store of its own, empty; a small preset (6 questions)."""
    from ui.app import build_app, launch_options

    root = tmp_path_factory.mktemp("first-run")
    settings = dataclasses.replace(app_settings, db=str(root / "fresh.duckdb"), jobs_dir=str(root / "jobs"),
                                   scheduler_db=str(root / "scheduler.sqlite"), first_run_questions=6)
    with open_app(settings, env=os.environ, engine=engine, jobs=True) as app:
        assert app.service.sweeps_stored() == 0
        demo = build_app(app.service, app.jobs, export_dir=root / "exports")
        demo.queue(default_concurrency_limit=16)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
        yield f"http://127.0.0.1:{port}/", app
        demo.close()


def test_the_first_run_button_draws_the_l1_figures(fresh_url):
    from playwright.sync_api import sync_playwright

    url, app = fresh_url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url, wait_until="load")
        page.get_by_role("tab", name="Analytics").click()
        box = page.locator("#bl-an-first-run").first  # Gradio gives a group's id to two nested blocks
        box.wait_for(state="visible", timeout=30_000)
        assert "tiny-r1-base" in box.inner_text() and "l1_exact" in box.inner_text()
        page.locator("#bl-an-reproduce").click()
        page.wait_for_function("document.querySelector('#bl-an-first-progress').innerText.includes('generations stored')", timeout=300_000)
        # done: the box goes away and the views are drawn on the preset's two runs (6 questions x 5 budgets x 3 methods)
        page.wait_for_function("document.querySelector('#bl-an-status').innerText.startsWith('90 generations')", timeout=600_000)
        for view in ("tradeoff", "adherence", "keywords"):
            page.wait_for_function(f"document.querySelector('#bl-an-{view} canvas, #bl-an-{view} svg') !== null", timeout=30_000)
        assert not page.locator("#bl-an-reproduce").is_visible()
        # each chart has Vega's own export menu (PNG / SVG)
        menu = page.locator("#bl-an-tradeoff details.vega-actions, #bl-an-tradeoff .vega-actions").first
        menu.wait_for(state="attached", timeout=10_000)
        assert "PNG" in menu.inner_html() and "SVG" in menu.inner_html()
        for width in (1280, 1920):
            page.set_viewport_size({"width": width, "height": 1000})
            page.locator("#bl-an-tradeoff").scroll_into_view_if_needed()
            page.screenshot(path=str(REPO_ROOT / "docs" / f"first-run-{width}.png"), full_page=True)
        browser.close()
    assert app.service.sweeps_stored() == 2
    models = {row["model"] for row in app.service.run_report(app.service.runs()[0]["run_id"])}
    assert models <= {"l1-tiny", "tiny-r1-base"}
