"""OFAC SDN list, "legacy" CSV format: sdn.csv, alt.csv, add.csv and sdn_comments.csv.

The files have no header row and spell null as `-0-`. `Remarks` in sdn.csv is cut at a fixed length;
the rest of it is in sdn_comments.csv under the same `ent_num`, continuing mid-word, so the two are
joined without a separator before parsing. Remarks hold the structured facts as `; `-separated
clauses: "DOB 28 Jul 1963", "nationality Iran", "Passport P0017003 (Belize)", "a.k.a. 'BNC'" (OFAC's
weak aliases, which the alt file does not carry) and "Digital Currency Address - XBT 1A2b...".
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from models.screening import (
    CryptoAddress,
    EntityType,
    Identifier,
    ListedEntity,
    ListedName,
    ListSource,
    PartialDate,
)
from services.screening.dates import parse_ofac_dob

NULL = "-0-"

_TYPES: dict[str, EntityType] = {"individual": "individual", "vessel": "vessel", "aircraft": "aircraft"}
_ALT_KINDS = {"aka": "aka", "fka": "fka", "nka": "nka"}
_WEAK_ALIAS = re.compile(r"\b(a\.k\.a\.|f\.k\.a\.|n\.k\.a\.)\s+'([^']+)'")
_CRYPTO = re.compile(r"Digital Currency Address - ([A-Za-z0-9]+)\s+([A-Za-z0-9:]+)")
_IDENTIFIER = re.compile(
    r"^(?:alt\. )?(?P<kind>Passport|National ID No\.|Tax ID No\.|SSN|Cedula No\.|Registration Number|"
    r"Registration ID|Identification Number|C\.U\.R\.P\.|R\.F\.C\.|D\.N\.I\.|NIT #|Vessel Registration "
    r"Identification|Aircraft Manufacturer's Serial Number \(MSN\)|Legal Entity Number|Company Number|"
    r"UK Company Number)\s+(?P<value>[^()]+?)\s*(?:\((?P<country>[^)]+)\))?\.?$"
)


def _cell(value: str) -> str | None:
    value = value.strip()
    return None if not value or value == NULL else value


def _rows(path: Path, width: int) -> Iterator[list[str]]:
    """CSV rows of at least `width` cells; the trailing Ctrl-Z (0x1A) OFAC appends is not a row."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for row in csv.reader(handle):
            if len(row) >= width:
                yield row


def _remark_clauses(remarks: str) -> list[str]:
    return [c.strip().rstrip(".").strip() for c in remarks.split(";") if c.strip()]


def _parse_remarks(entity: ListedEntity, remarks: str) -> None:
    for kind, name in _WEAK_ALIAS.findall(remarks):
        alias_kind = {"a.k.a.": "aka", "f.k.a.": "fka", "n.k.a.": "nka"}[kind]
        entity.names.append(ListedName(name=name.strip(), kind=alias_kind, quality="weak"))
    for currency, address in _CRYPTO.findall(remarks):
        entity.crypto_addresses.append(CryptoAddress(currency=currency.upper(), address=address))
    for clause in _remark_clauses(remarks):
        lowered = clause.lower()
        if lowered.startswith("dob "):
            parsed: PartialDate | None = parse_ofac_dob(clause[4:])
            if parsed is not None:
                entity.dates_of_birth.append(parsed)
        elif lowered.startswith(("nationality ", "citizen ")):
            entity.nationalities.append(clause.split(" ", 1)[1].strip())
        else:
            found = _IDENTIFIER.match(clause)
            if found:
                entity.identifiers.append(
                    Identifier(
                        kind=found["kind"].rstrip("."),
                        value=found["value"].strip(),
                        country=(found["country"] or None),
                    )
                )


def load_ofac_sdn(directory: Path) -> list[ListedEntity]:
    """Read an OFAC SDN legacy CSV set from `directory` into normalised entities (in file order)."""
    if not (directory / "sdn.csv").is_file():
        raise FileNotFoundError(directory / "sdn.csv")
    comments: dict[str, str] = defaultdict(str)
    for row in _rows(directory / "sdn_comments.csv", 2):
        comments[row[0].strip()] += row[1]

    entities: dict[str, ListedEntity] = {}
    for row in _rows(directory / "sdn.csv", 12):
        ent_num = row[0].strip()
        name = _cell(row[1])
        if not ent_num or name is None:
            continue
        programme_cell = _cell(row[3]) or ""
        programmes = [p.strip(" []") for p in programme_cell.split("] [") if p.strip(" []")]
        entity = ListedEntity(
            source=ListSource.OFAC_SDN,
            source_id=ent_num,
            entity_type=_TYPES.get((_cell(row[2]) or "").lower(), "entity"),
            programmes=programmes,
            names=[ListedName(name=name, kind="primary", quality="strong")],
        )
        remarks = (_cell(row[11]) or "") + comments.get(ent_num, "")
        if remarks:
            entity.remarks = remarks
            _parse_remarks(entity, remarks)
        entities[ent_num] = entity

    for row in _rows(directory / "alt.csv", 4):
        aliased = entities.get(row[0].strip())
        alias = _cell(row[3])
        if aliased is None or alias is None:
            continue
        kind = _ALT_KINDS.get((_cell(row[2]) or "aka").lower(), "aka")
        aliased.names.append(ListedName(name=alias, kind=kind, quality="strong"))

    for row in _rows(directory / "add.csv", 5):
        addressed = entities.get(row[0].strip())
        country = _cell(row[4])
        if addressed is not None and country is not None:
            # Addresses are not screened; the country is kept as an identifier-like fact for reviewers.
            addressed.identifiers.append(Identifier(kind="address_country", value=country))

    for entity in entities.values():
        entity.names = _dedupe_names(entity.names)
    return list(entities.values())


def _dedupe_names(names: list[ListedName]) -> list[ListedName]:
    """Drop a weak alias that repeats a stronger name (remarks often restate alt.csv)."""
    seen: dict[str, ListedName] = {}
    for listed in names:
        key = listed.name.casefold()
        if key not in seen or (seen[key].quality == "weak" and listed.quality == "strong"):
            seen[key] = listed
    return list(seen.values())
