"""The alliance: a group of institutions in tiers, led by a hospital, overseen by a commission."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tenants.models import Institution, InstitutionKind, bilingual, region_code_validator


class Tier(models.TextChoices):
    GRASSROOTS = "grassroots", _("Grassroots")
    COUNTY = "county", _("County")
    CENTRAL = "central", _("Central")


TIER_RANK = {Tier.GRASSROOTS: 1, Tier.COUNTY: 2, Tier.CENTRAL: 3}


class Alliance(models.Model):
    """医联体 / 医共体: a lead hospital, its member institutions, the overseeing commission."""

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name (Chinese)"), max_length=200)
    name_en = models.CharField(_("name (English)"), max_length=200, blank=True)
    region_code = models.CharField(
        _("region code"), max_length=6, validators=[region_code_validator]
    )
    lead_hospital = models.ForeignKey(
        Institution,
        on_delete=models.PROTECT,
        related_name="led_alliances",
        verbose_name=_("lead hospital"),
    )
    commission = models.ForeignKey(
        Institution,
        on_delete=models.PROTECT,
        related_name="overseen_alliances",
        verbose_name=_("overseeing commission"),
        limit_choices_to={"kind": InstitutionKind.HEALTH_COMMISSION},
    )
    institutions = models.ManyToManyField(
        Institution, through="AllianceMember", related_name="alliances"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["code"]
        verbose_name = _("alliance")
        verbose_name_plural = _("alliances")

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return bilingual(self.name, self.name_en)

    def clean(self) -> None:
        if self.commission_id and self.commission.kind != InstitutionKind.HEALTH_COMMISSION:
            raise ValidationError({"commission": _("The overseer must be a health commission.")})
        if self.lead_hospital_id and self.lead_hospital.kind == InstitutionKind.HEALTH_COMMISSION:
            raise ValidationError({"lead_hospital": _("A commission cannot lead an alliance.")})


class AllianceMember(models.Model):
    """An institution's place (tier) in one alliance."""

    alliance = models.ForeignKey(Alliance, on_delete=models.CASCADE, related_name="members")
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="alliance_memberships"
    )
    tier = models.CharField(_("tier"), max_length=16, choices=Tier.choices)
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["alliance__code", "tier", "institution__code"]
        verbose_name = _("alliance member")
        verbose_name_plural = _("alliance members")
        constraints = [
            models.UniqueConstraint(
                fields=["alliance", "institution"], name="one_place_per_alliance"
            )
        ]

    def __str__(self) -> str:
        return f"{self.institution} ({self.get_tier_display()})"

    def clean(self) -> None:
        if self.institution_id and self.institution.kind == InstitutionKind.HEALTH_COMMISSION:
            raise ValidationError(
                {"institution": _("A commission oversees an alliance; it is not a member.")}
            )


# --- Routing: where a referral goes, and how fast it must be read ---------------------------


class BreachAction(models.TextChoices):
    NOTIFY_LEAD = "notify_lead", _("Notify the reading hospital's lead")
    RETURN_TO_POOL = "return_to_pool", _("Return the case to the pool")
    NEXT_TIER = "next_tier", _("Move the case to the next tier")


class AlliancePolicy(models.Model):
    """An alliance's deadlines and escalation rules, and where unroutable cases go."""

    alliance = models.OneToOneField(Alliance, on_delete=models.CASCADE, related_name="policy")
    stat_minutes = models.PositiveIntegerField(_("STAT deadline (minutes)"), default=30)
    urgent_minutes = models.PositiveIntegerField(_("urgent deadline (minutes)"), default=120)
    routine_minutes = models.PositiveIntegerField(_("routine deadline (minutes)"), default=1440)
    warn_fraction = models.FloatField(
        _("warn at fraction of deadline"),
        default=0.75,
        help_text=_("A warning goes out when this share of the time allowed has passed."),
    )
    breach_action = models.CharField(
        _("on breach"),
        max_length=16,
        choices=BreachAction.choices,
        default=BreachAction.NOTIFY_LEAD,
    )
    claim_open_minutes = models.PositiveIntegerField(
        _("release a claim not opened within (minutes)"),
        default=15,
    )
    critical_ack_minutes = models.PositiveIntegerField(
        _("critical finding: clinic acknowledges within (minutes)"),
        default=30,
        help_text=_("Unacknowledged after this long, the clinic's lead is alerted."),
    )
    critical_lead_minutes = models.PositiveIntegerField(
        _("critical finding: the lead acknowledges within (minutes)"),
        default=15,
        help_text=_("Unacknowledged this long after the lead was alerted, the duty officer is."),
    )
    grant_days_after_report = models.PositiveIntegerField(
        _("reader keeps access after delivery (days)"),
        default=30,
    )
    fallback_pool = models.ForeignKey(
        "ReaderPool",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("fallback pool"),
        help_text=_("Where a case goes when no rule matches; it is flagged for review."),
    )
    duty_officer = models.ForeignKey(
        "tenants.User",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("duty officer"),
    )

    class Meta:
        verbose_name = _("alliance policy")
        verbose_name_plural = _("alliance policies")

    def __str__(self) -> str:
        return str(self.alliance)

    def deadline_minutes(self, priority: str) -> int:
        return {"stat": self.stat_minutes, "urgent": self.urgent_minutes}.get(
            priority, self.routine_minutes
        )


class SiteSettings(models.Model):
    """A member site's referral settings in one alliance."""

    member = models.OneToOneField(AllianceMember, on_delete=models.CASCADE, related_name="settings")
    auto_remote_read = models.BooleanField(
        _("request a remote read when a study is complete"),
        default=False,
    )
    auto_priority = models.CharField(
        _("priority of automatic requests"),
        max_length=8,
        default="routine",
        choices=[("stat", _("STAT")), ("urgent", _("Urgent")), ("routine", _("Routine"))],
    )

    class Meta:
        verbose_name = _("site referral settings")
        verbose_name_plural = _("site referral settings")

    def __str__(self) -> str:
        return str(self.member)


class ReaderPool(models.Model):
    """A reading institution's group of readers (optionally of one subspecialty)."""

    alliance = models.ForeignKey(Alliance, on_delete=models.CASCADE, related_name="pools")
    institution = models.ForeignKey(
        Institution,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("reading institution"),
    )
    name = models.CharField(_("name"), max_length=120)
    name_en = models.CharField(_("name (English)"), max_length=120, blank=True)
    subspecialty = models.CharField(_("subspecialty"), max_length=40, blank=True)
    cap = models.PositiveIntegerField(
        _("open-case cap"),
        default=200,
        help_text=_("Above this many open cases, new cases overflow to the next pool."),
    )
    overflow_to = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("overflow to"),
    )
    roster_required = models.BooleanField(
        _("only readers on shift"),
        default=False,
        help_text=_("When set, only readers with a roster shift now are chosen."),
    )
    lead = models.ForeignKey(
        "tenants.User",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("lead"),
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["alliance", "institution", "name"]
        verbose_name = _("reader pool")
        verbose_name_plural = _("reader pools")

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return bilingual(self.name, self.name_en)


class PoolMember(models.Model):
    pool = models.ForeignKey(ReaderPool, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey("tenants.User", on_delete=models.CASCADE, related_name="+")
    capacity = models.PositiveIntegerField(_("capacity (open cases)"), default=10)
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = _("pool member")
        verbose_name_plural = _("pool members")
        constraints = [
            models.UniqueConstraint(fields=["pool", "user"], name="one_membership_per_pool")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.pool}"


class RosterShift(models.Model):
    """An on-call shift: this reader is on duty for this pool in this window."""

    pool = models.ForeignKey(ReaderPool, on_delete=models.CASCADE, related_name="shifts")
    user = models.ForeignKey("tenants.User", on_delete=models.CASCADE, related_name="+")
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    # Shifts added together as a recurring series share this, so "the rest of the series"
    # can be removed at once; a single shift has none.
    series = models.UUIDField(null=True, blank=True, editable=False, db_index=True)

    class Meta:
        ordering = ["starts_at"]
        verbose_name = _("roster shift")
        verbose_name_plural = _("roster shifts")
        indexes = [models.Index(fields=["pool", "starts_at", "ends_at"], name="shift_window")]

    def __str__(self) -> str:
        return f"{self.user} {self.starts_at:%Y-%m-%d %H:%M}-{self.ends_at:%H:%M}"

    def clean(self) -> None:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": _("A shift ends after it starts.")})


class RoutingRule(models.Model):
    """ "CT chest from grassroots sites → the central hospital's thoracic pool".

    Rules are tried in `order`; blank criteria match anything. The first rule that matches
    names the pool; the alliance's fallback pool takes what no rule matches.
    """

    alliance = models.ForeignKey(Alliance, on_delete=models.CASCADE, related_name="rules")
    order = models.PositiveIntegerField(_("order"), default=100)
    name = models.CharField(_("name"), max_length=120)
    is_active = models.BooleanField(_("active"), default=True)
    source_institution = models.ForeignKey(
        Institution,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("from site"),
    )
    source_tier = models.CharField(_("from tier"), max_length=16, blank=True, choices=Tier.choices)
    modality = models.CharField(
        _("modality"), max_length=16, blank=True, help_text=_("e.g. CT; blank for any.")
    )
    body_part = models.CharField(
        _("body part"), max_length=64, blank=True, help_text=_("e.g. CHEST; blank for any.")
    )
    priority = models.CharField(
        _("priority"),
        max_length=8,
        blank=True,
        choices=[("stat", _("STAT")), ("urgent", _("Urgent")), ("routine", _("Routine"))],
    )
    kind = models.CharField(_("referral kind"), max_length=16, blank=True)
    # Local time of day (TIME_ZONE); a window may pass midnight (22:00-08:00).
    time_from = models.TimeField(_("from time of day"), null=True, blank=True)
    time_to = models.TimeField(_("to time of day"), null=True, blank=True)
    pool = models.ForeignKey(
        ReaderPool, on_delete=models.PROTECT, related_name="rules", verbose_name=_("to pool")
    )

    class Meta:
        ordering = ["alliance", "order", "pk"]
        verbose_name = _("routing rule")
        verbose_name_plural = _("routing rules")

    def __str__(self) -> str:
        return f"{self.order}: {self.name}"

    def clean(self) -> None:
        if (self.time_from is None) != (self.time_to is None):
            raise ValidationError(_("Give both ends of the time window, or neither."))
        if self.pool_id and self.alliance_id and self.pool.alliance_id != self.alliance_id:
            raise ValidationError({"pool": _("The pool belongs to another alliance.")})


# Commission analytics: the rollup tables live in alliance/analytics/models.py.
from .analytics.models import ReadingRollup, RefreshState, StudyRollup  # noqa: E402, F401
