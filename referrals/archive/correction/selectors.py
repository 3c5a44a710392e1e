"""Reads for the correction page: the study's series, and the studies it may be joined with.

The study itself was fetched by `study_for_correction` (the caller's own institution, a
role that may correct); these narrow from it and never widen past its institution.
"""

from __future__ import annotations

from django.db.models import QuerySet

from referrals.models import Series, Study

PICKER_SIZE = 100


def correction_series(*, study: Study) -> QuerySet[Series]:
    """The study's series that are not rejected, in their order."""
    return Series.objects.filter(study=study, rejected_at__isnull=True).order_by(
        "series_number", "pk"
    )


def correction_partners(*, study: Study) -> QuerySet[Study]:
    """Studies of the same institution to merge with or move into, newest first."""
    return (
        Study.objects.filter(institution_id=study.institution_id)
        .exclude(pk=study.pk)
        .order_by("-received_at")[:PICKER_SIZE]
    )


def study_still_exists(*, study: Study) -> bool:
    return Study.objects.filter(pk=study.pk).exists()
