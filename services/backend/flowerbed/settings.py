"""The backend's configuration: one typed `Settings`, read from `FLOWERBED_*` env vars.

Everything the backend needs to know about its surroundings lives here, with the
defaults local mode wants, so routes and services never read the environment
themselves. Derived defaults (database, model store, token) follow `data_dir`, so
pointing one variable at a directory is enough to run an isolated backend.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flowerbed import paths

TOKEN_FILE = "api-token"


def _default_web_dir() -> Path:
    # services/backend/flowerbed/settings.py → services/web/dist
    return Path(__file__).resolve().parents[2] / "web" / "dist"


class Settings(BaseSettings):
    """Backend settings; each field is the env var `FLOWERBED_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="FLOWERBED_", extra="ignore")

    data_dir: Path = Field(
        default_factory=paths.data_dir,
        description="Local state (database, token, model store by default). Default ./.flowerbed.",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL: sqlite:///… (default <data_dir>/flowerbed.db) or postgresql+psycopg://user:pw@host/db.",
    )
    superlink_url: str = Field(
        "127.0.0.1:8000",
        description="The SuperLink's Control API: host:port or http://host:port (plain), https://host:port (TLS). "
        "Never expose it publicly.",
    )
    superlink_ca_cert: Path | None = Field(
        None,
        description="PEM CA bundle that signed an https:// SuperLink's certificate (compose TLS overlay: /certs/ca.crt). "
        "Unset: the system trust store.",
    )
    model_store: Path | None = Field(
        None,
        description="Directory where the ServerApp writes checkpoints and the backend reads them (default <data_dir>/models).",
    )
    api_token: str = Field(
        "",
        description="Bearer token for mutating requests. Unset: generated once into <data_dir>/api-token (mode 600).",
    )
    require_token_for_reads: bool = Field(
        False, description="Also require the token on GET requests (SSE accepts ?token= since EventSource sends no headers)."
    )
    web_dir: Path = Field(
        default_factory=_default_web_dir,
        description="Built dashboard served at / with index.html fallback, if the directory exists.",
    )
    app_dir: Path = Field(default_factory=paths.app_dir, description="The Flower App directory packed into a FAB per run.")
    trace_retention_spans: int = Field(
        500_000, ge=1000, description="Local mode keeps at most this many received spans (newest first)."
    )
    grafana_url: str = Field(
        "",
        description="Public Grafana URL (compose). Set: run trace links open Grafana Explore on Tempo; "
        "unset: the dashboard's built-in trace view.",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Also serve the Prometheus exposition (no token) on this port, for an in-network scraper "
        "(compose: 9464, never published). Unset: off.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (comma-separated in the env var).",
    )

    @model_validator(mode="before")
    @classmethod
    def _split_origins(cls, values: dict) -> dict:
        raw = values.get("cors_origins") if isinstance(values, dict) else None
        if isinstance(raw, str):
            values["cors_origins"] = [o.strip() for o in raw.split(",") if o.strip()]
        return values

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.data_dir = self.data_dir.resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'flowerbed.db'}"
        if self.model_store is None:
            self.model_store = self.data_dir / "models"
        if not self.api_token:
            self.api_token = load_or_create_token(self.data_dir)
        return self

    @property
    def models_path(self) -> Path:
        assert self.model_store is not None  # set by _derive_defaults
        return self.model_store


def load_or_create_token(data_dir: Path) -> str:
    """The local token: created once (mode 600, race-free) so CLI and backend agree on it."""
    path = data_dir / TOKEN_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if token:
            return token
        path.unlink()
        return load_or_create_token(data_dir)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


@lru_cache
def get_settings() -> Settings:
    return Settings()
