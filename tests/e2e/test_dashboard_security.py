"""The dashboard keeps the token out of every URL, in real Chromium, against a backend whose reads need it.

Every request the browser makes is recorded (pages, fetches, the event stream, downloads).
The user signs in the two ways there are: the link `flowerbed up` prints (a one-time login
code) and pasting the API token. Reads need authentication here (compose's setting), so the
live event stream and the checkpoint download only work because the session cookie carries
them; deleting a run from the page shows mutations pass the CSRF check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backend_fixture import QUICK_RUN, BackendProcess, spawn_backend
from dashboard_pages import RUN_TIMEOUT_MS, api, assert_signed_in_with_a_session, chromium_browser, login_link, shot  # noqa: F401
from playwright.sync_api import Browser, BrowserContext, Page, expect

from flowerbed.local import launcher

pytestmark = pytest.mark.federation


@pytest.fixture(scope="module")
def guarded(api_federation: launcher.Federation, tmp_path_factory) -> Iterator[BackendProcess]:
    env = {"FLOWERBED_REQUIRE_TOKEN_FOR_READS": "true"}
    process = spawn_backend(tmp_path_factory.mktemp("guarded-backend"), api_federation.superlink_url, env=env)
    yield process
    process.stop()


class Recorder:
    """Every request and response of a browser context, and uncaught page errors."""

    def __init__(self, context: BrowserContext) -> None:
        self.urls: list[str] = []
        self.responses: list[tuple[str, int]] = []
        self.errors: list[str] = []
        context.on("request", lambda request: self.urls.append(request.url))
        context.on("response", lambda response: self.responses.append((response.url, response.status)))
        context.on("page", lambda page: page.on("pageerror", lambda error: self.errors.append(str(error))))

    def status_of(self, suffix: str) -> list[int]:
        return [status for url, status in self.responses if url.split("?")[0].endswith(suffix)]


@pytest.fixture
def recorded(browser: Browser) -> Iterator[tuple[Page, Recorder]]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    recorder = Recorder(context)
    page = context.new_page()
    yield page, recorder
    context.close()
    assert not recorder.errors, recorder.errors


def _assert_no_secret_in(recorder: Recorder, *secrets: str) -> None:
    assert recorder.urls, "nothing was recorded"
    for url in recorder.urls:
        for secret in secrets:
            assert secret not in url, f"a secret in a requested URL: {url}"
        assert "token=" not in url and "login=" not in url.split("#")[0], url


def test_signed_in_by_the_printed_link_the_token_is_in_no_request_url(guarded: BackendProcess, recorded: Any) -> None:
    page, recorder = recorded
    base, token = guarded.base_url, guarded.token
    status, run = api(base, token, "POST", "/training/start", {**QUICK_RUN, "num_rounds": 2})
    assert status == 202, run
    run_id = run["run_id"]

    link = login_link(base, token)
    code = link.split("#login=", 1)[1]
    page.goto(link)
    assert_signed_in_with_a_session(page)
    assert "login=" not in page.url

    # The run, live: the event stream is authenticated by the cookie alone.
    page.goto(f"{base}/#/runs/{run_id}")
    expect(page.locator("[data-testid=run-status][data-status=completed]")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(page.get_by_test_id("round-row-2")).to_be_visible()
    assert 200 in recorder.status_of(f"/training/{run_id}/events"), recorder.responses
    shot(page, "20-guarded-run")

    # A checkpoint download, by a plain link: the cookie again, and the bytes are the recorded ones.
    status, models = api(base, token, "GET", f"/models?run_id={run_id}")
    newest = max(models["items"], key=lambda m: m["round"])
    with page.expect_download() as download_info:
        page.locator(f"a[href$='/models/{newest['model_id']}/download']").first.click()
    download = download_info.value
    assert download.failure() is None and not any(secret in download.url for secret in (token, "token="))
    assert hashlib.sha256(Path(download.path()).read_bytes()).hexdigest() == newest["sha256"]  # not a 401 body

    for view in ("#/runs", "#/models", "#/nodes", "#/start"):
        page.goto(f"{base}/{view}")
        expect(page.get_by_test_id("nav-start")).to_be_visible()
        page.wait_for_load_state("networkidle")
    expect(page.get_by_test_id("token-modal")).to_have_count(0)  # never asked: the session was enough

    # Delete the run from its page: a mutating request, with the session's CSRF token.
    page.goto(f"{base}/#/runs/{run_id}")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("delete-button").click()
    page.wait_for_url(f"{base}/#/runs", timeout=30_000)
    assert api(base, token, "GET", f"/training/{run_id}")[0] == 404

    _assert_no_secret_in(recorder, token, code)
    assert not [u for u in recorder.urls if "/auth/session" in u and "?" in u]


def test_signed_in_by_pasting_the_token_it_is_sent_once_in_a_header(guarded: BackendProcess, recorded: Any) -> None:
    page, recorder = recorded
    base, token = guarded.base_url, guarded.token
    sent_with_token: list[str] = []
    page.on("request", lambda r: sent_with_token.append(r.url) if token in (r.headers.get("authorization") or "") else None)

    page.goto(f"{base}/#/runs")  # reads need authentication: the first read asks for the token
    expect(page.get_by_test_id("token-modal")).to_be_visible()
    page.get_by_test_id("token-input").fill("not-the-token-" + token[:8])
    page.get_by_test_id("token-save").click()
    expect(page.get_by_test_id("token-error")).to_be_visible()  # rejected, still asking
    page.get_by_test_id("token-input").fill(token)
    page.get_by_test_id("token-save").click()
    expect(page.get_by_test_id("token-modal")).to_have_count(0)
    assert_signed_in_with_a_session(page)
    expect(page.get_by_test_id("nav-runs")).to_be_visible()
    page.goto(f"{base}/#/nodes")
    page.wait_for_load_state("networkidle")

    assert sent_with_token == [f"{base}/auth/session"]  # once, in a header, to open the session
    _assert_no_secret_in(recorder, token)
