"""Rollup tables: the operational figures summed per period, alliance, site and dimension.

Rows never name a patient, a study or an accession number: only institutions, tiers,
modalities, priorities and counts. Each table holds two grains, `day` (the unit the refresh
recomputes) and `month` (summed from the day rows, so a year is read from twelve periods).
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .buckets import BUCKET_FIELDS


class Grain(models.TextChoices):
    DAY = "day", _("Day")
    MONTH = "month", _("Month")


def _count() -> models.PositiveIntegerField:
    return models.PositiveIntegerField(default=0)


def _place(to: str, **kwargs: object) -> models.ForeignKey:
    """A rollup's institution or alliance. No database constraint: the rows are derived
    (written by joins against existing rows, deleted with them by Django's cascade), and
    deferred constraint checks on hundreds of thousands of rows made each full refresh's
    commit take minutes."""
    return models.ForeignKey(
        to,
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        **kwargs,  # type: ignore[arg-type]
    )


class ReadingRollup(models.Model):
    """Referrals requested in a period, by requesting site and reading institution.

    Turnaround (request to signed report), breaches and escalations, returns for quality,
    second reads and critical findings are counted on the period the referral was requested.
    """

    grain = models.CharField(max_length=5, choices=Grain.choices)
    period = models.DateField()
    alliance = _place("alliance.Alliance")
    site = _place("tenants.Institution")
    site_tier = models.CharField(max_length=16)
    site_region = models.CharField(max_length=6)
    modality = models.CharField(max_length=16)
    priority = models.CharField(max_length=8)
    kind = models.CharField(max_length=16)
    reader = _place("tenants.Institution", null=True)
    reader_tier = models.CharField(max_length=16, blank=True)
    return_reason = models.CharField(max_length=32, blank=True)

    referrals = _count()
    reported = _count()
    tat_seconds = models.BigIntegerField(default=0)
    breached = _count()
    escalations = _count()
    returned = _count()
    cancelled = _count()
    second_reads = _count()
    second_read_minor = _count()
    second_read_major = _count()
    critical = _count()
    critical_acked = _count()
    critical_ack_seconds = models.BigIntegerField(default=0)
    critical_in_time = _count()
    critical_escalated = _count()
    priors_shared = _count()

    class Meta:
        verbose_name = _("reading rollup")
        verbose_name_plural = _("reading rollups")
        indexes = [
            models.Index(fields=["grain", "alliance", "period"], name="analytics_reading_period")
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.period} site {self.site_id} → {self.reader_id}"


# The turnaround histogram: one count column per bucket (see buckets.py), so a grouped
# query sums them in the database.
for _field in BUCKET_FIELDS:
    ReadingRollup.add_to_class(_field, models.PositiveIntegerField(default=0))


class StudyRollup(models.Model):
    """Studies made at a site in a period (study date), by modality: volumes, the share sent
    for a remote read, scanner load and repeat examinations."""

    grain = models.CharField(max_length=5, choices=Grain.choices)
    period = models.DateField()
    alliance = _place("alliance.Alliance")
    site = _place("tenants.Institution")
    site_tier = models.CharField(max_length=16)
    site_region = models.CharField(max_length=6)
    modality = models.CharField(max_length=16)

    studies = _count()
    remote_read = _count()
    repeats = _count()
    repeats_cross_site = _count()

    class Meta:
        verbose_name = _("study rollup")
        verbose_name_plural = _("study rollups")
        indexes = [
            models.Index(fields=["grain", "alliance", "period"], name="analytics_study_period")
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.period} site {self.site_id} {self.modality}"


class RefreshState(models.Model):
    """How far the rollups are: the watermark the next incremental refresh starts from."""

    name = models.CharField(max_length=40, unique=True)
    watermark = models.DateTimeField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # The last refresh that recomputed any day: cached figures are keyed on it.
    changed_at = models.DateTimeField(null=True, blank=True)
    full_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(default=0)
    days = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("analytics refresh state")
        verbose_name_plural = _("analytics refresh states")

    def __str__(self) -> str:
        return f"{self.name} @ {self.refreshed_at}"
