"""The backend's configuration: one typed `Settings`, read from `FLOWERBED_*` env vars.

Everything the backend needs to know about its surroundings lives here, with the
defaults local mode wants, so routes and services never read the environment
themselves. Derived defaults (database, model store, token) follow `data_dir`, so
pointing one variable at a directory is enough to run an isolated backend. The limits
(body sizes, open event streams, active runs) are settings too, each named in the error a
client gets when it reaches one. The token and the database password must pass
`flowerbed.secret_policy`: `create_app` refuses to start otherwise.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flowerbed import paths
from flowerbed.secret_policy import refuse_insecure

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
    fleet_public_address: str = Field(
        "",
        max_length=300,
        description="host:port a remote site's SuperNode dials: the fleet proxy's published address (compose TLS "
        "overlay: FLOWERBED_PUBLIC_HOSTNAME:FLOWERBED_FLEET_PORT). Shown in the setup of a site added with "
        "POST /nodes; unset: a placeholder the operator fills in.",
    )
    model_store: Path | None = Field(
        None,
        description="Directory where the ServerApp writes checkpoints and the backend reads them (default <data_dir>/models).",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        description="MLflow tracking server (http://host:5000, databricks, …) every run is mirrored into: params, "
        "per-round metrics, tags, the final and best models. Unset: no MLflow. Credentials go in MLflow's own "
        "MLFLOW_TRACKING_USERNAME/PASSWORD or TOKEN variables, never in this URI.",
    )
    mlflow_experiment: str = Field("flowerbed", min_length=1, description="MLflow experiment the runs go to.")
    mlflow_registered_model: str | None = Field(
        None, description="If set, each run's best model is registered in MLflow's model registry under this name."
    )
    mlflow_retry_seconds: float = Field(
        10.0, gt=0, description="How often an MLflow export that failed (server unreachable) is retried."
    )
    api_token: str = Field(
        "",
        description="Bearer token for mutating requests (at least 24 characters, no placeholder: the backend refuses "
        "to start otherwise). Unset: generated once into <data_dir>/api-token (mode 600).",
    )
    require_token_for_reads: bool = Field(
        False,
        description="Also require authentication (the token, or a dashboard session) on every read, including "
        "/metrics, /docs, /redoc and /openapi.json. Compose sets it; local mode leaves reads open on loopback.",
    )
    session_ttl_seconds: int = Field(
        12 * 3600,
        ge=60,
        le=30 * 24 * 3600,
        description="Lifetime of a dashboard session cookie (HttpOnly, SameSite=Strict), made from the token or a login code.",
    )
    login_code_ttl_seconds: int = Field(
        600,
        ge=10,
        le=24 * 3600,
        description="How long the one-time login code in `flowerbed up`'s Dashboard link stays valid.",
    )
    max_body_bytes: int = Field(
        1 << 20, ge=1024, description="Largest request body on every route but /v1/traces; larger ones get 413 unread."
    )
    max_predict_body_bytes: int = Field(
        256 << 10,
        ge=1024,
        description="Largest image POST /models/{id}/predict takes (a 28×28 PNG is under 1 KiB); larger ones get 413 unread.",
    )
    max_otlp_body_bytes: int = Field(16 << 20, ge=1024, description="Largest (compressed) OTLP export body on /v1/traces.")
    max_otlp_decompressed_bytes: int = Field(
        64 << 20, ge=1024, description="Largest OTLP export once decompressed (a gzip bomb is refused by size, 413)."
    )
    max_sse_streams: int = Field(200, ge=1, description="Event streams (SSE) open at once across all clients; one more gets 429.")
    max_active_runs: int = Field(8, ge=1, description="Runs pending or running at once; one more start gets 409.")
    superlink_lost_seconds: float = Field(
        90.0,
        ge=5,
        description="A run whose SuperLink cannot be reached, or no longer knows the run as alive, for this long is "
        "recorded failed with the reason (resume it with POST /training/{id}/resume).",
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
        # Unset: local mode's generated token. Set but empty: a deployment that forgot it (refused later).
        if not self.api_token and os.environ.get("FLOWERBED_API_TOKEN") is None:
            self.api_token = load_or_create_token(self.data_dir)
        return self

    def refuse_insecure_secrets(self) -> None:
        """Raise secret_policy.InsecureSecret if the token or the database password is not a real secret."""
        refuse_insecure({"FLOWERBED_API_TOKEN": self.api_token, "FLOWERBED_DATABASE_URL": self.database_url})

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
