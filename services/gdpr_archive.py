"""The export's zip.

Layout: `manifest.json` (when, for whom, the sections and what was left out), `json/<section>.json` (a
list of objects) and `csv/<section>.csv` (a header row, then the same rows). CSV cells that a spreadsheet
would run as a formula (`=`, `+`, `@`, a tab or CR first, or `-` in front of something that is not a
number) get a leading `'` (OWASP's CSV-injection advice); `csv_cell` is the one rule, so a reader can
compare the two copies.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from services.gdpr_export import Section

EXCLUDED_NOTE = (
    "This export holds the personal data we keep about you and your account's records. Records we must "
    "keep confidential by law are not included."
)
_FORMULA_START = ("=", "+", "@", "\t", "\r")


def csv_cell(value: str | None) -> str:
    """A value as its CSV cell: None is empty, and a would-be formula is defused with a leading `'`."""
    if value is None:
        return ""
    if value.startswith(_FORMULA_START):
        return "'" + value
    if value.startswith("-"):
        try:
            Decimal(value)
        except InvalidOperation:
            return "'" + value
    return value


def _csv(section: Section) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(section.columns)
    for row in section.rows:
        writer.writerow([csv_cell(row[c]) for c in section.columns])
    return buf.getvalue()


def build_zip(request_id: uuid.UUID, user_id: uuid.UUID, sections: list[Section], now: datetime) -> bytes:
    """The archive's bytes (deterministic for the same sections and `now`)."""
    manifest = {
        "request_id": str(request_id),
        "customer_id": str(user_id),
        "generated_at": now.astimezone(UTC).isoformat(),
        "formats": {"json": "json/<section>.json", "csv": "csv/<section>.csv"},
        "sections": [{"name": s.name, "rows": len(s.rows), "note": s.note} for s in sections],
        "note": EXCLUDED_NOTE,
    }
    stamp = now.astimezone(UTC).timetuple()[:6]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:

        def put(name: str, data: str) -> None:
            z.writestr(
                zipfile.ZipInfo(name, date_time=stamp), data.encode(), compress_type=zipfile.ZIP_DEFLATED
            )

        put("manifest.json", json.dumps(manifest, indent=2))
        for s in sections:
            put(f"json/{s.name}.json", json.dumps(s.rows, indent=2, ensure_ascii=False))
            put(f"csv/{s.name}.csv", _csv(s))
    return buf.getvalue()
