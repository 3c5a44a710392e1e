"""Report templates, reports, addenda and second reads: the medical-legal record of a read.

A final report never changes: the model refuses to save or delete one, and a database
trigger (migration 0001) refuses any UPDATE or DELETE of a final row, whoever runs it.
The only later change is an `Addendum`, which is append-only in the same way.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tenants.models import bilingual


class ReportImmutableError(Exception):
    """Something tried to change or delete a final report (or an addendum)."""


class ReportTemplate(models.Model):
    """One version of a structured template (fields in `fields`, see reporting/schema.py).

    A new version is a new row with the same `code`; the old one is kept (reports point at
    the exact version they were written with) and marked inactive.
    """

    alliance = models.ForeignKey(
        "alliance.Alliance", on_delete=models.PROTECT, related_name="report_templates"
    )
    code = models.SlugField(_("code"), max_length=40)
    version = models.PositiveIntegerField(_("version"), default=1)
    modality = models.CharField(_("modality"), max_length=16)
    body_part = models.CharField(_("body part"), max_length=64, blank=True)
    name = models.CharField(_("name (Chinese)"), max_length=200)
    name_en = models.CharField(_("name (English)"), max_length=200, blank=True)
    fields = models.JSONField(_("fields"), default=dict)
    active = models.BooleanField(_("active"), default=True)
    created_by = models.ForeignKey(
        "tenants.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["modality", "body_part", "code", "-version"]
        verbose_name = _("report template")
        verbose_name_plural = _("report templates")
        constraints = [
            models.UniqueConstraint(
                fields=["alliance", "code", "version"], name="reporting_template_code_version"
            ),
            models.UniqueConstraint(
                fields=["alliance", "code"],
                condition=Q(active=True),
                name="reporting_template_one_active_version",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} v{self.version}"

    @property
    def display_name(self) -> str:
        return bilingual(self.name, self.name_en)


class ReportStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    PRELIMINARY = "preliminary", _("Preliminary")
    FINAL = "final", _("Final")


class SecondReadOutcome(models.TextChoices):
    AGREE = "agree", _("Agree")
    MINOR = "minor_discrepancy", _("Minor discrepancy")
    MAJOR = "major_discrepancy", _("Major discrepancy")


class Report(models.Model):
    """The report of one referral, written at the reading institution."""

    referral = models.OneToOneField(
        "referrals.Referral", on_delete=models.PROTECT, related_name="report"
    )
    study = models.ForeignKey("referrals.Study", on_delete=models.PROTECT, related_name="+")
    institution = models.ForeignKey(
        "tenants.Institution",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("reading institution"),
    )
    template = models.ForeignKey(ReportTemplate, on_delete=models.PROTECT, related_name="+")
    template_version = models.PositiveIntegerField(_("template version"))
    author = models.ForeignKey("tenants.User", on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        _("status"), max_length=16, choices=ReportStatus.choices, default=ReportStatus.DRAFT
    )
    content = models.JSONField(_("content"), default=dict)
    free_text = models.TextField(_("free text"), blank=True)
    # Optimistic concurrency: every save of a draft bumps it; a stale autosave is refused.
    version = models.PositiveIntegerField(default=1)
    preliminary_by = models.ForeignKey(
        "tenants.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    preliminary_at = models.DateTimeField(null=True, blank=True)
    second_read_required = models.BooleanField(default=False)
    second_read_outcome = models.CharField(
        max_length=24, blank=True, choices=SecondReadOutcome.choices
    )
    signed_by = models.ForeignKey(
        "tenants.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    signed_at = models.DateTimeField(_("signed at"), null=True, blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    _stored_status: str | None = None  # the status as last loaded or saved

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("report")
        verbose_name_plural = _("reports")
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="final")
                | (Q(signed_by__isnull=False) & Q(signed_at__isnull=False) & ~Q(content_sha256="")),
                name="reporting_final_is_signed",
            ),
        ]
        indexes = [models.Index(fields=["status", "institution"])]

    def __str__(self) -> str:
        return f"{self.get_status_display()} report #{self.pk} ({self.referral_id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.is_final:
            raise ReportImmutableError("a final report cannot be changed; write an addendum")
        super().save(*args, **kwargs)
        self._stored_status = self.status

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_final or self.status == ReportStatus.FINAL:
            raise ReportImmutableError("a final report cannot be deleted")
        return super().delete(*args, **kwargs)

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any, **kwargs: Any) -> Report:
        instance = super().from_db(db, field_names, values, **kwargs)
        instance._stored_status = instance.__dict__.get("status")
        return instance

    @property
    def is_final(self) -> bool:
        return self._stored_status == ReportStatus.FINAL


class Addendum(models.Model):
    """A signed addition to a final report; the original stays as it was."""

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="addenda")
    author = models.ForeignKey("tenants.User", on_delete=models.PROTECT, related_name="+")
    text = models.TextField(_("text"))
    signed_at = models.DateTimeField(_("signed at"), default=timezone.now)
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["signed_at", "pk"]
        verbose_name = _("addendum")
        verbose_name_plural = _("addenda")

    def __str__(self) -> str:
        return f"Addendum #{self.pk} to report #{self.report_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ReportImmutableError("an addendum cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ReportImmutableError("an addendum cannot be deleted")


class SecondRead(models.Model):
    """A senior's review of a junior's preliminary report (feeds quality statistics)."""

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="second_reads")
    reviewer = models.ForeignKey("tenants.User", on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(_("outcome"), max_length=24, choices=SecondReadOutcome.choices)
    comment = models.TextField(_("comment"), blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]
        verbose_name = _("second read")
        verbose_name_plural = _("second reads")

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} on report #{self.report_id}"


# --- Critical findings and key images (migration 0003) ---------------


class CriticalLevel(models.IntegerChoices):
    CLINIC = 0, _("Referring clinic")
    CLINIC_LEAD = 1, _("Clinic lead")
    DUTY_OFFICER = 2, _("Alliance duty officer")


class CriticalFinding(models.Model):
    """A critical result the reader flags; the clinic must acknowledge it in time.

    `level` is how far up the ladder it went and `due_at` when the next step is due (none
    once the duty officer has it or it is acknowledged). Every step is a CriticalEvent.
    """

    referral = models.ForeignKey(
        "referrals.Referral", on_delete=models.PROTECT, related_name="critical_findings"
    )
    report = models.ForeignKey(
        Report, on_delete=models.PROTECT, null=True, blank=True, related_name="critical_findings"
    )
    text = models.TextField(_("critical finding"))
    flagged_by = models.ForeignKey("tenants.User", on_delete=models.PROTECT, related_name="+")
    flagged_at = models.DateTimeField(_("flagged at"), default=timezone.now)
    ack_minutes = models.PositiveIntegerField(_("acknowledge within (minutes)"))
    level = models.PositiveSmallIntegerField(
        choices=CriticalLevel.choices, default=CriticalLevel.CLINIC
    )
    due_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        "tenants.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    ack_note = models.CharField(_("note"), max_length=500, blank=True)

    class Meta:
        ordering = ["-flagged_at", "-pk"]
        verbose_name = _("critical finding")
        verbose_name_plural = _("critical findings")
        indexes = [
            models.Index(
                fields=["due_at"], name="critical_due", condition=Q(acknowledged_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return f"Critical finding #{self.pk} on referral {self.referral_id}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None


class CriticalEvent(models.Model):
    """One step of a critical finding's ladder, with who was told and when."""

    class Action(models.TextChoices):
        FLAGGED = "flagged", _("Flagged; the clinic was alerted")
        ESCALATED_LEAD = "escalated_lead", _("Not acknowledged: escalated to the clinic lead")
        ESCALATED_DUTY = "escalated_duty", _("Not acknowledged: escalated to the duty officer")
        ACKNOWLEDGED = "acknowledged", _("Acknowledged")

    finding = models.ForeignKey(CriticalFinding, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=20, choices=Action.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        "tenants.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    notified = models.JSONField(default=list, help_text="ids of the users alerted")

    class Meta:
        ordering = ["at", "pk"]
        verbose_name = _("critical finding event")
        verbose_name_plural = _("critical finding events")
        constraints = [
            # The ladder never repeats a step, whatever races (beat ticks, redeliveries).
            models.UniqueConstraint(fields=["finding", "action"], name="critical_step_once"),
        ]

    def __str__(self) -> str:
        return f"{self.action} on critical finding #{self.finding_id}"


class KeyImage(models.Model):
    """A frame the reader attached to the report; frozen once the report is final."""

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="key_images")
    instance = models.ForeignKey("referrals.Instance", on_delete=models.PROTECT, related_name="+")
    frame = models.PositiveIntegerField(default=1)
    note = models.CharField(_("note"), max_length=300, blank=True)
    order = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["order", "pk"]
        verbose_name = _("key image")
        verbose_name_plural = _("key images")
        constraints = [
            models.UniqueConstraint(fields=["report", "instance", "frame"], name="key_image_once"),
        ]

    def __str__(self) -> str:
        return f"Key image {self.instance_id}/{self.frame} of report #{self.report_id}"


# --- Patient share links (migration 0002_sharing) ----------------------------


class ShareLink(models.Model):
    """A patient's link to one final report and its study, opened without logging in.

    Only the SHA-256 of the token is kept: the token itself appears once, in the URL and QR
    code handed to the patient. `patient_key` ties the links of one patient together, so one
    valid link also lists the patient's other live links of the same alliance.
    """

    token_sha256 = models.CharField(max_length=64, unique=True)
    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="share_links")
    alliance = models.ForeignKey("alliance.Alliance", on_delete=models.PROTECT, related_name="+")
    patient_key = models.CharField(max_length=64, db_index=True)
    created_by = models.ForeignKey("tenants.User", on_delete=models.PROTECT, related_name="+")
    created_for = models.ForeignKey(
        "tenants.Institution",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("created for"),
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        "tenants.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    open_count = models.PositiveIntegerField(default=0)
    last_opened_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("share link")
        verbose_name_plural = _("share links")

    def __str__(self) -> str:
        return f"Share link #{self.pk} of report #{self.report_id}"

    def is_live(self, now: Any = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.expires_at > now


class ShareLinkOpening(models.Model):
    """One opening of a share link's page (the audit trail has the same event too)."""

    link = models.ForeignKey(ShareLink, on_delete=models.CASCADE, related_name="openings")
    at = models.DateTimeField(default=timezone.now)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = _("share link opening")
        verbose_name_plural = _("share link openings")

    def __str__(self) -> str:
        return f"Opening of share link #{self.link_id} at {self.at:%Y-%m-%d %H:%M}"
