"""kyc saga: submission states, tier data, vendor webhook events and tier-3 evidence (issue 15 items 1-4)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

`kyc_submissions` gains the saga's states (DRAFT while tier-2 documents are collected, then PENDING,
VENDOR_CHECK, RESUBMIT_REQUESTED, IN_REVIEW, APPROVED, REJECTED, EXPIRED), the data the customer gave
(`details`: tier-1 name/date of birth/address/phone, tier-3 questionnaire), the vendor's review
(`vendor_result`) and `updated_at`. One open submission per customer and tier (partial unique index), so a
double click never starts two sagas. `kyc_vendor_events` records each verified vendor webhook once (by the
digest of its raw body): a redelivery is acknowledged without signalling again. `kyc_evidence` keeps
tier-3 source-of-funds evidence files.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = (
    "'DRAFT', 'PENDING', 'VENDOR_CHECK', 'RESUBMIT_REQUESTED', 'IN_REVIEW', 'APPROVED', 'REJECTED', 'EXPIRED'"
)
OPEN = "status IN ('DRAFT', 'PENDING', 'VENDOR_CHECK', 'RESUBMIT_REQUESTED', 'IN_REVIEW')"


def upgrade() -> None:
    op.drop_constraint("ck_kyc_submissions_status", "kyc_submissions", type_="check")
    op.create_check_constraint("ck_kyc_submissions_status", "kyc_submissions", f"status IN ({STATUSES})")
    op.add_column("kyc_submissions", sa.Column("details", postgresql.JSONB(), nullable=True))
    op.add_column("kyc_submissions", sa.Column("vendor_result", postgresql.JSONB(), nullable=True))
    op.add_column(
        "kyc_submissions",
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )
    op.create_index(
        "uq_kyc_submissions_open",
        "kyc_submissions",
        ["user_id", "tier"],
        unique=True,
        postgresql_where=sa.text(OPEN),
    )
    op.create_index("ix_kyc_submissions_applicant", "kyc_submissions", ["provider_applicant_id"])
    op.create_table(
        "kyc_vendor_events",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("applicant_id", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("submission_id", sa.Uuid(), nullable=True),
        sa.Column("body", postgresql.JSONB(), nullable=False),
        sa.Column("signalled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["kyc_submissions.id"]),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "kyc_evidence",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("submission_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["kyc_submissions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_kyc_evidence_submission_id", "kyc_evidence", ["submission_id"])


def downgrade() -> None:
    op.drop_index("ix_kyc_evidence_submission_id", table_name="kyc_evidence")
    op.drop_table("kyc_evidence")
    op.drop_table("kyc_vendor_events")
    op.drop_index("ix_kyc_submissions_applicant", table_name="kyc_submissions")
    op.drop_index("uq_kyc_submissions_open", table_name="kyc_submissions")
    op.drop_column("kyc_submissions", "updated_at")
    op.drop_column("kyc_submissions", "vendor_result")
    op.drop_column("kyc_submissions", "details")
    op.drop_constraint("ck_kyc_submissions_status", "kyc_submissions", type_="check")
    op.execute("UPDATE kyc_submissions SET status = 'PENDING' WHERE status NOT IN ('APPROVED', 'REJECTED')")
    op.create_check_constraint(
        "ck_kyc_submissions_status", "kyc_submissions", "status IN ('PENDING', 'APPROVED', 'REJECTED')"
    )
