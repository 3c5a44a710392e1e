"""Web pages of the referrals app: the institution's studies, one study, sending studies."""

from django.urls import path

from referrals.archive import study_views as views
from referrals.archive import upload_views
from referrals.workflow import views as referral_views
from referrals.worklists import views as worklist_views

urlpatterns = [
    path("studies/", views.study_list, name="study-list"),
    path("studies/<int:pk>/", views.study_detail, name="study-detail"),
    path("studies/upload/", upload_views.study_upload, name="study-upload"),
    path("studies/<int:pk>/refer/", referral_views.referral_send, name="referral-send"),
    path("referrals/", referral_views.referral_list, name="referral-list"),
    path("referrals/<int:pk>/", referral_views.referral_detail, name="referral-detail"),
    path("referrals/<int:pk>/cancel/", referral_views.referral_cancel, name="referral-cancel"),
    path(
        "referrals/<int:pk>/acknowledge/",
        referral_views.referral_acknowledge,
        name="referral-acknowledge",
    ),
    # The reading side: the live worklist and one case.
    path("worklist/", worklist_views.worklist, name="worklist"),
    path("worklist/rows/", worklist_views.worklist_rows, name="worklist-rows"),
    path("worklist/next/", worklist_views.worklist_next, name="worklist-next"),
    path("worklist/<int:pk>/", worklist_views.worklist_case, name="worklist-case"),
    path("worklist/<int:pk>/claim/", worklist_views.worklist_claim, name="worklist-claim"),
    path("worklist/<int:pk>/open/", worklist_views.worklist_open, name="worklist-open"),
    path("worklist/<int:pk>/release/", worklist_views.worklist_release, name="worklist-release"),
    path("worklist/<int:pk>/return/", worklist_views.worklist_return, name="worklist-return"),
]
