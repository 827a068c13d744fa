"""The one base class for domain errors: each carries a stable machine `code` and the HTTP `status` it means.

Services raise subclasses of `DomainError` and know nothing of HTTP; the API turns every one of them into the
one problem-details shape through a single exception handler (`api/errors.py`), so a route never needs an
`except` clause to translate a domain refusal. Activities map them to Temporal `ApplicationError`s through
`activities/errors.py`. Subclasses set `default_code` and `status` as class attributes:

    class WithdrawalRefused(DomainError):
        default_code = "withdrawal_refused"
        status = 422

`field` names the input at fault (it becomes the problem's `errors[0].field`); `headers()` lets an error add
response headers such as `Retry-After`.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class of every refusal a service can explain to a client; never raised itself."""

    default_code = "domain_error"
    status = 400

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.field = field

    def headers(self) -> dict[str, str] | None:
        """Extra response headers for this error (none by default)."""
        return None
