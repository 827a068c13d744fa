"""Which TOTP time step a scripted client (`make demo`, the tests) should use next.

The server accepts each step once, in order, within a drift window of one step either side. A code of the
previous step is still accepted only until the current step ends, so it is used only while at least
`MARGIN_S` of the step are left: a request that reaches the server a few seconds later on a loaded machine
must not find its code expired (`totp_invalid`).
"""

from __future__ import annotations

import time

STEP_S = 30
MARGIN_S = 10.0


def next_step(last_step: int, *, margin_s: float = MARGIN_S, max_wait_s: float = STEP_S) -> int:
    """The earliest unused step whose code the server will still accept `margin_s` from now. When the
    drift window's steps are used up, waits for the next step if that is at most `max_wait_s` away,
    else raises RuntimeError (the tests pass a short wait: a sleep stalls their event loop, and the API
    and workers running on it)."""
    while True:
        now = time.time()
        now_step = int(now // STEP_S)
        oldest = now_step - 1 if now % STEP_S < STEP_S - margin_s else now_step
        step = max(oldest, last_step + 1)
        if step <= now_step + 1:
            return step
        wait = STEP_S - now % STEP_S + 0.05
        if wait > max_wait_s:
            raise RuntimeError("no unused TOTP step left in the drift window")
        time.sleep(wait)
