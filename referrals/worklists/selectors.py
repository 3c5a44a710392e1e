"""Reads of the reading side: a radiologist's worklists ("mine", "my pool") and one case.

Every query starts from `tenants.access.visible`, then narrows to the shape one of the
partial indexes on Referral serves (`referral_pool_queue`, `referral_reader_queue`,
`referral_assignee`), sorted by priority then deadline, the order those indexes hold.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from alliance.models import PoolMember
from referrals.models import Priority, Referral, ReferralStatus, ReferralStudy
from tenants import access
from tenants.access import Scope
from tenants.errors import ApplicationError

VIEWS = ("mine", "pool")
LIMIT_DEFAULT = 50
LIMIT_MAX = 200
# What a worklist row needs, and nothing more (the benchmark reads 1M studies).
ROW_FIELDS = (
    "id",
    "kind",
    "priority",
    "priority_rank",
    "status",
    "clinical_question",
    "requested_at",
    "deadline_at",
    "warn_at",
    "breached_at",
    "claimed_at",
    "opened_at",
    "unroutable",
    "source_id",
    "source__name",
    "source__name_en",
    "study_id",
    "study__modalities",
    "study__body_parts",
    "study__description",
    "study__study_date",
    "study__patient_name",
    "study__pid",
    "study__num_instances",
    "pool_id",
    "pool__name",
    "pool__name_en",
    "claimed_by_id",
    "claimed_by__name",
    "claimed_by__name_en",
    "claimed_by__username",
    "assigned_to_id",
)
_MODALITY = re.compile(r"^[A-Za-z0-9]{1,16}$")
# The pool worklist may be narrowed to any status a pool's case can have while open.
POOL_STATUSES = (ReferralStatus.ROUTED, ReferralStatus.CLAIMED, ReferralStatus.REPORTING)


class WorklistFilterError(ApplicationError, ValueError):
    """A filter the worklist cannot apply; the message says which and why."""

    default_code = "bad_filter"


@dataclass(frozen=True)
class WorklistFilters:
    view: str = "mine"
    modality: str = ""
    site: int | None = None
    priority: str = ""
    status: str = ""
    limit: int = LIMIT_DEFAULT

    @classmethod
    def parse(cls, params: Any) -> WorklistFilters:
        """Filters from query parameters; WorklistFilterError for a value that makes no sense."""
        view = (params.get("view") or "mine").strip()
        if view not in VIEWS:
            raise WorklistFilterError(_("The view is 'mine' or 'pool'."))
        modality = (params.get("modality") or "").strip().upper()
        if modality and not _MODALITY.match(modality):
            raise WorklistFilterError(_("Not a modality code."))
        site = _int_or_none(params.get("site"), _("The site is an institution id."))
        priority = (params.get("priority") or "").strip()
        if priority and priority not in Priority.values:
            raise WorklistFilterError(_("Unknown priority."))
        status = (params.get("status") or "").strip()
        if status and status not in POOL_STATUSES:
            raise WorklistFilterError(_("A worklist shows routed, claimed or reporting cases."))
        limit = _int_or_none(params.get("limit"), _("The limit is a number.")) or LIMIT_DEFAULT
        return cls(
            view=view,
            modality=modality,
            site=site,
            priority=priority,
            status=status,
            limit=max(1, min(limit, LIMIT_MAX)),
        )


def _int_or_none(raw: Any, message: Any) -> int | None:
    if raw in (None, ""):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise WorklistFilterError(message) from None
    if value < 0 or value > 2**62:
        raise WorklistFilterError(message)
    return value


def reader_pool_ids(scope: Scope) -> QuerySet[PoolMember, Any]:
    """The pools `scope.user` reads for at the active institution (a subquery of pool ids)."""
    if scope.user is None or scope.institution is None:
        return PoolMember.objects.none().values("pool_id")
    return PoolMember.objects.filter(
        user=scope.user,
        is_active=True,
        pool__is_active=True,
        pool__institution=scope.institution,
    ).values("pool_id")


def worklist(*, scope: Scope, filters: WorklistFilters) -> QuerySet[Referral]:
    """The cases of one worklist, most urgent first (priority, then deadline).

    "mine": cases the reader holds (claimed, reporting) and cases routing proposed to them.
    "pool": cases waiting in the reader's pools at the active institution (routed), or the
    status asked for.
    """
    cases = access.visible(scope, Referral)
    if scope.user is None or scope.institution is None:
        return cases.none()
    user = scope.user
    if filters.view == "mine":
        held = [ReferralStatus.CLAIMED, ReferralStatus.REPORTING]
        proposed = [ReferralStatus.ROUTED]
        if filters.status:
            held = [s for s in held if s == filters.status]
            proposed = [s for s in proposed if s == filters.status]
        mine = Q(pk__in=[])
        if held:
            mine |= Q(claimed_by=user, status__in=held)
        if proposed:
            mine |= Q(assigned_to=user, status__in=proposed)
        cases = cases.filter(mine, target=scope.institution)
    else:
        status = filters.status or ReferralStatus.ROUTED
        cases = cases.filter(pool_id__in=reader_pool_ids(scope), status=status)
    if filters.modality:
        cases = cases.filter(study__modalities__contains=filters.modality)
    if filters.site is not None:
        cases = cases.filter(source_id=filters.site)
    if filters.priority:
        cases = cases.filter(priority=filters.priority)
    return (
        cases.select_related("source", "study", "pool", "claimed_by")
        .only(*ROW_FIELDS)
        .order_by("priority_rank", "deadline_at", "pk")[: filters.limit]
    )


def seconds_left(deadline_at: dt.datetime, now: dt.datetime) -> int:
    return int((deadline_at - now).total_seconds())


def band_of(
    deadline_at: dt.datetime,
    warn_at: dt.datetime,
    breached_at: dt.datetime | None,
    now: dt.datetime,
) -> str:
    """The colour of a row: ok, warning (past the warn point), breached (past the deadline)."""
    if breached_at is not None or deadline_at <= now:
        return "breached"
    if warn_at <= now:
        return "warning"
    return "ok"


def time_left_seconds(referral: Referral, now: dt.datetime) -> int:
    return seconds_left(referral.deadline_at, now)


def time_band(referral: Referral, now: dt.datetime) -> str:
    return band_of(referral.deadline_at, referral.warn_at, referral.breached_at, now)


def worklist_sites(*, scope: Scope) -> list[tuple[int, str]]:
    """The sites whose cases reach the reader's institution (for the site filter)."""
    from tenants.models import Institution

    if scope.institution is None:
        return []
    ids = (
        access.visible(scope, Referral)
        .filter(target=scope.institution, status__in=POOL_STATUSES)
        .values("source_id")
    )
    return [(i.pk, i.display_name) for i in Institution.objects.filter(pk__in=ids).order_by("code")]


def case_for_reader(*, scope: Scope, pk: Any) -> Referral:
    """One referral the caller may see, with what the case page shows; Http404 otherwise."""
    return access.get_visible_or_404(
        scope,
        Referral.objects.select_related(
            "study",
            "study__patient",
            "source",
            "target",
            "pool",
            "claimed_by",
            "assigned_to",
            "requested_by",
            "rule",
        ),
        pk=pk,
    )


def case_studies(*, scope: Scope, referral: Referral) -> tuple[list[Any], list[Any]]:
    """(referred studies, prior studies) the caller may open, each from any alliance site.

    A prior is listed only while a grant (or ownership) lets the caller see it: a revoked
    grant takes it off the page as it takes it out of the viewer.
    """
    from referrals.models import Study

    items = list(
        ReferralStudy.objects.filter(referral=referral).values_list("study_id", "is_prior")
    )
    seen = {
        s.pk: s
        for s in access.visible(scope, Study)
        .filter(pk__in=[sid for sid, _prior in items])
        .select_related("institution")
    }
    referred = [seen[sid] for sid, prior in items if not prior and sid in seen]
    priors = sorted(
        (seen[sid] for sid, prior in items if prior and sid in seen),
        key=lambda s: (s.study_date or dt.date.min, s.pk),
        reverse=True,
    )
    return referred, priors


def now() -> dt.datetime:
    return timezone.now()
