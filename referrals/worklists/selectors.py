"""Reads of the reading side: a radiologist's worklists ("mine", "my pool") and one case.

Every query starts from `tenants.access.visible`, then narrows to the shape one of the
partial indexes on Referral serves (`referral_pool_queue`, `referral_reader_queue`,
`referral_assignee`). The default order, priority then deadline, is the order those indexes
hold, so the default views read only the rows they show. Another sort (a column header of
the page, `?sort=` of the API) is a whitelisted key: PostgreSQL then sorts every case of
the view that passes the filters (a top-N sort, no index for it). "Signed by me" starts from
the reader's own signing events. The prior count is read afterwards, for the rows shown.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, Count, F, OrderBy, Q, QuerySet, Value, When
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce, NullIf, Replace
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from alliance.models import PoolMember
from referrals.models import (
    Priority,
    Referral,
    ReferralEvent,
    ReferralStatus,
    ReferralStudy,
    Study,
)
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
    "study__patient_key",
    "study__num_instances",
    "study__patient_id",
    "study__patient__birth_date",
    "study__patient__sex",
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
_BODY_PART = re.compile(r"^[A-Za-z0-9 _-]{1,64}$")
PATIENT_SEARCH_MAX = 64
# The pool worklist may be narrowed to any status a pool's case can have while open.
POOL_STATUSES = (ReferralStatus.ROUTED, ReferralStatus.CLAIMED, ReferralStatus.REPORTING)
# A case whose final report is signed: what "signed by me" lists.
SIGNED_STATUSES = (ReferralStatus.REPORTED, ReferralStatus.DELIVERED, ReferralStatus.ACKNOWLEDGED)
# The referral step a final signature records, with the signer as its actor.
SIGNED_ACTION = "report"
_STATUS_ORDER = (*POOL_STATUSES, *SIGNED_STATUSES)
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("", "0", "false", "off", "no")

# The columns a worklist sorts by; the prior count is not one (it is read for the rows shown).
SORT_KEYS = (
    "received",
    "patient",
    "age",
    "modality",
    "body_part",
    "description",
    "source",
    "priority",
    "deadline",
    "status",
    "claimed_by",
)
DEFAULT_SORT = "priority"  # priority, then deadline: the order of the partial indexes
SIGNED_DEFAULT_SORT = "-received"  # what one signed lately comes first


class WorklistFilterError(ApplicationError, ValueError):
    """A filter the worklist cannot apply; the message says which and why."""

    default_code = "bad_filter"


@dataclass(frozen=True)
class WorklistFilters:
    view: str = "mine"
    modality: str = ""
    body_part: str = ""
    site: int | None = None
    priority: str = ""
    status: str = ""
    patient: str = ""
    received_from: dt.date | None = None
    received_to: dt.date | None = None
    claimed_by_me: bool = False
    signed_by_me: bool = False
    sort: str = DEFAULT_SORT
    limit: int = LIMIT_DEFAULT
    # The parameters as given (valid ones only), to rebuild links that keep them.
    params: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, params: Any) -> WorklistFilters:
        """Filters from query parameters; WorklistFilterError for a value that makes no sense."""
        view = (params.get("view") or "mine").strip()
        if view not in VIEWS:
            raise WorklistFilterError(_("The view is 'mine' or 'pool'."))
        modality = (params.get("modality") or "").strip().upper()
        if modality and not _MODALITY.match(modality):
            raise WorklistFilterError(_("Not a modality code."))
        body_part = (params.get("body_part") or "").strip().upper()
        if body_part and not _BODY_PART.match(body_part):
            raise WorklistFilterError(_("Not a body part code."))
        site = _int_or_none(params.get("site"), _("The site is an institution id."))
        priority = (params.get("priority") or "").strip()
        if priority and priority not in Priority.values:
            raise WorklistFilterError(_("Unknown priority."))
        signed_by_me = _flag(params.get("signed_by_me"))
        claimed_by_me = _flag(params.get("claimed_by_me"))
        status = (params.get("status") or "").strip()
        if status and signed_by_me and status not in SIGNED_STATUSES:
            raise WorklistFilterError(_("A signed case is reported, delivered or acknowledged."))
        if status and not signed_by_me and status not in POOL_STATUSES:
            raise WorklistFilterError(_("A worklist shows routed, claimed or reporting cases."))
        patient = " ".join((params.get("patient") or "").split())
        if len(patient) > PATIENT_SEARCH_MAX:
            raise WorklistFilterError(_("The patient search is too long."))
        received_from = _date_or_none(params.get("received_from"))
        received_to = _date_or_none(params.get("received_to"))
        if received_from and received_to and received_from > received_to:
            raise WorklistFilterError(_("The first day comes after the last."))
        sort = (params.get("sort") or "").strip() or (
            SIGNED_DEFAULT_SORT if signed_by_me else DEFAULT_SORT
        )
        if sort.removeprefix("-") not in SORT_KEYS:
            raise WorklistFilterError(_("The worklist cannot be sorted that way."))
        limit = _int_or_none(params.get("limit"), _("The limit is a number.")) or LIMIT_DEFAULT
        kept = tuple(
            (name, str(params.get(name)).strip())
            for name in PARAMETERS
            if str(params.get(name) or "").strip()
        )
        return cls(
            view=view,
            modality=modality,
            body_part=body_part,
            site=site,
            priority=priority,
            status=status,
            patient=patient,
            received_from=received_from,
            received_to=received_to,
            claimed_by_me=claimed_by_me,
            signed_by_me=signed_by_me,
            sort=sort,
            limit=max(1, min(limit, LIMIT_MAX)),
            params=kept,
        )

    @property
    def narrowed(self) -> bool:
        """Whether a filter leaves cases out (the page then says that nothing *matches*)."""
        return bool(
            self.modality
            or self.body_part
            or self.site is not None
            or self.priority
            or self.status
            or self.patient
            or self.received_from
            or self.received_to
            or self.claimed_by_me
            or self.signed_by_me
        )

    @property
    def sort_key(self) -> str:
        return self.sort.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")


# Every parameter a worklist reads (the page keeps them in its links).
PARAMETERS = (
    "view",
    "modality",
    "body_part",
    "site",
    "priority",
    "status",
    "patient",
    "received_from",
    "received_to",
    "claimed_by_me",
    "signed_by_me",
    "sort",
    "limit",
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


def _flag(raw: Any) -> bool:
    value = str(raw or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise WorklistFilterError(_("A yes/no filter is 1 or 0."))


def _date_or_none(raw: Any) -> dt.date | None:
    value = str(raw or "").strip()
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise WorklistFilterError(_("A day is written YYYY-MM-DD.")) from None
    if day.year < 1900:
        raise WorklistFilterError(_("A day is written YYYY-MM-DD."))
    return day


def _day_start(day: dt.date) -> dt.datetime:
    """Midnight of `day` in the hub's time zone (the day a reader means)."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


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
    """The cases of one worklist, sorted as `filters.sort` says (most urgent first).

    "mine": cases the reader holds (claimed, reporting) and cases routing proposed to them.
    "pool": cases waiting in the reader's pools at the active institution (routed), or the
    status asked for. "claimed by me" keeps the cases the reader holds; "signed by me"
    lists, whatever the view, the cases whose final report the reader signed here.
    """
    cases = access.visible(scope, Referral)
    if scope.user is None or scope.institution is None:
        return cases.none()
    user = scope.user
    if filters.signed_by_me:
        signed = ReferralEvent.objects.filter(action=SIGNED_ACTION, actor=user)
        cases = cases.filter(
            target=scope.institution,
            status__in=[filters.status] if filters.status else SIGNED_STATUSES,
            pk__in=signed.values("referral_id"),
        )
        if filters.claimed_by_me:
            cases = cases.filter(claimed_by=user)
    elif filters.view == "mine":
        held = [ReferralStatus.CLAIMED, ReferralStatus.REPORTING]
        proposed = [] if filters.claimed_by_me else [ReferralStatus.ROUTED]
        if filters.status:
            held = [s for s in held if s == filters.status]
            proposed = [s for s in proposed if s == filters.status]
        mine = Q(pk__in=[])
        if held:
            mine |= Q(claimed_by=user, status__in=held)
        if proposed:
            mine |= Q(assigned_to=user, status__in=proposed)
        cases = cases.filter(mine, target=scope.institution)
    elif filters.claimed_by_me:
        holding: list[str] = (
            [filters.status]
            if filters.status
            else [ReferralStatus.CLAIMED, ReferralStatus.REPORTING]
        )
        cases = cases.filter(
            pool_id__in=reader_pool_ids(scope), status__in=holding, claimed_by=user
        )
    else:
        status = filters.status or ReferralStatus.ROUTED
        cases = cases.filter(pool_id__in=reader_pool_ids(scope), status=status)
    if filters.modality:
        cases = cases.filter(study__modalities__contains=filters.modality)
    if filters.body_part:
        cases = cases.filter(study__body_parts__contains=filters.body_part)
    if filters.site is not None:
        cases = cases.filter(source_id=filters.site)
    if filters.priority:
        cases = cases.filter(priority=filters.priority)
    if filters.received_from:
        cases = cases.filter(requested_at__gte=_day_start(filters.received_from))
    if filters.received_to:
        next_day = filters.received_to + dt.timedelta(days=1)
        cases = cases.filter(requested_at__lt=_day_start(next_day))
    if filters.patient:
        cases = _patient_matching(cases, filters.patient)
    return (
        cases.select_related("source", "study", "study__patient", "pool", "claimed_by")
        .only(*ROW_FIELDS)
        .order_by(*worklist_ordering(filters.sort))[: filters.limit]
    )


def _patient_matching(cases: QuerySet[Referral], query: str) -> QuerySet[Referral]:
    """Cases whose patient name or patient ID holds `query`, case-insensitively.

    "王小明", "wang xiaoming" and "Wang^Xiaoming" all find Wang^Xiaoming=王^小明 (the name's
    separators are left out on both sides). The text is a literal: Django escapes `%`, `_`
    and `\\` in a `contains` lookup, so no one searches with SQL wildcards.
    """
    plain = query.replace("^", "").replace(" ", "")
    cases = cases.alias(
        patient_plain=Replace(
            Replace("study__patient_name", Value("^"), Value("")), Value(" "), Value("")
        )
    )
    by_name = Q(patient_plain__icontains=plain) if plain else Q(pk__in=[])
    return cases.filter(by_name | Q(study__pid__icontains=query))


def _named(prefix: str) -> Combinable:
    """A person's or a site's name as the page shows it (English pages: the English name)."""
    if (get_language() or "").startswith("en"):
        return Coalesce(NullIf(F(f"{prefix}__name_en"), Value("")), F(f"{prefix}__name"))
    return F(f"{prefix}__name")


def _sort_expression(key: str) -> Any:
    if key == "received":
        return F("requested_at")
    if key == "patient":
        return F("study__patient_name")
    if key == "age":
        return F("study__study_date") - F("study__patient__birth_date")
    if key == "modality":
        return F("study__modalities")
    if key == "body_part":
        return F("study__body_parts")
    if key == "description":
        return F("study__description")
    if key == "source":
        return _named("source")
    if key == "deadline":
        return F("deadline_at")
    if key == "status":
        return Case(
            *(When(status=s, then=Value(i)) for i, s in enumerate(_STATUS_ORDER)),
            default=Value(len(_STATUS_ORDER)),
        )
    if key == "claimed_by":
        return _named("claimed_by")
    raise WorklistFilterError(_("The worklist cannot be sorted that way."))


def worklist_ordering(sort: str) -> list[Any]:
    """ORDER BY of a worklist sorted by `sort` ("key" or "-key"); empty values go last and
    ties fall back to the most urgent first (priority, deadline, then the oldest case)."""
    key = sort.removeprefix("-")
    if key not in SORT_KEYS:
        raise WorklistFilterError(_("The worklist cannot be sorted that way."))
    descending = sort.startswith("-")
    then: list[Any] = ["priority_rank", "deadline_at", "pk"]
    if key == "priority":
        first = F("priority_rank")
        then = then[1:]
    else:
        first = _sort_expression(key)
        if key == "deadline":
            then = ["priority_rank", "pk"]
    ordered: OrderBy = first.desc(nulls_last=True) if descending else first.asc(nulls_last=True)
    return [ordered, *then]


def worklist_prior_counts(*, scope: Scope, cases: Iterable[Referral]) -> dict[int, int]:
    """Per referral id: how many earlier studies of its patient the reader may open.

    One grouped query for the whole page: the visible studies of the rows' patients (the
    alliance's patient key), counted per patient and study date; a study is a prior of a
    row when it was taken before the row's study (a study without a date has none).
    """
    wanted = {
        r.pk: (r.study.patient_key, r.study.study_date)
        for r in cases
        if r.study.patient_key and r.study.study_date is not None
    }
    if not wanted:
        return {}
    counted = (
        access.visible(scope, Study)
        .filter(patient_key__in={key for key, _day in wanted.values()}, study_date__isnull=False)
        .values("patient_key", "study_date")
        .annotate(studies=Count("pk"))
        .order_by()
    )
    days: dict[str, list[tuple[Any, int]]] = defaultdict(list)
    for row in counted:
        days[row["patient_key"]].append((row["study_date"], row["studies"]))
    return {
        pk: sum(n for taken, n in days[key] if taken < study_date)
        for pk, (key, study_date) in wanted.items()
    }


def patient_age(birth_date: dt.date | None, on: dt.date | None) -> tuple[int, str] | None:
    """The patient's age on the study day as (number, unit): years, or months under two,
    or days under a month. None without both days or with a birth after the study."""
    if birth_date is None or on is None or birth_date > on:
        return None
    years = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    if years >= 2:
        return years, "years"
    months = (on.year - birth_date.year) * 12 + on.month - birth_date.month
    if on.day < birth_date.day:
        months -= 1
    if months >= 1:
        return months, "months"
    return (on - birth_date).days, "days"


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
