"""A price alert's pure rules: fire on a crossing, re-arm only past the band, once per cooldown at most."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from models.price_alerts import AlertDirection
from services.price_alert_rules import AlertPolicy, AlertState, evaluate, rearm_level

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = AlertPolicy(band=Decimal("0.01"), cooldown=timedelta(minutes=15))


def _run(state: AlertState, ticks: list[tuple[str, int]]) -> tuple[AlertState, list[int]]:
    """Feed (price, seconds after T0) ticks; the seconds at which the alert fired."""
    fired = []
    for price, at in ticks:
        decision = evaluate(state, Decimal(price), T0 + timedelta(seconds=at), POLICY)
        state = decision.state
        if decision.fired:
            fired.append(at)
    return state, fired


def test_an_above_alert_fires_once_on_the_crossing_not_while_the_price_oscillates_inside_the_band() -> None:
    state = AlertState(AlertDirection.ABOVE, Decimal("70000"), recurring=True)
    # 69,300 is the re-arm level: everything above it (and below 70,000 or above) is inside the hysteresis.
    assert rearm_level(state, POLICY.band) == Decimal("69300.00")
    ticks = [("69000", 0), ("70000", 1), ("69900", 2), ("70100", 3), ("69301", 4), ("70500", 5), ("69999", 6)]
    state, fired = _run(state, ticks)
    assert fired == [1]
    assert state.fired_count == 1 and not state.armed and state.active


def test_after_moving_back_past_the_band_it_fires_again_but_only_after_the_cooldown() -> None:
    state = AlertState(AlertDirection.ABOVE, Decimal("70000"), recurring=True)
    state, fired = _run(state, [("70000", 0), ("69299", 60), ("70001", 120)])  # re-armed, crossed in cooldown
    assert fired == [0] and state.armed
    state, fired = _run(state, [("70001", 899), ("70001", 900)])  # fires at the first check after it
    assert fired == [900] and state.fired_count == 2 and state.last_fired_at == T0 + timedelta(seconds=900)


def test_a_crossing_in_the_cooldown_that_reverses_before_it_ends_does_not_fire() -> None:
    state = AlertState(AlertDirection.ABOVE, Decimal("70000"), recurring=True)
    state, fired = _run(state, [("70000", 0), ("69000", 10), ("70500", 20), ("69500", 1000)])
    assert fired == [0] and state.armed  # still armed: a later crossing fires


def test_a_below_alert_mirrors_it() -> None:
    state = AlertState(AlertDirection.BELOW, Decimal("2000"), recurring=True)
    assert rearm_level(state, POLICY.band) == Decimal("2020.00")
    ticks = [("2001", 0), ("2000", 1), ("2019", 2), ("1990", 3), ("2021", 4), ("1999", 2000)]
    state, fired = _run(state, ticks)
    assert fired == [1, 2000] and state.fired_count == 2


def test_a_one_shot_alert_fires_once_and_is_done() -> None:
    state = AlertState(AlertDirection.ABOVE, Decimal("100"), recurring=False)
    state, fired = _run(state, [("100", 0), ("50", 10_000), ("150", 20_000)])
    assert fired == [0] and not state.active and state.fired_count == 1


def test_an_alert_already_beyond_its_level_when_set_fires_at_the_first_check() -> None:
    state = AlertState(AlertDirection.BELOW, Decimal("100"), recurring=False)
    _, fired = _run(state, [("90", 0)])
    assert fired == [0]
