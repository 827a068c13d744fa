"""Sanctions and PEP lists in one normalised shape, the tables that hold them, and screening records.

The published lists (OFAC SDN CSV, UN consolidated XML, UK Sanctions List CSV) differ in layout but say
the same things: who is listed, under which names and aliases (of a given quality), born when (often a
partial date), of which nationality, with which identifiers and, for OFAC, which wallet addresses.
`ListedEntity` is that common shape; every loader produces it and everything downstream reads only it.

Each entity is versioned: `content_hash` is a digest of its normalised content, and a listing whose
content changes gets the next `version`. A reviewer's "no hit" is remembered per (customer, entity,
version), so it holds exactly until the listing changes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel
from pydantic import Field as PydanticField
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

from models.columns import jsonb, timestamp


class ListSource(StrEnum):
    OFAC_SDN = "OFAC_SDN"
    UN_SC = "UN_SC"
    UK_FCDO = "UK_FCDO"
    PEP = "PEP"


class Topic(StrEnum):
    """What a listing means for a customer who matches it; decides the `aml_checks.check_type`."""

    SANCTION = "SANCTION"
    PEP = "PEP"


EntityType = Literal["individual", "entity", "vessel", "aircraft", "unknown"]
NameKind = Literal["primary", "aka", "fka", "nka", "original_script"]
NameQuality = Literal["strong", "weak"]


class ListedName(BaseModel):
    """One name under which an entity is listed. `weak` aliases (OFAC "weak a.k.a.", UN "Low quality")
    are still screened, but a match on one counts for less."""

    name: str
    kind: NameKind = "primary"
    quality: NameQuality = "strong"


class PartialDate(BaseModel):
    """A date of birth as the lists give it: a year, maybe a month and day, maybe "circa", maybe a range."""

    year: int
    month: int | None = None
    day: int | None = None
    circa: bool = False
    year_to: int | None = None  # "1960 to 1965": the last year of the range

    def label(self) -> str:
        text = f"{self.year:04d}"
        if self.month:
            text += f"-{self.month:02d}"
            if self.day:
                text += f"-{self.day:02d}"
        if self.year_to:
            text += f"..{self.year_to:04d}"
        return ("circa " if self.circa else "") + text


class Identifier(BaseModel):
    kind: str
    value: str
    country: str | None = None


class CryptoAddress(BaseModel):
    currency: str
    address: str


class ListedEntity(BaseModel):
    """One listed person, organisation, vessel or aircraft, whatever list it came from."""

    source: ListSource
    source_id: str
    entity_type: EntityType = "unknown"
    topic: Topic = Topic.SANCTION
    programmes: list[str] = PydanticField(default_factory=list)
    names: list[ListedName] = PydanticField(default_factory=list)
    dates_of_birth: list[PartialDate] = PydanticField(default_factory=list)
    nationalities: list[str] = PydanticField(default_factory=list)
    identifiers: list[Identifier] = PydanticField(default_factory=list)
    crypto_addresses: list[CryptoAddress] = PydanticField(default_factory=list)
    remarks: str | None = None

    @property
    def primary_name(self) -> str:
        return next(
            (n.name for n in self.names if n.kind == "primary"), self.names[0].name if self.names else ""
        )

    def content_hash(self) -> str:
        """A digest of everything the listing says; equal content gives an equal hash whatever the order."""
        body = self.model_dump(mode="json")
        for key in ("programmes", "nationalities"):
            body[key] = sorted(body[key])
        for key in ("names", "dates_of_birth", "identifiers", "crypto_addresses"):
            body[key] = sorted(body[key], key=lambda item: json.dumps(item, sort_keys=True))
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Tables (migration 0014)


class SanctionsEntity(SQLModel, table=True):
    """The current state of one listing. `listed` turns false when an update no longer carries it."""

    __tablename__ = "sanctions_entities"
    __table_args__ = (
        Index("uq_sanctions_entities_source_id", "source", "source_id", unique=True),
        CheckConstraint("topic IN ('SANCTION', 'PEP')", name="ck_sanctions_entities_topic"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    source: str = Field(max_length=20)
    source_id: str = Field(max_length=64)
    entity_type: str = Field(max_length=20)
    topic: str = Field(max_length=10)
    programmes: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(Text), nullable=False, server_default="{}")
    )
    version: int = Field(default=1)
    content_hash: str = Field(max_length=64)
    listed: bool = Field(default=True, sa_column_kwargs={"server_default": "true"})
    data: dict[str, Any] = Field(sa_column=jsonb(nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class SanctionsEntityVersion(SQLModel, table=True):
    """Every version a listing has had, so an old match or dismissal can still be explained."""

    __tablename__ = "sanctions_entity_versions"
    __table_args__ = (PrimaryKeyConstraint("entity_id", "version"),)

    entity_id: uuid.UUID = Field(foreign_key="sanctions_entities.id")
    version: int
    content_hash: str = Field(max_length=64)
    data: dict[str, Any] = Field(sa_column=jsonb(nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class SanctionsName(SQLModel, table=True):
    """One screenable name of a current listing, normalised for blocking (`norm` carries a trigram index)."""

    __tablename__ = "sanctions_names"
    __table_args__ = (
        Index(
            "ix_sanctions_names_norm_trgm",
            "norm",
            postgresql_using="gist",
            postgresql_ops={"norm": "gist_trgm_ops"},
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True))
    entity_id: uuid.UUID = Field(foreign_key="sanctions_entities.id", index=True)
    name: str
    norm: str
    kind: str = Field(max_length=20)
    quality: str = Field(max_length=10)


class SanctionsNameKey(SQLModel, table=True):
    """Blocking keys: the metaphone (fuzzystrmatch) of each token of a listed name. A customer's name
    finds its candidates through the keys of its own tokens: "Jon"/"John" and "Ann"/"Anne" share keys,
    and token order never matters."""

    __tablename__ = "sanctions_name_keys"
    __table_args__ = (PrimaryKeyConstraint("key", "name_id"),)

    key: str = Field(sa_column=Column(String(16), nullable=False))
    name_id: int = Field(sa_column=Column(BigInteger, ForeignKey("sanctions_names.id"), nullable=False))
    entity_id: uuid.UUID = Field(foreign_key="sanctions_entities.id")


class SanctionsCryptoAddress(SQLModel, table=True):
    """A wallet address named by a current listing. `address_key` is the address as compared (see
    `services.screening.crypto.address_key`)."""

    __tablename__ = "sanctions_crypto_addresses"
    __table_args__ = (PrimaryKeyConstraint("address_key", "entity_id"),)

    address_key: str = Field(sa_column=Column(String(128), nullable=False))
    entity_id: uuid.UUID = Field(foreign_key="sanctions_entities.id", index=True)
    currency: str = Field(max_length=16)
    address: str = Field(max_length=128)


class ListUpdate(SQLModel, table=True):
    """One load of one list: what was added, changed and removed (drives re-screening and the audit trail)."""

    __tablename__ = "sanctions_list_updates"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    source: str = Field(max_length=20)
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class ScreeningSubject(SQLModel, table=True):
    """What we screen a customer as: the name and qualifiers from KYC tier 1 (written on every change)."""

    __tablename__ = "screening_subjects"

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True)
    full_name: str = Field(max_length=300)
    date_of_birth: date | None = None
    nationality: str | None = Field(default=None, max_length=100)
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class ScreeningDismissal(SQLModel, table=True):
    """A reviewer's "no hit": this customer is not this listing, as the listing stood at this version."""

    __tablename__ = "screening_dismissals"
    __table_args__ = (PrimaryKeyConstraint("user_id", "entity_id", "entity_version"),)

    user_id: uuid.UUID = Field(foreign_key="users.id")
    entity_id: uuid.UUID = Field(foreign_key="sanctions_entities.id")
    entity_version: int
    reviewer_id: uuid.UUID = Field(foreign_key="users.id")
    reason: str
    aml_check_id: uuid.UUID | None = Field(default=None, foreign_key="aml_checks.id")
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


# --------------------------------------------------------------------------------------------------
# Screening values (not tables)


class CheckType(StrEnum):
    SANCTIONS = "SANCTIONS"
    PEP = "PEP"


class CheckResult(StrEnum):
    CLEAR = "CLEAR"
    HIT = "HIT"
    FALSE_POSITIVE = "FALSE_POSITIVE"


class Action(StrEnum):
    """What a screening outcome asks of us: nothing, a compliance review, or a freeze until reviewed."""

    CLEAR = "CLEAR"
    REVIEW = "REVIEW"
    FREEZE_PENDING_REVIEW = "FREEZE_PENDING_REVIEW"


class Subject(BaseModel):
    """Who is being screened: a customer's name and, when known, date of birth and nationality."""

    name: str
    date_of_birth: date | None = None
    nationality: str | None = None


class NameMatchExplanation(BaseModel):
    query_name: str
    listed_name: str
    listed_name_kind: str
    listed_name_quality: str
    name_score: float
    token_pairs: list[dict[str, Any]]
    unmatched_query_tokens: list[str]
    unmatched_listed_tokens: list[str]


class Match(BaseModel):
    """One listing a subject may be, with the score and why."""

    entity_id: uuid.UUID
    entity_version: int
    source: str
    source_id: str
    topic: Topic
    primary_name: str
    score: int
    action: Action
    name: NameMatchExplanation
    qualifiers: list[dict[str, Any]]


class ScreeningOutcome(BaseModel):
    subject: Subject
    check_type: CheckType
    result: CheckResult
    action: Action
    score: int
    matches: list[Match]
    dismissed: list[Match] = PydanticField(default_factory=list)
