"""What counts as a usable secret: one policy for the backend's start-up and `flowerbed check-secrets`.

A deployment that faces a network must not run with `.env.example`'s placeholders, an empty
value or something guessable. The rules are deliberately simple and stated in every refusal
(length, no placeholder words, some variety), with the command that makes a good secret. The
values themselves are never printed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

MIN_LENGTH = 24
MIN_DISTINCT_CHARACTERS = 8
GENERATE_HINT = "generate one with `openssl rand -hex 32` (or `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
# Words that only appear in secrets someone forgot to replace (.env.example says "replace-with-…").
PLACEHOLDER_MARKERS = (
    "replace-with",
    "replace_with",
    "replace-me",
    "replace_me",
    "replaceme",
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "your-",
    "your_",
    "<",
    ">",
)


class InsecureSecret(RuntimeError):
    """One or more secrets fail the policy; the message names each variable and the fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("refusing to start: " + "; ".join(problems))
        self.problems = problems


def secret_problem(value: str) -> str | None:
    """Why `value` is not a usable secret, or None if it is."""
    if not value:
        return "is empty"
    lowered = value.lower()
    if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return "is still a placeholder"
    if len(value) < MIN_LENGTH:
        return f"is too short ({len(value)} characters, at least {MIN_LENGTH} needed)"
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"is too repetitive (fewer than {MIN_DISTINCT_CHARACTERS} different characters)"
    return None


def database_url_problem(url: str) -> str | None:
    """Why the password inside a PostgreSQL URL is not usable (SQLite and password-less URLs pass).

    A URL without a password (peer authentication over a Unix socket, or PGPASSWORD/.pgpass)
    has nothing here to judge.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return "is not a database URL"
    if not parsed.drivername.startswith("postgresql") or parsed.password is None:
        return None
    problem = secret_problem(str(parsed.password))
    return f"has a password that {problem}" if problem else None


def variable_problem(name: str, value: str | None) -> str | None:
    """The policy for one environment variable, in a sentence naming it (None: fine)."""
    if value is None:
        return f"{name} is not set; {GENERATE_HINT}"
    problem = database_url_problem(value) if name.endswith("DATABASE_URL") else secret_problem(value)
    if problem is None:
        return None
    return f"{name} {problem}; {GENERATE_HINT}"


def check_variables(names: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per variable that fails the policy."""
    env = os.environ if environ is None else environ
    return [p for name in names if (p := variable_problem(name, env.get(name))) is not None]


def refuse_insecure(secrets: Mapping[str, str]) -> None:
    """Raise InsecureSecret naming every variable (name → value) that fails the policy."""
    problems = [p for name, value in secrets.items() if (p := variable_problem(name, value)) is not None]
    if problems:
        raise InsecureSecret(problems)
