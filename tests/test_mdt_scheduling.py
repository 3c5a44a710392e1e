"""Scheduling MDT sessions: the window's rules, the agenda, the people directory (scoped to
the alliance), answers, and what invitees are told (notification, e-mail, calendar file;
the same event moved by a reschedule and removed by a cancel).

The world (tests/conftest.py): rita (radiologist, north reader hospital) organises; alice
and mia (north clinic) are invited; oscar and otto are of the south alliance.
"""

from __future__ import annotations

import email
from datetime import UTC, timedelta
from email.message import Message

import icalendar
import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from alliance.models import PoolMember, ReaderPool
from consultations import ics, selectors, services
from consultations.models import (
    Invitation,
    InvitationAnswer,
    MdtSession,
    SessionCase,
    SessionStatus,
)
from referrals.models import StudyGrant
from referrals.workflow import services as referral_services
from tenants import access
from tenants.models import Notification, Role

from .conftest import _person, api_client_for
from .mdt_support import chair_scope, mdt_setup
from .referral_support import reading_setup, study_at

pytestmark = pytest.mark.django_db


def web(user, language: str = "en") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


def _future_session(world, **kwargs):
    """rita's session tomorrow, with alice and mia invited (and told)."""
    return mdt_setup(world, opens_in=timedelta(days=1), **kwargs)


def _calendar_of(message: Message | mail.EmailMessage) -> icalendar.Calendar:
    """The text/calendar part of a sent message, parsed back."""
    if isinstance(message, mail.EmailMessage):
        message = email.message_from_bytes(message.message().as_bytes())
    parts = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1, [p.get_content_type() for p in message.walk()]
    return icalendar.Calendar.from_ical(parts[0].get_payload(decode=True))


def _event(calendar: icalendar.Calendar) -> icalendar.Event:
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 1
    return events[0]


# --- The calendar file ---------------------------------------------------------------


def test_the_invitation_calendar_names_the_session_in_utc_with_the_room_as_location(
    world, settings
):
    settings.HUB_PUBLIC_URL = "https://hub.example.org"
    world.rita.email = "rita@example.org"
    world.rita.save()
    world.alice.email = "alice@example.org"
    world.alice.save()
    mdt = _future_session(world)
    session = mdt.session
    raw = ics.session_ics(session=session, invitation=mdt.alice_invitation, method=ics.REQUEST)
    calendar = icalendar.Calendar.from_ical(raw)
    assert str(calendar["METHOD"]) == "REQUEST"
    event = _event(calendar)
    assert str(event["UID"]) == f"mdt-session-{session.pk}@hub.example.org"
    assert event["SEQUENCE"] == 0
    assert str(event["SUMMARY"]) == "胸部肿瘤 MDT"
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    assert start.tzinfo is not None
    assert start.utcoffset() == timedelta(0)
    # Calendars count whole seconds.
    assert (start, end) == (
        session.starts_at.replace(microsecond=0),
        session.ends_at.replace(microsecond=0),
    )
    assert b"DTSTART:" in raw  # written as UTC ("Z"), no TZID block to resolve
    assert b"Z\r\n" in raw.split(b"DTSTART:")[1][:20]
    room = f"https://hub.example.org/mdt/{session.pk}/"
    assert str(event["LOCATION"]) == room
    assert str(event["ORGANIZER"]) == "mailto:rita@example.org"
    assert event["ORGANIZER"].params["CN"] == "丽塔"
    attendee = event["ATTENDEE"]
    assert str(attendee) == "mailto:alice@example.org"
    assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
    assert attendee.params["ROLE"] == "REQ-PARTICIPANT"
    assert str(event["STATUS"]) == "CONFIRMED"


def test_a_reschedule_moves_the_same_event_and_a_cancel_removes_it(
    world, django_capture_on_commit_callbacks
):
    world.alice.email = "alice@example.org"
    world.alice.save()
    with django_capture_on_commit_callbacks(execute=True):
        mdt = _future_session(world)
    first = _event(_calendar_of(mail.outbox[-1]))
    assert mail.outbox[-1].to == ["alice@example.org"]
    services.invitation_answer(
        scope=access.scope_for_user(world.alice, institution_id=world.clinic.pk),
        invitation=mdt.alice_invitation,
        answer=InvitationAnswer.ACCEPTED,
    )
    new_start = (mdt.session.starts_at + timedelta(days=2)).replace(microsecond=0)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.session_reschedule(
            scope=chair_scope(world),
            session=mdt.session,
            starts_at=new_start,
            ends_at=new_start + timedelta(hours=1),
        )
    assert [m.to for m in mail.outbox] == [["alice@example.org"]]  # mia has no address
    moved_calendar = _calendar_of(mail.outbox[0])
    moved = _event(moved_calendar)
    assert str(moved_calendar["METHOD"]) == "REQUEST"
    assert str(moved["UID"]) == str(first["UID"])
    assert moved["SEQUENCE"] == first["SEQUENCE"] + 1
    assert moved.decoded("DTSTART") == new_start
    assert moved.decoded("DTEND") == new_start + timedelta(hours=1)
    # The time changed: the answer is asked again, and the grants follow the window.
    mdt.alice_invitation.refresh_from_db()
    assert mdt.alice_invitation.answer == InvitationAnswer.PENDING
    grant = StudyGrant.objects.get(user=world.alice, source_id=mdt.session.pk)
    assert (grant.valid_from, grant.valid_until) == (new_start, new_start + timedelta(hours=1))
    notes = Notification.objects.filter(user=world.alice, kind="mdt.rescheduled")
    assert notes.count() == 1
    assert notes[0].link == f"/mdt/{mdt.session.pk}/session/"

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.session_cancel(scope=chair_scope(world), session=mdt.session)
    cancel_calendar = _calendar_of(mail.outbox[0])
    cancelled = _event(cancel_calendar)
    assert str(cancel_calendar["METHOD"]) == "CANCEL"
    assert str(cancelled["UID"]) == str(first["UID"])
    assert cancelled["SEQUENCE"] == moved["SEQUENCE"] + 1
    assert str(cancelled["STATUS"]) == "CANCELLED"
    assert Notification.objects.filter(user=mdt.mia, kind="mdt.cancelled").exists()
    mdt.session.refresh_from_db()
    assert mdt.session.status == SessionStatus.CANCELLED
    grant.refresh_from_db()
    assert grant.revoked_at is not None
    with pytest.raises(ValidationError):
        services.session_reschedule(
            scope=chair_scope(world),
            session=mdt.session,
            starts_at=new_start,
            ends_at=new_start + timedelta(hours=2),
        )


def test_a_cancelled_session_lets_nobody_into_its_room(world):
    mdt = mdt_setup(world)  # open now
    assert selectors.room_admission(session_id=mdt.session.pk, user=world.alice) is not None
    services.session_cancel(scope=chair_scope(world), session=mdt.session)
    assert selectors.room_admission(session_id=mdt.session.pk, user=world.alice) is None


def test_invitees_are_notified_in_the_hub_and_a_withdrawn_one_gets_a_cancel(
    world, django_capture_on_commit_callbacks
):
    world.alice.email = "alice@example.org"
    world.alice.save()
    with django_capture_on_commit_callbacks(execute=True):
        mdt = _future_session(world)
    invited = Notification.objects.get(user=world.alice, kind="mdt.invited")
    assert "胸部肿瘤 MDT" in invited.title
    assert invited.institution == world.clinic
    assert not Notification.objects.filter(user=world.rita).exists()  # the chair is not told
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.invitation_revoke(scope=chair_scope(world), invitation=mdt.alice_invitation)
    assert str(_calendar_of(mail.outbox[0])["METHOD"]) == "CANCEL"
    assert Notification.objects.filter(user=world.alice, kind="mdt.withdrawn").count() == 1


def _window(session: MdtSession) -> str:
    """The session's start and end as the messages show them (the hub's time zone)."""
    start, end = (timezone.localtime(t) for t in (session.starts_at, session.ends_at))
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} (Asia/Shanghai)"  # noqa: RUF001


def test_an_invitation_is_kept_as_values_and_read_in_each_readers_language(
    world, django_capture_on_commit_callbacks, settings
):
    """alice reads Chinese: her notification and e-mail are written in Chinese; the same
    notification reads in English on an English page and through an English API client."""
    settings.HUB_PUBLIC_URL = "https://hub.example.org"
    world.alice.language = "zh-hans"
    world.alice.email = "alice@example.org"
    world.alice.save()
    with django_capture_on_commit_callbacks(execute=True):
        mdt = _future_session(world)
    note = Notification.objects.get(user=world.alice, kind="mdt.invited")
    assert note.code == "mdt.invited"
    # Values, never a sentence: the typed title, the organiser, codes, times.
    assert note.params == {
        "title": "胸部肿瘤 MDT",
        "kind": {"k": "choice", "of": "mdt_session_kind", "v": "mdt"},
        "organiser": {"k": "person", "zh": "丽塔", "en": "Rita", "login": "rita"},
        "role": {"k": "choice", "of": "mdt_role", "v": "participant"},
        "start": {"k": "moment", "v": mdt.session.starts_at.isoformat()},
        "end": {"k": "moment", "v": mdt.session.ends_at.isoformat()},
        "zone": "Asia/Shanghai",
    }
    english_title = "Invitation to the MDT session “胸部肿瘤 MDT”"
    chinese_title = "MDT 会诊邀请：“胸部肿瘤 MDT”"  # noqa: RUF001
    assert note.title == chinese_title  # the words in alice's language, kept as fallback
    with translation.override("en"):
        assert note.display_title == english_title
        assert note.display_body.startswith(
            f"Multidisciplinary consultation, {_window(mdt.session)}: "
            "Rita invites you as Participant."
        )
    with translation.override("zh-hans"):
        assert note.display_title == chinese_title
        assert "丽塔" in note.display_body
        assert "参会者" in note.display_body
        assert "多学科会诊" in note.display_body

    en_page = web(world.alice, "en").get("/notifications/").content.decode()
    assert english_title in en_page
    assert "Rita invites you as Participant" in en_page
    assert chinese_title not in en_page
    assert "丽塔" not in en_page
    zh_page = web(world.alice, "zh-hans").get("/notifications/").content.decode()
    assert chinese_title in zh_page
    assert english_title not in zh_page

    api = api_client_for(world.alice)  # Accept-Language: en
    row = next(n for n in api.get("/api/v1/notifications/").json()["results"] if n["id"] == note.pk)
    assert (row["code"], row["title"]) == ("mdt.invited", english_title)
    assert "Rita invites you as Participant" in row["body"]

    # The e-mail and its calendar file are read by alice only: in her language.
    (sent,) = [m for m in mail.outbox if m.to == ["alice@example.org"]]
    assert sent.subject == chinese_title
    assert "丽塔" in sent.body
    assert "参会者" in sent.body
    assert "Rita" not in sent.body
    assert f"https://hub.example.org/mdt/{mdt.session.pk}/" in sent.body
    event = _event(_calendar_of(sent))
    assert str(event["SUMMARY"]) == "胸部肿瘤 MDT"
    description = str(event["DESCRIPTION"])
    assert description.splitlines()[:3] == ["多学科会诊", "组织者: 丽塔", "您的角色: 参会者"]
    assert event["ORGANIZER"].params["CN"] == "丽塔"


def test_a_moved_cancelled_or_withdrawn_session_is_told_with_its_new_values(
    world, django_capture_on_commit_callbacks
):
    world.adam.language = "en"
    world.adam.email = "adam@example.org"
    world.adam.save()
    mdt = _future_session(world)
    services.invitation_create(
        scope=chair_scope(world),
        session=mdt.session,
        user=world.adam,
        institution=world.clinic,
        role="presenter",
    )
    new_start = (mdt.session.starts_at + timedelta(days=1)).replace(microsecond=0)
    with django_capture_on_commit_callbacks(execute=True):
        services.session_reschedule(
            scope=chair_scope(world),
            session=mdt.session,
            starts_at=new_start,
            ends_at=new_start + timedelta(hours=1),
        )
    mdt.session.refresh_from_db()
    moved = Notification.objects.get(user=world.adam, kind="mdt.rescheduled")
    assert moved.params["start"] == {"k": "moment", "v": new_start.isoformat()}
    assert moved.title == "MDT session “胸部肿瘤 MDT” moved"  # adam reads English
    with translation.override("en"):
        assert moved.display_body == (
            f"New time: {_window(mdt.session)}. Please answer again under My MDT sessions."
        )
    with translation.override("zh-hans"):
        assert moved.display_title == "MDT 会诊“胸部肿瘤 MDT”已改期"
    (moved_mail,) = [m for m in mail.outbox if m.to == ["adam@example.org"]]
    assert moved_mail.subject == "MDT session “胸部肿瘤 MDT” moved"
    assert moved_mail.body.startswith(f"New time: {_window(mdt.session)}.")
    description = str(_event(_calendar_of(moved_mail))["DESCRIPTION"])
    assert description.splitlines()[:3] == [
        "Multidisciplinary consultation",
        "Organiser: Rita",
        "Your role: Presenter",
    ]

    mail.outbox.clear()
    adam = Invitation.objects.get(session=mdt.session, user=world.adam)
    with django_capture_on_commit_callbacks(execute=True):
        services.invitation_revoke(scope=chair_scope(world), invitation=adam)
    withdrawn = Notification.objects.get(user=world.adam, kind="mdt.withdrawn")
    assert withdrawn.code == "mdt.withdrawn"
    assert withdrawn.body == (
        f"Rita took back your invitation to the session of {_window(mdt.session)}."
    )
    assert mail.outbox[0].subject == "You are no longer invited to “胸部肿瘤 MDT”"

    with django_capture_on_commit_callbacks(execute=True):
        services.session_cancel(scope=chair_scope(world), session=mdt.session)
    cancelled = Notification.objects.get(user=world.alice, kind="mdt.cancelled")
    assert cancelled.code == "mdt.cancelled"
    with translation.override("en"):
        assert cancelled.display_title == "MDT session “胸部肿瘤 MDT” cancelled"
        assert cancelled.display_body == (f"Rita cancelled the session of {_window(mdt.session)}.")
    # adam, no longer invited, is not told of the cancel.
    assert not Notification.objects.filter(user=world.adam, kind="mdt.cancelled").exists()


# --- The window -----------------------------------------------------------------------


@translation.override("en")
def test_a_session_cannot_be_scheduled_in_the_past_or_end_before_it_starts(world):
    now = timezone.now()
    scope = chair_scope(world)
    with pytest.raises(ValidationError) as past:
        services.session_schedule(
            scope=scope,
            title="t",
            kind="mdt",
            starts_at=now - timedelta(hours=1),
            ends_at=now + timedelta(hours=1),
        )
    assert past.value.message_dict == {"starts_at": ["The session cannot start in the past."]}
    with pytest.raises(ValidationError) as backwards:
        services.session_schedule(
            scope=scope,
            title="t",
            kind="mdt",
            starts_at=now + timedelta(hours=2),
            ends_at=now + timedelta(hours=1),
        )
    assert backwards.value.message_dict == {"ends_at": ["The session must end after it starts."]}
    session = services.session_schedule(
        scope=scope,
        title="t",
        kind="mdt",
        starts_at=now + timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
    )
    assert session.alliance == world.north
    assert session.invitations.get().answer == InvitationAnswer.ACCEPTED
    clinic_tech = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    with pytest.raises(PermissionDenied):
        services.session_schedule(
            scope=clinic_tech,
            title="t",
            kind="mdt",
            starts_at=now + timedelta(hours=1),
            ends_at=now + timedelta(hours=2),
        )


def test_the_schedule_page_reads_times_in_the_users_zone_and_answers_in_sentences(world):
    client = web(world.rita)
    tomorrow = (timezone.localtime() + timedelta(days=1)).date()
    form = {
        "title": "肝胆 MDT",
        "kind": "mdt",
        "alliance": world.north.pk,
        "date": tomorrow.isoformat(),
        "start": "10:00",
        "end": "09:00",
    }
    refused = client.post("/mdt/new/", form)
    assert refused.status_code == 400
    assert "The session must end after it starts." in refused.content.decode()
    yesterday = tomorrow - timedelta(days=2)
    refused = client.post("/mdt/new/", {**form, "date": yesterday.isoformat(), "end": "11:00"})
    assert "The session cannot start in the past." in refused.content.decode()
    assert not MdtSession.objects.exists()
    done = client.post("/mdt/new/", {**form, "end": "11:30"})
    session = MdtSession.objects.get()
    assert done.status_code == 302
    assert done["Location"] == f"/mdt/{session.pk}/cases/"
    local = timezone.localtime(session.starts_at)
    assert (local.date(), local.hour, local.minute) == (tomorrow, 10, 0)
    assert session.starts_at.astimezone(UTC).hour == (10 - 8) % 24  # Asia/Shanghai is UTC+8
    assert timezone.localtime(session.ends_at).strftime("%H:%M") == "11:30"
    # A technician cannot organise.
    assert web(world.alice).get("/mdt/new/").status_code == 403


# --- The agenda --------------------------------------------------------------------------


def test_the_case_picker_offers_referrals_the_organiser_may_open_and_keeps_the_order(world):
    reading = reading_setup(world)
    dora = _person("dora", "朵拉", "Dora", world.clinic, Role.REFERRING_PHYSICIAN)
    alice = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    referrals = []
    for n in range(3):
        study = study_at(world.clinic, patient_id=f"P-{n}", patient_name=f"Zhang^San{n}")
        referral, _ = referral_services.referral_request(
            scope=alice, study=study, clinical_question=f"question {n}"
        )
        referral_services.referral_route(referral.pk)
        referrals.append(referral)
    # Another alliance's study: never offered.
    study_at(world.outsider, patient_id="S-1", patient_name="Nan^Ling")
    dora_scope = access.scope_for_user(dora, institution_id=world.clinic.pk)
    now = timezone.now()
    session = services.session_schedule(
        scope=dora_scope,
        title="Clinic MDT",
        kind="mdt",
        starts_at=now + timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
    )
    offered = selectors.case_candidates(scope=dora_scope, session=session)
    assert {c.referral.pk for c in offered} == {r.pk for r in referrals}
    found = selectors.case_candidates(scope=dora_scope, session=session, query="San1")
    assert [c.referral.pk for c in found] == [referrals[1].pk]
    assert selectors.case_candidates(scope=dora_scope, session=session, query="Nan") == []
    cases = [
        services.case_add(scope=dora_scope, session=session, study=r.study, clinical_summary="s")
        for r in referrals
    ]
    assert selectors.case_candidates(scope=dora_scope, session=session) == []
    services.case_move(scope=dora_scope, case=cases[2], offset=-1)
    order = list(session.cases.order_by("position").values_list("pk", flat=True))
    assert order == [cases[0].pk, cases[2].pk, cases[1].pk]
    services.case_summary_set(scope=dora_scope, case=cases[2], clinical_summary="new summary")
    services.case_remove(scope=dora_scope, case=cases[0])
    rows = list(session.cases.order_by("position").values_list("pk", "position"))
    assert rows == [(cases[2].pk, 1), (cases[1].pk, 2)]
    assert SessionCase.objects.get(pk=cases[2].pk).clinical_summary == "new summary"
    # rita reads at the reader hospital: the cases routed to her come first, marked.
    rita = chair_scope(world)
    other = services.session_schedule(
        scope=rita,
        title="Reader MDT",
        kind="mdt",
        starts_at=now + timedelta(hours=1),
        ends_at=now + timedelta(hours=2),
    )
    offered = selectors.case_candidates(scope=rita, session=other)
    assert {c.referral.pk for c in offered} <= {r.pk for r in referrals}
    flags = [c.on_worklist for c in offered]
    assert flags == sorted(flags, reverse=True)
    assert reading.thoracic.pk in {c.referral.pool_id for c in offered}
    # Somebody else than the chair cannot change the agenda.
    with pytest.raises(PermissionDenied):
        services.case_remove(scope=chair_scope(world), case=cases[1])


def test_a_removed_case_ends_the_invitees_grant_to_its_study(world):
    mdt = _future_session(world)
    case = mdt.session.cases.get()
    grants = StudyGrant.objects.filter(source_id=mdt.session.pk, study=mdt.study)
    assert grants.filter(revoked_at__isnull=True).count() == 3  # rita, alice, mia
    services.case_remove(scope=chair_scope(world), case=case)
    assert not grants.filter(revoked_at__isnull=True).exists()


# --- The people directory ------------------------------------------------------------------


def test_the_directory_finds_people_of_the_alliance_only(world):
    mdt = _future_session(world)
    pool = ReaderPool.objects.create(
        alliance=world.north,
        institution=world.reader,
        name="北城胸部",
        name_en="North thoracic",
        subspecialty="thoracic",
    )
    PoolMember.objects.create(pool=pool, user=world.rita)
    # oscar's twin name in the south: a name search never crosses the alliance.
    _person("olga", "奥尔加", "Olga Rita", world.outsider, Role.RADIOLOGIST)
    scope = chair_scope(world)

    def names(**kwargs) -> set[str]:
        people = selectors.people_directory(scope=scope, session=mdt.session, **kwargs)
        return {p.user.username for p in people}

    everyone = names()
    assert {"alice", "adam", "rita", "carl", "mia"} <= everyone
    assert not everyone & {"oscar", "otto", "olga"}
    assert names(query="Rita") == {"rita"}
    assert names(query="丽塔") == {"rita"}
    assert names(query="Beishan") == {"alice", "adam", "mia"}  # the institution, in English
    assert names(query="北山镇") == {"alice", "adam", "mia"}
    assert names(query="thoracic") == {"rita"}  # a subspecialty of the alliance's pools
    assert names(query="radiologist") == {"rita"}
    assert names(role=Role.MDT_MEMBER) == {"mia"}
    assert names(query="Oscar") == set()
    rita = next(
        p for p in selectors.people_directory(scope=scope, session=mdt.session, query="Rita")
    )
    assert rita.subspecialties == ["thoracic"]
    assert rita.invited  # the chair
    alice = selectors.people_directory(scope=scope, session=mdt.session, query="Alice")[0]
    assert alice.institution == world.clinic
    assert alice.invited
    # Picking someone outside the alliance (a forged form) finds nobody.
    assert (
        selectors.directory_person(
            scope=scope,
            session=mdt.session,
            user_id=world.oscar.pk,
            institution_id=world.outsider.pk,
        )
        is None
    )
    assert selectors.directory_person(
        scope=scope, session=mdt.session, user_id=world.adam.pk, institution_id=world.clinic.pk
    ) == (world.adam, world.clinic)


def test_a_caller_outside_the_sessions_alliance_sees_no_directory(world):
    mdt = _future_session(world)
    olga = _person("olga", "奥尔加", "Olga", world.outsider, Role.MDT_MEMBER)
    south = access.scope_for_user(olga, institution_id=world.outsider.pk)
    assert selectors.people_directory(scope=south, session=mdt.session) == []
    assert selectors.directory_institution_ids(scope=south, session=mdt.session) == set()


# --- Answers --------------------------------------------------------------------------------


def test_only_the_invitee_answers_and_may_change_their_mind(world):
    mdt = _future_session(world)
    alice = access.scope_for_user(world.alice, institution_id=world.clinic.pk)
    services.invitation_answer(
        scope=alice, invitation=mdt.alice_invitation, answer=InvitationAnswer.DECLINED
    )
    services.invitation_answer(
        scope=alice, invitation=mdt.alice_invitation, answer=InvitationAnswer.ACCEPTED
    )
    mdt.alice_invitation.refresh_from_db()
    assert mdt.alice_invitation.answer == InvitationAnswer.ACCEPTED
    assert mdt.alice_invitation.answered_at is not None
    with pytest.raises(PermissionDenied):
        services.invitation_answer(
            scope=chair_scope(world), invitation=mdt.alice_invitation, answer="declined"
        )
    with pytest.raises(ValidationError):
        services.invitation_answer(scope=alice, invitation=mdt.alice_invitation, answer="maybe")
    page = selectors.session_page(scope=alice, session=mdt.session)
    assert page["answers"] == {"pending": 1, "accepted": 2, "declined": 0}


def test_my_sessions_lists_upcoming_with_answers_and_the_room_when_open(world):
    open_now = mdt_setup(world)
    later_start = timezone.now() + timedelta(days=1)
    later = services.session_create(
        scope=chair_scope(world),
        title="明日 MDT",
        starts_at=later_start,
        ends_at=later_start + timedelta(hours=1),
    )
    services.invitation_create(
        scope=chair_scope(world),
        session=later,
        user=world.alice,
        institution=world.clinic,
        role="observer",
    )
    client = web(world.alice)
    page = client.get("/mdt/").content.decode()
    assert page.index("胸部肿瘤 MDT") < page.index("明日 MDT")  # soonest first
    assert f'href="/mdt/{open_now.session.pk}/"' in page  # join: the room is open
    assert f'href="/mdt/{later.pk}/"' not in page
    answered = client.post(f"/mdt/{later.pk}/answer/", {"answer": "declined", "next": "list"})
    assert answered.status_code == 302
    assert Invitation.objects.get(session=later, user=world.alice).answer == "declined"
    detail = web(world.rita).get(reverse("mdt-session", args=[later.pk])).content.decode()
    assert "Declined" in detail
    assert "Alice" in detail


def test_the_chair_invites_from_the_directory_and_a_forged_outsider_is_refused(world):
    mdt = _future_session(world)
    client = web(world.rita)
    page = client.get(f"/mdt/{mdt.session.pk}/people/?q=Adam").content.decode()
    assert "Adam" in page
    assert "Oscar" not in client.get(f"/mdt/{mdt.session.pk}/people/").content.decode()
    done = client.post(
        f"/mdt/{mdt.session.pk}/people/?q=Adam",
        {"user": world.adam.pk, "institution": world.clinic.pk, "role": "presenter"},
    )
    assert done.status_code == 302
    invitation = Invitation.objects.get(session=mdt.session, user=world.adam)
    assert invitation.role == "presenter"
    assert Notification.objects.filter(user=world.adam, kind="mdt.invited").exists()
    forged = client.post(
        f"/mdt/{mdt.session.pk}/people/",
        {"user": world.oscar.pk, "institution": world.outsider.pk, "role": "participant"},
    )
    assert forged.status_code == 400
    assert not Invitation.objects.filter(user=world.oscar).exists()
    # Not the chair: alice may look at the session, not invite.
    assert web(world.alice).get(f"/mdt/{mdt.session.pk}/people/").status_code == 403


def test_the_chair_edits_the_agenda_moves_and_cancels_from_the_pages(world):
    mdt = _future_session(world)
    second = study_at(world.reader, patient_id="MDT-2", patient_name="Zhao^Qian")
    client = web(world.rita)
    pk = mdt.session.pk
    added = client.post(f"/mdt/{pk}/cases/", {"study": second.pk, "clinical_summary": "x"})
    assert added.status_code == 302
    first, last = mdt.session.cases.order_by("position")
    assert last.study == second
    client.post(f"/mdt/{pk}/cases/{last.pk}/", {"action": "up"})
    assert list(mdt.session.cases.order_by("position")) == [last, first]
    client.post(f"/mdt/{pk}/cases/{last.pk}/", {"action": "save", "clinical_summary": "y"})
    client.post(f"/mdt/{pk}/cases/{first.pk}/", {"action": "remove"})
    assert list(mdt.session.cases.values_list("pk", "clinical_summary")) == [(last.pk, "y")]
    page = client.get(f"/mdt/{pk}/session/").content.decode()
    assert "Zhao Qian" in page
    assert "Li Lei" not in page
    # alice sees the session page, not the chair's tools.
    assert (
        web(world.alice).post(f"/mdt/{pk}/cases/{last.pk}/", {"action": "remove"}).status_code
        == 403
    )
    assert web(world.alice).get(f"/mdt/{pk}/reschedule/").status_code == 403
    day = (timezone.localtime() + timedelta(days=3)).date()
    refused = client.post(f"/mdt/{pk}/reschedule/", {"date": day, "start": "09:00", "end": "08:00"})
    assert refused.status_code == 400
    moved = client.post(f"/mdt/{pk}/reschedule/", {"date": day, "start": "09:00", "end": "10:00"})
    assert moved.status_code == 302
    mdt.session.refresh_from_db()
    assert timezone.localtime(mdt.session.starts_at).date() == day
    assert mdt.session.calendar_sequence == 1
    assert client.get(f"/mdt/{pk}/cancel/").status_code == 200
    assert client.post(f"/mdt/{pk}/cancel/").status_code == 302
    mdt.session.refresh_from_db()
    assert mdt.session.status == SessionStatus.CANCELLED
    mine = web(world.alice).get("/mdt/").content.decode()
    assert mine.index("Past and cancelled") < mine.index("胸部肿瘤 MDT")
