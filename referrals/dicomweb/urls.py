"""URL map of the DICOMweb root (/dicomweb/)."""

from django.urls import path

from . import views

app_name = "dicomweb"

urlpatterns = [
    path("studies", views.StudiesView.as_view(), name="studies"),
    path("studies/<str:study_uid>", views.StudyView.as_view(), name="study"),
]
