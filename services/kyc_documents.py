"""Tier-2 identity documents: checked here, then sent to the KYC vendor under the customer's applicant.

The applicant is created once per customer (our user id is the vendor's `externalUserId`, so a repeat after
a lost answer finds the same applicant), on the first upload; the vendor gets the country as ISO alpha-3,
as Sumsub expects. A vendor that does not answer is a 503 (the customer uploads again: uploads are
harmless to repeat); a vendor refusal of the file is a 422 on `file`.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Protocol

import pycountry
from sqlalchemy.ext.asyncio import AsyncEngine

from models.kyc import DocumentOut, country_alpha2
from providers.kyc import KycVendorRefused, KycVendorRetryable
from services import kyc
from services.errors import DomainError

ID_DOC_TYPES = frozenset({"PASSPORT", "ID_CARD", "DRIVERS", "RESIDENCE_PERMIT"})
CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "application/pdf"})


class KycVendorUnavailable(DomainError):
    """The KYC vendor did not answer: nothing is lost, send the document again in a moment."""

    default_code = "kyc_vendor_unavailable"
    status = 503


class Vendor(Protocol):
    async def create_applicant(self, *, external_user_id: str, level_name: str) -> str: ...

    async def add_id_document(
        self,
        applicant_id: str,
        *,
        id_doc_type: str,
        country: str,
        filename: str,
        content: bytes,
        content_type: str,
    ) -> str: ...


def _checked(id_doc_type: str, country: str, content_type: str, content: bytes, max_bytes: int) -> str:
    """The country as alpha-3 once every field is valid; a 422 naming the first bad field otherwise."""
    if id_doc_type not in ID_DOC_TYPES:
        raise kyc.KycDocumentInvalid(
            f"id_doc_type must be one of {sorted(ID_DOC_TYPES)}", field="id_doc_type"
        )
    try:
        alpha2 = country_alpha2(country)
    except ValueError:
        raise kyc.KycDocumentInvalid("not an ISO 3166 country code", field="country") from None
    if content_type not in CONTENT_TYPES:
        raise kyc.KycDocumentInvalid("the document must be JPEG, PNG or PDF", field="file")
    if not content or len(content) > max_bytes:
        raise kyc.KycDocumentInvalid(f"the document must be 1 to {max_bytes} bytes", field="file")
    found = pycountry.countries.get(alpha_2=alpha2)
    assert found is not None  # country_alpha2 found it
    return str(found.alpha_3)


async def upload(
    engine: AsyncEngine,
    vendor: Vendor,
    user_id: uuid.UUID,
    *,
    level_name: str,
    id_doc_type: str,
    country: str,
    filename: str,
    content_type: str,
    content: bytes,
    max_bytes: int,
) -> DocumentOut:
    alpha3 = _checked(id_doc_type, country, content_type, content, max_bytes)
    draft = await kyc.tier2_draft(engine, user_id, provider="sumsub")
    try:
        applicant_id = draft.applicant_id
        if applicant_id is None:
            applicant_id = await vendor.create_applicant(external_user_id=str(user_id), level_name=level_name)
            await kyc.set_applicant(engine, draft.submission_id, applicant_id)
        image_id = await vendor.add_id_document(
            applicant_id,
            id_doc_type=id_doc_type,
            country=alpha3,
            filename=filename[:200],
            content=content,
            content_type=content_type,
        )
    except KycVendorRetryable as e:
        raise KycVendorUnavailable("the verification service is not answering; try again shortly") from e
    except KycVendorRefused as e:
        raise kyc.KycDocumentInvalid(
            "the verification service could not read this document", field="file"
        ) from e
    await kyc.record_document(
        engine,
        draft.submission_id,
        id_doc_type=id_doc_type,
        country=alpha3,
        image_id=image_id,
        sha256=hashlib.sha256(content).hexdigest(),
    )
    return DocumentOut(
        submission_id=draft.submission_id, id_doc_type=id_doc_type, country=alpha3, image_id=image_id
    )
