"""Operator commands until the admin console and KYC flow exist.

    python -m cli create-staff EMAIL --role approver [--role ops ...] [--password P]
    python -m cli set-kyc-tier EMAIL TIER
    python -m cli set-roles EMAIL --role admin ...
    python -m cli halt-withdrawals CURRENCY --reason R
    python -m cli resume-withdrawals CURRENCY
    python -m cli approval-token EMAIL WITHDRAWAL_ID --action approve [--totp CODE] [--reason R]
    python -m cli approval-token EMAIL ORDER_ID --action placement_absent --reason NOTE [--totp CODE]
    python -m cli approval-token EMAIL ORDER_ID --action placement_found --venue-order-id ID
    python -m cli rotate-totp-keys     # re-encrypt TOTP seeds with the first of TOTP_ENCRYPTION_KEYS
    python -m cli aml versions | load FILE | publish VERSION | retire VERSION
    python -m cli aml backtest VERSION --since 2026-11-01 [--user ID]

Uses DATABASE_URL, or the dev stack's embedded database when it is unset.
Every change is written to the audit log.
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys

from sqlalchemy import text
from sqlmodel import Session, select

from cli import aml as aml_cli
from config import get_settings
from models import StaffRole, User, sealed
from models.assets import SCALES
from models.database import sync_engine
from services import audit as audit_log
from services.passwords import WeakPassword, check_policy, hash_password


def _database_url() -> str:
    settings = get_settings()
    if settings.database_url:
        return settings.database_url
    from devstack.stack import local_database_url

    return local_database_url(settings)


def _find(session: Session, email: str) -> User:
    user = session.exec(select(User).where(User.email == email.lower())).first()
    if user is None:
        sys.exit(f"no user with email {email}")
    return user


def create_staff(session: Session, email: str, roles: list[str], password: str | None) -> str:
    if session.exec(select(User).where(User.email == email.lower())).first():
        sys.exit(f"a user with email {email} already exists; use set-roles")
    generated = password is None
    password = password or secrets.token_urlsafe(12) + "aA1!"
    try:
        check_policy(password)
    except WeakPassword as e:
        sys.exit(str(e))
    user = User(
        email=email.lower(),
        password_hash=hash_password(password),
        roles=sorted(set(roles)),
        email_verified=True,
    )
    session.add(user)
    session.flush()
    audit_log.add(
        session,
        "staff.create",
        actor_type="cli",
        target_type="user",
        target_id=str(user.id),
        details={"roles": user.roles},
    )
    session.commit()
    return password if generated else "(as given)"


def rotate_totp_keys(session: Session) -> int:
    """Re-encrypt every stored TOTP seed with the first configured key; returns how many rows.
    Run after putting a new key first in TOTP_ENCRYPTION_KEYS, before dropping the old one."""
    rows = session.connection().execute(
        text("SELECT id, twofa_secret FROM users WHERE twofa_secret IS NOT NULL FOR UPDATE")
    )
    count = 0
    for user_id, token in rows.all():
        session.connection().execute(
            text("UPDATE users SET twofa_secret = :t WHERE id = :id"),
            {"t": sealed.reseal(token), "id": user_id},
        )
        count += 1
    audit_log.add(session, "security.totp_keys_rotated", actor_type="cli", details={"rows": count})
    session.commit()
    return count


def set_withdrawal_halt(url: str, currency: str, reason: str | None) -> bool:
    """Halt (reason given) or resume withdrawals of `currency` through the service the admin API uses
    (`currency_halts`, audited as actor_type "cli"). Returns False when resuming a currency not halted."""
    import asyncio

    from models.database import async_engine
    from services import payments

    async def run() -> bool:
        engine = async_engine(url, pool_size=1, max_overflow=0)
        try:
            if reason is not None:
                await payments.set_halt(engine, currency, reason, None, "cli")
                return True
            try:
                return await payments.lift_by_staff(
                    engine, currency=currency, staff_id=None, actor_type="cli"
                )
            except payments.HaltRefused as e:
                sys.exit(f"{currency}: {e.detail} (admin API)")
        finally:
            await engine.dispose()

    return asyncio.run(run())


# Each action a token can be signed for here: the role it needs, and what it decides on.
DECISION_ROLES = {
    "approve": "approver",
    "reject": "approver",
    "resolve_paid": "ops",
    "resolve_not_paid": "ops",
    "placement_found": "ops",
    "placement_absent": "ops",
    "aml_clear": "compliance",  # a withdrawal held by AML monitoring (signal `compliance_decision`)
    "aml_decline": "compliance",
}
ORDER_DECISIONS = frozenset({"placement_found", "placement_absent"})


def approval_token(
    url: str, email: str, target_id: str, action: str, code: str, reason: str, venue_order_id: str = ""
) -> str:
    """A decision token for the Temporal Web UI/CLI signal path, after the staff user's TOTP check.

    The same check and token as the admin API: the code is consumed once (wrong codes count towards the
    lock-out), the user must hold the action's role, and the token names the user, the subject (a
    withdrawal, or an order for `placement_*`) and the action. The token also binds what the decision
    will say: for `resolve_*` the reason and for `placement_absent` the note sent with it (`--reason`),
    for `placement_found` the venue order id."""
    import asyncio
    import uuid
    from datetime import UTC, datetime, timedelta

    from sqlmodel.ext.asyncio.session import AsyncSession

    from models.database import async_engine
    from services.auth import AuthError, AuthPolicy
    from services.auth import totp as totp_service
    from services.decision_tokens import DecisionTokens

    settings = get_settings()
    kind = "order" if action in ORDER_DECISIONS else "withdrawal"
    try:
        subject = uuid.UUID(target_id)
    except ValueError:
        sys.exit(f"not a valid {kind} id: {target_id}")
    if action == "placement_found":
        if not venue_order_id:
            sys.exit("placement_found needs --venue-order-id")
        detail = venue_order_id
    elif action == "placement_absent":
        if not reason.strip():
            sys.exit("placement_absent needs --reason: what you established (send the same text as note)")
        detail = reason
    else:
        detail = reason if action.startswith("resolve") else ""

    async def run() -> str:
        engine = async_engine(url, pool_size=1, max_overflow=0)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                user = (await session.exec(select(User).where(User.email == email.lower()))).first()
                if user is None:
                    sys.exit(f"no user with email {email}")
                role = DECISION_ROLES[action]
                if role not in user.roles:
                    sys.exit(f"{email} does not have the {role} role")
                if not user.twofa_enabled:
                    sys.exit(f"{email} has no two-factor authentication enabled")
                try:
                    await totp_service.verify_and_consume(
                        session, user, code, policy=AuthPolicy(), now=datetime.now(UTC), ip="cli"
                    )
                except AuthError as e:
                    sys.exit(f"TOTP check failed: {type(e).__name__}")
                audit_log.add(
                    session,
                    f"{kind}.decision_token",
                    actor_id=user.id,
                    actor_type="cli",
                    target_type=kind,
                    target_id=str(subject),
                    details={"action": action},
                )
                await session.commit()
                ttl = timedelta(seconds=settings.decision_token_ttl_seconds)
                return DecisionTokens.from_secret(settings.jwt_secret, ttl).issue(
                    actor_id=user.id,
                    action=action,
                    now=datetime.now(UTC),
                    detail=detail,
                    withdrawal_id=subject if kind == "withdrawal" else None,
                    order_id=subject if kind == "order" else None,
                )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def review_bank_account(url: str, account_id: str, approve: bool, reason: str) -> str:
    """Ops decide on a payer account held because its holder name did not match the customer's:
    approved, the customer may confirm it (TOTP, cooling-off); rejected, it never receives withdrawals."""
    import asyncio
    import uuid

    from models.database import async_engine
    from services import payments

    async def run() -> str:
        engine = async_engine(url, pool_size=1, max_overflow=0)
        try:
            return await payments.review_bank_account(
                engine, account_id=uuid.UUID(account_id), approve=approve, actor_id=None, reason=reason
            )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def resolve_deposit_suspense(url: str, suspense_id: str, reason: str) -> bool:
    """Close a held deposit once ops have dealt with it (the reason is audited)."""
    import asyncio
    import uuid

    from models.database import async_engine
    from services import payments

    async def run() -> bool:
        engine = async_engine(url, pool_size=1, max_overflow=0)
        try:
            return await payments.resolve_suspense(
                engine, suspense_id=uuid.UUID(suspense_id), actor_id=None, actor_type="cli", reason=reason
            )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def open_deposit_suspense(session: Session) -> list[tuple[str, ...]]:
    """Deposits reported to us that could not be credited (verbatim), oldest first."""
    from sqlalchemy import text

    rows = session.execute(
        text(
            "SELECT created_at, id, source, external_id, output, currency, amount, reason, "
            "coalesce(CAST(user_id AS text), '-') FROM deposit_suspense "
            "WHERE status = 'OPEN' ORDER BY created_at"
        )
    ).all()
    return [tuple(str(v) for v in r) for r in rows]


def reconcile_now() -> str:
    """Start a ReconciliationWorkflow on the ops queue (a worker must be running) and wait for it."""
    import asyncio
    import uuid

    from models.reconciliation import ReconcileInput
    from temporal import task_queues
    from temporal.client import connect
    from workflows.reconciliation import ReconciliationWorkflow, reconciliation_workflow_id

    async def run() -> str:
        client = await connect(get_settings())
        run_id = uuid.uuid4()
        result = await client.execute_workflow(
            ReconciliationWorkflow.run,
            ReconcileInput(run_id=run_id, trigger="cli"),
            id=reconciliation_workflow_id(run_id),
            task_queue=task_queues.OPS,
        )
        lines = [f"run {result.run_id} cut-off {result.cut_off.isoformat()}"]
        for c in result.currencies:
            drift = "unknown" if c.discrepancy is None else f"{c.discrepancy:.{SCALES.get(c.currency, 8)}f}"
            lines.append(f"{c.currency}: {c.status.value} drift={drift} {'; '.join(c.reasons)}".rstrip())
        return "\n".join(lines)

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    roles = [r.value for r in StaffRole]

    p = sub.add_parser("create-staff", help="create a staff user with roles")
    p.add_argument("email")
    p.add_argument("--role", action="append", choices=roles, required=True)
    p.add_argument("--password", help="default: generated and printed; '-' prompts")

    p = sub.add_parser("set-roles", help="replace a user's staff roles")
    p.add_argument("email")
    p.add_argument("--role", action="append", choices=roles, default=[])

    p = sub.add_parser("set-kyc-tier", help="set a customer's KYC tier by hand (0-3)")
    p.add_argument("email")
    p.add_argument("tier", type=int, choices=[0, 1, 2, 3])

    p = sub.add_parser("halt-withdrawals", help="halt a currency's withdrawals (they wait until resumed)")
    p.add_argument("currency", type=str.upper, choices=sorted(SCALES))
    p.add_argument("--reason", required=True)

    p = sub.add_parser("resume-withdrawals", help="lift a currency's withdrawal halt")
    p.add_argument("currency", type=str.upper, choices=sorted(SCALES))

    p = sub.add_parser(
        "approval-token", help="a short-lived token proving a staff decision (for a Temporal signal)"
    )
    p.add_argument("email")
    p.add_argument("target_id", help="the withdrawal's id; for placement_* the order's id")
    p.add_argument("--action", choices=sorted(DECISION_ROLES), required=True)
    p.add_argument("--totp", help="the current code from your authenticator; default: prompt")
    p.add_argument(
        "--reason",
        default="",
        help="resolve_*: the reason, placement_absent: the note you will send with the resolution",
    )
    p.add_argument("--venue-order-id", default="", help="placement_found: the venue's order id")

    p = sub.add_parser("review-bank-account", help="approve or reject a payer account held on its name")
    p.add_argument("account_id")
    p.add_argument("decision", choices=["approve", "reject"])
    p.add_argument("--reason", required=True)

    sub.add_parser("deposit-suspense", help="list the deposits held because they could not be credited")

    p = sub.add_parser("resolve-deposit-suspense", help="close a held deposit once dealt with")
    p.add_argument("suspense_id")
    p.add_argument("--reason", required=True)

    sub.add_parser("rotate-totp-keys", help="re-encrypt TOTP seeds with the first TOTP_ENCRYPTION_KEYS key")

    sub.add_parser("reconcile", help="run a reconciliation now and print each currency's result")

    aml_cli.add_commands(sub)

    args = parser.parse_args(argv)
    if args.command == "aml":
        aml_cli.run(args, _database_url())
        return
    if args.command == "reconcile":
        print(reconcile_now())
        return
    if args.command == "approval-token":
        code = args.totp or getpass.getpass("TOTP code: ")
        print(
            approval_token(
                _database_url(), args.email, args.target_id, args.action, code, args.reason,
                args.venue_order_id,
            )
        )  # fmt: skip
        return
    if args.command == "review-bank-account":
        if not args.reason.strip():
            sys.exit("--reason must not be empty")
        status = review_bank_account(
            _database_url(), args.account_id, args.decision == "approve", args.reason
        )
        print(f"bank account {args.account_id}: {status}")
        return
    if args.command == "resolve-deposit-suspense":
        if not args.reason.strip():
            sys.exit("--reason must not be empty")
        if not resolve_deposit_suspense(_database_url(), args.suspense_id, args.reason):
            sys.exit(f"no open held deposit {args.suspense_id}")
        print(f"held deposit {args.suspense_id}: RESOLVED")
        return
    if args.command == "halt-withdrawals":
        if not args.reason.strip():
            sys.exit("--reason must not be empty")
        set_withdrawal_halt(_database_url(), args.currency, args.reason)
        print(f"{args.currency} withdrawals halted: {args.reason}")
        return
    if args.command == "resume-withdrawals":
        lifted = set_withdrawal_halt(_database_url(), args.currency, None)
        print(f"{args.currency} withdrawals " + ("resumed" if lifted else "were not halted"))
        return
    engine = sync_engine(_database_url())
    with Session(engine) as session:
        if args.command == "deposit-suspense":
            for row in open_deposit_suspense(session):
                print("  ".join(row))
            return
        if args.command == "create-staff":
            password = getpass.getpass() if args.password == "-" else args.password
            shown = create_staff(session, args.email, args.role, password)
            print(f"created staff {args.email} roles={sorted(set(args.role))} password={shown}")
        elif args.command == "set-roles":
            user = _find(session, args.email)
            before = list(user.roles)
            user.roles = sorted(set(args.role))
            audit_log.add(
                session,
                "staff.set_roles",
                actor_type="cli",
                target_type="user",
                target_id=str(user.id),
                details={"before": before, "after": user.roles},
            )
            session.commit()
            print(f"{args.email} roles={user.roles}")
        elif args.command == "rotate-totp-keys":
            print(f"re-encrypted {rotate_totp_keys(session)} TOTP seeds with the first key")
        elif args.command == "set-kyc-tier":
            user = _find(session, args.email)
            before_tier = user.kyc_tier
            user.kyc_tier = args.tier
            audit_log.add(
                session,
                "kyc.set_tier",
                actor_type="cli",
                target_type="user",
                target_id=str(user.id),
                details={"before": before_tier, "after": args.tier},
            )
            session.commit()
            print(f"{args.email} kyc_tier={args.tier}")
    engine.dispose()


if __name__ == "__main__":
    main()
