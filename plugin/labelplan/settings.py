"""Settings from the environment, read in one place.

Secrets (the API key) come only from the environment and are never logged: ``Settings``
hides the key in its ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


class SettingsError(RuntimeError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class LabelStudioSettings:
    """How to reach Label Studio: ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``.

    The key may be a legacy token or a personal access token (a JWT refresh token); the
    adapter handles both.
    """

    url: str
    api_key: str = field(repr=False)
    timeout: float = 60.0
    retry_seconds: float = 120.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LabelStudioSettings:
        env = os.environ if environ is None else environ
        url = env.get("LABEL_STUDIO_URL", "").strip()
        key = env.get("LABEL_STUDIO_API_KEY", "").strip()
        missing = [
            name
            for name, value in (("LABEL_STUDIO_URL", url), ("LABEL_STUDIO_API_KEY", key))
            if not value
        ]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} not set: export the Label Studio address "
                "(e.g. http://localhost:8080) and an API key (Account & Settings -> Personal Access Token "
                "or Legacy Token) before running this command."
            )
        if not url.startswith(("http://", "https://")):
            raise SettingsError(
                f"LABEL_STUDIO_URL must start with http:// or https://, got {url!r}"
            )
        return cls(
            url=url.rstrip("/"),
            api_key=key,
            timeout=_seconds(env, "LABELPLAN_HTTP_TIMEOUT", 60.0),
            retry_seconds=_seconds(env, "LABELPLAN_RETRY_SECONDS", 120.0),
        )


def positive_number(env: Mapping[str, str], name: str, default: float, unit: str = "") -> float:
    """A positive number from the environment variable ``name`` (unset or blank: ``default``)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number{unit}, got {raw!r}") from exc
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    return positive_number(env, name, default, " of seconds")
