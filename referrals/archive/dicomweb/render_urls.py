"""URL map of the WADO-RS pixel resources: frames, rendered and thumbnails (under /dicomweb/)."""

from django.urls import path

from referrals.archive.dicomweb import render_views as views

_INSTANCE = "studies/<str:study_uid>/series/<str:series_uid>/instances/<str:sop_uid>"

urlpatterns = [
    path(f"{_INSTANCE}/frames/<str:frames>", views.FramesView.as_view(), name="frames"),
    path(
        f"{_INSTANCE}/frames/<str:frames>/rendered",
        views.FrameRenderedView.as_view(),
        name="frame-rendered",
    ),
    path(
        f"{_INSTANCE}/frames/<str:frames>/thumbnail",
        views.FrameThumbnailView.as_view(),
        name="frame-thumbnail",
    ),
    path(f"{_INSTANCE}/rendered", views.InstanceRenderedView.as_view(), name="instance-rendered"),
    path(
        f"{_INSTANCE}/thumbnail", views.InstanceThumbnailView.as_view(), name="instance-thumbnail"
    ),
    path(
        "studies/<str:study_uid>/series/<str:series_uid>/thumbnail",
        views.SeriesThumbnailView.as_view(),
        name="series-thumbnail",
    ),
    path(
        "studies/<str:study_uid>/thumbnail",
        views.StudyThumbnailView.as_view(),
        name="study-thumbnail",
    ),
]
