"""Decision tokens for KYC reviews name the submission (claim `kid`) and can pass for nothing else."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.decision_tokens import DecisionTokens, ProofInvalid

TOKENS = DecisionTokens.from_secret("a-test-secret-that-is-long-enough-for-hmac")
NOW = datetime.now(UTC)


def test_a_kyc_review_token_proves_exactly_its_reviewer_submission_and_action() -> None:
    reviewer, submission = uuid.uuid4(), uuid.uuid4()
    token = TOKENS.issue(actor_id=reviewer, kyc_submission_id=submission, action="kyc_approve", now=NOW)
    TOKENS.verify(token, actor_id=reviewer, kyc_submission_id=submission, action="kyc_approve", now=NOW)
    with pytest.raises(ProofInvalid):
        TOKENS.verify(token, actor_id=reviewer, kyc_submission_id=submission, action="kyc_reject", now=NOW)
    with pytest.raises(ProofInvalid):
        TOKENS.verify(
            token, actor_id=uuid.uuid4(), kyc_submission_id=submission, action="kyc_approve", now=NOW
        )
    with pytest.raises(ProofInvalid):
        TOKENS.verify(token, actor_id=reviewer, kyc_submission_id=uuid.uuid4(), action="kyc_approve", now=NOW)


def test_withdrawal_and_kyc_tokens_cannot_pass_for_each_other() -> None:
    staff, subject = uuid.uuid4(), uuid.uuid4()
    withdrawal = TOKENS.issue(actor_id=staff, withdrawal_id=subject, action="approve", now=NOW)
    with pytest.raises((ProofInvalid, ValueError)):
        TOKENS.verify(withdrawal, actor_id=staff, kyc_submission_id=subject, action="approve", now=NOW)
    with pytest.raises(ProofInvalid):
        TOKENS.verify(withdrawal, actor_id=staff, kyc_submission_id=subject, action="kyc_approve", now=NOW)
    kyc = TOKENS.issue(actor_id=staff, kyc_submission_id=subject, action="kyc_approve", now=NOW)
    with pytest.raises((ProofInvalid, ValueError)):
        TOKENS.verify(kyc, actor_id=staff, withdrawal_id=subject, action="kyc_approve", now=NOW)
    with pytest.raises(ProofInvalid):
        TOKENS.verify(kyc, actor_id=staff, withdrawal_id=subject, action="approve", now=NOW)
    with pytest.raises(ValueError):
        TOKENS.issue(
            actor_id=staff, withdrawal_id=subject, kyc_submission_id=subject, action="approve", now=NOW
        )
