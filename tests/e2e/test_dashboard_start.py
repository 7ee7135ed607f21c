"""The Start form for people, in a real browser against the real backend and a real 3-node federation.

Only the fields that matter for the chosen strategy, privacy mode, compression, selection and data source are
shown (from the schema's `x-when`, live as the selects change); presets fill the form and start a valid run;
Krum with its defaults runs on the 3 nodes; the duration estimate says there is none before any run and uses the
seconds per round after one; the submit column never covers a field at 1280 px or at 390 px.
Screenshots go to test-artifacts/ (dashboard-start-*.png).
"""

from __future__ import annotations

import statistics
from typing import Any

import dashboard_pages
import pytest
import test_dashboard as dashboard
from dashboard_pages import RUN_TIMEOUT_MS, api, open_dashboard, shot, submit_and_open_run, wait_for_api_status
from playwright.sync_api import Page, expect

# The dashboard module's fixtures: its 3-node federation and backend, the browser and a page per test.
backend = dashboard.backend
browser = dashboard_pages.chromium_browser
page = dashboard_pages.dashboard_page


def _schema(base_url: str, token: str) -> dict[str, Any]:
    status, schema = api(base_url, token, "GET", "/training/schema")
    assert status == 200, schema
    return schema


def _open_start(page: Page, base_url: str, token: str) -> None:
    open_dashboard(page, base_url, token)
    page.get_by_test_id("nav-start").click()
    expect(page.get_by_test_id("start-form")).to_be_visible()


def _reopen_start(page: Page) -> None:
    """A fresh Start form in the same signed-in page (its defaults again, and recent runs re-read)."""
    page.get_by_test_id("nav-runs").click()
    page.get_by_test_id("nav-start").click()
    expect(page.get_by_test_id("start-form")).to_be_visible()


def _visible_fields(page: Page) -> set[str]:
    return set(
        page.eval_on_selector_all("[data-field]", "els => els.filter(e => e.offsetParent !== null).map(e => e.dataset.field)")
    )


def _expected_fields(schema: dict[str, Any], values: dict[str, str]) -> set[str]:
    """The fields whose `x-when` holds for the selects' values (every field, advanced ones included: the fold is open)."""
    return {
        name
        for name, prop in schema["properties"].items()
        if all(str(values.get(other)) in [str(v) for v in allowed] for other, allowed in prop.get("x-when", {}).items())
    }


def _form_values(page: Page) -> dict[str, str]:
    return page.eval_on_selector_all("select[name]", "els => Object.fromEntries(els.map(e => [e.name, e.value]))")


def test_estimate_says_none_before_the_first_run(backend: Any, page: Page) -> None:
    base_url, token, _federation, _data_dir = backend
    status, runs = api(base_url, token, "GET", "/training?status=completed")
    assert status == 200 and runs["total"] == 0, "this module's backend starts without history"
    _open_start(page, base_url, token)
    expect(page.get_by_test_id("duration-estimate")).to_have_text("No estimate yet: no finished run to learn from.")


def test_choosing_options_shows_exactly_their_parameters_and_krum_defaults_run(backend: Any, page: Page) -> None:
    base_url, token, federation, _data_dir = backend
    schema = _schema(base_url, token)
    _open_start(page, base_url, token)
    # Labels are the schema's x-label, not Python names.
    expect(page.locator("label[for=field-krum_num_malicious]")).to_have_text("Krum f")
    expect(page.get_by_test_id("field-krum_num_malicious")).to_be_hidden()
    page.get_by_test_id("advanced-toggle").click()
    for strategy in schema["properties"]["strategy"]["enum"]:
        page.get_by_test_id("field-strategy").select_option(strategy)
        assert _visible_fields(page) == _expected_fields(schema, _form_values(page)), strategy
    for select, value in [("dp", "local"), ("dp", "central"), ("compression", "topk"), ("selection", "performance")]:
        page.get_by_test_id("field-dp").select_option("none")  # dp and compression exclude each other
        page.get_by_test_id(f"field-{select}").select_option(value)
        assert _visible_fields(page) == _expected_fields(schema, _form_values(page)), (select, value)
    page.get_by_test_id("field-partitioner").select_option("dirichlet")
    expect(page.get_by_test_id("field-alpha")).to_be_visible()
    page.get_by_test_id("field-data_source").select_option("node")
    expect(page.get_by_test_id("field-alpha")).to_be_hidden()
    expect(page.get_by_test_id("field-label_column")).to_be_visible()
    shot(page, "start-options")

    # Krum at its defaults (min_nodes 2, f 0) on the default 3-node federation: accepted and completed.
    _reopen_start(page)
    page.get_by_test_id("field-strategy").select_option("krum")
    expect(page.get_by_test_id("field-krum_num_malicious")).to_be_visible()
    expect(page.get_by_test_id("field-krum_num_malicious")).to_have_value("0")
    page.get_by_test_id("field-num_rounds").fill("1")
    page.get_by_test_id("field-max_train_examples").fill("300")
    page.get_by_test_id("field-min_available_nodes").fill(str(federation.num_nodes))
    run_id = submit_and_open_run(page)
    run = wait_for_api_status(base_url, token, run_id, "completed", timeout=RUN_TIMEOUT_MS / 1000)
    assert run["config"]["strategy"] == "krum" and run["config"]["min_nodes"] == 2, run["config"]
    assert run["rounds"] and run["rounds"][0]["clients"], run


def test_a_preset_fills_the_form_and_starts_a_valid_run(backend: Any, page: Page) -> None:
    base_url, token, _federation, _data_dir = backend
    status, presets = api(base_url, token, "GET", "/training/presets")
    assert status == 200 and [p["name"] for p in presets] == ["Quick check — 1 min", "IID benchmark", "Non-IID Dirichlet 0.5"]
    _open_start(page, base_url, token)
    dirichlet = next(p for p in presets if p["name"] == "Non-IID Dirichlet 0.5")
    page.locator(f"[data-testid=preset-button][data-preset='{dirichlet['name']}']").click()
    expect(page.get_by_test_id("field-alpha")).to_be_visible()  # the preset's partitioner shows its parameter
    expect(page.get_by_test_id("field-partitioner")).to_have_value("dirichlet")
    quick = presets[0]
    page.locator(f"[data-testid=preset-button][data-preset='{quick['name']}']").click()
    for name, value in quick["config"].items():
        expect(page.get_by_test_id(f"field-{name}")).to_have_value(str(value) if not isinstance(value, float) else f"{value:g}")
    expect(page.get_by_test_id("field-alpha")).to_be_hidden()  # back to iid: alpha no longer matters
    expect(page.get_by_test_id("preset-note")).to_contain_text(quick["name"])
    shot(page, "start-preset")
    run_id = submit_and_open_run(page)
    run = wait_for_api_status(base_url, token, run_id, "completed", timeout=RUN_TIMEOUT_MS / 1000)
    for name, value in quick["config"].items():
        assert run["config"][name] == value, (name, run["config"][name], value)
    assert "alpha" not in run["config"] or run["config"]["alpha"] == 0.5  # hidden fields are not sent: the default

    # With finished runs behind it, the form estimates the duration from their seconds per round.
    _reopen_start(page)
    page.get_by_test_id("field-num_rounds").fill("10")
    estimate = page.get_by_test_id("duration-estimate")
    expect(estimate).to_contain_text("for 10 rounds: ")
    expect(estimate).to_contain_text("as the last 2 finished runs took.")  # the Krum run and this one
    shown = float(estimate.inner_text().split(": ", 1)[1].split(" s per round")[0])
    finished = api(base_url, token, "GET", "/training?status=completed&limit=5")[1]["items"]
    rounds = [r["seconds"] for f in finished for r in api(base_url, token, "GET", f"/training/{f['run_id']}")[1]["rounds"]]
    assert abs(shown - statistics.median(rounds)) <= 0.051, (shown, rounds)  # the rounds' own seconds, not the runs'


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_the_submit_button_never_covers_a_field(backend: Any, page: Page, width: int, height: int) -> None:
    base_url, token, _federation, _data_dir = backend
    page.set_viewport_size({"width": width, "height": height})
    _open_start(page, base_url, token)
    page.get_by_test_id("advanced-toggle").click()
    page.get_by_test_id("field-strategy").select_option("fedadam")  # the most parameters
    overlaps = page.evaluate(
        """async () => {
            const bar = document.querySelector('[data-testid=start-submit]');
            const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
            const found = [];
            const end = document.documentElement.scrollHeight;
            for (let y = 0; y <= end; y += 120) {
                window.scrollTo(0, y);
                await new Promise(requestAnimationFrame);
                const b = bar.getBoundingClientRect();
                for (const f of document.querySelectorAll('[data-field]')) {
                    if (f.offsetParent === null) continue;
                    if (hit(f.getBoundingClientRect(), b)) found.push(`${f.dataset.field}@${y}`);
                }
            }
            return found;
        }"""
    )
    assert overlaps == [], f"the submit button covers fields at {width}px: {overlaps}"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the start form scrolls sideways"
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    shot(page, f"start-bottom-{width}", full_page=False)
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, f"start-{width}")
