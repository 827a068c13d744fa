"""Production refuses development, short, patterned or empty secrets and a local public URL; development
works with none set and derives its public URL from API_PORT."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from config.settings import DEV_SECRETS, Settings

BASE = {
    "environment": "production",
    "database_url": "postgresql://db/x",
    "temporal_address": "t:7233",
    "public_base_url": "https://api.broker.example",
    "staff_ip_allowlist": "10.20.0.0/16",
}


def strong_secrets() -> dict[str, str]:
    values = {name: secrets.token_urlsafe(32) for name in DEV_SECRETS}
    values["totp_encryption_keys"] = f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}"
    return values


def production(**overrides: Any) -> Settings:
    return Settings.model_validate({**BASE, **strong_secrets(), **overrides})


def test_development_defaults_are_usable() -> None:
    s = Settings(environment="development")
    assert set(s.dev_defaults_in_use()) == set(DEV_SECRETS)
    assert set(s.weak_secrets()) == set(DEV_SECRETS)


def test_production_accepts_strong_secrets() -> None:
    assert production().weak_secrets() == {}


def test_production_refuses_any_dev_default() -> None:
    for name in DEV_SECRETS:
        with pytest.raises(ValidationError, match=name.upper()):
            production(**{name: DEV_SECRETS[name]})


@pytest.mark.parametrize(
    "value",
    [
        "x",
        "changeme",
        "changeme" * 5,
        "dev-only-something-else",
        "dev-only-" + secrets.token_urlsafe(32),
        "a" * 64,
        "0123456789" * 4,
        "",
        "   ",
    ],
)
def test_production_refuses_weak_secrets(value: str) -> None:
    for name in ("jwt_secret", "email_token_secret", "bank_webhook_secret", "binance_secret"):
        with pytest.raises(ValidationError, match=name.upper()):
            production(**{name: value})


def test_production_refuses_an_empty_webhook_secret() -> None:
    with pytest.raises(ValidationError, match="BANK_WEBHOOK_SECRET is empty"):
        production(bank_webhook_secret="")


def test_production_refuses_a_dev_key_among_the_totp_keys() -> None:
    real = Fernet.generate_key().decode()
    with pytest.raises(ValidationError, match="TOTP_ENCRYPTION_KEYS"):
        production(totp_encryption_keys=f"{real},{DEV_SECRETS['totp_encryption_keys']}")


def test_production_refuses_trusting_every_proxy() -> None:
    with pytest.raises(ValidationError, match="FORWARDED_ALLOW_IPS"):
        production(forwarded_allow_ips="*")
    assert production(forwarded_allow_ips="10.0.0.0/24").forwarded_allow_ips == "10.0.0.0/24"


def test_production_needs_real_infrastructure() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        production(database_url="")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://localhost:8000",
        "https://localhost",
        "https://127.0.0.1:8443",
        "https://[::1]/",
        "https://0.0.0.0",
        "https://10.0.0.5",
        "https://api.localhost",
        "http://api.broker.example",
    ],
)
def test_production_refuses_a_local_or_plain_http_public_url(url: str) -> None:
    with pytest.raises(ValidationError, match="PUBLIC_BASE_URL"):
        production(public_base_url=url)


def test_public_base_url_follows_the_api_port_unless_set() -> None:
    assert Settings(environment="development", api_port=8123).public_base_url == "http://localhost:8123"
    assert Settings(environment="test").public_base_url == "http://localhost:8000"
    explicit = Settings(environment="development", api_port=8123, public_base_url="https://x.example")
    assert explicit.public_base_url == "https://x.example"


def test_production_needs_a_staff_ip_allowlist() -> None:
    with pytest.raises(ValidationError, match="STAFF_IP_ALLOWLIST"):
        production(staff_ip_allowlist="")


def test_a_malformed_staff_ip_allowlist_is_refused() -> None:
    with pytest.raises(ValidationError, match="STAFF_IP_ALLOWLIST"):
        Settings(staff_ip_allowlist="10.0.0.0/8, not-an-address")
    assert Settings(staff_ip_allowlist="10.0.0.0/8, 192.0.2.7, ::1").staff_ip_allowlist


def test_name_matching_data_is_loaded_before_serving_outside_tests() -> None:
    assert production().name_matching_warmup is True
    assert Settings(environment="development").name_matching_warmup is True
    assert Settings(environment="test").name_matching_warmup is False
    assert Settings(environment="test", name_matching_warmup=True).name_matching_warmup is True
