"""Does a payer account belong to our customer? A name check modelled on UK Confirmation of Payee.

Money arriving under a customer's deposit reference proves only that the payer knows the reference, so
the payer's account is not trusted as a withdrawal destination on that alone. Its holder name (as the
bank reports it) is compared with the customer's name on file, with the three CoP answers:

- `match`: the same name, allowing case, punctuation, titles, accents and word order;
- `close_match`: nearly the same (a typo, an initial for the first name): the customer is shown the
  name the bank reported and decides when confirming;
- `no_match`: held for ops review; the customer cannot confirm it.

Which name: registration takes `first_name` and `last_name` (optional), and there is no KYC name yet, so
the users table's `first_name` + `last_name` is the customer's name on file. A customer without one gets
`no_match` (ops review) until KYC supplies a verified name, which should then replace these fields.

The similarity is rapidfuzz's `token_sort_ratio` (0-100) of the normalised names.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from rapidfuzz import fuzz

MATCH_SCORE = 97  # at or above: the same name ("JOHN SMITH" / "John Smith", "Smith, John", accents)
CLOSE_MATCH_SCORE = 85  # at or above: close ("Jon Smith", "John Smyth"); below ("Jane Smith"): no match
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "lord", "lady"})


class NameMatch(StrEnum):
    MATCH = "match"
    CLOSE_MATCH = "close_match"
    NO_MATCH = "no_match"


@dataclass(frozen=True, slots=True)
class NameCheck:
    result: NameMatch
    score: int  # 0-100


def _tokens(name: str) -> list[str]:
    """Lower case, accents and punctuation dropped, titles removed."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    words = re.sub(r"[^a-z]+", " ", plain).split()
    return [w for w in words if w not in _TITLES]


def customer_name(first_name: str | None, last_name: str | None) -> str:
    return " ".join(part.strip() for part in (first_name, last_name) if part and part.strip())


def check_payee(holder_name: str, name_on_file: str) -> NameCheck:
    """Compare the bank account's holder name with the customer's name on file."""
    holder, customer = _tokens(holder_name), _tokens(name_on_file)
    if not holder or not customer:
        return NameCheck(NameMatch.NO_MATCH, 0)
    score = round(fuzz.token_sort_ratio(" ".join(holder), " ".join(customer)))
    if score >= MATCH_SCORE:
        return NameCheck(NameMatch.MATCH, score)
    # An initial for the first name ("J Smith" for "John Smith"): the same surname and initial is close.
    initial_only = len(holder[0]) == 1 and len(holder) >= 2 and len(customer) >= 2
    if initial_only and holder[-1] == customer[-1] and holder[0] == customer[0][0]:
        return NameCheck(NameMatch.CLOSE_MATCH, max(score, CLOSE_MATCH_SCORE))
    if score >= CLOSE_MATCH_SCORE:
        return NameCheck(NameMatch.CLOSE_MATCH, score)
    return NameCheck(NameMatch.NO_MATCH, score)
