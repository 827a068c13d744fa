"""Production refuses development secrets; development works with none set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import DEV_SECRETS, Settings


def test_development_defaults_are_usable() -> None:
    s = Settings(environment="development")
    assert set(s.dev_defaults_in_use()) == set(DEV_SECRETS)


def test_production_refuses_any_dev_default() -> None:
    real = {name: f"real-{name}-value" for name in DEV_SECRETS}
    base = {"environment": "production", "database_url": "postgresql://db/x", "temporal_address": "t:7233"}
    Settings.model_validate({**base, **real})  # all real: accepted
    for name in DEV_SECRETS:
        with pytest.raises(ValidationError, match=name):
            Settings.model_validate({**base, **real, name: DEV_SECRETS[name]})


def test_production_needs_real_infrastructure() -> None:
    real = {name: f"real-{name}-value" for name in DEV_SECRETS}
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        Settings.model_validate({"environment": "production", **real})
