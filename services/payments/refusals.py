"""The base of the payments domain's refusals: each carries a stable `code`, words for the person asking
(`reason`) and the HTTP status it means (the class's, or one given for this case), and is answered by
the API's one `DomainError` handler."""

from __future__ import annotations

from services.errors import DomainError

RETRY_AFTER_S = 5  # as the API's other 503s


class PaymentRefused(DomainError):
    """A payments request refused before anything was written; show `reason`, nothing to undo. A 503
    (the bank, a venue or a price unavailable) says when to try again."""

    default_code = "payment_refused"

    def __init__(self, code: str, reason: str, status: int | None = None) -> None:
        super().__init__(reason, code=code)
        self.reason = reason
        if status is not None:
            self.status = status

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(RETRY_AFTER_S)} if self.status == 503 else None
