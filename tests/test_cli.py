"""The management command creates staff and sets KYC tiers, and audits both."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_create_staff_and_set_kyc_tier(database_url: str) -> None:
    email = f"approver-{uuid.uuid4().hex[:8]}@broker.test"
    done = _cli(database_url, "create-staff", email, "--role", "approver", "--role", "ops")
    assert done.returncode == 0, done.stderr
    assert "password=" in done.stdout

    again = _cli(database_url, "create-staff", email, "--role", "approver")
    assert again.returncode != 0 and "already exists" in again.stderr

    tier = _cli(database_url, "set-kyc-tier", email, "2")
    assert tier.returncode == 0, tier.stderr

    bad = _cli(database_url, "set-kyc-tier", email, "7")
    assert bad.returncode != 0

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT roles, kyc_tier, id FROM users WHERE email = %s", (email,)).fetchone()
        assert row is not None
        assert row[0] == ["approver", "ops"] and row[1] == 2
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit_log WHERE target_id = %s ORDER BY created_at", (str(row[2]),)
            )
        ]
    assert actions == ["staff.create", "kyc.set_tier"]


def test_weak_password_is_refused(database_url: str) -> None:
    done = _cli(
        database_url,
        "create-staff",
        f"x-{uuid.uuid4().hex[:6]}@b.test",
        "--role",
        "ops",
        "--password",
        "short",
    )
    assert done.returncode != 0 and "password needs" in done.stderr
