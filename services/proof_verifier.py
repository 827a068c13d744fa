"""Check a proof of liabilities offline (stdlib only): `python -m services.proof_verifier proof.json`.

A proof (from `GET /api/v1/accounts/proof/{currency}`) holds the customer's salt and balance, the path of
sibling (hash, sum) pairs up the Merkle sum tree, and the published root and total. The leaf is
`sha256("leaf|" + salt + "|" + balance)`; a parent is `sha256("node|" + left + "|" + right + "|" + sum)`
with sum = left sum + right sum, amounts written at the currency's scale. The proof verifies when the
recomputed root hash and sum equal the published ones and no sum on the path is negative.
"""

from __future__ import annotations

import hashlib
import json
import sys
from decimal import Decimal
from typing import Any


def amount_text(value: Decimal, scale: int) -> str:
    return f"{value:.{scale}f}"


def leaf_hash(salt: str, balance: Decimal, scale: int) -> str:
    return hashlib.sha256(f"leaf|{salt}|{amount_text(balance, scale)}".encode()).hexdigest()


def node_hash(left: str, right: str, total: Decimal, scale: int) -> str:
    return hashlib.sha256(f"node|{left}|{right}|{amount_text(total, scale)}".encode()).hexdigest()


def verify(proof: dict[str, Any]) -> bool:
    """True when the customer's balance is included, once, in the published root and total."""
    scale = int(proof["scale"])
    balance = Decimal(proof["balance"])
    if balance < 0:
        return False
    current, total = leaf_hash(proof["salt"], balance, scale), balance
    for step in proof["path"]:
        sibling_sum = Decimal(step["sum"])
        if sibling_sum < 0:
            return False
        total += sibling_sum
        if step["side"] == "left":
            current = node_hash(step["hash"], current, total, scale)
        else:
            current = node_hash(current, step["hash"], total, scale)
    return current == proof["root"] and total == Decimal(proof["total"])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m services.proof_verifier proof.json\n")
        return 2
    with open(args[0], encoding="utf-8") as f:
        ok = verify(json.load(f))
    sys.stdout.write("proof verifies\n" if ok else "proof does NOT verify\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
