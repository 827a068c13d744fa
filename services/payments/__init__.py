"""Payments domain logic (docs/architecture.md §C.4, §C.7): crediting deposits, accepting withdrawals,
approvals, halts, the address whitelist, bank accounts and float top-up requests. No Temporal and no HTTP in
here.

Money moves only through the ledger, and every write is keyed by a business id so that a retried
activity, a duplicated webhook or a replayed workflow changes nothing the second time:

- a GBP deposit is keyed by the bank's transaction id, a crypto deposit by provider + chain tx id
  (`deposit_id` derives the deposits row id and the ledger reference from it);
- a withdrawal's hold, completion and release are keyed by the withdrawal id.

Ledger legs: a deposit credits the customer and debits the house account where the money now sits
(`bank:cash` for GBP, `provider:<venue>` for crypto) or, when nobody can be identified, `suspense`
instead of the customer. A completed withdrawal pays amount + fee from the hold: the amount back to
the house account the money leaves from, the fee to `fee_revenue`; a venue's network fee (taken from our
omnibus on top of the amount) goes to `provider:<venue>` too, borne by the house or the customer by setting.

A withdrawal is recorded in the same transaction that starts its saga (`accept_withdrawal(on_recorded=)`),
and its hold is created only while its row is live (`lock_withdrawal_for_hold`, over services/holds.py);
every ending releases every active hold of the withdrawal (`holds.release_all`).

One module per concept; this package re-exports their public names, so `from services import payments`
and `payments.credit_bank_deposit(...)` keep working:

| module | concept |
| --- | --- |
| `ids` | deposit ids and shared constants |
| `suspense` | deposits we cannot credit as reported, and `deposit_suspense` |
| `bank_events` | the bank's signed events: to the deposit or withdrawal saga, or held |
| `bank_deposits` / `crypto_deposits` | crediting a Faster Payment / an on-chain deposit once |
| `deposit_instructions` | the customer's bank reference and personal crypto deposit address |
| `bank_accounts` | payer accounts: name check, customer confirmation, ops review |
| `withdrawal_requests` | request-time rules and the row recorded with the saga's start |
| `withdrawal_steps` | the saga's status changes, completion, release and four-eyes judgement |
| `halts`, `addresses`, `float_topups` | currency halts, the address whitelist, omnibus top-ups |
| `queries` | what the API lists and shows: deposits, withdrawals, bank accounts, balances, ledger |
"""

from services.alerts import alert, audit
from services.payments.addresses import (
    AddressRefused,
    add_address,
    list_addresses,
    remove_address,
    unlist_address,
    whitelist_address,
)
from services.payments.bank_accounts import (
    BankAccountRefused,
    ConfirmedBankAccount,
    confirm_bank_account,
    confirm_for_customer,
    record_payer_account,
    review_bank_account,
)
from services.payments.bank_deposits import credit_bank_deposit, hold_bank_event, post_credit
from services.payments.bank_events import BankEventSagas, receive_bank_event
from services.payments.crypto_deposits import (
    credit_crypto_deposit,
    crypto_deposit_handled,
    crypto_deposit_id,
    deposit_output,
)
from services.payments.deposit_instructions import (
    BankDetails,
    DepositAccounts,
    DepositInstructionsUnavailable,
    IssuedAddress,
    deposit_instructions,
)
from services.payments.float_topups import close_top_ups, list_top_ups, request_top_up
from services.payments.halts import (
    HaltRefused,
    halt_by_staff,
    halt_reason,
    lift_by_staff,
    lift_halt,
    list_halts,
    set_halt,
)
from services.payments.ids import ADDRESS_COOL_DOWN, ZERO, deposit_id
from services.payments.queries import (
    NotFound,
    approval_queue,
    attention_queue,
    bank_account,
    find_withdrawal,
    list_bank_accounts,
    list_deposits,
    list_withdrawals,
    own_withdrawal,
)
from services.payments.refusals import PaymentRefused
from services.payments.suspense import (
    DEPOSIT_HELD,
    Uncreditable,
    bank_payment_problem,
    deposit_problem,
    hold_in_suspense,
    received_payment,
    resolve_suspense,
)
from services.payments.withdrawal_requests import (
    AcceptedWithdrawal,
    GbpPrices,
    WithdrawalCancels,
    WithdrawalPolicy,
    WithdrawalRefused,
    WithdrawalSagas,
    accept_withdrawal,
    cancel_withdrawal,
    discard_withdrawal,
    lock_withdrawal_for_hold,
    request_withdrawal,
    withdrawal_lock_key,
)
from services.payments.withdrawal_steps import (
    Verdict,
    complete_withdrawal,
    judge_decision,
    record_provider_ref,
    release_withdrawal,
    set_withdrawal_status,
    staff_problem,
    withdrawal_house_account,
    withdrawal_provider_ref,
)

__all__ = [
    "ADDRESS_COOL_DOWN",
    "DEPOSIT_HELD",
    "ZERO",
    "AcceptedWithdrawal",
    "AddressRefused",
    "BankAccountRefused",
    "BankEventSagas",
    "BankDetails",
    "ConfirmedBankAccount",
    "DepositAccounts",
    "DepositInstructionsUnavailable",
    "GbpPrices",
    "HaltRefused",
    "IssuedAddress",
    "NotFound",
    "PaymentRefused",
    "Uncreditable",
    "Verdict",
    "WithdrawalCancels",
    "WithdrawalPolicy",
    "WithdrawalRefused",
    "WithdrawalSagas",
    "accept_withdrawal",
    "cancel_withdrawal",
    "add_address",
    "alert",
    "approval_queue",
    "attention_queue",
    "audit",
    "bank_account",
    "bank_payment_problem",
    "close_top_ups",
    "complete_withdrawal",
    "confirm_bank_account",
    "confirm_for_customer",
    "credit_bank_deposit",
    "credit_crypto_deposit",
    "crypto_deposit_handled",
    "crypto_deposit_id",
    "deposit_id",
    "deposit_instructions",
    "deposit_output",
    "deposit_problem",
    "discard_withdrawal",
    "find_withdrawal",
    "halt_by_staff",
    "halt_reason",
    "hold_bank_event",
    "hold_in_suspense",
    "judge_decision",
    "lift_by_staff",
    "lift_halt",
    "list_addresses",
    "list_bank_accounts",
    "list_deposits",
    "list_halts",
    "list_top_ups",
    "list_withdrawals",
    "lock_withdrawal_for_hold",
    "own_withdrawal",
    "post_credit",
    "receive_bank_event",
    "received_payment",
    "record_payer_account",
    "record_provider_ref",
    "release_withdrawal",
    "remove_address",
    "request_top_up",
    "request_withdrawal",
    "resolve_suspense",
    "review_bank_account",
    "set_halt",
    "set_withdrawal_status",
    "staff_problem",
    "unlist_address",
    "whitelist_address",
    "withdrawal_house_account",
    "withdrawal_lock_key",
    "withdrawal_provider_ref",
]
