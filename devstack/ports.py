"""Port checks, so a taken port fails fast with a clear message instead of a hang."""

from __future__ import annotations

import random
import socket
import time

# Below Linux's default ephemeral range (32768-60999): a port there can be handed to some client's
# outgoing connection between a check and the bind, which a run of several ports makes likely.
_RUN_RANGE = (20000, 32000)


class PortInUse(RuntimeError):
    """A port the stack needs is taken: stop the other process or change the setting named."""


def ensure_free(port: int, setting: str, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise PortInUse(
                f"port {port} on {host} is already in use; stop whatever holds it or set {setting.upper()}"
            ) from e


def free_port() -> int:
    """An ephemeral port that was free a moment ago (good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(span: int) -> int:
    """A base port with `span` consecutive free ports (a sandbox runner binds base + each offset)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(_RUN_RANGE[0], _RUN_RANGE[1] - span)
        try:
            for off in range(span):
                ensure_free(base + off, "sandbox_port")
        except PortInUse:
            continue
        return base
    raise PortInUse(f"no run of {span} free ports between {_RUN_RANGE[0]} and {_RUN_RANGE[1]}")


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:.0f}s") from None
            time.sleep(0.05)
