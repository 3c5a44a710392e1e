"""URLs of the identity pages (issuers of patient IDs, the master patient index)."""

from django.urls import path

from . import views

urlpatterns = [
    path("identity/issuers/", views.issuer_settings, name="identity-issuers"),
    path("identity/review/", views.identity_review, name="identity-review"),
    path("identity/patients/", views.identity_search, name="identity-search"),
    path("identity/patients/<int:pk>/", views.identity_patient, name="identity-patient"),
    path(
        "identity/patients/<int:pk>/link/",
        views.identity_patient_link,
        name="identity-patient-link",
    ),
    path(
        "identity/links/<int:pk>/decide/", views.identity_link_decide, name="identity-link-decide"
    ),
    path("identity/links/<int:pk>/unlink/", views.identity_link_undo, name="identity-link-unlink"),
]
