"""The referral state machine and the services' rules about who may take each step.

- every step from every status: allowed ones move the status and record who, when and why;
  forbidden ones raise TransitionNotAllowedError and leave the row and its events alone;
- each service checks the person's institution and role (ReferralForbiddenError) and a
  refused step changes nothing;
- the same request twice (also at the same instant, on two connections) is one referral;
- a site set to "remote read when a study is complete" gets exactly one automatic referral.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.utils import timezone, translation

from alliance.models import SiteSettings
from referrals.archive.stability import generation_of, studies_mark_stable
from referrals.models import Referral, ReferralEvent, ReferralStatus, Study
from referrals.tasks import referral_request_when_stable
from referrals.workflow import services
from referrals.workflow.states import STEPS, TransitionNotAllowedError, allowed_actions, transition
from tenants.models import Role

from .conftest import _person
from .referral_flow_support import (
    _records_in_english,  # noqa: F401  (autouse)
    referral_row,
    scope,
)
from .referral_support import reading_setup, study_at

S = ReferralStatus
AT = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def reading(world):
    return reading_setup(world)


def row(referral: Referral) -> dict[str, Any]:
    fresh = Referral.objects.get(pk=referral.pk)
    return {**model_to_dict(fresh), "updated_at": fresh.updated_at}


# --- The state machine -----------------------------------------------------------------------


def test_the_steps_are_the_documented_graph():
    graph = {name: (set(step.sources), step.target) for name, step in STEPS.items()}
    live = {S.REQUESTED, S.ROUTED, S.CLAIMED, S.REPORTING}
    assert graph == {
        "route": ({S.REQUESTED}, S.ROUTED),
        "reroute": ({S.ROUTED, S.CLAIMED}, S.ROUTED),
        "claim": ({S.ROUTED}, S.CLAIMED),
        "open": ({S.CLAIMED, S.REPORTING}, None),
        "release": ({S.CLAIMED}, S.ROUTED),
        "start_report": ({S.CLAIMED}, S.REPORTING),
        "report": ({S.REPORTING}, S.REPORTED),
        "deliver": ({S.REPORTED}, S.DELIVERED),
        "acknowledge": ({S.DELIVERED}, S.ACKNOWLEDGED),
        "return": ({S.ROUTED, S.CLAIMED, S.REPORTING}, S.RETURNED),
        "cancel": ({S.REQUESTED, S.ROUTED, S.CLAIMED}, S.CANCELLED),
        "warn": (live, None),
        "breach": (live, None),
        "escalate": (live, None),
    }


@pytest.mark.parametrize("status", S.values)
@pytest.mark.parametrize("action", list(STEPS))
def test_every_step_from_every_status(world, action, status):
    referral = referral_row(world, status=status)
    step = STEPS[action]
    before = row(referral)
    with transaction.atomic():
        locked = Referral.objects.select_for_update().get(pk=referral.pk)
        if status not in step.sources:
            with pytest.raises(TransitionNotAllowedError) as refused:
                transition(
                    locked,
                    action,
                    actor=world.rita,
                    institution=world.reader,
                    reason="why not",
                    at=AT,
                    return_comment="must not stick",
                )
            assert refused.value.action == action
            assert locked.status == status
            assert locked.return_comment == ""
    if status not in step.sources:
        assert row(referral) == before
        assert not ReferralEvent.objects.filter(referral=referral).exists()
        assert action not in allowed_actions(referral)
        return

    with transaction.atomic():
        locked = Referral.objects.select_for_update().get(pk=referral.pk)
        transition(
            locked,
            action,
            actor=world.rita,
            institution=world.reader,
            reason="because",
            at=AT,
            data={"n": 1},
        )
    after = Referral.objects.get(pk=referral.pk)
    assert after.status == (step.target or status)
    if step.stamp:
        assert getattr(after, step.stamp) == AT
    [event] = ReferralEvent.objects.filter(referral=referral)
    assert (event.action, event.from_status, event.to_status) == (
        action,
        status,
        step.target or status,
    )
    assert (event.actor, event.actor_institution, event.at, event.reason, event.data) == (
        world.rita,
        world.reader,
        AT,
        "because",
        {"n": 1},
    )
    assert action in allowed_actions(referral)


@pytest.mark.parametrize("status", [S.CANCELLED, S.ACKNOWLEDGED, S.RETURNED])
def test_an_ended_referral_allows_no_step(world, status):
    assert allowed_actions(referral_row(world, status=status)) == []


# --- Services: each step is recorded with who, when and why ------------------------------------


@pytest.fixture
def send(world, django_capture_on_commit_callbacks):
    def send(study: Study | None = None, **kwargs: Any) -> Referral:
        with django_capture_on_commit_callbacks(execute=True):
            referral, _created = services.referral_request(
                scope=scope(world.alice, world.clinic),
                study=study or study_at(world.clinic),
                **kwargs,
            )
        referral.refresh_from_db()
        return referral

    return send


def trail(referral: Referral) -> list[tuple[str, str, str, Any]]:
    return [
        (e.action, e.from_status, e.to_status, e.actor and e.actor.username)
        for e in referral.events.select_related("actor")
    ]


def test_a_referral_from_request_to_acknowledgement_records_every_step(world, reading, send):
    referral = send(clinical_question="cough 3 weeks", priority="urgent")
    rita = scope(world.rita, world.reader)
    services.referral_claim(scope=rita, referral_id=referral.pk)
    services.referral_open(scope=rita, referral_id=referral.pk)
    services.referral_report_started(referral=referral, user=world.rita)
    services.referral_reported(referral=referral, user=world.rita)
    services.referral_acknowledge(scope=scope(world.alice, world.clinic), referral_id=referral.pk)
    referral.refresh_from_db()
    assert referral.status == S.ACKNOWLEDGED
    assert trail(referral) == [
        ("create", "", "requested", "alice"),
        ("route", "requested", "routed", None),
        ("claim", "routed", "claimed", "rita"),
        ("open", "claimed", "claimed", "rita"),
        ("start_report", "claimed", "reporting", "rita"),
        ("report", "reporting", "reported", "rita"),
        ("deliver", "reported", "delivered", None),
        ("acknowledge", "delivered", "acknowledged", "alice"),
    ]
    route = referral.events.get(action="route")
    with translation.override("en"):
        assert "rule 10" in route.reason_text
    assert route.data["pool"] == reading.thoracic.pk
    events = list(referral.events.all())
    assert all(e.at is not None for e in events)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert referral.events.get(action="claim").actor_institution == world.reader


def test_cancel_and_return_keep_their_reasons(world, reading, send):
    cancelled = send()
    services.referral_cancel(
        scope=scope(world.alice, world.clinic),
        referral_id=cancelled.pk,
        reason="patient transferred",
    )
    event = cancelled.events.get(action="cancel")
    assert (event.reason, event.actor) == ("patient transferred", world.alice)

    returned = send(study_at(world.clinic, modality="MR", body_part="BRAIN"))
    services.referral_return(
        scope=scope(world.rita, world.reader),
        referral_id=returned.pk,
        reason="other",
        comment="series 3 is empty",
    )
    returned.refresh_from_db()
    event = returned.events.get(action="return")
    assert returned.return_reason == "other"
    assert (event.reason, event.data, event.actor) == (
        "series 3 is empty",
        {"reason": "other"},
        world.rita,
    )


# --- Services: who may do what -----------------------------------------------------------------


def refused(referral: Referral, error: type[Exception], call: Callable[[], Any]) -> None:
    """`call` raises `error` and the referral and its events are as they were."""
    before, events = row(referral), list(referral.events.values_list("pk", flat=True))
    with pytest.raises(error):
        call()
    assert row(referral) == before
    assert list(referral.events.values_list("pk", flat=True)) == events


def test_requests_need_the_holding_site_and_a_requesting_role(world, reading):
    study = study_at(world.clinic)
    for who, where in [
        (world.adam, world.clinic),  # hospital admin: no requesting role
        (world.rita, world.reader),  # another institution's radiologist
        (world.oscar, world.outsider),
    ]:  # another alliance
        with pytest.raises(services.ReferralForbiddenError):
            services.referral_request(scope=scope(who, where), study=study)
    assert not Referral.objects.exists()
    with pytest.raises(services.ReferralError) as bad:
        services.referral_request(
            scope=scope(world.alice, world.clinic), study=study, priority="whenever"
        )
    assert bad.value.code == "bad_priority"


def test_reader_steps_need_a_reader_of_the_pool(world, reading, send):
    referral = send()  # CT chest: the thoracic pool (rita only)
    alice, rob = scope(world.alice, world.clinic), scope(reading.rob, world.reader)
    # A radiologist of another alliance.
    owen = scope(_person("owen", "欧文", "Owen", world.outsider, Role.RADIOLOGIST), world.outsider)
    refused(
        referral,
        services.ReferralForbiddenError,
        lambda: services.referral_claim(scope=alice, referral_id=referral.pk),
    )
    refused(
        referral,
        services.ReferralForbiddenError,  # a radiologist of another pool
        lambda: services.referral_claim(scope=rob, referral_id=referral.pk),
    )
    refused(
        referral,
        services.ReferralForbiddenError,
        lambda: services.referral_return(
            scope=alice, referral_id=referral.pk, reason="motion_artefact"
        ),
    )
    # Another alliance does not learn that the referral exists.
    with pytest.raises(services.ReferralError) as hidden:
        services.referral_claim(scope=owen, referral_id=referral.pk)
    assert hidden.value.code == "not_found"
    assert not isinstance(hidden.value, services.ReferralForbiddenError)

    rita = scope(world.rita, world.reader)
    services.referral_claim(scope=rita, referral_id=referral.pk)
    referral.refresh_from_db()
    sam = scope(reading.sam, world.reader)
    refused(
        referral,
        services.ReferralForbiddenError,
        lambda: services.referral_open(scope=sam, referral_id=referral.pk),
    )
    refused(
        referral,
        services.ReferralForbiddenError,
        lambda: services.referral_release(scope=sam, referral_id=referral.pk),
    )
    refused(
        referral,
        services.ReferralForbiddenError,
        lambda: services.referral_return(
            scope=sam, referral_id=referral.pk, reason="motion_artefact"
        ),
    )
    refused(
        referral,
        services.ReferralConflictError,
        lambda: services.referral_acknowledge(
            scope=scope(world.alice, world.clinic), referral_id=referral.pk
        ),
    )


def test_clinic_steps_need_the_sending_site_and_a_requesting_role(world, reading, send):
    referral = send()
    for who, where in [(world.rita, world.reader), (world.adam, world.clinic)]:
        someone = scope(who, where)
        refused(
            referral,
            services.ReferralForbiddenError,
            partial(services.referral_cancel, scope=someone, referral_id=referral.pk),
        )
        refused(
            referral,
            services.ReferralForbiddenError,
            partial(services.referral_acknowledge, scope=someone, referral_id=referral.pk),
        )


def test_a_step_from_the_wrong_status_is_a_conflict_and_changes_nothing(world, reading, send):
    referral = send()
    alice = scope(world.alice, world.clinic)
    services.referral_cancel(scope=alice, referral_id=referral.pk)
    referral.refresh_from_db()
    refused(
        referral,
        services.ReferralConflictError,
        lambda: services.referral_cancel(scope=alice, referral_id=referral.pk),
    )
    refused(
        referral,
        services.ReferralConflictError,
        lambda: services.referral_claim(
            scope=scope(world.rita, world.reader), referral_id=referral.pk
        ),
    )


# --- One referral per study and kind ----------------------------------------------------------


def test_the_same_request_twice_is_one_referral_and_a_new_kind_is_another(world, reading, send):
    study = study_at(world.clinic)
    first = send(study)
    assert send(study) == first
    consultation = send(study, kind="consultation")
    assert consultation != first
    assert Referral.objects.filter(study=study).count() == 2
    # Once cancelled, the study may be sent again: a new referral.
    services.referral_cancel(scope=scope(world.alice, world.clinic), referral_id=first.pk)
    again = send(study)
    assert again != first
    assert again.status == S.ROUTED


@pytest.mark.django_db(transaction=True)
def test_the_same_request_at_the_same_instant_is_one_referral(world, reading):
    study = study_at(world.clinic)
    n = 8
    barrier = threading.Barrier(n)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def request() -> None:
        try:
            barrier.wait(timeout=10)
            referral, created = services.referral_request(
                scope=scope(world.alice, world.clinic), study=study
            )
            results.append((referral.pk, created))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == n
    [referral] = Referral.objects.filter(study=study)
    assert {pk for pk, _created in results} == {referral.pk}
    assert sum(created for _pk, created in results) == 1
    assert referral.events.filter(action="create").count() == 1
    assert referral.events.filter(action="route").count() == 1


# --- "Study stable": the automatic remote read -------------------------------------------------


def test_a_stable_study_at_an_auto_read_site_gets_one_referral_even_if_the_hook_runs_twice(
    world, reading, django_capture_on_commit_callbacks
):
    member = world.clinic.alliance_memberships.get(alliance=world.north)
    SiteSettings.objects.create(member=member, auto_remote_read=True, auto_priority="urgent")
    study = study_at(world.clinic)
    other = study_at(world.outsider)  # the south clinic has no such setting
    now = timezone.now()
    Study.objects.filter(pk__in=[study.pk, other.pk]).update(
        last_received_at=now - dt.timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert set(studies_mark_stable(now=now)) == {study.pk, other.pk}
    [referral] = Referral.objects.all()
    assert (referral.study, referral.automatic, referral.priority) == (study, True, "urgent")
    assert referral.requested_by is None
    assert referral.status == S.ROUTED

    with django_capture_on_commit_callbacks(execute=True):
        again = referral_request_when_stable(study.pk, generation_of(now))
    assert again == referral.pk
    assert Referral.objects.count() == 1
    assert referral.events.filter(action="create").count() == 1
    # An event a newer instance superseded does nothing.
    assert referral_request_when_stable(study.pk, generation_of(now - dt.timedelta(1))) is None
