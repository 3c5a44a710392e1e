"""Web pages of the referrals app: the institution's studies, one study, sending studies."""

from django.urls import path

from . import referral_views, upload_views, views

urlpatterns = [
    path("studies/", views.study_list, name="study-list"),
    path("studies/<int:pk>/", views.study_detail, name="study-detail"),
    path("studies/upload/", upload_views.study_upload, name="study-upload"),
    path("referrals/<int:pk>/", referral_views.referral_detail, name="referral-detail"),
]
