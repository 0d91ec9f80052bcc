"""Headless Chromium opens /docs, runs "Try it out" on POST /v1/embeddings, and sees a 200, all offline."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's package; playwright's own browser download cannot work offline
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this network refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def test_try_it_out_embeds_and_stays_on_this_server(browser, minilm_server, output_dir):
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    hosts = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    page.goto(f"{minilm_server.url}/docs")
    operation = page.locator("#operations-embeddings-createEmbedding")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status")
    status.wait_for(timeout=30_000)
    page.screenshot(path=str(output_dir / "docs-try-it-out.png"), full_page=True)
    assert status.inner_text().strip() == "200"
    assert '"embedding"' in operation.locator(".live-responses-table tbody .response-col_description").inner_text()
    assert hosts == {urlsplit(minilm_server.url).netloc}  # no CDN, no validator, nothing but this server
    page.close()
