"""Query strings never leave the backend in full: not in request spans, not in the access log.

Our own clients put no secret in a URL, but a stale bookmark, a script or an attacker may
(`?token=…`), and spans go to Tempo and logs to whoever reads them. So every query value
is replaced by `REDACTED` wherever the backend itself records a URL; parameter names stay,
so a log line still says which parameters a request had. Nginx does the same in compose
(services/web/nginx.conf logs the path without its arguments).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"
# Attributes the OpenTelemetry HTTP instrumentations put URLs or queries in (old and new conventions).
URL_ATTRIBUTES = ("http.url", "url.full", "http.target")
QUERY_ATTRIBUTES = ("url.query",)


def redact_query_string(query: str) -> str:
    """`a=1&token=x` → `a=REDACTED&token=REDACTED` (a bare `flag` stays a bare name)."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        return REDACTED
    return urlencode([(name, REDACTED) for name, _ in pairs])


def redact_url(url: str) -> str:
    """A URL or a request target (`/path?query`) with its query values and any userinfo redacted."""
    if "?" not in url and "@" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, redact_query_string(parts.query), ""))


def redact_span(span: Any) -> None:
    """Overwrite the URL attributes an instrumentation already put on a recording span."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, redact_url(value))
    for key in QUERY_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, redact_query_string(value))


def server_request_hook(span: Any, scope: dict[str, Any]) -> None:
    """For FastAPIInstrumentor: the request span of every API call."""
    redact_span(span)


def client_request_hook(span: Any, request: Any) -> None:
    """For HTTPXClientInstrumentor: the backend's own outgoing calls (to the SuperLink)."""
    redact_span(span)


class RedactQueryFilter(logging.Filter):
    """Rewrites uvicorn's access log records (`%s - "%s %s HTTP/%s" %d`): the target's query is redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_url(args[2]), args[3], args[4])
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging config with the access log's queries redacted."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": f"{__name__}.RedactQueryFilter"}
    config["handlers"]["access"].setdefault("filters", []).append("redact_query")
    return config
