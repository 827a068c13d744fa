"""Screening customers against the shipped lists on a real PostgreSQL: names, aliases, variants,
qualifiers, explanations, bands, wallets, re-screening on list updates, and reviewers' dismissals."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.screening import (
    Action,
    CheckResult,
    CheckType,
    ListedEntity,
    ListedName,
    ListSource,
    Match,
    PartialDate,
    Subject,
    Topic,
)
from services.screening.crypto import listed_wallets
from services.screening.matching import analyse, compare_names
from services.screening.service import (
    NotAMatch,
    RecordPolicy,
    ScreeningConfig,
    dismiss_match,
    load_and_rescreen,
    refresh_lists,
    screen_customer,
    screen_subjects,
    set_subject,
)
from services.screening.sources import load_source
from services.screening.store import SuspiciousListUpdate, load_list
from tests.screening.conftest import make_customer


async def _best(engine: AsyncEngine, config: ScreeningConfig, subject: Subject, source_id: str) -> Match:
    [matches] = await screen_subjects(engine, [subject], config)
    found = [m for m in matches if m.source_id == source_id]
    assert found, f"{subject.name} did not match {source_id}: {[(m.source_id, m.score) for m in matches]}"
    return found[0]


async def test_an_exact_listed_name_with_its_date_of_birth_scores_in_the_freeze_band(
    screening_engine: AsyncEngine, screening_config: ScreeningConfig
) -> None:
    subject = Subject(
        name="Anton Nikolaeyvich Andreyev", date_of_birth=date(1985, 3, 3), nationality="Russia"
    )
    match = await _best(screening_engine, screening_config, subject, "29703")
    assert match.score == 100
    assert match.action is Action.FREEZE_PENDING_REVIEW
    assert match.name.listed_name == "ANDREYEV, Anton Nikolaeyvich"
    assert {p["listed"] for p in match.name.token_pairs} == {"andreyev", "anton", "nikolaeyvich"}
    assert {q["qualifier"]: q["agreement"] for q in match.qualifiers} == {
        "date_of_birth": "EXACT",
        "nationality": "MATCH",
    }


async def test_an_alias_is_found_and_the_explanation_names_it(
    screening_engine: AsyncEngine, screening_config: ScreeningConfig
) -> None:
    match = await _best(screening_engine, screening_config, Subject(name="Muhammad Zaydan"), "2674")
    assert match.primary_name == "ABBAS, Abu"
    assert match.name.listed_name == "ZAYDAN, Muhammad"
    assert match.name.listed_name_kind == "aka"
    assert match.score >= screening_config.bands.review


async def test_short_given_name_variants_and_transliterations_are_found(
    screening_engine: AsyncEngine, screening_config: ScreeningConfig
) -> None:
    jon = await _best(screening_engine, screening_config, Subject(name="Jon Numbi"), "20420")  # NUMBI, John
    assert {"query": "jon", "listed": "john"}.items() <= next(
        p for p in jon.name.token_pairs if p["query"] == "jon"
    ).items()
    assert jon.score >= screening_config.bands.review
    # Token order, case and Cyrillic script do not matter.
    cyrillic = await _best(screening_engine, screening_config, Subject(name="Антон Андреев"), "29703")
    assert cyrillic.score >= screening_config.bands.review - 15  # a dropped patronymic and a spelling drift
    # Ann / Anne: the residue pass aligns them phonetically where edit-distance budgets refuse.
    comparison = compare_names(analyse("Ann Meadows"), analyse("Anne Meadows"))  # type: ignore[arg-type]
    assert comparison.score > 0.9
    assert [p.how for p in comparison.pairs if p.query == "ann"] == ["phonetic"]


async def test_a_wrong_date_of_birth_lowers_the_score(
    screening_engine: AsyncEngine, screening_config: ScreeningConfig
) -> None:
    right = await _best(
        screening_engine,
        screening_config,
        Subject(name="John Edward Meadows", date_of_birth=date(1958, 12, 17)),
        "19710",
    )
    wrong = await _best(
        screening_engine,
        screening_config,
        Subject(name="John Edward Meadows", date_of_birth=date(1990, 6, 1)),
        "19710",
    )
    assert wrong.score < right.score
    assert right.action is Action.FREEZE_PENDING_REVIEW and wrong.action is Action.REVIEW
    assert next(q for q in wrong.qualifiers if q["qualifier"] == "date_of_birth")["agreement"] == "MISMATCH"


async def test_an_unrelated_customer_is_clear_and_recorded_as_such(
    screening_engine: AsyncEngine, screening_config: ScreeningConfig
) -> None:
    user_id = await make_customer(screening_engine)
    await set_subject(
        screening_engine,
        user_id,
        full_name="Harriet Wellbeloved",
        date_of_birth=date(1990, 1, 2),
        nationality="United Kingdom",
    )
    outcomes = await screen_customer(screening_engine, screening_config, user_id)
    assert {(o.check_type, o.result) for o in outcomes} == {
        (CheckType.SANCTIONS, CheckResult.CLEAR),
        (CheckType.PEP, CheckResult.CLEAR),
    }
    async with screening_engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT check_type, result FROM aml_checks WHERE user_id = :u"), {"u": user_id}
            )
        ).all()
    assert sorted(tuple(r) for r in rows) == [("PEP", "CLEAR"), ("SANCTIONS", "CLEAR")]


async def test_a_listed_wallet_address_is_found_and_an_unlisted_one_is_not(
    screening_engine: AsyncEngine,
) -> None:
    hits = await listed_wallets(screening_engine, "1Fz29BQp82pE3vXXcsZoMNQ3KSHfMzfMe3")
    assert [(h.source_id, h.currency) for h in hits] == [("29703", "XBT")]
    eth = await listed_wallets(
        screening_engine, "0x8576ACC5C05D6CE88F4E49BF65BDF0C62F91353C"
    )  # hex: any case
    assert [h.source_id for h in eth] == ["29703"]
    assert (
        await listed_wallets(screening_engine, "1fz29bqp82pe3vxxcszomnq3kshfmzfme3") == []
    )  # base58: exact case
    assert await listed_wallets(screening_engine, "bc1qnotlistedanywhere0000000000000000000") == []


def _pep(source_id: str, name: str, *, dob: int | None = None) -> ListedEntity:
    return ListedEntity(
        source=ListSource.PEP,
        source_id=source_id,
        entity_type="individual",
        topic=Topic.PEP,
        names=[ListedName(name=name)],
        dates_of_birth=[PartialDate(year=dob)] if dob else [],
    )


async def _checks(engine: AsyncEngine, user_id: uuid.UUID, check_type: str) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT result, risk_score FROM aml_checks WHERE user_id = :u AND check_type = :t "
                "ORDER BY created_at, id"
            ),
            {"u": user_id, "t": check_type},
        )
        return [(r.result, r.risk_score) for r in rows]


async def test_a_list_update_rescreens_everyone_and_records_only_changed_outcomes(
    screening_engine: AsyncEngine, screening_config: ScreeningConfig
) -> None:
    hit, clear_then_hit, stays_clear = [await make_customer(screening_engine) for _ in range(3)]
    await set_subject(
        screening_engine, hit, full_name="Zebulon Quartermaine", date_of_birth=None, nationality=None
    )
    await set_subject(
        screening_engine,
        clear_then_hit,
        full_name="Ignatius Fairweather",
        date_of_birth=None,
        nationality=None,
    )
    await set_subject(
        screening_engine, stays_clear, full_name="Mildred Oyelaran", date_of_birth=None, nationality=None
    )

    first = await load_and_rescreen(
        screening_engine, screening_config, ListSource.PEP, [_pep("P1", "Zebulon Quartermaine", dob=1970)]
    )
    assert first.load.added == 1
    assert await _checks(screening_engine, hit, "PEP") == [("HIT", 100)]
    assert await _checks(screening_engine, clear_then_hit, "PEP") == []
    assert await _checks(screening_engine, stays_clear, "PEP") == []

    # The same list again: everyone is re-screened, nothing changed, nothing recorded.
    again = await load_and_rescreen(
        screening_engine, screening_config, ListSource.PEP, [_pep("P1", "Zebulon Quartermaine", dob=1970)]
    )
    assert (again.load.unchanged, again.load.changed, again.load.added) == (1, 0, 0)
    assert again.screened >= 3
    assert await _checks(screening_engine, hit, "PEP") == [("HIT", 100)]

    # A new listing raises only the customer it matches.
    await load_and_rescreen(
        screening_engine,
        screening_config,
        ListSource.PEP,
        [_pep("P1", "Zebulon Quartermaine", dob=1970), _pep("P2", "Ignatius Fairweather")],
    )
    assert await _checks(screening_engine, hit, "PEP") == [("HIT", 100)]
    assert await _checks(screening_engine, clear_then_hit, "PEP") == [("HIT", 100)]
    assert await _checks(screening_engine, stays_clear, "PEP") == []

    # A delisting clears the customer it had raised.
    await load_and_rescreen(
        screening_engine, screening_config, ListSource.PEP, [_pep("P2", "Ignatius Fairweather")]
    )
    assert await _checks(screening_engine, hit, "PEP") == [("HIT", 100), ("CLEAR", 0)]


async def test_a_dismissed_match_is_not_raised_again_until_the_listing_changes(
    screening_engine: AsyncEngine, screening_config: ScreeningConfig
) -> None:
    customer = await make_customer(screening_engine)
    reviewer = await make_customer(screening_engine)
    await set_subject(
        screening_engine, customer, full_name="Ottoline Brackenbury", date_of_birth=None, nationality=None
    )
    listing = [_pep("P2", "Ignatius Fairweather"), _pep("P3", "Ottoline Brackenbury", dob=1950)]
    await load_and_rescreen(screening_engine, screening_config, ListSource.PEP, listing)
    [pep] = [
        o
        for o in await screen_customer(
            screening_engine, screening_config, customer, policy=RecordPolicy.ON_CHANGE
        )
        if o.check_type is CheckType.PEP
    ]
    assert pep.result is CheckResult.HIT
    match = pep.matches[0]

    outcomes = await dismiss_match(
        screening_engine,
        screening_config,
        user_id=customer,
        entity_id=match.entity_id,
        entity_version=match.entity_version,
        reviewer_id=reviewer,
        reason="different person: customer born 1992",
    )
    assert next(o for o in outcomes if o.check_type is CheckType.PEP).result is CheckResult.FALSE_POSITIVE
    before = await _checks(screening_engine, customer, "PEP")
    assert before[-1][0] == "FALSE_POSITIVE"

    # Unchanged listing: re-screening does not raise it again.
    await load_and_rescreen(screening_engine, screening_config, ListSource.PEP, listing)
    assert await _checks(screening_engine, customer, "PEP") == before

    # The listing changes (a new date of birth): it is a new version and is raised again.
    changed = [_pep("P2", "Ignatius Fairweather"), _pep("P3", "Ottoline Brackenbury", dob=1951)]
    result = await load_and_rescreen(screening_engine, screening_config, ListSource.PEP, changed)
    assert result.load.changed == 1
    after = await _checks(screening_engine, customer, "PEP")
    assert after[:-1] == before and after[-1][0] == "HIT"

    # The old version's dismissal cannot be replayed onto the new one, and nobody reviews themselves.
    with pytest.raises(NotAMatch):
        await dismiss_match(
            screening_engine,
            screening_config,
            user_id=customer,
            entity_id=match.entity_id,
            entity_version=match.entity_version,
            reviewer_id=reviewer,
            reason="replayed",
        )
    with pytest.raises(PermissionError):
        await dismiss_match(
            screening_engine,
            screening_config,
            user_id=customer,
            entity_id=match.entity_id,
            entity_version=match.entity_version + 1,
            reviewer_id=customer,
            reason="it is not me",
        )


async def test_a_freeze_band_hit_freezes_the_account_pending_review(
    screening_engine: AsyncEngine, screening_config: ScreeningConfig
) -> None:
    user_id = await make_customer(screening_engine)
    await set_subject(
        screening_engine,
        user_id,
        full_name="Anton Nikolaeyvich Andreyev",
        date_of_birth=date(1985, 3, 3),
        nationality="Russia",
    )
    outcomes = await screen_customer(screening_engine, screening_config, user_id)
    sanctions = next(o for o in outcomes if o.check_type is CheckType.SANCTIONS)
    assert (sanctions.result, sanctions.action) == (CheckResult.HIT, Action.FREEZE_PENDING_REVIEW)
    async with screening_engine.connect() as conn:
        status = (
            await conn.execute(text("SELECT status FROM users WHERE id = :u"), {"u": user_id})
        ).scalar_one()
        details = (
            await conn.execute(
                text("SELECT details FROM aml_checks WHERE user_id = :u AND check_type = 'SANCTIONS'"),
                {"u": user_id},
            )
        ).scalar_one()
    assert status == "FROZEN"
    assert details["matches"][0]["source_id"] == "29703"
    assert details["matches"][0]["name"]["listed_name"] == "ANDREYEV, Anton Nikolaeyvich"


async def test_reloading_the_shipped_lists_changes_nothing_and_a_truncated_list_is_refused(
    screening_engine: AsyncEngine, screening_config: ScreeningConfig, sanctions_dir: Path
) -> None:
    async with screening_engine.connect() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM aml_checks"))).scalar_one()
    results = await refresh_lists(screening_engine, screening_config, sanctions_dir)
    ofac = next(r for r in results if r.load.source is ListSource.OFAC_SDN)
    assert (ofac.load.added, ofac.load.changed, ofac.load.removed, ofac.load.unchanged) == (0, 0, 0, 8976)
    async with screening_engine.connect() as conn:
        after = (await conn.execute(text("SELECT count(*) FROM aml_checks"))).scalar_one()
    assert after == before  # every customer re-screened, no outcome changed, nothing recorded

    truncated = load_source(sanctions_dir, ListSource.OFAC_SDN)[:1000]
    with pytest.raises(SuspiciousListUpdate):
        await load_list(screening_engine, ListSource.OFAC_SDN, truncated)
    assert await listed_wallets(screening_engine, "1Fz29BQp82pE3vXXcsZoMNQ3KSHfMzfMe3")  # still listed
