"""Reads for the correction page: the study's series, and the studies it may be joined with.

The study itself was fetched by `study_for_correction` (the caller's own institution, a
role that may correct); these narrow from it and never widen past its institution.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Replace

from referrals.archive.ingest import name_search_form
from referrals.models import Series, Study
from tenants.access import Scope
from tenants.roles import CORRECTION_ROLES

PICKER_SIZE = 100
# The finder's index columns: enough to pick the right study, nothing of its images or reports.
FINDER_COLUMNS = (
    "pk",
    "study_uid",
    "pid",
    "patient_name",
    "study_date",
    "accession_number",
    "modalities",
    "description",
    "num_instances",
)


def correctable_studies(
    *, scope: Scope, query: str = "", day: dt.date | None = None
) -> QuerySet[Study, dict[str, Any]]:
    """The studies an administrator may correct: their own institution's, found by patient
    ID, name or accession number and study date; index columns only, newest first.

    The access layer's rule for studies is the image-reading one (an administrator reads no
    images); this is the correctors' own narrower view of the same rows, scoped here to the
    caller's institution and role as `study_for_correction` is.
    """
    if scope.institution is None or not scope.has_any_role(*CORRECTION_ROLES):
        return Study.objects.none().values(*FINDER_COLUMNS)
    studies = Study.objects.filter(institution=scope.institution)
    if query:
        # As on the study list: "王小明", "wang xiaoming" and "Wang^Xiaoming" find one name.
        plain = name_search_form(query).replace("^", "").replace(" ", "")
        studies = studies.annotate(
            name_plain=Replace(
                Replace("patient_name_search", Value("^"), Value("")), Value(" "), Value("")
            )
        ).filter(
            Q(name_plain__contains=plain)
            | Q(pid__istartswith=query)
            | Q(accession_number__istartswith=query)
        )
    if day is not None:
        studies = studies.filter(study_date=day)
    return studies.order_by(F("study_date").desc(nulls_last=True), "-id").values(*FINDER_COLUMNS)


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


def study_emptied_by(*, study: Study, series_uids: list[str]) -> bool:
    """Whether moving these series out leaves the study without a series (it is removed)."""
    return not correction_series(study=study).exclude(series_uid__in=series_uids).exists()
