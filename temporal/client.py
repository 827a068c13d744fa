"""The one way every process connects to Temporal: address, namespace and TLS from settings,
and the pydantic data converter (Decimal, UUID and datetime round-trip exactly)."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from config import Settings


def tls_config(settings: Settings) -> TLSConfig | bool:
    if not settings.temporal_tls:
        return False
    if settings.temporal_tls_cert_path and settings.temporal_tls_key_path:
        return TLSConfig(
            client_cert=Path(settings.temporal_tls_cert_path).read_bytes(),
            client_private_key=Path(settings.temporal_tls_key_path).read_bytes(),
        )
    return True


async def connect(settings: Settings, address: str | None = None) -> Client:
    """Connect with our data converter. `address` overrides the setting (tests, dev stack)."""
    target = address or settings.temporal_address or f"127.0.0.1:{settings.temporal_port}"
    return await Client.connect(
        target,
        namespace=settings.temporal_namespace,
        tls=tls_config(settings),
        api_key=settings.temporal_api_key or None,
        data_converter=pydantic_data_converter,
    )
