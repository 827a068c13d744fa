"""Enums the public API accepts in any letter case (`buy`, `Buy`, `BUY`), everywhere the same way.

Values are upper case in storage, in responses and in the OpenAPI schema; a client's casing of an input
is not worth a 422. `_missing_` is Python's own hook for a value that matches no member exactly, and
pydantic (bodies, query strings, workflow I/O) goes through it.
"""

from __future__ import annotations

from enum import StrEnum


class CaseInsensitiveEnum(StrEnum):
    """A `StrEnum` that also accepts its values in any case."""

    @classmethod
    def _missing_(cls, value: object) -> CaseInsensitiveEnum | None:
        if isinstance(value, str):
            folded = value.casefold()
            for member in cls:
                if member.value.casefold() == folded:
                    return member
        return None
