"""The backend's settings, read from the environment in one place.

The names are label-studio-ml's usual ones (``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``,
``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``, ``MODEL_DIR``, ``LOG_LEVEL``) plus labelplan's
(``LABELPLAN_DB``, ``REDIS_URL`` and the ``LABELPLAN_*`` knobs below). Secrets are kept out of
``repr`` so that logging a settings object never leaks them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labelplan.settings import SettingsError, positive_number


class BackendSettingsError(RuntimeError):
    """A backend setting is missing or malformed; the message names the variable to fix."""


@dataclass(frozen=True)
class BackendSettings:
    label_studio_url: str = ""
    label_studio_api_key: str = field(default="", repr=False)
    basic_auth_user: str = ""
    basic_auth_pass: str = field(default="", repr=False)
    model_dir: Path = Path(".")
    log_level: str = "INFO"
    store_url: str | None = None
    redis_url: str | None = field(default=None, repr=False)
    max_body_bytes: int = 100 * 1024 * 1024
    """Requests larger than this are refused with 413 (``LABELPLAN_MAX_BODY_MB``)."""
    max_media_bytes: int = 20 * 1024 * 1024
    """One image larger than this is refused, the task gets an empty prediction."""
    media_timeout: float = 10.0
    onnx_model: Path | None = None
    """A customer's ONNX image model (``LABELPLAN_ONNX_MODEL``): replaces the built-in CNN."""
    customer_model_version: str = ""
    """Use the customer's own predictions of this model version as features."""
    version_prefix: str = "labelplan-backend"

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        if self.basic_auth_user and self.basic_auth_pass:
            return (self.basic_auth_user, self.basic_auth_pass)
        return None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        return tuple(
            s for s in (self.label_studio_api_key, self.basic_auth_pass, self.redis_password) if s
        )

    @property
    def redis_password(self) -> str:
        if not self.redis_url or "@" not in self.redis_url:
            return ""
        credentials = self.redis_url.split("://", 1)[-1].split("@", 1)[0]
        return credentials.split(":", 1)[-1] if ":" in credentials else credentials

    @property
    def cold_start_file(self) -> Path:
        """Optional class hints for the cold start: ``MODEL_DIR/cold_start.json``."""
        return self.model_dir / "cold_start.json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BackendSettings:
        env = os.environ if environ is None else environ
        user = env.get("BASIC_AUTH_USER", "").strip()
        password = env.get("BASIC_AUTH_PASS", "").strip()
        if bool(user) != bool(password):
            raise BackendSettingsError(
                "set both BASIC_AUTH_USER and BASIC_AUTH_PASS (the same pair you enter in Label "
                "Studio's Model settings), or neither"
            )
        url = env.get("LABEL_STUDIO_URL", "").strip().rstrip("/")
        if url and not url.startswith(("http://", "https://")):
            raise BackendSettingsError(
                f"LABEL_STUDIO_URL must start with http:// or https://, got {url!r}"
            )
        onnx = env.get("LABELPLAN_ONNX_MODEL", "").strip()
        if onnx and not Path(onnx).is_file():
            raise BackendSettingsError(
                f"LABELPLAN_ONNX_MODEL points to {onnx!r}, which is not a file: give the path of "
                "your .onnx model or unset the variable"
            )
        level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise BackendSettingsError(
                f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}"
            )
        return cls(
            label_studio_url=url,
            label_studio_api_key=env.get("LABEL_STUDIO_API_KEY", "").strip(),
            basic_auth_user=user,
            basic_auth_pass=password,
            model_dir=Path(env.get("MODEL_DIR", "").strip() or "."),
            log_level=level,
            store_url=env.get("LABELPLAN_DB", "").strip() or None,
            redis_url=env.get("REDIS_URL", "").strip() or None,
            max_body_bytes=_megabytes(env, "LABELPLAN_MAX_BODY_MB", 100),
            max_media_bytes=_megabytes(env, "LABELPLAN_MAX_MEDIA_MB", 20),
            media_timeout=_positive(env, "LABELPLAN_MEDIA_TIMEOUT", 10.0),
            onnx_model=Path(onnx) if onnx else None,
            customer_model_version=env.get("LABELPLAN_CUSTOMER_MODEL_VERSION", "").strip(),
        )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return positive_number(env, name, default)
    except SettingsError as exc:
        raise BackendSettingsError(str(exc)) from exc


def _megabytes(env: Mapping[str, str], name: str, default: float) -> int:
    return int(_positive(env, name, default) * 1024 * 1024)
