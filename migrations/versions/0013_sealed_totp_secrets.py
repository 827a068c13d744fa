"""sealed TOTP secrets: users.twofa_secret encrypted at rest

Revision ID: 0013
Revises: 0008
Create Date: 2026-12-01

The column widens to hold a Fernet token (a 32-character base32 seed becomes ~140 characters) and
every existing seed is encrypted with the first of `TOTP_ENCRYPTION_KEYS` (`models/sealed.py`), so
run it with the same keys as the application. Values that already are Fernet tokens are left alone,
so a re-run is harmless. Downgrade decrypts them back to plain text.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models import sealed

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FERNET_PREFIX = "gAAAAA"  # version byte 0x80 and a timestamp high word of 0, base64url


def _rewrite(change: object) -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, twofa_secret FROM users WHERE twofa_secret IS NOT NULL")).all()
    for user_id, value in rows:
        new = change(value)  # type: ignore[operator]
        if new != value:
            conn.execute(
                sa.text("UPDATE users SET twofa_secret = :v WHERE id = :id"), {"v": new, "id": user_id}
            )


def upgrade() -> None:
    op.alter_column("users", "twofa_secret", type_=sa.String(length=512), existing_type=sa.String(length=100))
    _rewrite(lambda v: v if v.startswith(FERNET_PREFIX) else sealed.seal(v))


def downgrade() -> None:
    _rewrite(lambda v: sealed.unseal(v) if v.startswith(FERNET_PREFIX) else v)
    op.alter_column("users", "twofa_secret", type_=sa.String(length=100), existing_type=sa.String(length=512))
