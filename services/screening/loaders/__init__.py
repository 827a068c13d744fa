"""Readers for the published list formats; each returns `models.screening.ListedEntity` values."""

from services.screening.loaders.ofac import load_ofac_sdn
from services.screening.loaders.uk import load_uk_sanctions_csv
from services.screening.loaders.un import load_un_consolidated

__all__ = ["load_ofac_sdn", "load_uk_sanctions_csv", "load_un_consolidated"]
