"""Name matching with `rigour` (name analysis, symbols, residue distance) and `rapidfuzz` (Jaro-Winkler).

Why these and not `nomenklatura`'s logic-v2 matcher: logic-v2 is built from the same rigour primitives
(`analyze_names`, `pair_symbols`, `compare_parts`) but pulls in followthemoney, duckdb, networkx, rdflib,
textual and more (see README "Sanctions screening"); we need the name logic only, with explanations in
our own shape. The matcher below follows logic-v2's structure:

1. `analyze_names` normalises case, accents and scripts (Cyrillic is transliterated, Arabic and other
   scripts keep a comparable form and get NAME symbols from rigour's Wikidata name corpus), strips
   titles, and tags parts with symbols: "Mohammed" and "Muhammad" (and "محمد") share a symbol.
2. `pair_symbols` aligns parts that share a symbol, in any order (token order never matters).
3. `compare_parts` aligns what is left by a length-budgeted edit distance (typos, transliteration drift).
4. What is still unaligned gets a phonetic pass: parts with the same metaphone key and first letter, or
   a Jaro-Winkler similarity of at least 0.88 (rapidfuzz), are aligned. rigour's budget refuses short
   tokens ("Jon"/"John", "Ann"/"Anne" score 0 there), which is exactly where screening must not miss.

The name score is the weighted share of parts aligned, each alignment counting its score. A part of the
customer's name that matches nothing counts fully against; a listed part missing from the customer's
name (a middle name, a patronymic) counts half, because customers rarely give every name they have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from rapidfuzz.distance import JaroWinkler
from rigour.names import (
    Name,
    NamePart,
    NameTypeTag,
    SymbolCategory,
    analyze_names,
    compare_parts,
    pair_symbols,
    tokenize_name,
)
from rigour.text import ascii_text

LISTED_EXTRA_WEIGHT = 0.5
QUERY_EXTRA_WEIGHT = 1.0
SYMBOL_SCORES = {SymbolCategory.NAME: 0.95, SymbolCategory.NICK: 0.9, SymbolCategory.INITIAL: 0.6}
PHONETIC_SCORE = 0.9
JARO_WINKLER_FLOOR = 0.88

_TYPE_TAGS = {"individual": NameTypeTag.PER, "entity": NameTypeTag.ORG, "vessel": NameTypeTag.OBJ}


@lru_cache(maxsize=200_000)
def normalise_for_blocking(name: str) -> str:
    """The form stored in `sanctions_names.norm` and compared by trigram: ASCII, lower case, tokens only."""
    return " ".join(tokenize_name(ascii_text(name).lower()))


@lru_cache(maxsize=200_000)
def analyse(name: str, entity_type: str = "individual") -> Name | None:
    """One rigour `Name` for a raw name string (cached: listed names are analysed once per process)."""
    names = analyze_names(_TYPE_TAGS.get(entity_type, NameTypeTag.UNK), [name], consolidate=False)
    return max(names, key=lambda n: len(n.parts)) if names else None


def warm_up() -> None:
    """Load rigour's name data now (the first analysis loads it: seconds of native code holding the GIL).
    Called before a process serves or polls (`Settings.name_matching_warmup`); blocking, so from a thread
    while nothing else runs."""
    analyse("Warm Up")


@dataclass
class PartPair:
    query: str
    listed: str
    how: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "listed": self.listed, "how": self.how, "score": round(self.score, 3)}


@dataclass
class NameComparison:
    score: float
    pairs: list[PartPair] = field(default_factory=list)
    unmatched_query: list[str] = field(default_factory=list)
    unmatched_listed: list[str] = field(default_factory=list)


def _text(parts: tuple[NamePart, ...] | list[NamePart]) -> str:
    return " ".join(p.comparable for p in parts)


def _best_symbol_pairing(query: Name, listed: Name) -> tuple[Any, ...]:
    options = pair_symbols(query, listed)
    if not options:
        return ()
    return max(options, key=lambda combo: sum(len(a.qps) + len(a.rps) for a in combo))


def _phonetic_pass(
    query_rest: list[NamePart], listed_rest: list[NamePart]
) -> tuple[list[PartPair], list[NamePart], list[NamePart]]:
    """Greedy alignment of leftovers by metaphone or Jaro-Winkler, best pair first."""
    candidates: list[tuple[float, str, int, int]] = []
    for i, qp in enumerate(query_rest):
        for j, lp in enumerate(listed_rest):
            jw = JaroWinkler.similarity(qp.comparable, lp.comparable)
            if qp.metaphone and qp.metaphone == lp.metaphone and qp.comparable[:1] == lp.comparable[:1]:
                candidates.append((max(PHONETIC_SCORE, jw), "phonetic", i, j))
            elif jw >= JARO_WINKLER_FLOOR:
                candidates.append((jw * 0.95, "jaro_winkler", i, j))
    candidates.sort(reverse=True)
    used_q: set[int] = set()
    used_l: set[int] = set()
    pairs: list[PartPair] = []
    for score, how, i, j in candidates:
        if i in used_q or j in used_l:
            continue
        used_q.add(i)
        used_l.add(j)
        pairs.append(PartPair(query_rest[i].comparable, listed_rest[j].comparable, how, score))
    left_q = [p for i, p in enumerate(query_rest) if i not in used_q]
    left_l = [p for j, p in enumerate(listed_rest) if j not in used_l]
    return pairs, left_q, left_l


def compare_names(query: Name, listed: Name) -> NameComparison:
    """Score how well a customer's name matches one listed name, in [0, 1], with the alignment."""
    pairs: list[PartPair] = []
    used_q: set[int] = set()
    used_l: set[int] = set()
    for alignment in _best_symbol_pairing(query, listed):
        if alignment.symbol is None:
            continue
        literal = alignment.qstr == alignment.rstr
        score = 1.0 if literal else SYMBOL_SCORES.get(alignment.symbol.category, 0.9)
        how = "exact" if literal else f"symbol {alignment.symbol.category.value}"
        pairs.append(PartPair(alignment.qstr, alignment.rstr, how, score))
        used_q.update(p.index for p in alignment.qps)
        used_l.update(p.index for p in alignment.rps)

    query_rest = [p for p in query.parts if p.index not in used_q]
    listed_rest = [p for p in listed.parts if p.index not in used_l]
    if query_rest and listed_rest:
        still_q: list[NamePart] = []
        still_l: list[NamePart] = []
        for alignment in compare_parts(query_rest, listed_rest):
            if alignment.qps and alignment.rps and alignment.score > 0:
                how = "exact" if alignment.qstr == alignment.rstr else "edit_distance"
                pairs.append(PartPair(alignment.qstr, alignment.rstr, how, alignment.score))
            else:
                still_q.extend(alignment.qps)
                still_l.extend(alignment.rps)
        extra, query_rest, listed_rest = _phonetic_pass(still_q, still_l)
        pairs.extend(extra)

    matched = sum(p.score * (len(p.query.split()) + len(p.listed.split())) for p in pairs)
    weight = float(sum(len(p.query.split()) + len(p.listed.split()) for p in pairs))
    weight += QUERY_EXTRA_WEIGHT * len(query_rest) + LISTED_EXTRA_WEIGHT * len(listed_rest)
    score = matched / weight if weight else 0.0
    return NameComparison(
        score=score,
        pairs=pairs,
        unmatched_query=[p.comparable for p in query_rest],
        unmatched_listed=[p.comparable for p in listed_rest],
    )
