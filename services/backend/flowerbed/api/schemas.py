"""Response shapes of the REST API (requests are `flowerbed.runs.run_config.TrainingConfig`).

Large Flower ids (uint64 run and node ids) are strings: JavaScript numbers lose
precision above 2**53.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from flowerbed.api.data_schemas import NodeDataReport, NodeDescription
from flowerbed.api.round_schemas import AccuracyKind, RoundDetail
from flowerbed.db.run_queries import as_utc
from flowerbed.db.tables import Run
from flowerbed.runs.run_status import RunStatus


class Message(BaseModel):
    detail: str


# Answers any route may give before it runs: documented once, attached where they apply.
AUTH_ERRORS: dict[int | str, dict] = {
    401: {"model": Message, "description": "No valid token (Authorization: Bearer) or session."},
    403: {"model": Message, "description": "A session without its CSRF token (X-CSRF-Token) on a mutating request."},
}
BODY_ERRORS: dict[int | str, dict] = {
    400: {"model": Message, "description": "The body could not be decoded (not UTF-8, or not parseable)."},
    413: {"model": Message, "description": "The body is over FLOWERBED_MAX_BODY_BYTES."},
}


class StartedRun(BaseModel):
    run_id: str
    status: RunStatus
    flower_run_id: str | None
    created_at: datetime
    config: dict[str, Any]
    resumed_from: str | None = Field(None, description="The failed or stopped run this one continues.")


def accuracy_kind_of(config: dict[str, Any]) -> AccuracyKind:
    """Which accuracy a run reports: data_source=node runs have no central test set."""
    return "federated" if config.get("data_source") == "node" else "centralized"


class StoppingRun(BaseModel):
    run_id: str
    status: Literal["stopping"] = "stopping"


class RunSummary(BaseModel):
    run_id: str
    status: RunStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    config: dict[str, Any]
    accuracy: float | None
    accuracy_kind: AccuracyKind = Field(
        "centralized",
        description="centralized: on the server's test split (data_source=partitions); federated: the nodes' "
        "example-weighted evaluation of each round's model on their own validation data (data_source=node).",
    )
    loss: float | None
    rounds_completed: int
    num_rounds: int
    flower_run_id: str | None
    error: str | None
    from_checkpoint: str | None
    resumed_from: str | None = Field(None, description="The failed or stopped run this one continues.")

    @classmethod
    def of(cls, run: Run, rounds_completed: int) -> RunSummary:
        return cls(
            run_id=run.run_id,
            status=run.status,  # type: ignore[arg-type]
            created_at=as_utc(run.created_at),  # type: ignore[arg-type]
            started_at=as_utc(run.started_at),
            finished_at=as_utc(run.finished_at),
            config=run.config,
            accuracy=run.accuracy,
            accuracy_kind=accuracy_kind_of(run.config),
            loss=run.loss,
            rounds_completed=rounds_completed,
            num_rounds=run.num_rounds,
            flower_run_id=run.flower_run_id,
            error=run.error,
            from_checkpoint=run.from_checkpoint,
            resumed_from=run.resumed_from,
        )


def node_data_of(event: dict[str, Any] | None) -> dict[str, Any] | None:
    """The data_described event as the API shows it: node ids as strings (uint64, see below)."""
    if event is None:
        return None
    return {
        "nodes": [{**n, "node_id": str(n.get("node_id"))} for n in event.get("nodes") or []],
        "failures": [{**f, "node_id": str(f.get("node_id"))} for f in event.get("failures") or []],
    }


class MlflowExport(BaseModel):
    """Where the run's mirror in MLflow stands (FLOWERBED_MLFLOW_TRACKING_URI)."""

    mlflow_run_id: str | None = None
    exported_seq: int = Field(0, description="The last of the run's events exported to MLflow.")
    warning: str | None = Field(None, description="Why the export is behind (server unreachable…); it is retried.")


class RunDetail(RunSummary):
    rounds: list[RoundDetail]
    bytes_sent: int | None
    bytes_received: int | None
    trace_id: str | None = None
    trace_url: str | None = Field(None, description="Grafana Explore (compose) or the dashboard's trace view (local).")
    node_data: NodeDataReport | None = Field(
        None,
        description="What each node holds. data_source=node: what each node described about its data before round 1 "
        "(`nodes`: node_id, site, format, examples, columns or image_shape, classes with counts under 5 as '< 5') and "
        "the nodes left out for want of usable data (`failures`: node_id, reason). Partitioned runs: each node's "
        "partition (format, examples, classes), computed by the ServerApp once the node has replied. Never any of the "
        "data itself.",
    )
    mlflow: MlflowExport | None = Field(None, description="Only when the backend mirrors runs into MLflow.")


class RunPage(BaseModel):
    items: list[RunSummary]
    total: int
    limit: int
    offset: int


class RunLogs(BaseModel):
    run_id: str
    logs: str = Field(description="Lines offset … offset + limit - 1 of the ServerApp's output.")
    offset: int = 0
    limit: int = 1000
    next_offset: int | None = Field(None, description="Where the next page starts; null on the last page.")


class DeletedRun(BaseModel):
    run_id: str
    checkpoints: int = Field(description="Checkpoints removed from the model store.")
    events: int
    rounds: int
    log_chunks: int
    spans: int


class NodeInfo(BaseModel):
    node_id: str
    status: str
    last_seen: str
    online_until: float | str | None
    name: str = Field("", description="The site's name given at POST /nodes (empty for nodes that registered themselves).")
    key_fingerprint: str = Field("", description="SHA256 fingerprint of the node's public key, as `ssh-keygen -lf` prints it.")
    registered_at: str = Field("", description="When the SuperLink admitted the node (ISO time).")
    data: NodeDescription | None = Field(
        None,
        description="data_source=node: the node's data description from the newest run that asked it (format, examples, "
        "columns or image_shape, classes with counts under 5 as '< 5'; or `error`: why it had no usable data), and that "
        "`run_id`.",
    )


class NodeList(BaseModel):
    items: list[NodeInfo]


class SiteFile(BaseModel):
    path: str = Field(description="Where the file goes on the site's host, relative to a checkout of this repository.")
    content: str | None = Field(description="The file's exact content; null: a file the site already has (its private key).")
    note: str = ""


class SiteSetup(BaseModel):
    """What a site's operator copies and types to join: the remote-SuperNode compose project, filled in."""

    files: list[SiteFile]
    command: str = Field(description="Run on the site's host from the repository's root.")
    warnings: list[str] = Field(default_factory=list, description="What the operator still has to fill in by hand.")


class SiteRegistered(BaseModel):
    node_id: str
    name: str
    key_fingerprint: str
    setup: SiteSetup


class ModelInputInfo(BaseModel):
    """What a checkpoint's model takes, from its metadata (Fashion-MNIST's for checkpoints without it)."""

    kind: Literal["images", "table"] = Field(description="images: send an image file; table: a JSON row of `columns`.")
    classes: list[str] = Field(description="Class names, by class index.")
    shape: list[int] = Field(description="[channels, height, width] of images, or [number of features].")
    columns: list[str] = Field(default_factory=list, description="Tabular models: the feature columns a row must give.")
    feature_mean: list[float] = Field(
        default_factory=list, description="Tabular models: the federation's mean of each column (a typical row)."
    )


class ModelInfo(BaseModel):
    model_id: str
    run_id: str
    round: int
    model: str | None
    metrics: dict[str, Any]
    sha256: str
    size: int
    created_at: datetime | None
    parent: str | None = Field(None, description="The checkpoint this one's run started from (resume, from_checkpoint).")
    input: ModelInputInfo | None = Field(None, description="What the model takes (predict, export); null if unknown.")


class ModelList(BaseModel):
    items: list[ModelInfo]


class LineageEntry(BaseModel):
    model_id: str
    run_id: str
    round: int
    available: bool = Field(description="False once the checkpoint was pruned or deleted; its descendants still name it.")
    model: ModelInfo | None = Field(None, description="The checkpoint, while it is in the store.")


class ModelLineage(BaseModel):
    model_id: str
    chain: list[LineageEntry] = Field(description="This checkpoint first, then the one its run started from, and so on.")


class Prediction(BaseModel):
    class_index: int
    label: str
    probability: float


class PredictionResult(BaseModel):
    model_id: str
    model: str = Field(description="The architecture (cnn, resnet18, mlp).")
    predictions: list[Prediction] = Field(description="Every class, most probable first.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    database: bool
    superlink: bool
    detail: dict[str, str] = Field(default_factory=dict, description="Why a part is not ready.")
