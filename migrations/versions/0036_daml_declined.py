"""A DAML request can end declined (compliance refused the case while consent was awaited)

Revision ID: 0036
Revises: 0034
Create Date: 2026-12-02

Until now a decline during a DAML request left `aml_sar_reports.daml_state = 'awaiting_consent'`, which
told a reader of the report that consent was still awaited for a withdrawal already refused.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0036"
down_revision: str | Sequence[str] | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "('none', 'awaiting_consent', 'consented', 'refused', 'moratorium_ended')"
_NEW = "('none', 'awaiting_consent', 'consented', 'refused', 'moratorium_ended', 'declined')"


def upgrade() -> None:
    op.drop_constraint("ck_aml_sar_reports_daml_state", "aml_sar_reports", type_="check")
    op.create_check_constraint("ck_aml_sar_reports_daml_state", "aml_sar_reports", f"daml_state IN {_NEW}")


def downgrade() -> None:
    op.execute("UPDATE aml_sar_reports SET daml_state = 'awaiting_consent' WHERE daml_state = 'declined'")
    op.drop_constraint("ck_aml_sar_reports_daml_state", "aml_sar_reports", type_="check")
    op.create_check_constraint("ck_aml_sar_reports_daml_state", "aml_sar_reports", f"daml_state IN {_OLD}")
