"""Where the local stack and the tests find the shipped list files, and how each source is read.

The setting `SANCTIONS_DATA_DIR` defaults to `../shared/data/sanctions` from the repository root. A git
worktree sits deeper than the main checkout, so when that path does not exist the nearest ancestor that
holds `shared/data/sanctions` is used instead. Production downloads current files from the publishers'
URLs into a directory of the same layout and points the setting at it.
"""

from __future__ import annotations

from pathlib import Path

from models.screening import ListedEntity, ListSource
from services.screening.loaders import load_ofac_sdn, load_uk_sanctions_csv, load_un_consolidated


def resolve_data_dir(configured: str) -> Path:
    path = Path(configured).resolve()
    if path.is_dir():
        return path
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / "sanctions"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no sanctions data at {path} nor in any parent's shared/data/sanctions")


def load_source(data_dir: Path, source: ListSource) -> list[ListedEntity]:
    """The shipped (or downloaded) file set of one list, read into normalised entities."""
    if source is ListSource.OFAC_SDN:
        return load_ofac_sdn(data_dir / "ofac")
    if source is ListSource.UN_SC:
        return load_un_consolidated(data_dir / "un" / "consolidated.xml")
    if source is ListSource.UK_FCDO:
        return load_uk_sanctions_csv(data_dir / "uk" / "UK_Sanctions_List.csv")
    raise ValueError(f"no file loader for {source}")
