"""One audit row per read of patient data through the REST API (the pages call audit_read).

A viewset that shows patient data derives from `AuditedReadsViewSet` instead of
ScopedGenericViewSet; it may name what it shows (`audit_object_type`, default its model's
name) and how a row reaches its study (`audit_study`, a lookup path: "study" by default,
"referral__study", "cases__study").
Every GET that answers 2xx then leaves exactly one row, written once the answer is ready:

- a list (the viewset's collection, `detail=False`): one QUERY row naming the filter terms,
  how many rows, patients and studies it showed;
- one object or one of its sub-resources (`detail=True`: retrieve, events, addenda...): one
  STUDY_VIEWED row (DICOM "Patient Record") with the patient and study.

A refused read (404, 403, 400) leaves no row here: it showed nothing. Actions that write
their own row (an export) are named in `audit_elsewhere`. What was shown is read back from
the answer's ids through the caller's scoped queryset, so the base class needs no hook into the
view's own code and sees nothing the caller could not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rest_framework.request import Request
from rest_framework.response import Response

from .audit import AuditCode, audit_read
from .viewsets import ScopedGenericViewSet

if TYPE_CHECKING:
    from django.db.models import QuerySet

MAX_FILTER_TERMS = 20
MAX_TERM_LENGTH = 200
MAX_STUDIES_NAMED = 50  # one object with many studies (an MDT session): named up to this


class AuditedReadsViewSet(ScopedGenericViewSet):
    """A ScopedGenericViewSet that audits each of its successful GETs (see the module)."""

    audit_object_type: ClassVar[str] = ""  # default: the queryset's model name
    audit_study: ClassVar[str] = "study"
    audit_elsewhere: ClassVar[frozenset[str]] = frozenset()

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if (
            request.method == "GET"
            and 200 <= response.status_code < 300
            and self.action not in self.audit_elsewhere
        ):
            self._audit_read(request, response)
        return response

    def _subjects(self, queryset: QuerySet[Any]) -> list[tuple[str, str]]:
        """(patient id, study uid) of the rows, each pair once, through the scoped queryset."""
        path = self.audit_study
        pairs = queryset.order_by().values_list(f"{path}__pid", f"{path}__study_uid").distinct()
        return sorted({(pid or "", uid or "") for pid, uid in pairs if uid})

    @property
    def _object_type(self) -> str:
        return self.audit_object_type or str(self._template().model._meta.model_name)

    def _audit_read(self, request: Request, response: Response) -> None:
        scoped = self.get_queryset()
        if self.detail:
            pk = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
            subjects = self._subjects(scoped.filter(**{self.lookup_field: pk}))
            study = _Study(*subjects[0]) if len(subjects) == 1 else None
            detail: dict[str, Any] = {"via": "api", "view": self.action}
            if study is None:  # none, or many (an MDT session's cases)
                detail["patients"] = len({pid for pid, _ in subjects})
                detail["studies"] = [uid for _, uid in subjects[:MAX_STUDIES_NAMED]]
            audit_read(
                event=AuditCode.STUDY_VIEWED,
                scope=self.scope,
                request=request._request,
                study=study,
                object_type=self._object_type,
                object_id=pk,
                detail=detail,
            )
            return
        rows = _rows_of(getattr(response, "data", None))
        ids = [row["id"] for row in rows if isinstance(row, dict) and "id" in row]
        subjects = self._subjects(scoped.filter(pk__in=ids)) if ids else []
        page = getattr(response, "data", None)
        detail = {
            "via": "api",
            "list": self.basename,
            "filters": _terms(request),
            "shown": len(rows),
            "patients": len({pid for pid, _ in subjects}),
            "studies": len(subjects),
        }
        if isinstance(page, dict) and "count" in page:
            detail["total"] = page["count"]
        audit_read(
            event=AuditCode.QUERY,
            scope=self.scope,
            request=request._request,
            object_type=self._object_type,
            detail=detail,
        )


class _Study:
    """The two fields of a study audit_read names."""

    def __init__(self, pid: str, study_uid: str) -> None:
        self.pid = pid
        self.study_uid = study_uid


def _rows_of(data: Any) -> list[Any]:
    """The rows an answer showed: a list, or the "results" of a page or a worklist."""
    if isinstance(data, dict):
        data = data.get("results", [])
    return list(data) if isinstance(data, list) else []


def _terms(request: Request) -> dict[str, str]:
    """The query's filter terms as asked (a patient search names its words), bounded."""
    terms = {}
    for key in sorted(request.query_params)[:MAX_FILTER_TERMS]:
        terms[key[:MAX_TERM_LENGTH]] = request.query_params.get(key, "")[:MAX_TERM_LENGTH]
    return terms
