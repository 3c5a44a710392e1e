"""The routing console: who may manage which pools, the reader picker, the roster's weekly
series, ordered rules, the rule's dry run (no writes), and the pages behind them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alliance.models import PoolMember, ReaderPool, RosterShift, RoutingRule, Tier
from referrals.models import Referral
from referrals.routing import selectors, services
from referrals.routing.decision import readers_on_duty, routing_decide
from tenants import access
from tenants.audit import AuditCode
from tenants.errors import ForbiddenError
from tenants.models import AuditEvent, Role

from .conftest import _person
from .referral_flow_support import _records_in_english, referral_row  # noqa: F401 (autouse)
from .referral_support import reading_setup, study_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def reading(world):
    return reading_setup(world)


@pytest.fixture
def alma(world):
    """The north's alliance administrator, at the lead (reader) hospital."""
    return _person("alma", "阿尔玛", "Alma", world.reader, Role.ALLIANCE_ADMIN)


@pytest.fixture
def hank(world):
    """The reader hospital's own administrator."""
    return _person("hank", "汉克", "Hank", world.reader, Role.HOSPITAL_ADMIN)


def scope_of(user, institution):
    return access.scope_for_user(user, institution_id=institution.pk)


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def config_events(object_type: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            event=AuditCode.CONFIGURATION_CHANGE, object_type=object_type
        ).order_by("pk")
    )


# --- Who may do what, and whom the picker offers ----------------------------------------


def test_the_picker_offers_only_readers_of_the_alliance(world, reading, alma, hank):
    cleo = _person("cleo", "克里奥", "Cleo", world.clinic, Role.RADIOLOGIST)
    south_reader = _person("sol", "索尔", "Sol", world.outsider, Role.SENIOR_RADIOLOGIST)
    offered = {
        u.username
        for u in selectors.eligible_readers(scope_of(alma, world.reader), alliance=world.north)
    }
    assert offered == {"rita", "rob", "sam", "cleo"}
    assert not {"alice", "adam", "carl", "alma", "hank", south_reader.username} & offered
    # The hospital administrator is offered their own institution's readers only.
    hanks = selectors.eligible_readers(scope_of(hank, world.reader), alliance=world.north)
    assert {u.username for u in hanks} == {"rita", "rob", "sam"}
    # Nobody else is offered anyone; another alliance's administrator gets nobody of ours.
    assert not selectors.eligible_readers(scope_of(world.rita, world.reader), alliance=world.north)
    assert not selectors.eligible_readers(
        scope_of(world.otto, world.outsider), alliance=world.north
    )
    # Already in the pool: not offered again.
    candidates = selectors.pool_member_candidates(scope_of(alma, world.reader), reading.thoracic)
    assert {u.username for u in candidates} == {"rob", "sam", "cleo"}
    assert cleo.pk in {u.pk for u in candidates}


def test_adding_a_member_refuses_anyone_not_eligible_and_is_audited(world, reading, alma):
    scope = scope_of(alma, world.reader)
    for outsider in (world.alice, world.oscar, world.adam):
        with pytest.raises(services.RoutingConfigError):
            services.pool_member_add(scope=scope, pool=reading.thoracic, user=outsider, capacity=5)
    member = services.pool_member_add(
        scope=scope, pool=reading.thoracic, user=reading.rob, capacity=7
    )
    assert (member.user, member.capacity, member.is_active) == (reading.rob, 7, True)
    with pytest.raises(services.RoutingConfigError):
        services.pool_member_add(scope=scope, pool=reading.thoracic, user=reading.rob, capacity=7)
    [event] = config_events("pool_member")
    assert event.action == AuditEvent.Action.CREATE
    assert event.detail == {"pool": reading.thoracic.pk, "user": reading.rob.pk, "capacity": 7}
    assert event.username == "alma"

    services.pool_member_remove(scope=scope, member=member)
    member.refresh_from_db()
    assert not member.is_active
    again = services.pool_member_add(
        scope=scope, pool=reading.thoracic, user=reading.rob, capacity=3
    )
    assert again.pk == member.pk
    assert again.is_active
    assert again.capacity == 3


def test_a_hospital_administrator_manages_only_their_institutions_pools(world, reading, hank):
    scope = scope_of(hank, world.reader)
    assert set(selectors.console_pools(scope)) == {reading.general, reading.thoracic}
    services.pool_update(scope=scope, pool=reading.general, cap=50)
    reading.general.refresh_from_db()
    assert reading.general.cap == 50
    # Overflow sends cases to another pool: the alliance's administrator's call.
    with pytest.raises(ForbiddenError):
        services.pool_update(scope=scope, pool=reading.general, overflow_to=reading.thoracic)
    # Routing rules too.
    with pytest.raises(ForbiddenError):
        services.rule_set_active(scope=scope, rule=reading.chest_rule, active=False)
    # A clinic's hospital administrator manages none of the reader hospital's pools.
    adam = scope_of(world.adam, world.clinic)
    assert not selectors.console_pools(adam).exists()
    with pytest.raises(ForbiddenError):
        services.pool_update(scope=adam, pool=reading.general, cap=1)
    with pytest.raises(ForbiddenError):
        services.pool_create(
            scope=adam, alliance=world.north, institution=world.reader, name="x", cap=5
        )
    # A radiologist manages nothing.
    with pytest.raises(ForbiddenError):
        services.pool_set_active(
            scope=scope_of(world.rita, world.reader), pool=reading.general, active=False
        )


def test_pool_create_update_and_deactivate_are_audited(world, reading, alma):
    scope = scope_of(alma, world.reader)
    pool = services.pool_create(
        scope=scope,
        alliance=world.north,
        institution=world.reader,
        name="神经",
        name_en="Neuro",
        subspecialty="neuro",
        cap=30,
        roster_required=True,
        overflow_to=reading.general,
        lead=reading.sam,
    )
    assert (pool.alliance, pool.institution, pool.cap, pool.overflow_to) == (
        world.north,
        world.reader,
        30,
        reading.general,
    )
    with pytest.raises(services.RoutingConfigError):
        services.pool_update(scope=scope, pool=pool, overflow_to=pool)
    with pytest.raises(services.RoutingConfigError):  # a commission reads nothing
        services.pool_create(
            scope=scope, alliance=world.north, institution=world.commission, name="x", cap=1
        )
    services.pool_update(scope=scope, pool=pool, cap=40, name_en="Neuro")
    services.pool_set_active(scope=scope, pool=pool, active=False)
    pool.refresh_from_db()
    assert (pool.cap, pool.is_active) == (40, False)
    events = config_events("reader_pool")
    assert [e.action for e in events] == ["C", "U", "U"]
    assert events[1].detail == {"changed": {"cap": [30, 40]}}
    assert events[2].detail == {"changed": {"is_active": [True, False]}}


# --- The roster -------------------------------------------------------------------------


def test_a_weekly_series_is_made_in_one_call_in_local_time(world, reading, alma):
    scope = scope_of(alma, world.reader)
    wednesday = dt.date(2026, 12, 9)
    made = services.roster_shifts_add(
        scope=scope,
        pool=reading.general,
        user=world.rita,
        first_day=wednesday,
        starts=dt.time(8),
        ends=dt.time(17, 30),
        weekdays=frozenset({0, 2, 4}),  # Mon, Wed, Fri
        weeks=3,
    )
    starts = [timezone.localtime(s.starts_at) for s in made]
    # The Monday before the first day is skipped; then Wed, Fri, and two whole weeks.
    assert [s.date().isoformat() for s in starts] == [
        "2026-12-09",
        "2026-12-11",
        "2026-12-14",
        "2026-12-16",
        "2026-12-18",
        "2026-12-21",
        "2026-12-23",
        "2026-12-25",
    ]
    assert {(s.hour, s.minute) for s in starts} == {(8, 0)}
    assert {timezone.localtime(s.ends_at).time() for s in made} == {dt.time(17, 30)}
    assert len({s.series for s in made}) == 1
    assert made[0].series is not None
    assert RosterShift.objects.count() == 8
    [event] = config_events("roster_shift")
    assert event.detail["shifts"] == 8
    assert event.detail["weekdays"] == [0, 2, 4]

    # The calendar shows the week by local day.
    week = selectors.roster_week(scope, start=dt.date(2026, 12, 16))  # any day of the week
    assert week.start == dt.date(2026, 12, 14)
    assert [len(day.shifts) for day in week.days] == [1, 0, 1, 0, 1, 0, 0]
    assert week.days[0].shifts[0].shift.user == world.rita

    # Deleting "this and later" from the 16th leaves the first three.
    sixteenth = week.days[2].shifts[0].shift
    assert services.roster_shift_delete(scope=scope, shift=sixteenth, following=True) == 5
    left = [timezone.localtime(s.starts_at).date().isoformat() for s in RosterShift.objects.all()]
    assert left == ["2026-12-09", "2026-12-11", "2026-12-14"]
    # Deleting one shift leaves the rest of the series.
    first = RosterShift.objects.order_by("starts_at")[0]
    assert services.roster_shift_delete(scope=scope, shift=first) == 1
    assert RosterShift.objects.count() == 2


def test_a_night_shift_ends_the_next_morning_and_a_single_day_has_no_series(world, reading, alma):
    [shift] = services.roster_shifts_add(
        scope=scope_of(alma, world.reader),
        pool=reading.general,
        user=reading.rob,
        first_day=dt.date(2026, 12, 10),
        starts=dt.time(22),
        ends=dt.time(8),
    )
    assert timezone.localtime(shift.starts_at) == timezone.make_aware(dt.datetime(2026, 12, 10, 22))
    assert timezone.localtime(shift.ends_at) == timezone.make_aware(dt.datetime(2026, 12, 11, 8))
    assert shift.series is None
    # The live decision sees the reader on duty in the night, not the next noon.
    reading.general.roster_required = True
    reading.general.save()
    night = timezone.make_aware(dt.datetime(2026, 12, 11, 3))
    noon = timezone.make_aware(dt.datetime(2026, 12, 11, 12))
    assert [m.user for m in readers_on_duty(reading.general, now=night)] == [reading.rob]
    assert readers_on_duty(reading.general, now=noon) == []


def test_only_the_pools_members_go_on_its_roster(world, reading, alma):
    scope = scope_of(alma, world.reader)
    for user in (reading.rob, world.alice):  # rob reads in the general pool, not thoracic
        with pytest.raises(services.RoutingConfigError):
            services.roster_shifts_add(
                scope=scope,
                pool=reading.thoracic,
                user=user,
                first_day=dt.date(2026, 12, 10),
                starts=dt.time(8),
                ends=dt.time(12),
            )
    with pytest.raises(services.RoutingConfigError):
        services.roster_shifts_add(
            scope=scope,
            pool=reading.thoracic,
            user=world.rita,
            first_day=dt.date(2026, 12, 10),
            starts=dt.time(8),
            ends=dt.time(12),
            weekdays=frozenset({1}),
            weeks=services.MAX_WEEKS + 1,
        )
    assert not RosterShift.objects.exists()


# --- Routing rules and the dry run ------------------------------------------------------


def test_rules_are_created_last_moved_switched_and_audited(world, reading, alma):
    scope = scope_of(alma, world.reader)
    rule = services.rule_create(
        scope=scope,
        alliance=world.north,
        name="Night STAT",
        source_institution=None,
        source_tier=Tier.GRASSROOTS,
        modality="ct",
        body_part=" head ",
        priority="stat",
        kind="remote_read",
        time_from=dt.time(22),
        time_to=dt.time(8),
        pool=reading.general,
    )
    assert (rule.order, rule.modality, rule.body_part) == (30, "CT", "HEAD")
    services.rule_move(scope=scope, rule=rule, up=True)
    services.rule_move(scope=scope, rule=rule, up=True)
    services.rule_move(scope=scope, rule=rule, up=True)  # already first: nothing moves
    order = list(RoutingRule.objects.filter(alliance=world.north).order_by("order"))
    assert [(r.name, r.order) for r in order] == [("Night STAT", 10), ("CT chest", 20), ("MR", 30)]
    services.rule_set_active(scope=scope, rule=rule, active=False)
    services.rule_update(scope=scope, rule=rule, name="Night STAT head")
    rule.refresh_from_db()
    assert (rule.is_active, rule.name) == (False, "Night STAT head")
    with pytest.raises(services.RoutingConfigError):
        services.rule_update(scope=scope, rule=rule, time_to=None)
    south_pool = ReaderPool.objects.create(
        alliance=world.south, institution=world.south.lead_hospital, name="南"
    )
    with pytest.raises(services.RoutingConfigError):
        services.rule_update(scope=scope, rule=rule, pool=south_pool)
    events = config_events("routing_rule")
    assert [e.action for e in events] == ["C", "U", "U", "U", "U"]
    assert events[1].detail["moved"] == "up"


def test_the_dry_run_explains_and_writes_nothing(world, reading, alma):
    scope = scope_of(alma, world.reader)
    chest = referral_row(world, study=study_at(world.clinic, modality="CT", body_part="CHEST"))
    knee = referral_row(world, study=study_at(world.clinic, modality="MR", body_part="KNEE"))
    candidates = selectors.dry_run_referrals(scope, reading.chest_rule)
    assert [r.pk for r in candidates] == [knee.pk, chest.pk]
    fields = ("pk", "status", "pool", "assigned_to", "updated_at")
    before = sorted(Referral.objects.values_list(*fields))
    with CaptureQueriesContext(connection) as queries:
        rows = selectors.routing_rule_dry_run(rule=reading.chest_rule, referrals=candidates)
    statements = [q["sql"].lstrip().split()[0].upper() for q in queries.captured_queries]
    assert statements
    assert set(statements) == {"SELECT"}, statements
    assert sorted(Referral.objects.values_list(*fields)) == before
    by_pk = {row.referral.pk: row for row in rows}
    assert by_pk[chest.pk].matches
    assert by_pk[chest.pk].decided_by_this_rule
    assert by_pk[chest.pk].decision.pool == reading.thoracic
    assert by_pk[chest.pk].decision.reader == world.rita
    assert by_pk[knee.pk].failures == ["modality", "body_part"]
    assert by_pk[knee.pk].decision.pool == reading.general  # the MR rule takes it
    assert "rule 20 (MR)" in by_pk[knee.pk].decision.explanation
    # The same decision the live routing would make now.
    live = routing_decide(knee)
    assert (live.pool, live.reader, live.rule) == (
        by_pk[knee.pk].decision.pool,
        by_pk[knee.pk].decision.reader,
        by_pk[knee.pk].decision.rule,
    )


def test_the_dry_run_names_a_failed_time_window_and_a_rule_shadowed_by_an_earlier_one(
    world, reading, alma
):
    scope = scope_of(alma, world.reader)
    night = services.rule_create(
        scope=scope,
        alliance=world.north,
        name="Night",
        time_from=dt.time(22),
        time_to=dt.time(8),
        pool=reading.general,
    )
    chest = referral_row(world, study=study_at(world.clinic))
    noon = timezone.make_aware(dt.datetime(2026, 12, 10, 12))
    [row] = selectors.routing_rule_dry_run(rule=night, referrals=[chest], now=noon)
    assert row.failures == ["time_window"]
    late = timezone.make_aware(dt.datetime(2026, 12, 10, 23))
    [row] = selectors.routing_rule_dry_run(rule=night, referrals=[chest], now=late)
    assert row.matches
    assert not row.decided_by_this_rule
    assert row.decision.rule == reading.chest_rule


# --- The pages -------------------------------------------------------------------------


def test_the_pages_answer_the_alliance_administrator(world, reading, alma):
    client = web(alma)
    referral_row(world, study=study_at(world.clinic))
    for path in (
        "/console/pools/",
        "/console/pools/new/",
        f"/console/pools/{reading.general.pk}/",
        "/console/roster/",
        f"/console/roster/?pool={reading.general.pk}&week=2026-12-09",
        "/console/rules/",
        "/console/rules/new/",
        f"/console/rules/{reading.chest_rule.pk}/",
        f"/console/rules/{reading.chest_rule.pk}/test/",
    ):
        assert client.get(path).status_code == 200, path
    page = client.get(f"/console/rules/{reading.chest_rule.pk}/").content.decode()
    assert '<option value="CT" selected>' in page
    assert '<option value="remote_read">Remote read</option>' in page
    test_page = client.get(f"/console/rules/{reading.chest_rule.pk}/test/").content.decode()
    assert "This rule matches." in test_page
    assert "Wang" not in test_page  # the patient's name is not the console's business
    assert AuditEvent.objects.filter(object_type="routing_rule", action="R").count() == 2


def test_the_add_member_page_offers_only_eligible_readers(world, reading, alma):
    page = web(alma).get(f"/console/pools/{reading.thoracic.pk}/").content.decode()
    picker = page.split('id="id_user"')[1].split("</select>")[0]
    assert "Rob" in picker
    assert "Sam" in picker
    assert "Alice" not in picker
    assert "Oscar" not in picker
    assert "Rita" not in picker
    # Posting someone not offered is refused by the form.
    answer = web(alma).post(
        f"/console/pools/{reading.thoracic.pk}/members/",
        {"user": world.alice.pk, "capacity": 5},
    )
    assert answer.status_code == 400
    assert not PoolMember.objects.filter(user=world.alice).exists()


def test_roles_without_the_console_get_403_and_a_hospital_admin_no_rules(world, reading, hank):
    for path in ("/console/pools/", "/console/roster/", "/console/rules/"):
        assert web(world.rita).get(path).status_code == 403, path
        assert web(world.carl).get(path).status_code == 403, path
    assert web(hank).get("/console/pools/").status_code == 200
    assert web(hank).get("/console/rules/").status_code == 403
    assert web(hank).get(f"/console/rules/{reading.chest_rule.pk}/test/").status_code == 403
    # A clinic's hospital administrator sees the console's pools page, but none of ours.
    client = web(world.adam)
    assert "North general" not in client.get("/console/pools/").content.decode()
    assert client.get(f"/console/pools/{reading.general.pk}/").status_code == 404


def test_the_roster_page_adds_a_series_and_shows_it_in_the_week(world, reading, alma):
    client = web(alma)
    answer = client.post(
        f"/console/roster/?pool={reading.general.pk}",
        {
            "user": reading.rob.pk,
            "first_day": "2026-12-07",
            "starts": "08:00",
            "ends": "16:00",
            "weekdays": ["1", "3"],
            "weeks": "2",
        },
    )
    assert answer.status_code == 302
    assert answer["Location"].endswith(f"pool={reading.general.pk}&week=2026-12-07")
    assert RosterShift.objects.filter(user=reading.rob).count() == 4
    page = client.get(answer["Location"]).content.decode()
    assert page.count('class="shift"') == 2
    assert "08:00\u201316:00" in page
    # Rita is a member too; alice is not offered and not accepted.
    refused = client.post(
        f"/console/roster/?pool={reading.general.pk}",
        {
            "user": world.alice.pk,
            "first_day": "2026-12-07",
            "starts": "08:00",
            "ends": "16:00",
            "weeks": "1",
        },
    )
    assert refused.status_code == 400
    assert RosterShift.objects.count() == 4
