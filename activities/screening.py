"""Screening activities: the daily list refresh (download, load, re-screen) and deposit payer names.

Thin methods over services/screening and providers/sanctions_lists; every one is idempotent: a list
load with unchanged content changes nothing, a re-screen records only changed outcomes, a payer check is
recorded once per deposit, and a download reuses a completed run directory.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from config import Settings
from models.screening import ListSource
from models.screening_jobs import (
    DownloadInput,
    DownloadResult,
    PayerScreeningInput,
    PayerScreeningResult,
    RefreshListInput,
    RefreshListResult,
)
from providers.sanctions_lists import ListDownloadFailed, download_lists
from services.screening.payers import screen_deposit_payer
from services.screening.service import ScreeningConfig, load_and_rescreen
from services.screening.sources import load_source, resolve_data_dir
from services.screening.store import SuspiciousListUpdate

SUSPICIOUS_LIST_UPDATE = "SuspiciousListUpdate"
LIST_DOWNLOAD_FAILED = "ListDownloadFailed"
LIST_FILE_UNREADABLE = "ListFileUnreadable"


class ScreeningActivities:
    def __init__(self, *, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._config = ScreeningConfig.from_settings(settings)

    @activity.defn(name="screening.download_lists")
    async def download_lists(self, data: DownloadInput) -> DownloadResult:
        """Today's list files from the publishers; with no URLs configured, the configured directory."""
        urls = self._settings.sanctions_list_urls
        if not urls:
            return DownloadResult(data_dir=str(resolve_data_dir(self._settings.sanctions_data_dir)))
        download_dir = Path(self._settings.sanctions_download_dir or self._settings.sanctions_data_dir)
        try:
            target, files = await heartbeating(download_lists(urls, download_dir, data.key))
        except ListDownloadFailed as e:  # retried by the policy; after that the run ends, lists unchanged
            raise ApplicationError(str(e), type=LIST_DOWNLOAD_FAILED) from e
        return DownloadResult(data_dir=str(target), files=files)

    @activity.defn(name="screening.refresh_list")
    async def refresh_list(self, data: RefreshListInput) -> RefreshListResult:
        """Load one list and re-screen every customer, recording only outcomes that changed."""
        source = ListSource(data.source)
        try:
            entities = await asyncio.to_thread(load_source, Path(data.data_dir), source)  # CPU: off the loop
        except FileNotFoundError:
            return RefreshListResult(source=data.source, found=False)
        except Exception as e:  # a malformed or cut-off file: nothing is loaded from it; ops look at it
            raise ApplicationError(
                f"{source.value}: the file cannot be read ({type(e).__name__})",
                type=LIST_FILE_UNREADABLE,
                non_retryable=True,
            ) from e
        try:
            done = await heartbeating(load_and_rescreen(self._engine, self._config, source, entities))
        except SuspiciousListUpdate as e:  # a truncated file: nothing written; ops look at it
            raise ApplicationError(str(e), type=SUSPICIOUS_LIST_UPDATE, non_retryable=True) from e
        return RefreshListResult(
            source=data.source,
            added=done.load.added,
            changed=done.load.changed,
            removed=done.load.removed,
            screened=done.screened,
            outcome_changes=done.changed,
        )

    @activity.defn(name="screening.deposit_payer")
    async def screen_deposit_payer(self, data: PayerScreeningInput) -> PayerScreeningResult:
        """Screen a credited deposit's payer name; a possible match raises a review (never a block)."""
        outcome = await screen_deposit_payer(
            self._engine,
            self._config,
            deposit_id=data.deposit_id,
            user_id=data.user_id,
            payer_name=data.payer_name,
        )
        return PayerScreeningResult(
            result=outcome.result.value, score=outcome.score, recorded=outcome.recorded
        )
