"""The duplicates page in Chromium while its job runs: the progress it shows, then the groups."""
import os
import signal
import time

import pytest
from playwright.sync_api import expect

from indexer.builder import build_gallery
from tests.helpers import live_server, make_app
from tests.test_browser import browser, page, shot, sign_up_in_browser  # noqa: F401  (fixtures)
from tests.test_explore import planted

pytestmark = pytest.mark.browser


@pytest.fixture
def planted_app(tmp_path, weights_path):
    root = tmp_path / "planted"
    planted(root)
    build_gallery(str(root / "gallery"), str(root / "index"), weights_path, progress=False)
    app = make_app(root, tmp_path, weights_path)
    with live_server(app) as base:
        yield app, base


def test_the_duplicates_page_shows_progress_while_its_process_works(planted_app, page):  # noqa: F811
    app, base = planted_app
    sign_up_in_browser(page, base + "/auth/signup", "admin@example.com", "administrator password")
    page.goto(base + "/duplicates", wait_until="commit")  # the job starts with the page's first request
    explore = app.extensions["exploration"]
    end = time.monotonic() + 30
    while getattr(explore._jobs.get("edges"), "pid", None) is None and time.monotonic() < end:
        time.sleep(0.001)
    job = explore._jobs["edges"]
    os.kill(job.pid, signal.SIGSTOP)  # held before its first answer: the page must show that it is working
    try:
        expect(page.locator("#dup-progress")).to_be_visible(timeout=10000)
        expect(page.locator("#dup-eta")).to_contain_text("% done")
        expect(page.locator("#dup-summary")).to_contain_text("looking through the gallery")
        assert job.status()["state"] == "computing" and job.status()["elapsed_seconds"] >= 0
        assert page.evaluate("[timeLeft(null), timeLeft(30), timeLeft(200), timeLeft(4000)]") == \
            ["", "less than a minute left", "about 4 min left", "about 1 h 7 min left"]
        assert page.evaluate("timeLeft(null, 3)") == "estimating the time left"
        shot(page, "duplicates-computing")
    finally:
        os.kill(job.pid, signal.SIGCONT)
    expect(page.locator(".dup-group")).to_have_count(2, timeout=60000)
    expect(page.locator("#dup-progress")).to_be_hidden()
    expect(page.locator("#dup-eta")).to_be_hidden()
