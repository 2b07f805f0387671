"""Long work outlives the page (issue 32), in a real browser: the first-run figures started from one
page keep running when it closes; a new page lists the job with live progress and stops it there; the
button comes back and resumes it; an app restarted in the middle resumes the job by itself, and every
(model, controller, budget, question, sample) of the runs is stored exactly once.

The app runs in this process over the shared engine (its pool starts the base model for the s1
baseline); the restart closes it as Ctrl-C does and opens a new one on the same folders. A kill -9
of an app in the middle of a sweep job is tests/test_faults.py's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re

import duckdb
import pytest

from backend.factory import open_app
from backend.jobs import disk
from tests.conftest import free_port, wait_for
from tests.test_browser import ARGS, CHROMIUM

pytestmark = [pytest.mark.engine, pytest.mark.browser]
QUESTIONS = 16
BUDGETS = 5  # l1-tiny's suggested budgets: the first-run plan's
TOTAL = BUDGETS * 2 * QUESTIONS + BUDGETS * QUESTIONS  # l1_exact and l1_max on l1-tiny, s1 on tiny-r1-base


@contextlib.contextmanager
def served(settings, engine):
    from ui.app import build_app, launch_options

    with open_app(settings, env=os.environ, engine=engine, jobs=True) as app:
        demo = build_app(app.service, app.jobs, export_dir=settings.resolve_path(settings.export_dir))
        demo.queue(default_concurrency_limit=16)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
        try:
            yield f"http://127.0.0.1:{port}/", app
        finally:
            demo.close()


def _jobs_table(page) -> str:
    return page.locator("#bl-jobs-table").inner_text()


def _stored(text: str) -> int:
    found = re.search(r"(\d+)/(\d+) stored", text)
    return int(found.group(1)) if found else -1


def test_a_sweep_job_survives_its_page_is_stopped_from_another_and_resumes_after_a_restart(engine, app_settings, tmp_path):
    from playwright.sync_api import sync_playwright

    settings = dataclasses.replace(app_settings, db=str(tmp_path / "jobs.duckdb"), jobs_dir=str(tmp_path / "jobs"), data_dir=str(tmp_path),
                                   scheduler_db=str(tmp_path / "scheduler.sqlite"), first_run_questions=QUESTIONS)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        with served(settings, engine) as (url, app):
            first = browser.new_page(viewport={"width": 1280, "height": 1000})
            first.goto(url, wait_until="load")
            first.get_by_role("tab", name="Analytics").click()
            first.locator("#bl-an-reproduce").click()
            first.wait_for_function("(document.querySelector('#bl-an-first-progress [data-complete]')?.dataset.complete | 0) > 0", timeout=180_000)
            job_id = first.locator("#bl-an-first-progress [data-job]").get_attribute("data-job")
            first.close()  # the page that started it is gone; the job is not

            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, wait_until="load")
            page.locator("#bl-jobs").get_by_text("Jobs:").first.click()
            page.wait_for_function(f"document.querySelector('#bl-jobs-table')?.innerText.includes('{job_id}')", timeout=30_000)
            assert "L1 figures (first run)" in _jobs_table(page) and "running" in _jobs_table(page)
            seen = _stored(_jobs_table(page))
            wait_for(lambda: _stored(_jobs_table(page)) > seen, 60, 0.5)  # live progress, on a page that did not start it

            page.locator("#bl-jobs-picked input").fill(job_id)
            page.locator("#bl-jobs-picked input").press("Enter")
            page.locator("#bl-jobs-stop").click()
            page.wait_for_function("document.querySelector('#bl-jobs-message').innerText.includes('stopping')", timeout=30_000)
            wait_for(lambda: app.jobs.sweeps.job(job_id)["state"] == "cancelled", 60, 0.2)
            stopped_at = app.jobs.sweeps.job(job_id)["progress"]["complete"]
            assert 0 < stopped_at, stopped_at

            # The first-run button is back (its run stopped unfinished), and resumes the same job.
            page.get_by_role("tab", name="Analytics").click()
            page.locator("#bl-an-reproduce").wait_for(state="visible", timeout=30_000)
            page.wait_for_function("document.querySelector('#bl-an-first-progress').innerText.includes('stopped')", timeout=30_000)
            page.locator("#bl-an-reproduce").click()
            wait_for(lambda: app.jobs.sweeps.job(job_id)["state"] == "running", 60, 0.2)
            wait_for(lambda: (app.jobs.sweeps.job(job_id).get("progress") or {}).get("complete", 0) > stopped_at, 120, 0.2)
            page.close()
        # The app was closed in the middle of the job (as Ctrl-C does); it is started again on the same folders.
        state = disk.read_state(disk.JobPaths.sweep(settings.resolve_path(settings.jobs_dir), job_id))
        assert (state["state"], state["resume_on_start"]) == ("interrupted", True), "the job ended before the restart: make it longer"
        with served(settings, engine) as (url, app):
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, wait_until="load")
            page.locator("#bl-jobs").get_by_text("Jobs:").first.click()
            page.wait_for_function(f"document.querySelector('#bl-jobs-table')?.innerText.includes('{job_id}')", timeout=30_000)
            job = wait_for(lambda: (j := app.jobs.sweeps.job(job_id))["state"] in ("finished", "failed", "cancelled") and j, 600, 0.5)
            assert job["state"] == "finished", job
            page.wait_for_function("document.querySelector('#bl-jobs-table').innerText.includes('finished')", timeout=30_000)
            page.get_by_role("tab", name="Analytics").click()
            page.wait_for_timeout(2_000)
            assert not page.locator("#bl-an-reproduce").is_visible()
            runs = job["runs"]
        browser.close()
    with duckdb.connect(settings.db, read_only=True) as con:
        rows, distinct_ids, distinct_items = con.execute(
            "SELECT count(*), count(DISTINCT gen_id), count(DISTINCT (run_id, model, controller, budget, question_id, sample_idx)) "
            "FROM generations WHERE run_id IN (SELECT unnest(?))", [runs]).fetchall()[0]
    assert rows == distinct_ids == distinct_items == TOTAL, (rows, distinct_ids, distinct_items)
