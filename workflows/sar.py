"""The SAR workflow: one `SarWorkflow` per AML case, id `sar-<case id>`, on the ops task queue.

A compliance officer decides the case (docs/architecture.md §6, seed "SAR workflow"); each decision comes
with a decision token for the officer, the case and the action (services/decision_tokens.py, `aml_case_*`),
verified in an activity with the officer's compliance role, and is audited either way:

- `clear`: the case closes (false_positive) and its held withdrawals continue (signal `compliance_decision`
  `{"decision": "clear", "token": …}` to each `withdrawal-<id>`, with a token signed for that withdrawal);
- `decline`: its held withdrawals are refused, their holds released (`compliance_decision` decline);
- `file_sar`: the report is recorded (NCA reference, narrative, attachment metadata). With
  `daml_withdrawal_id` it is a DAML request: that withdrawal stays held for the notice period, 7 UK working
  days with England's bank holidays (computed in an activity), on a durable timer. No refusal by then is
  consent and the withdrawal continues; `nca_refused` within it starts the 31-day moratorium, after which
  it continues unless compliance decided otherwise (`decline`, or `nca_consented` earlier);
- `freeze`: the customer's account is frozen (services/aml/freeze.py). Unfreezing is not a decision here:
  it needs two compliance users (admin API).

The workflow ends with `clear` or `decline` (stage closed); after a report (stage reported) it stays open
for them, since withdrawals of the case may still be held.

Updates `decide` (the admin API: the answer says whether it counted) and signal `decision` (the Temporal
CLI / Web UI, same input) carry a `SarDecision`; query `state`. No customer-facing text comes from here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.aml_sar import SarActivities
    from activities.errors import ErrorType
    from models.aml_cases_api import (
        CaseStep,
        SarDecision,
        SarDecisionOut,
        SarFiling,
        SarInput,
        SarProofCheck,
        SarState,
        WithdrawalRelease,
        WithdrawalSignal,
    )

A = TypeVar("A")
R = TypeVar("R")

DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[ErrorType.AML_CASE_REFUSED],
)
# What each stage lets the officer decide.
ALLOWED = {
    "open": {"clear", "decline", "file_sar", "freeze"},
    "frozen": {"clear", "decline", "file_sar"},
    "awaiting_consent": {"nca_refused", "nca_consented", "decline", "freeze"},
    "moratorium": {"nca_consented", "decline", "freeze"},
    "reported": {"clear", "decline", "freeze"},  # the report is in; held money still needs a word
    "closed": set(),
}


def sar_workflow_id(case_id: uuid.UUID) -> str:
    return f"sar-{case_id}"


@workflow.defn
class SarWorkflow:
    """Guarantees: no decision counts without a valid token from an active compliance user; a held
    withdrawal of the case is let go only by a proven clear, by consent (given, or deemed when the notice
    period or the moratorium ends without word) and is refused only by a proven decline; the DAML deadlines
    are durable timers computed once from the UK working-day calendar."""

    @workflow.init
    def __init__(self, inp: SarInput) -> None:
        self._inp = inp
        self._stage = "open"
        self._frozen = False
        self._daml_state = "none"
        self._daml_withdrawal: uuid.UUID | None = None
        self._filed_by: uuid.UUID | None = None
        self._ends_at: datetime | None = None
        self._declined = False
        self._close_asked = False
        self._lock = asyncio.Lock()

    # --- people ----------------------------------------------------------------------------

    @workflow.update(name="decide")
    async def decide(self, decision: SarDecision) -> SarDecisionOut:
        return await self._decide(decision)

    @workflow.signal(name="decision")
    async def decision(self, decision: SarDecision) -> None:
        await self._decide(decision)

    @workflow.signal(name="case_closed")
    def case_closed(self) -> None:
        """The compliance API closed the case with its outcome: end, once the database confirms it
        (nothing of the case may still be held: the API refuses to close a case holding a withdrawal)."""
        self._close_asked = True

    @workflow.query(name="state")
    def state(self) -> SarState:
        return SarState(
            case_id=self._inp.case_id, stage=self._stage, daml_state=self._daml_state, ends_at=self._ends_at
        )

    def _answer(self, accepted: bool, code: str, detail: str = "") -> SarDecisionOut:
        return SarDecisionOut(accepted=accepted, code=code, detail=detail, stage=self._stage)

    async def _decide(self, d: SarDecision) -> SarDecisionOut:
        """One decision at a time: check it fits the stage, prove it, then act on it."""
        async with self._lock:
            if d.kind not in ALLOWED[self._stage]:
                return self._answer(
                    False, "not_allowed", f"{d.kind} is not possible when the case is {self._stage}"
                )
            problem = await self._db(
                SarActivities.verify_decision, SarProofCheck(case_id=self._inp.case_id, decision=d)
            )
            if problem is not None:
                return self._answer(False, "unproven", problem)
            try:
                await self._act(d)
            except ActivityError as e:
                cause = e.cause
                return self._answer(False, "refused", getattr(cause, "message", "") or str(e))
            return self._answer(True, d.kind)

    async def _act(self, d: SarDecision) -> None:
        case = self._inp.case_id
        if d.kind == "clear":
            await self._db(
                SarActivities.clear_case,
                CaseStep(case_id=case, user_id=self._inp.user_id, staff_id=d.staff_id, reason=d.reason),
            )
            await self._tell_withdrawals("clear", d.staff_id)
            self._stage = "closed"
        elif d.kind == "decline":
            self._declined = True
            # Since the fifth session the report records a decline during a DAML request; sagas that
            # declined before then did not (the patch keeps their histories replaying).
            if self._daml_state in ("awaiting_consent", "refused") and workflow.patched("sar-daml-declined"):
                await self._db(
                    SarActivities.record_decline,
                    CaseStep(case_id=case, user_id=self._inp.user_id, staff_id=d.staff_id),
                )
                self._daml_state = "declined"
            await self._tell_withdrawals("decline", d.staff_id)
            self._stage = "closed"
        elif d.kind == "freeze":
            await self._db(
                SarActivities.freeze_account,
                CaseStep(case_id=case, user_id=self._inp.user_id, staff_id=d.staff_id, reason=d.reason),
            )
            self._frozen = True
            if self._stage == "open":
                self._stage = "frozen"
        elif d.kind == "file_sar":
            ends_at = await self._db(
                SarActivities.file_report, SarFiling(case_id=case, decision=d, requested_at=workflow.now())
            )
            self._filed_by = d.staff_id
            if ends_at is None:
                self._stage = "reported"
            else:
                self._daml_withdrawal = d.daml_withdrawal_id
                self._daml_state = "awaiting_consent"
                self._ends_at = ends_at
                self._stage = "awaiting_consent"
        elif d.kind == "nca_refused":
            self._ends_at = await self._db(
                SarActivities.record_refusal,
                CaseStep(case_id=case, user_id=self._inp.user_id, staff_id=d.staff_id, at=workflow.now()),
            )
            self._daml_state = "refused"
            self._stage = "moratorium"
        elif d.kind == "nca_consented":
            await self._consent("nca_consented")

    # --- the run ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: SarInput) -> SarState:
        """Wait for decisions; while a DAML request is open, its deadline runs on a durable timer."""
        while self._stage != "closed":
            await workflow.wait_condition(
                lambda: self._stage == "closed" or self._consent_pending() or self._close_asked
            )
            if self._close_asked:
                await self._closed_outside()
            if self._consent_pending():
                await self._await_consent()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state()

    async def _closed_outside(self) -> None:
        """After a `case_closed` nudge: end if the case is closed and no DAML request is running (the
        consent timers decide those)."""
        async with self._lock:
            self._close_asked = False
            if self._stage in ("open", "frozen", "reported") and await self._db(
                SarActivities.case_is_closed, self._inp.case_id
            ):
                self._stage = "closed"

    def _consent_pending(self) -> bool:
        """A DAML request waits for consent. Not once compliance declined: the decline's handler may
        still be recording it and telling the withdrawals, and the run must wait for it, not spin."""
        return self._daml_state in ("awaiting_consent", "refused") and not self._declined

    async def _await_consent(self) -> None:
        """Until consent is given or deemed, or compliance declines. A refusal changes the deadline."""
        while self._consent_pending():
            waiting_in = self._daml_state
            assert self._ends_at is not None
            left = max(self._ends_at - workflow.now(), timedelta(seconds=1))
            try:
                await workflow.wait_condition(
                    lambda state=waiting_in: self._daml_state != state or self._declined,  # type: ignore[misc]
                    timeout=left,
                )
            except TimeoutError:
                async with self._lock:  # a decision being proven finishes first
                    if self._daml_state == waiting_in and not self._declined:
                        how = (
                            "notice_period_ended" if waiting_in == "awaiting_consent" else "moratorium_ended"
                        )
                        await self._consent(how)

    async def _consent(self, how: str) -> None:
        """Consent (given or deemed): the DAML withdrawal continues, by the filing officer's word."""
        release = await self._db(
            SarActivities.record_consent,
            CaseStep(case_id=self._inp.case_id, user_id=self._inp.user_id, outcome=how),
        )
        self._daml_state = "moratorium_ended" if how == "moratorium_ended" else "consented"
        self._stage = "reported"
        if release is not None and self._filed_by is not None:
            await self._tell_withdrawals("clear", self._filed_by, only=release)

    async def _tell_withdrawals(
        self, decision: str, staff_id: uuid.UUID, only: uuid.UUID | None = None
    ) -> None:
        """Signal the decision, with a token per withdrawal, to each held withdrawal saga of the case. A
        saga that has finished meanwhile has nothing to hear."""
        signals: list[WithdrawalSignal] = await self._db(
            SarActivities.withdrawal_decisions,
            WithdrawalRelease(
                case_id=self._inp.case_id,
                staff_id=staff_id,
                decision=decision,
                only=only,
            ),
        )
        for s in signals:
            handle = workflow.get_external_workflow_handle(f"withdrawal-{s.withdrawal_id}")
            try:
                await handle.signal(
                    "compliance_decision",
                    {
                        "decision": decision,
                        "token": s.token,
                        "staff_id": str(staff_id),
                        "case_id": str(self._inp.case_id),
                    },
                )
            except FailureError:
                workflow.logger.info("sar %s: withdrawal %s has finished", self._inp.case_id, s.withdrawal_id)

    async def _db(self, step: Callable[[SarActivities, A], Awaitable[R]], arg: A) -> R:
        return await workflow.execute_activity_method(
            step, arg, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY
        )
