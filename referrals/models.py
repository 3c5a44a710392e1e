"""The imaging index: patients, studies, series and instances held by the hub.

Every row belongs to the institution that sent it (the tenant). The DICOM hierarchy is
keyed by its UIDs *within* an institution: two sites may each hold a copy of one study.
The pixel data lives in object storage under a key made only from `Instance.object_id`.
"""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tenants.models import Institution


class Patient(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    patient_id = models.CharField(_("patient ID"), max_length=64)
    issuer = models.CharField(_("issuer of patient ID"), max_length=64, blank=True)
    name = models.CharField(_("name"), max_length=324, blank=True)
    birth_date = models.DateField(_("birth date"), null=True, blank=True)
    sex = models.CharField(_("sex"), max_length=16, blank=True)
    # Keyed hash of (issuer, ID): links one person's studies across the alliance without
    # showing the ID itself (see referrals/archive/patient_key.py).
    patient_key = models.CharField(max_length=64, db_index=True)
    # The master patient index (referrals/identity/): `own_key` is this record's own hash of
    # (issuer, ID); `patient_key` above is the key of its linked set (the smallest own key of
    # the records linked as one person), so every reader of `patient_key` follows the links.
    own_key = models.CharField(max_length=64, blank=True, db_index=True, default="", db_default="")
    # Keyed hash of a valid resident identity number (身份证号), and its masked form to show.
    resident_key = models.CharField(
        max_length=64, blank=True, db_index=True, default="", db_default=""
    )
    resident_id_masked = models.CharField(max_length=24, blank=True, default="", db_default="")
    # The name as matching compares it (pinyin, lower case): the blocking key of the linker.
    name_match = models.CharField(
        max_length=200, blank=True, db_index=True, default="", db_default=""
    )
    # When `patient_key` last changed through a link or unlink (analytics recompute from it).
    identity_changed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "issuer", "patient_id"], name="one_patient_per_id_per_site"
            )
        ]
        # The patient linker's blocking: candidates born in the same year (referrals/identity).
        indexes = [models.Index(fields=["birth_date"], name="patient_birth_date")]

    def __str__(self) -> str:
        from referrals.archive.person_names import dicom_person_name

        return f"{self.patient_id} {dicom_person_name(self.name)}".strip()


class Study(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_uid = models.CharField(_("Study Instance UID"), max_length=64)
    study_date = models.DateField(_("study date"), null=True, blank=True)
    study_time = models.CharField(max_length=16, blank=True)
    accession_number = models.CharField(_("accession number"), max_length=16, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    description = models.CharField(_("description"), max_length=64, blank=True)
    referring_physician_name = models.CharField(max_length=324, blank=True)
    # Copies of the patient's attributes, so QIDO's study search is one indexed table.
    patient_name = models.CharField(max_length=324, blank=True)
    patient_name_search = models.CharField(max_length=324, blank=True)
    pid = models.CharField(_("patient ID"), max_length=64, blank=True)
    patient_key = models.CharField(max_length=64, db_index=True)
    modalities = models.CharField(_("modalities"), max_length=64, blank=True)  # "CT\\SR"
    body_parts = models.CharField(max_length=128, blank=True)
    num_series = models.PositiveIntegerField(default=0)
    num_instances = models.PositiveIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)
    last_received_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Set once no instance has arrived for the quiet period; routing hooks onto it.
    stable_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The stable hooks of the current generation that have not finished yet, and when they
    # were last queued: beat queues them again after a grace period (archive/stability.py).
    stable_hooks_pending = ArrayField(
        models.CharField(max_length=200),
        default=list,
        blank=True,
        # Also for rows written by SQL (bench seeders, data repairs): an empty list.
        db_default=models.Value([], output_field=ArrayField(models.CharField(max_length=200))),
    )
    stable_hooks_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("study")
        verbose_name_plural = _("studies")
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "study_uid"], name="one_study_per_uid_per_site"
            )
        ]
        indexes = [
            models.Index(fields=["institution", "-study_date", "-id"], name="study_site_date"),
            models.Index(fields=["institution", "pid"], name="study_site_pid"),
            models.Index(fields=["institution", "accession_number"], name="study_site_acc"),
            models.Index(fields=["institution", "patient_name_search"], name="study_site_pname"),
            models.Index(fields=["study_uid"], name="study_uid"),
            models.Index(
                fields=["stable_hooks_sent_at"],
                condition=~models.Q(stable_hooks_pending=[]),
                name="study_hooks_pending",
            ),
        ]

    def __str__(self) -> str:
        return self.study_uid

    @property
    def study_time_display(self) -> str:
        """DICOM TM ("093000.123") as a person reads it ("09:30:00")."""
        digits = self.study_time.split(".")[0]
        if len(digits) >= 4 and digits.isdigit():
            parts = [digits[i : i + 2] for i in range(0, min(len(digits), 6), 2)]
            return ":".join(parts)
        return self.study_time


class Series(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_uid = models.CharField(_("Series Instance UID"), max_length=64)
    modality = models.CharField(_("modality"), max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=64, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    performed_at = models.DateTimeField(null=True, blank=True)
    num_instances = models.PositiveIntegerField(default=0)
    thumbnail_key = models.CharField(max_length=200, blank=True)
    # Set when every instance of the series is rejected (IHE IOCM): the series is hidden.
    rejected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("series")
        verbose_name_plural = _("series")
        constraints = [
            models.UniqueConstraint(
                fields=["study", "series_uid"], name="one_series_per_uid_per_study"
            )
        ]
        indexes = [models.Index(fields=["institution", "series_uid"], name="series_site_uid")]

    def __str__(self) -> str:
        return self.series_uid


class Instance(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="instances")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    sop_uid = models.CharField(_("SOP Instance UID"), max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=1)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    # SHA-256 of the data set without its file meta (group 0002), as received: a resend
    # from another route (other calling AE, other implementation) has other file meta but
    # the same data set. Blank on rows indexed before it existed; computed from the stored
    # object when such a row meets a resend (referrals/archive/ingest.py).
    dataset_sha256 = models.CharField(max_length=64, blank=True, default="", db_default="")
    # The object key is made from this server-generated id only, never from DICOM fields.
    object_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The instance's DICOM JSON (PS3.18 F.2) without bulk data: serves /metadata fast.
    metadata = models.JSONField(default=dict)
    received_via = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)
    # Rejected (IHE IOCM) with a reason code, e.g. "113001" (DCM): hidden from every read of
    # the access layer, its object kept (referrals/archive/correction/).
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejection_code = models.CharField(max_length=16, blank=True, default="", db_default="")

    class Meta:
        verbose_name = _("instance")
        verbose_name_plural = _("instances")
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "sop_uid"], name="one_instance_per_uid_per_site"
            )
        ]
        indexes = [
            models.Index(fields=["series", "instance_number"], name="instance_order"),
            # The few rejected instances of a study (undo, the correction page).
            models.Index(
                fields=["study"],
                condition=models.Q(rejected_at__isnull=False),
                name="instance_rejected",
            ),
        ]

    def __str__(self) -> str:
        return self.sop_uid

    @property
    def object_key(self) -> str:
        return instance_object_key(self.object_id)


def instance_object_key(object_id: uuid.UUID) -> str:
    hexid = object_id.hex
    return f"instances/{hexid[:2]}/{hexid[2:4]}/{hexid}.dcm"


# --- Grants: how another institution comes to see a study -----------------------------------


class StudyGrantQuerySet(models.QuerySet["StudyGrant"]):
    def active(self, *, at: object | None = None) -> StudyGrantQuerySet:
        """Grants in force now: not revoked, started, not yet expired."""
        now = at or timezone.now()
        return self.filter(
            models.Q(valid_until__isnull=True) | models.Q(valid_until__gt=now),
            revoked_at__isnull=True,
            valid_from__lte=now,
        )


class StudyGrant(models.Model):
    """Read access to one study for another institution (or one user there).

    Made by a referral (the reader institution sees the referred studies and the priors
    they bring) or an MDT invitation (one user, during the session's window). The access
    layer (tenants/access.py) joins active grants into the imaging rules; nothing else
    widens what an institution sees.
    """

    class Source(models.TextChoices):
        REFERRAL = "referral", _("Referral")
        MDT = "mdt", _("MDT session")

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="grants")
    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="+")
    # Set for a personal grant (an MDT invitation): only this user, acting for `institution`.
    user = models.ForeignKey(
        "tenants.User", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    source_id = models.BigIntegerField()
    is_prior = models.BooleanField(default=False)
    valid_from = models.DateTimeField(default=timezone.now)
    valid_until = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = StudyGrantQuerySet.as_manager()

    class Meta:
        verbose_name = _("study grant")
        verbose_name_plural = _("study grants")
        constraints = [
            models.UniqueConstraint(
                fields=["source", "source_id", "study", "institution"],
                condition=models.Q(user__isnull=True),
                name="one_grant_per_source_study_site",
            ),
            models.UniqueConstraint(
                fields=["source", "source_id", "study", "institution", "user"],
                condition=models.Q(user__isnull=False),
                name="one_grant_per_source_study_user",
            ),
        ]
        indexes = [
            models.Index(
                fields=["institution", "study"],
                name="grant_site_study",
                condition=models.Q(revoked_at__isnull=True),
            ),
            models.Index(fields=["source", "source_id"], name="grant_source"),
        ]

    def __str__(self) -> str:
        return f"{self.study_id} → {self.institution_id} ({self.source} {self.source_id})"


# --- Referrals: a request from one institution to another ----------------------------------


# An empty list of steps also for rows written by SQL (bench seeders, data repairs).
NO_STEPS = models.Value([], output_field=models.JSONField())


class ReferralKind(models.TextChoices):
    REMOTE_READ = "remote_read", _("Remote read")
    CONSULTATION = "consultation", _("Expert consultation")
    TRANSFER_UP = "transfer_up", _("Upward transfer")
    TRANSFER_DOWN = "transfer_down", _("Downward transfer")


class Priority(models.TextChoices):
    STAT = "stat", _("STAT")
    URGENT = "urgent", _("Urgent")
    ROUTINE = "routine", _("Routine")


PRIORITY_RANK = {Priority.STAT: 0, Priority.URGENT: 1, Priority.ROUTINE: 2}


class ReferralStatus(models.TextChoices):
    REQUESTED = "requested", _("Requested")
    ROUTED = "routed", _("Routed")
    CLAIMED = "claimed", _("Claimed")
    REPORTING = "reporting", _("Reporting")
    REPORTED = "reported", _("Reported")
    DELIVERED = "delivered", _("Delivered")
    ACKNOWLEDGED = "acknowledged", _("Acknowledged")
    RETURNED = "returned", _("Returned for quality")
    CANCELLED = "cancelled", _("Cancelled")


# Statuses in which a referral still needs someone (worklists, deadlines, pool load).
OPEN_STATUSES = (
    ReferralStatus.REQUESTED,
    ReferralStatus.ROUTED,
    ReferralStatus.CLAIMED,
    ReferralStatus.REPORTING,
)
# A reader is working on it (counts against the reader's capacity).
READER_LOAD_STATUSES = (ReferralStatus.ROUTED, ReferralStatus.CLAIMED, ReferralStatus.REPORTING)


class ReturnReason(models.TextChoices):
    MOTION = "motion_artefact", _("Motion artefact")
    COVERAGE = "incomplete_coverage", _("Incomplete coverage")
    WRONG_PROTOCOL = "wrong_protocol", _("Wrong protocol")
    IMAGE_QUALITY = "poor_image_quality", _("Poor image quality")
    WRONG_PATIENT = "wrong_patient", _("Wrong patient or study")
    MISSING_HISTORY = "missing_history", _("Clinical information missing")
    OTHER = "other", _("Other")


class Referral(models.Model):
    """One institution asks another to read, advise on, or take over a patient's studies."""

    alliance = models.ForeignKey(
        "alliance.Alliance", on_delete=models.PROTECT, related_name="referrals"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=ReferralKind.choices)
    # The referred study; (study, kind) is one live referral however often it is sent.
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="referrals")
    source = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="+", verbose_name=_("requesting site")
    )
    target = models.ForeignKey(
        Institution,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("reading institution"),
    )
    clinical_question = models.TextField(_("clinical question"), blank=True)
    priority = models.CharField(
        _("priority"), max_length=8, choices=Priority.choices, default=Priority.ROUTINE
    )
    priority_rank = models.PositiveSmallIntegerField(default=2)
    status = models.CharField(
        _("status"), max_length=16, choices=ReferralStatus.choices, default=ReferralStatus.REQUESTED
    )
    requested_by = models.ForeignKey(
        "tenants.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    automatic = models.BooleanField(default=False)
    requested_at = models.DateTimeField(_("requested at"), default=timezone.now)
    deadline_at = models.DateTimeField(_("deadline"))
    warn_at = models.DateTimeField()
    warned_at = models.DateTimeField(null=True, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(default=0)
    # Routing's outcome.
    pool = models.ForeignKey(
        "alliance.ReaderPool",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="referrals",
    )
    rule = models.ForeignKey(
        "alliance.RoutingRule", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    routed_at = models.DateTimeField(null=True, blank=True)
    # Why it went where it did: steps as codes with parameters (referrals/messages.py), read
    # in the reader's language. `routing_explanation` is the words of rows from before codes.
    routing_steps = models.JSONField(default=list, blank=True, db_default=NO_STEPS)
    routing_explanation = models.TextField(blank=True)
    unroutable = models.BooleanField(default=False)
    # The reader routing proposed, and the one who took it.
    assigned_to = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    claimed_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    return_reason = models.CharField(
        _("reason returned"), max_length=32, blank=True, choices=ReturnReason.choices
    )
    return_comment = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("referral")
        verbose_name_plural = _("referrals")
        constraints = [
            models.UniqueConstraint(
                fields=["study", "kind"],
                condition=~models.Q(status__in=["cancelled", "returned"]),
                name="one_live_referral_per_study_kind",
            )
        ]
        indexes = [
            # The pool worklist: open cases of a pool, most urgent first.
            models.Index(
                fields=["pool", "priority_rank", "deadline_at"],
                name="referral_pool_queue",
                condition=models.Q(status__in=["routed", "claimed", "reporting"]),
            ),
            models.Index(
                fields=["claimed_by", "priority_rank", "deadline_at"],
                name="referral_reader_queue",
                condition=models.Q(status__in=["claimed", "reporting"]),
            ),
            models.Index(
                fields=["assigned_to", "status"],
                name="referral_assignee",
                condition=models.Q(status__in=["routed", "claimed", "reporting"]),
            ),
            models.Index(fields=["source", "-requested_at"], name="referral_source"),
            models.Index(fields=["target", "-requested_at"], name="referral_target"),
            models.Index(
                fields=["deadline_at"],
                name="referral_deadline_open",
                condition=models.Q(status__in=["requested", "routed", "claimed", "reporting"]),
            ),
            models.Index(fields=["status", "requested_at"], name="referral_status"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def routing_explanation_text(self) -> str:
        """Routing's explanation in the active language. A row from before codes shows its
        stored words, followed by any step added since (an escalation)."""
        from tenants.messages import steps_text

        return "; ".join(t for t in (self.routing_explanation, steps_text(self.routing_steps)) if t)


class ReferralStudy(models.Model):
    """A study a referral carries: the referred ones, and the priors routing brought along."""

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="items")
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="+")
    is_prior = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["referral", "study"], name="one_item_per_study")
        ]

    def __str__(self) -> str:
        return f"{self.referral_id}: {self.study_id}"


class ReferralEvent(models.Model):
    """One step in a referral's life: who did what, when, why. Append-only."""

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    actor = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_institution = models.ForeignKey(
        Institution, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)
    # What a person wrote; or, when the hub decided, the steps as codes with parameters.
    reason = models.TextField(blank=True)
    reason_steps = models.JSONField(default=list, blank=True, db_default=NO_STEPS)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["referral", "at"], name="referral_event_order")]

    def __str__(self) -> str:
        return f"{self.referral_id}: {self.action}"

    @property
    def reason_text(self) -> str:
        """Why, in the active language."""
        from tenants.messages import steps_text

        return steps_text(self.reason_steps, fallback=self.reason)


# --- Corrections: demographics fixed, studies merged or split, instances rejected ----------


class CorrectionKind(models.TextChoices):
    EDIT = "edit", _("Patient and study attributes edited")
    MERGE = "merge", _("Studies merged")
    SPLIT = "split", _("Study split")
    MOVE = "move", _("Series moved")
    REJECT = "reject", _("Instances rejected")
    RESTORE = "restore", _("Rejection undone")


class CorrectionStatus(models.TextChoices):
    PENDING = "pending", _("Waiting")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class Correction(models.Model):
    """One change an archive manager made to stored studies (IHE IOCM), and its progress.

    Rewriting every object of a large study takes a while: the row is written first, a
    Celery task does the work instance by instance and counts `done`; running it again
    skips the instances already rewritten (their `Instance.metadata` already says so).
    """

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=CorrectionKind.choices)
    status = models.CharField(
        max_length=16, choices=CorrectionStatus.choices, default=CorrectionStatus.PENDING
    )
    # The study the change is about (for a merge: the one kept) and its UID at the time.
    study = models.ForeignKey(
        Study, on_delete=models.SET_NULL, null=True, blank=True, related_name="corrections"
    )
    study_uid = models.CharField(max_length=64)
    # What was asked: attributes and their new values, series UIDs, the other study...
    params = models.JSONField(default=dict, blank=True)
    # The attributes' values before the change, as the undo and the audit trail need them.
    previous = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("correction")
        verbose_name_plural = _("corrections")
        indexes = [models.Index(fields=["study", "-created_at"], name="correction_study")]

    def __str__(self) -> str:
        return f"{self.kind} {self.study_uid} ({self.status})"


# --- Reconciliation: instances held for a person to decide -------------------------------


class HeldInstance(models.Model):
    """An instance the hub kept but did not file, and what a person decided about it.

    `kind` says why: its patient contradicts the study it names (`patient`) or, in a new
    study, the patient record held under its Patient ID (`patient_record`), its series is
    already held under another study (`series`), or it carried a different data set under a
    SOP Instance UID already stored (`conflict`: refused, the stored copy kept; listed for the
    site to see, nothing to resolve). Held objects stay in storage under `object_id` until
    the decision; a rejected one is deleted and its row kept.
    """

    class Kind(models.TextChoices):
        PATIENT = "patient", _("Patient differs from the study's")
        PATIENT_RECORD = "patient_record", _("Patient differs from the record under its ID")
        SERIES = "series", _("Series already held under another study")
        CONFLICT = "conflict", _("Different data set under a stored SOP Instance UID")

    class Decision(models.TextChoices):
        ACCEPTED = "accepted", _("Accepted into the study")
        NEW_STUDY = "new_study", _("Filed as a new study")
        NEW_PATIENT = "new_patient", _("Filed as a new patient")
        REJECTED = "rejected", _("Rejected")
        REFUSED = "refused", _("Refused at arrival")

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    sop_uid = models.CharField(_("SOP Instance UID"), max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    study_uid = models.CharField(_("Study Instance UID"), max_length=64)
    series_uid = models.CharField(_("Series Instance UID"), max_length=64)
    transfer_syntax_uid = models.CharField(max_length=64, blank=True)
    # The instance's patient as sent (the study's own is read from `study`).
    patient_id = models.CharField(_("patient ID"), max_length=64, blank=True)
    issuer = models.CharField(_("issuer of patient ID"), max_length=64, blank=True)
    patient_name = models.CharField(_("name"), max_length=324, blank=True)
    birth_date = models.CharField(_("birth date"), max_length=16, blank=True)
    sex = models.CharField(_("sex"), max_length=16, blank=True)
    # The study it contradicts: the one it names, or the one already holding its series.
    study = models.ForeignKey(
        Study, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    differences = models.JSONField(default=list, blank=True)  # codes: "patient_id", "name"...
    received_via = models.CharField(max_length=16)
    object_id = models.UUIDField(null=True, blank=True, unique=True, editable=False)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    dataset_sha256 = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # How many times the same held or conflicting instance arrived again.
    resent = models.PositiveIntegerField(default=0)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True)
    # Filed as a new study: the UIDs it was rewritten with; accepted or filed: its instance.
    new_study_uid = models.CharField(max_length=64, blank=True)
    instance = models.ForeignKey(
        Instance, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("held instance")
        verbose_name_plural = _("held instances")
        constraints = [
            # A resend of an instance still held finds its row instead of holding it twice.
            models.UniqueConstraint(
                fields=["institution", "sop_uid"],
                condition=models.Q(resolved_at__isnull=True),
                name="one_open_hold_per_uid_per_site",
            ),
        ]
        indexes = [
            models.Index(fields=["institution", "resolved_at", "created_at"], name="held_queue"),
            models.Index(fields=["institution", "sop_uid"], name="held_site_uid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.sop_uid}"

    @property
    def object_key(self) -> str:
        assert self.object_id is not None
        return instance_object_key(self.object_id)


# --- Registration at the source: the clinic's scheduled exams (its Modality Worklist) ---------


class RegistrationStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    IN_PROGRESS = "in_progress", _("In progress")
    COMPLETED = "completed", _("Completed")
    CANCELLED = "cancelled", _("Cancelled")


class ExamRegistration(models.Model):
    """An exam a clinic registered before the scan: the scanner reads it from the gateway's
    Modality Worklist, so the study arrives with this patient's IDs and these UIDs, and is
    matched back to it (referrals/registration/)."""

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    patient_id = models.CharField(_("patient ID"), max_length=64)
    issuer = models.CharField(_("issuer of patient ID"), max_length=64, blank=True)
    # A DICOM PN with its ideographic group: "Wang^Jianguo=王^建国".
    patient_name = models.CharField(_("patient name"), max_length=324)
    birth_date = models.DateField(_("birth date"), null=True, blank=True)
    sex = models.CharField(_("sex"), max_length=1, blank=True)  # DICOM CS: M, F, O
    # Generated per institution; a DICOM SH, so at most 16 characters.
    accession_number = models.CharField(_("accession number"), max_length=16)
    # Generated here and handed to the scanner, so the study carries it.
    study_uid = models.CharField(_("Study Instance UID"), max_length=64, unique=True)
    modality = models.CharField(_("modality"), max_length=16)
    body_part = models.CharField(_("body part"), max_length=64, blank=True)
    procedure_description = models.CharField(_("requested procedure"), max_length=64)
    requesting_physician = models.CharField(_("requesting doctor"), max_length=324, blank=True)
    clinical_question = models.TextField(_("clinical question"), blank=True)
    scheduled_at = models.DateTimeField(_("scheduled for"))
    station_ae_title = models.CharField(_("scanner AE title"), max_length=16, blank=True)
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=RegistrationStatus.choices,
        default=RegistrationStatus.SCHEDULED,
    )
    study = models.ForeignKey(
        Study, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    matched_at = models.DateTimeField(null=True, blank=True)
    matched_by = models.CharField(max_length=16, blank=True)  # "study_uid" or "accession"
    # The study came with another patient ID than the one registered: shown, never fixed
    # silently (the study is left as it arrived).
    patient_id_mismatch = models.BooleanField(default=False)
    study_patient_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("exam registration")
        verbose_name_plural = _("exam registrations")
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "accession_number"],
                name="one_registration_per_accession_per_site",
            )
        ]
        indexes = [
            models.Index(fields=["institution", "status", "scheduled_at"], name="registration_day"),
        ]

    def __str__(self) -> str:
        return f"{self.accession_number} {self.patient_id}"


# --- Patient identity across the alliance (the master patient index) ------------------------


class PatientIdDomain(models.Model):
    """The issuer of patient IDs of a site, or of one of its gateways (which then wins).

    An instance that names no IssuerOfPatientID is indexed under this issuer (ingest).
    """

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="+")
    gateway = models.ForeignKey(
        "tenants.GatewayCredential",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    issuer = models.CharField(_("issuer of patient IDs"), max_length=64)
    updated_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("patient ID issuer")
        verbose_name_plural = _("patient ID issuers")
        constraints = [
            models.UniqueConstraint(
                fields=["institution"],
                condition=models.Q(gateway__isnull=True),
                name="one_issuer_per_site",
            ),
            models.UniqueConstraint(
                fields=["gateway"],
                condition=models.Q(gateway__isnull=False),
                name="one_issuer_per_gateway",
            ),
        ]

    def __str__(self) -> str:
        return self.issuer


class LinkMethod(models.TextChoices):
    RESIDENT_ID = "resident_id", _("Same resident identity number")
    DEMOGRAPHICS = "demographics", _("Similar demographics")
    MANUAL = "manual", _("Linked by a person")


class LinkStatus(models.TextChoices):
    LINKED = "linked", _("Linked")
    PROPOSED = "proposed", _("Waiting for review")
    REJECTED = "rejected", _("Not the same person")
    UNLINKED = "unlinked", _("Unlinked")


class PatientLink(models.Model):
    """Two patient records of an alliance judged to be one person (or proposed, or refused).

    `patient_a` is always the record with the smaller id, so a pair has one row. Linked rows
    join their records' `patient_key`; every change appends a `PatientLinkEvent`.
    """

    alliance = models.ForeignKey("alliance.Alliance", on_delete=models.CASCADE, related_name="+")
    patient_a = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    patient_b = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    method = models.CharField(_("method"), max_length=16, choices=LinkMethod.choices)
    score = models.FloatField(_("score"), null=True, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=LinkStatus.choices)
    # Per-field similarities the score came from (shown to the reviewer).
    features = models.JSONField(default=dict, blank=True)
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    decided_by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("patient link")
        verbose_name_plural = _("patient links")
        constraints = [
            models.UniqueConstraint(
                fields=["alliance", "patient_a", "patient_b"], name="one_link_per_pair"
            ),
            models.CheckConstraint(
                condition=models.Q(patient_a__lt=models.F("patient_b")), name="link_pair_ordered"
            ),
        ]
        indexes = [models.Index(fields=["alliance", "status"], name="patient_link_status")]

    def __str__(self) -> str:
        return f"{self.patient_a_id}~{self.patient_b_id} {self.status}"


class PatientLinkEvent(models.Model):
    """One change of a link's status: the history that makes every link reversible."""

    link = models.ForeignKey(PatientLink, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=16, choices=LinkStatus.choices)
    previous_status = models.CharField(max_length=16, blank=True)
    method = models.CharField(max_length=16, choices=LinkMethod.choices)
    score = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    by = models.ForeignKey(
        "tenants.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]
        verbose_name = _("patient link event")
        verbose_name_plural = _("patient link events")

    def __str__(self) -> str:
        return f"{self.link_id} {self.previous_status}->{self.status}"
