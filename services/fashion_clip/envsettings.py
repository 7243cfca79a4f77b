"""Reading pydantic-settings at start-up so that a bad value fails naming its environment variable.

Every service (model server, API, UI) loads its one settings object through `load_settings`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


class SettingsError(ValueError):
    """A setting is invalid; the message names the environment variable to fix."""


def env_name(settings_cls: type[BaseSettings], loc: tuple) -> str:
    """('embedder', 'timeout_seconds') -> RECOMMENDER_EMBEDDER__TIMEOUT_SECONDS."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    return prefix + "__".join(str(part) for part in loc).upper()


def describe(
    settings_cls: type[BaseSettings],
    exc: ValidationError,
    secret_fields: Collection[str] = (),
    show_input: bool = True,
) -> list[str]:
    """One sentence per problem, each starting with the variable a user sets."""
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a check across fields names its variable itself
            problems.append(message)
            continue
        # Never echo a secret into the log.
        shown = show_input and error["loc"][0] not in secret_fields
        suffix = f" (got {error.get('input')!r})" if shown else ""
        problems.append(f"{env_name(settings_cls, error['loc'])}: {message}{suffix}")
    return problems


def load_settings(
    settings_cls: type[S], what: str, secret_fields: Collection[str] = (), **overrides: object
) -> S:
    """Read and validate the settings now; raise `SettingsError` naming each bad variable."""
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        problems = describe(settings_cls, exc, secret_fields)
        raise SettingsError(f"Invalid {what} settings: " + "; ".join(problems)) from exc
