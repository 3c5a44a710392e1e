"""The DICOMweb resources, each dispatching by method to stow / qido / wado."""

from __future__ import annotations

from django.http import HttpResponse
from rest_framework.request import Request

from .base import DicomWebView
from .stow import stow


class StudiesView(DicomWebView):
    """/studies: POST stores (STOW-RS)."""

    def post(self, request: Request) -> HttpResponse:
        return stow(request, self.scope)


class StudyView(DicomWebView):
    """/studies/{study}: POST stores into that study (STOW-RS)."""

    def post(self, request: Request, study_uid: str) -> HttpResponse:
        return stow(request, self.scope, study_uid=study_uid)
