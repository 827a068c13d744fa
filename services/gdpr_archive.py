"""The export's zip and where it is kept.

Layout: `manifest.json` (when, for whom, the sections and what was left out), `json/<section>.json` (a
list of objects) and `csv/<section>.csv` (a header row, then the same rows). CSV cells that a spreadsheet
would run as a formula (`=`, `+`, `@`, a tab or CR first, or `-` in front of something that is not a
number) get a leading `'` (OWASP's CSV-injection advice); `csv_cell` is the one rule, so a reader can
compare the two copies.

Files are written under `Settings.gdpr_export_dir` (default `<local_dir>/gdpr-exports`, outside git) as
`<request id>.zip`: first to a temporary name, then renamed, so a retried build never leaves half a file
where a download could find it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from config import Settings
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


def export_dir(settings: Settings) -> Path:
    return Path(settings.gdpr_export_dir or Path(settings.local_dir) / "gdpr-exports")


@dataclass(frozen=True)
class StoredFile:
    name: str
    sha256: str
    size_bytes: int


def store(settings: Settings, request_id: uuid.UUID, data: bytes) -> StoredFile:
    """Write the archive atomically (temp file, fsync, rename); owner-only permissions."""
    directory = export_dir(settings)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{request_id}.zip"
    tmp = directory / f".{name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return StoredFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def path_of(settings: Settings, file_name: str) -> Path:
    return export_dir(settings) / Path(file_name).name


def delete(settings: Settings, file_name: str) -> None:
    path_of(settings, file_name).unlink(missing_ok=True)
