"""/nodes: the SuperNodes the SuperLink knows, as it reports them, with what each last said about its data.

POST adds a site (its SuperNode's public key, admitted through Flower's Control API as
`flwr supernode register` does) and answers with the files and command the site needs; DELETE
revokes a node's key (`flwr supernode unregister`): its next request to the SuperLink is refused.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, model_validator

from flowerbed import site_keys
from flowerbed.api.deps import ControlDep, HistoryDep, SettingsDep
from flowerbed.api.schemas import BODY_ERRORS, Message, NodeInfo, NodeList, SiteFile, SiteRegistered, SiteSetup
from flowerbed.runs.run_config import FieldError
from flowerbed.runs.run_service import SuperLinkUnavailable
from flowerbed.site_setup import site_setup

router = APIRouter(prefix="/nodes", tags=["nodes"])


@router.get("", response_model=NodeList, responses={503: {"model": Message}})
async def list_nodes(
    control: ControlDep,
    history: HistoryDep,
    include_unregistered: Annotated[
        bool, Query(description="Also list nodes that left cleanly (every SuperNode restart registers a new node).")
    ] = False,
) -> NodeList:
    """Online nodes first, then by last seen; nodes that unregistered are hidden by default."""
    nodes = await _nodes(control)
    if not include_unregistered:
        nodes = [n for n in nodes if n["status"] != "unregistered"]
    nodes.sort(key=lambda n: str(n["last_seen"]), reverse=True)
    nodes.sort(key=lambda n: n["status"] != "online")  # stable: online first, each group newest first
    data = await run_in_threadpool(history.node_data)
    return NodeList(
        items=[
            NodeInfo(
                node_id=str(n["node_id"]),
                status=n["status"],
                last_seen=n["last_seen"],
                online_until=n["online_until"],
                data=data.get(str(n["node_id"])),
                name=n.get("name", ""),
                key_fingerprint=n.get("key_fingerprint", ""),
                registered_at=n.get("registered_at", ""),
            )
            for n in nodes
        ]
    )


class SiteRegistration(BaseModel):
    """A new site: its name and its SuperNode's OpenSSH public key (`ssh-keygen -t ecdsa -b 384`)."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Letters, digits, `.`, `_`, `-`; also the name of the site's data directory.",
    )
    public_key: str = Field(
        min_length=1,
        max_length=site_keys.MAX_KEY_CHARS,
        description="The site's supernode.pub: one line, `ecdsa-sha2-nistp384 AAAA… [comment]`.",
    )
    partition_id: int = Field(0, ge=0, le=10_000, description="The site's partition (runs with data_source=partitions).")
    num_partitions: int = Field(1, ge=1, le=10_000, description="How many partitions the federation's data is split into.")

    model_config = {"extra": "forbid"}

    @model_validator(mode="after")
    def _partition_in_range(self) -> SiteRegistration:
        if self.partition_id >= self.num_partitions:
            raise FieldError("partition_id", f"must be below num_partitions ({self.num_partitions})", self.partition_id)
        return self


def _flower_refusal(exc: httpx.HTTPStatusError) -> str:
    return exc.response.text[:300] or f"HTTP {exc.response.status_code}"


async def _nodes(control: Any) -> list[dict[str, Any]]:
    try:
        return await run_in_threadpool(control.list_nodes)
    except Exception as exc:
        raise SuperLinkUnavailable(f"cannot list nodes, the SuperLink did not answer: {exc}") from exc


@router.post(
    "",
    status_code=201,
    response_model=SiteRegistered,
    responses={409: {"model": Message}, 503: {"model": Message}, **BODY_ERRORS},
)
async def add_site(body: SiteRegistration, control: ControlDep, settings: SettingsDep) -> SiteRegistered:
    """Admit a site's SuperNode key; the answer holds the site's `.env`, the CA certificate and the command."""
    try:
        key = site_keys.parse_public_key(body.public_key)
    except site_keys.InvalidSiteKey as exc:
        raise FieldError("public_key", str(exc), body.public_key[:80]) from exc
    fingerprint = site_keys.fingerprint(key)
    for node in await _nodes(control):
        if node["status"] == "unregistered":
            if node["key_fingerprint"] == fingerprint:  # Flower keeps revoked keys refused for good
                raise HTTPException(
                    409,
                    f"public_key: this key was revoked (node {node['node_id']}) and cannot be registered again: "
                    "make a new key pair on the site",
                )
            continue
        if node["key_fingerprint"] == fingerprint:
            raise HTTPException(409, f"public_key: already registered as node {node['node_id']} ({node['name'] or 'unnamed'})")
        if node["name"] == body.name:
            raise HTTPException(409, f"name: a site named {body.name!r} is already registered (node {node['node_id']})")
    try:
        node_id = await run_in_threadpool(control.register_node, site_keys.to_flower_bytes(key), body.name)
    except httpx.HTTPStatusError as exc:
        if 400 <= exc.response.status_code < 500:
            raise HTTPException(409, f"public_key: the SuperLink refused it: {_flower_refusal(exc)}") from exc
        raise SuperLinkUnavailable(f"the SuperLink failed to register the node: {_flower_refusal(exc)}") from exc
    except Exception as exc:
        raise SuperLinkUnavailable(f"cannot register the node, the SuperLink did not answer: {exc}") from exc
    spec = site_setup(
        body.name, settings.fleet_public_address, settings.superlink_ca_cert, body.partition_id, body.num_partitions
    )
    return SiteRegistered(
        node_id=str(node_id),
        name=body.name,
        key_fingerprint=fingerprint,
        setup=SiteSetup(
            files=[SiteFile(path=f.path, content=f.content, note=f.note) for f in spec.files],
            command=spec.command,
            warnings=spec.warnings,
        ),
    )


@router.delete("/{node_id}", status_code=204, responses={404: {"model": Message}, 503: {"model": Message}})
async def revoke_site(
    node_id: Annotated[str, Path(pattern=r"^[0-9]{1,20}$", description="A node id from GET /nodes.")],
    control: ControlDep,
) -> Response:
    """Revoke a node's key: the SuperLink refuses its next request; it leaves the federation."""
    number = int(node_id)
    known = {str(n["node_id"]): n for n in await _nodes(control)}
    if node_id not in known or known[node_id]["status"] == "unregistered":
        raise HTTPException(404, f"node {node_id} is not registered")
    try:
        await run_in_threadpool(control.unregister_node, number)
    except httpx.HTTPStatusError as exc:
        raise HTTPException(404, f"node {node_id}: the SuperLink refused: {_flower_refusal(exc)}") from exc
    except Exception as exc:
        raise SuperLinkUnavailable(f"cannot revoke the node, the SuperLink did not answer: {exc}") from exc
    return Response(status_code=204)
