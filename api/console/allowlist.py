"""The IP allowlist of staff routes (`STAFF_IP_ALLOWLIST`): /console and /api/v1/admin* answer only
clients whose address is in one of the listed networks; anyone else gets a 403 problem before any route,
login form or session check runs. The address is the TCP peer, or what a trusted proxy reports
(`FORWARDED_ALLOW_IPS`, applied outside this middleware). Empty list: no restriction (development)."""

from __future__ import annotations

import ipaddress
import json
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("api.console.allowlist")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> tuple[Network, ...]:
    """`"10.0.0.0/8, 192.0.2.7"` -> networks (a bare address is a /32 or /128); raises ValueError."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()
    )


def is_staff_path(path: str) -> bool:
    """/console and below, and every /api/v1/admin… route."""
    return path == "/console" or path.startswith("/console/") or path.startswith("/api/v1/admin")


def allowed(networks: tuple[Network, ...], host: str | None) -> bool:
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in n for n in networks)


class StaffAllowlistMiddleware:
    def __init__(self, app: ASGIApp, networks: tuple[Network, ...]) -> None:
        self.app = app
        self.networks = networks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or not self.networks
            or not is_staff_path(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        host = client[0] if client else None
        if allowed(self.networks, host):
            await self.app(scope, receive, send)
            return
        log.warning("staff route refused to an address outside the allowlist: %s %s", host, scope["path"])
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps(
            {
                "type": "urn:broker:problem:address_not_allowed",
                "title": "Forbidden",
                "status": 403,
                "detail": "staff routes are not reachable from this address",
                "instance": scope["path"],
                "code": "address_not_allowed",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
