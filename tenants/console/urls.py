"""URLs of the institution's console pages, and of the e-mailed password links."""

from django.urls import path

from .. import views as account_views
from . import connected_system_views, views

urlpatterns = [
    path("console/staff/", views.staff_list, name="console-staff"),
    path("console/staff/invite/", views.staff_invite, name="console-staff-invite"),
    path("console/staff/add/", views.staff_add, name="console-staff-add"),
    path("console/staff/<int:pk>/", views.staff_detail, name="console-staff-detail"),
    path("console/staff/<int:pk>/grant/", views.staff_grant, name="console-staff-grant"),
    path("console/staff/<int:pk>/revoke/", views.staff_revoke, name="console-staff-revoke"),
    path(
        "console/staff/<int:pk>/password-mail/",
        views.staff_password_mail,
        name="console-staff-password-mail",
    ),
    path(
        "console/staff/<int:pk>/deactivate/",
        views.staff_deactivate,
        name="console-staff-deactivate",
    ),
    path(
        "console/staff/<int:pk>/reactivate/",
        views.staff_reactivate,
        name="console-staff-reactivate",
    ),
    path("console/staff/<int:pk>/remove/", views.staff_remove, name="console-staff-remove"),
    path("console/gateways/", views.gateway_list, name="console-gateways"),
    path("console/gateways/<int:pk>/revoke/", views.gateway_revoke, name="console-gateway-revoke"),
    path(
        "console/connected-systems/",
        connected_system_views.systems_page,
        name="console-connected-systems",
    ),
    path(
        "console/connected-systems/<int:pk>/revoke/",
        connected_system_views.system_revoke,
        name="console-connected-system-revoke",
    ),
    # The e-mailed links, and "Forgot your password?" on the sign-in page.
    path(
        "accounts/password/reset/",
        account_views.PasswordResetView.as_view(),
        name="password-reset",
    ),
    path(
        "accounts/password/reset/sent/",
        account_views.PasswordResetDoneView.as_view(),
        name="password-reset-done",
    ),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        account_views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path(
        "accounts/welcome/<uidb64>/<token>/",
        account_views.InviteAcceptView.as_view(),
        name="invite-accept",
    ),
]
