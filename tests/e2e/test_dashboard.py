"""The dashboard in a real browser against the real backend and a real 3-node federation.

Drives what a user does: open the link `flowerbed up` prints (a one-time login code), start a 2-round run from
the form and watch it finish live, stop a second run, submit an invalid value and read the server's reason beside
the field. Screenshots of each step go to test-artifacts/ (gitignored); the completed run view also to
docs/dashboard.png on request.

Runs on its own 3-node federation and backend (the shared API fixture has 2 nodes), through the backend
fixture's own `spawn_backend`, so the interface stays `(base_url, token, federation, data_dir)`.
Needs `make web` (services/web/dist) and Debian's Chromium at /usr/bin/chromium; never downloads a browser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import dashboard_pages as ui
import pytest
from backend_fixture import Backend, spawn_backend
from conftest import env_extra, free_port, free_ports
from dashboard_pages import chromium_browser, dashboard_page  # noqa: F401 (fixtures)
from playwright.sync_api import Page, expect

from flowerbed.local import launcher
from flowerbed.local.topology import Ports

ROOT = Path(__file__).resolve().parents[2]
# The README's screenshot is refreshed only on request, so a test run leaves the checkout clean:
# FLOWERBED_UPDATE_README_SHOT=1 .venv/bin/python -m pytest tests/e2e/test_dashboard.py
UPDATE_README_SHOT = os.environ.get("FLOWERBED_UPDATE_README_SHOT") == "1"
README_SHOT = ROOT / "docs" / "dashboard.png" if UPDATE_README_SHOT else ui.ARTIFACTS / "dashboard.png"


def as_percent(value: float) -> str:
    """Python twin of the dashboard's `formatAccuracy`: JS `(v * 100).toFixed(2)` rounds exact ties up."""
    exact = Decimal(value * 100)  # the same binary double JS formats
    return f"{exact.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}%"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """This module's backend on a real 3-node federation; overrides the shared 2-node `backend` here only."""
    directory = tmp_path_factory.mktemp("dashboard-federation")
    federation = launcher.start(directory, 3, Ports(superlink=free_port(), supernode_base=free_ports(3)), extra_env=env_extra())
    try:
        process = spawn_backend(directory, federation.superlink_url)
        try:
            yield Backend(process.base_url, process.token, federation, directory)
        finally:
            process.stop()
    finally:
        launcher.stop(federation)


def fill_start_form(page: Page, rounds: int, nodes: int) -> None:
    page.get_by_test_id("nav-start").click()
    expect(page.get_by_test_id("start-form")).to_be_visible()
    page.get_by_test_id("field-num_rounds").fill(str(rounds))
    page.get_by_test_id("field-max_train_examples").fill("500")
    page.get_by_test_id("field-min_available_nodes").fill(str(nodes))  # every node connected before round 1


def test_start_run_from_the_form_and_watch_it_complete(backend: Any, page: Page) -> None:
    base_url, token, federation, _data_dir = backend
    ui.open_dashboard(page, base_url, token)
    ui.shot(page, "01-home")

    fill_start_form(page, rounds=2, nodes=federation.num_nodes)
    ui.shot(page, "02-start-form")
    run_id = ui.submit_and_open_run(page)
    expect(page.get_by_test_id("run-status")).to_be_visible()
    ui.shot(page, "03-run-started")

    expect(page.get_by_test_id("round-row-1")).to_be_visible(timeout=ui.RUN_TIMEOUT_MS)
    ui.shot(page, "04-round-1")
    expect(page.locator("[data-testid=run-status][data-status=completed]")).to_be_visible(timeout=ui.RUN_TIMEOUT_MS)

    # Both rounds in the chart (uPlot draws on a canvas; its host lists the plotted rounds) and in the table.
    chart = page.get_by_test_id("metrics-chart")
    expect(chart.locator("canvas")).to_be_visible()
    expect(chart).to_have_attribute("data-rounds", "1,2")
    expect(page.get_by_test_id("round-row-1")).to_be_visible()
    expect(page.get_by_test_id("round-row-2")).to_be_visible()
    expect(page.get_by_test_id("run-status")).to_have_text("Completed")
    expect(page.get_by_test_id("run-progress")).to_have_text("2/2")
    expect(page.get_by_test_id("clients-card").get_by_test_id("client-row").first).to_be_visible()

    run = ui.wait_for_api_status(base_url, token, run_id, "completed")
    assert run["accuracy"] is not None, f"a completed run without accuracy: {run}"
    expect(page.get_by_test_id("run-accuracy")).to_have_text(as_percent(run["accuracy"]))
    expect(page.get_by_test_id("live-line")).to_contain_text("Completed at", timeout=30_000)  # re-fetched from the API
    expect(page.get_by_test_id("run-accuracy")).to_have_text(as_percent(run["accuracy"]))
    ui.shot(page, "05-completed")

    # What each node that trained holds: its partition's size and label histogram, in the API and on the page.
    described = run["node_data"]["nodes"]
    trained = {c["node_id"] for r in run["rounds"] for c in r["clients"]}
    assert {n["node_id"] for n in described} == trained, (described, trained)
    assert all(len(n["classes"]) == 10 and sum(n["classes"].values()) == n["examples"] > 0 for n in described), described
    histograms = page.get_by_test_id("node-data-card").get_by_test_id("label-histogram")
    expect(histograms).to_have_count(len(described))
    expect(histograms.first.locator(".histogram-row")).to_have_count(10)

    page.evaluate("window.scrollTo(0, 0)")
    page.mouse.move(0, 0)
    README_SHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(README_SHOT), full_page=False)
    assert README_SHOT.stat().st_size < 300_000, f"{README_SHOT} is {README_SHOT.stat().st_size} bytes"

    # The run is in the history, with the same accuracy.
    page.get_by_test_id("nav-runs").click()
    row = page.locator(f"[data-testid=run-row][data-run-id='{run_id}']")
    expect(row).to_contain_text(as_percent(run["accuracy"]))
    expect(row.get_by_test_id("status-badge")).to_have_text("Completed")
    ui.shot(page, "06-runs")


def test_stop_a_run_from_the_ui(backend: Any, page: Page) -> None:
    base_url, token, federation, _data_dir = backend
    ui.open_dashboard(page, base_url, token)
    fill_start_form(page, rounds=50, nodes=federation.num_nodes)
    run_id = ui.submit_and_open_run(page)
    expect(page.locator("[data-testid=run-status][data-status=running]")).to_be_visible(timeout=ui.RUN_TIMEOUT_MS)
    ui.shot(page, "07-running")

    page.get_by_test_id("stop-button").click()
    expect(page.get_by_test_id("stop-modal")).to_be_visible()
    ui.shot(page, "08-stop-confirm", full_page=False)
    page.get_by_test_id("stop-confirm").click()
    expect(page.locator("[data-testid=run-status][data-status=stopped]")).to_be_visible(timeout=ui.RUN_TIMEOUT_MS)
    expect(page.get_by_test_id("stop-button")).to_have_count(0)
    ui.shot(page, "09-stopped")
    ui.wait_for_api_status(base_url, token, run_id, "stopped")

    # History: filter by status, then overlay two runs' accuracy curves when there are two.
    page.get_by_test_id("nav-runs").click()
    page.get_by_test_id("status-filter").select_option("stopped")
    expect(page.locator(f"[data-testid=run-row][data-run-id='{run_id}']")).to_be_visible()
    for badge in page.get_by_test_id("status-badge").all():
        expect(badge).to_have_text("Stopped")
    page.get_by_test_id("status-filter").select_option("")
    expect(page.get_by_test_id("run-row").first).to_be_visible()
    boxes = page.get_by_test_id("run-select")
    if boxes.count() >= 2:
        boxes.nth(0).check()
        boxes.nth(1).check()
        page.get_by_test_id("compare-button").click()
        expect(page.get_by_test_id("compare-chart").locator("canvas")).to_be_visible()
        expect(page.get_by_test_id("compare-chart")).to_have_attribute("data-series", "2")
        ui.shot(page, "10-compare")


def test_server_validation_message_appears_next_to_the_field(backend: Any, page: Page) -> None:
    """Without a session the 401 asks for the token (modal), the retry gets the 422, shown beside `alpha`."""
    base_url, token, _federation, _data_dir = backend
    # The server's own words for this mistake, to compare with what the form shows.
    status, answer = ui.api(base_url, token, "POST", "/training/start", {"alpha": -1})
    assert status == 422, answer
    expected = next(d["msg"] for d in answer["detail"] if d["loc"][-1] == "alpha")

    page.goto(f"{base_url}/#/start")  # no login code and a fresh browser context: no session yet
    expect(page.get_by_test_id("token-button")).to_have_text("Set token")
    page.get_by_test_id("field-partitioner").select_option("dirichlet")  # alpha matters (and shows) only then
    alpha = page.get_by_test_id("field-alpha")
    expect(alpha).to_be_visible()
    alpha.evaluate("el => { el.removeAttribute('min'); el.removeAttribute('max'); }")  # bypass the browser's check
    alpha.fill("-1")
    page.get_by_test_id("start-submit").click()

    expect(page.get_by_test_id("token-modal")).to_be_visible()
    ui.shot(page, "11-token-prompt", full_page=False)
    page.get_by_test_id("token-input").fill(token)
    page.get_by_test_id("token-save").click()
    expect(page.get_by_test_id("token-modal")).to_have_count(0)
    ui.assert_signed_in_with_a_session(page)  # the pasted token was traded for a session, not stored

    error = page.get_by_test_id("error-alpha")
    expect(error).to_be_visible()
    expect(error).to_contain_text(expected)
    expect(alpha).to_have_attribute("aria-invalid", "true")
    # Next to the field: inside the alpha field's own block, right under its input.
    expect(page.locator("[data-field=alpha]").get_by_test_id("error-alpha")).to_have_count(1)
    expect(page.get_by_test_id("form-errors")).to_contain_text(expected)
    assert "#/start" in page.url  # no run was started
    ui.shot(page, "12-validation", full_page=False)


def test_nodes_view_lists_the_federation(backend: Any, page: Page) -> None:
    base_url, token, federation, _data_dir = backend
    ui.open_dashboard(page, base_url, token, "#/nodes")
    expect(page.get_by_test_id("nodes-table")).to_be_visible()
    # Refreshed every 5 s: every SuperNode of the federation shows up online without a reload.
    online = "document.querySelectorAll('[data-testid=node-row] [data-status=online]').length"
    page.wait_for_function(f"{online} >= {federation.num_nodes}", polling=500, timeout=60_000)
    expect(page.get_by_test_id("nodes-summary")).to_contain_text("online")
    ui.shot(page, "13-nodes")


def test_every_training_option_is_in_the_form_and_the_run_view_shows_them(backend: Any, page: Page) -> None:
    """Issue 6: strategy, selection, DP and compression from the form to the run view; bad combinations rejected."""
    base_url, token, federation, _data_dir = backend
    status, schema = ui.api(base_url, token, "GET", "/training/schema")
    assert status == 200
    ui.open_dashboard(page, base_url, token)
    fill_start_form(page, rounds=2, nodes=federation.num_nodes)
    for name in schema["properties"]:  # every API field, read from the live schema: the two cannot drift
        expect(page.get_by_test_id(f"field-{name}")).to_have_count(1)
    strategies = page.get_by_test_id("field-strategy").locator("option").all_inner_texts()
    assert {"fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum"} <= {
        s.strip().lower() for s in strategies
    }, strategies

    # A combination the platform refuses: local DP with compression → the server's reason beside `compression`.
    page.get_by_test_id("field-dp").select_option("local")
    page.get_by_test_id("field-compression").select_option("topk")
    page.get_by_test_id("start-submit").click()
    expect(page.locator("[data-field=compression]").get_by_test_id("error-compression")).to_contain_text("cannot be combined")
    assert "#/start" in page.url
    ui.shot(page, "14-invalid-combination", full_page=False)

    page.get_by_test_id("field-compression").select_option("none")
    page.get_by_test_id("field-dp").select_option("central")
    # Noise std per weight is noise-multiplier × clipping-norm / clients: at the defaults (1 × 10 / 2) the model
    # diverges, round 2's updates are non-finite and the run now fails saying so. 0.5 × 0.1 / 2 trains.
    page.get_by_test_id("field-dp_noise_multiplier").fill("0.5")
    page.get_by_test_id("field-dp_clipping_norm").fill("0.1")
    page.get_by_test_id("field-strategy").select_option("fedavgm")
    page.get_by_test_id("field-selection").select_option("performance")
    run_id = ui.submit_and_open_run(page)
    expect(page.locator("[data-testid=run-status][data-status=completed]")).to_be_visible(timeout=ui.RUN_TIMEOUT_MS)
    run = ui.wait_for_api_status(base_url, token, run_id, "completed")
    assert (run["config"]["strategy"], run["config"]["dp"], run["config"]["selection"]) == ("fedavgm", "central", "performance")
    for stored in run["rounds"]:
        row = page.get_by_test_id(f"round-row-{stored['round']}")
        expect(row.get_by_test_id("round-epsilon")).to_have_text(f"{stored['privacy']['epsilon']:.2f}")
        expect(row.get_by_test_id("round-bytes")).to_contain_text(f"{stored['bytes']['sent_compressed'] / 1e6:.2f} MB")
    assert run["rounds"][1]["privacy"]["epsilon"] > run["rounds"][0]["privacy"]["epsilon"] > 0
    # The extra columns fit: the rounds card takes the full row instead of scrolling sideways.
    expect(page.get_by_test_id("rounds-row")).to_have_class(re.compile(r"\bgrid-stacked\b"))
    table = page.get_by_test_id("rounds-table")
    assert table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth + 1"), "rounds table overflows its card"
    expect(page.locator(".chip", has_text="fedavgm")).to_have_count(1)
    for value in ("central", "performance", "fedavgm"):  # the whole configuration is listed
        expect(page.get_by_test_id("config-card")).to_contain_text(value)
    ui.shot(page, "15-algorithm-run")
