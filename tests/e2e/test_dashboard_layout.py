"""Every view of the dashboard at 1280 px and at 390 px: no sideways scroll, no element over another.

One traced 1-round run on a real 2-node federation (the local-mode backend collects its spans, as in
test_dashboard_traces.py) gives every view something to show: runs, start, the run, nodes, models and the
trace. For each view and width the page is checked in Chromium and a screenshot goes to test-artifacts/
(dashboard-layout-<view>-<width>.png).

"Over another": two visible elements, neither inside the other, whose boxes intersect by more than a pixel
each way. Charts are one block (uPlot lays its own overlay over its canvas on purpose).
"""

from __future__ import annotations

from typing import Any

from backend_fixture import traced_backend, wait_for
from dashboard_pages import ARTIFACTS, api, chromium_browser, open_dashboard  # noqa: F401 (fixtures)
from playwright.sync_api import Browser, Page, expect

WIDTHS = {1280: 800, 390: 844}

# Elements whose boxes must not cross, and the blocks whose insides are drawn by a library.
OVERLAPS = """() => {
    const selector = 'button, input, select, textarea, a, label, h1, h2, h3, th, td, p, span, strong, canvas, img, svg, .badge';
    const big = (r) => r.width > 1 && r.height > 1;
    // Per line fragment: a wrapped inline element's bounding box would also cover the text before it.
    const boxes = [...document.querySelectorAll(selector)]
        .filter((e) => !e.closest('.chart') && e.checkVisibility({ checkVisibilityCSS: true }))  // also: closed <details>
        .map((e) => [e, [...e.getClientRects()].filter(big)])
        .filter(([, rects]) => rects.length);
    const name = (e) => e.dataset.testid || e.tagName.toLowerCase() + (e.textContent || '').trim().slice(0, 24);
    const at = (r) => JSON.stringify([r.x, r.y, r.width, r.height].map(Math.round));
    const found = [];
    for (let i = 0; i < boxes.length; i++) {
        for (let j = i + 1; j < boxes.length; j++) {
            const [a, ras] = boxes[i], [b, rbs] = boxes[j];
            if (a.contains(b) || b.contains(a)) continue;
            for (const ra of ras) {
                for (const rb of rbs) {
                    const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
                    const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
                    if (w > 1 && h > 1) found.push(`${name(a)} ${at(ra)} × ${name(b)} ${at(rb)}`);
                }
            }
        }
    }
    return found.slice(0, 20);
}"""


def _check(page: Page, view: str, width: int) -> None:
    page.wait_for_timeout(300)  # a frame for charts to size themselves to the new width
    scroll = page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=str(ARTIFACTS / f"dashboard-layout-{view}-{width}.png"), full_page=True)
    assert scroll <= width, f"{view} at {width}px scrolls sideways ({scroll}px wide)"
    overlaps = page.evaluate(OVERLAPS)
    assert overlaps == [], f"{view} at {width}px: elements over others: {overlaps}"


def test_every_view_fits_at_desktop_and_phone_width_with_nothing_covered(
    start_federation: Any,
    backend_factory: Any,
    tmp_path: Any,
    browser: Browser,
) -> None:
    backend = traced_backend(start_federation, backend_factory, tmp_path / "backend")
    base, token = backend.base_url, backend.token
    body = {"num_rounds": 1, "max_train_examples": 200, "min_nodes": 2, "min_available_nodes": 2, "fraction_train": 1.0}
    status, started = api(base, token, "POST", "/training/start", body)
    assert status == 202, started
    run_id = started["run_id"]

    def finished() -> dict[str, Any] | None:
        run = api(base, token, "GET", f"/training/{run_id}")[1]
        return run if run["status"] in ("completed", "failed", "stopped") else None

    run = wait_for(finished, 600, "the run to finish", interval=1.0)
    assert run["status"] == "completed", run
    wait_for(lambda: api(base, token, "GET", f"/traces/{run['trace_id']}")[0] == 200, 60, "the run's spans")

    views = {
        "runs": ("#/runs", "run-row"),
        "start": ("#/start", "start-form"),
        "run": (f"#/runs/{run_id}", "node-data-card"),
        "nodes": ("#/nodes", "nodes-summary"),
        "models": ("#/models", "model-row"),
        "trace": (f"#/traces/{run['trace_id']}", "trace-waterfall"),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
            open_dashboard(page, base, token)
            for view, (route, ready) in views.items():
                page.goto(f"{base}/{route}")
                expect(page.get_by_test_id(ready).first).to_be_visible(timeout=30_000)
                _check(page, view, width)
            assert not errors, errors
        finally:
            context.close()
