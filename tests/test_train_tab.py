"""The Train tab for real: the form through gradio_client, `python app.py serve` killed with -9 in the
middle of a job and started again (the job shows interrupted and resumes; one scheduled for later is kept), and headless Chromium doing what a user does: fill the form,
press Start, watch the curves, see the job finish, pick the new model in Compare and run it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys

import pytest
from gradio_client import Client

from backend.jobs import disk
from backend.serving.registry import ModelRegistry
from backend.settings import REPO_ROOT
from store import training as store_training
from tests.conftest import free_port, wait_for
from tests.test_browser import ARGS, CHROMIUM
from tests.test_serve_cli import _up, run_time_dirs
from tests.test_training_jobs import TINY_JOB
from training.jobs import form_defaults
from ui.train_tab import FORM_FIELDS, JOB_INPUTS

pytestmark = pytest.mark.engine


def form_args(name="client job", model_name="client-ft", schedule="now", run_at="", cron="", **changes):
    """The /train_start endpoint's arguments, in the order the form's button sends them."""
    fields = {**form_defaults(ModelRegistry(REPO_ROOT / "models")), **TINY_JOB, **changes}
    job = {"name": name, "model_name": model_name, "schedule": schedule, "run_at": run_at, "cron": cron}
    return [job[k] for k in JOB_INPUTS] + [fields[k] for k in FORM_FIELDS]


def test_the_form_through_gradio_client_refuses_then_runs_a_job(app_url, training_jobs, store, service):
    client = Client(app_url, verbose=False)
    before = len(training_jobs.jobs())
    refused = client.predict(*form_args(num_generations=3, model_name="l1-tiny"), api_name="/train_start")
    assert refused[0].startswith("**Not scheduled**") and "not divisible by num_generations 3" in refused[0]
    assert "a shipped model has it" in refused[0]
    assert len(training_jobs.jobs()) == before  # nothing scheduled

    accepted = client.predict(*form_args(), api_name="/train_start")
    job_id = accepted[0].split("**")[1]
    assert job_id.startswith("job-") and "to run now" in accepted[0]
    done = wait_for(lambda: next((j for j in client.predict(api_name="/train_jobs") if j["job_id"] == job_id and j["state"] in disk.ENDED), None), 240, 0.5)
    assert done["state"] == disk.FINISHED, done
    training_jobs.sync()
    with store.reader() as cur:
        assert store_training.get_job(cur, job_id)["state"] == "finished"
        assert store_training.job_metrics(cur, job_id)["step"].tolist() == [1, 2]
    assert "client-ft" in service.model_names()  # Compare and Sweep list it now
    with pytest.raises(Exception, match="only a failed, cancelled or interrupted job can be resumed"):
        client.predict(job_id, api_name="/train_resume")
    with pytest.raises(Exception, match="n_min 300, n_max 200"):
        client.predict({**TINY_JOB, "n_min": 300, "n_max": 200}, "x", "x-ft", api_name="/train_submit")


def test_an_app_killed_mid_job_shows_it_interrupted_and_resumes_it(engine, tiny_spec, tmp_path):
    endpoint = engine.ensure(tiny_spec, 300)

    def start_app():
        port = free_port()
        cmd = [sys.executable, "app.py", "serve", "--port", str(port), "--db", str(tmp_path / "app.duckdb"), "--data-dir", str(tmp_path),
               *run_time_dirs(tmp_path), "--backend-url", endpoint.base_url, f"--backend-api-key={endpoint.api_key}", "--model", tiny_spec.name]
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _up(port), timeout_s=120)
        return proc, Client(f"http://127.0.0.1:{port}/", verbose=False)

    def job(client, job_id):
        return next(j for j in client.predict(api_name="/train_jobs") if j["job_id"] == job_id)

    app, client = start_app()
    try:
        later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=6)).strftime("%Y-%m-%d %H:%M")
        later_id = client.predict(TINY_JOB, "later", "later-ft", "at", later, api_name="/train_submit")
        job_id = client.predict({**TINY_JOB, "max_steps": 12}, "killed", "killed-ft", api_name="/train_submit")
        running = wait_for(lambda: (j := job(client, job_id))["state"] == disk.RUNNING and j.get("pid") and j, 120, 0.3)
        wait_for(lambda: (job(client, job_id).get("step") or 0) >= 1, 120, 0.3)
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(30)
    # The training child follows the app down (parent-death signal), so no orphan keeps training.
    wait_for(lambda: not disk.pid_runs_job(running["pid"], disk.JobPaths.run(tmp_path / "jobs", job_id)), 30, 0.2)

    app, client = start_app()
    try:
        interrupted = job(client, job_id)
        assert interrupted["state"] == disk.INTERRUPTED and "Resume continues" in interrupted["error"]
        kept = job(client, later_id)  # the job scheduled for later is still there, still for later
        assert kept["state"] == disk.SCHEDULED and kept["run_at"].replace("T", " ").startswith(later)
        assert "queued to resume" in client.predict(job_id, api_name="/train_resume")
        finished = wait_for(lambda: (j := job(client, job_id))["state"] in disk.ENDED and j, 240, 0.5)
        assert finished["state"] == disk.FINISHED, finished
        wait_for(lambda: job(client, job_id)["step"] == 12, 30, 0.5)  # the metrics copy trails the state by a poll
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(60)


@pytest.mark.browser
def test_from_the_browser_fill_run_watch_finish_and_compare_the_new_model(app_url, training_jobs):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.goto(app_url, wait_until="load")
        page.get_by_role("tab", name="Train").click()
        # A refused form says why under the field, and schedules nothing.
        fill(page, "bl-train-model_name", "browser-ft")
        fill(page, "bl-train-n_min", "600")
        page.locator("#bl-train-start").click()
        page.wait_for_function("document.querySelector('#bl-train-message').innerText.includes('Not scheduled')", timeout=30_000)
        assert "need 1 <= n_min <= n_max" in page.locator("#bl-train-n_min").inner_text()
        # A good one: small enough to finish in seconds on this CPU.
        page.get_by_text("More settings").click()
        for field, value in {"n_min": "16", "n_max": "64", "max_steps": "3", "num_generations": "4", "per_device_train_batch_size": "8",
                             "max_completion_length": "96", "num_examples": "16"}.items():
            fill(page, f"bl-train-{field}", value)
        page.locator("#bl-train-start").click()
        page.wait_for_function("document.querySelector('#bl-train-message').innerText.includes('to run now')", timeout=30_000)
        job_id = page.locator("#bl-train-message").inner_text().split()[1]  # "Submitted JOB to run now ..."
        page.wait_for_function(f"document.querySelector('#bl-train-jobs').innerText.includes('{job_id}')", timeout=30_000)
        # The curves are drawn while it runs, then the job finishes.
        page.wait_for_function("document.querySelector('#bl-train-detail').innerText.includes('step 1 of 3') || "
                               "document.querySelector('#bl-train-detail').innerText.includes('step 2 of 3') || "
                               "document.querySelector('#bl-train-detail').innerText.includes('finished')", timeout=240_000)
        page.wait_for_function("document.querySelector('#bl-train-detail').innerText.includes('finished')", timeout=240_000)
        page.wait_for_function("document.querySelector('#bl-train-curves canvas, #bl-train-curves svg') !== null", timeout=30_000)
        assert "Model browser-ft is registered" in page.locator("#bl-train-detail").inner_text()
        page.get_by_text("More settings").click()  # folded again, for the README's picture
        page.screenshot(path=str(REPO_ROOT / "docs" / "train.png"), full_page=True)
        # Every field's label is whole (none cut to "per_device_train_batch_siz"), and the cron example keeps its asterisks.
        page.get_by_text("More settings").click()
        cut = page.locator(".bl-train-field").evaluate_all(
            "fs => fs.map(f => f.querySelector('[data-testid=\"block-info\"], label > span')).filter(l => l && l.scrollWidth > l.clientWidth + 1).map(l => l.innerText)")
        assert cut == [], cut
        assert page.locator("#bl-train-cron textarea, #bl-train-cron input").first.get_attribute("placeholder") == "0 2 * * *"
        assert "*" not in page.locator("#bl-train-cron").inner_text()  # nothing left for Markdown to mangle in the help
        # A reloaded page opens on the newest job: Cancel has a job to act on, not "no job ''".
        page.reload(wait_until="load")
        page.get_by_role("tab", name="Train").click()
        page.wait_for_function(f"document.querySelector('#bl-train-picked input').value.includes('{job_id}')", timeout=30_000)
        # Compare lists the new model at once and runs it.
        page.get_by_role("tab", name="Compare").click()
        model = page.locator("#bl-model input")
        model.click()
        page.get_by_role("option", name="browser-ft").click()
        page.locator("#bl-run").click()
        page.wait_for_function("document.querySelector('#bl-compare-status').innerText.includes('browser-ft:') && "
                               "document.querySelector('#bl-compare-status').innerText.includes('generations')", timeout=240_000)
        phases = page.locator(".bl-card").evaluate_all("cs => cs.map(c => c.dataset.phase)")
        assert phases and all(phase == "done" for phase in phases), phases
        browser.close()
    assert os.path.isdir(training_jobs.model_dir(job_id))


def fill(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(value)
    box.press("Tab")  # commit the value, as a user leaving the field does
