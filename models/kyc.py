"""KYC: the customer's input per tier (validated at the edge), the API's answers, and the KYC saga's I/O.

Tier 1 is name, date of birth, address (ISO 3166 country through `pycountry`) and phone (`phonenumbers`,
stored in E.164); tier 2 is the vendor's document check; tier 3 a source-of-funds questionnaire with
evidence, reviewed by compliance. Workflow I/O types are pydantic values (never table rows) and every
field added later gets a default, so recorded histories replay.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

import phonenumbers
import pycountry
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MIN_AGE_YEARS = 18
GBP_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"


class KycStatus(StrEnum):
    DRAFT = "DRAFT"  # tier 2: documents being uploaded, nothing submitted yet
    PENDING = "PENDING"  # submitted; screening
    VENDOR_CHECK = "VENDOR_CHECK"  # waiting for the vendor's review
    RESUBMIT_REQUESTED = "RESUBMIT_REQUESTED"  # the vendor asked for better documents (RED + RETRY)
    IN_REVIEW = "IN_REVIEW"  # compliance decides (screening match, tier 3)
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"  # no vendor answer or no resubmission in time


FINAL_STATUSES = frozenset({KycStatus.APPROVED, KycStatus.REJECTED, KycStatus.EXPIRED})


def country_alpha2(value: str) -> str:
    """ISO 3166-1 alpha-2 for an alpha-2 or alpha-3 code; ValueError otherwise (names are not guessed)."""
    code = value.strip().upper()
    found = pycountry.countries.get(alpha_2=code) if len(code) == 2 else None
    if found is None and len(code) == 3:
        found = pycountry.countries.get(alpha_3=code)
    if found is None:
        raise ValueError("not an ISO 3166 country code")
    return str(found.alpha_2)


# --- customer input ----------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Address(_Strict):
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postcode: str = Field(min_length=1, max_length=20)
    country: str = Field(min_length=2, max_length=3, description="ISO 3166-1 alpha-2 or alpha-3")

    @field_validator("country")
    @classmethod
    def _iso_country(cls, v: str) -> str:
        return country_alpha2(v)


class Tier1In(_Strict):
    """Basic KYC: who the customer is and where they live."""

    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    date_of_birth: date
    nationality: str | None = Field(default=None, min_length=2, max_length=3, description="ISO 3166 code")
    address: Address
    phone: str = Field(min_length=4, max_length=32, description="international (+44…) or national format")

    @field_validator("nationality")
    @classmethod
    def _iso_nationality(cls, v: str | None) -> str | None:
        return None if v is None else country_alpha2(v)

    @field_validator("date_of_birth")
    @classmethod
    def _adult(cls, v: date) -> date:
        today = date.today()
        if v >= today:
            raise ValueError("the date of birth is in the future")
        age = today.year - v.year - ((today.month, today.day) < (v.month, v.day))
        if age < MIN_AGE_YEARS:
            raise ValueError(f"customers must be at least {MIN_AGE_YEARS}")
        if age > 130:
            raise ValueError("the date of birth is not plausible")
        return v

    @field_validator("phone")
    @classmethod
    def _phone_e164(cls, v: str, info: ValidationInfo) -> str:
        """Read with the address's country as the default region (validated before the phone), kept as
        E.164."""
        address = info.data.get("address")
        region = address.country if isinstance(address, Address) else None
        if region is None and not v.startswith("+"):
            return v  # the address is invalid (reported on its own): no region to read a national number
        try:
            number = phonenumbers.parse(v, region)
        except phonenumbers.NumberParseException as e:
            raise ValueError(str(e)) from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError("not a valid phone number")
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class Tier3In(_Strict):
    """Enhanced due diligence: where the customer's money comes from."""

    source_of_funds: Literal[
        "employment",
        "self_employment",
        "savings",
        "investments",
        "inheritance",
        "property_sale",
        "crypto",
        "other",
    ]
    occupation: str = Field(min_length=1, max_length=200)
    employer: str | None = Field(default=None, max_length=200)
    # GBP as strings with at most two decimals (pence), never JSON numbers.
    annual_income_gbp: str = Field(pattern=GBP_PATTERN, max_length=13, examples=["85000.00"])
    expected_annual_deposits_gbp: str = Field(pattern=GBP_PATTERN, max_length=13, examples=["30000.00"])
    explanation: str = Field(min_length=20, max_length=4000)


# --- API answers -------------------------------------------------------------------------------


class LimitUsage(BaseModel):
    limit: Decimal
    used: Decimal
    remaining: Decimal


class NextTier(BaseModel):
    tier: int
    needs: list[str]
    how: str


class SubmissionOut(BaseModel):
    id: uuid.UUID
    tier: int
    status: str
    message: str | None = None  # for the customer: never a screening reason


class KycOverview(BaseModel):
    tier: int
    status: str  # the latest submission's status, or NONE
    submissions: list[SubmissionOut]
    next_tier: NextTier | None
    limits: dict[str, LimitUsage]  # "trading", "withdrawal": rolling 24 h, GBP
    gates: list[dict[str, Any]] = Field(
        default_factory=list,
        description="FCA first-trade gates (services.first_trade_gates.status); empty until they exist",
    )


class DocumentOut(BaseModel):
    submission_id: uuid.UUID
    id_doc_type: str
    country: str
    image_id: str


# --- the saga ------------------------------------------------------------------------------------


class KycInput(BaseModel):
    submission_id: uuid.UUID
    user_id: uuid.UUID
    tier: int
    applicant_id: str | None = None  # tier 2
    # Timings (from settings, fixed at start so a replay sees the same): ask the vendor when no webhook
    # came for this long; give up on the vendor, and on a resubmission, after these.
    vendor_poll_seconds: float = 300
    vendor_timeout_seconds: float = 14 * 24 * 3600
    resubmit_timeout_seconds: float = 30 * 24 * 3600
    vendor_poll_max_seconds: float = 6 * 3600


class ScreenResult(BaseModel):
    possible_match: bool
    frozen: bool = False


class VendorOutcome(BaseModel):
    status: str
    answer: str | None = None
    reject_type: str | None = None
    reject_labels: list[str] = Field(default_factory=list)
    moderation_comment: str = ""
    attempt: int = 0

    @property
    def completed(self) -> bool:
        return self.status == "completed" and self.answer in ("GREEN", "RED")


class VendorHint(BaseModel):
    """What the webhook route passes on: only a reason to ask the vendor, never a verdict."""

    type: str
    review_status: str = ""


class StatusChange(BaseModel):
    submission_id: uuid.UUID
    user_id: uuid.UUID
    tier: int
    status: KycStatus
    customer_message: str | None = None  # what the customer is told (never screening)
    internal_reason: str | None = None  # staff only: audit log
    vendor: VendorOutcome | None = None
    reviewer_id: uuid.UUID | None = None


class ReviewDecision(BaseModel):
    """Compliance's decision, with the token the API signed after the reviewer's TOTP check."""

    reviewer_id: uuid.UUID
    approve: bool
    reason: str = Field(min_length=1, max_length=1000)
    token: str = ""


class ReviewCheck(BaseModel):
    submission_id: uuid.UUID
    user_id: uuid.UUID
    reviewer_id: uuid.UUID
    action: str
    reason: str
    token: str


class ReviewOutcome(BaseModel):
    accepted: bool
    code: str
    detail: str | None = None
    status: str | None = None


class KycState(BaseModel):
    submission_id: uuid.UUID
    tier: int
    status: str
    possible_match: bool = False
    vendor: VendorOutcome | None = None
