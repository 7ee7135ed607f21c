"""The API's OpenAPI document from the app object alone: no server, no database (the lifespan never runs).

`python -m flowerbed.api.openapi_export` prints it; the dashboard's TypeScript types
(services/web/src/api_types.ts, `make web-types`) are generated from it, and a test regenerates them to check
the checked-in file still matches the backend.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from flowerbed.api.main import create_app
from flowerbed.settings import Settings


def openapi_document() -> dict[str, Any]:
    """`GET /openapi.json` as a running backend serves it (a throwaway data dir and token: neither is in it)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), api_token=secrets.token_urlsafe(32), database_url=f"sqlite:///{tmp}/openapi.db")
        return create_app(settings).openapi()


def main() -> None:
    json.dump(openapi_document(), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
