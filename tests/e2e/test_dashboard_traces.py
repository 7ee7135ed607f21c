"""The trace waterfall in a real browser: local-mode backend as the trace collector, a real 2-node federation.

A 1-round run exports its spans to the backend itself (`local_tracing_env`, as in test_tracing.py); the run
view's "View trace" link opens `#/traces/<id>`, whose waterfall must show the request → fl.run → fl.round →
two fl.client.train rows, expand a client to its train.epoch rows and show a client's `fl.node_id` in the
detail panel. Screenshots at 1280×800 and 390×844 go to test-artifacts/traces-*.png.
Needs `make web` and Debian's Chromium (the launch helper and `page` fixture come from test_dashboard.py).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import pytest
from backend_fixture import traced_backend, wait_for
from dashboard_pages import ARTIFACTS, api, chromium_browser, dashboard_page, open_dashboard  # noqa: F401 (fixtures)
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.federation
EXAMPLES = 200


def shot(view: Page, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    view.screenshot(path=str(ARTIFACTS / f"traces-{name}.png"), full_page=full_page)


def rows_named(view: Page, name: str):
    return view.locator(f"[data-testid=span-row][data-name='{name}']")


def test_run_view_links_to_the_trace_waterfall(start_federation, backend_factory, tmp_path, page: Page, browser: Browser) -> None:
    backend = traced_backend(start_federation, backend_factory, tmp_path / "backend")
    base, token = backend.base_url, backend.token
    body = {"num_rounds": 1, "max_train_examples": EXAMPLES, "min_nodes": 2, "min_available_nodes": 2, "fraction_train": 1.0}
    status, started = api(base, token, "POST", "/training/start", body)
    assert status == 202, started
    run_id = started["run_id"]

    def finished() -> dict[str, Any] | None:
        _, run = api(base, token, "GET", f"/training/{run_id}")
        return run if run["status"] in ("completed", "failed", "stopped") else None

    run = wait_for(finished, 600, "the run to finish", interval=1.0)
    assert run["status"] == "completed", run
    trace_id = run["trace_id"]
    assert run["trace_url"] == f"/#/traces/{trace_id}"

    def stored() -> dict[str, Any] | None:
        status, trace = api(base, token, "GET", f"/traces/{trace_id}")
        if status != 200:
            return None
        names = Counter(s["name"] for s in trace["spans"])
        return trace if names["fl.run"] and names["fl.client.train"] == 2 and names["train.epoch"] >= 2 else None

    trace = wait_for(stored, 60, "the backend to store the run's spans")
    spans = trace["spans"]
    node_ids = {str(s["attributes"]["fl.node_id"]) for s in spans if s["name"] == "fl.client.train"}
    assert node_ids == {str(c["node_id"]) for c in run["rounds"][0]["clients"]}

    # Run view: the federated series is plotted next to the centralized one, and the link is there.
    open_dashboard(page, base, token, f"#/runs/{run_id}")
    expect(page.locator("[data-testid=run-status][data-status=completed]")).to_be_visible(timeout=60_000)
    chart = page.get_by_test_id("metrics-chart")
    expect(chart).to_have_attribute("data-rounds", "1")
    expect(chart).to_have_attribute("data-federated", "1")
    expect(page.get_by_test_id("chart-key")).to_contain_text("Centralized (test set)")
    expect(page.get_by_test_id("chart-key")).to_contain_text(
        "Federated (clients' validation, global model before local training)"
    )
    shot(page, "01-run-view")
    link = page.get_by_test_id("trace-link")
    expect(link).to_have_attribute("href", f"#/traces/{trace_id}")
    expect(link).not_to_have_attribute("target", "_blank")
    link.click()
    page.wait_for_url(re.compile(rf"#/traces/{trace_id}$"))

    # The tree, in start order: request → fl.run → fl.round → two clients; epochs and steps collapsed.
    waterfall = page.get_by_test_id("trace-waterfall")
    expect(rows_named(page, "fl.client.train")).to_have_count(2, timeout=30_000)
    expect(rows_named(page, "POST /training/start")).to_have_attribute("data-depth", "0")
    expect(rows_named(page, "fl.run")).to_have_attribute("data-depth", "1")
    expect(rows_named(page, "fl.round")).to_have_attribute("data-depth", "2")
    for i in range(2):
        expect(rows_named(page, "fl.client.train").nth(i)).to_have_attribute("data-depth", "3")
    for name in ("aggregate", "evaluate.centralized", "checkpoint.save"):  # under fl.round (round 0's eval is under fl.run)
        expect(page.locator(f"[data-testid=span-row][data-name='{name}'][data-depth='3']")).to_have_count(1)
    expect(rows_named(page, "train.epoch")).to_have_count(0)
    expect(rows_named(page, "train.step")).to_have_count(0)
    order = waterfall.locator("[data-testid=span-row]").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert (
        order.index("POST /training/start") < order.index("fl.run") < order.index("fl.round") < order.index("fl.client.train")
    ), order
    expect(rows_named(page, "fl.client.train").first.locator(".wf-bar")).to_be_visible()
    shot(page, "02-waterfall-1280")

    # Expand one client: its epochs appear under it (steps stay collapsed under each epoch).
    client = rows_named(page, "fl.client.train").first
    client.get_by_test_id("span-toggle").click()
    expect(rows_named(page, "train.epoch").first).to_be_visible()
    expect(rows_named(page, "train.epoch").first).to_have_attribute("data-depth", "4")
    expect(rows_named(page, "train.step")).to_have_count(0)
    rows_named(page, "train.epoch").first.get_by_test_id("span-toggle").click()
    steps_per_epoch = math.ceil(EXAMPLES / int(run["config"].get("batch_size") or 32))
    expect(rows_named(page, "train.step")).to_have_count(min(steps_per_epoch, 50))

    # Click a client row: its node id (and status) in the detail panel.
    client = rows_named(page, "fl.client.train").first
    span_id = client.get_attribute("data-span-id")
    node_id = next(str(s["attributes"]["fl.node_id"]) for s in spans if s["span_id"] == span_id)
    client.get_by_test_id("span-name").click()
    detail = page.get_by_test_id("span-detail")
    expect(detail.locator("[data-key='fl.node_id']")).to_have_text(node_id)
    expect(detail.get_by_test_id("span-attributes")).to_contain_text("fl.partition_id")
    expect(detail.get_by_test_id("span-status")).to_be_visible()
    expect(client).to_have_attribute("aria-selected", "true")
    shot(page, "03-client-detail-1280")
    shot(page, "04-full-1280", full_page=True)

    # Phone width: the waterfall fits, the detail panel is a bottom sheet.
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        mobile = phone.new_page()
        errors: list[str] = []
        mobile.on("pageerror", lambda error: errors.append(str(error)))
        mobile.goto(f"{base}/#/traces/{trace_id}")  # reads are open in local mode: no sign-in needed
        expect(rows_named(mobile, "fl.client.train")).to_have_count(2, timeout=30_000)
        width = mobile.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the trace page scrolls sideways at phone width ({width}px)"
        shot(mobile, "05-waterfall-390")
        rows_named(mobile, "fl.client.train").nth(1).get_by_test_id("span-name").click()
        node_id_2 = next(
            str(s["attributes"]["fl.node_id"])
            for s in spans
            if s["span_id"] == rows_named(mobile, "fl.client.train").nth(1).get_attribute("data-span-id")
        )
        expect(mobile.get_by_test_id("span-detail").locator("[data-key='fl.node_id']")).to_have_text(node_id_2)
        expect(mobile.get_by_test_id("span-detail")).to_be_in_viewport()
        shot(mobile, "06-detail-390")
        mobile.get_by_test_id("span-detail-close").click()
        expect(mobile.get_by_test_id("span-detail")).to_be_hidden()
        # A trace nothing was stored for: the empty state, not an error.
        mobile.goto(f"{base}/#/traces/{'0' * 32}")
        expect(mobile.get_by_test_id("state-empty")).to_contain_text("No spans stored")
        shot(mobile, "07-missing-390")
        assert not errors, errors
    finally:
        phone.close()
