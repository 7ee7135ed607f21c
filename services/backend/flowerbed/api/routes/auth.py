"""/auth: turn the API token or a one-time login code into a browser session, and back out.

See `flowerbed.api.sessions` for why sessions exist (no secret in any URL). The token and
the code travel in a header or a body only; the session is an HttpOnly cookie; the CSRF
token comes back in the body, for the page's script to send on mutating requests.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from flowerbed.api.auth import (
    BearerDep,
    authorize,
    clear_session_cookie,
    session_of,
    set_session_cookie,
    token_matches,
    unauthorized,
)
from flowerbed.api.deps import SettingsDep
from flowerbed.api.schemas import AUTH_ERRORS, BODY_ERRORS, Message
from flowerbed.api.sessions import Session

router = APIRouter(prefix="/auth", tags=["auth"])
UNAUTHORIZED = {401: {"model": Message, "description": "Neither a valid token nor a valid login code."}}


class SessionInfo(BaseModel):
    authenticated: bool
    expires_at: datetime | None = None
    csrf_token: str | None = Field(None, description="Send it as X-CSRF-Token on mutating requests made with the cookie.")
    reads_require_auth: bool = Field(description="Whether GET requests need a session or the token too.")


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(None, max_length=200, description="A one-time login code (from `flowerbed up`).")


class LoginCode(BaseModel):
    code: str
    expires_at: datetime


def _info(session: Session | None, reads_require_auth: bool) -> SessionInfo:
    if session is None:
        return SessionInfo(authenticated=False, reads_require_auth=reads_require_auth)
    return SessionInfo(
        authenticated=True,
        expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        csrf_token=session.csrf_token,
        reads_require_auth=reads_require_auth,
    )


@router.get("/session", response_model=SessionInfo)
async def get_session(request: Request, settings: SettingsDep) -> SessionInfo:
    """Whether this browser has a session (and its CSRF token); always 200."""
    return _info(session_of(request), settings.require_token_for_reads)


@router.post("/session", response_model=SessionInfo, responses={**UNAUTHORIZED, **BODY_ERRORS})
async def create_session(
    request: Request,
    response: Response,
    settings: SettingsDep,
    credentials: BearerDep,
    login: LoginRequest | None = None,
) -> SessionInfo:
    """Open a session with `Authorization: Bearer <token>` or a body `{"code": "<login code>"}`."""
    if credentials is not None or "authorization" in request.headers:
        if credentials is None or not token_matches(credentials.credentials, settings):
            raise unauthorized(settings)
    elif login is None or not login.code or not request.app.state.login_codes.redeem(login.code):
        raise unauthorized(settings)
    value, session = request.app.state.sessions.issue()
    set_session_cookie(request, response, value, settings.session_ttl_seconds)
    return _info(session, settings.require_token_for_reads)


@router.delete("/session", status_code=204, dependencies=[Depends(authorize)], responses=AUTH_ERRORS)
async def delete_session() -> Response:
    """Sign this browser out (the cookie is cleared; other sessions end when the token changes)."""
    response = Response(status_code=204)
    clear_session_cookie(response)
    return response


@router.post("/login-codes", response_model=LoginCode, dependencies=[Depends(authorize)], responses=AUTH_ERRORS)
async def create_login_code(request: Request) -> LoginCode:
    """A single-use code that opens one session, valid for FLOWERBED_LOGIN_CODE_TTL_SECONDS."""
    code, expires = request.app.state.login_codes.issue()
    return LoginCode(code=code, expires_at=datetime.fromtimestamp(expires, UTC))
