"""The routing rule matrix: for each rule shape, a study goes where the rule says.

Built on tests/referral_support.py's reading setup (rule 10: CT CHEST from grassroots →
North thoracic; rule 20: MR → North general, which is also the fallback). Each shape gets
a rule of its own at order 5 pointing at a "special" pool; a case it matches goes there,
a case it does not match goes on to the setup's rules.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest
from django.utils import timezone, translation

from alliance.models import PoolMember, ReaderPool, RosterShift, RoutingRule, Tier
from referrals.models import Referral, ReferralStatus
from referrals.routing.decision import reader_choose, routing_decide
from referrals.workflow import services
from tenants.messages import steps_text
from tenants.models import Institution, InstitutionKind, Notification

from .factories import InstitutionFactory, join
from .referral_flow_support import (
    _records_in_english,  # noqa: F401  (autouse)
    readers,
    referral_row,
)
from .referral_support import reading_setup, study_at

NOON = dt.time(12, 0)


def local(at: dt.time) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(dt.date(2026, 11, 20), at))


@pytest.fixture
def reading(world):
    return reading_setup(world)


@pytest.fixture
def county(world):
    site = cast(
        Institution,
        InstitutionFactory(
            code="north-county",
            name="北城县医院",
            name_en="North County Hospital",
            kind=InstitutionKind.COUNTY_HOSPITAL,
        ),
    )
    join(world.north, site, Tier.COUNTY)
    return site


@pytest.fixture
def special(world, reading):
    pool = ReaderPool.objects.create(
        alliance=world.north, institution=world.reader, name="特别", name_en="Special"
    )
    PoolMember.objects.create(pool=pool, user=reading.sam, capacity=10)
    return pool


def decide(
    world,
    county,
    *,
    source: str = "clinic",
    modality: str = "CT",
    body_part: str = "CHEST",
    priority: str = "routine",
    kind: str = "remote_read",
    at: dt.time = NOON,
):
    site = county if source == "county" else world.clinic
    study = study_at(site, modality=modality, body_part=body_part)
    referral = referral_row(world, study=study, priority=priority, kind=kind)
    Referral.objects.filter(pk=referral.pk).update(source=site)
    referral.refresh_from_db()
    return routing_decide(referral, now=local(at))


SHAPES: list[tuple[str, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("source site", {"source_institution": "clinic"}, [{}], [{"source": "county"}]),
    ("source tier", {"source_tier": "county"}, [{"source": "county"}], [{}]),
    (
        "modality",
        {"modality": "us"},
        [{"modality": "US", "body_part": "ABDOMEN"}, {"modality": "SR\\US"}],
        [{}],
    ),
    (
        "body part",
        {"body_part": "knee"},
        [{"body_part": "KNEE"}, {"body_part": "CHEST,KNEE"}],
        [{}],
    ),
    ("priority", {"priority": "stat"}, [{"priority": "stat"}], [{"priority": "urgent"}, {}]),
    ("kind", {"kind": "consultation"}, [{"kind": "consultation"}], [{}, {"kind": "transfer_up"}]),
    (
        "day window",
        {"time_from": dt.time(8), "time_to": dt.time(18)},
        [{"at": dt.time(8)}, {"at": NOON}, {"at": dt.time(17, 59)}],
        [{"at": dt.time(18)}, {"at": dt.time(7, 59)}, {"at": dt.time(23)}],
    ),
    (
        "night window across midnight",
        {"time_from": dt.time(22), "time_to": dt.time(8)},
        [
            {"at": dt.time(22)},
            {"at": dt.time(23, 30)},
            {"at": dt.time(0)},
            {"at": dt.time(3)},
            {"at": dt.time(7, 59)},
        ],
        [{"at": dt.time(8)}, {"at": NOON}, {"at": dt.time(21, 59)}],
    ),
]


@pytest.mark.parametrize(
    ("shape", "criteria", "matching", "missing"), SHAPES, ids=[s[0] for s in SHAPES]
)
def test_a_rule_of_each_shape_routes_what_it_matches(
    world, reading, county, special, shape, criteria, matching, missing
):
    if criteria.get("source_institution") == "clinic":
        criteria = {**criteria, "source_institution": world.clinic}
    rule = RoutingRule.objects.create(
        alliance=world.north, order=5, name=shape, pool=special, **criteria
    )
    for case in matching:
        decision = decide(world, county, **case)
        assert (decision.rule, decision.pool, decision.unroutable) == (rule, special, False), case
        assert decision.reader == reading.sam
    for case in missing:
        decision = decide(world, county, **case)
        assert decision.rule != rule, case
        assert decision.pool != special, case


def test_the_first_matching_rule_wins(world, reading, county, special):
    first = RoutingRule.objects.create(
        alliance=world.north, order=5, name="first", modality="CT", pool=special
    )
    assert decide(world, county).rule == first  # also matches rule 10, which comes later
    RoutingRule.objects.filter(pk=first.pk).update(order=11)
    assert decide(world, county).rule == reading.chest_rule
    # Equal order: the older rule first.
    RoutingRule.objects.filter(pk=first.pk).update(order=10)
    assert decide(world, county).rule == reading.chest_rule


def test_an_inactive_rule_or_a_rule_to_an_inactive_pool_is_passed_over(
    world, reading, county, special
):
    rule = RoutingRule.objects.create(alliance=world.north, order=5, name="x", pool=special)
    assert decide(world, county).rule == rule
    RoutingRule.objects.filter(pk=rule.pk).update(is_active=False)
    assert decide(world, county).rule == reading.chest_rule
    RoutingRule.objects.filter(pk=rule.pk).update(is_active=True)
    ReaderPool.objects.filter(pk=special.pk).update(is_active=False)
    assert decide(world, county).rule == reading.chest_rule


def test_rules_of_another_alliance_do_not_apply(world, reading, county):
    south_pool = ReaderPool.objects.create(
        alliance=world.south, institution=world.outsider, name="南", name_en="South"
    )
    RoutingRule.objects.create(alliance=world.south, order=1, name="all", pool=south_pool)
    assert decide(world, county).pool == reading.thoracic


# --- Overflow ---------------------------------------------------------------------------------


def load(world, pool: ReaderPool, n: int) -> None:
    for _ in range(n):
        referral_row(world, status=ReferralStatus.ROUTED, pool=pool)


def test_a_pool_at_its_cap_overflows_to_the_next_and_on_along_the_chain(world, reading, county):
    thoracic, general = reading.thoracic, reading.general
    ReaderPool.objects.filter(pk=thoracic.pk).update(cap=2)
    load(world, thoracic, 1)
    assert decide(world, county).pool == thoracic  # 1 open of cap 2
    load(world, thoracic, 1)
    with translation.override("en"):
        decision = decide(world, county)
    assert decision.pool == general
    assert "North thoracic at its cap (2 ≥ 2) → overflow to North general" in decision.explanation
    # general at its cap too: on to the county pool it overflows to.
    county_pool = ReaderPool.objects.create(
        alliance=world.north, institution=county, name="县", name_en="County"
    )
    ReaderPool.objects.filter(pk=general.pk).update(cap=1, overflow_to=county_pool)
    load(world, general, 1)
    assert decide(world, county).pool == county_pool
    # An inactive next pool is not overflowed to: the case stays at the last active one.
    ReaderPool.objects.filter(pk=county_pool.pk).update(is_active=False)
    assert decide(world, county).pool == general


def test_an_overflow_cycle_ends(world, reading, county):
    thoracic, general = reading.thoracic, reading.general
    ReaderPool.objects.filter(pk=thoracic.pk).update(cap=1)
    ReaderPool.objects.filter(pk=general.pk).update(cap=1, overflow_to=thoracic)
    load(world, thoracic, 1)
    load(world, general, 1)
    decision = decide(world, county)  # would loop forever if the cycle were followed
    assert decision.pool in (thoracic, general)
    assert decision.explanation.count("overflow") == 2


def test_closed_cases_do_not_count_against_the_cap(world, reading, county):
    ReaderPool.objects.filter(pk=reading.thoracic.pk).update(cap=1)
    for status in (ReferralStatus.REPORTED, ReferralStatus.CANCELLED, ReferralStatus.RETURNED):
        referral_row(world, status=status, pool=reading.thoracic)
    assert decide(world, county).pool == reading.thoracic


# --- Rosters and the reader choice -------------------------------------------------------------


def test_a_roster_pool_chooses_only_readers_on_shift(world, reading, county):
    ReaderPool.objects.filter(pk=reading.thoracic.pk).update(roster_required=True)
    PoolMember.objects.create(pool=reading.thoracic, user=reading.rob, capacity=10)
    at = local(NOON)
    with translation.override("en"):
        decision = decide(world, county)
    assert (decision.pool, decision.reader) == (reading.thoracic, None)
    assert decision.explanation.endswith("no reader on duty; left in the pool")

    RosterShift.objects.create(
        pool=reading.thoracic,
        user=reading.rob,
        starts_at=at - dt.timedelta(hours=4),
        ends_at=at + dt.timedelta(hours=4),
    )
    RosterShift.objects.create(
        pool=reading.thoracic,
        user=world.rita,  # ended at noon
        starts_at=at - dt.timedelta(hours=8),
        ends_at=at,
    )
    with translation.override("en"):
        decision = decide(world, county)
    assert decision.reader == reading.rob
    assert "1 reader on duty; chose Rob with 0 open of 10" in decision.explanation
    # Without the roster requirement, both members are eligible again.
    ReaderPool.objects.filter(pk=reading.thoracic.pk).update(roster_required=False)
    with translation.override("en"):
        assert "2 readers on duty" in decide(world, county).explanation


def open_cases(world, user, n: int, *, claimed: bool = False) -> None:
    for _ in range(n):
        if claimed:
            referral_row(world, status=ReferralStatus.CLAIMED, claimed_by=user)
        else:
            referral_row(world, status=ReferralStatus.ROUTED, assigned_to=user)


def choose(pool: ReaderPool, **kwargs: Any):
    """The reader chosen, and why in English words."""
    reader, why = reader_choose(pool, now=timezone.now(), **kwargs)
    with translation.override("en"):
        return reader, steps_text([why])


def test_the_reader_with_the_most_room_is_chosen(world, reading):
    general, rob, rita = reading.general, reading.rob, world.rita
    PoolMember.objects.filter(pool=general, user=rob).update(capacity=2)
    open_cases(world, rita, 2)  # 2 of 10: 20 % used
    open_cases(world, rob, 1, claimed=True)  # 1 of 2: 50 % used
    reader, why = choose(general)
    assert reader == rita
    assert why == "2 readers on duty; chose Rita with 2 open of 10"
    # Finished or returned cases are no load.
    referral_row(world, status=ReferralStatus.REPORTED, claimed_by=rob)
    referral_row(world, status=ReferralStatus.RETURNED, assigned_to=rob)
    assert choose(general)[0] == rita


def test_ties_go_to_fewer_open_cases_then_the_earlier_reader(world, reading):
    general, rob, rita = reading.general, reading.rob, world.rita
    assert rita.pk < rob.pk
    assert choose(general)[0] == rita  # 0 of 10 each: the earlier reader
    PoolMember.objects.filter(pool=general, user=rita).update(capacity=20)
    open_cases(world, rita, 2)  # 2 of 20 = 10 %
    open_cases(world, rob, 1)  # 1 of 10 = 10 %: same share, fewer cases
    assert choose(general)[0] == rob
    assert choose(general, exclude=frozenset({rob.pk}))[0] == rita


def test_full_inactive_or_excluded_readers_are_not_chosen(world, reading):
    general, rob, rita = reading.general, reading.rob, world.rita
    PoolMember.objects.filter(pool=general).update(capacity=1)
    open_cases(world, rita, 1)
    assert choose(general)[0] == rob
    open_cases(world, rob, 1, claimed=True)
    reader, why = choose(general)
    assert reader is None
    assert why == "2 readers on duty, all at capacity; left in the pool"
    extra = readers(world, general, 2, capacity=5)
    PoolMember.objects.filter(user=extra[0]).update(is_active=False)
    type(extra[1]).objects.filter(pk=extra[1].pk).update(is_active=False)
    assert choose(general)[0] is None


# --- Unroutable cases ---------------------------------------------------------------------------


@pytest.fixture
def route(world, django_capture_on_commit_callbacks):
    def route(referral: Referral) -> Referral:
        with django_capture_on_commit_callbacks(execute=True):
            services.referral_route(referral.pk)
        referral.refresh_from_db()
        return referral

    return route


def test_a_study_no_rule_matches_goes_to_the_fallback_flagged(world, reading, route):
    reading.policy.duty_officer = reading.sam
    reading.policy.save()
    with translation.override("en"):
        referral = route(
            referral_row(world, study=study_at(world.clinic, modality="US", body_part="ABDOMEN"))
        )
    assert (referral.status, referral.pool, referral.unroutable) == (
        ReferralStatus.ROUTED,
        reading.general,
        True,
    )
    with translation.override("en"):  # the tier by its label, not its code
        assert referral.routing_explanation_text.startswith(
            "no rule matches US ABDOMEN from tier Grassroots → fallback North general"
        )
    assert Notification.objects.filter(user=reading.sam, kind="referral.unroutable").count() == 1


def test_without_the_policy_fallback_the_lead_hospital_pool_takes_it(world, reading, county):
    reading.policy.fallback_pool = None
    reading.policy.save()
    decision = decide(world, county, modality="US", body_part="ABDOMEN")
    assert decision.unroutable
    assert decision.pool == reading.general


def test_with_no_fallback_at_all_the_case_waits_flagged_and_the_sweep_retries(
    world, reading, route, django_capture_on_commit_callbacks
):
    policy = reading.policy
    policy.fallback_pool, policy.duty_officer = None, reading.sam
    policy.save()
    ReaderPool.objects.filter(alliance=world.north).update(is_active=False)
    referral = referral_row(world, study=study_at(world.clinic, modality="US", body_part="ABDOMEN"))
    with translation.override("en"):
        referral = route(referral)
    assert (referral.status, referral.pool, referral.unroutable) == (
        ReferralStatus.REQUESTED,
        None,
        True,
    )
    with translation.override("en"):
        assert "no fallback pool" in referral.routing_explanation_text
    route(referral)  # a repeat flags and tells no one again
    assert referral.events.filter(action="unroutable").count() == 1
    told = Notification.objects.filter(user=reading.sam, kind="referral.unroutable")
    assert told.count() == 1

    # The sweep re-drives it once it has waited; still nowhere to go, nothing new.
    later = referral.requested_at + dt.timedelta(minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.referrals_sweep(now=later)["rerouted"] == 1
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.REQUESTED
    assert referral.events.filter(action="unroutable").count() == 1
    assert told.count() == 1

    # A pool comes back: the next sweep routes it, still flagged for review.
    ReaderPool.objects.filter(pk=reading.general.pk).update(is_active=True)
    with django_capture_on_commit_callbacks(execute=True):
        services.referrals_sweep(now=later)
    referral.refresh_from_db()
    assert (referral.status, referral.pool, referral.unroutable) == (
        ReferralStatus.ROUTED,
        reading.general,
        True,
    )
    assert referral.events.filter(action="route").count() == 1


# --- The explanation --------------------------------------------------------------------------


def test_the_explanation_names_the_rule_the_pool_and_the_reader(world, reading, route):
    PoolMember.objects.create(pool=reading.thoracic, user=reading.rob, capacity=10)
    open_cases(world, world.rita, 1)
    referral = route(referral_row(world, study=study_at(world.clinic)))
    with translation.override("en"):
        assert referral.routing_explanation_text == (
            "rule 10 (CT chest): CT CHEST from tier Grassroots → North thoracic; "
            "2 readers on duty; chose Rob with 0 open of 10"
        )
        event = referral.events.get(action="route")
        assert event.reason_text == referral.routing_explanation_text
    assert (referral.rule, referral.assigned_to) == (reading.chest_rule, reading.rob)
    assert event.data == {
        "rule": reading.chest_rule.pk,
        "pool": reading.thoracic.pk,
        "reader": reading.rob.pk,
    }
