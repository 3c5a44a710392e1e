"""Reads of the imaging index (studies, series, instances), always through tenants.access."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Replace
from django.http import Http404

from referrals.archive.ingest import name_search_form
from referrals.models import Instance, Series, Study
from tenants import access
from tenants.access import Scope


def study_list(*, scope: Scope) -> QuerySet[Study]:
    """The studies `scope` may see, newest first (the order of the `study_site_date` index)."""
    return access.visible(scope, Study).order_by("-study_date", "-id")


def study_search(*, scope: Scope, query: str) -> QuerySet[Study]:
    """The caller's studies, newest first, optionally matching a name, patient ID or accession."""
    studies = access.visible(scope, Study)
    if query:
        # "王小明", "wang xiaoming" and "Wang^Xiaoming" all find Wang^Xiaoming=王^小明.
        plain = name_search_form(query).replace("^", "").replace(" ", "")
        studies = studies.annotate(
            name_plain=Replace(
                Replace("patient_name_search", Value("^"), Value("")), Value(" "), Value("")
            )
        )
        studies = studies.filter(
            Q(name_plain__contains=plain)
            | Q(pid__istartswith=query)
            | Q(accession_number__istartswith=query)
        )
    return studies.order_by(F("study_date").desc(nulls_last=True), "-id")


def series_list(*, scope: Scope, study_uid: str | None = None) -> QuerySet[Series]:
    """The series `scope` may see, optionally of one study."""
    qs = access.visible(scope, Series)
    if study_uid is not None:
        return qs.filter(study__study_uid=study_uid).order_by("study_id", "series_number", "id")
    return qs.order_by("-id")


def instance_list(
    *,
    scope: Scope,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> QuerySet[Instance]:
    """The instances `scope` may see, narrowed by whichever UIDs are given."""
    qs = access.visible(scope, Instance)
    if study_uid is not None:
        qs = qs.filter(study__study_uid=study_uid)
    if series_uid is not None:
        qs = qs.filter(series__series_uid=series_uid)
    if sop_uid is not None:
        qs = qs.filter(sop_uid=sop_uid)
    if study_uid is None and series_uid is None:
        return qs.order_by("-id")
    return qs.order_by("series_id", "instance_number", "id")


class InstancesRejectedError(Exception):
    """What a retrieve names was rejected (IHE IOCM): answered 410 Gone, with why."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def rejected_check(
    *,
    scope: Scope,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> None:
    """Raise InstancesRejectedError when the request names rejected instances of a study the
    caller may see (and nothing else): a rejection is told apart from "never existed"."""
    studies = access.visible(scope, Study).filter(study_uid=study_uid).values("pk")
    rejected = Instance.objects.filter(study__in=studies, rejected_at__isnull=False)
    if series_uid is not None:
        rejected = rejected.filter(series__series_uid=series_uid)
    if sop_uid is not None:
        rejected = rejected.filter(sop_uid=sop_uid)
    code = rejected.values_list("rejection_code", flat=True).first()
    if code is not None:
        raise InstancesRejectedError(code)


def instances_to_retrieve(
    *,
    scope: Scope,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[Instance]:
    """The instances a WADO-RS request names, each SOP Instance once; Http404 when none.

    Two institutions may each hold a copy of one study; a caller granted both sees one
    instance per SOP Instance UID (the first stored), never two copies of an image.
    """
    rows = (
        instance_list(scope=scope, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
        .select_related("series", "study")
        .defer("metadata")
    )
    seen: set[str] = set()
    found: list[Instance] = []
    for instance in rows:
        if instance.sop_uid not in seen:
            seen.add(instance.sop_uid)
            found.append(instance)
    if not found:
        rejected_check(scope=scope, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
        raise Http404
    return found
