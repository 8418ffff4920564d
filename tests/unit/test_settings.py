"""Settings come from the environment, fail clearly when missing, and never show the key."""

from __future__ import annotations

import pytest

from labelplan.settings import LabelStudioSettings, SettingsError


def test_settings_read_url_and_key_from_the_environment() -> None:
    settings = LabelStudioSettings.from_env(
        {"LABEL_STUDIO_URL": "http://ls.example:8080/", "LABEL_STUDIO_API_KEY": "abc123"}
    )
    assert settings.url == "http://ls.example:8080"
    assert settings.api_key == "abc123"
    assert (settings.timeout, settings.retry_seconds) == (60.0, 120.0)
    assert "abc123" not in repr(settings)


def test_missing_settings_name_both_variables() -> None:
    with pytest.raises(SettingsError, match="LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY not set"):
        LabelStudioSettings.from_env({})


def test_url_without_scheme_is_refused() -> None:
    with pytest.raises(SettingsError, match="must start with http"):
        LabelStudioSettings.from_env(
            {"LABEL_STUDIO_URL": "localhost:8080", "LABEL_STUDIO_API_KEY": "k"}
        )


@pytest.mark.parametrize("raw", ["soon", "-1", "0"])
def test_bad_timeouts_are_refused(raw: str) -> None:
    env = {
        "LABEL_STUDIO_URL": "http://x",
        "LABEL_STUDIO_API_KEY": "k",
        "LABELPLAN_HTTP_TIMEOUT": raw,
    }
    with pytest.raises(SettingsError, match="LABELPLAN_HTTP_TIMEOUT"):
        LabelStudioSettings.from_env(env)
