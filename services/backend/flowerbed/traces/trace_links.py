"""Where a run's trace can be seen: Grafana Explore on Tempo, or the built-in view."""

from __future__ import annotations

import json
from urllib.parse import quote


def trace_url(trace_id: str | None, grafana_url: str = "") -> str | None:
    if not trace_id:
        return None
    if not grafana_url:
        return f"/#/traces/{trace_id}"
    pane = {
        "trace": {
            "datasource": "tempo",
            "queries": [
                {"refId": "A", "datasource": {"type": "tempo", "uid": "tempo"}, "queryType": "traceql", "query": trace_id}
            ],
            "range": {"from": "now-7d", "to": "now"},
        }
    }
    return f"{grafana_url.rstrip('/')}/explore?schemaVersion=1&orgId=1&panes={quote(json.dumps(pane, separators=(',', ':')))}"
