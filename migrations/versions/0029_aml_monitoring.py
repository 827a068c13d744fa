"""AML monitoring: rule set versions, alerts and cases (issue 16)

Revision ID: 0029
Revises: 0026
Create Date: 2026-12-01

`aml_rule_versions` holds the versioned rule sets (a published one is immutable), `aml_alerts` one row per
rule hit per subject (unique per version, rule and subject, so evaluation is idempotent) and `aml_cases`
the customer's open investigation (at most one open per customer, a partial unique index).
Withdrawals get the status UNDER_REVIEW (held for compliance by the monitoring's block_and_review).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0029"
down_revision: str | Sequence[str] | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WITHDRAWAL_STATUSES = (
    "PENDING",
    "AWAITING_APPROVAL",
    "HALTED",
    "APPROVED",
    "PROCESSING",
    "COMPLETED",
    "FAILED",
    "REJECTED",
    "CANCELLED",
    "NEEDS_ATTENTION",
)

# A published (or retired) version is immutable: its label and rules never change, so every alert names
# exactly the rules that raised it. Status may move on (published -> retired) and mode may change.
IMMUTABLE_VERSIONS = """
CREATE FUNCTION aml_rule_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'AML rule set version % is %: it cannot be deleted', OLD.version, OLD.status
                USING ERRCODE = '55000';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'draft' AND (NEW.rules IS DISTINCT FROM OLD.rules OR NEW.version <> OLD.version) THEN
        RAISE EXCEPTION 'AML rule set version % is %: its rules cannot change', OLD.version, OLD.status
            USING ERRCODE = '55000';
    END IF;
    IF OLD.status = 'retired' AND NEW.status <> 'retired' THEN
        RAISE EXCEPTION 'AML rule set version % is retired', OLD.version USING ERRCODE = '55000';
    END IF;
    RETURN NEW;
END
$$
"""


def _withdrawal_statuses(statuses: tuple[str, ...]) -> None:
    op.drop_constraint("ck_withdrawals_status", "withdrawals", type_="check")
    op.create_check_constraint(
        "ck_withdrawals_status", "withdrawals", "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"
    )


def upgrade() -> None:
    _withdrawal_statuses((*WITHDRAWAL_STATUSES, "UNDER_REVIEW"))
    op.create_table(
        "aml_rule_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rules", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('draft', 'published', 'retired')", name="ck_aml_rule_versions_status"),
        sa.CheckConstraint("mode IN ('live', 'shadow')", name="ck_aml_rule_versions_mode"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version"),
    )
    op.create_index(
        "uq_aml_rule_versions_one_live",
        "aml_rule_versions",
        ["mode"],
        unique=True,
        postgresql_where=sa.text("status = 'published' AND mode = 'live'"),
    )
    op.execute(IMMUTABLE_VERSIONS)
    op.execute(
        "CREATE TRIGGER aml_rule_versions_immutable BEFORE UPDATE OR DELETE ON aml_rule_versions "
        "FOR EACH ROW EXECUTE FUNCTION aml_rule_versions_immutable()"
    )
    op.create_table(
        "aml_cases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retention_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("workflow_id", sa.String(length=100), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'investigating', 'closed')", name="ck_aml_cases_status"),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('false_positive', 'valuable_alert', 'confirmed_risk')",
            name="ck_aml_cases_outcome",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["assignee_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_aml_cases_user_id", "aml_cases", ["user_id"])
    op.create_index(
        "uq_aml_cases_open_per_user",
        "aml_cases",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'investigating')"),
    )
    op.create_table(
        "aml_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("rule_version_id", sa.Uuid(), nullable=False),
        sa.Column("rule_code", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("subject_type", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=100), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("shadow", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("retention_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "subject_type IN ('withdrawal', 'deposit', 'trade', 'customer')",
            name="ck_aml_alerts_subject_type",
        ),
        sa.CheckConstraint(
            "outcome IN ('approve', 'review', 'block_and_review', 'decline')", name="ck_aml_alerts_outcome"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["rule_version_id"], ["aml_rule_versions.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["aml_cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "rule_version_id", "rule_code", "subject_type", "subject_id", name="uq_aml_alerts_subject"
        ),
    )
    op.create_index("ix_aml_alerts_case_id", "aml_alerts", ["case_id"])
    op.create_index("ix_aml_alerts_user_created", "aml_alerts", ["user_id", "created_at"])


def downgrade() -> None:
    # A withdrawal held for review keeps its hold: back to the state that keeps it visibly waiting.
    op.execute("UPDATE withdrawals SET status = 'NEEDS_ATTENTION' WHERE status = 'UNDER_REVIEW'")
    _withdrawal_statuses(WITHDRAWAL_STATUSES)
    op.drop_index("ix_aml_alerts_user_created", table_name="aml_alerts")
    op.drop_index("ix_aml_alerts_case_id", table_name="aml_alerts")
    op.drop_table("aml_alerts")
    op.drop_index("uq_aml_cases_open_per_user", table_name="aml_cases")
    op.drop_index("ix_aml_cases_user_id", table_name="aml_cases")
    op.drop_table("aml_cases")
    op.execute("DROP TRIGGER IF EXISTS aml_rule_versions_immutable ON aml_rule_versions")
    op.execute("DROP FUNCTION IF EXISTS aml_rule_versions_immutable()")
    op.drop_index("uq_aml_rule_versions_one_live", table_name="aml_rule_versions")
    op.drop_table("aml_rule_versions")
