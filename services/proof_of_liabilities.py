"""Proof of liabilities (issue 20 item 7): per currency, a Merkle sum tree over customer balances at a
daily cut-off, so anyone can check the published total and each customer that their balance is in it.

Leaves are `hash(salt, balance)` with a per-customer salt derived from a server secret (HMAC of the
customer id, currency and cut-off), so the published tree reveals no one's balance and a customer's proof
cannot be replayed for another day. Leaves are ordered by hash (position reveals nothing). The balances are
summed from the ledger entries up to the cut-off, like reconciliation's, so postings during the day do
not move a published root. `services/proof_verifier.py` checks a proof offline.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.assets import scale as asset_scale
from services.proof_verifier import leaf_hash, node_hash


def daily_cut_off(now: datetime | None = None) -> datetime:
    """Midnight UTC of today: the day's proof is about the books at that instant."""
    now = now or datetime.now(UTC)
    return datetime.combine(now.date(), time(0), tzinfo=UTC)


def customer_salt(secret: str, user_id: uuid.UUID, currency: str, cut_off: datetime) -> str:
    msg = f"{user_id}|{currency}|{cut_off.isoformat()}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Node:
    hash: str
    sum: Decimal


@dataclass
class Tree:
    currency: str
    cut_off: datetime
    scale: int
    levels: list[list[Node]]  # levels[0] = leaves (sorted by hash) ... levels[-1] = [root]
    index: dict[uuid.UUID, int]  # customer -> leaf position
    salts: dict[uuid.UUID, str]
    balances: dict[uuid.UUID, Decimal]

    @property
    def root(self) -> Node:
        return self.levels[-1][0]

    def proof(self, user_id: uuid.UUID) -> dict[str, Any] | None:
        """The customer's inclusion proof (the JSON `services.proof_verifier.verify` checks)."""
        if user_id not in self.index:
            return None
        i, path = self.index[user_id], []
        for level in self.levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                node = level[sibling]
                path.append({"hash": node.hash, "sum": f"{node.sum:.{self.scale}f}",
                             "side": "left" if sibling < i else "right"})  # fmt: skip
            i //= 2
        return {
            "currency": self.currency, "cut_off": self.cut_off.isoformat(), "scale": self.scale,
            "salt": self.salts[user_id], "balance": f"{self.balances[user_id]:.{self.scale}f}",
            "path": path, "root": self.root.hash, "total": f"{self.root.sum:.{self.scale}f}",
        }  # fmt: skip


def build_tree(currency: str, cut_off: datetime, balances: dict[uuid.UUID, Decimal], secret: str) -> Tree:
    sc = asset_scale(currency)
    salts = {u: customer_salt(secret, u, currency, cut_off) for u in balances}
    leaves = sorted(
        ((Node(leaf_hash(salts[u], b, sc), b), u) for u, b in balances.items()), key=lambda x: x[0].hash
    )
    level = [n for n, _ in leaves] or [Node(leaf_hash("empty", Decimal(0), sc), Decimal(0))]
    levels = [level]
    while len(level) > 1:
        up = []
        for i in range(0, len(level), 2):
            if i + 1 < len(level):
                total = level[i].sum + level[i + 1].sum
                up.append(Node(node_hash(level[i].hash, level[i + 1].hash, total, sc), total))
            else:
                up.append(level[i])  # an odd node is carried up as it is
        levels.append(up)
        level = up
    return Tree(
        currency=currency, cut_off=cut_off, scale=sc, levels=levels,
        index={u: i for i, (_, u) in enumerate(leaves)}, salts=salts, balances=dict(balances),
    )  # fmt: skip


async def customer_balances_at(
    engine: AsyncEngine, currency: str, cut_off: datetime
) -> dict[uuid.UUID, Decimal]:
    """Every customer's balance in `currency` from the entries up to `cut_off` (accounts with none: zero)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT a.user_id, coalesce(sum(e.amount) FILTER (WHERE e.created_at <= :cut), 0) "
                    "FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id "
                    "WHERE a.kind = 'customer' AND a.currency = :c AND a.created_at <= :cut "
                    "GROUP BY a.user_id"
                ),
                {"c": currency, "cut": cut_off},
            )
        ).all()
    return {r[0]: r[1] for r in rows}


async def tree_for(engine: AsyncEngine, currency: str, cut_off: datetime, secret: str) -> Tree:
    return build_tree(currency, cut_off, await customer_balances_at(engine, currency, cut_off), secret)
