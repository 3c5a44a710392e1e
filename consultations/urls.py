"""Web pages of MDT consultations: my sessions, scheduling, the live room, the minutes."""

from django.urls import path

from . import schedule_views, views

urlpatterns = [
    path("mdt/", views.session_list, name="mdt-list"),
    path("mdt/new/", schedule_views.schedule, name="mdt-schedule"),
    path("mdt/<int:pk>/", views.room, name="mdt-room"),
    path("mdt/<int:pk>/session/", schedule_views.session_detail, name="mdt-session"),
    path("mdt/<int:pk>/reschedule/", schedule_views.session_reschedule, name="mdt-reschedule"),
    path("mdt/<int:pk>/cancel/", schedule_views.session_cancel, name="mdt-cancel"),
    path("mdt/<int:pk>/cases/", schedule_views.session_cases, name="mdt-cases"),
    path("mdt/<int:pk>/cases/<int:case_pk>/", schedule_views.case_edit, name="mdt-case-edit"),
    path("mdt/<int:pk>/people/", schedule_views.session_people, name="mdt-people"),
    path(
        "mdt/<int:pk>/invitations/<int:invitation_pk>/remove/",
        schedule_views.invitation_remove,
        name="mdt-invitation-remove",
    ),
    path("mdt/<int:pk>/answer/", schedule_views.invitation_answer, name="mdt-answer"),
    path("mdt/<int:pk>/minutes/", views.minutes, name="mdt-minutes"),
    path("mdt/<int:pk>/minutes.pdf", views.minutes_pdf, name="mdt-minutes-pdf"),
]
