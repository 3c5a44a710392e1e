"""The second factor's pages, under /accounts/two-factor/."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.two_factor_manage, name="two-factor"),
    path("setup/", views.two_factor_enrol, name="two-factor-enrol"),
    path("code/", views.two_factor_verify, name="two-factor-verify"),
    path("recovery-codes/", views.two_factor_recovery_codes, name="two-factor-recovery-codes"),
    path("recovery-codes/new/", views.two_factor_regenerate, name="two-factor-recovery-regenerate"),
    path("remove/", views.two_factor_remove, name="two-factor-remove"),
]
