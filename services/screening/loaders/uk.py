"""UK Sanctions List (FCDO), CSV format.

The published CSV opens with a "Report Date: ..." line, then a header row, then one row per *name*:
all rows of one designation share its `Unique ID` (e.g. "RUS0001"). Name parts are `Name 1`..`Name 5`
(given names) and `Name 6` (the family name or the whole entity name); `Name type` says "Primary Name",
"Primary Name Variation" or "Alias"; `Alias strength` says "Good quality" or "Low quality" (blank on
primary names). Facts such as `D.O.B` (dd/mm/yyyy with 00 for an unknown part), `Nationality(/ies)`,
`Passport number` and `National Identifier number` repeat on each row or sit on one of them; several
values in a cell are separated by "|". Columns are found by header name, so new columns do not break
the reader.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from models.screening import EntityType, Identifier, ListedEntity, ListedName, ListSource
from services.screening.dates import parse_iso_partial

_TYPES: dict[str, EntityType] = {"individual": "individual", "entity": "entity", "ship": "vessel"}
_MULTI = re.compile(r"\s*[|;]\s*|\s*\(\d+\)\s*")


def _split(cell: str) -> list[str]:
    return [part.strip() for part in _MULTI.split(cell or "") if part and part.strip()]


def _find_header(rows: list[list[str]]) -> tuple[int, dict[str, int]]:
    for index, row in enumerate(rows[:10]):
        cleaned = [cell.strip() for cell in row]
        if "Unique ID" in cleaned and "Name 6" in cleaned:
            return index, {cell: i for i, cell in enumerate(cleaned)}
    raise ValueError("not a UK Sanctions List CSV: no header row with 'Unique ID' and 'Name 6'")


def load_uk_sanctions_csv(path: Path) -> list[ListedEntity]:
    """Read a UK Sanctions List CSV file into normalised entities (one per `Unique ID`)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    header_at, columns = _find_header(rows)

    def cell(row: list[str], *names: str) -> str:
        for name in names:
            index = columns.get(name)
            if index is not None and index < len(row) and row[index].strip():
                return row[index].strip()
        return ""

    entities: dict[str, ListedEntity] = {}
    for row in rows[header_at + 1 :]:
        unique_id = cell(row, "Unique ID")
        if not unique_id:
            continue
        entity = entities.get(unique_id)
        if entity is None:
            kind = cell(row, "Designation Type", "Individual, Entity, Ship").lower()
            entity = ListedEntity(
                source=ListSource.UK_FCDO,
                source_id=unique_id,
                entity_type=_TYPES.get(kind, "unknown"),
                remarks=cell(row, "Other Information") or None,
            )
            entities[unique_id] = entity

        given = [cell(row, f"Name {i}") for i in range(1, 6)]
        family = cell(row, "Name 6")
        full = " ".join(part for part in [*given, family] if part)
        if full:
            name_type = cell(row, "Name type").lower()
            strength = cell(row, "Alias strength").lower()
            if name_type.startswith("primary name") and not name_type.endswith("variation"):
                kind_of_name = "primary"
            else:
                kind_of_name = "aka"
            quality = "weak" if strength.startswith(("low", "weak")) else "strong"
            entity.names.append(ListedName(name=full, kind=kind_of_name, quality=quality))
        original = cell(row, "Name non-latin script")
        if original:
            entity.names.append(ListedName(name=original, kind="original_script", quality="strong"))

        regime = cell(row, "Regime Name")
        if regime and regime not in entity.programmes:
            entity.programmes.append(regime)
        for raw in _split(cell(row, "D.O.B")):
            dob = parse_iso_partial(raw)
            if dob is not None and dob not in entity.dates_of_birth:
                entity.dates_of_birth.append(dob)
        for nationality in _split(cell(row, "Nationality(/ies)", "Nationality")):
            if nationality not in entity.nationalities:
                entity.nationalities.append(nationality)
        for column, kind in (("Passport number", "Passport"), ("National Identifier number", "National ID")):
            for value in _split(cell(row, column)):
                identifier = Identifier(kind=kind, value=value)
                if identifier not in entity.identifiers:
                    entity.identifiers.append(identifier)

    for entity in entities.values():
        seen: set[str] = set()
        unique = []
        for listed in entity.names:
            if listed.name.casefold() not in seen:
                seen.add(listed.name.casefold())
                unique.append(listed)
        entity.names = unique
    return list(entities.values())
