"""Writes of MDT consultations: sessions, cases, invitations (with their study grants), and
the room's numbered event log.

Every room event is stored with its sequence number inside a transaction and goes out
through tenants.live.publish only after that transaction commits: a client can always
fetch again what it was sent, and is never sent what a rollback took back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from alliance.models import Alliance, AllianceMember
from referrals.models import Study, StudyGrant
from tenants import access
from tenants.audit import AuditCode, audit_append, audit_record, audit_row
from tenants.live import publish
from tenants.models import AuditEvent, Institution, Membership, User
from tenants.roles import MDT_ORGANISER_ROLES

from . import notify
from .models import (
    ENDED_STATUSES,
    Invitation,
    InvitationAnswer,
    MdtSession,
    RoomEvent,
    SessionCase,
    SessionKind,
    SessionRole,
    SessionStatus,
    Vote,
)

# Who may organise a session: clinicians and MDT members of an alliance institution.
MAX_CASES = 50
MAX_INVITATIONS = 200
# A session is a meeting: it lasts hours, a few days at most. The earliest start keeps out
# dates no meeting of the hub can have had (and years before time zones, which no
# timestamp format of the API can write).
MAX_SESSION_LENGTH = timedelta(days=7)
EARLIEST_START = datetime(2000, 1, 1, tzinfo=UTC)


def room_group(session_id: int) -> str:
    return f"mdt.{session_id}"


@dataclass(frozen=True)
class Actor:
    """Who did something in the room, as every client shows it."""

    user_id: int
    name: str
    institution_id: int
    institution: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "name": self.name,
            "institution_id": self.institution_id,
            "institution": self.institution,
        }


def actor_for(user: User, institution: Institution) -> Actor:
    return Actor(user.pk, user.display_name, institution.pk, institution.display_name)


# --- The event log ---------------------------------------------------------------------------


def event_frame(event: RoomEvent) -> dict[str, Any]:
    """The frame a client gets for `event`, live or replayed (the actor is kept in "by")."""
    data = dict(event.payload)
    actor = data.pop("by", None)
    return {
        "seq": event.seq,
        "type": event.type,
        "data": data,
        "actor": actor,
        "at": event.at.isoformat(),
    }


@dataclass(frozen=True)
class Guard:
    """Conditions a client's event must meet, checked in the statement that stores it: the
    session is open and inside its window, and (optionally) the sender presents, or may chat."""

    presenter_id: int | None = None
    unmuted_id: int | None = None


def _tables() -> tuple[str, str, str]:
    quote = connection.ops.quote_name
    return (
        quote(MdtSession._meta.db_table),
        quote(RoomEvent._meta.db_table),
        quote(Invitation._meta.db_table),
    )


def _guard_sql(guard: Guard | None, params: dict[str, Any]) -> str:
    if guard is None:
        return ""
    _sessions, _events, invitations = _tables()
    params.update(
        closed=SessionStatus.CLOSED,
        cancelled=SessionStatus.CANCELLED,
        now=timezone.now(),
        presenter=guard.presenter_id,
        unmuted=guard.unmuted_id,
    )
    # Table names come from the models, never from input.
    return (
        " AND status NOT IN (%(closed)s, %(cancelled)s)"  # noqa: S608
        " AND starts_at <= %(now)s AND ends_at >= %(now)s"
        " AND (%(presenter)s::bigint IS NULL OR presenter_id = %(presenter)s)"
        " AND (%(unmuted)s::bigint IS NULL OR NOT EXISTS (SELECT 1 FROM "
        f"{invitations} i WHERE i.session_id = %(sid)s AND i.user_id = %(unmuted)s"
        " AND i.chat_muted))"
    )


def _store(
    session_id: int,
    type: str,
    payload: dict[str, Any],
    actor_id: int | None,
    viewer_state: dict[str, Any] | None,
    guard: Guard | None,
) -> RoomEvent | None:
    """Number and store one event. On PostgreSQL this is one statement: the row lock of the
    counter update hands out the number, the insert takes it, and both commit together (or
    neither does), so the log has no gap. None when a guard did not hold."""
    sessions, events, _invitations = _tables()
    at = timezone.now()
    params: dict[str, Any] = {
        "sid": session_id,
        "type": type,
        "payload": json.dumps(payload),
        "actor": actor_id,
        "at": at,
        "viewer": None if viewer_state is None else json.dumps(viewer_state),
    }
    where = _guard_sql(guard, params)
    if connection.vendor == "postgresql":
        sql = (
            f"WITH s AS (UPDATE {sessions} SET next_seq = next_seq + 1, viewer_state ="  # noqa: S608
            " CASE WHEN %(viewer)s::jsonb IS NULL THEN viewer_state ELSE %(viewer)s::jsonb"
            " || jsonb_build_object('seq', next_seq + 1) END"
            f" WHERE id = %(sid)s{where} RETURNING id, next_seq)"
            f" INSERT INTO {events} (session_id, seq, type, payload, actor_id, at)"
            " SELECT id, next_seq, %(type)s, %(payload)s::jsonb, %(actor)s, %(at)s FROM s"
            " RETURNING seq"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        return RoomEvent(
            session_id=session_id,
            seq=int(row[0]),
            type=type,
            payload=payload,
            actor_id=actor_id,
            at=at,
        )
    # SQLite (the embedded hub): the same steps in one short transaction.
    where = where.replace("::bigint", "")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {sessions} SET next_seq = next_seq + 1"  # noqa: S608
            f" WHERE id = %(sid)s{where} RETURNING next_seq",
            params,
        )
        row = cursor.fetchone()
        if row is None:
            return None
        seq = int(row[0])
        if viewer_state is not None:
            MdtSession.objects.filter(pk=session_id).update(
                viewer_state={**viewer_state, "seq": seq}
            )
        return RoomEvent.objects.create(
            session_id=session_id, seq=seq, type=type, payload=payload, actor_id=actor_id, at=at
        )


def _payload(data: dict[str, Any], actor: Actor | None) -> dict[str, Any]:
    return {**data, "by": actor.as_dict() if actor else None}


class AlreadyStoredError(Exception):
    """The sender's message with this id (`cid`) is in the room's log already."""


def _lock_sender(session_id: int, actor_id: int | None) -> None:
    """Until the transaction ends, no other transaction stores for this sender in this room
    (PostgreSQL; the embedded hub's SQLite writes one transaction at a time anyway)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"hub.mdt.{session_id}.{actor_id}"],
        )


def room_event_store(
    *,
    session_id: int,
    type: str,
    data: dict[str, Any],
    actor: Actor | None,
    viewer_state: dict[str, Any] | None = None,
    guard: Guard | None = None,
    once: bool = False,
) -> dict[str, Any] | None:
    """Store one event of the live room, committed when this returns; the caller (the room's
    consumer) broadcasts the frame it gets. None when `guard` did not hold: nothing stored.

    `once`: `data["cid"]` is the sender's own id for the message, and a copy already in the
    log raises AlreadyStoredError instead of being stored again. A page sends again, after a
    reconnect, what the log did not show; its old socket may still be storing the first copy
    on another process, so the look and the store happen under a lock of this sender in this
    room (the look is a statement of its own: it sees what the other copy committed)."""
    if connection.in_atomic_block:
        raise RuntimeError("room_event_store commits on its own; use room_event_append")
    payload = _payload(data, actor)
    actor_id = actor.user_id if actor else None
    if not once:
        event = _store(session_id, type, payload, actor_id, viewer_state, guard)
        return None if event is None else event_frame(event)
    with transaction.atomic():
        _lock_sender(session_id, actor_id)
        if RoomEvent.objects.filter(
            session_id=session_id, actor_id=actor_id, payload__cid=data["cid"]
        ).exists():
            raise AlreadyStoredError
        event = _store(session_id, type, payload, actor_id, viewer_state, guard)
    return None if event is None else event_frame(event)


def room_event_append(
    *,
    session_id: int,
    type: str,
    data: dict[str, Any],
    actor: Actor | None,
    viewer_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store one room event in the caller's transaction; broadcast it after commit.

    A viewer event also becomes the room's current viewer state in the same statement,
    so the snapshot a reconnecting client gets is never behind the log it replayed.
    """
    with transaction.atomic():
        event = _store(
            session_id,
            type,
            _payload(data, actor),
            actor.user_id if actor else None,
            viewer_state,
            None,
        )
        if event is None:
            raise MdtSession.DoesNotExist
        frame = event_frame(event)
        publish(room_group(session_id), "room", frame, alias=settings.ROOMS_CHANNEL_LAYER)
    return frame


# --- Sessions, cases, invitations ------------------------------------------------------------


def _require_chair(scope: access.Scope, session: MdtSession) -> None:
    if scope.user is None or session.chair_id != scope.user.pk:
        raise PermissionDenied(_("Only the session's chair may do this."))


def _session_alliance(scope: access.Scope, alliance: Alliance | None) -> Alliance:
    ids = scope.alliance_ids
    if alliance is None:
        if not ids:
            raise ValidationError({"alliance": [_("Your institution belongs to no alliance.")]})
        return Alliance.objects.get(pk=min(ids))
    if alliance.pk not in ids:
        raise ValidationError({"alliance": [_("Your institution is not in this alliance.")]})
    return alliance


def _alliance_institution_ids(alliance: Alliance) -> set[int]:
    ids = set(
        AllianceMember.objects.filter(alliance=alliance).values_list("institution_id", flat=True)
    )
    ids.add(alliance.lead_hospital_id)
    if alliance.commission_id:
        ids.add(alliance.commission_id)
    return ids


@transaction.atomic
def session_create(
    *,
    scope: access.Scope,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    kind: str = SessionKind.MDT,
    alliance: Alliance | None = None,
    cases: Iterable[tuple[Study, str]] = (),
) -> MdtSession:
    """A new session chaired by the caller, who is its first invitee and first presenter."""
    if (
        scope.user is None
        or scope.institution is None
        or not scope.has_any_role(*MDT_ORGANISER_ROLES)
    ):
        raise PermissionDenied(_("Your role at the active institution cannot organise an MDT."))
    if starts_at < EARLIEST_START:
        raise ValidationError({"starts_at": [_("A session cannot start before the year 2000.")]})
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": [_("The session must end after it starts.")]})
    if ends_at - starts_at > MAX_SESSION_LENGTH:
        raise ValidationError({"ends_at": [_("A session lasts at most 7 days.")]})
    session = MdtSession.objects.create(
        institution=scope.institution,
        alliance=_session_alliance(scope, alliance),
        title=title,
        kind=kind,
        starts_at=starts_at,
        ends_at=ends_at,
        chair=scope.user,
        presenter=scope.user,
    )
    Invitation.objects.create(
        session=session,
        user=scope.user,
        institution=scope.institution,
        role=SessionRole.CHAIR,
        invited_by=scope.user,
        answer=InvitationAnswer.ACCEPTED,
        answered_at=timezone.now(),
    )
    for study, summary in cases:
        case_add(scope=scope, session=session, study=study, clinical_summary=summary)
    return session


def _grant(
    session: MdtSession, invitations: Iterable[Invitation], studies: Iterable[Study]
) -> None:
    """Personal grants for the window: the access layer joins them into the imaging rules."""
    invitations, studies = list(invitations), list(studies)
    if not invitations or not studies:
        return
    users = [i.user_id for i in invitations]
    # An invitation taken back and given again revives its grants (one row per user/study).
    StudyGrant.objects.filter(
        source=StudyGrant.Source.MDT,
        source_id=session.pk,
        user_id__in=users,
        study__in=studies,
    ).update(revoked_at=None, valid_from=session.starts_at, valid_until=session.ends_at)
    StudyGrant.objects.bulk_create(
        [
            StudyGrant(
                study=study,
                institution_id=inv.institution_id,
                user_id=inv.user_id,
                source=StudyGrant.Source.MDT,
                source_id=session.pk,
                valid_from=session.starts_at,
                valid_until=session.ends_at,
            )
            for inv in invitations
            for study in studies
        ],
        ignore_conflicts=True,
    )


@transaction.atomic
def case_add(
    *, scope: access.Scope, session: MdtSession, study: Study, clinical_summary: str = ""
) -> SessionCase:
    """Put a study the chair may see on the list; every invitee may see it in the window."""
    _require_chair(scope, session)
    if session.status == SessionStatus.CLOSED:
        raise ValidationError(_("The session is closed."))
    if not access.visible(scope, Study).filter(pk=study.pk).exists():
        raise ValidationError({"study": [_("No such study.")]})
    if session.cases.count() >= MAX_CASES:
        raise ValidationError({"study": [_("A session holds at most %d cases.") % MAX_CASES]})
    if session.cases.filter(study=study).exists():
        raise ValidationError({"study": [_("This study is already on the list.")]})
    case = SessionCase.objects.create(
        session=session,
        study=study,
        clinical_summary=clinical_summary,
        position=session.cases.count() + 1,
    )
    _grant(session, session.invitations.active(), [study])
    return case


@transaction.atomic
def invitation_create(
    *, scope: access.Scope, session: MdtSession, user: User, institution: Institution, role: str
) -> Invitation:
    """Invite `user`, acting for `institution` (an institution of the session's alliance)."""
    _require_chair(scope, session)
    if session.status == SessionStatus.CLOSED:
        raise ValidationError(_("The session is closed."))
    if role not in SessionRole.values or role == SessionRole.CHAIR:
        raise ValidationError({"role": [_("Choose presenter, participant or observer.")]})
    if institution.pk not in _alliance_institution_ids(session.alliance):
        raise ValidationError({"institution": [_("This institution is not in the alliance.")]})
    if not Membership.objects.active().filter(user=user, institution=institution).exists():
        raise ValidationError({"user": [_("This user is not a member of that institution.")]})
    invitation = Invitation.objects.select_for_update().filter(session=session, user=user).first()
    if invitation is not None and invitation.revoked_at is None:
        raise ValidationError({"user": [_("This user is already invited.")]})
    if session.invitations.active().count() >= MAX_INVITATIONS:
        raise ValidationError(
            {"user": [_("A session holds at most %d invitees.") % MAX_INVITATIONS]}
        )
    if invitation is None:
        invitation = Invitation(session=session, user=user)
    invitation.institution, invitation.role = institution, role
    invitation.revoked_at, invitation.chat_muted, invitation.invited_by = None, False, scope.user
    invitation.answer, invitation.answered_at = InvitationAnswer.PENDING, None
    invitation.save()
    _grant(session, [invitation], [c.study for c in session.cases.select_related("study")])
    notify.invitee_tell(invitation=invitation, change=notify.Change.INVITED)
    return invitation


@transaction.atomic
def invitation_revoke(
    *, scope: access.Scope | None, invitation: Invitation, actor: Actor | None = None
) -> Invitation:
    """Take an invitation back: its grants end now and the user's sockets are closed."""
    session = invitation.session
    if scope is not None:
        _require_chair(scope, session)
    if invitation.role == SessionRole.CHAIR:
        raise ValidationError(_("The chair cannot be removed from their own session."))
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.revoked_at is not None:
        return invitation
    now = timezone.now()
    invitation.revoked_at = now
    invitation.save(update_fields=["revoked_at"])
    StudyGrant.objects.filter(
        source=StudyGrant.Source.MDT,
        source_id=session.pk,
        user_id=invitation.user_id,
        revoked_at__isnull=True,
    ).update(revoked_at=now)
    if session.presenter_id == invitation.user_id:
        MdtSession.objects.filter(pk=session.pk).update(presenter_id=session.chair_id)
    if actor is None and scope is not None and scope.user and scope.institution:
        actor = actor_for(scope.user, scope.institution)
    # The room hears it after commit; the removed user's sockets close on it (consumers.py).
    room_event_append(
        session_id=session.pk, type="member.removed", data={"user": invitation.user_id}, actor=actor
    )
    if session.status not in ENDED_STATUSES and session.ends_at > now:
        notify.invitee_tell(invitation=invitation, change=notify.Change.WITHDRAWN)
    return invitation


# --- Scheduling from the browser: the window, the agenda, answers, reschedule, cancel ------

# The form's times have minutes only: a start in the current minute is not "in the past".
PAST_SLACK = timedelta(minutes=1)


def _check_window(starts_at: datetime, ends_at: datetime) -> None:
    """The rules of a session's window, each refusal a sentence on the field it concerns."""
    if starts_at < timezone.now() - PAST_SLACK:
        raise ValidationError({"starts_at": [_("The session cannot start in the past.")]})
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": [_("The session must end after it starts.")]})
    if ends_at - starts_at > MAX_SESSION_LENGTH:
        raise ValidationError({"ends_at": [_("A session lasts at most 7 days.")]})


def _require_planned(session: MdtSession) -> None:
    if session.status in ENDED_STATUSES:
        raise ValidationError(_("The session is closed or cancelled; it cannot change any more."))


def session_schedule(
    *,
    scope: access.Scope,
    title: str,
    kind: str,
    starts_at: datetime,
    ends_at: datetime,
    alliance: Alliance | None = None,
) -> MdtSession:
    """A new session from the scheduling page: as session_create, and not in the past."""
    _check_window(starts_at, ends_at)
    return session_create(
        scope=scope,
        title=title,
        kind=kind,
        starts_at=starts_at,
        ends_at=ends_at,
        alliance=alliance,
    )


def _locked_session(scope: access.Scope, session: MdtSession) -> MdtSession:
    session = MdtSession.objects.select_for_update().select_related("chair").get(pk=session.pk)
    _require_chair(scope, session)
    _require_planned(session)
    return session


def _invitees(session: MdtSession) -> list[Invitation]:
    """Everyone invited but the chair, with what a notification names."""
    return list(
        session.invitations.active()
        .exclude(role=SessionRole.CHAIR)
        .select_related("user", "institution", "session", "session__chair")
        .order_by("pk")
    )


@transaction.atomic
def session_reschedule(
    *, scope: access.Scope, session: MdtSession, starts_at: datetime, ends_at: datetime
) -> MdtSession:
    """Move the session: its grants follow the window, answers are asked again, and every
    invitee's calendar moves the same event (same UID, next SEQUENCE)."""
    session = _locked_session(scope, session)
    _check_window(starts_at, ends_at)
    session.starts_at, session.ends_at = starts_at, ends_at
    session.calendar_sequence += 1
    session.save(update_fields=["starts_at", "ends_at", "calendar_sequence"])
    StudyGrant.objects.filter(
        source=StudyGrant.Source.MDT, source_id=session.pk, revoked_at__isnull=True
    ).update(valid_from=starts_at, valid_until=ends_at)
    session.invitations.active().exclude(role=SessionRole.CHAIR).update(
        answer=InvitationAnswer.PENDING, answered_at=None
    )
    for invitation in _invitees(session):
        notify.invitee_tell(invitation=invitation, change=notify.Change.RESCHEDULED)
    return session


@transaction.atomic
def session_cancel(*, scope: access.Scope, session: MdtSession) -> MdtSession:
    """Call the session off: nobody may enter or see its studies any more, and every
    invitee's calendar removes the event (METHOD:CANCEL)."""
    session = _locked_session(scope, session)
    now = timezone.now()
    session.status, session.closed_at = SessionStatus.CANCELLED, now
    session.calendar_sequence += 1
    session.save(update_fields=["status", "closed_at", "calendar_sequence"])
    StudyGrant.objects.filter(
        source=StudyGrant.Source.MDT, source_id=session.pk, revoked_at__isnull=True
    ).update(revoked_at=now)
    for invitation in _invitees(session):
        notify.invitee_tell(invitation=invitation, change=notify.Change.CANCELLED)
    assert scope.user is not None
    assert scope.institution is not None
    # Anyone in the room already leaves it, as when the chair closes it.
    room_event_append(
        session_id=session.pk,
        type="session.closed",
        data={"cancelled": True},
        actor=actor_for(scope.user, scope.institution),
    )
    return session


def _renumber(session: MdtSession, order: list[int]) -> None:
    for position, case_id in enumerate(order, start=1):
        SessionCase.objects.filter(pk=case_id).update(position=position)


@transaction.atomic
def case_remove(*, scope: access.Scope, case: SessionCase) -> None:
    """Take a case off the list; the invitees' grants to its study end now."""
    session = _locked_session(scope, case.session)
    StudyGrant.objects.filter(
        source=StudyGrant.Source.MDT,
        source_id=session.pk,
        study_id=case.study_id,
        revoked_at__isnull=True,
    ).update(revoked_at=timezone.now())
    case.delete()
    _renumber(session, list(session.cases.order_by("position", "pk").values_list("pk", flat=True)))


@transaction.atomic
def case_move(*, scope: access.Scope, case: SessionCase, offset: int) -> None:
    """Move a case up (-1) or down (+1) the list; at either end it stays where it is."""
    session = _locked_session(scope, case.session)
    order = list(session.cases.order_by("position", "pk").values_list("pk", flat=True))
    index = order.index(case.pk)
    target = index + (1 if offset > 0 else -1)
    if 0 <= target < len(order):
        order[index], order[target] = order[target], order[index]
    _renumber(session, order)


@transaction.atomic
def case_summary_set(*, scope: access.Scope, case: SessionCase, clinical_summary: str) -> None:
    _locked_session(scope, case.session)
    SessionCase.objects.filter(pk=case.pk).update(clinical_summary=clinical_summary)


@transaction.atomic
def invitation_answer(*, scope: access.Scope, invitation: Invitation, answer: str) -> Invitation:
    """The invitee accepts or declines (and may change their mind until the session ends)."""
    invitation = (
        Invitation.objects.select_for_update().select_related("session").get(pk=invitation.pk)
    )
    if scope.user is None or invitation.user_id != scope.user.pk:
        raise PermissionDenied(_("Only the invitee may answer an invitation."))
    if answer not in (InvitationAnswer.ACCEPTED, InvitationAnswer.DECLINED):
        raise ValidationError({"answer": [_("Accept or decline.")]})
    if invitation.revoked_at is not None:
        raise ValidationError(_("This invitation was taken back."))
    if invitation.role == SessionRole.CHAIR:
        raise ValidationError(_("The chair organises the session and need not answer."))
    session = invitation.session
    if session.status in ENDED_STATUSES or session.ends_at <= timezone.now():
        raise ValidationError(_("The session is over; it takes no more answers."))
    invitation.answer, invitation.answered_at = answer, timezone.now()
    invitation.save(update_fields=["answer", "answered_at"])
    return invitation


# --- What happens in the room ----------------------------------------------------------------

# Audit events of the room.
AUDIT_JOINED = AuditCode.MDT_ROOM_JOINED
AUDIT_CONCLUSION = AuditCode.MDT_CONCLUSION
AUDIT_VOTE = AuditCode.MDT_VOTE
AUDIT_CASE_CLOSED = AuditCode.MDT_CASE_CLOSED
AUDIT_SESSION_CLOSED = AuditCode.MDT_SESSION_CLOSED


def room_audit(
    *,
    event: str,
    session_id: int,
    actor: Actor,
    case: SessionCase | None = None,
    action: str = AuditEvent.Action.EXECUTE,
    detail: dict[str, Any] | None = None,
) -> None:
    """One room action on the audit trail, for the user and the institution they act for."""
    study = case.study if case is not None else None
    audit_record(
        event=event,
        action=action,
        user=User.objects.get(pk=actor.user_id),
        institution=Institution.objects.get(pk=actor.institution_id),
        patient_id=study.pid if study else "",
        study_uid=study.study_uid if study else "",
        object_type="mdt_session",
        object_id=session_id,
        detail={**(detail or {}), **({"case": case.pk} if case else {})},
    )


class Join(NamedTuple):
    """A socket let into a room, for the audit trail."""

    session_id: int
    actor: Actor
    role: str
    at: datetime


def room_audit_joins(joins: Sequence[Join]) -> None:
    """The audit rows of these room joins, appended in one go (in the order given)."""
    users = User.objects.in_bulk({j.actor.user_id for j in joins})
    sites = Institution.objects.in_bulk({j.actor.institution_id for j in joins})
    audit_append(
        [
            audit_row(
                event=AUDIT_JOINED,
                user=users.get(j.actor.user_id),
                institution=sites.get(j.actor.institution_id),
                object_type="mdt_session",
                object_id=j.session_id,
                detail={"role": j.role},
                occurred_at=j.at,
            )
            for j in joins
        ]
    )


@transaction.atomic
def presenter_handover(*, session_id: int, chair: Actor, user_id: int) -> dict[str, Any]:
    target = Invitation.objects.active().filter(session_id=session_id, user_id=user_id).first()
    if target is None or target.role == SessionRole.OBSERVER:
        raise ValidationError(_("Only an invited participant can present."))
    MdtSession.objects.filter(pk=session_id).update(presenter_id=user_id)
    return room_event_append(
        session_id=session_id, type="presenter", data={"user": user_id}, actor=chair
    )


@transaction.atomic
def chat_mute(*, session_id: int, chair: Actor, user_id: int, muted: bool) -> dict[str, Any]:
    changed = (
        Invitation.objects.active()
        .filter(session_id=session_id, user_id=user_id)
        .exclude(role=SessionRole.CHAIR)
        .update(chat_muted=muted)
    )
    if not changed:
        raise ValidationError(_("No such participant."))
    return room_event_append(
        session_id=session_id, type="mute", data={"user": user_id, "muted": muted}, actor=chair
    )


def _open_case(session_id: int, case_id: int) -> SessionCase:
    case = SessionCase.objects.select_for_update().filter(session_id=session_id, pk=case_id).first()
    if case is None:
        raise ValidationError(_("No such case in this session."))
    if case.closed_at is not None:
        raise ValidationError(_("This case is closed."))
    return case


@transaction.atomic
def case_conclude(
    *, session_id: int, actor: Actor, case_id: int, conclusion: str, recommendations: str
) -> dict[str, Any]:
    case = _open_case(session_id, case_id)
    case.conclusion, case.recommendations = conclusion, recommendations
    case.save(update_fields=["conclusion", "recommendations"])
    room_audit(
        event=AUDIT_CONCLUSION,
        session_id=session_id,
        actor=actor,
        case=case,
        action=AuditEvent.Action.UPDATE,
    )
    return room_event_append(
        session_id=session_id,
        type="conclusion",
        actor=actor,
        data={"case": case.pk, "conclusion": conclusion, "recommendations": recommendations},
    )


@transaction.atomic
def vote_cast(
    *, session_id: int, actor: Actor, case_id: int, choice: str, comment: str
) -> dict[str, Any]:
    case = _open_case(session_id, case_id)
    Vote.objects.update_or_create(
        case=case,
        user_id=actor.user_id,
        defaults={
            "choice": choice,
            "comment": comment,
            "institution_id": actor.institution_id,
            "at": timezone.now(),
        },
    )
    room_audit(
        event=AUDIT_VOTE,
        session_id=session_id,
        actor=actor,
        case=case,
        action=AuditEvent.Action.CREATE,
        detail={"choice": choice},
    )
    return room_event_append(
        session_id=session_id,
        type="vote",
        actor=actor,
        data={"case": case.pk, "choice": choice, "comment": comment},
    )


@transaction.atomic
def case_close(*, session_id: int, chair: Actor, case_id: int) -> dict[str, Any]:
    case = _open_case(session_id, case_id)
    case.closed_at = timezone.now()
    case.save(update_fields=["closed_at"])
    room_audit(
        event=AUDIT_CASE_CLOSED,
        session_id=session_id,
        actor=chair,
        case=case,
        action=AuditEvent.Action.UPDATE,
    )
    return room_event_append(
        session_id=session_id, type="case.closed", actor=chair, data={"case": case.pk}
    )


@transaction.atomic
def session_close(*, session_id: int, chair: Actor) -> dict[str, Any]:
    now = timezone.now()
    SessionCase.objects.filter(session_id=session_id, closed_at__isnull=True).update(closed_at=now)
    MdtSession.objects.filter(pk=session_id).update(status=SessionStatus.CLOSED, closed_at=now)
    room_audit(
        event=AUDIT_SESSION_CLOSED,
        session_id=session_id,
        actor=chair,
        action=AuditEvent.Action.UPDATE,
    )
    return room_event_append(session_id=session_id, type="session.closed", actor=chair, data={})
