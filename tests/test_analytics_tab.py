"""The Analytics tab for real: a small sweep through the app, the filtered generations exported through
gradio_client and read back, then headless Chromium opening the tab and finding every chart drawn."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from gradio_client import Client

from backend.settings import REPO_ROOT
from tests.test_browser import ARGS, CHROMIUM

pytestmark = pytest.mark.engine

RUN = "analytics-sweep"


@pytest.fixture(scope="module")
def swept(app_url):
    client = Client(app_url, verbose=False)
    client.predict(["l1-tiny"], "arith", ["l1_exact", "s1"], [32, 64], 2, 1, 5, RUN, api_name="/sweep")
    return client


def test_export_through_the_api_holds_exactly_the_filtered_rows(swept, store):
    path = swept.predict([], ["s1"], [], [RUN], None, None, api_name="/export_parquet")
    table = pq.read_table(path)
    assert table.num_rows == 4  # 2 questions x 2 budgets of s1
    assert set(table.column("run_id").to_pylist()) == {RUN} and set(table.column("controller").to_pylist()) == {"s1"}
    with pytest.raises(Exception, match="the minimum is above the maximum"):
        swept.predict([], [], [], [RUN], 64, 32, api_name="/export_csv")


def open_analytics(p, url: str):
    """Chromium on the dashboard's Analytics tab, once its views are drawn: (browser, page)."""
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.goto(url, wait_until="load")
    page.get_by_role("tab", name="Analytics").click()
    page.wait_for_function("document.querySelector('#bl-an-status').innerText.includes('generations in')", timeout=60_000)
    return browser, page


@pytest.mark.browser
def test_the_analytics_tab_draws_every_view(swept):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Under this run's filter (a shared link): the shared store holds other tests' runs, larger ones among them.
        browser, page = open_analytics(p, f"{swept.src}?view=analytics&runs={RUN}")
        for view in ("tradeoff", "cost", "adherence", "thinking", "votes", "settling", "keywords"):
            page.wait_for_function(f"document.querySelector('#bl-an-{view} canvas, #bl-an-{view} svg') !== null", timeout=30_000)
        # This sweep holds 2 answers per setting, under the recommender's minimum of 30: it says so instead of recommending.
        assert page.locator("#bl-an-recommendation").inner_text().startswith("Not enough answers to recommend a setting: the most any setting has is 2,")
        # The table is its own component: its update can land after the status line's; and it draws
        # its rows only once scrolled into view.
        page.locator("#bl-an-aggregates").scroll_into_view_if_needed()
        page.wait_for_function("document.querySelector('#bl-an-aggregates').innerText.includes('l1_exact')", timeout=30_000)
        table = page.locator("#bl-an-aggregates").inner_text()
        assert "l1_exact" in table and "s1" in table
        page.screenshot(path=str(REPO_ROOT / "docs" / "analytics.png"), full_page=True)
        # One generation, opened from the list under the filters.
        page.locator("#bl-an-generations").scroll_into_view_if_needed()
        # The newest 50 of the shared store: other tests' runs may be newer than this one's.
        page.wait_for_function("document.querySelector('#bl-an-generations').innerText.includes('l1-tiny')", timeout=30_000)
        page.locator("#bl-an-generations").get_by_text("l1-tiny", exact=True).locator("visible=true").first.click()  # hidden copies size the table
        page.wait_for_function("document.querySelector('#bl-an-opened').innerText.includes('Question')", timeout=30_000)
        assert "Output" in page.locator("#bl-an-opened").inner_text()
        browser.close()


@pytest.mark.browser
def test_a_link_to_a_filtered_view_reopens_it(swept):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = open_analytics(p, swept.src)
        page.locator("#bl-an-runs input").fill(RUN)
        page.keyboard.press("Enter")
        page.locator("#bl-an-controllers input").fill("s1")
        page.keyboard.press("Enter")
        page.locator("#bl-an-refresh").click()
        box = page.locator("#bl-an-share-link textarea, #bl-an-share-link input").first
        page.wait_for_function("(el) => el.value.includes('controllers=s1')", arg=box.element_handle(), timeout=30_000)
        link = box.input_value()
        assert f"runs={RUN}" in link and "view=analytics" in link
        page.wait_for_function("document.querySelector('#bl-an-status').innerText.startsWith('4 generations')", timeout=30_000)
        other = browser.new_context(viewport={"width": 1500, "height": 1300}).new_page()
        other.goto(link, wait_until="load")
        # the Analytics tab opens by itself, under the link's filters: 2 questions x 2 budgets of s1
        other.wait_for_function("document.querySelector('#bl-an-status') && document.querySelector('#bl-an-status').innerText.startsWith('4 generations')",
                                timeout=60_000)
        assert RUN in other.locator("#bl-an-runs").inner_text() and "s1" in other.locator("#bl-an-controllers").inner_text()
        browser.close()
