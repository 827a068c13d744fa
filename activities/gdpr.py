"""GDPR activities: build, email and expire a subject-access export; check and run the retention purge
(services/gdpr_*.py). Each is idempotent, keyed by the request or the customer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.errors import application_errors
from config import Settings
from models.gdpr import ExportBuilt, ExportInput, PurgeInput, RetentionCheck, RetentionResult
from services import gdpr_archive, gdpr_export, gdpr_links, gdpr_requests, gdpr_retention


class GdprActivities:
    def __init__(self, *, engine: AsyncEngine, settings: Settings, email: Any) -> None:
        self._engine = engine
        self._settings = settings
        self._email = email  # providers.email.EmailSender, or None (tests that read no mail)

    @activity.defn(name="gdpr.build_export")
    async def build_export(self, data: ExportInput) -> ExportBuilt:
        """Collect the customer's data, build the zip, store it with the request as READY (a retry after READY
        returns it without building again)."""
        built = await gdpr_requests.is_ready(self._engine, data.request_id)
        if built is not None:
            return built
        now = datetime.now(UTC)
        sections = await gdpr_export.collect(self._engine, data.user_id)
        archive = gdpr_archive.build_zip(data.request_id, data.user_id, sections, now)
        return await gdpr_requests.mark_ready(
            self._engine,
            data.request_id,
            archive,
            now=now,
            link_seconds=self._settings.gdpr_export_link_seconds,
        )

    @activity.defn(name="gdpr.email_export_link")
    async def email_export_link(self, built: ExportBuilt) -> bool:
        """Email the signed download link once (False: already sent, or no mail sender configured)."""
        address, user_id, expires_at, emailed = await gdpr_requests.email_target(
            self._engine, built.request_id
        )
        if emailed or self._email is None:
            return False
        now = datetime.now(UTC)
        token = gdpr_links.link_token(
            self._settings, built.request_id, user_id, now=now, expires_at=expires_at
        )
        link = gdpr_links.download_link(self._settings, built.request_id, token)
        with application_errors():
            await self._email.send(address, gdpr_links.export_ready_email(link, expires_at=expires_at))
        await gdpr_requests.mark_emailed(self._engine, built.request_id, now=now)
        return True

    @activity.defn(name="gdpr.expire_export")
    async def expire_export(self, built: ExportBuilt) -> None:
        """Erase the archive and mark the request EXPIRED."""
        await gdpr_requests.expire(self._engine, built.request_id, now=datetime.now(UTC))

    @activity.defn(name="gdpr.retention_check")
    async def retention_check(self, data: PurgeInput) -> RetentionCheck:
        """When the closed account's personal data is due to go (None: no closure, nothing to do)."""
        return await gdpr_retention.check(self._engine, data.user_id)

    @activity.defn(name="gdpr.pseudonymise")
    async def pseudonymise(self, data: PurgeInput) -> RetentionResult:
        """Pseudonymise the closed account if it is due by the saga's clock (a repeat changes nothing)."""
        return await gdpr_retention.pseudonymise(self._engine, data.user_id, now=data.as_of)
