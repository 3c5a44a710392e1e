"""The report state machine (reporting/workflow.py): every step from every state.

- the table itself: allowed steps move the state, forbidden ones raise and change nothing;
- the services, each step taken by a person whose role and place allow it, so only the
  state decides: allowed steps work (and land in the table's target state), forbidden ones
  get a 409 with the table's code and leave the row, its second reads and addenda alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from referrals.models import ReferralStatus
from reporting import services
from reporting.models import Addendum, Report, ReportStatus, SecondRead
from reporting.workflow import (
    STEPS,
    ReportState,
    ReportTransitionError,
    allowed_actions,
    state_of,
    transition,
)
from tenants.models import Role

from .conftest import _person
from .referral_flow_support import referral_row
from .reporting_support import CHEST, Desk, desk_make, scope

pytestmark = pytest.mark.django_db

S = ReportState


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks):
    return desk_make(world, django_capture_on_commit_callbacks)


def report_row(desk: Desk, state: str, *, author: Any = None) -> Report:
    """A complete CT chest report of a referral in reporting, stored in `state`."""
    world = desk.world
    author = author or desk.reading.sam
    referral = referral_row(
        world, status=ReferralStatus.REPORTING, target=world.reader, claimed_by=author
    )
    stored: dict[str, tuple[str, bool]] = {
        S.DRAFT: (ReportStatus.DRAFT, False),
        S.PRELIMINARY: (ReportStatus.PRELIMINARY, False),
        S.SECOND_READ: (ReportStatus.PRELIMINARY, True),
        S.FINAL: (ReportStatus.FINAL, False),
    }
    status, second_read = stored[state]
    report = Report(
        referral=referral,
        study=referral.study,
        institution=world.reader,
        template=desk.ct_chest,
        template_version=desk.ct_chest.version,
        author=author,
        status=status,
        second_read_required=second_read,
        content=dict(CHEST),
    )
    if state == S.FINAL:
        report.signed_by, report.signed_at = author, timezone.now()
        report.content_sha256 = "0" * 64
    report.save()
    return Report.objects.get(pk=report.pk)


def row(report: Report) -> dict[str, Any]:
    fresh = Report.objects.get(pk=report.pk)
    return {
        **model_to_dict(fresh),
        "updated_at": fresh.updated_at,
        "second_reads": list(SecondRead.objects.filter(report=report).values_list("pk")),
        "addenda": list(Addendum.objects.filter(report=report).values_list("pk")),
    }


# --- The table -------------------------------------------------------------------------------


def test_the_steps_are_the_documented_graph():
    graph = {name: (set(step.sources), step.target) for name, step in STEPS.items()}
    assert graph == {
        "edit": ({S.DRAFT}, None),
        "sign_preliminary": ({S.DRAFT}, S.PRELIMINARY),
        "request_second_read": ({S.DRAFT}, S.SECOND_READ),
        "sign_final": ({S.DRAFT, S.PRELIMINARY}, S.FINAL),
        "second_read_edit": ({S.SECOND_READ}, None),
        "agree": ({S.SECOND_READ}, S.FINAL),
        "minor_discrepancy": ({S.SECOND_READ}, S.FINAL),
        "major_discrepancy": ({S.SECOND_READ}, S.DRAFT),
        "addendum": ({S.FINAL}, None),
    }


@pytest.mark.parametrize("state", S.values)
@pytest.mark.parametrize("action", list(STEPS))
def test_every_step_from_every_state_in_the_table(desk, action, state):
    report = report_row(desk, state)
    step = STEPS[action]
    allowed = allowed_actions(report)
    if state not in step.sources:
        with pytest.raises(ReportTransitionError) as refused:
            transition(report, action)
        assert (refused.value.action, refused.value.state) == (action, state)
        assert state_of(report) == state
        assert action not in allowed
        return
    assert action in allowed
    assert transition(report, action) == state
    assert state_of(report) == (step.target or state)


@pytest.mark.parametrize("state", S.values)
def test_a_stored_final_report_allows_only_an_addendum(desk, state):
    report = report_row(desk, state)
    if state == S.FINAL:
        assert allowed_actions(report) == ["addendum"]
    else:
        assert "addendum" not in allowed_actions(report)


# --- Through the services --------------------------------------------------------------------


def _take(desk: Desk, action: str, report: Report, reviewer: Any) -> Callable[[], Any]:
    """The service call for `action`, by someone whose role and place allow it."""
    sam, rita = desk.sam(), desk.rita()
    sue = scope(reviewer, desk.world.reader)
    calls: dict[str, Callable[[], Any]] = {
        "edit": lambda: services.report_autosave(
            scope=sam, report_id=report.pk, version=report.version, content={"findings": "edited"}
        ),
        "sign_preliminary": lambda: services.report_sign(
            scope=sam, report_id=report.pk, kind="preliminary", version=report.version
        ),
        "request_second_read": lambda: services.report_sign(
            scope=rita, report_id=report.pk, kind="preliminary", version=report.version
        ),
        "sign_final": lambda: services.report_sign(
            scope=sam, report_id=report.pk, kind="final", version=report.version
        ),
        "second_read_edit": lambda: services.report_second_read_edit(
            scope=sue, report_id=report.pk, version=report.version, content={"findings": "edited"}
        ),
        "agree": lambda: services.report_second_read(
            scope=sue, report_id=report.pk, outcome="agree", version=report.version
        ),
        "minor_discrepancy": lambda: services.report_second_read(
            scope=sue,
            report_id=report.pk,
            outcome="minor_discrepancy",
            comment="7 mm",
            version=report.version,
        ),
        "major_discrepancy": lambda: services.report_second_read(
            scope=sue,
            report_id=report.pk,
            outcome="major_discrepancy",
            comment="4A",
            version=report.version,
        ),
        "addendum": lambda: services.addendum_add(
            scope=sam, report_id=report.pk, text="A late word."
        ),
    }
    return calls[action]


@pytest.fixture
def sue(world):
    """A second senior radiologist of the reading hospital: sam's reports' second reader."""
    return _person("sue", "苏", "Sue", world.reader, Role.SENIOR_RADIOLOGIST)


@pytest.mark.parametrize("state", S.values)
@pytest.mark.parametrize("action", list(STEPS))
def test_every_service_step_from_every_state(
    desk, sue, action, state, django_capture_on_commit_callbacks
):
    # A junior's step needs a junior's report; every other step is on sam's (a senior's).
    author = desk.world.rita if action == "request_second_read" else desk.reading.sam
    report = report_row(desk, state, author=author)
    step = STEPS[action]
    if state not in step.sources:
        before = row(report)
        with pytest.raises(services.ReportConflictError) as refused:
            _take(desk, action, report, sue)()
        if state == S.FINAL:
            assert refused.value.code in ("already_signed", "report_final")
        else:
            assert refused.value.code == step.refusal
        assert row(report) == before
        return
    with django_capture_on_commit_callbacks(execute=True):
        _take(desk, action, report, sue)()
    after = Report.objects.get(pk=report.pk)
    assert state_of(after) == (step.target or state)
    if step.target == S.FINAL:
        assert after.content_sha256 == services.report_digest(after)
        assert after.referral.status == ReferralStatus.DELIVERED
    if action in ("agree", "minor_discrepancy", "major_discrepancy"):
        assert list(SecondRead.objects.filter(report=after).values_list("outcome", flat=True)) == [
            action
        ]
    if action == "addendum":
        assert after.addenda.count() == 1
    if action in ("edit", "second_read_edit"):
        assert after.content["findings"] == "edited"


def test_a_draft_back_from_a_major_discrepancy_waits_for_its_second_read_again(desk, sue):
    report = report_row(desk, S.SECOND_READ, author=desk.world.rita)
    report = services.report_second_read(
        scope=scope(sue, desk.world.reader),
        report_id=report.pk,
        outcome="major_discrepancy",
        comment="4A, not 2",
        version=report.version,
    )
    assert state_of(report) == S.DRAFT
    report = services.report_sign(
        scope=desk.rita(), report_id=report.pk, kind="preliminary", version=report.version
    )
    assert state_of(report) == S.SECOND_READ
