"""Web pages of the reporting app: the drafting page, and the patient's share-link pages."""

from django.urls import path

from . import share_views, views

urlpatterns = [
    path("reports/<int:referral_pk>/edit/", views.report_edit, name="report-edit"),
    # Critical findings (issue 5 item 4): the clinic's acknowledge button.
    path("reports/critical/<int:pk>/acknowledge/", views.critical_acknowledge,
         name="critical-acknowledge"),
    # Patient share links (no login): the grant routes come first ("v" is no token).
    path("s/v/<str:grant>/", share_views.share_viewer, name="share-viewer"),
    path("s/v/<str:grant>/series/<str:series_uid>/instances/<str:sop_uid>/frames/"
         "<int:frame>/rendered", share_views.share_frame, name="share-frame"),
    path("s/<str:token>/", share_views.share_page, name="share-page"),
    path("s/<str:token>/all/", share_views.share_patient, name="share-patient"),
    path("s/<str:token>/pdf/", share_views.share_pdf, name="share-pdf"),
]
