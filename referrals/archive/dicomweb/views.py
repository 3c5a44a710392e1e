"""The DICOMweb resources, each dispatching by method to stow / qido / retrieve."""

from __future__ import annotations

from django.http import HttpResponse
from django.http.response import HttpResponseBase
from rest_framework.request import Request

from referrals.archive.dicomweb import qido, retrieve
from referrals.archive.dicomweb.base import DicomWebView
from referrals.archive.dicomweb.qido import INSTANCE, SERIES, STUDY, Resource
from referrals.archive.dicomweb.stow import stow


class StudiesView(DicomWebView):
    """/studies: GET searches (QIDO-RS), POST stores (STOW-RS)."""

    def get(self, request: Request) -> HttpResponse:
        return qido.search(request._request, self.scope, Resource(STUDY))

    def post(self, request: Request) -> HttpResponse:
        return stow(request, self.scope)


class StudyView(DicomWebView):
    """/studies/{study}: GET retrieves the study (WADO-RS), POST stores into it (STOW-RS)."""

    def get(self, request: Request, study_uid: str) -> HttpResponseBase:
        return retrieve.retrieve_instances(request._request, self.scope, study_uid=study_uid)

    def post(self, request: Request, study_uid: str) -> HttpResponse:
        return stow(request, self.scope, study_uid=study_uid)


class StudyMetadataView(DicomWebView):
    def get(self, request: Request, study_uid: str) -> HttpResponseBase:
        return retrieve.retrieve_metadata(request._request, self.scope, study_uid=study_uid)


class StudySeriesView(DicomWebView):
    def get(self, request: Request, study_uid: str) -> HttpResponse:
        return qido.search(request._request, self.scope, Resource(SERIES, study_uid))


class StudyInstancesView(DicomWebView):
    def get(self, request: Request, study_uid: str) -> HttpResponse:
        return qido.search(request._request, self.scope, Resource(INSTANCE, study_uid))


class SeriesView(DicomWebView):
    def get(self, request: Request, study_uid: str, series_uid: str) -> HttpResponseBase:
        return retrieve.retrieve_instances(
            request._request, self.scope, study_uid=study_uid, series_uid=series_uid
        )


class SeriesMetadataView(DicomWebView):
    def get(self, request: Request, study_uid: str, series_uid: str) -> HttpResponseBase:
        return retrieve.retrieve_metadata(
            request._request, self.scope, study_uid=study_uid, series_uid=series_uid
        )


class SeriesInstancesView(DicomWebView):
    def get(self, request: Request, study_uid: str, series_uid: str) -> HttpResponse:
        return qido.search(request._request, self.scope, Resource(INSTANCE, study_uid, series_uid))


class InstanceView(DicomWebView):
    def get(
        self, request: Request, study_uid: str, series_uid: str, sop_uid: str
    ) -> HttpResponseBase:
        return retrieve.retrieve_instances(
            request._request,
            self.scope,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
        )


class InstanceMetadataView(DicomWebView):
    def get(
        self, request: Request, study_uid: str, series_uid: str, sop_uid: str
    ) -> HttpResponseBase:
        return retrieve.retrieve_metadata(
            request._request,
            self.scope,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
        )


class BulkDataView(DicomWebView):
    def get(
        self, request: Request, study_uid: str, series_uid: str, sop_uid: str, bulk_path: str
    ) -> HttpResponseBase:
        return retrieve.retrieve_bulkdata(
            request._request,
            self.scope,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            bulk_path=bulk_path,
        )


class AllSeriesView(DicomWebView):
    """/series: series of every study the caller may see."""

    def get(self, request: Request) -> HttpResponse:
        return qido.search(request._request, self.scope, Resource(SERIES))


class AllInstancesView(DicomWebView):
    """/instances: instances of every study the caller may see."""

    def get(self, request: Request) -> HttpResponse:
        return qido.search(request._request, self.scope, Resource(INSTANCE))
