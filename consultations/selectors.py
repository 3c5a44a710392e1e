"""Reads of MDT consultations: my sessions, who may enter a room, its snapshot and minutes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Case, Exists, JSONField, OuterRef, Q, QuerySet, When
from django.utils import timezone

from alliance.models import Alliance, AllianceMember, PoolMember
from referrals.models import Referral, Study
from referrals.worklists.selectors import WorklistFilters, worklist
from tenants import access
from tenants.models import Institution, Membership, Role, User, bilingual, person_name

from .models import (
    ENDED_STATUSES,
    Invitation,
    InvitationAnswer,
    MdtSession,
    RoomEvent,
    SessionCase,
    SessionRole,
    SessionStatus,
    Vote,
)
from .services import Actor, event_frame

PRESENCE_TYPES = ("presence.join", "presence.leave", "presence.dropped")
REPLAY_LIMIT = 5000


@dataclass(frozen=True)
class Admission:
    """A user let into one room: their session role and how the room names them."""

    session_id: int
    role: str
    actor: Actor
    ends_at: datetime

    @property
    def user_id(self) -> int:
        return self.actor.user_id


def room_admission(*, session_id: int, user: User, at: datetime | None = None) -> Admission | None:
    """The user's way into the room now, or None: not invited, revoked, outside the window,
    closed, or no longer a member of the institution they were invited for."""
    now = at or timezone.now()
    # One query: the invitation, its session and institution, and the membership behind it
    # (as a plain row: a whole room rejoins at once after a server restart).
    member = Membership.objects.active().filter(user=user, institution=OuterRef("institution"))
    invitation = (
        Invitation.objects.active()
        .filter(
            session_id=session_id, user=user, session__starts_at__lte=now, session__ends_at__gte=now
        )
        .exclude(session__status__in=ENDED_STATUSES)
        .filter(Exists(member))
        .values(
            "role",
            "institution_id",
            "institution__name",
            "institution__name_en",
            "session__ends_at",
        )
        .first()
    )
    if invitation is None:
        return None
    actor = Actor(
        user.pk,
        user.display_name,
        invitation["institution_id"],
        bilingual(invitation["institution__name"], invitation["institution__name_en"]),
    )
    return Admission(
        session_id=session_id,
        role=invitation["role"],
        actor=actor,
        ends_at=invitation["session__ends_at"],
    )


def invitation_is_active(*, session_id: int, user_id: int) -> bool:
    return Invitation.objects.active().filter(session_id=session_id, user_id=user_id).exists()


def events_after(*, session_id: int, after: int, limit: int = REPLAY_LIMIT) -> list[dict[str, Any]]:
    """The room's events with a sequence number above `after`, oldest first."""
    events = RoomEvent.objects.filter(session_id=session_id, seq__gt=after).order_by("seq")
    return [event_frame(e) for e in events[:limit]]


def room_resync(
    *, session_id: int, after: int | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What a (re)joining client needs: the events after `after` (if given), then the
    snapshot. The snapshot is read first and the replay stops at its last_seq, so together
    they leave no event out: every event up to a stored counter value is committed (the
    counter and the event are written in one statement, under the session row's lock)."""
    snapshot = room_snapshot(session_id=session_id)
    if after is None:
        return [], snapshot
    events = [
        f
        for f in events_after(session_id=session_id, after=after)
        if f["seq"] <= snapshot["last_seq"]
    ]
    return events, snapshot


def rooms_last_seq(*, session_ids: list[int]) -> dict[int, int]:
    """The last sequence number stored in each of these rooms."""
    return dict(MdtSession.objects.filter(pk__in=session_ids).values_list("pk", "next_seq"))


def _presence(session_id: int) -> tuple[dict[int, str], dict[int, bool]]:
    """Each user's presence (online while any of their sockets is) and raised hands."""
    sockets: dict[int, int] = {}
    state: dict[int, str] = {}
    hands: dict[int, bool] = {}
    # Only a hand's payload is read (decoding every presence event's JSON cost more than the
    # query: a room's log holds a join and a leave per socket per reconnect).
    rows = (
        RoomEvent.objects.filter(session_id=session_id, type__in=(*PRESENCE_TYPES, "hand"))
        .order_by("seq")
        .values_list(
            "type",
            "actor_id",
            Case(When(type="hand", then="payload"), default=None, output_field=JSONField()),
        )
    )
    for type_, user_id, payload in rows:
        if user_id is None:
            continue
        if type_ == "hand":
            hands[user_id] = bool(payload.get("raised"))
        elif type_ == "presence.join":
            sockets[user_id] = sockets.get(user_id, 0) + 1
            state[user_id] = "online"
        else:
            sockets[user_id] = max(0, sockets.get(user_id, 0) - 1)
            if not sockets[user_id]:
                state[user_id] = "dropped" if type_ == "presence.dropped" else "left"
                hands[user_id] = False
    return state, {k: v for k, v in hands.items() if v}


def _user_name(row: dict[str, Any]) -> str:
    """User.display_name of a values() row with the user's names."""
    return person_name(row["user__name"], row["user__name_en"], row["user__username"])


def room_snapshot(*, session_id: int) -> dict[str, Any]:
    """Everything a client needs to draw the room now, with the last sequence it includes.

    Read as plain rows, not model instances: every (re)joining socket reads one, and after a
    server restart the whole room rejoins at once."""
    session = MdtSession.objects.values(
        "pk",
        "title",
        "kind",
        "status",
        "starts_at",
        "ends_at",
        "chair_id",
        "presenter_id",
        "next_seq",
        "viewer_state",
    ).get(pk=session_id)
    presence, hands = _presence(session_id)
    person = ("user__name", "user__name_en", "user__username")
    invitations = (
        Invitation.objects.active()
        .filter(session_id=session_id)
        .order_by("pk")
        .values(
            "user_id",
            *person,
            "institution_id",
            "institution__name",
            "institution__name_en",
            "role",
            "chat_muted",
        )
    )
    votes: dict[int, list[dict[str, Any]]] = {}
    for vote in (
        Vote.objects.filter(case__session_id=session_id)
        .order_by("pk")
        .values("case_id", "user_id", *person, "choice", "comment")
    ):
        votes.setdefault(vote["case_id"], []).append(
            {
                "user": vote["user_id"],
                "name": _user_name(vote),
                "choice": vote["choice"],
                "comment": vote["comment"],
            }
        )
    cases = SessionCase.objects.filter(session_id=session_id).values(
        "pk",
        "study_id",
        "study__study_uid",
        "clinical_summary",
        "conclusion",
        "recommendations",
        "closed_at",
    )
    return {
        "last_seq": session["next_seq"],
        "session": {
            "id": session["pk"],
            "title": session["title"],
            "kind": session["kind"],
            "status": session["status"],
            "starts_at": session["starts_at"].isoformat(),
            "ends_at": session["ends_at"].isoformat(),
            "chair": session["chair_id"],
            "presenter": session["presenter_id"],
        },
        "cases": [
            {
                "id": c["pk"],
                "study": c["study_id"],
                "study_uid": c["study__study_uid"],
                "summary": c["clinical_summary"],
                "conclusion": c["conclusion"],
                "recommendations": c["recommendations"],
                "closed": c["closed_at"] is not None,
                "votes": votes.get(c["pk"], []),
            }
            for c in cases
        ],
        "participants": [
            {
                "id": i["user_id"],
                "name": _user_name(i),
                "institution_id": i["institution_id"],
                "institution": bilingual(i["institution__name"], i["institution__name_en"]),
                "role": i["role"],
                "muted": i["chat_muted"],
                "presence": presence.get(i["user_id"], "absent"),
                "hand": hands.get(i["user_id"], False),
            }
            for i in invitations
        ],
        "viewer": session["viewer_state"],
    }


def minutes(*, session: MdtSession) -> dict[str, Any]:
    """The record of a session: attendance (first in, last out), and each case's outcome."""
    attendance: dict[int, dict[str, Any]] = {}
    rows = (
        RoomEvent.objects.filter(session=session, type__in=PRESENCE_TYPES)
        .order_by("seq")
        .values_list("type", "actor_id", "at", "payload")
    )
    for type_, user_id, at, payload in rows:
        if user_id is None:
            continue
        entry = attendance.setdefault(
            user_id, {"joined_at": at, "left_at": None, "drops": 0, "by": payload.get("by") or {}}
        )
        if type_ == "presence.join":
            entry["left_at"] = None
        else:
            entry["left_at"] = at
            entry["drops"] += type_ == "presence.dropped"
    invitations = {
        i.user_id: i
        for i in Invitation.objects.filter(session=session).select_related("user", "institution")
    }
    people = []
    for user_id, invitation in invitations.items():
        seen = attendance.get(user_id)
        people.append(
            {
                "name": invitation.user.display_name,
                "institution": invitation.institution.display_name,
                "role": invitation.get_role_display(),
                "is_chair": invitation.role == SessionRole.CHAIR,
                "attended": seen is not None,
                "joined_at": seen and seen["joined_at"],
                "left_at": seen and seen["left_at"],
                "drops": seen["drops"] if seen else 0,
                "revoked": invitation.revoked_at is not None,
            }
        )
    people.sort(key=lambda p: (not p["is_chair"], not p["attended"], p["institution"], p["name"]))
    cases = []
    for case in session.cases.select_related("study").prefetch_related(
        "votes__user", "votes__institution"
    ):
        tally = {"agree": 0, "disagree": 0, "abstain": 0}
        votes = []
        for vote in case.votes.all():
            tally[vote.choice] += 1
            votes.append(
                {
                    "name": vote.user.display_name,
                    "institution": vote.institution.display_name,
                    "choice": vote.get_choice_display(),
                    "comment": vote.comment,
                }
            )
        cases.append(
            {
                "position": case.position,
                "study": case.study,
                "summary": case.clinical_summary,
                "conclusion": case.conclusion,
                "recommendations": case.recommendations,
                "closed_at": case.closed_at,
                "votes": votes,
                "tally": tally,
            }
        )
    return {
        "session": session,
        "people": people,
        "cases": cases,
        "closed": session.status == SessionStatus.CLOSED,
    }


# --- Scheduling pages: my sessions, the session page, the case picker, the people directory --


@dataclass(frozen=True)
class MySession:
    """One row of "My MDT sessions": the session and the caller's invitation to it."""

    session: MdtSession
    invitation: Invitation | None
    is_chair: bool
    is_open: bool

    @property
    def may_answer(self) -> bool:
        return (
            self.invitation is not None
            and not self.is_chair
            and self.session.status == SessionStatus.SCHEDULED
        )


def my_sessions(
    *, scope: access.Scope, at: datetime | None = None, past_limit: int = 30
) -> tuple[list[MySession], list[MySession]]:
    """(upcoming, past) sessions the caller sees: upcoming soonest first, past latest first.
    Upcoming means scheduled and not yet over (a session in its window is upcoming: open)."""
    now = at or timezone.now()
    sessions = access.visible(scope, MdtSession).select_related("chair", "institution")
    mine = {
        i.session_id: i
        for i in access.visible(scope, Invitation).filter(
            user=scope.user, revoked_at__isnull=True, institution=scope.institution
        )
    }
    user_id = scope.user.pk if scope.user else None

    def row(session: MdtSession) -> MySession:
        invitation = mine.get(session.pk)
        return MySession(
            session=session,
            invitation=invitation,
            is_chair=session.chair_id == user_id,
            is_open=invitation is not None and session.is_open_at(now),
        )

    upcoming = sessions.filter(status=SessionStatus.SCHEDULED, ends_at__gte=now).order_by(
        "starts_at", "pk"
    )
    past = sessions.exclude(pk__in=upcoming.values("pk")).order_by("-starts_at", "-pk")
    return [row(s) for s in upcoming], [row(s) for s in past[:past_limit]]


def session_page(*, scope: access.Scope, session: MdtSession) -> dict[str, Any]:
    """What the session page shows: the agenda, the invitees and their answers, the caller's
    own invitation and whether they chair it."""
    user_id = scope.user.pk if scope.user else None
    invitations = list(
        access.visible(scope, Invitation)
        .filter(session=session, revoked_at__isnull=True)
        .select_related("user", "institution")
        .order_by("pk")
    )
    invitations.sort(key=lambda i: (i.role != SessionRole.CHAIR, i.pk))
    mine = next((i for i in invitations if i.user_id == user_id), None)
    cases = list(
        access.visible(scope, SessionCase)
        .filter(session=session)
        .select_related("study")
        .order_by("position", "pk")
    )
    answers = dict.fromkeys(InvitationAnswer.values, 0)
    for invitation in invitations:
        answers[invitation.answer] += 1
    return {
        "session": session,
        "cases": cases,
        "invitations": invitations,
        "mine": mine,
        "is_chair": session.chair_id == user_id,
        "is_open": mine is not None and session.is_open_at(timezone.now()),
        "planned": session.status == SessionStatus.SCHEDULED,
        "answers": answers,
    }


@dataclass(frozen=True)
class CaseCandidate:
    """A study the organiser may put on the agenda, found through a referral they see."""

    referral: Referral
    on_worklist: bool

    @property
    def study(self) -> Study:
        return self.referral.study


CANDIDATE_LIMIT = 20


def case_candidates(
    *, scope: access.Scope, session: MdtSession, query: str = "", limit: int = CANDIDATE_LIMIT
) -> list[CaseCandidate]:
    """Referrals (and the caller's worklist) whose study the caller may open and that are not
    on the list yet: the worklist's cases first, then the latest referrals; a query matches
    the patient's name or id, the study's description or the clinical question."""
    studies = access.visible(scope, Study).values("pk")
    taken = SessionCase.objects.filter(session=session).values("study_id")
    referrals = (
        access.visible(scope, Referral)
        .filter(study__in=studies)
        .exclude(study__in=taken)
        .select_related("study", "source")
    )
    query = query.strip()
    worklist_ids: set[int] = set()
    if query:
        referrals = referrals.filter(
            Q(study__patient_name__icontains=query)
            | Q(study__pid__icontains=query)
            | Q(study__description__icontains=query)
            | Q(clinical_question__icontains=query)
        )
    else:
        mine = worklist(scope=scope, filters=WorklistFilters(view="mine", limit=limit))
        worklist_ids = {r.pk for r in mine}
    found: dict[int, CaseCandidate] = {}
    for referral in referrals.filter(pk__in=worklist_ids):
        found[referral.study_id] = CaseCandidate(referral, on_worklist=True)
    for referral in referrals.order_by("-requested_at", "-pk")[: limit * 2]:
        if len(found) >= limit:
            break
        found.setdefault(referral.study_id, CaseCandidate(referral, on_worklist=False))
    return list(found.values())


@dataclass(frozen=True)
class Person:
    """Someone of the alliance who may be invited, acting for one institution."""

    user: User
    institution: Institution
    roles: list[str]
    subspecialties: list[str]
    invited: bool


DIRECTORY_LIMIT = 50


def directory_institution_ids(*, scope: access.Scope, session: MdtSession) -> set[int]:
    """The institutions whose people the caller may look up for `session`: those of the
    session's alliance, and only when the caller's institution is in that alliance too."""
    if session.alliance_id not in scope.alliance_ids:
        return set()
    alliance_institutions = set(
        AllianceMember.objects.filter(alliance_id=session.alliance_id).values_list(
            "institution_id", flat=True
        )
    ) | {session.alliance.lead_hospital_id, session.alliance.commission_id}
    # Through the access layer: an institution the caller cannot see is never listed.
    return set(
        access.visible(scope, Institution)
        .filter(pk__in=alliance_institutions, is_active=True)
        .values_list("pk", flat=True)
    )


def people_directory(
    *,
    scope: access.Scope,
    session: MdtSession,
    query: str = "",
    role: str = "",
    limit: int = DIRECTORY_LIMIT,
) -> list[Person]:
    """People of the session's alliance: by name (Chinese or English), institution, role or
    subspecialty (of the alliance's reader pools). Nobody outside the alliance is listed."""
    institution_ids = directory_institution_ids(scope=scope, session=session)
    if not institution_ids:
        return []
    memberships = Membership.objects.active().filter(
        institution_id__in=institution_ids, user__is_active=True
    )
    if role:
        memberships = memberships.filter(role=role)
    query = query.strip()
    pools = PoolMember.objects.filter(
        is_active=True, pool__is_active=True, pool__alliance_id=session.alliance_id
    ).exclude(pool__subspecialty="")
    if query:
        labels = [value for value, label in Role.choices if query.lower() in str(label).lower()]
        memberships = memberships.filter(
            Q(user__name__icontains=query)
            | Q(user__name_en__icontains=query)
            | Q(user__username__iexact=query)
            | Q(institution__name__icontains=query)
            | Q(institution__name_en__icontains=query)
            | Q(role__in=labels)
            | Q(
                user__in=pools.filter(pool__subspecialty__icontains=query).values("user"),
                institution__in=pools.filter(pool__subspecialty__icontains=query).values(
                    "pool__institution"
                ),
            )
        )
    rows = memberships.select_related("user", "institution").order_by(
        "institution__code", "user__name_en", "user__username", "role"
    )
    people: dict[tuple[int, int], dict[str, Any]] = {}
    for membership in rows[: limit * 4]:
        key = (membership.user_id, membership.institution_id)
        if key not in people:
            if len(people) >= limit:
                break
            people[key] = {"m": membership, "roles": []}
        people[key]["roles"].append(membership.get_role_display())
    subspecialties: dict[tuple[int, int], list[str]] = {}
    for user_id, institution_id, subspecialty in pools.filter(
        user_id__in={k[0] for k in people}
    ).values_list("user_id", "pool__institution_id", "pool__subspecialty"):
        found = subspecialties.setdefault((user_id, institution_id), [])
        if subspecialty not in found:
            found.append(subspecialty)
    invited = set(
        Invitation.objects.active().filter(session=session).values_list("user_id", flat=True)
    )
    return [
        Person(
            user=entry["m"].user,
            institution=entry["m"].institution,
            roles=entry["roles"],
            subspecialties=subspecialties.get(key, []),
            invited=key[0] in invited,
        )
        for key, entry in people.items()
    ]


def directory_person(
    *, scope: access.Scope, session: MdtSession, user_id: int, institution_id: int
) -> tuple[User, Institution] | None:
    """The one person of the directory the caller picked, or None (not in the alliance)."""
    institution_ids = directory_institution_ids(scope=scope, session=session)
    if institution_id not in institution_ids:
        return None
    membership = (
        Membership.objects.active()
        .filter(user_id=user_id, institution_id=institution_id, user__is_active=True)
        .select_related("user", "institution")
        .first()
    )
    return None if membership is None else (membership.user, membership.institution)


def alliances_to_schedule_in(*, scope: access.Scope) -> QuerySet[Alliance]:
    return access.visible(scope, Alliance).order_by("code")
