"""Browser sessions and one-time login codes, so no secret ever travels in a URL.

A browser cannot put the API token in a header for EventSource or a download link, and a
token in a query string ends up in access logs, browser history and request spans. Instead
the dashboard exchanges the token (in an Authorization header) or a one-time login code
(in a request body) for a session cookie: HttpOnly (no script reads it), SameSite=Strict
(no other site's page sends it), Path=/. The browser then attaches it to fetches, SSE and
downloads by itself.

Sessions are stateless: the cookie is `v1.<expiry>.<nonce>.<mac>`, an HMAC under a key
derived from the API token. A restarted backend keeps them valid, and rotating the token
ends every session. Mutating requests made with a session must also carry its CSRF token
(derived from the nonce, handed out by GET/POST /auth/session to same-origin scripts only).

Login codes are what `flowerbed up` prints in its Dashboard link: random, single-use, short
lived, kept only as hashes in this process's memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE_NAME = "flowerbed_session"
CSRF_HEADER = "X-CSRF-Token"
_VERSION = "v1"
MAX_OUTSTANDING_CODES = 100


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Session:
    expires_at: float
    csrf_token: str


class SessionSigner:
    """Makes and checks session cookies for one API token."""

    def __init__(self, api_token: str, ttl_seconds: int) -> None:
        self._key = hmac.new(api_token.encode(), b"flowerbed-session-key-v1", hashlib.sha256).digest()
        self.ttl_seconds = ttl_seconds

    def _mac(self, message: str) -> str:
        return _b64(hmac.new(self._key, message.encode(), hashlib.sha256).digest())

    def _csrf(self, nonce: str) -> str:
        return self._mac(f"csrf.{nonce}")

    def issue(self, now: float | None = None) -> tuple[str, Session]:
        """A new cookie value and the session it stands for."""
        expires = int((now or time.time()) + self.ttl_seconds)
        nonce = _b64(secrets.token_bytes(18))
        body = f"{_VERSION}.{expires}.{nonce}"
        return f"{body}.{self._mac(body)}", Session(float(expires), self._csrf(nonce))

    def verify(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None if it is absent, forged, foreign or expired."""
        if not cookie or len(cookie) > 200:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
            return None
        body = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3], self._mac(body)):
            return None
        expires = float(parts[1])
        if expires <= (now or time.time()):
            return None
        return Session(expires, self._csrf(parts[2]))


class LoginCodes:
    """Single-use, short-lived codes that open a session (the printed Dashboard link)."""

    def __init__(self, ttl_seconds: int) -> None:
        self.ttl_seconds = ttl_seconds
        self._codes: dict[str, float] = {}  # sha256(code) → expiry
        self._lock = threading.Lock()

    @staticmethod
    def _digest(code: str) -> str:
        return hashlib.sha256(code.encode()).hexdigest()

    def issue(self) -> tuple[str, float]:
        code = secrets.token_urlsafe(24)
        expires = time.time() + self.ttl_seconds
        with self._lock:
            self._drop_expired()
            if len(self._codes) >= MAX_OUTSTANDING_CODES:
                self._codes.pop(min(self._codes, key=self._codes.__getitem__))  # the oldest gives way
            self._codes[self._digest(code)] = expires
        return code, expires

    def redeem(self, code: str) -> bool:
        """True once for a valid code; it is gone afterwards whether or not it had expired."""
        if not code or len(code) > 200:
            return False
        with self._lock:
            expires = self._codes.pop(self._digest(code), None)
        return expires is not None and expires > time.time()

    def _drop_expired(self) -> None:
        now = time.time()
        for digest in [d for d, expires in self._codes.items() if expires <= now]:
            del self._codes[digest]
