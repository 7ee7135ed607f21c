"""/nodes: the SuperNodes the SuperLink knows, as it reports them."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from flowerbed.api.deps import ControlDep
from flowerbed.api.schemas import Message, NodeInfo, NodeList
from flowerbed.run_service import SuperLinkUnavailable

router = APIRouter(prefix="/nodes", tags=["nodes"])


@router.get("", response_model=NodeList, responses={503: {"model": Message}})
async def list_nodes(control: ControlDep) -> NodeList:
    try:
        nodes = await run_in_threadpool(control.list_nodes)
    except Exception as exc:
        raise SuperLinkUnavailable(f"cannot list nodes, the SuperLink did not answer: {exc}") from exc
    return NodeList(
        items=[
            NodeInfo(node_id=str(n["node_id"]), status=n["status"], last_seen=n["last_seen"], online_until=n["online_until"])
            for n in nodes
        ]
    )
