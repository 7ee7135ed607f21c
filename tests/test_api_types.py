"""The dashboard's API types (services/web/src/api_types.ts) are what openapi-typescript makes of the backend's
OpenAPI document today: a response model changed without `make web-types` fails here, not in a browser."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from flowerbed.api.openapi_export import openapi_document

WEB = Path(__file__).resolve().parent.parent / "services" / "web"


def test_checked_in_api_types_match_the_backend() -> None:
    tool = WEB / "node_modules" / ".bin" / "openapi-typescript"
    assert tool.exists(), "openapi-typescript is missing: run `make setup`"
    generated = subprocess.run(
        [str(tool)], input=json.dumps(openapi_document()), capture_output=True, text=True, check=True, cwd=WEB, timeout=300
    ).stdout
    checked_in = (WEB / "src" / "api_types.ts").read_text()
    assert generated == checked_in, "services/web/src/api_types.ts is out of date: run `make web-types` and commit it"
