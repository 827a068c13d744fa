"""The dashboard's facts from their owners: the router's circuit breakers, the live books' ages, the
database, and a Temporal that does not answer shown as down while the rest still shows."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from services.circuit_breaker import CircuitBreakers
from services.staff import dashboard


class BookAgesOf:
    """Book ages as `BookKeeper.age_s` reports them (seconds since confirmed; None while void)."""

    def __init__(self, ages: dict[tuple[str, str], float | None]) -> None:
        self.ages = ages

    def age_s(self, venue: str, symbol: str) -> float | None:
        return self.ages[(venue, symbol)]


async def test_an_open_breaker_a_void_book_and_temporal_down_are_each_shown(engine: AsyncEngine) -> None:
    breakers = CircuitBreakers(failure_threshold=2)
    for _ in range(2):
        breakers.record_failure("kraken")

    async def temporal_down() -> None:
        raise ConnectionError("no route to Temporal")

    board = await dashboard.gather(
        engine,
        temporal_check=temporal_down,
        breakers=breakers,
        books=BookAgesOf({("binance", "BTC-GBP"): 0.4, ("kraken", "BTC-GBP"): None}),
        venues={"binance": ("BTC-GBP",), "kraken": ("BTC-GBP",)},
        max_book_age_s=2.0,
    )
    assert board.postgres == "ok" and board.temporal == "unavailable: ConnectionError"
    by_venue = {v.venue: v for v in board.venues}
    assert by_venue["binance"].breaker == "closed" and by_venue["binance"].book_ages == {"BTC-GBP": 0.4}
    assert by_venue["kraken"].breaker == "open" and by_venue["kraken"].recent_failures == 2
    assert by_venue["kraken"].book_ages == {"BTC-GBP": None}
    assert set(board.queues) == {
        "withdrawals awaiting approval",
        "withdrawals needing attention",
        "KYC submissions in review",
        "deposits held in suspense",
    }
