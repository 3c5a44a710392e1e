"""Critical findings: flag, alert the clinic, acknowledge, and the escalation ladder in time
(clinic → clinic lead → duty officer), each step recorded once, driven by the sweep."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from freezegun import freeze_time

from reporting import critical, services
from reporting.models import CriticalEvent, CriticalFinding, CriticalLevel
from tenants.models import Notification, Role

from .conftest import _person
from .reporting_support import desk_make, scope

pytestmark = pytest.mark.django_db
A = CriticalEvent.Action


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks):
    return desk_make(world, django_capture_on_commit_callbacks)


@pytest.fixture
def duty(desk):
    officer = _person("dora", "朵拉", "Dora", desk.world.reader, Role.HOSPITAL_ADMIN)
    desk.reading.policy.duty_officer = officer
    desk.reading.policy.save()
    return officer


def _flag(desk, capture, text="张力性气胸"):
    with capture(execute=True):
        return critical.critical_flag(scope=desk.rita(), referral_id=desk.chest.pk, text=text)


def _steps(finding):
    return [(e.action, sorted(e.notified)) for e in finding.events.order_by("at", "pk")]


def test_flag_alerts_the_clinic_in_app_and_by_mail(
    desk, django_capture_on_commit_callbacks, mailoutbox
):
    alice = desk.world.alice
    alice.email = "alice@clinic.example"
    alice.save()
    finding = _flag(desk, django_capture_on_commit_callbacks)
    assert finding.level == CriticalLevel.CLINIC
    assert finding.due_at == finding.flagged_at + dt.timedelta(minutes=30)
    assert _steps(finding) == [(A.FLAGGED, [alice.pk])]
    note = Notification.objects.get(user=alice, kind="report.critical")
    assert "张力性气胸" in note.body
    assert note.link == f"/referrals/{desk.chest.pk}/"
    assert [m.to for m in mailoutbox] == [["alice@clinic.example"]]


@pytest.mark.parametrize("who", ["rob", "alice", "sam"])
def test_only_the_cases_reader_flags(desk, who):
    scopes = {"rob": desk.rob(), "alice": desk.alice(), "sam": desk.sam()}
    with pytest.raises(services.ReportForbiddenError):
        critical.critical_flag(scope=scopes[who], referral_id=desk.chest.pk, text="x")
    assert not CriticalFinding.objects.exists()


@pytest.mark.parametrize("text", ["", "   ", None, "x" * 2001, 5])
def test_flag_needs_text(desk, text):
    with pytest.raises(services.ReportError) as info:
        critical.critical_flag(scope=desk.rita(), referral_id=desk.chest.pk, text=text)
    assert info.value.status_code == 400
    assert not CriticalFinding.objects.exists()


def test_the_ladder_clinic_then_lead_then_duty_officer(
    desk, duty, django_capture_on_commit_callbacks
):
    start = timezone.now().replace(microsecond=0)
    with freeze_time(start):
        finding = _flag(desk, django_capture_on_commit_callbacks)
    adam = desk.world.adam  # hospital admin at the clinic: its lead
    with freeze_time(start + dt.timedelta(minutes=29)):
        assert critical.critical_findings_sweep() == {"escalated": 0}
    with (
        freeze_time(start + dt.timedelta(minutes=30)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert critical.critical_findings_sweep() == {"escalated": 1}
        assert critical.critical_findings_sweep() == {"escalated": 0}  # a second tick
    finding.refresh_from_db()
    assert finding.level == CriticalLevel.CLINIC_LEAD
    assert finding.due_at == start + dt.timedelta(minutes=45)
    assert Notification.objects.filter(user=adam, kind="report.critical").count() == 1
    with freeze_time(start + dt.timedelta(minutes=44)):
        assert critical.critical_findings_sweep() == {"escalated": 0}
    with (
        freeze_time(start + dt.timedelta(minutes=46)),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert critical.critical_findings_sweep() == {"escalated": 1}
    finding.refresh_from_db()
    assert finding.level == CriticalLevel.DUTY_OFFICER
    assert finding.due_at is None
    assert _steps(finding) == [
        (A.FLAGGED, [desk.world.alice.pk]),
        (A.ESCALATED_LEAD, [adam.pk]),
        (A.ESCALATED_DUTY, [duty.pk]),
    ]
    times = [e.at for e in finding.events.order_by("at")]
    assert times == [start, start + dt.timedelta(minutes=30), start + dt.timedelta(minutes=46)]
    with freeze_time(start + dt.timedelta(days=2)):
        assert critical.critical_findings_sweep() == {"escalated": 0}  # the top rung
    # The duty officer (at the reading hospital) may acknowledge it now.
    done = critical.critical_acknowledge(
        scope=scope(duty, desk.world.reader), finding_id=finding.pk
    )
    assert done.acknowledged_by == duty


def test_acknowledged_in_time_stops_the_ladder(desk, duty, django_capture_on_commit_callbacks):
    start = timezone.now().replace(microsecond=0)
    with freeze_time(start):
        finding = _flag(desk, django_capture_on_commit_callbacks)
    with freeze_time(start + dt.timedelta(minutes=10)):
        critical.critical_acknowledge(scope=desk.alice(), finding_id=finding.pk, note="已电话病人")
    with freeze_time(start + dt.timedelta(hours=5)):
        assert critical.critical_findings_sweep() == {"escalated": 0}
    finding.refresh_from_db()
    assert finding.acknowledged_by == desk.world.alice
    assert finding.ack_note == "已电话病人"
    assert finding.acknowledged_at == start + dt.timedelta(minutes=10)
    assert [s[0] for s in _steps(finding)] == [A.FLAGGED, A.ACKNOWLEDGED]
    with pytest.raises(services.ReportConflictError):
        critical.critical_acknowledge(scope=desk.alice(), finding_id=finding.pk)


def test_without_a_clinic_lead_it_goes_to_the_duty_officer(
    desk, duty, django_capture_on_commit_callbacks
):
    desk.world.adam.memberships.update(revoked_at=timezone.now())
    finding = _flag(desk, django_capture_on_commit_callbacks)
    critical.critical_findings_sweep(now=finding.due_at)
    finding.refresh_from_db()
    assert finding.level == CriticalLevel.DUTY_OFFICER
    assert [s[0] for s in _steps(finding)] == [A.FLAGGED, A.ESCALATED_DUTY]


def test_who_may_acknowledge(desk, django_capture_on_commit_callbacks):
    finding = _flag(desk, django_capture_on_commit_callbacks)
    with pytest.raises(services.ReportForbiddenError):  # the reading side cannot
        critical.critical_acknowledge(scope=desk.rita(), finding_id=finding.pk)
    outsider = scope(desk.world.oscar, desk.world.outsider)
    with pytest.raises(services.ReportNotFoundError):
        critical.critical_acknowledge(scope=outsider, finding_id=finding.pk)
    with pytest.raises(services.ReportNotFoundError):
        critical.critical_acknowledge(scope=desk.alice(), finding_id="nope")
    with pytest.raises(services.ReportError):
        critical.critical_acknowledge(scope=desk.alice(), finding_id=finding.pk, note="x" * 501)
    finding.refresh_from_db()
    assert finding.acknowledged_at is None
    # The clinic's lead may acknowledge for the clinic.
    critical.critical_acknowledge(
        scope=scope(desk.world.adam, desk.world.clinic), finding_id=finding.pk
    )


def test_api_flag_list_acknowledge_and_the_clinic_page(desk, api_for, client):
    rita = api_for(desk.world.rita, desk.world.reader)
    answer = rita.post(
        "/api/v1/critical-findings/",
        {"referral": desk.chest.pk, "text": "主动脉夹层"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    pk = answer.json()["id"]
    assert (
        rita.post(
            "/api/v1/critical-findings/", {"referral": desk.chest.pk}, format="json"
        ).status_code
        == 400
    )
    alice = api_for(desk.world.alice, desk.world.clinic)
    listed = alice.get(f"/api/v1/critical-findings/?referral={desk.chest.pk}&open=1").json()
    assert [f["id"] for f in listed["results"]] == [pk]
    # The clinic's referral page shows the alert with its acknowledge button.
    client.force_login(desk.world.alice)
    page = client.get(f"/referrals/{desk.chest.pk}/")
    assert "主动脉夹层" in page.content.decode()
    assert b"data-critical-ack" in page.content
    assert (
        rita.post(f"/api/v1/critical-findings/{pk}/acknowledge/", {}, format="json").status_code
        == 403
    )
    done = client.post(f"/reports/critical/{pk}/acknowledge/", {"note": "ok"})
    assert done.status_code == 302
    assert (
        alice.post(f"/api/v1/critical-findings/{pk}/acknowledge/", {}, format="json").status_code
        == 409
    )
    events = alice.get(f"/api/v1/critical-findings/{pk}/").json()["events"]
    assert [e["action"] for e in events] == ["flagged", "acknowledged"]
    page = client.get(f"/referrals/{desk.chest.pk}/")
    assert b"data-critical-ack" not in page.content
