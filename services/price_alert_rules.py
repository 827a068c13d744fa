"""When a price alert fires: pure rules, no I/O, so every case is tested directly.

- An armed alert fires when the observed price is at or beyond its price (ABOVE: price >= alert; BELOW:
  price <= alert) and its cooldown since the last firing has passed.
- After firing it is disarmed, and re-arms only once the price has moved back past the hysteresis band
  (ABOVE: below alert x (1 - band); BELOW: above alert x (1 + band)). A price oscillating around the alert
  level inside the band therefore fires once, not on every tick.
- The cooldown is a second guard for prices that swing wider than the band: an alert fires at most once
  per cooldown. A crossing during the cooldown is not lost: the alert stays armed and fires at the first
  check after the cooldown if the price is still beyond.
- A one-shot alert becomes inactive when it fires; a recurring one keeps going.

The check instant (`now`) is the database's clock in the evaluating transaction (services/price_alerts.py),
so cooldowns do not depend on which worker's clock checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from models.price_alerts import AlertDirection


@dataclass(frozen=True)
class AlertState:
    direction: AlertDirection
    price: Decimal
    recurring: bool
    active: bool = True
    armed: bool = True
    fired_count: int = 0
    last_fired_at: datetime | None = None


@dataclass(frozen=True)
class AlertPolicy:
    band: Decimal  # a fraction of the alert's price, e.g. 0.005 for 0.5 %
    cooldown: timedelta


@dataclass(frozen=True)
class Decision:
    state: AlertState
    fired: bool


def is_beyond(state: AlertState, observed: Decimal) -> bool:
    """The market is at or past the alert's level."""
    if state.direction is AlertDirection.ABOVE:
        return observed >= state.price
    return observed <= state.price


def rearm_level(state: AlertState, band: Decimal) -> Decimal:
    """The price the market must move back past before the alert can fire again."""
    if state.direction is AlertDirection.ABOVE:
        return state.price * (1 - band)
    return state.price * (1 + band)


def is_back_past_band(state: AlertState, observed: Decimal, band: Decimal) -> bool:
    level = rearm_level(state, band)
    if state.direction is AlertDirection.ABOVE:
        return observed < level
    return observed > level


def cooled_down(state: AlertState, now: datetime, cooldown: timedelta) -> bool:
    return state.last_fired_at is None or now >= state.last_fired_at + cooldown


def evaluate(state: AlertState, observed: Decimal, now: datetime, policy: AlertPolicy) -> Decision:
    """The alert's next state after seeing `observed` at `now`, and whether it fires."""
    if not state.active:
        return Decision(state, False)
    if not state.armed:
        if is_back_past_band(state, observed, policy.band):
            return Decision(replace(state, armed=True), False)
        return Decision(state, False)
    if is_beyond(state, observed) and cooled_down(state, now, policy.cooldown):
        fired = replace(
            state,
            armed=False,
            active=state.recurring,
            fired_count=state.fired_count + 1,
            last_fired_at=now,
        )
        return Decision(fired, True)
    return Decision(state, False)
