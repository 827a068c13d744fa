"""UN Security Council Consolidated List, XML format (`CONSOLIDATED_LIST/INDIVIDUALS|ENTITIES`).

Individuals carry their name split over FIRST_NAME..FOURTH_NAME, aliases with a QUALITY of "Good" or
"Low" (entities: "a.k.a." / "f.k.a."), the name in its original script, dates of birth typed EXACT
(a DATE or a YEAR), APPROXIMATELY (a YEAR) or BETWEEN (FROM_YEAR..TO_YEAR), nationalities and documents.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from models.screening import EntityType, Identifier, ListedEntity, ListedName, ListSource, PartialDate
from services.screening.dates import parse_iso_partial


def _text(node: ET.Element | None, tag: str) -> str | None:
    if node is None:
        return None
    child = node.find(tag)
    if child is None or child.text is None:
        return None
    value = " ".join(child.text.split())
    return value or None


def _values(node: ET.Element, tag: str) -> list[str]:
    out: list[str] = []
    for group in node.findall(tag):
        for value in group.findall("VALUE"):
            if value.text and value.text.strip():
                out.append(" ".join(value.text.split()))
    return out


def _alias(alias: ET.Element) -> ListedName | None:
    name = _text(alias, "ALIAS_NAME")
    if name is None:
        return None
    quality = (_text(alias, "QUALITY") or "").lower()
    kind = "fka" if quality == "f.k.a." else "aka"
    return ListedName(name=name, kind=kind, quality="weak" if quality == "low" else "strong")


def _dob(node: ET.Element) -> PartialDate | None:
    kind = (_text(node, "TYPE_OF_DATE") or "EXACT").upper()
    if kind == "BETWEEN":
        start, end = _text(node, "FROM_YEAR"), _text(node, "TO_YEAR")
        if start and end and start.isdigit() and end.isdigit():
            return PartialDate(year=int(start), year_to=int(end))
        return None
    raw = _text(node, "DATE") or _text(node, "YEAR")
    parsed = parse_iso_partial(raw) if raw else None
    if parsed is not None and kind == "APPROXIMATELY":
        parsed.circa = True
    return parsed


def _common(node: ET.Element, entity_type: EntityType) -> ListedEntity:
    parts = [_text(node, tag) for tag in ("FIRST_NAME", "SECOND_NAME", "THIRD_NAME", "FOURTH_NAME")]
    primary = " ".join(p for p in parts if p)
    entity = ListedEntity(
        source=ListSource.UN_SC,
        source_id=_text(node, "REFERENCE_NUMBER") or _text(node, "DATAID") or "",
        entity_type=entity_type,
        programmes=[p for p in [_text(node, "UN_LIST_TYPE")] if p],
        names=[ListedName(name=primary, kind="primary", quality="strong")] if primary else [],
        remarks=_text(node, "COMMENTS1"),
    )
    original = _text(node, "NAME_ORIGINAL_SCRIPT")
    if original:
        entity.names.append(ListedName(name=original, kind="original_script", quality="strong"))
    return entity


def load_un_consolidated(path: Path) -> list[ListedEntity]:
    """Read the UN consolidated list XML file at `path` into normalised entities."""
    root = ET.parse(path).getroot()
    entities: list[ListedEntity] = []
    for node in root.iterfind("INDIVIDUALS/INDIVIDUAL"):
        entity = _common(node, "individual")
        for alias_node in node.findall("INDIVIDUAL_ALIAS"):
            alias = _alias(alias_node)
            if alias is not None:
                entity.names.append(alias)
        for dob_node in node.findall("INDIVIDUAL_DATE_OF_BIRTH"):
            dob = _dob(dob_node)
            if dob is not None:
                entity.dates_of_birth.append(dob)
        entity.nationalities = _values(node, "NATIONALITY")
        for document in node.findall("INDIVIDUAL_DOCUMENT"):
            number = _text(document, "NUMBER")
            if number:
                entity.identifiers.append(
                    Identifier(
                        kind=_text(document, "TYPE_OF_DOCUMENT") or "document",
                        value=number,
                        country=_text(document, "ISSUING_COUNTRY") or _text(document, "COUNTRY_OF_ISSUE"),
                    )
                )
        entities.append(entity)
    for node in root.iterfind("ENTITIES/ENTITY"):
        entity = _common(node, "entity")
        for alias_node in node.findall("ENTITY_ALIAS"):
            alias = _alias(alias_node)
            if alias is not None:
                entity.names.append(alias)
        entities.append(entity)
    return entities
