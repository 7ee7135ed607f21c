"""What a node says about its data (data_source=node), as `GET /training/{id}` (`node_data`) and `GET /nodes`
(`data`) show it: sizes, shape and the label histogram, never any of the data itself."""

from __future__ import annotations

from pydantic import BaseModel, Field

from flowerbed.api.round_schemas import Recorded, RoundFailure


class NodeDescription(Recorded):
    node_id: str | None = Field(None, description="In a run's node_data (GET /nodes names the node beside it).")
    run_id: str | None = Field(None, description="In GET /nodes: the newest run that asked the node.")
    site: str | None = None
    format: str | None = Field(None, description="The data's format (image folder, csv…).")
    examples: int | None = None
    classes: dict[str, int | str] = Field(
        default_factory=dict, description="Label histogram: examples per class, counts under 5 as '< 5'."
    )
    columns: list[str] | None = Field(None, description="Tabular data: the feature columns.")
    image_shape: list[int] | None = Field(None, description="Image data: [channels, height, width].")
    error: str | None = Field(None, description="Why the node had no usable data.")


class NodeDataReport(BaseModel):
    nodes: list[NodeDescription] = Field(default_factory=list)
    failures: list[RoundFailure] = Field(default_factory=list, description="Nodes left out for want of usable data.")
