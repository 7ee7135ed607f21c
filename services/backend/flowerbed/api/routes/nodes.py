"""/nodes: the SuperNodes the SuperLink knows, as it reports them, with what each last said about its data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from flowerbed.api.deps import ControlDep, HistoryDep
from flowerbed.api.schemas import Message, NodeInfo, NodeList
from flowerbed.run_service import SuperLinkUnavailable

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
    try:
        nodes = await run_in_threadpool(control.list_nodes)
    except Exception as exc:
        raise SuperLinkUnavailable(f"cannot list nodes, the SuperLink did not answer: {exc}") from exc
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
            )
            for n in nodes
        ]
    )
