"""One real browser: headless Chromium (Debian's) opens the dashboard and runs a comparison.

The first test opens a fresh app as `make demo` configures it and runs the default comparison; it
saves the screenshot of the Compare tab that the README shows (docs/compare.png), so the picture
is always of the app as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.factory import open_app
from backend.settings import REPO_ROOT, AppSettings
from tests.conftest import TINY_MODEL, free_port

pytestmark = [pytest.mark.engine, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def fresh_app_url(engine, tmp_path_factory):
    """A fresh app with the settings `make demo` gives it (the controllers' defaults, not the test
    app's shorter answers), its own empty store, on the shared engine."""
    from ui.app import build_app, launch_options

    root = tmp_path_factory.mktemp("fresh")
    settings = AppSettings(model=TINY_MODEL, db=str(root / "budgetlab.duckdb"), models_dir=str(REPO_ROOT / "models"), data_dir=str(root),
                           trained_models_dir=str(root / "trained"), jobs_dir=str(root / "jobs"), scheduler_db=str(root / "scheduler.sqlite"),
                           export_dir=str(root / "exports"))
    with open_app(settings, env={}, engine=engine, jobs=True) as opened:
        demo = build_app(opened.service, opened.jobs, export_dir=Path(settings.export_dir))
        demo.queue(default_concurrency_limit=16)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
        yield f"http://127.0.0.1:{port}/"
        demo.close()


def test_the_default_comparison_of_a_fresh_app_follows_n_and_is_right(fresh_app_url):
    """What the first comparison must show a newcomer (issue 30): the default question, budgets and
    controllers, seed 0: every card right, and each l1_exact card's length within 10% of its N."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(fresh_app_url, wait_until="load")
        page.locator("#bl-engine-status").get_by_text("l1-tiny ready").first.wait_for(timeout=60_000)
        page.locator("#bl-seed textarea, #bl-seed input").first.fill("0")
        page.locator("#bl-run").click()
        cards = page.locator(".bl-card")
        cards.first.wait_for(timeout=60_000)
        page.wait_for_function("document.querySelectorAll('.bl-card').length > 0 && [...document.querySelectorAll('.bl-card')].every(c => c.dataset.phase === 'done' || c.dataset.phase === 'error')", timeout=120_000)
        facts = cards.evaluate_all("cs => cs.map(c => [c.dataset.controller, +c.dataset.budget, +c.dataset.totalTokens, c.dataset.correct, c.dataset.phase])")
        assert sorted({(c, b) for c, b, *_ in facts}) == sorted((c, b) for c in ("hard_cap", "l1_exact", "s1") for b in (128, 256, 384)), facts
        assert all(phase == "done" and correct == "true" for *_, correct, phase in facts), facts
        assert all(abs(total - budget) <= 0.1 * budget for controller, budget, total, *_ in facts if controller == "l1_exact"), facts
        page.wait_for_function("document.querySelector('#bl-compare-status').innerText.includes('generations')", timeout=30_000)
        docs = REPO_ROOT / "docs"
        docs.mkdir(exist_ok=True)
        page.screenshot(path=str(docs / "compare.png"), full_page=True)  # the form and the cards under it
        browser.close()


def test_comparison_renders_in_chromium_and_its_link_reopens_it_from_the_store(app_url, authed_url, store, engine, tiny_spec):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url, wait_until="load")
        page.locator("#bl-engine-status").get_by_text("l1-tiny ready").first.wait_for(timeout=60_000)
        page.locator("#bl-run").click()
        cards = page.locator(".bl-card")
        cards.first.wait_for(timeout=60_000)
        page.wait_for_function("document.querySelectorAll('.bl-card').length > 0 && [...document.querySelectorAll('.bl-card')].every(c => c.dataset.phase === 'done' || c.dataset.phase === 'error')", timeout=120_000)
        phases = cards.evaluate_all("cs => cs.map(c => [c.dataset.controller, c.dataset.budget, c.dataset.phase])")
        assert len(phases) == 9  # 3 default controllers x 3 default budgets
        errors = page.locator(".bl-error").all_inner_texts()
        assert all(phase == "done" for _, _, phase in phases), (phases, errors)
        # The final status line is the stream's last update and can land after the cards'.
        page.wait_for_function("document.querySelector('#bl-compare-status').innerText.includes('generations')", timeout=30_000)
        status = page.locator("#bl-compare-status").inner_text()
        assert "9 generations" in status
        text = page.locator("#bl-cards").inner_text()
        assert "thinking" in text and "tokens" in text
        # The comparison's link, opened in a new browser context: the same cards, from the store alone.
        link_box = page.locator("#bl-share-link textarea, #bl-share-link input").first
        page.wait_for_function("(el) => el.value.includes('?run=compare-')", arg=link_box.element_handle(), timeout=30_000)
        link = link_box.input_value()
        shown = cards.evaluate_all(CARD_FACTS_JS)
        before = engine_requests(engine, tiny_spec)
        other = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        other.goto(link, wait_until="load")
        other.wait_for_function("document.querySelectorAll('.bl-card').length === 9", timeout=60_000)
        assert other.locator(".bl-card").evaluate_all(CARD_FACTS_JS) == shown
        assert "reopened read-only from the store" in other.locator("#bl-compare-status").inner_text()
        assert engine_requests(engine, tiny_spec) == before  # nothing was generated for it
        # behind --auth: the link leads to the login form, and after it to the same cards
        guarded = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        guarded.goto(link.replace(app_url, authed_url), wait_until="load")
        guarded.locator("input[type=password]").wait_for(timeout=30_000)
        guarded.locator("input").first.fill("viewer")
        guarded.locator("input[type=password]").fill("s3cret")
        guarded.get_by_role("button", name="Login").click()
        guarded.wait_for_function("document.querySelectorAll('.bl-card').length === 9", timeout=60_000)
        assert guarded.locator(".bl-card").evaluate_all(CARD_FACTS_JS) == shown
        browser.close()


@pytest.fixture()
def authed_url(service, training_jobs, app_settings):
    """The same dashboard as app_url, served a second time behind --auth viewer:s3cret."""
    from pathlib import Path

    from tests.conftest import free_port
    from ui.app import build_app, launch_options

    demo = build_app(service, training_jobs, export_dir=Path(app_settings.export_dir))
    demo.queue(default_concurrency_limit=4)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, auth=("viewer", "s3cret"), **launch_options())
    yield f"http://127.0.0.1:{port}/"
    demo.close()


# What a card shows that a reopened one must show alike: its column, counts, grade, answer and thinking text.
CARD_FACTS_JS = """cs => cs.map(c => [c.dataset.model, c.dataset.controller, c.dataset.budget, c.dataset.phase,
  c.querySelector('.bl-stats').innerText.replace(/ · (TTFT|latency|cost) [^·]*/g, ''), (c.querySelector('h4') || {}).innerText,
  (c.querySelector('.bl-answer') || {}).innerText, c.querySelector('.bl-think').innerText])"""


def engine_requests(engine, spec) -> tuple[float, float]:
    """The engine's own counters of finished requests and prompt tokens (its Prometheus metrics)."""
    import httpx

    endpoint = engine.ensure(spec, 60)
    text = httpx.get(f"{endpoint.base_url}/metrics", headers={"Authorization": f"Bearer {endpoint.api_key}"}, timeout=30).text
    def total(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " "))
    return total("vllm:request_success_total"), total("vllm:prompt_tokens_total")


def test_sweep_tab_shows_progress_then_results(app_url, store):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url, wait_until="load")
        page.get_by_role("tab", name="Sweep").click()
        page.locator("#bl-sweep-limit input").fill("3")
        page.locator("#bl-sweep-run input, #bl-sweep-run textarea").first.fill("browser-sweep")
        page.locator("#bl-sweep-start").click()
        page.wait_for_function("document.querySelector('#bl-sweep-state') && document.querySelector('#bl-sweep-state').dataset.state === 'running'", timeout=60_000)
        page.wait_for_function("document.querySelector('#bl-sweep-state').dataset.state === 'done'", timeout=300_000)
        state = page.locator("#bl-sweep-state")
        assert state.get_attribute("data-complete") == state.get_attribute("data-total") == "27"  # 3 questions x 3 controllers x 3 budgets
        # The results table is a separate component: its update can land after the state's.
        page.wait_for_function("document.querySelector('#bl-sweep-results').innerText.includes('l1_exact')", timeout=30_000)
        table = page.locator("#bl-sweep-results").inner_text()
        for controller in ("l1_exact", "l1_max", "s1"):
            assert controller in table
        assert "browser-sweep" in page.locator("#bl-sweep-note").inner_text()
        docs = REPO_ROOT / "docs"
        docs.mkdir(exist_ok=True)
        page.screenshot(path=str(docs / "sweep.png"), full_page=True)
        browser.close()
    with store.reader() as cur:
        from store import queries

        assert queries.count_generations(cur, "browser-sweep") == 27


def test_the_equal_tokens_preset_ends_in_the_equal_token_view(app_url, store):
    """The Sweep tab's preset (sequential vs parallel at equal tokens), run on 3 questions, then the
    Analytics tab opened on its run with sequential and parallel lines on one token axis."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url, wait_until="load")
        page.get_by_role("tab", name="Sweep").click()
        page.locator("#bl-sweep-preset").click()
        page.wait_for_function("document.querySelector('#bl-sweep-run input, #bl-sweep-run textarea').value.startsWith('equal-tokens-')", timeout=30_000)
        run = page.locator("#bl-sweep-run input, #bl-sweep-run textarea").first.input_value()
        checked = page.locator("#bl-sweep-controllers input:checked").evaluate_all("xs => xs.map(x => x.closest('label').innerText.trim())")
        assert {"l1_exact", "maj4:l1_exact", "maj4:no_thinking", "s1", "early_exit", "thinking_cap"} <= set(checked), checked
        page.locator("#bl-sweep-limit input").fill("3")  # the preset's 20 questions, cut down for the test
        page.locator("#bl-sweep-start").click()
        page.wait_for_function("document.querySelector('#bl-an-series') && document.querySelector('#bl-an-series').innerText.includes('parallel')", timeout=400_000)
        assert page.get_by_role("tab", name="Analytics").get_attribute("aria-selected") == "true"
        series = page.locator("#bl-an-series").inner_text()
        assert "maj4:l1_exact: parallel" in series and "l1_exact: sequential" in series, series
        page.wait_for_function("document.querySelector('#bl-an-tradeoff canvas, #bl-an-tradeoff svg') !== null", timeout=30_000)
        assert run in page.locator("#bl-an-runs").inner_text()
        page.locator("#bl-an-tradeoff").scroll_into_view_if_needed()
        page.screenshot(path=str(REPO_ROOT / "docs" / "equal-tokens.png"), full_page=False)
        browser.close()
    with store.reader() as cur:
        stored, budgets = cur.execute("SELECT count(DISTINCT coalesce(group_id, gen_id)), count(DISTINCT budget) FROM generations WHERE run_id = ?", [run]).fetchall()[0]
    assert budgets == 3 and stored == 3 * 6 * 3  # 3 questions x 6 methods x 3 budgets (low, middle, high), each answer stored once


ALL_CARDS_SETTLED = ("() => document.querySelectorAll('.bl-card').length > 0 && "
                     "[...document.querySelectorAll('.bl-card')].every(c => c.dataset.phase === 'done' || c.dataset.phase === 'error')")


def test_a_viewer_opening_another_model_does_not_disturb_a_comparison_streaming_on_the_first(app_url, service, engine):
    """Two sessions (issue 31): A streams a comparison on l1-tiny while B opens one on tiny-r1-base,
    whose engine is not running. B's engine starts next to A's (the pool): A's cards all finish,
    none failed, its engine neither stopped nor restarted; B's cards stream once its engine is up;
    afterwards the status line shows both engines ready."""
    from playwright.sync_api import sync_playwright

    service.engines.stop_model("tiny-r1-base")  # earlier tests may have started it: B must start it
    assert service.engines.engine_of("tiny-r1-base") is None
    pid, restarts = engine.pid(), engine.status().restarts
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        a, b = browser.new_context().new_page(), browser.new_context().new_page()  # two sessions, as two viewers' browsers
        for page in (a, b):
            page.goto(app_url, wait_until="load")
            page.locator("#bl-engine-status").get_by_text("l1-tiny ready").first.wait_for(timeout=60_000)
        a.locator("#bl-seed textarea, #bl-seed input").first.fill("3")
        a.locator("#bl-run").click()
        a.locator(".bl-card").first.wait_for(timeout=60_000)  # A is streaming

        model = b.locator("#bl-model input").first
        model.fill("tiny-r1-base")
        model.press("Enter")
        b.locator("#bl-seed textarea, #bl-seed input").first.fill("3")
        b.locator("#bl-run").click()
        b.wait_for_function("document.querySelector('#bl-compare-status').innerText.includes('waiting for tiny-r1-base')", timeout=30_000)

        a.wait_for_function(ALL_CARDS_SETTLED, timeout=240_000)
        facts = a.locator(".bl-card").evaluate_all("cs => cs.map(c => [c.dataset.model, c.dataset.phase])")
        assert facts and all(m == "l1-tiny" and phase == "done" for m, phase in facts), facts
        b.wait_for_function(ALL_CARDS_SETTLED, timeout=300_000)
        facts = b.locator(".bl-card").evaluate_all("cs => cs.map(c => [c.dataset.model, c.dataset.phase])")
        assert facts and all(m == "tiny-r1-base" and phase == "done" for m, phase in facts), facts
        assert (engine.pid(), engine.status().restarts) == (pid, restarts)  # A's engine was never stopped or restarted

        status = a.locator("#bl-engine-status")
        status.get_by_text("tiny-r1-base ready").first.wait_for(timeout=10_000)
        assert "l1-tiny ready" in status.inner_text()
        browser.close()


def test_a_question_typed_over_an_example_is_not_graded_against_the_examples_gold(app_url, store):
    """Pick a built-in example (its gold fills in), then type another question: the example's name and
    gold are cleared, so no card is graded against the old gold; the new question is stored without one."""
    from playwright.sync_api import sync_playwright

    from backend.service.examples import builtin_examples

    second = builtin_examples()[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url, wait_until="load")
        page.locator("#bl-engine-status").get_by_text("l1-tiny ready").first.wait_for(timeout=60_000)
        example = page.locator("#bl-example input").first
        example.click()
        page.get_by_role("option", name=second.label).click()
        gold = page.locator("#bl-gold textarea, #bl-gold input").first
        page.wait_for_function(f"document.querySelector('#bl-gold textarea, #bl-gold input').value === {second.gold!r}", timeout=10_000)
        question = page.locator("#bl-question textarea").first
        question.fill("")
        question.type("Compute 2 + 2.")
        page.wait_for_function("document.querySelector('#bl-gold textarea, #bl-gold input').value === ''", timeout=10_000)
        assert example.input_value() == "" and gold.input_value() == ""
        page.locator("#bl-run").click()
        page.wait_for_function(ALL_CARDS_SETTLED, timeout=120_000)
        facts = page.locator(".bl-card").evaluate_all("cs => cs.map(c => [c.dataset.phase, c.dataset.correct])")
        assert facts and all(phase == "done" and correct == "" for phase, correct in facts), facts  # not graded: no gold
        page.wait_for_function("document.querySelector('#bl-compare-status').innerText.includes('run compare-')", timeout=30_000)
        run_id = page.locator("#bl-compare-status").inner_text().split("run ")[-1].split()[0].strip(".")
        browser.close()
    with store.reader() as cur:
        from store import queries

        rows = queries.get_generations(cur, run_id)
    assert rows and {(r["question"], r["gold"]) for r in rows} == {("Compute 2 + 2.", None)}
