"""Proof of liabilities: every customer's proof verifies against the published root and total; a changed
balance, a wrong salt or a tampered path fails the offline verifier."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from services.ledger import House, HouseAccount, Leg, Posting
from services.proof_of_liabilities import tree_for
from services.proof_verifier import main as verifier_main
from services.proof_verifier import verify
from tests.reconciliation.conftest import World

SECRET = "test-secret|proof-of-liabilities"


async def test_every_proof_verifies_and_a_changed_balance_fails(world: World, tmp_path: object) -> None:
    amounts = [
        Decimal("0.1"),
        Decimal("0.25"),
        Decimal("1.00000001"),
        Decimal("0.5"),
        Decimal("2"),
        Decimal(0),
    ]
    users = []
    for amount in amounts:
        user = await world.customer()
        account = await world.ledger.customer_account(user, "BTC")
        if amount:
            await world.ledger.post(
                Posting(
                    reference_type="DEPOSIT", reference_id=uuid.uuid4(), step="credit",
                    legs=[Leg(House(HouseAccount.provider("kraken")), "BTC", -amount),
                          Leg(account, "BTC", amount)],
                )
            )  # fmt: skip
        users.append(user)
    cut_off = datetime.now(UTC)
    tree = await tree_for(world.engine, "BTC", cut_off, SECRET)
    assert tree.root.sum == sum(amounts)
    for user, amount in zip(users, amounts, strict=True):
        proof = tree.proof(user)
        assert proof is not None and Decimal(proof["balance"]) == amount
        assert verify(proof)
    proof = tree.proof(users[2])
    assert proof is not None
    changed = copy.deepcopy(proof)
    changed["balance"] = "1.00000000"
    assert not verify(changed)
    wrong_salt = copy.deepcopy(proof)
    wrong_salt["salt"] = tree.proof(users[0])["salt"]  # type: ignore[index]
    assert not verify(wrong_salt)
    hidden = copy.deepcopy(proof)
    hidden["path"][0]["sum"] = "-0.10000000"  # a negative sibling would hide a liability
    assert not verify(hidden)
    # A posting after the cut-off does not move the published root.
    await world.ledger.post(
        Posting(
            reference_type="DEPOSIT", reference_id=uuid.uuid4(), step="credit",
            legs=[Leg(House(HouseAccount.provider("kraken")), "BTC", Decimal("-1")),
                  Leg(await world.ledger.customer_account(users[0], "BTC"), "BTC", Decimal("1"))],
        )
    )  # fmt: skip
    assert (await tree_for(world.engine, "BTC", cut_off, SECRET)).root == tree.root
    # The offline verifier, as a customer would run it.
    path = f"{tmp_path}/proof.json"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(proof, f)
    assert verifier_main([path]) == 0
    with open(path, "w", encoding="utf-8") as f:
        json.dump(changed, f)
    assert verifier_main([path]) == 1
