"""Web pages of the reporting app: the drafting page, and the patient's share-link pages."""

from django.urls import path

from . import (
    quality_views,
    reading_views,
    share_manage_views,
    share_views,
    template_views,
    views,
)

urlpatterns = [
    path("reports/quality/", quality_views.report_quality, name="report-quality"),
    path("reports/<int:referral_pk>/edit/", views.report_edit, name="report-edit"),
    path("reports/second-reads/", reading_views.second_read_queue, name="second-read-queue"),
    path("reports/next/", reading_views.reading_next, name="reading-next"),
    # Critical findings: the clinic's acknowledge button.
    path(
        "reports/critical/<int:pk>/acknowledge/",
        views.critical_acknowledge,
        name="critical-acknowledge",
    ),
    # "Share with the patient" (signed in): a new link with its QR code, the list, revoke.
    path("reports/<int:report_pk>/share/", share_manage_views.report_share, name="report-share"),
    path(
        "reports/<int:report_pk>/share/<int:link_pk>/revoke/",
        share_manage_views.report_share_revoke,
        name="report-share-revoke",
    ),
    # The alliance administrator's template editor (the console's "Report templates").
    path("console/templates/", template_views.template_list, name="console-templates"),
    path("console/templates/new/", template_views.template_create, name="console-template-create"),
    path("console/templates/<int:pk>/", template_views.template_version, name="console-template"),
    path(
        "console/templates/<int:pk>/edit/",
        template_views.template_edit,
        name="console-template-edit",
    ),
    path(
        "console/templates/<int:pk>/history/",
        template_views.template_history,
        name="console-template-history",
    ),
    path(
        "console/templates/<int:pk>/diff/",
        template_views.template_diff,
        name="console-template-diff",
    ),
    path(
        "console/templates/<int:pk>/status/",
        template_views.template_status,
        name="console-template-status",
    ),
    # Patient share links (no login): the grant routes come first ("v" is no token).
    path("s/v/<str:grant>/", share_views.share_viewer, name="share-viewer"),
    path(
        "s/v/<str:grant>/series/<str:series_uid>/instances/<str:sop_uid>/frames/"
        "<int:frame>/rendered",
        share_views.share_frame,
        name="share-frame",
    ),
    path("s/<str:token>/", share_views.share_page, name="share-page"),
    path("s/<str:token>/all/", share_views.share_patient, name="share-patient"),
    path("s/<str:token>/pdf/", share_views.share_pdf, name="share-pdf"),
]
