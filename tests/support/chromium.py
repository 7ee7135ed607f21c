"""The machine's Chromium, as every browser test launches it (never a downloaded browser)."""

CHROMIUM = "/usr/bin/chromium"
# Headless on a shared CI machine: no sandbox (root), no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
