"""The deadlines of a DAML request (a SAR asking the NCA for a defence against money laundering).

POCA 2002 s.335: after a SAR asking consent to go on with a transaction, the NCA has a *notice period* of
7 working days starting with the first working day after the day the request was made; if it does not refuse
within it, consent is deemed given. A refusal within the notice period starts a *moratorium period* of 31
days starting with the day the refusal was received; when it ends without further word, consent is deemed
given. "Working day" excludes weekends and bank holidays in the part of the UK where the report was made:
we report from England, so the `holidays` library's United Kingdom calendar, subdivision England (it carries
substitute days, e.g. Boxing Day 2026 on a Saturday is kept on Monday 28 December).

The deadlines are instants in London time (end of the last day), returned in UTC: the SAR workflow gets them
from an activity (the calendar is data that changes with library updates, and workflows must stay
deterministic) and sleeps until them on a durable timer.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

LONDON = ZoneInfo("Europe/London")
NOTICE_WORKING_DAYS = 7
MORATORIUM_DAYS = 31


@lru_cache(maxsize=16)
def _england(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("GB", subdiv="ENG", years=[year - 1, year, year + 1])


def is_working_day(day: date) -> bool:
    """Monday to Friday and not a bank holiday in England."""
    return day.weekday() < 5 and day not in _england(day.year)


def add_working_days(start: date, days: int) -> date:
    """The `days`-th working day after `start` (`start` itself never counts)."""
    if days < 1:
        raise ValueError("count at least one working day")
    day, counted = start, 0
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(day):
            counted += 1
    return day


def end_of_day(day: date) -> datetime:
    """The instant a London day ends (midnight starting the next day), in UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=LONDON).astimezone(UTC)


def london_date(at: datetime) -> date:
    return at.astimezone(LONDON).date()


def notice_period_ends(requested_at: datetime) -> datetime:
    """When consent is deemed given if the NCA has not refused: the end of the 7th working day after
    the day of the request (a request on 23 December 2026 runs to the end of 6 January 2027)."""
    return end_of_day(add_working_days(london_date(requested_at), NOTICE_WORKING_DAYS))


def moratorium_ends(refused_at: datetime) -> datetime:
    """The end of the 31-day moratorium that starts with the day the refusal was received."""
    return end_of_day(london_date(refused_at) + timedelta(days=MORATORIUM_DAYS - 1))
