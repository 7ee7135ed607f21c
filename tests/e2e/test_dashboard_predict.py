""" "Try it" in a real browser: a Fashion-MNIST image chosen or dropped, the model's top classes shown.

The shared backend and the session's trained SimpleCNN (tests/support/model_fixture.py); Debian's Chromium through
the launch helper and `page` fixture of test_dashboard.py. Screenshot: test-artifacts/try-it.png.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from backend_fixture import Backend
from dashboard_pages import ARTIFACTS, chromium_browser, dashboard_page, open_dashboard  # noqa: F401 (fixtures)
from model_fixture import TrainedCheckpoint, png_of
from playwright.sync_api import Page, expect

from flowerbed_app.task.fashion_mnist import CLASS_NAMES, DEFAULT_DIR, load_split
from flowerbed_app.task.training import to_tensor

pytestmark = pytest.mark.federation
TROUSER = CLASS_NAMES.index("Trouser")


def test_try_it_ranks_a_known_image_first_and_shows_the_servers_reason_for_a_bad_one(
    backend: Backend,
    trained_cnn: TrainedCheckpoint,
    page: Page,
) -> None:
    import torch

    images, labels = load_split(DEFAULT_DIR, "test")
    index = int(np.flatnonzero(labels == TROUSER)[0])  # the test split's first trousers
    with torch.inference_mode():
        probabilities = trained_cnn.module(to_tensor(images[index : index + 1])).exp()[0]
    assert int(probabilities.argmax()) == TROUSER, "the fixture's model should know trousers; it was trained too little"

    open_dashboard(page, backend.base_url, backend.token, f"#/models?run_id=tiny-cnn&try={trained_cnn.model_id}")
    card = page.get_by_test_id("try-card")
    expect(card.get_by_test_id("try-model")).to_have_value(trained_cnn.model_id)
    card.get_by_test_id("try-file").set_input_files(
        files=[{"name": "trousers.png", "mimeType": "image/png", "buffer": png_of(images[index])}]
    )
    ranked = card.get_by_test_id("try-class")
    expect(ranked).to_have_count(3)
    expect(ranked.first).to_have_attribute("data-label", "Trouser")
    expect(ranked.first).to_contain_text(f"{float(probabilities[TROUSER]) * 100:.1f} %")
    expect(card.get_by_test_id("try-preview")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "try-it.png"))

    # Dropped, and not 28×28: the server's 422 reason is what the page shows.
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (32, 32)).save(buffer, format="PNG")
    dropped = page.evaluate_handle(
        "bytes => { const t = new DataTransfer(); "
        "t.items.add(new File([new Uint8Array(bytes)], 'big.png', {type: 'image/png'})); return t; }",
        list(buffer.getvalue()),
    )
    card.get_by_test_id("try-drop").dispatch_event("drop", {"dataTransfer": dropped})
    error = card.get_by_test_id("state-error")
    expect(error).to_contain_text("image is 32×32 pixels; the model takes 28×28")
    expect(ranked).to_have_count(0)
