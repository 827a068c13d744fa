"""Partial dates of birth as the lists write them, and how a customer's date of birth compares.

Lists often know only a year, or "circa 1960", or a range "1960 to 1965"; a comparison must treat the
unknown parts as unknown, not as a mismatch.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

from models.screening import PartialDate

MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}

_DAY_MONTH_YEAR = re.compile(r"^(?:(\d{1,2})\s+)?([A-Za-z]{3})[a-z]*\s+(\d{4})$")
_YEAR = re.compile(r"^(\d{4})$")
_ISO = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def _single(text: str) -> PartialDate | None:
    text = text.strip().rstrip(".").strip()
    circa = False
    if text.lower().startswith("circa "):
        circa, text = True, text[6:].strip()
    if m := _YEAR.match(text):
        return PartialDate(year=int(m[1]), circa=circa)
    if m := _DAY_MONTH_YEAR.match(text):
        month = MONTHS.get(m[2].lower())
        if month is None:
            return None
        return PartialDate(year=int(m[3]), month=month, day=int(m[1]) if m[1] else None, circa=circa)
    if m := _ISO.match(text):
        return PartialDate(
            year=int(m[1]), month=int(m[2]) if m[2] else None, day=int(m[3]) if m[3] else None, circa=circa
        )
    return None


def parse_ofac_dob(text: str) -> PartialDate | None:
    """'28 Jul 1963', 'Jul 1963', '1963', 'circa 1963', '1960 to 1965', '01 Jan 1960 to 31 Dec 1962'."""
    if " to " in text:
        start, end = (_single(part) for part in text.split(" to ", 1))
        if start is None or end is None:
            return None
        if start.year == end.year:
            return start
        return PartialDate(year=start.year, year_to=end.year, circa=start.circa)
    return _single(text)


def parse_iso_partial(text: str) -> PartialDate | None:
    """'1963-07-28', '1963-07', '1963' (UN and UK lists; UK also writes 'dd/mm/yyyy', with 00 for unknown)."""
    text = text.strip()
    if m := re.match(r"^(\d{2})/(\d{2})/(\d{4})$", text):
        day, month, year = int(m[1]), int(m[2]), int(m[3])
        if year == 0:
            return None
        return PartialDate(year=year, month=month or None, day=(day or None) if month else None)
    return _single(text)


class DobAgreement(StrEnum):
    EXACT = "EXACT"  # every part the list gives agrees (day, month and year)
    YEAR = "YEAR"  # the year (or range, or circa window) agrees; finer parts unknown
    MISMATCH = "MISMATCH"
    UNKNOWN = "UNKNOWN"  # one side has no date of birth


def compare_dob(customer: date | None, listed: list[PartialDate]) -> tuple[DobAgreement, PartialDate | None]:
    """The best agreement between a customer's date of birth and any of a listing's dates."""
    if customer is None or not listed:
        return DobAgreement.UNKNOWN, None
    best: tuple[DobAgreement, PartialDate | None] = (DobAgreement.MISMATCH, listed[0])
    for candidate in listed:
        low = candidate.year - (1 if candidate.circa else 0)
        high = (candidate.year_to or candidate.year) + (1 if candidate.circa else 0)
        if not low <= customer.year <= high:
            continue
        if candidate.month is not None and candidate.year_to is None and candidate.month != customer.month:
            continue
        if candidate.day is not None and candidate.year_to is None and candidate.day != customer.day:
            continue
        if candidate.day is not None and not candidate.circa and candidate.year_to is None:
            return DobAgreement.EXACT, candidate
        best = (DobAgreement.YEAR, candidate)
    return best
