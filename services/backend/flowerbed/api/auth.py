"""Who may call the API: the bearer token in a header, or a dashboard session cookie.

Routers that expose the API include `authorize`, which lets reads through (unless
`require_token_for_reads`) and guards every mutating method, so a new POST route is
protected without anyone remembering to. No credential is ever read from a URL: the old
`?token=` of SSE and downloads is gone (browsers use the session cookie instead).

A request with an Authorization header is judged by it alone. A session authenticates
reads as is, and mutating requests only with its CSRF token in `X-CSRF-Token`, so another
page that gets the browser to send the cookie still cannot change anything.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from flowerbed.api.deps import SettingsDep
from flowerbed.api.sessions import COOKIE_NAME, CSRF_HEADER, Session, SessionSigner
from flowerbed.settings import Settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

bearer = HTTPBearer(auto_error=False, description="The API token (local mode: <data_dir>/api-token).")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def unauthorized(settings: Settings) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail=(
            "missing or invalid bearer token — pass 'Authorization: Bearer <token>' "
            f"(local mode prints it; see {settings.data_dir / 'api-token'}), or sign in on the dashboard"
        ),
        headers={"WWW-Authenticate": "Bearer"},
    )


def token_matches(candidate: str, settings: Settings) -> bool:
    return bool(candidate) and hmac.compare_digest(candidate.encode(), settings.api_token.encode())


def session_of(request: Request) -> Session | None:
    signer: SessionSigner = request.app.state.sessions
    return signer.verify(request.cookies.get(COOKIE_NAME))


async def authorize(request: Request, settings: SettingsDep, credentials: BearerDep) -> None:
    safe = request.method in SAFE_METHODS
    if safe and not settings.require_token_for_reads:
        return
    if credentials is not None or "authorization" in request.headers:
        if credentials is not None and token_matches(credentials.credentials, settings):
            return
        raise unauthorized(settings)
    session = session_of(request)
    if session is None:
        raise unauthorized(settings)
    if safe or hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), session.csrf_token.encode()):
        return
    raise HTTPException(
        403,
        f"a dashboard session must send its CSRF token in the {CSRF_HEADER} header (GET /auth/session returns it)",
    )


def set_session_cookie(request: Request, response: Response, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Strict, whole site; Secure whenever the request came over HTTPS."""
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"
    response.set_cookie(COOKIE_NAME, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
