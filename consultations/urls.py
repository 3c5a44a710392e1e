"""Web pages of MDT consultations: my sessions, the live room, the minutes."""

from django.urls import path

from . import views

urlpatterns = [
    path("mdt/", views.session_list, name="mdt-list"),
    path("mdt/<int:pk>/", views.room, name="mdt-room"),
    path("mdt/<int:pk>/minutes/", views.minutes, name="mdt-minutes"),
    path("mdt/<int:pk>/minutes.pdf", views.minutes_pdf, name="mdt-minutes-pdf"),
]
