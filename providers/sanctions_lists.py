"""Downloading the sanctions lists from their publishers (OFAC, UN Security Council, UK FCDO).

Each configured file (`SANCTIONS_LIST_URLS`: a path in the shipped layout -> URL, e.g. `ofac/sdn.csv`,
`un/consolidated.xml`, `uk/UK_Sanctions_List.csv`) is fetched into `<download dir>/<run key>/`, in the
same layout as `../shared/data/sanctions`, so the loaders read either alike. A run's directory appears
only when every file arrived whole (written under a temporary name, then renamed), so a retry after a
failure downloads again and a half-downloaded set is never loaded. A truncated but successful download
is caught later by the store (`SuspiciousListUpdate`: too many listings would disappear).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import httpx


class ListDownloadFailed(Exception):
    """A publisher did not deliver a file (HTTP error, empty body, network): try again later; the lists
    already loaded stay in force."""


async def download_lists(
    urls: dict[str, str], download_dir: Path, key: str, *, timeout: float = 120.0
) -> tuple[Path, list[str]]:
    """Fetch every file of `urls` into `download_dir/key` (reused when a previous attempt completed)."""
    target = download_dir / key
    if target.is_dir():
        return target, sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    partial = download_dir / f".{key}.{uuid.uuid4().hex}.partial"
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
            for relative, url in sorted(urls.items()):
                path = partial / relative
                if Path(relative).is_absolute() or ".." in Path(relative).parts:
                    raise ListDownloadFailed(f"not a relative path: {relative}")
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    async with client.stream("GET", url) as response:
                        if response.status_code != 200:
                            raise ListDownloadFailed(f"{relative}: HTTP {response.status_code}")
                        size = 0
                        with path.open("wb") as out:
                            async for chunk in response.aiter_bytes():
                                out.write(chunk)
                                size += len(chunk)
                except httpx.HTTPError as e:
                    raise ListDownloadFailed(f"{relative}: {type(e).__name__}") from e
                if size == 0:
                    raise ListDownloadFailed(f"{relative}: empty file")
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target, sorted(urls)
