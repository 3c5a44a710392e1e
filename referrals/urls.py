"""Web pages of the referrals app: the institution's studies, one study, sending studies."""

from django.urls import path

from referrals.archive import reconciliation_views, upload_views
from referrals.archive import study_views as views
from referrals.archive.correction import views as correction_views
from referrals.identity.urls import urlpatterns as identity_urlpatterns
from referrals.registration import views as registration_views
from referrals.workflow import views as referral_views
from referrals.worklists import views as worklist_views

urlpatterns = [
    path("studies/", views.study_list, name="study-list"),
    path("studies/<int:pk>/", views.study_detail, name="study-detail"),
    path("studies/upload/", upload_views.study_upload, name="study-upload"),
    path("studies/<int:pk>/correct/", correction_views.study_correct, name="study-correct"),
    path(
        "console/studies/",
        correction_views.correction_finder,
        name="console-correct-studies",
    ),
    path("studies/<int:pk>/refer/", referral_views.referral_send, name="referral-send"),
    path("referrals/", referral_views.referral_list, name="referral-list"),
    path("referrals/<int:pk>/", referral_views.referral_detail, name="referral-detail"),
    path("referrals/<int:pk>/cancel/", referral_views.referral_cancel, name="referral-cancel"),
    path(
        "referrals/<int:pk>/acknowledge/",
        referral_views.referral_acknowledge,
        name="referral-acknowledge",
    ),
    # Exams registered before the scan (the gateway's Modality Worklist).
    path("registrations/", registration_views.registration_list, name="registration-list"),
    path("registrations/new/", registration_views.registration_new, name="registration-new"),
    path(
        "registrations/<int:pk>/cancel/",
        registration_views.registration_cancel,
        name="registration-cancel",
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
# The reconciliation queue: instances held because their patient contradicts their study.
urlpatterns += [
    path("archive/held/", reconciliation_views.held_list, name="held-list"),
    path("archive/held/<int:pk>/accept/", reconciliation_views.held_accept, name="held-accept"),
    path(
        "archive/held/<int:pk>/new-study/",
        reconciliation_views.held_new_study,
        name="held-new-study",
    ),
    path(
        "archive/held/<int:pk>/new-patient/",
        reconciliation_views.held_new_patient,
        name="held-new-patient",
    ),
    path("archive/held/<int:pk>/reject/", reconciliation_views.held_reject, name="held-reject"),
]
# Patient identity: issuers of patient IDs and the master patient index.
urlpatterns += identity_urlpatterns
