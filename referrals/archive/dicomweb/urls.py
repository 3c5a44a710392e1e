"""URL map of the DICOMweb root (/dicomweb/)."""

from django.urls import include, path, register_converter

from referrals.archive.dicomweb import render_urls, views


class UidConverter:
    """A DICOM UID in a path: digits and dots, at most 64 (PS3.5 9.1); else no route (404)."""

    regex = r"[0-9.]{1,64}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class BulkPathConverter:
    """Where a bulk value sits: a tag, then an item index (from 0) and a tag per level inward,
    e.g. 7FE00010 or 54000100/1/54001010. Sequences nest a few levels in real data."""

    regex = r"[0-9A-Fa-f]{8}(?:/[0-9]{1,6}/[0-9A-Fa-f]{8}){0,16}"

    def to_python(self, value: str) -> str:
        return value.upper()

    def to_url(self, value: str) -> str:
        return value


register_converter(UidConverter, "uid")
register_converter(BulkPathConverter, "bulkpath")

app_name = "dicomweb"

_STUDY = "studies/<uid:study_uid>"
_SERIES = f"{_STUDY}/series/<uid:series_uid>"
_INSTANCE = f"{_SERIES}/instances/<uid:sop_uid>"

urlpatterns = [
    # Studies: QIDO-RS search (GET) and STOW-RS store (POST).
    path("studies", views.StudiesView.as_view(), name="studies"),
    path(_STUDY, views.StudyView.as_view(), name="study"),
    path(f"{_STUDY}/metadata", views.StudyMetadataView.as_view(), name="study-metadata"),
    path(f"{_STUDY}/series", views.StudySeriesView.as_view(), name="study-series"),
    path(f"{_STUDY}/instances", views.StudyInstancesView.as_view(), name="study-instances"),
    path(_SERIES, views.SeriesView.as_view(), name="series"),
    path(f"{_SERIES}/metadata", views.SeriesMetadataView.as_view(), name="series-metadata"),
    path(f"{_SERIES}/instances", views.SeriesInstancesView.as_view(), name="series-instances"),
    path(_INSTANCE, views.InstanceView.as_view(), name="instance"),
    path(f"{_INSTANCE}/metadata", views.InstanceMetadataView.as_view(), name="instance-metadata"),
    path(f"{_INSTANCE}/bulk/<bulkpath:bulk_path>", views.BulkDataView.as_view(), name="bulkdata"),
    path("series", views.AllSeriesView.as_view(), name="all-series"),
    path("instances", views.AllInstancesView.as_view(), name="all-instances"),
    path("", include(render_urls)),  # frames, rendered, thumbnails
]
