"""Routes of the analytics API, mounted under /api/v1/analytics/ (names "api:analytics-*")."""

from django.urls import path

from . import api

urlpatterns = [
    path("analytics/options/", api.OptionsView.as_view(), name="analytics-options"),
    path("analytics/volumes/", api.VolumesView.as_view(), name="analytics-volumes"),
    path("analytics/turnaround/", api.TurnaroundView.as_view(), name="analytics-turnaround"),
    path("analytics/flows/", api.FlowsView.as_view(), name="analytics-flows"),
    path("analytics/workload/", api.WorkloadView.as_view(), name="analytics-workload"),
    path("analytics/scanners/", api.ScannersView.as_view(), name="analytics-scanners"),
    path("analytics/quality/", api.QualityView.as_view(), name="analytics-quality"),
    path("analytics/recognition/", api.RecognitionView.as_view(), name="analytics-recognition"),
]
