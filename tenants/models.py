"""Institutions (the tenants), users, memberships with roles, gateway credentials, audit trail."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

region_code_validator = RegexValidator(
    r"^\d{6}$", _("A region code is the six-digit administrative division code (GB/T 2260).")
)
ae_title_validator = RegexValidator(
    r"^[\x20-\x5b\x5d-\x7e]{1,16}$",
    _("An AE title is 1-16 printable ASCII characters without a backslash."),
)


def bilingual(name: str, name_en: str) -> str:
    """The English name on English pages when there is one; the Chinese name otherwise."""
    language = get_language() or ""
    if language.startswith("en") and name_en:
        return name_en
    return name


def person_name(name: str, name_en: str, username: str) -> str:
    """How a user is named on pages (User.display_name, also for rows read as values)."""
    return bilingual(name, name_en) or name_en or username


class InstitutionKind(models.TextChoices):
    GRASSROOTS_CLINIC = "grassroots_clinic", _("Grassroots clinic")
    TOWNSHIP_CENTRE = "township_centre", _("Township health centre")
    COUNTY_HOSPITAL = "county_hospital", _("County hospital")
    CENTRAL_HOSPITAL = "central_hospital", _("Central hospital")
    IMAGING_CENTRE = "imaging_centre", _("Third-party imaging centre")
    HEALTH_COMMISSION = "health_commission", _("Health commission")


class Institution(models.Model):
    """A tenant: one medical institution or a health commission."""

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name (Chinese)"), max_length=200)
    name_en = models.CharField(_("name (English)"), max_length=200, blank=True)
    kind = models.CharField(_("kind"), max_length=32, choices=InstitutionKind.choices)
    region_code = models.CharField(
        _("region code"), max_length=6, validators=[region_code_validator]
    )
    address = models.CharField(_("address"), max_length=300, blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["code"]
        verbose_name = _("institution")
        verbose_name_plural = _("institutions")

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return bilingual(self.name, self.name_en)

    @property
    def is_commission(self) -> bool:
        return self.kind == InstitutionKind.HEALTH_COMMISSION


class User(AbstractUser):
    """A person who signs in. What they may see depends on their active membership."""

    name = models.CharField(_("name (Chinese)"), max_length=100, blank=True)
    name_en = models.CharField(_("name (English)"), max_length=100, blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    language = models.CharField(
        _("language"),
        max_length=10,
        default="zh-hans",
        choices=[("zh-hans", "简体中文"), ("en", "English")],
    )

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return person_name(self.name, self.name_en, self.username)


class Role(models.TextChoices):
    CLINIC_TECHNICIAN = "clinic_technician", _("Clinic technician")
    REFERRING_PHYSICIAN = "referring_physician", _("Referring physician")
    RADIOLOGIST = "radiologist", _("Radiologist")
    SENIOR_RADIOLOGIST = "senior_radiologist", _("Senior radiologist")
    HOSPITAL_ADMIN = "hospital_admin", _("Hospital administrator")
    ALLIANCE_ADMIN = "alliance_admin", _("Alliance administrator")
    COMMISSION_VIEWER = "commission_viewer", _("Commission viewer")
    MDT_MEMBER = "mdt_member", _("MDT member")


class MembershipQuerySet(models.QuerySet["Membership"]):
    def active(self) -> MembershipQuerySet:
        return self.filter(revoked_at__isnull=True, institution__is_active=True)


class Membership(models.Model):
    """One role a user holds at one institution. A user may hold several."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="memberships"
    )
    role = models.CharField(_("role"), max_length=32, choices=Role.choices)
    granted_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("granted at"), default=timezone.now)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["institution__code", "role"]
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "institution", "role"],
                condition=models.Q(revoked_at__isnull=True),
                name="one_active_membership_per_role",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.institution} ({self.get_role_display()})"


class GatewayCredential(models.Model):
    """A per-site secret that the clinic's edge gateway presents to the hub (HTTP Basic)."""

    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="gateway_credentials"
    )
    label = models.CharField(_("label"), max_length=100)
    key_id = models.CharField(_("key id"), max_length=40, unique=True, editable=False)
    secret_hash = models.CharField(max_length=256, editable=False)
    calling_ae_titles = models.JSONField(
        _("accepted calling AE titles"),
        default=list,
        blank=True,
        help_text=_("The modalities (calling AE titles) this site's gateway accepts."),
    )
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("gateway credential")
        verbose_name_plural = _("gateway credentials")

    def __str__(self) -> str:
        return f"{self.label} ({self.key_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Notification(models.Model):
    """An in-app message to one user, pushed live to their open pages."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    institution = models.ForeignKey(
        Institution, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=40)
    # What it says: a message code and its parameters (tenants/messages.py), put into words
    # when read, in the reader's language. `title` and `body` keep the words in the
    # recipient's language at sending: what rows from before codes show, and the fallback.
    # Database defaults too: rows written by SQL (seeders, repairs) are rows without a code.
    code = models.CharField(max_length=80, blank=True, db_default="")
    params = models.JSONField(
        default=dict, blank=True, db_default=models.Value({}, output_field=models.JSONField())
    )
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=300, blank=True)
    # Makes a retried task send the same notification once: (user, dedup_key) is unique.
    dedup_key = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        constraints = [
            models.UniqueConstraint(
                fields=["user", "dedup_key"],
                condition=~models.Q(dedup_key=""),
                name="one_notification_per_dedup_key",
            )
        ]

    def __str__(self) -> str:
        return self.display_title

    @property
    def display_title(self) -> str:
        """The title in the active language."""
        from .messages import message_text

        return message_text(self.code, self.params, fallback=self.title)

    @property
    def display_body(self) -> str:
        from .messages import message_text

        return message_text(self.code, self.params, part="body", fallback=self.body)


class AuditEvent(models.Model):
    """One security-relevant event. Append-only in the database and chained by SHA-256.

    Field names follow DICOM PS3.15 Annex A.5 (audit messages): an event id, the action
    code, the outcome indicator, the active participant and the participant objects.
    """

    class Action(models.TextChoices):
        CREATE = "C", _("Create")
        READ = "R", _("Read")
        UPDATE = "U", _("Update")
        DELETE = "D", _("Delete")
        EXECUTE = "E", _("Execute")

    class Outcome(models.IntegerChoices):
        SUCCESS = 0, _("Success")
        MINOR_FAILURE = 4, _("Minor failure")
        SERIOUS_FAILURE = 8, _("Serious failure")
        MAJOR_FAILURE = 12, _("Major failure")

    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    event = models.CharField(max_length=40, db_index=True)
    action = models.CharField(max_length=1, choices=Action.choices)
    outcome = models.PositiveSmallIntegerField(choices=Outcome.choices)
    # Who: copied as values, not only keys, so the record survives renames and deletions.
    user_id_value = models.BigIntegerField(null=True, blank=True)
    username = models.CharField(max_length=150, blank=True)
    role = models.CharField(max_length=32, blank=True)
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    institution_code = models.CharField(max_length=40, blank=True)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    # What: the patient, study and object acted on.
    patient_id = models.CharField(max_length=128, blank=True, db_index=True)
    study_uid = models.CharField(max_length=64, blank=True, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=128, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")

    def __str__(self) -> str:
        return f"#{self.pk} {self.event} {self.username} {self.outcome}"

    @property
    def event_label(self) -> str:
        from .audit import AuditCode

        try:
            return str(AuditCode(self.event).label)
        except ValueError:  # an event code from a newer release: show it as it is
            return self.event

    @property
    def object_label(self) -> str:
        """What the event was about, by name: a known object type, else the model of that
        name (the admin records its model's name), else the code as it is."""
        from django.apps import apps

        from .audit import AuditObject

        if not self.object_type:
            return ""
        try:
            return str(AuditObject(self.object_type).label)
        except ValueError:
            pass
        for model in apps.get_models():
            if model._meta.model_name == self.object_type:
                return str(model._meta.verbose_name).capitalize()
        return self.object_type


# The outcome codes at module level, for the OpenAPI enum name (settings.SPECTACULAR_SETTINGS).
AuditOutcome = AuditEvent.Outcome


class AuditShipment(models.Model):
    """How far the audit trail has gone to one off-box sink (tenants/audit_shipping.py): the
    trail is the spool, this is the cursor and the last anchor sent."""

    name = models.CharField(max_length=40, unique=True)
    last_id = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, blank=True)
    last_shipped_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    tamper_reported_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_id}"


class OidcIdentity(models.Model):
    """A hospital identity provider's subject bound to a hub user (tenants/oidc.py).

    Bound at the user's first single sign-on, found by e-mail or user name among the
    hospital's members; afterwards the subject alone finds the user. Never creates a user."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="oidc_identities")
    issuer = models.CharField(_("issuer"), max_length=255)
    subject = models.CharField(_("subject"), max_length=255)
    bound_at = models.DateTimeField(_("bound at"), default=timezone.now)

    class Meta:
        verbose_name = _("single sign-on identity")
        verbose_name_plural = _("single sign-on identities")
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_subject"),
            models.UniqueConstraint(fields=["issuer", "user"], name="one_subject_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


class ConnectedSystemKind(models.TextChoices):
    PACS = "pacs", _("PACS")
    VIEWER = "viewer", _("Viewer")
    OTHER = "other", _("Other system")


class ConnectedSystem(models.Model):
    """A hospital's own system (its PACS, a viewer) that reads the institution's studies
    over DICOMweb with a long-lived credential (tenants/connected_systems.py).

    Unlike an API token it does not expire unless given a date: an integration must not
    break silently after a month. It is revoked by an administrator instead, at once."""

    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="connected_systems"
    )
    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(
        _("kind"), max_length=16, choices=ConnectedSystemKind.choices, default="pacs"
    )
    key_id = models.CharField(_("key id"), max_length=40, unique=True, editable=False)
    secret_hash = models.CharField(max_length=256, editable=False)
    # Reading (QIDO-RS, WADO-RS) is what every connected system may do; storing (STOW-RS)
    # only when the administrator says so.
    may_store = models.BooleanField(_("may store images (STOW-RS)"), default=False)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("connected system")
        verbose_name_plural = _("connected systems")

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > timezone.now()
        )
