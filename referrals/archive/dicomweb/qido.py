"""QIDO-RS (PS3.18 10.6): search studies, series and instances of the imaging index.

Matching follows PS3.4 C.2.2.2 as PS3.18 8.3.4 profiles it: single value, universal
(empty or "*"), wildcard ("*" and "?"), UID list ("a,b" or the key repeated) and range
(dates and times). Searches read the indexed columns of Study / Series / Instance, never the
stored files; instance attributes the index does not hold come from Instance.metadata.
Every request is audited, and no answer is larger than HUB_QIDO_MAX_RESULTS.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from django.conf import settings
from django.db.models import F, Func, Min, OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.functions import Upper
from django.db.models.lookups import Lookup
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from referrals.archive import selectors
from referrals.archive.dicomweb.base import dicom_json_response, element
from referrals.archive.dicomweb.retrieve import accepts_json, metadata_with_urls
from referrals.models import Instance, Series, Study
from tenants import access
from tenants.access import Scope
from tenants.audit import AuditCode, audit_record

STUDY, SERIES, INSTANCE = "study", "series", "instance"
CONTROL_KEYS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})
UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
TIME_RE = re.compile(r"([01][0-9]|2[0-3])(([0-5][0-9])(([0-5][0-9])(\.[0-9]{1,6})?)?)?")
TAG_RE = re.compile(r"[0-9A-Fa-f]{8}")
MAX_VALUE_LENGTH = 4096
MAX_OFFSET = 2**31 - 1
UTF8 = "ISO_IR 192"
ONLINE = "ONLINE"
MORE_RESULTS_WARNING = (
    '299 hub "The number of results exceeded the maximum supported by the server. '
    'Additional results can be requested."'
)


class QueryError(ValueError):
    """The query cannot be answered as asked; the message says why (a 400)."""


# --- Matching ------------------------------------------------------------------------------


class Like(Lookup):
    """SQL LIKE with backslash as the escape character (the patterns come from _like)."""

    lookup_name = "dicom_like"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} LIKE {rhs} ESCAPE '\\'", (*lhs_params, *rhs_params)


class MetadataValue(Func):
    """The first value of one top-level attribute of Instance.metadata, read in the database.

    Django's own JSON key transforms take an all-digit key such as "00280100" for an array
    index, so the path is written out for each database the hub runs on.
    """

    output_field = TextField()

    def __init__(self, tag: str) -> None:
        super().__init__(F("metadata"))
        self.tag = tag

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        lhs, params = compiler.compile(self.source_expressions[0])
        return f"({lhs} -> %s -> 'Value' ->> 0)", (*params, self.tag)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        lhs, params = compiler.compile(self.source_expressions[0])
        return f"json_extract({lhs}, %s)", (*params, f'$."{self.tag}".Value[0]')


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _split_list(values: Iterable[str]) -> list[str]:
    """List matching: "a,b", "a\\b" and a repeated key all mean "a or b"."""
    return [part.strip() for value in values for part in re.split(r"[,\\]", value) if part.strip()]


def _universal(values: list[str]) -> bool:
    return all(v.strip() in ("", "*") for v in values)


def _match_uid(field: str, keyword: str, values: list[str]) -> Q:
    uids = _split_list(values)
    for uid in uids:
        if len(uid) > 64 or not UID_RE.fullmatch(uid):
            raise QueryError(
                _("%(key)s: %(value)s is not a valid UID.") % {"key": keyword, "value": uid[:80]}
            )
    return Q(**{f"{field}__in": uids}) if uids else Q()


def _single(keyword: str, values: list[str]) -> str:
    if len(values) != 1:
        raise QueryError(_("%(key)s may be given only once.") % {"key": keyword})
    return values[0].strip()


def _parse_date(keyword: str, text: str) -> dt.date:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise QueryError(
            _("%(key)s: %(value)s is not a date; use YYYYMMDD or a range YYYYMMDD-YYYYMMDD.")
            % {"key": keyword, "value": text[:40]}
        ) from None


def _match_date(field: str, keyword: str, values: list[str]) -> Q:
    value = _single(keyword, values)
    if value in ("", "*"):
        return Q()
    if "-" not in value:
        return Q(**{field: _parse_date(keyword, value)})
    low_text, _sep, high_text = value.partition("-")
    if not low_text and not high_text:
        raise QueryError(_("%(key)s: a range needs at least one end.") % {"key": keyword})
    q = Q()
    low = _parse_date(keyword, low_text) if low_text else None
    high = _parse_date(keyword, high_text) if high_text else None
    if low and high and low > high:
        raise QueryError(_("%(key)s: the range ends before it starts.") % {"key": keyword})
    if low:
        q &= Q(**{f"{field}__gte": low})
    if high:
        q &= Q(**{f"{field}__lte": high})
    return q


def _time_bounds(keyword: str, text: str) -> tuple[str, str]:
    if not TIME_RE.fullmatch(text):
        raise QueryError(
            _("%(key)s: %(value)s is not a time; use HHMMSS or a range.")
            % {"key": keyword, "value": text[:40]}
        )
    # Stored times are HHMMSS[.FFFFFF] strings, so "0930" spans 093000 to 0930 59.999999.
    digits = text.split(".")[0]
    low = text if "." in text else digits.ljust(6, "0")
    high = text if "." in text else digits + "9" * (6 - len(digits)) + ".999999"
    return low, high


def _match_time(field: str, keyword: str, values: list[str]) -> Q:
    value = _single(keyword, values)
    if value in ("", "*"):
        return Q()
    if "-" not in value:
        low, high = _time_bounds(keyword, value)
        return Q(**{f"{field}__gte": low, f"{field}__lte": high})
    low_text, _sep, high_text = value.partition("-")
    q = Q()
    if low_text:
        q &= Q(**{f"{field}__gte": _time_bounds(keyword, low_text)[0]})
    if high_text:
        q &= Q(**{f"{field}__lte": _time_bounds(keyword, high_text)[1]})
    return q


def _match_int(field: str, keyword: str, values: list[str]) -> Q:
    value = _single(keyword, values)
    if value in ("", "*"):
        return Q()
    try:
        number = int(value)
    except ValueError:
        raise QueryError(
            _("%(key)s: %(value)s is not an integer.") % {"key": keyword, "value": value[:40]}
        ) from None
    if not -(2**31) <= number < 2**31:
        raise QueryError(
            _("%(key)s: %(value)s is out of range.") % {"key": keyword, "value": value[:40]}
        )
    return Q(**{field: number})


def _text_matcher(*, fold_case: bool) -> Callable[[str, str, list[str]], Q]:
    """Single value or wildcard; repeated keys are alternatives."""

    def match(field: str, keyword: str, values: list[str]) -> Q:
        if _universal(values):
            return Q()
        q = Q()
        for raw in values:
            value = raw.strip().upper() if fold_case else raw.strip()
            if fold_case:
                q |= Q(Like(Upper(F(field)), _like(value)))
            elif _has_wildcard(value):
                q |= Q(Like(F(field), _like(value)))
            else:
                q |= Q(**{field: value})
        return q

    return match


def _code_matcher(field: str, keyword: str, values: list[str]) -> Q:
    """Code strings (Modality, PatientSex): upper case, a list means any of them."""
    if _universal(values):
        return Q()
    codes = [c.upper() for c in _split_list(values)]
    exact = [c for c in codes if not _has_wildcard(c)]
    q = Q(**{f"{field}__in": exact}) if exact else Q(pk__in=[])
    for code in codes:
        if _has_wildcard(code):
            q |= Q(Like(F(field), _like(code)))
    return q


def _match_modalities(field: str, keyword: str, values: list[str]) -> Q:
    """ModalitiesInStudy: the study holds any of the asked modalities ("CT\\SR" stored)."""
    if _universal(values):
        return Q()
    q = Q(pk__in=[])
    for code in (c.upper() for c in _split_list(values)):
        if _has_wildcard(code):
            raise QueryError(_("%(key)s takes modality codes, not wildcards.") % {"key": keyword})
        q |= (
            Q(**{field: code})
            | Q(**{f"{field}__startswith": code + "\\"})
            | Q(**{f"{field}__endswith": "\\" + code})
            | Q(**{f"{field}__contains": "\\" + code + "\\"})
        )
    return q


def _pn_patterns(value: str) -> list[str]:
    """LIKE patterns matching a person name against the whole value or any component group.

    "Wang^Xiaoming=王^小明" holds an alphabetic and an ideographic group; a query for
    "王^小明" or "王*" must find it. A query in plain ASCII only needs the alphabetic group,
    which keeps it a prefix match the index can serve.
    """
    pattern = _like(value.upper())
    patterns = [pattern]
    if not value.endswith("*"):
        patterns.append(pattern + "=%")  # the alphabetic group of a multi-group name
    if not value.isascii() and not value.startswith("*"):
        patterns.append("%=" + pattern)  # the last group
        if not value.endswith("*"):
            patterns.append("%=" + pattern + "=%")  # a middle group
    return patterns


def _pn_matcher(*, folded_column: bool) -> Callable[[str, str, list[str]], Q]:
    """Person names, case-insensitively; `folded_column` says the column is upper case."""

    def match(field: str, keyword: str, values: list[str]) -> Q:
        if _universal(values):
            return Q()
        column = F(field) if folded_column else Upper(F(field))
        q = Q(pk__in=[])
        for raw in values:
            value = raw.strip()
            for index, pattern in enumerate(_pn_patterns(value)):
                if index == 0 and folded_column and not _has_wildcard(value):
                    q |= Q(**{field: value.upper()})  # equality: any index serves it
                else:
                    q |= Q(Like(column, pattern))
        return q

    return match


# --- Attributes ----------------------------------------------------------------------------

Getter = Callable[[Any], list[Any]]


@dataclass(frozen=True)
class Attribute:
    """One attribute the index can match on and/or return, at one level of the hierarchy."""

    keyword: str
    level: str
    field: str  # model field path from that level's model; "" when not matchable
    match: Callable[[str, str, list[str]], Q] | None
    value: Getter
    # Looked up once: the dictionary is slow enough to dominate a 1,000-row answer.
    tag: str = dataclass_field(init=False)
    vr: str = dataclass_field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", f"{tag_for_keyword(self.keyword):08X}")
        object.__setattr__(self, "vr", dictionary_VR(self.keyword))


def _pn(text: str) -> list[Any]:
    if not text:
        return []
    groups = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), text.split("="), strict=False))
    return [{k: v for k, v in groups.items() if v}]


def _values(text: str) -> list[str]:
    return [v for v in text.split("\\") if v]


def _date(value: dt.date | None) -> list[str]:
    return [value.strftime("%Y%m%d")] if value else []


def _one(value: Any) -> list[Any]:
    return [] if value in (None, "") else [value]


def _int_or_none(value: Any) -> list[int]:
    try:
        return [int(value)] if value not in (None, "") else []
    except (TypeError, ValueError):
        return []


STUDY_ATTRIBUTES = [
    Attribute("StudyDate", STUDY, "study_date", _match_date, lambda s: _date(s.study_date)),
    Attribute("StudyTime", STUDY, "study_time", _match_time, lambda s: _one(s.study_time)),
    Attribute(
        "AccessionNumber",
        STUDY,
        "accession_number",
        _text_matcher(fold_case=False),
        lambda s: _one(s.accession_number),
    ),
    Attribute(
        "ModalitiesInStudy", STUDY, "modalities", _match_modalities, lambda s: _values(s.modalities)
    ),
    Attribute(
        "ReferringPhysicianName",
        STUDY,
        "referring_physician_name",
        _pn_matcher(folded_column=False),
        lambda s: _pn(s.referring_physician_name),
    ),
    Attribute(
        "StudyDescription",
        STUDY,
        "description",
        _text_matcher(fold_case=True),
        lambda s: _one(s.description),
    ),
    Attribute(
        "PatientName",
        STUDY,
        "patient_name_search",
        _pn_matcher(folded_column=True),
        lambda s: _pn(s.patient_name),
    ),
    Attribute("PatientID", STUDY, "pid", _text_matcher(fold_case=False), lambda s: _one(s.pid)),
    Attribute(
        "IssuerOfPatientID",
        STUDY,
        "patient__issuer",
        _text_matcher(fold_case=False),
        lambda s: _one(s.patient.issuer),
    ),
    Attribute(
        "PatientBirthDate",
        STUDY,
        "patient__birth_date",
        _match_date,
        lambda s: _date(s.patient.birth_date),
    ),
    Attribute("PatientSex", STUDY, "patient__sex", _code_matcher, lambda s: _one(s.patient.sex)),
    Attribute("StudyInstanceUID", STUDY, "study_uid", _match_uid, lambda s: [s.study_uid]),
    Attribute(
        "StudyID", STUDY, "study_id", _text_matcher(fold_case=False), lambda s: _one(s.study_id)
    ),
    Attribute("NumberOfStudyRelatedSeries", STUDY, "", None, lambda s: [s.num_series]),
    Attribute("NumberOfStudyRelatedInstances", STUDY, "", None, lambda s: [s.num_instances]),
]
SERIES_ATTRIBUTES = [
    Attribute("Modality", SERIES, "modality", _code_matcher, lambda s: _one(s.modality)),
    Attribute(
        "SeriesDescription",
        SERIES,
        "description",
        _text_matcher(fold_case=True),
        lambda s: _one(s.description),
    ),
    Attribute("SeriesInstanceUID", SERIES, "series_uid", _match_uid, lambda s: [s.series_uid]),
    Attribute("SeriesNumber", SERIES, "series_number", _match_int, lambda s: _one(s.series_number)),
    Attribute("BodyPartExamined", SERIES, "body_part", _code_matcher, lambda s: _one(s.body_part)),
    Attribute(
        "PerformedProcedureStepStartDate",
        SERIES,
        "",
        None,
        lambda s: _date(s.performed_at.date() if s.performed_at else None),
    ),
    Attribute("NumberOfSeriesRelatedInstances", SERIES, "", None, lambda s: [s.num_instances]),
]
INSTANCE_ATTRIBUTES = [
    Attribute("SOPClassUID", INSTANCE, "sop_class_uid", _match_uid, lambda i: [i.sop_class_uid]),
    Attribute("SOPInstanceUID", INSTANCE, "sop_uid", _match_uid, lambda i: [i.sop_uid]),
    Attribute(
        "InstanceNumber", INSTANCE, "instance_number", _match_int, lambda i: _one(i.instance_number)
    ),
    Attribute("Rows", INSTANCE, "", None, lambda i: _one(i.rows)),
    Attribute("Columns", INSTANCE, "", None, lambda i: _one(i.columns)),
    Attribute("BitsAllocated", INSTANCE, "", None, lambda i: _int_or_none(i.bits_allocated)),
    Attribute("NumberOfFrames", INSTANCE, "", None, lambda i: [i.number_of_frames]),
    Attribute(
        "AvailableTransferSyntaxUID", INSTANCE, "", None, lambda i: _one(i.transfer_syntax_uid)
    ),
]
ATTRIBUTES = {a.keyword: a for a in (*STUDY_ATTRIBUTES, *SERIES_ATTRIBUTES, *INSTANCE_ATTRIBUTES)}

# What each level returns without includefield (PS3.18 Tables 10.6.3-3, -4 and -5).
DEFAULT_RETURN = {
    STUDY: [a.keyword for a in STUDY_ATTRIBUTES if a.keyword not in ("IssuerOfPatientID",)],
    SERIES: [
        "Modality",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "StudyInstanceUID",
    ],
    INSTANCE: [
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
        "AvailableTransferSyntaxUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    ],
}


# --- The query -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """Which QIDO resource was asked: its level, and the UIDs in its path."""

    level: str
    study_uid: str | None = None
    series_uid: str | None = None

    @property
    def levels(self) -> tuple[str, ...]:
        """Levels whose attributes this resource matches on and returns (PS3.18 10.6.1.2)."""
        if self.level == STUDY:
            return (STUDY,)
        if self.level == SERIES:
            return (SERIES,) if self.study_uid else (STUDY, SERIES)
        if self.series_uid:
            return (INSTANCE,)
        return (SERIES, INSTANCE) if self.study_uid else (STUDY, SERIES, INSTANCE)


@dataclass
class Query:
    filters: Q
    returned: list[str]  # keywords from the index, in order
    extra_tags: list[str]  # tags asked by includefield that the index does not hold
    all_metadata: bool  # includefield=all at instance level: the whole stored data set
    limit: int
    offset: int
    clamped: bool  # the client asked for more than the cap (or for everything)


def _keyword_of(key: str) -> str | None:
    if TAG_RE.fullmatch(key):
        return keyword_for_tag(int(key, 16)) or None
    return key if tag_for_keyword(key) is not None else None


def _field_path(attribute: Attribute, level: str) -> str:
    """The attribute's field path seen from the model of the query's level."""
    if attribute.level == level:
        return attribute.field
    return f"{attribute.level}__{attribute.field}"


def _int_param(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.getlist(name)
    if not raw:
        return None
    if len(raw) > 1:
        raise QueryError(_("%(key)s may be given only once.") % {"key": name})
    try:
        value = int(raw[0])
    except ValueError:
        raise QueryError(_("%(key)s must be a whole number.") % {"key": name}) from None
    if value < 0 or (name == "limit" and value == 0):
        raise QueryError(_("%(key)s must be a positive number.") % {"key": name})
    return min(value, MAX_OFFSET)  # any larger offset is past the end anyway


def parse_query(request: HttpRequest, resource: Resource) -> Query:
    """Read the query string into filters and the attributes to return; QueryError if bad."""
    allowed = {a.keyword: a for a in ATTRIBUTES.values() if a.level in resource.levels}
    for key, given in request.GET.lists():
        if "\x00" in key:
            # The refusal is audited: a NUL quoted in its text would fail the audit row too.
            raise QueryError(_("A query key holds a NUL character (byte 0)."))
        for value in given:
            # PostgreSQL refuses NUL in text, and no DICOM value is this long.
            if "\x00" in value or len(value) > MAX_VALUE_LENGTH:
                raise QueryError(
                    _("%(key)s: the value is too long or holds a NUL character.")
                    % {"key": key[:80]}
                )
    filters = Q()
    for key in request.GET:
        if key in CONTROL_KEYS:
            continue
        keyword = _keyword_of(key)
        if keyword is None:
            raise QueryError(_("Unknown query key: %(key)s") % {"key": key[:80]})
        attribute = allowed.get(keyword)
        if attribute is None or attribute.match is None:
            raise QueryError(
                _("%(key)s cannot be matched on at this resource.") % {"key": key[:80]}
            )
        filters &= attribute.match(
            _field_path(attribute, resource.level), keyword, request.GET.getlist(key)
        )

    returned = [k for level in resource.levels for k in DEFAULT_RETURN[level]]
    if resource.level != STUDY and "StudyInstanceUID" not in returned:
        returned.append("StudyInstanceUID")
    extra_tags: list[str] = []
    all_metadata = False
    fields = [f.strip() for v in request.GET.getlist("includefield") for f in v.split(",")]
    for name in filter(None, fields):
        if name == "all":
            returned += [k for k, a in allowed.items() if k not in returned]
            all_metadata = resource.level == INSTANCE
            continue
        keyword = _keyword_of(name)
        if keyword is None:
            raise QueryError(_("Unknown attribute in includefield: %(key)s") % {"key": name[:80]})
        if keyword in allowed:
            if keyword not in returned:
                returned.append(keyword)
        else:
            extra_tags.append(f"{tag_for_keyword(keyword):08X}")

    # fuzzymatching is accepted and ignored (PS3.18 8.3.4.6 lets a server do so).
    cap = settings.HUB_QIDO_MAX_RESULTS
    asked = _int_param(request, "limit")
    offset = _int_param(request, "offset") or 0
    limit = min(asked, cap) if asked is not None else cap
    return Query(
        filters=filters,
        returned=returned,
        extra_tags=extra_tags,
        all_metadata=all_metadata,
        limit=limit,
        offset=offset,
        clamped=asked is None or asked > cap,
    )


def _base_queryset(scope: Scope, resource: Resource, query: Query) -> QuerySet[Any]:
    qs: QuerySet[Any]
    if resource.level == STUDY:
        qs = selectors.study_list(scope=scope).select_related("patient")
    elif resource.level == SERIES:
        qs = selectors.series_list(scope=scope, study_uid=resource.study_uid)
        qs = qs.select_related("study__patient")
    else:
        qs = selectors.instance_list(
            scope=scope, study_uid=resource.study_uid, series_uid=resource.series_uid
        )
        qs = qs.select_related("series", "study__patient")
        if "BitsAllocated" in query.returned:
            qs = qs.annotate(bits_allocated=MetadataValue("00280100"))
        if not (query.all_metadata or query.extra_tags):
            qs = qs.defer("metadata")
    return qs.filter(query.filters)


# --- The answer ----------------------------------------------------------------------------


def _owner(obj: Any, level: str) -> Any:
    """The row holding `level`'s attributes for a result row `obj`."""
    if isinstance(obj, Study):
        return obj
    if level == STUDY:
        return obj.study
    if level == SERIES:
        return obj if isinstance(obj, Series) else obj.series
    return obj


def _retrieve_url(root: str, obj: Any) -> str:
    if isinstance(obj, Study):
        return f"{root}/studies/{obj.study_uid}"
    if isinstance(obj, Series):
        return f"{root}/studies/{obj.study.study_uid}/series/{obj.series_uid}"
    return (
        f"{root}/studies/{obj.study.study_uid}/series/{obj.series.series_uid}"
        f"/instances/{obj.sop_uid}"
    )


def _representatives(scope: Scope, level: str, rows: list[Any]) -> dict[int, dict[str, Any]]:
    """Metadata of one instance of each study / series, for includefield extras.

    The first instance of the first series, each found through an index (series by study,
    `instance_order` within a series): never a scan of a big study's instances.
    """
    ids = [r.pk for r in rows]
    if level == STUDY:
        first_series = dict(
            access.visible(scope, Series)
            .filter(study_id__in=ids)
            .values("study_id")
            .annotate(first=Min("id"))
            .values_list("first", "study_id")
        )
    else:
        first_series = {pk: pk for pk in ids}
    first_instance = (
        access.visible(scope, Instance)
        .filter(series_id=OuterRef("pk"))
        .order_by("instance_number", "id")
        .values("id")[:1]
    )
    picked = (
        access.visible(scope, Series)
        .filter(pk__in=list(first_series))
        .annotate(instance_id=Subquery(first_instance))
        .values_list("pk", "instance_id")
    )
    owner_of = {
        instance_id: first_series[series_id]
        for series_id, instance_id in picked
        if instance_id is not None
    }
    found = access.visible(scope, Instance).filter(pk__in=list(owner_of)).only("id", "metadata")
    return {owner_of[i.pk]: i.metadata for i in found}


# Series-level tags a study row answers itself. OHIF asks every study list for Modality
# (0008,0060): from Study.modalities it costs nothing, from a representative instance's
# metadata it cost ~100 ms per page (docs/benchmarks.md §3).
_STUDY_ANSWERED = {"00080060"}


def _dataset(obj: Any, query: Query, root: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if isinstance(obj, Study) and "00080060" in query.extra_tags:
        modalities = [m for m in obj.modalities.split("\\") if m]
        body["00080060"] = element("CS", *modalities) if modalities else {"vr": "CS"}
    if extra is not None:
        wanted = (
            extra if query.all_metadata else {t: extra[t] for t in query.extra_tags if t in extra}
        )
        if not isinstance(obj, Instance):
            # A representative instance's bulk data is not this study's or series' to link.
            wanted = {t: v for t, v in wanted.items() if "BulkDataURI" not in v}
        body.update(wanted)
    for keyword in query.returned:
        attribute = ATTRIBUTES[keyword]
        owner = _owner(obj, attribute.level)
        body[attribute.tag] = element(attribute.vr, *attribute.value(owner))
    body["00080005"] = element("CS", UTF8)
    body["00080056"] = element("CS", ONLINE)
    body["00081190"] = element("UR", _retrieve_url(root, obj))
    if isinstance(obj, Instance) and extra is not None:
        body = metadata_with_urls(body, _retrieve_url(root, obj))
    return dict(sorted(body.items()))


def search(request: HttpRequest, scope: Scope, resource: Resource) -> HttpResponse:
    """GET a QIDO-RS resource: 200 with a (maybe empty) DICOM JSON array, or 400 with why."""
    if not accepts_json(request.headers.get("Accept")):
        return HttpResponse(
            _("Search results are sent as application/dicom+json."),
            status=406,
            content_type="text/plain; charset=utf-8",
        )
    try:
        query = parse_query(request, resource)
    except QueryError as error:
        _audit(request, scope, resource, outcome=4, results=0, error=str(error))
        return HttpResponse(str(error), status=400, content_type="text/plain; charset=utf-8")
    qs = _base_queryset(scope, resource, query)
    # One row past the page tells whether the cap cut the answer short.
    rows = list(qs[query.offset : query.offset + query.limit + 1])
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    extras: dict[int, dict[str, Any]] = {}
    needs_instances = (
        query.all_metadata or any(tag not in _STUDY_ANSWERED for tag in query.extra_tags)
        if resource.level == STUDY
        else bool(query.extra_tags)
    )
    if needs_instances and resource.level != INSTANCE and rows:
        extras = _representatives(scope, resource.level, rows)
    root = request.build_absolute_uri(reverse("dicomweb:studies"))[: -len("/studies")]
    body = []
    for row in rows:
        extra = (
            row.metadata
            if resource.level == INSTANCE and (query.all_metadata or query.extra_tags)
            else extras.get(row.pk)
        )
        body.append(_dataset(row, query, root, extra))
    _audit(request, scope, resource, outcome=0, results=len(body))
    response = dicom_json_response(body)
    if more and query.clamped:
        response["Warning"] = MORE_RESULTS_WARNING
    return response


def _audit(
    request: HttpRequest,
    scope: Scope,
    resource: Resource,
    *,
    outcome: int,
    results: int,
    error: str = "",
) -> None:
    detail: dict[str, Any] = {
        "query": request.META.get("QUERY_STRING", "")[:2000],
        "level": resource.level,
        "results": results,
    }
    if resource.series_uid:
        detail["series_uid"] = resource.series_uid
    if error:
        detail["error"] = error[:300]
    audit_record(
        event=AuditCode.QUERY,
        action="E",
        outcome=outcome,
        scope=scope,
        request=request,
        study_uid=resource.study_uid or "",
        object_type="query",
        detail=detail,
    )
