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
        Institution, on_delete=models.PROTECT, related_name="led_alliances",
        verbose_name=_("lead hospital"),
    )
    commission = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="overseen_alliances",
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
