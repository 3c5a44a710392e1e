"""MDT sessions: the case list, who is invited, and the room's numbered event log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class SessionKind(models.TextChoices):
    MDT = "mdt", _("Multidisciplinary consultation")
    MORNING_READING = "morning_reading", _("Multi-hospital morning reading")


class SessionStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    CLOSED = "closed", _("Closed")
    CANCELLED = "cancelled", _("Cancelled")


# A session that no room, grant or calendar may open again.
ENDED_STATUSES = (SessionStatus.CLOSED, SessionStatus.CANCELLED)


class SessionRole(models.TextChoices):
    CHAIR = "chair", _("Chair")
    PRESENTER = "presenter", _("Presenter")
    PARTICIPANT = "participant", _("Participant")
    OBSERVER = "observer", _("Observer")


class MdtSession(models.Model):
    """One scheduled consultation (or morning reading) over a list of cases.

    `next_seq` is the room's event counter: a row lock on this row hands out each event's
    sequence number, so two sockets never get the same one. `viewer_state` is the latest
    shared viewer state, written in the same statement as the sequence number of the event
    that set it.
    """

    institution = models.ForeignKey(
        "tenants.Institution",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("organised by"),
    )
    alliance = models.ForeignKey("alliance.Alliance", on_delete=models.PROTECT, related_name="+")
    title = models.CharField(_("title"), max_length=200)
    kind = models.CharField(
        _("kind"), max_length=20, choices=SessionKind.choices, default=SessionKind.MDT
    )
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"))
    chair = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("chair"),
    )
    presenter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(
        _("status"), max_length=12, choices=SessionStatus.choices, default=SessionStatus.SCHEDULED
    )
    next_seq = models.BigIntegerField(default=0)
    # The calendar event's SEQUENCE (RFC 5545): raised by each reschedule and the cancel, so
    # the invitees' calendars replace the event they hold (same UID) instead of adding one.
    calendar_sequence = models.PositiveIntegerField(default=0)
    viewer_state = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("MDT session")
        verbose_name_plural = _("MDT sessions")
        ordering = ["-starts_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="mdt_window_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def is_open_at(self, when: object) -> bool:
        return self.status not in ENDED_STATUSES and self.starts_at <= when <= self.ends_at  # type: ignore[operator]


class SessionCase(models.Model):
    """One study on the session's list, with the summary presented and the outcome."""

    session = models.ForeignKey(MdtSession, on_delete=models.CASCADE, related_name="cases")
    study = models.ForeignKey("referrals.Study", on_delete=models.PROTECT, related_name="+")
    clinical_summary = models.TextField(_("clinical summary"), blank=True)
    position = models.PositiveIntegerField(default=0)
    conclusion = models.TextField(_("conclusion"), blank=True)
    recommendations = models.TextField(_("recommendations"), blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["session", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["session", "study"], name="mdt_case_once"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}/{self.position}"


class InvitationAnswer(models.TextChoices):
    PENDING = "pending", _("No answer yet")
    ACCEPTED = "accepted", _("Accepted")
    DECLINED = "declined", _("Declined")


class InvitationQuerySet(models.QuerySet["Invitation"]):
    def active(self) -> InvitationQuerySet:
        return self.filter(revoked_at__isnull=True)


class Invitation(models.Model):
    """A user of an alliance institution asked to the session with one session role."""

    session = models.ForeignKey(MdtSession, on_delete=models.CASCADE, related_name="invitations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    institution = models.ForeignKey(
        "tenants.Institution", on_delete=models.PROTECT, related_name="+"
    )
    role = models.CharField(
        _("role"), max_length=12, choices=SessionRole.choices, default=SessionRole.PARTICIPANT
    )
    chat_muted = models.BooleanField(default=False)
    answer = models.CharField(
        _("answer"),
        max_length=10,
        choices=InvitationAnswer.choices,
        default=InvitationAnswer.PENDING,
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "user"], name="mdt_invite_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} @ {self.session_id} ({self.role})"


class RoomEvent(models.Model):
    """Everything that happened in the room, numbered per session, stored before it is sent."""

    session = models.ForeignKey(MdtSession, on_delete=models.CASCADE, related_name="events")
    seq = models.BigIntegerField()
    type = models.CharField(max_length=32)
    payload = models.JSONField(default=dict)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="mdt_event_seq_once"),
        ]
        # Presence, hands and attendance are rebuilt from a few event types of a session.
        indexes = [models.Index(fields=["session", "type"], name="mdt_event_type")]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.seq} {self.type}"


class VoteChoice(models.TextChoices):
    AGREE = "agree", _("Agree")
    DISAGREE = "disagree", _("Disagree")
    ABSTAIN = "abstain", _("Abstain")


class Vote(models.Model):
    """One participant's position on a case's conclusion (the last one counts)."""

    case = models.ForeignKey(SessionCase, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    institution = models.ForeignKey(
        "tenants.Institution", on_delete=models.PROTECT, related_name="+"
    )
    choice = models.CharField(max_length=10, choices=VoteChoice.choices)
    comment = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["case", "user"], name="mdt_one_vote_per_case"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.choice} on {self.case_id}"
