"""Each loader reads the published format into the one normalised model (counts from the shipped files)."""

from __future__ import annotations

import csv
from pathlib import Path

from models.screening import ListSource
from services.screening.loaders import load_ofac_sdn, load_uk_sanctions_csv, load_un_consolidated


def test_ofac_sdn_loader_reads_every_entry_alias_date_and_wallet(sanctions_dir: Path) -> None:
    entities = load_ofac_sdn(sanctions_dir / "ofac")
    assert len(entities) == 8976
    by_id = {e.source_id: e for e in entities}
    assert sum(1 for e in entities if e.entity_type == "individual") == 4620
    assert sum(1 for e in entities if e.crypto_addresses) == 15  # as the data README says

    andreyev = by_id["29703"]  # remarks continue in sdn_comments.csv
    assert andreyev.primary_name == "ANDREYEV, Anton Nikolaeyvich"
    assert andreyev.programmes == ["CYBER2", "ELECTION-EO13848"]
    assert [d.label() for d in andreyev.dates_of_birth] == ["1985-03-03"]
    assert andreyev.nationalities == ["Russia"]
    assert any(i.kind == "Passport" and i.value == "4005504207" for i in andreyev.identifiers)
    currencies = {a.currency for a in andreyev.crypto_addresses}
    assert {"XBT", "ETH", "LTC", "ZEC", "BSV"} <= currencies  # ZEC and BSV are only in the comments file

    bnc = by_id["306"]
    assert {(n.name, n.kind, n.quality) for n in bnc.names} >= {
        ("NATIONAL BANK OF CUBA", "aka", "strong"),
        ("BNC", "aka", "weak"),
    }


def test_ofac_crypto_sample_has_three_entities_with_wallets(sanctions_dir: Path) -> None:
    entities = load_ofac_sdn(sanctions_dir / "ofac-crypto-sample")
    assert len(entities) == 17
    assert sorted(len(e.crypto_addresses) for e in entities if e.crypto_addresses) == [1, 6, 25]


def test_un_loader_reads_individuals_entities_aliases_and_partial_dates(sanctions_dir: Path) -> None:
    entities = load_un_consolidated(sanctions_dir / "un" / "consolidated.xml")
    assert len(entities) == 1003
    assert sum(1 for e in entities if e.entity_type == "individual") == 730
    assert sum(1 for e in entities if e.entity_type == "entity") == 273
    assert all(e.source is ListSource.UN_SC for e in entities)
    badege = next(e for e in entities if e.source_id == "CDi.001")
    assert badege.primary_name == "ERIC BADEGE"
    assert [d.label() for d in badege.dates_of_birth] == ["1971"]
    assert badege.nationalities == ["Democratic Republic of the Congo"]
    qualities = {n.quality for e in entities for n in e.names if n.kind != "primary"}
    assert qualities == {"strong", "weak"}  # "Good" and "Low" aliases both kept, told apart
    assert any(n.kind == "original_script" for e in entities for n in e.names)
    assert any(d.year_to for e in entities for d in e.dates_of_birth)  # BETWEEN dates kept as a range


def _uk_csv(path: Path) -> None:
    header = [
        "Last Updated",
        "Unique ID",
        "OFSI Group ID",
        "UN Reference Number",
        "Name 6",
        "Name 1",
        "Name 2",
        "Name 3",
        "Name 4",
        "Name 5",
        "Name type",
        "Alias strength",
        "Title",
        "Name non-latin script",
        "Non-latin script type",
        "Non-latin script language",
        "Regime Name",
        "Designation Type",
        "Designation source",
        "Sanctions Imposed",
        "Other Information",
        "D.O.B",
        "Nationality(/ies)",
        "National Identifier number",
        "Passport number",
    ]
    rows = [
        [
            "01/01/2026",
            "RUS9001",
            "99001",
            "",
            "PETROVSKY",
            "Ivan",
            "Sergeyevich",
            "",
            "",
            "",
            "Primary Name",
            "",
            "",
            "Иван Сергеевич ПЕТРОВСКИЙ",
            "Cyrillic",
            "Russian",
            "Russia",
            "Individual",
            "UK",
            "Asset freeze",
            "",
            "14/02/1971",
            "Russia",
            "",
            "7501234567",
        ],
        [
            "01/01/2026",
            "RUS9001",
            "99001",
            "",
            "PETROVSKI",
            "Ivan",
            "",
            "",
            "",
            "",
            "Alias",
            "Low quality",
            "",
            "",
            "",
            "",
            "Russia",
            "Individual",
            "UK",
            "Asset freeze",
            "",
            "14/02/1971",
            "Russia",
            "",
            "",
        ],
        [
            "01/01/2026",
            "CYB9002",
            "99002",
            "",
            "NORTHWIND DIGITAL LTD",
            "",
            "",
            "",
            "",
            "",
            "Primary Name",
            "",
            "",
            "",
            "",
            "",
            "Cyber",
            "Entity",
            "UK",
            "Asset freeze",
            "",
            "",
            "",
            "",
            "",
        ],
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.write("Report Date: 01-Jan-2026\n")
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_uk_loader_groups_name_rows_by_unique_id(tmp_path: Path) -> None:
    path = tmp_path / "UK_Sanctions_List.csv"
    _uk_csv(path)
    entities = load_uk_sanctions_csv(path)
    assert [e.source_id for e in entities] == ["RUS9001", "CYB9002"]
    ivan, northwind = entities
    assert ivan.entity_type == "individual" and northwind.entity_type == "entity"
    assert [(n.name, n.kind, n.quality) for n in ivan.names] == [
        ("Ivan Sergeyevich PETROVSKY", "primary", "strong"),
        ("Иван Сергеевич ПЕТРОВСКИЙ", "original_script", "strong"),
        ("Ivan PETROVSKI", "aka", "weak"),
    ]
    assert [d.label() for d in ivan.dates_of_birth] == ["1971-02-14"]
    assert ivan.nationalities == ["Russia"]
    assert ivan.programmes == ["Russia"]
    assert [(i.kind, i.value) for i in ivan.identifiers] == [("Passport", "7501234567")]


def test_content_hash_ignores_order_and_changes_with_content(sanctions_dir: Path) -> None:
    entity = load_ofac_sdn(sanctions_dir / "ofac-crypto-sample")[0]
    same = entity.model_copy(deep=True)
    same.names.reverse()
    assert same.content_hash() == entity.content_hash()
    changed = entity.model_copy(deep=True)
    changed.nationalities.append("Narnia")
    assert changed.content_hash() != entity.content_hash()
