"""Driving the dashboard in Chromium, for the browser tests: the `browser` fixture and a `page` that fails the
test on an uncaught script error (a module imports chromium_browser and dashboard_page to use them), signing in
the way a user does (the one-time login link `flowerbed up` prints), screenshots into test-artifacts/, and the
API calls the tests check the page against (through the CLI's client).
Needs `make web` (services/web/dist) and Debian's Chromium at /usr/bin/chromium; never downloads a browser.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS
from playwright.sync_api import Browser, Page, expect, sync_playwright

from flowerbed import api_client

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
RUN_TIMEOUT_MS = 240_000


def shot(page: Page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=full_page)


def api(base_url: str, token: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, JSON body or None) of one API request, through the CLI's client."""
    with api_client.connect(base_url, token, timeout=30) as client:
        response = client.request(method, path, json=body)
    return response.status_code, response.json() if response.content else None


def wait_for_api_status(base_url: str, token: str, run_id: str, expected: str, timeout: float = 60.0) -> dict[str, Any]:
    """`GET /training/{id}` once it reports `expected` (the event stream may announce it a moment earlier)."""
    deadline = time.monotonic() + timeout
    while True:
        status, run = api(base_url, token, "GET", f"/training/{run_id}")
        assert status == 200, run
        if run["status"] == expected:
            return run
        assert time.monotonic() < deadline, f"the API still says {run['status']!r}, not {expected!r}, after {timeout:.0f}s: {run}"
        time.sleep(1)


@pytest.fixture(scope="module", name="browser")
def chromium_browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make setup does it as root)"
    dist = ROOT / "services" / "web" / "dist" / "index.html"
    assert dist.exists(), f"the dashboard is not built ({dist} missing): run `make web`"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(name="page")
def dashboard_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the dashboard: {errors}"


def login_link(base_url: str, token: str) -> str:
    """What `flowerbed up` prints: the dashboard with a one-time login code in the fragment."""
    status, body = api(base_url, token, "POST", "/auth/login-codes")
    assert status == 200, body
    return f"{base_url}/#login={body['code']}"


def assert_signed_in_with_a_session(page: Page) -> None:
    """Signed in by an HttpOnly, SameSite=Strict cookie; the token is nowhere the page's scripts can read."""
    expect(page.get_by_test_id("token-button")).to_have_text("Token ✓")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "flowerbed_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert page.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"


def open_dashboard(page: Page, base_url: str, token: str, route: str = "") -> None:
    page.goto(login_link(base_url, token))
    expect(page.get_by_test_id("nav-start")).to_be_visible()
    assert_signed_in_with_a_session(page)
    assert "login=" not in page.url, f"the login code stayed in the address bar: {page.url}"
    if route:
        page.goto(f"{base_url}/{route}")


def submit_and_open_run(page: Page) -> str:
    page.get_by_test_id("start-submit").click()
    page.wait_for_url(re.compile(r"#/runs/[^/?]+$"), timeout=30_000)
    return page.url.rsplit("/", 1)[-1]
